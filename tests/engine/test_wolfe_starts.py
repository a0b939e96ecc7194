"""Wolfe's algorithm over blocks of candidates and from warm starts, and the decision loop's batched check.

The entering point's search over blocks must change nothing: the same candidate (ties to the first) and so the
same run, bit for bit, as a scan of every candidate. A warm start may change the run but not the answer: the
distance to the hull is the same to the stopping tolerance, the support is a convex combination of
candidates (never the key itself) that gives the returned point, and a start that holds the key inside its
hull is the answer at once. The batched check of the witnesses against all keys must give the verdicts of
the per-key scan and valid certificates.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import certificate_failures, qhull_vertices

from geomln import selectable_keys
from geomln.engine import _geometry as geometry
from geomln.engine import _kernels as kernels
from geomln.engine import _own_sets as own_sets
from geomln.engine._blocks import grouped_columns

LOW, HIGH, MAX_MAJOR = 1e-10, 1e-8, 600


def _points(kind, rng, m, d):
    if kind == "lattice":  # exact scores and many exact ties between blocks
        return rng.integers(-3, 4, size=(m, d)).astype(float)
    if kind == "sphere":
        points = rng.standard_normal((m, d))
        return points / np.linalg.norm(points, axis=1)[:, None]
    if kind == "clusters":  # tight blocks far apart, at mixed scales
        centres = 10 * rng.standard_normal((6, d))
        labels = rng.integers(0, 6, m)
        return centres[labels] + 10.0 ** rng.integers(-6, 1, 6)[labels, None] * rng.standard_normal((m, d))
    points = rng.standard_normal((m, d))
    points[:3] *= 1e6  # far outliers
    return points


def _wolfe(points, key, ids, columns, blocks, start=()):
    norm2 = (columns * columns).sum(axis=0)
    return kernels.min_norm_point(points[key], ids, columns, norm2, blocks, np.asarray(start, dtype=np.intp), key,
                                  np.intp(-1), LOW, HIGH, MAX_MAJOR)


@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["lattice", "sphere", "clusters", "outliers"]),
       d=st.integers(2, 8), leaf=st.sampled_from([2, 5, 64]))
def test_entering_search_over_blocks_is_the_full_scan(seed, kind, d, leaf):
    rng = np.random.default_rng(seed)
    points = _points(kind, rng, 300, d)
    order, columns, blocks = grouped_columns(points, leaf)
    one = kernels.one_block(order.size, d)
    for key in rng.choice(300, 12, replace=False):  # the key is among the candidates: it must be skipped
        pruned = _wolfe(points, key, order, columns, blocks)
        full = _wolfe(points, key, order, columns, one)
        for got, expected in zip(pruned, full, strict=True):
            np.testing.assert_array_equal(got, expected)
        assert key not in pruned[2]


def _check_combination(points, key, result):
    x, _, support, weights, _, _ = result
    assert (weights > 0).all() and abs(weights.sum() - 1) < 1e-12
    assert key not in support
    np.testing.assert_allclose(weights @ points[support] - points[key], x, atol=1e-12 * np.abs(points).max())


def test_positions_find_each_id_or_minus_one(rng):
    ids = rng.permutation(50)[:30]
    wanted = np.array([ids[4], -1, ids[29], 999, ids[0]])
    np.testing.assert_array_equal(kernels._positions(ids, wanted), [4, -1, 29, -1, 0])


@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["sphere", "clusters", "outliers"]),
       d=st.integers(2, 8))
def test_warm_starts_give_the_cold_start_distance(seed, kind, d):
    rng = np.random.default_rng(seed)
    points = _points(kind, rng, 200, d)
    points /= np.abs(points).max()
    order, columns, blocks = grouped_columns(points, 16)
    position = np.argsort(order)
    for key in rng.choice(200, 8, replace=False):
        cold = _wolfe(points, key, order, columns, blocks)
        # starts of every kind: a random corral, one holding the key itself, a repeated (dependent) one, padding
        for start in (position[rng.choice(200, d + 1, replace=False)], [position[key], *position[:d]],
                      [position[(key + 1) % 200]] * 3 + [-1], [-1, -1]):
            warm = _wolfe(points, key, order, columns, blocks, start)
            _check_combination(points, key, warm)
            assert not warm[4]  # a stopping rule was met
            for result in (cold, warm):
                if result[5]:  # stopped early: -normal separates the key from every other point by more than HIGH
                    normal = result[1] / np.linalg.norm(result[1])
                    others = np.delete(points, key, axis=0)
                    assert (others @ normal - points[key] @ normal).min() > HIGH
            if not cold[5] and not warm[5]:  # both exact: the distance is the same to the tolerance
                cold_distance, warm_distance = np.linalg.norm(cold[0]), np.linalg.norm(warm[0])
                if cold_distance > LOW or warm_distance > LOW:
                    assert abs(cold_distance - warm_distance) <= LOW, (cold_distance, warm_distance)


def test_a_start_holding_the_key_inside_is_the_answer(rng):
    d = 5
    corners = np.vstack([np.eye(d), -np.ones((1, d))])  # a simplex about the origin
    points = np.vstack([corners, rng.standard_normal((100, d)) * 0.01, np.zeros((1, d))])
    key = points.shape[0] - 1
    ids = np.arange(key)  # every point but the key
    columns = np.ascontiguousarray(points[ids].T)
    x, _, support, weights, stalled, _ = _wolfe(points, key, ids, columns, kernels.one_block(key, d),
                                                np.arange(d + 1))
    assert not stalled and np.linalg.norm(x) <= LOW
    np.testing.assert_array_equal(np.sort(support), np.arange(d + 1))  # the start itself, no other point
    np.testing.assert_allclose(weights @ points[support], points[key], atol=1e-15)


@pytest.mark.parametrize("shape", ["clusters", "outliers"])
def test_batched_check_gives_the_per_key_verdicts(rng, monkeypatch, shape):
    keys = _points(shape, rng, 4000, 5)
    monkeypatch.setattr(own_sets, "MIN_KEYS", 10**9)  # every key through the decision loop
    monkeypatch.setattr(geometry, "_BATCHED_SITE_ENTRIES", 0)  # batched checks for these few keys too
    calls = []
    batched = kernels.distance_to_working_set
    monkeypatch.setattr(kernels, "distance_to_working_set", lambda *args: calls.append(args) or batched(*args))
    checked = selectable_keys(keys)
    assert calls and any((args[6] >= 0).any() for args in calls)  # batched rounds ran, some from warm starts
    monkeypatch.setattr(geometry, "_BATCHED_CHECK", 10**9)  # every witness scanned per key
    per_key = selectable_keys(keys)
    for result in (checked, per_key):
        assert certificate_failures(keys, result) == {}
    firm = ~checked.borderline_mask & ~per_key.borderline_mask
    np.testing.assert_array_equal(checked.selectable_mask[firm], per_key.selectable_mask[firm])
    vertices = np.zeros(keys.shape[0], dtype=bool)
    vertices[qhull_vertices(keys)] = True
    np.testing.assert_array_equal(checked.selectable_mask[firm], vertices[firm])
