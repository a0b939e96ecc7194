"""The score-tree path for sets where most keys are vertices (circles, spheres) against Qhull and the engine."""

import numba
import numpy as np
import pytest
from oracles import certificate_failures, lp_in_hull, qhull_vertices

from geomln import layer_norm, selectable_keys
from geomln._jit import get_num_threads, set_num_threads
from geomln.engine import _kernels as kernels
from geomln.engine import _local as local
from geomln.engine._geometry import Decisions, affine_frame, wolfe_limits

N = 1500


def circle(n, even, gen):
    angles = 2 * np.pi * np.arange(n) / n if even else gen.uniform(0, 2 * np.pi, n)
    return np.column_stack([np.cos(angles), np.sin(angles)])


def in_plane(points):
    """The circle as LayerNorm output of d = 3 would give it: in the plane of zero-mean vectors."""
    basis = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]])
    return 3.0 + points @ (basis / np.linalg.norm(basis, axis=1)[:, None])


def sphere(n, d, gen):
    x = gen.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1)[:, None]


def with_gaps(n, gen):
    """Random angles with a few wide gaps: a key's top scorers all lie on one side of it."""
    angles = np.sort(gen.uniform(0, 2 * np.pi, n))
    angles = angles[(angles % 0.5) > 0.01]
    return np.column_stack([np.cos(angles), np.sin(angles)])


def sphere_and_inside(n, d, gen):
    """Half the keys on the unit sphere, half spread inside it (a third of the sample are vertices)."""
    inside = sphere(n // 2, d, gen) * 0.9 * gen.uniform(0, 1, (n // 2, 1)) ** (1 / d)
    return np.vstack([sphere(n - n // 2, d, gen), inside])


CASES = {
    "circle_even": lambda gen: circle(N, True, gen),
    "circle_random": lambda gen: circle(N, False, gen),
    "circle_even_in_r3": lambda gen: in_plane(circle(N, True, gen)),
    "circle_random_in_r3": lambda gen: in_plane(circle(N, False, gen)),
    "sphere_s2": lambda gen: sphere(N, 3, gen),
    "sphere_s3": lambda gen: sphere(N, 4, gen),
    "circle_and_interior": lambda gen: np.vstack([circle(N, False, gen), 0.9 * gen.uniform(-0.7, 0.7, (N, 2))]),
    "circle_with_gaps": lambda gen: with_gaps(N, gen),
    "sphere_s2_and_inside": lambda gen: sphere_and_inside(N, 3, gen),
    "sphere_s4_and_inside": lambda gen: sphere_and_inside(N, 5, gen),
    "sphere_s4": lambda gen: sphere(N, 5, gen),
    "layer_norm_d6": lambda gen: np.asarray(layer_norm(gen.standard_normal((N, 6)))),
}
FULL_RANK = {"circle_even", "circle_random", "circle_and_interior", "circle_with_gaps", "sphere_s2", "sphere_s3",
             "sphere_s2_and_inside", "sphere_s4_and_inside", "sphere_s4"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tree_path_matches_engine_and_qhull(name, rng, monkeypatch):
    keys = CASES[name](rng)
    monkeypatch.setattr(local, "MIN_KEYS", 10**9)
    general = selectable_keys(keys)
    monkeypatch.setattr(local, "MIN_KEYS", 100)
    taken = []
    choose = local.most_keys_vertices
    monkeypatch.setattr(local, "most_keys_vertices", lambda *args: taken.append(choose(*args)) or taken[-1])
    tree = selectable_keys(keys)
    assert taken == [True]  # the tree path decided the keys
    assert certificate_failures(keys, tree) == {}
    firm = ~tree.borderline_mask & ~general.borderline_mask
    np.testing.assert_array_equal(tree.selectable_mask[firm], general.selectable_mask[firm])
    if name in FULL_RANK:  # Qhull applies
        vertices = np.zeros(keys.shape[0], dtype=bool)
        vertices[qhull_vertices(keys)] = True
        np.testing.assert_array_equal(tree.selectable_mask[~tree.borderline_mask], vertices[~tree.borderline_mask])


def test_tree_path_runs_on_circles_where_every_key_is_borderline(rng):
    """100,000 evenly spaced keys on a circle: every margin is 2 pi^2 / n^2, about 2 tol."""
    keys = circle(100_000, True, rng)
    result = selectable_keys(keys)
    assert result.selectable_mask.all() and result.borderline_mask.all()
    assert np.all((result.margins > result.tol) & (result.margins < 10 * result.tol))


@pytest.mark.parametrize("inside, expected", [(False, True), (True, False)])
def test_in_r8_the_tree_path_needs_keys_that_certify_themselves(rng, monkeypatch, inside, expected):
    keys = sphere_and_inside(N, 8, rng) if inside else sphere(N, 8, rng)
    monkeypatch.setattr(local, "MIN_KEYS", 100)
    used = []
    witness_pass = local.witness_pass
    monkeypatch.setattr(local, "witness_pass", lambda tree: used.append(tree) or witness_pass(tree))
    result = selectable_keys(keys)
    assert bool(used) == expected
    assert certificate_failures(keys, result) == {}
    monkeypatch.setattr(local, "MIN_KEYS", 10**9)
    general = selectable_keys(keys)
    firm = ~result.borderline_mask & ~general.borderline_mask
    np.testing.assert_array_equal(result.selectable_mask[firm], general.selectable_mask[firm])


def test_mostly_interior_sets_keep_the_general_path(rng):
    keys = rng.standard_normal((5000, 3))
    tree = local.ScoreTree(keys)
    assert not local.most_keys_vertices(tree, 1e-9)


def _tree_and_keys(keys, tol=1e-9):
    coords = affine_frame(keys, tol).coords
    tree = local.ScoreTree(coords)
    return tree, coords


@pytest.mark.parametrize("name", ["circle_random", "circle_with_gaps", "sphere_s2_and_inside", "sphere_s3"])
def test_margins_are_the_witness_margins_over_all_keys(name, rng):
    """Witnesses whose tree check was skipped (_covered) or done: each margin is its witness's margin over all keys."""
    tree, coords = _tree_and_keys(CASES[name](rng))
    local.witness_pass(tree)
    keys = np.arange(coords.shape[0])
    decisions = local.decide_local(tree, keys, 1e-9)
    for slot in np.flatnonzero(decisions.status != kernels.UNSELECTABLE):
        scores = coords @ decisions.direction[slot]
        true_margin = scores[keys[slot]] - np.delete(scores, keys[slot]).max()
        assert abs(true_margin - decisions.margin[slot]) < 1e-14


def test_covered_needs_the_whole_cap_in_the_first_working_set(rng):
    tree, coords = _tree_and_keys(circle(2000, True, rng))
    seeds, directions, floor = local._seeds(tree, np.array([0]), 6)
    witness = directions.copy()
    assert local._covered(tree, np.array([0]), directions, witness, np.array([1e-9]), floor)[0]
    # a witness far from the key's own direction: not covered. Tilted across that direction, which the frame
    # may turn anywhere (the even circle's covariance is isotropic, so its axes are the LAPACK build's choice)
    tilted = directions + 0.1 * directions[:, ::-1] * np.array([-1.0, 1.0])
    tilted /= np.linalg.norm(tilted)
    assert not local._covered(tree, np.array([0]), directions, tilted, np.array([1e-9]), floor)[0]
    assert not local._covered(tree, np.array([0]), directions, witness, np.array([0.5]), floor)[0]  # a wide cap


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_distance_to_own_hulls_gives_identical_results_with_one_and_two_threads(rng):
    tree, coords = _tree_and_keys(sphere_and_inside(3000, 4, rng))
    keys = np.arange(coords.shape[0])
    seeds, _, _ = local._seeds(tree, keys, 10)
    dropped = seeds[::3, 4].copy()
    seeds[::3, 4] = -1  # padding in the middle of some rows
    low, high, max_major = wolfe_limits(1e-9, 4)
    starts = np.where(rng.random((keys.size, 3)) < 0.5, seeds[:, :3], -1)  # warm starts in some rows
    before = get_num_threads()
    try:
        set_num_threads(1)
        one = kernels.distance_to_own_hulls(coords, keys, seeds, starts, low, high, max_major)
        set_num_threads(2)
        two = kernels.distance_to_own_hulls(coords, keys, seeds, starts, low, high, max_major)
    finally:
        set_num_threads(before)
    serial = kernels.distance_to_own_hulls_serial(coords, keys, seeds, starts, low, high, max_major)
    for a, b, c in zip(one, two, serial, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not (one[4][::3] == dropped[:, None]).any()  # a key padded out never enters a combination


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_tree_path_gives_identical_verdicts_and_certificates_with_one_and_two_threads(rng, monkeypatch):
    keys = sphere_and_inside(3000, 3, rng)
    monkeypatch.setattr(local, "MIN_KEYS", 100)
    monkeypatch.setattr(local, "PARALLEL_WORK", 0)  # the parallel kernel even for small batches
    calls = []
    parallel = kernels.distance_to_own_hulls
    monkeypatch.setattr(kernels, "distance_to_own_hulls", lambda *a: calls.append(get_num_threads()) or parallel(*a))
    before = get_num_threads()
    try:
        set_num_threads(1)
        one = selectable_keys(keys)
        set_num_threads(2)
        two = selectable_keys(keys)
    finally:
        set_num_threads(before)
    assert 1 in calls and 2 in calls
    np.testing.assert_array_equal(one.selectable_mask, two.selectable_mask)
    np.testing.assert_array_equal(one.borderline_mask, two.borderline_mask)
    np.testing.assert_array_equal(one.witness_queries, two.witness_queries)
    np.testing.assert_array_equal(one.margins, two.margins)
    assert one.combinations.keys() == two.combinations.keys()
    for key, (idx, w) in one.combinations.items():
        np.testing.assert_array_equal(idx, two.combinations[key][0])
        np.testing.assert_array_equal(w, two.combinations[key][1])
    assert certificate_failures(keys, two) == {}


@pytest.mark.parametrize("name", ["circle_with_gaps", "sphere_s2_and_inside", "sphere_s4_and_inside"])
def test_lp_fallback_on_working_sets_matches_qhull(name, rng, monkeypatch):
    """Every key that a witness leaves undecided goes to the LP on its working set (then on all keys)."""
    keys = CASES[name](rng)
    monkeypatch.setattr(local, "MIN_KEYS", 100)
    monkeypatch.setattr(local, "_MAX_ADDED", 0)
    solved = []
    solve = local.solve_on_working_set
    monkeypatch.setattr(local, "solve_on_working_set", lambda *a: solved.append(a[1]) or solve(*a))
    result = selectable_keys(keys)
    assert len(solved) > 10
    assert certificate_failures(keys, result) == {}
    vertices = np.zeros(keys.shape[0], dtype=bool)
    vertices[qhull_vertices(keys)] = True
    firm = ~result.borderline_mask
    np.testing.assert_array_equal(result.selectable_mask[firm], vertices[firm])


def test_lp_on_a_one_sided_working_set_grows_it_or_asks_all_keys(rng):
    """An inside key whose working set is a cap of the sphere beyond it: the LP's witness over the cap fails."""
    keys = np.vstack([sphere(400, 3, rng), [[0.0, 0.0, 0.5]]])
    tree, coords = _tree_and_keys(keys)
    key = keys.shape[0] - 1
    cap = np.argsort(-keys[:-1, 2])[:8]
    decisions = Decisions.empty(1, 3)
    local.solve_on_working_set(tree, key, cap, 1e-9, 0, decisions)
    assert decisions.status[0] == kernels.UNSELECTABLE
    idx, w = decisions.combination(0)
    assert key not in idx and (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    assert np.linalg.norm(w @ coords[idx] - coords[key]) <= 1e-9
    assert lp_in_hull(keys[key], keys[:-1])
