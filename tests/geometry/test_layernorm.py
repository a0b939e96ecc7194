"""LayerNorm geometry: project, scale, layer_norm, factorized_layer_norm, rms_norm.

The oracle is a row-by-row float64 implementation with ``math.fsum`` written here, independent
of the vectorised code under test; torch is a second oracle when it is installed.
"""

import math

import numpy as np
import pytest

import geomln
from geomln import InputError

# --------------------------------------------------------------------------------------------- oracle


def _rows(x):
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(-1, x.shape[-1]), x.shape


def ref_norm(x, *, projection=True, scaling=True, weight=None, bias=None, eps=1e-5):
    """LayerNorm written the slow, obvious way: one row at a time, exact summation."""
    rows, shape = _rows(x)
    d = shape[-1]
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        values = [float(v) for v in row]
        if projection:
            mean = math.fsum(values) / d
            values = [v - mean for v in values]
        if scaling:
            denominator = math.sqrt(math.fsum(v * v for v in values) / d + eps)
            values = [v / denominator for v in values]
        if weight is not None:
            values = [v * float(w) for v, w in zip(values, weight, strict=True)]
        if bias is not None:
            values = [v + float(b) for v, b in zip(values, bias, strict=True)]
        out[i] = values
    return out.reshape(shape)


def ref_project(x):
    rows, shape = _rows(x)
    return np.array([[v - math.fsum(row) / len(row) for v in row] for row in rows]).reshape(shape)


def ref_scale(x):
    rows, shape = _rows(x)
    out = [[v * math.sqrt(len(row)) / math.sqrt(math.fsum(u * u for u in row)) for v in row] for row in rows]
    return np.array(out).reshape(shape)


SHAPES = [(7,), (5, 3), (4, 16), (2, 3, 8), (1, 1, 2, 5)]


# --------------------------------------------------------------------------------------------- project


@pytest.mark.parametrize("shape", SHAPES)
def test_project_matches_reference_and_is_orthogonal_to_ones(rng, shape):
    x = rng.normal(size=shape) * 3 + 5
    p = geomln.project(x)
    assert p.shape == x.shape and p.dtype == np.float64
    np.testing.assert_allclose(p, ref_project(x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=-1), 0.0, atol=1e-12)
    # what was removed is a multiple of 1
    removed = x - p
    np.testing.assert_allclose(removed, np.broadcast_to(removed[..., :1], removed.shape), atol=1e-12)


def test_project_is_idempotent_and_kills_ones(rng):
    x = rng.normal(size=(6, 5))
    np.testing.assert_allclose(geomln.project(geomln.project(x)), geomln.project(x), atol=1e-14)
    np.testing.assert_array_equal(geomln.project(np.full((3, 4), 2.5)), np.zeros((3, 4)))


def test_project_accepts_lists_ints_and_bools_and_does_not_mutate(rng):
    x = rng.integers(-5, 5, size=(4, 3))
    before = x.copy()
    np.testing.assert_allclose(geomln.project(x), ref_project(x), atol=1e-12)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(geomln.project(x.tolist()), ref_project(x), atol=1e-12)
    np.testing.assert_allclose(geomln.project([True, False, False, False]), [0.75, -0.25, -0.25, -0.25])


# --------------------------------------------------------------------------------------------- scale


@pytest.mark.parametrize("shape", SHAPES)
def test_scale_matches_reference_and_has_norm_sqrt_d(rng, shape):
    x = rng.normal(size=shape)
    s = geomln.scale(x)
    np.testing.assert_allclose(s, ref_scale(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.linalg.norm(s, axis=-1), math.sqrt(shape[-1]), rtol=1e-13)


def test_scale_known_value():
    np.testing.assert_allclose(
        geomln.scale([[3.0, 4.0]]), [[0.6 * math.sqrt(2), 0.8 * math.sqrt(2)]], rtol=1e-15
    )


@pytest.mark.parametrize("factor", [1e-250, 1e-150, 1e-3, 1.0, 7.5, 1e150, 1e250])
def test_scale_is_invariant_to_positive_scaling_even_at_extreme_magnitudes(rng, factor):
    x = rng.normal(size=(10, 6))
    np.testing.assert_allclose(geomln.scale(x * factor), geomln.scale(x), rtol=1e-13, atol=1e-14)


def test_scale_negative_scaling_flips_sign(rng):
    x = rng.normal(size=(5, 4))
    np.testing.assert_allclose(geomln.scale(-2.0 * x), -geomln.scale(x), rtol=1e-14)


def test_scale_is_idempotent(rng):
    s = geomln.scale(rng.normal(size=(8, 9)))
    np.testing.assert_allclose(geomln.scale(s), s, rtol=1e-14)


# --------------------------------------------------------------------------------------------- layer_norm


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [0.0, 1e-5, 0.3])
def test_layer_norm_matches_reference(rng, shape, eps):
    x = rng.normal(size=shape) * 2 - 1
    np.testing.assert_allclose(geomln.layer_norm(x, eps=eps), ref_norm(x, eps=eps), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_is_scale_of_project_exactly_when_eps_is_zero(rng, shape):
    x = rng.normal(size=shape) * 4 + 10
    y = geomln.layer_norm(x, eps=0.0)
    np.testing.assert_allclose(y, geomln.scale(geomln.project(x)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.sum(axis=-1), 0.0, atol=1e-11)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), math.sqrt(shape[-1]), rtol=1e-12)


@pytest.mark.parametrize("eps", [1e-5, 1e-2, 1.0])
def test_layer_norm_equals_scale_of_project_up_to_the_eps_factor(rng, eps):
    x = rng.normal(size=(20, 7))
    var = ref_project(x).var(axis=-1, keepdims=True)
    expected = geomln.scale(geomln.project(x)) * np.sqrt(var / (var + eps))
    np.testing.assert_allclose(geomln.layer_norm(x, eps=eps), expected, rtol=1e-12, atol=1e-13)
    # and the gap to the eps-free identity is of order eps / var, as documented
    gap = np.abs(geomln.layer_norm(x, eps=eps) - geomln.scale(geomln.project(x))).max()
    assert gap <= np.max(eps / (2 * var)) * math.sqrt(7) + 1e-12


def test_layer_norm_of_constant_rows_is_zero_not_nan():
    y = geomln.layer_norm(np.full((2, 5), 3.0))
    np.testing.assert_array_equal(y, np.zeros((2, 5)))


def test_layer_norm_is_invariant_to_shift_along_ones_and_positive_scaling(rng):
    x = rng.normal(size=(6, 5))
    base = geomln.layer_norm(x, eps=0.0)
    np.testing.assert_allclose(geomln.layer_norm(3.5 * x - 2.0, eps=0.0), base, rtol=1e-12, atol=1e-12)


def test_layer_norm_default_eps_is_torchs(rng):
    x = rng.normal(size=(3, 4)) * 1e-3  # small variance, so eps matters
    np.testing.assert_allclose(geomln.layer_norm(x), ref_norm(x, eps=1e-5), rtol=1e-12)
    assert not np.allclose(geomln.layer_norm(x), ref_norm(x, eps=0.0), rtol=1e-6)


@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("use_bias", [False, True])
def test_layer_norm_affine_matches_reference(rng, use_weight, use_bias):
    x = rng.normal(size=(3, 4, 6))
    weight = rng.normal(size=6) if use_weight else None
    bias = rng.normal(size=6) if use_bias else None
    np.testing.assert_allclose(
        geomln.layer_norm(x, weight=weight, bias=bias),
        ref_norm(x, weight=weight, bias=bias),
        rtol=1e-12,
        atol=1e-12,
    )


def test_identity_affine_changes_nothing(rng):
    x = rng.normal(size=(4, 5))
    np.testing.assert_array_equal(
        geomln.layer_norm(x, weight=np.ones(5), bias=np.zeros(5)), geomln.layer_norm(x)
    )


# --------------------------------------------------------------------------------------------- factorized


@pytest.mark.parametrize("projection", [True, False])
@pytest.mark.parametrize("scaling", [True, False])
@pytest.mark.parametrize("eps", [0.0, 1e-5])
def test_factorized_layer_norm_matches_reference_for_every_switch(rng, projection, scaling, eps):
    x = rng.normal(size=(5, 8)) + 2
    weight, bias = rng.normal(size=8), rng.normal(size=8)
    got = geomln.factorized_layer_norm(
        x, projection=projection, scaling=scaling, weight=weight, bias=bias, eps=eps
    )
    expected = ref_norm(x, projection=projection, scaling=scaling, weight=weight, bias=bias, eps=eps)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_factorized_variants_are_the_named_functions(rng):
    x = rng.normal(size=(6, 5)) + 1
    f = geomln.factorized_layer_norm
    np.testing.assert_array_equal(f(x), geomln.layer_norm(x))
    np.testing.assert_array_equal(f(x, projection=False, eps=1e-6), geomln.rms_norm(x))
    np.testing.assert_allclose(f(x, scaling=False), geomln.project(x), atol=1e-15)
    np.testing.assert_array_equal(f(x, projection=False, scaling=False), x)
    np.testing.assert_allclose(f(x, eps=0.0), geomln.scale(geomln.project(x)), rtol=1e-12, atol=1e-12)


def test_without_projection_outputs_leave_the_hyperplane(rng):
    x = rng.normal(size=(50, 6)) + 0.5
    assert np.abs(geomln.factorized_layer_norm(x, projection=False).sum(axis=-1)).max() > 0.1
    np.testing.assert_allclose(geomln.factorized_layer_norm(x, projection=True).sum(axis=-1), 0.0, atol=1e-11)


def test_without_scaling_norms_vary(rng):
    x = rng.normal(size=(50, 6))
    norms = np.linalg.norm(geomln.factorized_layer_norm(x, scaling=False), axis=-1)
    assert norms.std() > 0.1


# --------------------------------------------------------------------------------------------- rms_norm


@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.1])
def test_rms_norm_matches_reference(rng, eps):
    x = rng.normal(size=(4, 3, 7)) + 1
    weight = rng.normal(size=7)
    np.testing.assert_allclose(
        geomln.rms_norm(x, weight=weight, eps=eps),
        ref_norm(x, projection=False, weight=weight, eps=eps),
        rtol=1e-12,
        atol=1e-12,
    )


def test_rms_norm_without_eps_is_scale(rng):
    x = rng.normal(size=(9, 4)) + 3
    np.testing.assert_allclose(geomln.rms_norm(x, eps=0.0), geomln.scale(x), rtol=1e-13)


def test_rms_norm_default_eps(rng):
    x = rng.normal(size=(3, 4)) * 1e-4
    np.testing.assert_allclose(geomln.rms_norm(x), ref_norm(x, projection=False, eps=1e-6), rtol=1e-12)


# --------------------------------------------------------------------------------------------- torch


@pytest.mark.torch
@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm_matches_torch(rng, affine):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x = rng.normal(size=(3, 5, 16)) * 2 + 1
    weight = rng.normal(size=16) if affine else None
    bias = rng.normal(size=16) if affine else None

    def t(a, dtype):
        return None if a is None else torch.tensor(a, dtype=dtype)

    ours = geomln.layer_norm(x, weight=weight, bias=bias, eps=1e-5)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        theirs = F.layer_norm(t(x, dtype), (16,), weight=t(weight, dtype), bias=t(bias, dtype), eps=1e-5)
        np.testing.assert_allclose(ours, theirs.double().numpy(), rtol=tol, atol=tol)


@pytest.mark.torch
def test_layer_norm_accepts_torch_tensors(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(4, 8))
    tensor = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(geomln.layer_norm(tensor), ref_norm(x), rtol=1e-12, atol=1e-12)
    half = torch.tensor(x, dtype=torch.bfloat16)
    np.testing.assert_allclose(
        geomln.layer_norm(half), ref_norm(half.float().numpy()), rtol=1e-12, atol=1e-12
    )


@pytest.mark.torch
def test_rms_norm_matches_torch(rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    if not hasattr(F, "rms_norm"):
        pytest.skip("torch.nn.functional.rms_norm needs torch >= 2.4")
    x = rng.normal(size=(6, 12))
    weight = rng.normal(size=12)
    theirs = F.rms_norm(torch.tensor(x), (12,), weight=torch.tensor(weight), eps=1e-6)
    np.testing.assert_allclose(
        geomln.rms_norm(x, weight=weight, eps=1e-6), theirs.numpy(), rtol=1e-12, atol=1e-12
    )


# --------------------------------------------------------------------------------------------- errors

FUNCTIONS = {
    "project": geomln.project,
    "scale": geomln.scale,
    "layer_norm": geomln.layer_norm,
    "factorized_layer_norm": geomln.factorized_layer_norm,
    "rms_norm": geomln.rms_norm,
}


@pytest.mark.parametrize("func", FUNCTIONS.values(), ids=FUNCTIONS.keys())
def test_nan_is_reported_with_its_first_row(func):
    x = np.ones((5, 3))
    x[3, 1] = np.nan
    x[4, 0] = np.nan
    with pytest.raises(InputError, match=r"`x` contains 2 NaN values \(first at row 3\)"):
        func(x)


@pytest.mark.parametrize("func", FUNCTIONS.values(), ids=FUNCTIONS.keys())
def test_inf_is_reported_with_its_first_position(func):
    x = np.ones((2, 3, 4))
    x[1, 2, 0] = -np.inf
    with pytest.raises(InputError, match=r"`x` contains 1 infinite value \(first at index \(1, 2, 0\)\)"):
        func(x)


def test_nan_and_inf_are_both_counted_in_a_vector():
    with pytest.raises(
        InputError, match=r"`x` contains 1 NaN value and 2 infinite values \(first at index 1\)"
    ):
        geomln.layer_norm([1.0, np.inf, np.nan, -np.inf])


@pytest.mark.parametrize("func", FUNCTIONS.values(), ids=FUNCTIONS.keys())
def test_scalar_is_rejected(func):
    with pytest.raises(InputError, match=r"`x` must have at least 1 dimension\(s\); got shape \(\)"):
        func(3.0)


@pytest.mark.parametrize("func", FUNCTIONS.values(), ids=FUNCTIONS.keys())
@pytest.mark.parametrize("shape", [(0,), (0, 4), (3, 0)])
def test_empty_is_rejected(func, shape):
    with pytest.raises(InputError, match=r"`x` must not be empty; got shape"):
        func(np.zeros(shape))


@pytest.mark.parametrize("func", FUNCTIONS.values(), ids=FUNCTIONS.keys())
@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array([["a", "b"]]), r"`x` must be a numeric array; got dtype <U1"),
        (np.array([1 + 2j, 3]), r"`x` must be real-valued; got complex dtype complex128"),
        (np.array([1.0, None]), r"`x` must be a numeric array; got dtype object"),
        ([[1.0, 2.0], [3.0]], r"`x` must be a numeric array; could not convert it"),
    ],
    ids=["str", "complex", "object", "ragged"],
)
def test_non_numeric_and_complex_are_type_errors(func, value, match):
    with pytest.raises(TypeError, match=match):
        func(value)


@pytest.mark.parametrize("name", ["weight", "bias"])
def test_affine_length_mismatch_names_the_argument(rng, name):
    x = rng.normal(size=(3, 4))
    with pytest.raises(
        InputError, match=rf"`{name}` must have length 4 \(the last axis of `x`\); got length 5"
    ):
        geomln.layer_norm(x, **{name: np.ones(5)})
    with pytest.raises(InputError, match=rf"`{name}` must be a 1-D array; got shape \(1, 4\)"):
        geomln.factorized_layer_norm(x, **{name: np.ones((1, 4))})
    with pytest.raises(InputError, match=rf"`{name}` contains 1 NaN value \(first at index 2\)"):
        geomln.layer_norm(x, **{name: [1.0, 1.0, np.nan, 1.0]})


def test_rms_norm_weight_mismatch():
    with pytest.raises(InputError, match=r"`weight` must have length 2"):
        geomln.rms_norm([[1.0, 2.0]], weight=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("func", [geomln.layer_norm, geomln.factorized_layer_norm, geomln.rms_norm])
@pytest.mark.parametrize("eps", [-1e-5, np.nan, np.inf])
def test_bad_eps_is_rejected(func, eps):
    with pytest.raises(InputError, match=r"`eps` must be a finite number >= 0; got"):
        func([[1.0, 2.0, 3.0]], eps=eps)


def test_scale_zero_vector_names_its_row():
    x = np.ones((4, 3))
    x[2] = 0.0
    x[3] = 0.0
    with pytest.raises(
        InputError, match=r"`x` has 2 zero vector\(s\) \(first at row 2\).*Use layer_norm or rms_norm"
    ):
        geomln.scale(x)


def test_scale_zero_vector_in_higher_rank_names_its_index():
    x = np.ones((2, 3, 4))
    x[1, 0] = 0.0
    with pytest.raises(InputError, match=r"`x` has 1 zero vector\(s\) \(first at index \(1, 0\)\)"):
        geomln.scale(x)


def test_scale_single_zero_vector():
    with pytest.raises(InputError, match=r"`x` is a zero vector; a zero vector cannot be scaled"):
        geomln.scale([0.0, 0.0])


def test_scale_of_projected_constant_rows_is_an_error_not_nan():
    with pytest.raises(InputError, match=r"`x` has 1 zero vector\(s\) \(first at row 1\)"):
        geomln.scale(geomln.project([[1.0, 2.0], [5.0, 5.0]]))
