"""Pruned top-two scans (``_blocks.py``) against a full NumPy scan, and the sampled warm-up of the decision loop.

Integer coordinates make every score exact, so there the pruned scan must return the very ids of a stable
sort, ties included; on floats a score may differ from NumPy's in its last bit, so there the scores must
agree to rounding and the ids must score what they claim.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from oracles import certificate_failures, lp_selectable, qhull_vertices

from geomln import selectable_keys
from geomln.engine import _blocks as blocks
from geomln.engine import _geometry as geometry
from geomln.engine import _own_sets as own_sets
from geomln.engine import _scan_kernels as scan_kernels


def _unit(rng, b, d):
    directions = rng.standard_normal((b, d))
    return directions / np.linalg.norm(directions, axis=1)[:, None]


def _stable_top_two(points, directions):
    scores = directions @ points.T
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, 0], (order[:, 1] if points.shape[0] > 1 else np.full(directions.shape[0], -1))


@pytest.mark.parametrize("m", [1, 2, 63, 64, 65, 129, 5000])
@pytest.mark.parametrize("d", [1, 3, 8])
def test_integer_keys_give_the_ids_of_a_stable_scan_ties_included(rng, m, d):
    points = rng.integers(-3, 4, size=(m, d)).astype(float)  # many exact ties, duplicates across blocks
    directions = rng.integers(-2, 3, size=(300, d)).astype(float)  # exact scores; the norm does not matter
    directions[(directions == 0).all(axis=1)] = 1.0
    index = blocks.BlockIndex(points)
    top_at, top, second, second_at = index.top_two(directions)
    expected_top, expected_second = _stable_top_two(points, directions)
    np.testing.assert_array_equal(top_at, expected_top)
    np.testing.assert_array_equal(second_at, expected_second)
    scores = directions @ points.T
    np.testing.assert_array_equal(top, scores.max(axis=1))
    if m > 1:
        np.testing.assert_array_equal(second, np.sort(scores, axis=1)[:, -2])
    else:
        assert np.isneginf(second).all()


def test_blocks_hold_every_key_once_within_their_balls(rng):
    points = rng.standard_normal((3000, 5)) * [1, 10, 0.1, 1, 1]
    index = blocks.BlockIndex(points)
    np.testing.assert_array_equal(np.sort(index.ids), np.arange(3000))
    sizes = np.diff(index.starts)
    assert sizes.min() >= 1 and sizes.max() <= blocks.LEAF
    offsets = np.linalg.norm(points[index.ids] - np.repeat(index.centres_t.T, sizes, axis=0), axis=1)
    assert (offsets <= np.repeat(index.radii, sizes)).all()


values_lists = st.lists(st.integers(-3, 3).map(float) | st.floats(-1e300, 1e300, allow_nan=False), min_size=1,
                        max_size=300)


@given(values=values_lists, position=st.floats(0, 1), rounds=st.sampled_from([0, 1, 2, 64]))
@example(values=[float(v) for v in range(200)], position=0.5, rounds=64)  # sorted
@example(values=[float(v) for v in range(200, 0, -1)], position=0.5, rounds=1)  # reversed, then the heap sort
@example(values=[1.0] * 100 + [0.0], position=0.3, rounds=64)  # one run of equal values
@example(values=[2.0, 1.0, 2.0, 1.0, 2.0], position=0.5, rounds=0)  # the heap sort alone, with ties
def test_select_rows_puts_the_kth_value_in_place_and_moves_whole_rows(values, position, rounds):
    values = np.asarray(values)
    k = min(int(position * values.size), values.size - 1)
    rows = np.column_stack([values, np.arange(values.size), -values])
    order = np.arange(values.size) + 7
    scan_kernels.select_rows(rows, order, 0, k, rounds)
    column = rows[:, 0]
    assert (column[:k] <= column[k]).all() and (column[k + 1:] >= column[k]).all()
    assert column[k] == np.sort(values)[k]
    moved = rows[:, 1].astype(np.intp)
    np.testing.assert_array_equal(np.sort(moved), np.arange(values.size))  # a permutation of the rows
    np.testing.assert_array_equal(rows, np.column_stack([values[moved], moved, -values[moved]]))
    np.testing.assert_array_equal(order, moved + 7)


@pytest.mark.parametrize("kind", ["gaussian", "lattice", "equal", "sorted"])
def test_split_blocks_group_every_row_once_in_blocks_of_at_most_leaf(rng, kind):
    points = {"gaussian": rng.standard_normal((3001, 4)), "lattice": np.round(rng.standard_normal((3001, 4))),
              "equal": np.ones((3001, 4)), "sorted": np.repeat(np.arange(3001.0)[:, None], 4, axis=1)}[kind]
    for leaf in (2, 5, 64):
        order, starts, grouped = scan_kernels.split_blocks(points, leaf)
        np.testing.assert_array_equal(np.sort(order), np.arange(3001))
        np.testing.assert_array_equal(grouped, points[order])
        sizes = np.diff(starts)
        assert starts[0] == 0 and starts[-1] == 3001 and sizes.min() >= 1 and sizes.max() <= leaf


@pytest.mark.parametrize("shape", ["gaussian", "sphere", "clusters", "outliers"])
def test_both_paths_agree_with_a_full_scan(rng, shape):
    d = 6
    points = rng.standard_normal((20000, d))
    if shape == "sphere":
        points /= np.linalg.norm(points, axis=1)[:, None]
    elif shape == "clusters":
        points = 0.01 * points + rng.standard_normal((20, d))[rng.integers(0, 20, 20000)]
    elif shape == "outliers":
        points[:5] *= 1e3
    directions = _unit(rng, 600, d)
    expected = scan_kernels.tiled_top_two(points, directions)
    for pays in (None, False):  # decided by the first batch, and the BLAS scan
        index = blocks.BlockIndex(points)
        index.pays = pays
        top_at, top, second, second_at = index.top_two(directions)
        np.testing.assert_allclose(top, expected[1], rtol=1e-13, atol=1e-13 * np.abs(expected[1]).max())
        np.testing.assert_allclose(second, expected[2], rtol=1e-13, atol=1e-13 * np.abs(expected[1]).max())
        scale = np.abs(expected[1]).max()
        np.testing.assert_allclose(np.einsum("bd,bd->b", directions, points[top_at]), top, rtol=0, atol=1e-13 * scale)
        np.testing.assert_allclose(np.einsum("bd,bd->b", directions, points[second_at]), second, rtol=0,
                                   atol=1e-13 * scale)
        assert (top_at != second_at).all()


def test_blocks_are_dropped_where_they_do_not_prune(rng):
    points = rng.standard_normal((20000, 40))  # in 40 dimensions every ball reaches the top scores
    index = blocks.BlockIndex(points)
    index.top_two(_unit(rng, 300, 40))
    assert index.pays is False
    gaussian = blocks.BlockIndex(rng.standard_normal((20000, 4)))
    gaussian.top_two(_unit(rng, 300, 4))
    assert gaussian.pays is True


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), exponent=st.integers(-100, 100), kind=st.sampled_from(["circle", "line", "far"]))
def test_hostile_sets_and_magnitudes_match_a_full_scan(seed, exponent, kind):
    gen = np.random.default_rng(seed)
    if kind == "circle":  # every key a vertex, neighbours a rounding apart in score
        angles = np.sort(gen.uniform(0, 2 * np.pi, 3000))
        points = np.column_stack([np.cos(angles), np.sin(angles), np.zeros(3000)])
    elif kind == "line":  # one spread coordinate: balls are segments
        points = np.column_stack([gen.standard_normal(3000), 1e-9 * gen.standard_normal((3000, 2))])
    else:  # far keys beside a tight cloud
        points = 1e-6 * gen.standard_normal((3000, 3))
        points[gen.integers(0, 3000, 4)] = gen.standard_normal((4, 3)) * 1e6
    points *= 10.0**exponent
    directions = _unit(gen, 300, 3)
    top_at, top, second, second_at = blocks.BlockIndex(points).top_two(directions)
    scores = directions @ points.T
    scale = np.abs(points).max() * 1e-13
    np.testing.assert_allclose(top, scores.max(axis=1), rtol=0, atol=scale)
    np.testing.assert_allclose(second, np.sort(scores, axis=1)[:, -2], rtol=0, atol=scale)
    np.testing.assert_allclose(scores[np.arange(300), top_at], top, rtol=0, atol=scale)
    np.testing.assert_allclose(scores[np.arange(300), second_at], second, rtol=0, atol=scale)


# ------------------------------------------------------------------------------------------------
# the sampled warm-up of the decision loop
# ------------------------------------------------------------------------------------------------


def _outliers(rng, n, d):
    """A tight cloud with a few far keys: the first round finds nearly every key outside the seeds' hull."""
    keys = rng.standard_normal((n, d))
    keys[rng.choice(n, 12, replace=False)] *= 50.0
    return keys


@pytest.mark.parametrize("d", [3, 5])
def test_sampled_warm_up_keeps_the_verdicts_and_certificates(rng, monkeypatch, d):
    keys = _outliers(rng, 9000, d)
    monkeypatch.setattr(own_sets, "MIN_KEYS", 10**9)  # every key through the decision loop
    rounds = []

    def counting(kernel):
        return lambda *args: rounds.append(args[1].shape[0]) or kernel(*args)

    for name in ("distance_to_hull_batch", "distance_to_working_set"):  # per-key or batched checks
        monkeypatch.setattr(geometry.kernels, name, counting(getattr(geometry.kernels, name)))
    sampled = selectable_keys(keys)
    assert rounds[0] == geometry.WARMUP_SAMPLE  # the warm-up ran
    assert certificate_failures(keys, sampled) == {}
    monkeypatch.setattr(geometry, "WARMUP_SAMPLE", 10**9)  # no warm-up
    plain = selectable_keys(keys)
    firm = ~sampled.borderline_mask & ~plain.borderline_mask
    np.testing.assert_array_equal(sampled.selectable_mask[firm], plain.selectable_mask[firm])
    vertices = np.zeros(keys.shape[0], dtype=bool)
    vertices[qhull_vertices(keys)] = True
    np.testing.assert_array_equal(sampled.selectable_mask[~sampled.borderline_mask],
                                  vertices[~sampled.borderline_mask])


# ------------------------------------------------------------------------------------------------
# keys the decision loop leaves stalled: LP over the working set, then Wolfe or the LP over all keys
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_bias", [False, True])
def test_stalled_keys_get_verdicts_of_one_lp_per_key(rng, monkeypatch, with_bias):
    keys = rng.standard_normal((300, 4))
    bias = 0.3 * rng.standard_normal(300) if with_bias else None
    for name in ("distance_to_hull_batch", "distance_to_hull_serial", "distance_to_working_set"):
        kernel = getattr(geometry.kernels, name)

        def stalling(*args, kernel=kernel):
            st, *rest = kernel(*args)
            st = st.copy()
            st[::3] = geometry.kernels.STALLED  # a third of every round: the fallback decides them
            return (st, *rest)

        monkeypatch.setattr(geometry.kernels, name, stalling)
    solved = []
    solve = geometry.solve_on_working_set
    monkeypatch.setattr(geometry, "solve_on_working_set", lambda *a, **k: solved.append(a[2]) or solve(*a, **k))
    result = selectable_keys(keys, bias=bias)
    assert len(solved) > 20
    assert certificate_failures(keys, result, bias=bias) == {}
    firm = ~result.borderline_mask
    np.testing.assert_array_equal(result.selectable_mask[firm], lp_selectable(keys, bias)[firm])
