"""The large-n, low-dimension path of selectable_keys (geomln/engine/_lowdim.py) against Qhull and the engine."""

import numpy as np
import pytest
from oracles import qhull_vertices
from scipy.stats import special_ortho_group

import geomln
from geomln.engine import _kernels, _lowdim
from geomln.engine.certificates import verify_selectability
from geomln.engine.selectability import selectable_keys

N = _lowdim.MIN_KEYS + 5_000


def engine_only(keys):
    """The general path: method="wolfe" is "auto" without the low-dimension shortcut."""
    return selectable_keys(keys, method="wolfe")


@pytest.mark.parametrize("d", [2, 3, 4])
@pytest.mark.parametrize("distribution", ["gaussian", "cube", "ball_shell"])
def test_fast_path_matches_qhull_the_engine_and_its_certificates(d, distribution):
    gen = np.random.default_rng([d, len(distribution)])
    keys = gen.standard_normal((N, d))
    if distribution == "cube":
        keys = gen.uniform(-1.0, 1.0, (N, d))
    elif distribution == "ball_shell":  # many keys near the boundary: most of them survive to the engine
        keys /= np.linalg.norm(keys, axis=1, keepdims=True)
        keys *= gen.uniform(0.97, 1.0, (N, 1))
    frame = _lowdim.full_rank_frame(keys, 1e-9)
    inner = _lowdim.inner_polytope(frame.coords, 1e-9)
    assert inner is not None and inner.certified.size > 0  # the shortcut really certifies keys here
    result = selectable_keys(keys)
    assert len(verify_selectability(keys, result)) == 0
    np.testing.assert_array_equal(result.selectable_indices, qhull_vertices(keys))
    np.testing.assert_array_equal(result.selectable_mask, engine_only(keys).selectable_mask)
    assert result.affine_rank == d and (result.duplicate_of == -1).all()
    witnessed = result.selectable_indices
    scores = keys @ result.witness_queries[witnessed].T  # witness margins are exact over all keys
    scores[witnessed, np.arange(witnessed.size)] = -np.inf
    own = np.einsum("ij,ij->i", keys[witnessed], result.witness_queries[witnessed])
    margins = (own - scores.max(axis=0)) / result.scale
    np.testing.assert_allclose(result.margins[witnessed] * np.linalg.norm(result.witness_queries[witnessed], axis=1),
                               margins, rtol=1e-6)


def test_fast_path_is_invariant_under_rotation_translation_scaling_and_permutation():
    gen = np.random.default_rng(7)
    keys = gen.standard_normal((N, 3))
    order = gen.permutation(N)
    moved = 2.5 * keys[order] @ special_ortho_group.rvs(3, random_state=3) + [4.0, -1.0, 0.5]
    first, second = selectable_keys(keys), selectable_keys(moved)
    np.testing.assert_array_equal(first.selectable_mask[order], second.selectable_mask)
    assert len(verify_selectability(moved, second)) == 0


def test_flat_and_repeated_large_sets_go_through_the_engine_and_stay_exact():
    gen = np.random.default_rng(8)
    plane = gen.standard_normal((N, 2)) @ np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])  # rank 2 in R^3
    assert _lowdim.full_rank_frame(plane, 1e-9) is None
    flat = selectable_keys(plane)
    assert flat.affine_rank == 2
    np.testing.assert_array_equal(flat.selectable_indices, qhull_vertices(plane[:, :2]))
    repeated = gen.standard_normal((N, 2))
    repeated[-1] = repeated[0]
    assert _lowdim.full_rank_frame(repeated, 1e-9) is None
    result = selectable_keys(repeated)
    assert result.duplicate_of[0] == N - 1 and result.duplicate_of[N - 1] == 0
    assert len(verify_selectability(repeated, result)) == 0


def test_has_equal_rows_agrees_with_numpy_unique():
    gen = np.random.default_rng(9)
    for rows in (gen.standard_normal((5000, 3)), gen.integers(0, 6, (300, 2)).astype(float),
                 np.array([[0.0, -0.0]]), np.array([[0.0], [-0.0]])):
        expected = np.unique(rows, axis=0).shape[0] < rows.shape[0]
        assert _kernels.has_equal_rows(np.ascontiguousarray(rows)) == expected


def test_small_sets_and_bias_do_not_take_the_shortcut(monkeypatch):
    calls = []
    monkeypatch.setattr(_lowdim, "inner_polytope", lambda *args: calls.append(args) or None)
    keys = np.random.default_rng(10).standard_normal((N, 2))
    geomln.selectable_keys(keys[:1000])
    geomln.selectable_keys(keys, bias=np.zeros(N))
    geomln.selectable_keys(np.random.default_rng(11).standard_normal((N, 5)))
    assert calls == []
    geomln.selectable_keys(keys)
    assert len(calls) == 1


def test_a_key_within_tol_of_a_polytope_vertex_sends_the_set_to_the_engine(monkeypatch):
    gen = np.random.default_rng(12)
    keys = gen.standard_normal((N, 3))
    top = int(np.argmax(keys[:, 0]))  # extreme along +x: a vertex of the first round's polytope
    keys[-1] = keys[top] * (1.0 - 3e-9)  # certified inside, but closer to that vertex than 10 tol
    outcomes = []
    original = geomln.engine.selectability._selectable_low_dimension
    monkeypatch.setattr(geomln.engine.selectability, "_selectable_low_dimension",
                        lambda *args: outcomes.append(original(*args)) or outcomes[-1])
    result = selectable_keys(keys)
    assert outcomes == [None]  # the shortcut gave up; the general engine decided
    np.testing.assert_array_equal(result.selectable_mask, engine_only(keys).selectable_mask)
    assert len(verify_selectability(keys, result)) == 0


def test_float32_keys_take_the_shortcut_with_their_tolerance():
    keys = np.random.default_rng(13).standard_normal((N, 3)).astype(np.float32)
    result = selectable_keys(keys)
    assert result.tol == 1e-6
    np.testing.assert_array_equal(result.selectable_mask, engine_only(keys).selectable_mask)
    assert len(verify_selectability(keys, result)) == 0
