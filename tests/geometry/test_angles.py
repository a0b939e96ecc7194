"""Angles to directions, to 1, and best-fit hyperplanes.

Oracles: angles from ``math.atan2`` of an exactly summed dot product and cross norm; the best-fit
normal from ``numpy.linalg.eigh`` of the scatter matrix (not the SVD used by the code).
"""

import dataclasses
import math

import numpy as np
import pytest

import geomln
from geomln import InputError

# --------------------------------------------------------------------------------------------- oracles


def ref_angle(u, v):
    """Angle in degrees via atan2(|u x v|, u . v), with |u x v|^2 = |u|^2 |v|^2 - (u . v)^2 summed exactly."""
    u = [float(a) for a in u]
    v = [float(b) for b in v]
    dot = math.fsum(a * b for a, b in zip(u, v, strict=True))
    cross2 = math.fsum((u[i] * v[j] - u[j] * v[i]) ** 2 for i in range(len(u)) for j in range(i + 1, len(u)))
    return math.degrees(math.atan2(math.sqrt(cross2), dot))


def ref_angles(vectors, direction):
    rows = np.asarray(vectors, dtype=float).reshape(-1, len(direction))
    return np.array([ref_angle(row, direction) for row in rows]).reshape(np.shape(vectors)[:-1])


def ref_normal_and_rms(points):
    points = np.asarray(points, dtype=float)
    centred = points - points.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    return vectors[:, 0], math.sqrt(max(values[0], 0.0) / len(points))


def random_rotation(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------------------------- angle_to


@pytest.mark.parametrize(
    ("vector", "direction", "expected", "folded"),
    [
        ([1.0, 0.0], [1.0, 0.0], 0.0, 0.0),
        ([0.0, 2.0], [3.0, 0.0], 90.0, 90.0),
        ([1.0, 1.0], [1.0, 0.0], 45.0, 45.0),
        ([1.0, math.sqrt(3.0)], [1.0, 0.0], 60.0, 60.0),
        ([-1.0, 1.0], [1.0, 0.0], 135.0, 45.0),
        ([-1.0, math.sqrt(3.0)], [5.0, 0.0], 120.0, 60.0),
        ([-4.0, 0.0], [1.0, 0.0], 180.0, 0.0),
        ([1.0, 1.0, 1.0], [1.0, 0.0, 0.0], math.degrees(math.acos(1 / math.sqrt(3))), None),
        ([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], 90.0, 90.0),
    ],
)
def test_angle_to_known_values(vector, direction, expected, folded):
    assert geomln.angle_to([vector], direction)[0] == pytest.approx(expected, abs=1e-12)
    folded = min(expected, 180 - expected) if folded is None else folded
    assert geomln.angle_to([vector], direction, folded=True)[0] == pytest.approx(folded, abs=1e-12)


@pytest.mark.parametrize("d", [2, 3, 10, 64])
def test_angle_to_matches_reference(rng, d):
    vectors = rng.normal(size=(30, d))
    direction = rng.normal(size=d)
    expected = ref_angles(vectors, direction)
    np.testing.assert_allclose(geomln.angle_to(vectors, direction), expected, rtol=0, atol=1e-11)
    np.testing.assert_allclose(
        geomln.angle_to(vectors, direction, folded=True),
        np.minimum(expected, 180 - expected),
        rtol=0,
        atol=1e-11,
    )


@pytest.mark.parametrize("t", [1e-2, 1e-5, 1e-8, 1e-10, 1e-13])
def test_angle_to_is_accurate_near_zero_and_180(t):
    expected = math.degrees(math.atan(t))
    assert geomln.angle_to([[1.0, t]], [1.0, 0.0])[0] == pytest.approx(expected, rel=1e-12)
    assert geomln.angle_to([[-1.0, t]], [1.0, 0.0])[0] == pytest.approx(
        180.0 - expected, rel=1e-15, abs=1e-12
    )
    assert geomln.angle_to([[-1.0, t]], [1.0, 0.0], folded=True)[0] == pytest.approx(expected, rel=1e-9)


def test_angle_of_a_vector_to_itself_is_zero(rng):
    vectors = rng.normal(size=(100, 7))
    for factor in (1.0, 3.7, 1e-9):
        same = np.array([geomln.angle_to(v, v * factor) for v in vectors])
        assert same.max() < 1e-12
        opposite = np.array([geomln.angle_to(v, -factor * v) for v in vectors])
        assert np.abs(opposite - 180.0).max() < 1e-12


def test_folded_is_the_angle_to_the_line(rng):
    vectors = rng.normal(size=(40, 5))
    direction = rng.normal(size=5)
    plain = geomln.angle_to(vectors, direction)
    folded = geomln.angle_to(vectors, direction, folded=True)
    np.testing.assert_allclose(folded, 90 - np.abs(plain - 90), atol=1e-12)
    np.testing.assert_allclose(folded, geomln.angle_to(-vectors, direction, folded=True), atol=1e-12)
    np.testing.assert_allclose(folded, geomln.angle_to(vectors, -direction, folded=True), atol=1e-12)
    np.testing.assert_allclose(geomln.angle_to(-vectors, direction), 180 - plain, atol=1e-12)
    assert folded.min() >= 0 and folded.max() <= 90 and plain.min() >= 0 and plain.max() <= 180


@pytest.mark.parametrize("factor", [1e-200, 1e-6, 0.5, 13.0, 1e200])
def test_angle_to_is_invariant_to_positive_scaling(rng, factor):
    vectors = rng.normal(size=(25, 6))
    direction = rng.normal(size=6)
    base = geomln.angle_to(vectors, direction)
    np.testing.assert_allclose(geomln.angle_to(vectors * factor, direction), base, atol=1e-11)
    np.testing.assert_allclose(geomln.angle_to(vectors, direction * factor), base, atol=1e-11)
    per_row = rng.uniform(0.1, 10, size=(25, 1))
    np.testing.assert_allclose(geomln.angle_to(vectors * per_row, direction), base, atol=1e-11)


def test_angle_to_is_equivariant_to_row_permutation(rng):
    vectors = rng.normal(size=(20, 4))
    direction = rng.normal(size=4)
    order = rng.permutation(20)
    # not bit for bit: numpy's SIMD loops (arctan2, sqrt) may round an element by its position in the array
    np.testing.assert_allclose(
        geomln.angle_to(vectors[order], direction), geomln.angle_to(vectors, direction)[order], rtol=0, atol=1e-12
    )


def test_angle_to_is_invariant_to_rotations_and_coordinate_permutations(rng):
    vectors = rng.normal(size=(20, 5))
    direction = rng.normal(size=5)
    base = geomln.angle_to(vectors, direction)
    q = random_rotation(rng, 5)
    np.testing.assert_allclose(geomln.angle_to(vectors @ q.T, q @ direction), base, atol=1e-10)
    cols = rng.permutation(5)
    np.testing.assert_allclose(geomln.angle_to(vectors[:, cols], direction[cols]), base, atol=1e-12)


def test_angle_to_shapes(rng):
    direction = rng.normal(size=4)
    assert geomln.angle_to(rng.normal(size=(2, 3, 4)), direction).shape == (2, 3)
    single = geomln.angle_to(rng.normal(size=4), direction)
    assert single.shape == ()
    stack = rng.normal(size=(2, 3, 4))
    np.testing.assert_allclose(
        geomln.angle_to(stack, direction).ravel(), ref_angles(stack.reshape(6, 4), direction)
    )


# --------------------------------------------------------------------------------------------- angle_to_ones


def test_angle_to_ones_is_angle_to_ones_vector(rng):
    vectors = rng.normal(size=(15, 6)) + 0.3
    np.testing.assert_array_equal(geomln.angle_to_ones(vectors), geomln.angle_to(vectors, np.ones(6)))
    np.testing.assert_array_equal(
        geomln.angle_to_ones(vectors, folded=True), geomln.angle_to(vectors, np.ones(6), folded=True)
    )


def test_angle_to_ones_known_values():
    np.testing.assert_allclose(
        geomln.angle_to_ones([[2.0, 2.0, 2.0], [-1.0, -1.0, -1.0], [1.0, -1.0, 0.0]]),
        [0.0, 180.0, 90.0],
        atol=1e-12,
    )
    np.testing.assert_allclose(geomln.angle_to_ones([[-1.0, -1.0, -1.0]], folded=True), [0.0], atol=1e-12)
    np.testing.assert_allclose(geomln.angle_to_ones([[1.0, 0.0, 0.0, 0.0]]), [60.0], atol=1e-12)


def test_layer_norm_outputs_are_orthogonal_to_ones(rng):
    keys = geomln.layer_norm(rng.normal(size=(200, 16)) * 3 + 1)
    np.testing.assert_allclose(geomln.angle_to_ones(keys), 90.0, atol=1e-10)
    np.testing.assert_allclose(geomln.angle_to_ones(keys, folded=True), 90.0, atol=1e-10)
    # the paper's contrast: without projection the keys are not orthogonal to 1
    rms = geomln.rms_norm(rng.normal(size=(200, 16)) + 1)
    assert geomln.angle_to_ones(rms, folded=True).mean() < 80


# --------------------------------------------------------------------------------------------- fit_hyperplane


def test_fit_hyperplane_on_layer_norm_outputs_has_normal_along_ones(rng):
    d = 12
    keys = geomln.layer_norm(rng.normal(size=(300, d)) * 2 - 1)
    plane = geomln.fit_hyperplane(keys)
    np.testing.assert_allclose(plane.normal, np.ones(d) / math.sqrt(d), atol=1e-12)
    assert plane.rms_residual < 1e-12
    assert plane.angle_to_ones < 1e-9
    assert abs(plane.offset) < 1e-12
    assert plane.is_unique


def test_fit_hyperplane_on_affine_layer_norm_outputs(rng):
    # y = z * w + b with sum(z) = 0, so (y - b) / w sums to 0: the normal is parallel to 1 / w
    d = 6
    weight, bias = rng.uniform(0.5, 2.0, size=d), rng.normal(size=d)
    keys = geomln.layer_norm(rng.normal(size=(100, d)), weight=weight, bias=bias)
    plane = geomln.fit_hyperplane(keys)
    expected = (1 / weight) / np.linalg.norm(1 / weight)
    np.testing.assert_allclose(plane.normal, expected, atol=1e-12)
    assert plane.offset == pytest.approx(expected @ bias, abs=1e-12)
    assert plane.rms_residual < 1e-12
    assert plane.angle_to_ones == pytest.approx(ref_angle(expected, np.ones(d)), abs=1e-9)
    assert plane.angle_to_ones > 1.0


def test_fit_hyperplane_on_gaussian_data_is_neither(rng):
    d = 8
    points = rng.normal(size=(400, d))
    plane = geomln.fit_hyperplane(points)
    normal, rms = ref_normal_and_rms(points)
    assert plane.rms_residual == pytest.approx(rms, rel=1e-9)
    assert plane.rms_residual > 0.5
    assert abs(plane.normal @ normal) == pytest.approx(1.0, abs=1e-9)
    assert plane.angle_to_ones > 10.0
    assert plane.is_unique


@pytest.mark.parametrize(("n", "d"), [(3, 2), (10, 3), (50, 5), (5, 5), (3, 7)])
def test_fit_hyperplane_matches_eigh_reference(rng, n, d):
    points = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    plane = geomln.fit_hyperplane(points)
    normal, rms = ref_normal_and_rms(points)
    assert np.linalg.norm(plane.normal) == pytest.approx(1.0, abs=1e-14)
    assert plane.normal.sum() >= 0
    np.testing.assert_allclose(plane.centroid, points.mean(axis=0), atol=1e-12)
    assert plane.offset == pytest.approx(plane.normal @ points.mean(axis=0), abs=1e-12)
    assert plane.rms_residual == pytest.approx(rms, abs=1e-7)
    if plane.is_unique and n > d:
        assert abs(plane.normal @ normal) == pytest.approx(1.0, abs=1e-8)
    unfolded = ref_angle(plane.normal, np.ones(d))
    assert plane.angle_to_ones == pytest.approx(min(unfolded, 180 - unfolded), abs=1e-9)


def test_fit_hyperplane_is_optimal_among_random_planes(rng):
    points = rng.normal(size=(60, 4)) * [1, 2, 3, 0.5]
    plane = geomln.fit_hyperplane(points)
    centred = points - points.mean(axis=0)
    for normal in rng.normal(size=(200, 4)):
        normal /= np.linalg.norm(normal)
        assert np.sqrt(np.mean((centred @ normal) ** 2)) >= plane.rms_residual - 1e-12


def test_fit_hyperplane_known_plane(rng):
    # points on x + 2y - 2z = 3: unit normal (1, 2, -2) / 3 (its sum is positive), offset 1
    uv = rng.normal(size=(20, 2))
    basis = np.array([[2.0, -1.0, 0.0], [2.0, 0.0, 1.0]])  # both orthogonal to (1, 2, -2)
    points = uv @ basis + np.array([3.0, 0.0, 0.0])
    plane = geomln.fit_hyperplane(points)
    np.testing.assert_allclose(plane.normal, [1 / 3, 2 / 3, -2 / 3], atol=1e-12)
    assert plane.offset == pytest.approx(1.0, abs=1e-12)
    assert plane.rms_residual < 1e-12
    assert plane.is_unique


def test_fit_hyperplane_orientation_tie_breaks_on_first_nonzero_component():
    # the line y = x + 1 in 2-D has normal (1, -1)/sqrt(2) or its negative; their sums are both 0
    t = np.linspace(-2, 2, 7)
    plane = geomln.fit_hyperplane(np.column_stack([t, t + 1]))
    np.testing.assert_allclose(plane.normal, [1 / math.sqrt(2), -1 / math.sqrt(2)], atol=1e-12)
    assert plane.offset == pytest.approx(-1 / math.sqrt(2), abs=1e-12)


def test_fit_hyperplane_translation(rng):
    points = rng.normal(size=(40, 5)) * [1, 1, 1, 1, 0.1]
    shift = rng.normal(size=5) * 10
    a, b = geomln.fit_hyperplane(points), geomln.fit_hyperplane(points + shift)
    np.testing.assert_allclose(b.normal, a.normal, atol=1e-10)
    np.testing.assert_allclose(b.centroid, a.centroid + shift, atol=1e-12)
    assert b.offset == pytest.approx(a.offset + a.normal @ shift, abs=1e-9)
    assert b.rms_residual == pytest.approx(a.rms_residual, rel=1e-9)
    assert b.angle_to_ones == pytest.approx(a.angle_to_ones, abs=1e-8)


def test_fit_hyperplane_rotation(rng):
    points = rng.normal(size=(40, 4)) * [3, 2, 1, 0.2]
    q = random_rotation(rng, 4)
    a, b = geomln.fit_hyperplane(points), geomln.fit_hyperplane(points @ q.T)
    assert abs(b.normal @ (q @ a.normal)) == pytest.approx(1.0, abs=1e-10)
    assert b.rms_residual == pytest.approx(a.rms_residual, rel=1e-9)
    assert abs(b.offset) == pytest.approx(abs(a.offset), abs=1e-10)


@pytest.mark.parametrize("factor", [1e-3, 2.5, 1e4])
def test_fit_hyperplane_positive_scaling(rng, factor):
    points = rng.normal(size=(30, 3)) * [2, 1, 0.3] + 1
    a, b = geomln.fit_hyperplane(points), geomln.fit_hyperplane(points * factor)
    np.testing.assert_allclose(b.normal, a.normal, atol=1e-10)
    assert b.rms_residual == pytest.approx(a.rms_residual * factor, rel=1e-9)
    assert b.offset == pytest.approx(a.offset * factor, rel=1e-9)
    assert b.is_unique == a.is_unique


def test_fit_hyperplane_row_permutation(rng):
    points = rng.normal(size=(25, 4)) * [1, 2, 3, 0.1]
    a, b = geomln.fit_hyperplane(points), geomln.fit_hyperplane(points[rng.permutation(25)])
    np.testing.assert_allclose(b.normal, a.normal, atol=1e-12)
    assert b.rms_residual == pytest.approx(a.rms_residual, rel=1e-10)
    assert b.offset == pytest.approx(a.offset, abs=1e-12)


UNIQUENESS_CASES = {
    "generic 3-D": (lambda rng: rng.normal(size=(20, 3)), True),
    "two points in 2-D": (lambda rng: np.array([[0.0, 1.0], [2.0, 3.0]]), True),
    "d points in d-D": (lambda rng: rng.normal(size=(5, 5)), True),
    "layer norm outputs": (lambda rng: geomln.layer_norm(rng.normal(size=(30, 4))), True),
    "two points in 3-D": (lambda rng: rng.normal(size=(2, 3)), False),
    "collinear in 3-D": (lambda rng: np.outer(np.arange(6.0), [1.0, 2.0, 3.0]) + 1, False),
    "all equal": (lambda rng: np.ones((4, 3)), False),
    "coplanar in 4-D": (lambda rng: rng.normal(size=(10, 2)) @ rng.normal(size=(2, 4)), False),
    "cross-polytope (isotropic)": (lambda rng: np.vstack([np.eye(3), -np.eye(3)]), False),
    "square (isotropic)": (lambda rng: np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]), False),
}


@pytest.mark.parametrize("case", UNIQUENESS_CASES, ids=UNIQUENESS_CASES)
def test_fit_hyperplane_is_unique(rng, case):
    make, expected = UNIQUENESS_CASES[case]
    points = make(rng)
    plane = geomln.fit_hyperplane(points)
    assert plane.is_unique is expected
    # independent check: the fit is unique iff the smallest eigenvalue of the scatter matrix is simple
    values = np.linalg.eigvalsh((points - points.mean(0)).T @ (points - points.mean(0)))
    assert bool(values[1] - values[0] > 1e-9 * max(values[-1], 1e-300)) is expected


def test_fit_hyperplane_exact_fit_when_n_equals_d(rng):
    plane = geomln.fit_hyperplane(rng.normal(size=(4, 4)))
    assert plane.rms_residual < 1e-12


def test_hyperplane_is_frozen(rng):
    plane = geomln.fit_hyperplane(rng.normal(size=(5, 3)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plane.offset = 1.0
    assert plane.normal.shape == (3,) and plane.centroid.shape == (3,)
    assert isinstance(plane.offset, float) and isinstance(plane.rms_residual, float)
    assert isinstance(plane.angle_to_ones, float) and isinstance(plane.is_unique, bool)


# ------------------------------------------------------------------------------------ angle_to_hyperplane


def test_angle_to_hyperplane_known_values():
    np.testing.assert_allclose(
        geomln.angle_to_hyperplane([[1.0, -1.0], [1.0, 1.0], [1.0, 0.0], [-3.0, -3.0]], [2.0, 2.0]),
        [0.0, 90.0, 45.0, 90.0],
        atol=1e-12,
    )
    np.testing.assert_allclose(
        geomln.angle_to_hyperplane([[1.0, 0.0, 1.0]], [0.0, 0.0, 1.0]), [45.0], atol=1e-12
    )


def test_angle_to_hyperplane_matches_reference(rng):
    vectors = rng.normal(size=(30, 5))
    normal = rng.normal(size=5)
    expected = [
        math.degrees(math.asin(abs(v @ normal) / (np.linalg.norm(v) * np.linalg.norm(normal))))
        for v in vectors
    ]
    np.testing.assert_allclose(geomln.angle_to_hyperplane(vectors, normal), expected, atol=1e-10)
    np.testing.assert_allclose(geomln.angle_to_hyperplane(vectors, -3 * normal), expected, atol=1e-10)


def test_layer_norm_outputs_lie_in_the_fitted_plane(rng):
    keys = geomln.layer_norm(rng.normal(size=(100, 8)))
    plane = geomln.fit_hyperplane(keys)
    np.testing.assert_allclose(geomln.angle_to_hyperplane(keys, plane.normal), 0.0, atol=1e-9)
    np.testing.assert_allclose(geomln.angle_to_hyperplane(keys, np.ones(8)), 0.0, atol=1e-9)


# --------------------------------------------------------------------------------------------- errors


def test_angle_to_zero_vector_names_its_row():
    with pytest.raises(
        InputError, match=r"`vectors` has 1 zero vector\(s\) \(first at row 2\); its angle is undefined"
    ):
        geomln.angle_to([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [1.0, 1.0])
    stack = np.ones((2, 2, 3))
    stack[0, 1] = stack[1, 0] = 0.0
    with pytest.raises(InputError, match=r"`vectors` has 2 zero vector\(s\) \(first at index \(0, 1\)\)"):
        geomln.angle_to(stack, [1.0, 1.0, 1.0])
    with pytest.raises(InputError, match=r"`vectors` is a zero vector"):
        geomln.angle_to([0.0, 0.0], [1.0, 1.0])


def test_angle_to_zero_direction():
    with pytest.raises(InputError, match=r"`direction` is a zero vector; its angle is undefined"):
        geomln.angle_to([[1.0, 2.0]], [0.0, 0.0])


def test_angle_to_length_mismatch():
    with pytest.raises(
        InputError, match=r"`direction` must have length 3 \(the last axis of `vectors`\); got length 2"
    ):
        geomln.angle_to(np.ones((4, 3)), [1.0, 1.0])
    with pytest.raises(InputError, match=r"`direction` must be a 1-D array; got shape \(1, 3\)"):
        geomln.angle_to(np.ones((4, 3)), [[1.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "call",
    [
        lambda v: geomln.angle_to(v, [1.0, 1.0]),
        lambda v: geomln.angle_to_ones(v),
        lambda v: geomln.angle_to_hyperplane(v, [1.0, 1.0]),
    ],
    ids=["angle_to", "angle_to_ones", "angle_to_hyperplane"],
)
def test_angle_functions_reject_bad_vectors(call):
    with pytest.raises(InputError, match=r"`vectors` contains 1 NaN value \(first at row 1\)"):
        call([[1.0, 2.0], [np.nan, 1.0]])
    with pytest.raises(InputError, match=r"`vectors` contains 1 infinite value \(first at row 0\)"):
        call([[np.inf, 2.0], [1.0, 1.0]])
    with pytest.raises(InputError, match=r"`vectors` must not be empty; got shape \(0, 2\)"):
        call(np.zeros((0, 2)))
    with pytest.raises(InputError, match=r"`vectors` must have at least 1 dimension\(s\); got shape \(\)"):
        call(1.0)
    with pytest.raises(TypeError, match=r"`vectors` must be a numeric array; got dtype <U"):
        call([["a", "b"]])
    with pytest.raises(TypeError, match=r"`vectors` must be real-valued; got complex dtype"):
        call([[1j, 1.0]])


def test_angle_to_direction_nan_and_type():
    with pytest.raises(InputError, match=r"`direction` contains 1 NaN value \(first at index 1\)"):
        geomln.angle_to([[1.0, 2.0]], [1.0, np.nan])
    with pytest.raises(TypeError, match=r"`direction` must be real-valued"):
        geomln.angle_to([[1.0, 2.0]], [1.0, 1j])


def test_angle_to_hyperplane_errors_name_the_normal():
    with pytest.raises(InputError, match=r"`normal` is a zero vector; its angle is undefined"):
        geomln.angle_to_hyperplane([[1.0, 2.0]], [0.0, 0.0])
    with pytest.raises(
        InputError, match=r"`normal` must have length 2 \(the last axis of `vectors`\); got length 3"
    ):
        geomln.angle_to_hyperplane([[1.0, 2.0]], [1.0, 0.0, 0.0])
    with pytest.raises(InputError, match=r"`vectors` has 1 zero vector\(s\) \(first at row 0\)"):
        geomln.angle_to_hyperplane([[0.0, 0.0]], [1.0, 0.0])


def test_fit_hyperplane_errors():
    with pytest.raises(
        InputError, match=r"`points` must have at least 2 column\(s\) \(d >= 2\); got shape \(5, 1\)"
    ):
        geomln.fit_hyperplane(np.arange(5.0).reshape(5, 1))
    with pytest.raises(InputError, match=r"`points` must have at least 2 row\(s\); got shape \(1, 3\)"):
        geomln.fit_hyperplane([[1.0, 2.0, 3.0]])
    with pytest.raises(InputError, match=r"`points` must be a 2-D array of shape \(n, d\); got shape \(3,\)"):
        geomln.fit_hyperplane([1.0, 2.0, 3.0])
    with pytest.raises(
        InputError, match=r"`points` must be a 2-D array of shape \(n, d\); got shape \(2, 2, 2\)"
    ):
        geomln.fit_hyperplane(np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match=r"`points` must have at least 2 row\(s\); got shape \(0, 3\)"):
        geomln.fit_hyperplane(np.zeros((0, 3)))
    with pytest.raises(InputError, match=r"`points` contains 1 NaN value \(first at row 2\)"):
        geomln.fit_hyperplane([[0.0, 1.0], [1.0, 0.0], [np.nan, 0.0]])
    with pytest.raises(TypeError, match=r"`points` must be real-valued"):
        geomln.fit_hyperplane(np.ones((3, 2), dtype=complex))
