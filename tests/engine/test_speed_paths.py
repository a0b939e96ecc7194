"""The engine's fast paths (issue 17) against naive NumPy, the general engine, Qhull and the certificate checker.

Own working sets per key (``_own_sets.py``), the scan kernels (``_scan_kernels.py``) and whitening in the
affine frame: each must give the verdicts of the general path, with certificates that an independent checker
accepts in the caller's original coordinates.
"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from oracles import certificate_failures, qhull_vertices

from geomln import selectable_keys, verify_selectability
from geomln.engine import _own_sets as own_sets
from geomln.engine import _scan_kernels as scan_kernels
from geomln.engine import selectability


def _general(keys, monkeypatch):
    """The verdicts without the fast paths (no own working sets, no whitening)."""
    with monkeypatch.context() as patch:
        patch.setattr(selectability, "_whitening_gains", lambda *args: None)
        patch.setattr(selectability, "_decide_with_own_sets",
                      lambda lifted, m, undecided, seeds, tol, method: selectability._decide_keys(
                          lifted, m, undecided, seeds, tol, False, method))
        return selectable_keys(keys)


def _assert_same_firm_verdicts(fast, general):
    firm = ~fast.borderline_mask & ~general.borderline_mask
    np.testing.assert_array_equal(fast.selectable_mask[firm], general.selectable_mask[firm])


# ------------------------------------------------------------------------------------------------
# scan kernels against naive NumPy
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count, width", [(700, 1), (700, 5), (1300, 40), (40, 40)])
def test_top_columns_are_the_highest_scores(rng, count, width):
    directions = rng.standard_normal((30, 5))
    columns = rng.standard_normal((count, 5))
    best = scan_kernels.top_columns(columns, directions, width)
    scores = directions @ columns.T
    chosen = np.take_along_axis(scores, best, axis=1)
    assert (np.sort(best, axis=1)[:, 1:] != np.sort(best, axis=1)[:, :-1]).all()  # distinct columns
    np.testing.assert_allclose(np.sort(chosen, axis=1), np.sort(scores, axis=1)[:, -width:], rtol=0, atol=1e-12)


@pytest.mark.parametrize("m, b", [(5000, 300), (700, 5), (3, 2)])
def test_tiled_top_two_matches_numpy(rng, m, b):
    points = rng.standard_normal((m, 6))
    queries = rng.standard_normal((b, 6))
    points[1] = points[0]  # a tie: the earlier key wins
    top_at, top, second, second_at = scan_kernels.tiled_top_two(points, queries)
    scores = queries @ points.T
    order = np.argsort(-scores, axis=1, kind="stable")
    np.testing.assert_array_equal(top_at, order[:, 0])
    np.testing.assert_array_equal(second_at, order[:, 1])
    np.testing.assert_allclose(top, scores.max(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(second, np.sort(scores, axis=1)[:, -2], rtol=0, atol=1e-12)


def _exact_scan_case(rng, shape):
    # integer keys and queries: exact scores, ties within and across tiles; "rising": every key beats the last
    if shape == "lattice":
        return rng.integers(-2, 3, (5000, 4)).astype(float), rng.integers(-2, 3, (600, 4)).astype(float)
    points = np.repeat(np.arange(2500.0), 2)[:, None] * np.ones((1, 4))
    return points, np.abs(rng.integers(1, 4, (600, 4))).astype(float)


@pytest.mark.parametrize("shape", ["lattice", "rising"])
def test_tiled_scans_keep_the_earlier_key_across_tiles(rng, shape):
    points, queries = _exact_scan_case(rng, shape)
    top_at, top, second, second_at = scan_kernels.tiled_top_two(points, queries)
    scores = queries @ points.T
    order = np.argsort(-scores, axis=1, kind="stable")
    np.testing.assert_array_equal(top_at, order[:, 0])
    np.testing.assert_array_equal(second_at, order[:, 1])
    np.testing.assert_array_equal(top, scores.max(axis=1))
    np.testing.assert_array_equal(second, np.take_along_axis(scores, order[:, 1:2], axis=1)[:, 0])
    best = scan_kernels.top_columns(points, queries, 7)
    np.testing.assert_array_equal(np.sort(best, axis=1), np.sort(order[:, :7], axis=1))


@pytest.mark.parametrize("shape", ["lattice", "rising", "gaussian"])
def test_scans_split_over_threads_give_the_one_thread_result(monkeypatch, rng, shape):
    # three threads: top two over three ranges of keys (merged in order), top columns over three of queries;
    # the ranges are cut between tiles, so even the rounded Gaussian scores are the one thread's bit for bit
    points, queries = _exact_scan_case(rng, shape) if shape != "gaussian" else (rng.standard_normal((5000, 9)),
                                                                                  rng.standard_normal((600, 9)))
    one_thread = [*scan_kernels.tiled_top_two(points, queries), scan_kernels.top_columns(points, queries, 7)]
    ranges, in_threads = [], scan_kernels._in_threads
    monkeypatch.setattr(scan_kernels, "_PARALLEL_WORK", 0)
    monkeypatch.setattr(scan_kernels, "get_num_threads", lambda: 3)
    monkeypatch.setattr(scan_kernels, "_in_threads", lambda f, bounds: ranges.append(bounds) or in_threads(f, bounds))
    threaded = [*scan_kernels.tiled_top_two(points, queries), scan_kernels.top_columns(points, queries, 7)]
    assert ranges == [[0, 2048, 4096, 5000], [0, 256, 512, 600]]
    for expected, found in zip(one_thread, threaded, strict=True):
        np.testing.assert_array_equal(found, expected)


@given(st.lists(st.integers(-3, 3), min_size=2, max_size=40), st.integers(1, 39))
@example([1, 2, 1], 1)  # the later second ties the earlier best
@example([2, 1, 2], 1)  # the later best ties the earlier best
@example([2, 1, 1], 2)  # the later best ties the earlier second
def test_merged_top_two_is_the_top_two_of_the_whole_range(scores, cut):
    # exact small integer scores with many ties; the first `cut` keys are the earlier range
    cut = min(cut, len(scores) - 1)
    values = np.array(scores, dtype=float)[:, None]
    parts = [scan_kernels.tiled_top_two(values[:cut], np.ones((1, 1))),
             scan_kernels.tiled_top_two(values[cut:], np.ones((1, 1)))]
    (top_at, top, second, second_at), (later_at, later, later_second, later_second_at) = parts
    scan_kernels.merge_top_two(top, second, top_at, second_at, later, later_second, later_at + cut,
                               later_second_at + np.where(later_second_at >= 0, cut, 0))
    order = np.argsort(-values[:, 0], kind="stable")
    assert (top_at[0], second_at[0]) == (order[0], order[1])
    assert (top[0], second[0]) == (values[order[0], 0], values[order[1], 0])


# ------------------------------------------------------------------------------------------------
# own working sets
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, d", [(3000, 3), (3000, 6), (2000, 10)])
def test_own_sets_match_the_general_path_and_qhull(rng, monkeypatch, n, d):
    keys = rng.standard_normal((n, d))
    monkeypatch.setattr(own_sets, "MIN_KEYS", 100)
    fast = selectable_keys(keys)
    assert certificate_failures(keys, fast) == {}
    _assert_same_firm_verdicts(fast, _general(keys, monkeypatch))
    if d <= 6:
        vertices = np.zeros(n, dtype=bool)
        vertices[qhull_vertices(keys)] = True
        np.testing.assert_array_equal(fast.selectable_mask[~fast.borderline_mask], vertices[~fast.borderline_mask])


def _assert_settled_certificates(points, keys, decisions, settled):
    inside = decisions.status == own_sets.kernels.UNSELECTABLE
    for slot in np.flatnonzero(settled & inside):
        ids, weights = decisions.combination(slot)
        assert keys[slot] not in ids and (weights >= 0).all() and abs(weights.sum() - 1) < 1e-12
        assert np.linalg.norm(weights @ points[ids] - points[keys[slot]]) <= 1e-10
    for slot in np.flatnonzero(settled & ~inside):  # selectable: the witness beats every other point by > 10 tol
        assert decisions.status[slot] == own_sets.kernels.SELECTABLE
        scores = points @ decisions.direction[slot]
        assert scores[keys[slot]] - np.delete(scores, keys[slot]).max() > 1e-8


def test_own_sets_settle_most_interior_keys(rng):
    points = rng.standard_normal((4000, 5))
    points /= np.linalg.norm(points, axis=1).max()
    outer = np.argsort(-np.linalg.norm(points, axis=1))[:400]  # not all vertices, but extreme: fine as seeds
    keys = np.setdiff1d(np.arange(4000), outer)
    decisions, settled, _ = own_sets.settle_with_own_sets(points, keys, outer, 1e-9)
    assert settled.mean() > 0.5
    assert (decisions.status == own_sets.kernels.UNSELECTABLE)[settled].mean() > 0.5
    _assert_settled_certificates(points, keys, decisions, settled)


def test_likely_vertices_first_spare_scans_of_all_keys_not_verdicts(rng, monkeypatch):
    points = rng.standard_normal((6000, 12))
    points /= np.linalg.norm(points, axis=1).max()
    seeds = np.flatnonzero(selectable_keys(points).selectable_mask)[::2]  # half the vertices are known
    keys = np.setdiff1d(np.arange(6000), seeds)
    scanned = []
    best_other = own_sets.BlockIndex.best_other
    monkeypatch.setattr(own_sets.BlockIndex, "best_other",  # counts the directions scored on all keys
                        lambda index, u, k: (index.points.shape[0] == 6000 and scanned.append(len(u)))
                        or best_other(index, u, k))
    decisions, settled, _ = own_sets.settle_with_own_sets(points, keys, seeds, 1e-9)
    likely_first, scanned[:] = sum(scanned), []
    with monkeypatch.context() as patch:  # every witness scored on all keys
        patch.setattr(own_sets, "_violators", lambda index, tier_index, tier, directions, k, *rest:
                      index.best_other(directions, k))
        every, settled_every, _ = own_sets.settle_with_own_sets(points, keys, seeds, 1e-9)
    # 3,133 against 7,841 directions here; with the seeds alone first (no violators of earlier rounds) 6,652
    assert likely_first < 0.6 * sum(scanned)
    assert settled.mean() > 0.9 * settled_every.mean()
    both = settled & settled_every
    np.testing.assert_array_equal(decisions.status[both], every.status[both])
    _assert_settled_certificates(points, keys, decisions, settled)


def test_a_violator_from_the_likely_vertices_is_never_the_key_and_violates(rng):
    points = rng.standard_normal((3000, 4))
    keys = np.argsort(-np.linalg.norm(points, axis=1))[:200]  # extreme keys: each is first along its own direction
    tier = np.union1d(keys[::2], np.arange(0, 3000, 7))  # half of them are likely vertices themselves
    directions = points[keys] + 0.3 * rng.standard_normal((200, 4))
    own_score = np.einsum("bd,bd->b", directions, points[keys])
    own_margin, high = np.full(200, np.inf), 1e-9
    candidates = np.full((200, 1), -1)
    best, best_score, runner, runner_score = own_sets._violators(
        own_sets.BlockIndex(points), own_sets.BlockIndex(points[tier]), tier, directions, keys, own_score, own_margin,
        candidates, high)
    scores = directions @ points.T
    scores[np.arange(200), keys] = -np.inf  # the best other than the key
    assert (best != keys).all() and (runner != keys).all()
    np.testing.assert_allclose(best_score, scores[np.arange(200), best], rtol=1e-12)
    certified = own_score - scores.max(axis=1) > high
    assert 10 < certified.sum() < 190
    np.testing.assert_array_equal(best[certified], scores[certified].argmax(axis=1))  # from the scan of all keys
    # elsewhere the best likely vertex, which violates the witness, unless it did not (then the best of all)
    tier_best = tier[scores[:, tier].argmax(axis=1)]
    assert ((best == tier_best) | (best == scores.argmax(axis=1)))[~certified].all()
    assert (own_score - best_score <= high)[~certified].all()


def test_own_sets_with_too_few_seeds_settle_nothing(rng):
    points = rng.standard_normal((100, 4))
    decisions, settled, _ = own_sets.settle_with_own_sets(points, np.arange(10, 100), np.arange(10), 1e-9)
    assert not settled.any()


def test_a_cluster_inside_a_simplex_keeps_exact_certificates(rng, monkeypatch):
    """Interior keys a hair inside a facet: own sets may miss them, the general loop must decide them."""
    simplex = np.vstack([np.eye(4), -np.ones((1, 4))]) * 3.0
    weights = rng.dirichlet(np.ones(4), size=300)
    facet = weights @ simplex[:4]
    inside = facet - 1e-7 * np.ones(4)  # towards the centre, 1e-7 scale below the facet
    keys = np.vstack([simplex, inside, 0.3 * rng.standard_normal((2000, 4))])
    monkeypatch.setattr(own_sets, "MIN_KEYS", 100)
    fast = selectable_keys(keys)
    assert certificate_failures(keys, fast) == {}
    _assert_same_firm_verdicts(fast, _general(keys, monkeypatch))


# ------------------------------------------------------------------------------------------------
# whitening in the affine frame
# ------------------------------------------------------------------------------------------------


def _anisotropic(rng, n, d, decay):
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]  # principal axes not along the coordinates
    return (rng.standard_normal((n, d)) * decay ** np.arange(d)) @ rotation + 5.0


@pytest.mark.parametrize("n, d, decay", [(3000, 3, 0.2), (2000, 6, 0.5), (1500, 12, 0.7), (800, 24, 0.75)])
def test_whitened_verdicts_match_the_general_path(rng, monkeypatch, n, d, decay):
    keys = _anisotropic(rng, n, d, decay)
    monkeypatch.setattr(own_sets, "MIN_KEYS", 100)
    lifted = selectability.affine_frame(keys, 1e-9).coords
    assert selectability._whitening_gains(lifted, 1e-9) is not None  # the whitened path runs
    fast = selectable_keys(keys)
    assert certificate_failures(keys, fast) == {}
    assert verify_selectability(keys, fast).size == 0
    _assert_same_firm_verdicts(fast, _general(keys, monkeypatch))
    if d <= 6:
        vertices = np.zeros(n, dtype=bool)
        vertices[qhull_vertices(keys)] = True
        np.testing.assert_array_equal(fast.selectable_mask[~fast.borderline_mask], vertices[~fast.borderline_mask])


def test_whitening_keeps_the_tolerance_of_the_original_coordinates(rng, monkeypatch):
    """A key 3 tol scale above a facet of a flat box: selectable in the caller's metric, whatever whitening does."""
    box = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-0.01, 0.01)], dtype=float)
    filler = rng.uniform(-0.9, 0.9, (500, 3)) * [1.0, 1.0, 0.009]
    tol = 1e-9
    scale = np.sqrt(1 + 1 + 0.01 ** 2)  # the radius about the (zero) mean
    near = [[0.2, 0.1, 0.01 + 3 * tol * scale], [0.3, -0.2, 0.01 + 0.02 * tol * scale]]
    keys = np.vstack([box, filler, near])
    fast = selectable_keys(keys, tol=tol)
    assert certificate_failures(keys, fast) == {}
    general = _general(keys, monkeypatch)
    np.testing.assert_array_equal(fast.selectable_mask, general.selectable_mask)
    assert fast.selectable_mask[-2] and not fast.selectable_mask[-1]
    assert fast.borderline_mask[-2]


def test_ill_conditioned_keys_beyond_the_whitening_limit_take_the_plain_path(rng):
    keys = rng.standard_normal((500, 4)) * [1.0, 1e-3, 1e-5, 1e-6]
    lifted = selectability.affine_frame(keys, 1e-9).coords
    assert selectability._whitening_gains(lifted, 1e-9) is None
    result = selectable_keys(keys)
    assert certificate_failures(keys, result) == {}


def test_round_keys_are_not_whitened(rng):
    lifted = selectability.affine_frame(rng.standard_normal((2000, 8)), 1e-9).coords
    assert selectability._whitening_gains(lifted, 1e-9) is None


def test_witness_scan_stops_where_the_far_keys_stop_winning(rng, monkeypatch):
    # half the keys on S^7, half inside: once the scan, farthest first, reaches the keys inside, it stops there
    d, n = 8, 6000
    keys = rng.standard_normal((n, d))
    keys /= np.linalg.norm(keys, axis=1)[:, None]
    keys[n // 2:] *= 0.8 * rng.uniform(0, 1, (n - n // 2, 1)) ** (1 / d)
    monkeypatch.setattr(selectability, "_SCAN_CHUNK", 512)
    scanned = []
    scan_rows = selectability._scan_rows
    monkeypatch.setattr(selectability, "_scan_rows", lambda directions, norms, rows, *rest: scanned.append(
        rows.size) or scan_rows(directions, norms, rows, *rest))
    result = selectable_keys(keys)
    assert sum(scanned) <= n - 1024  # a full scan: every key's direction (and a 64-key probe)
    assert certificate_failures(keys, result) == {}
    assert result.selectable_mask[: n // 2].all()
    general = _general(keys, monkeypatch)
    firm = ~result.borderline_mask & ~general.borderline_mask
    np.testing.assert_array_equal(result.selectable_mask[firm], general.selectable_mask[firm])
