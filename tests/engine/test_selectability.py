import dataclasses
import functools
import json
from pathlib import Path

import numba
import numpy as np
import pytest
from cases import CASES, layer_norm_rows
from oracles import (
    distinct_radius,
    exact_combination_holds,
    exact_verdicts_hold,
    exact_witness_holds,
    lp_in_hull,
    lp_selectable,
    qhull_vertices,
)
from scipy.stats import special_ortho_group

from geomln.engine import _kernels
from geomln.engine._geometry import wolfe_limits
from geomln.engine.certificates import verify_selectability
from geomln.engine.selectability import (
    Selectability,
    count_unselectable,
    default_tol,
    hull_vertices,
    selectable_keys,
)
from geomln.errors import InputError

NAMES = sorted(CASES)
EXACT = [name for name in NAMES if CASES[name].exact]
QHULL = [name for name in NAMES if CASES[name].general_position]


@functools.cache
def result_for(name):
    return selectable_keys(CASES[name].keys)


@functools.cache
def lp_for(name):
    return lp_selectable(CASES[name].keys.astype(np.float64))


def oracle_mask(name):
    keys = CASES[name].keys
    if CASES[name].general_position:
        mask = np.zeros(len(keys), dtype=bool)
        mask[qhull_vertices(keys)] = True
        return mask
    return lp_for(name)


def check_result_structure(keys, result):
    """Shapes, dtypes and the one-verdict-one-certificate layout, independently of the values."""
    n, d = keys.shape
    assert isinstance(result, Selectability)
    assert (result.n, result.d) == (n, d)
    assert result.selectable_mask.shape == (n,) and result.selectable_mask.dtype == bool
    assert result.borderline_mask.shape == (n,) and result.borderline_mask.dtype == bool
    assert result.duplicate_of.shape == (n,) and result.duplicate_of.dtype == np.intp
    assert result.witness_queries.shape == (n, d)
    unselectable = np.flatnonzero(~result.selectable_mask)
    np.testing.assert_array_equal(result.unselectable_indices, unselectable)
    np.testing.assert_array_equal(result.selectable_indices, np.flatnonzero(result.selectable_mask))
    assert result.n_unselectable == unselectable.size
    assert result.fraction_unselectable == pytest.approx(unselectable.size / n)
    assert sorted(result.combinations) == unselectable.tolist()
    assert np.isnan(result.witness_queries[unselectable]).all()
    assert np.isnan(result.margins[unselectable]).all()
    assert np.isfinite(result.witness_queries[result.selectable_mask]).all()
    assert (result.margins[result.selectable_mask] > 0).all()
    for key, (indices, weights) in result.combinations.items():
        assert indices.dtype == np.intp and indices.shape == weights.shape
        assert key not in indices.tolist()


# ------------------------------------------------------------------------------------------------
# the named cases: every verdict through its certificate and through the oracles
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_case_verdicts_match_expectation_certificates_and_lp_oracle(name):
    case = CASES[name]
    result = result_for(name)
    check_result_structure(case.keys, result)
    if case.expected is not None:
        np.testing.assert_array_equal(result.selectable_mask, case.expected)
    assert verify_selectability(case.keys, result).size == 0
    if not case.general_position:  # those are checked against Qhull (below), a faster independent oracle
        np.testing.assert_array_equal(result.selectable_mask, lp_for(name))
    assert not result.borderline_mask.any()


@pytest.mark.parametrize("name", EXACT)
def test_case_certificates_hold_exactly_in_rationals(name):
    case = CASES[name]
    assert exact_verdicts_hold(case.keys, result_for(name)) == []


@pytest.mark.parametrize("name", QHULL)
def test_case_selectable_keys_are_the_qhull_vertices(name):
    np.testing.assert_array_equal(result_for(name).selectable_indices, qhull_vertices(CASES[name].keys))


@pytest.mark.parametrize("name", NAMES)
def test_case_duplicates_scale_and_rank(name):
    keys = CASES[name].keys.astype(np.float64)
    result = result_for(name)
    unique, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    repeated = counts[inverse.ravel()] > 1
    np.testing.assert_array_equal(result.duplicate_of >= 0, repeated)
    for i in np.flatnonzero(repeated):
        j = result.duplicate_of[i]
        assert j != i and np.array_equal(keys[j], keys[i])
        assert not result.selectable_mask[i]
    assert result.scale == pytest.approx(distinct_radius(keys), rel=1e-12)
    centred = unique - unique.mean(axis=0)
    expected_rank = (
        np.linalg.matrix_rank(centred, tol=1e-8 * max(result.scale, 1e-300)) if len(unique) > 1 else 0
    )
    assert result.affine_rank == expected_rank


@pytest.mark.parametrize("name", NAMES)
def test_case_margins_are_the_witness_margins(name):
    keys = CASES[name].keys.astype(np.float64)
    result = result_for(name)
    if result.n == 1:
        return
    for i in result.selectable_indices:
        q = result.witness_queries[i]
        assert np.linalg.norm(q) == pytest.approx(1.0, rel=1e-9)
        margin = (keys[i] @ q - np.max(np.delete(keys @ q, i))) / result.scale
        assert result.margins[i] == pytest.approx(margin, rel=1e-6, abs=1e-12)
        assert result.margins[i] > result.tol


def test_case_lists_are_what_the_brief_asks_for():
    assert CASES["lattice_cube"].expected.sum() == 8
    assert CASES["layernorm_projected"].keys.shape == (60, 6)
    assert lp_for("layernorm_projected").sum() < 50  # many unselectable: the point of the paper
    assert {f"gaussian_d{d}" for d in range(3, 16)} <= set(CASES)
    assert CASES["model_like_float32"].keys.dtype == np.float32
    assert result_for("model_like_float32").tol == 1e-6


# ------------------------------------------------------------------------------------------------
# the checker rejects tampered certificates
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def honest():
    keys = CASES["gaussian_d4"].keys
    result = result_for("gaussian_d4")
    assert 5 < result.n_unselectable < result.n - 5
    return keys, result


def tampered(result, **changes):
    return dataclasses.replace(result, **changes)


def test_checker_accepts_the_honest_result(honest):
    keys, result = honest
    assert verify_selectability(keys, result).size == 0


def test_checker_rejects_a_selectable_verdict_flipped_without_certificate(honest):
    keys, result = honest
    key = int(result.selectable_indices[0])
    mask = result.selectable_mask.copy()
    mask[key] = False
    np.testing.assert_array_equal(verify_selectability(keys, tampered(result, selectable_mask=mask)), [key])


def test_checker_rejects_a_selectable_verdict_flipped_with_a_false_combination(honest):
    keys, result = honest
    key = int(result.selectable_indices[0])
    mask = result.selectable_mask.copy()
    mask[key] = False
    others = result.selectable_indices[1:4]
    combinations = dict(result.combinations)
    combinations[key] = (others, np.full(3, 1 / 3))
    bad = tampered(result, selectable_mask=mask, combinations=combinations)
    np.testing.assert_array_equal(verify_selectability(keys, bad), [key])


@pytest.mark.parametrize("witness", ["nan", "other_key", "negated", "zero"])
def test_checker_rejects_an_unselectable_verdict_flipped(honest, witness):
    keys, result = honest
    key = int(result.unselectable_indices[0])
    other = int(result.selectable_indices[0])
    mask = result.selectable_mask.copy()
    mask[key] = True
    queries = result.witness_queries.copy()
    queries[key] = {"nan": np.nan, "other_key": queries[other], "negated": -queries[other], "zero": 0.0}[
        witness
    ]
    combinations = {k: v for k, v in result.combinations.items() if k != key}
    bad = tampered(result, selectable_mask=mask, witness_queries=queries, combinations=combinations)
    np.testing.assert_array_equal(verify_selectability(keys, bad), [key])


@pytest.mark.parametrize("how", ["other_key", "negated", "rotated"])
def test_checker_rejects_a_perturbed_witness(honest, how, rng):
    keys, result = honest
    key, other = (int(i) for i in result.selectable_indices[:2])
    queries = result.witness_queries.copy()
    if how == "other_key":
        queries[key] = queries[other]
    elif how == "negated":
        queries[key] = -queries[key]
    else:  # swap two coordinates: a different direction of the same length
        queries[key] = queries[key][::-1]
    bad = tampered(result, witness_queries=queries)
    flagged = verify_selectability(keys, bad)
    # the tampered query may still happen to certify key; it must be flagged exactly when it does not
    scores = keys @ queries[key]
    still_valid = scores[key] > np.delete(scores, key).max()
    np.testing.assert_array_equal(flagged, [] if still_valid else [key])
    if how != "rotated":
        assert not still_valid


@pytest.mark.parametrize("how", ["shift_mass", "negative", "not_normalized", "to_other_keys"])
def test_checker_rejects_changed_weights(honest, how):
    keys, result = honest
    key = next(k for k, (idx, _) in result.combinations.items() if idx.size >= 2)
    indices, weights = result.combinations[key]
    weights = weights.copy()
    if how == "shift_mass":
        weights[0] += 0.2
        weights[1] -= 0.2
        weights = np.clip(weights, 0, None)
        weights /= weights.sum()
    elif how == "negative":
        weights[1] += weights[0] + 0.05
        weights[0] = -0.05
    elif how == "not_normalized":
        weights = weights * 1.01
    else:
        indices = np.array([i for i in result.selectable_indices[: indices.size]], dtype=np.intp)
    combinations = dict(result.combinations)
    combinations[key] = (indices, weights)
    np.testing.assert_array_equal(
        verify_selectability(keys, tampered(result, combinations=combinations)), [key]
    )


@pytest.mark.parametrize(
    "how", ["self_only", "self_added", "dropped", "empty", "out_of_range", "length_mismatch"]
)
def test_checker_rejects_malformed_combinations(honest, how):
    keys, result = honest
    key = int(result.unselectable_indices[0])
    indices, weights = result.combinations[key]
    combinations = dict(result.combinations)
    if how == "self_only":  # reproduces the key perfectly, but it is not a combination of *other* keys
        combinations[key] = (np.array([key], dtype=np.intp), np.array([1.0]))
    elif how == "self_added":
        combinations[key] = (np.append(indices, key), np.append(weights * 0.5, 0.5))
    elif how == "dropped":
        del combinations[key]
    elif how == "empty":
        combinations[key] = (np.empty(0, dtype=np.intp), np.empty(0))
    elif how == "out_of_range":
        combinations[key] = (np.append(indices[:-1], len(keys)), weights)
    else:
        combinations[key] = (indices, weights[:-1])
    np.testing.assert_array_equal(
        verify_selectability(keys, tampered(result, combinations=combinations)), [key]
    )


def test_checker_rejects_a_combination_whose_bias_falls_short(rng):
    keys = rng.standard_normal((40, 3))
    bias = 0.1 * rng.standard_normal(40)
    result = selectable_keys(keys, bias=bias)
    assert verify_selectability(keys, result, bias=bias).size == 0
    slack = 2 * result.tol * result.bias_scale
    for key in result.unselectable_indices:
        indices, weights = result.combinations[key]
        surplus = weights @ bias[indices] - bias[key]
        raise_by = surplus + 100 * slack  # the combination no longer reaches the key's bias ...
        leads = [
            result.witness_queries[j] @ (keys[j] - keys[key]) + bias[j] - bias[key]
            for j in result.selectable_indices
        ]
        if raise_by < min(leads):  # ... while every witness still beats the key
            break
    else:
        pytest.fail("no unselectable key with a small enough surplus in this sample")
    raised = bias.copy()
    raised[key] += raise_by
    np.testing.assert_array_equal(verify_selectability(keys, result, bias=raised), [key])
    raised[key] -= 200 * slack  # within the slack again
    assert verify_selectability(keys, result, bias=raised).size == 0


def test_checker_rejects_a_result_for_other_keys(honest):
    keys, result = honest
    with pytest.raises(InputError, match="result"):
        verify_selectability(keys[:-1], result)
    moved = keys.copy()
    moved[result.selectable_indices[0]] *= 0.0  # a vertex moved to the origin, deep inside
    assert result.selectable_indices[0] in verify_selectability(moved, result)


# ------------------------------------------------------------------------------------------------
# random data against Qhull and the LP oracle, with and without bias
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("d", range(2, 9))
def test_random_agrees_with_qhull_and_lp(seed, d):
    gen = np.random.default_rng([seed, d])
    keys = gen.standard_normal((24 + 4 * d, d)) * gen.uniform(0.5, 2.0, d)
    result = selectable_keys(keys)
    assert verify_selectability(keys, result).size == 0
    np.testing.assert_array_equal(result.selectable_indices, qhull_vertices(keys))
    if seed == 0:  # the LP oracle is slow: one seed per dimension
        np.testing.assert_array_equal(result.selectable_mask, lp_selectable(keys))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("d", [1, 2, 4, 7])
def test_random_bias_agrees_with_lp(seed, d):
    gen = np.random.default_rng([seed, d, 7])
    keys = gen.standard_normal((30, d))
    bias = gen.standard_normal(30) * [0.05, 0.5, 3.0][seed]
    result = selectable_keys(keys, bias=bias)
    assert result.has_bias
    check_result_structure(keys, result)
    assert verify_selectability(keys, result, bias=bias).size == 0
    np.testing.assert_array_equal(result.selectable_mask, lp_selectable(keys, bias))
    for i in result.selectable_indices:
        assert exact_witness_holds(keys, i, result.witness_queries[i], bias)


def test_bias_on_repeated_keys(rng):
    """Equal keys with different biases: only the copy with the strictly largest bias can win."""
    base = rng.standard_normal((12, 3))
    keys = np.vstack([base, base[:4], base[:2]])
    bias = np.concatenate([np.zeros(12), [0.5, -0.5, 0.0, 1.0], [0.5, -0.25]])
    result = selectable_keys(keys, bias=bias)
    assert verify_selectability(keys, result, bias=bias).size == 0
    np.testing.assert_array_equal(result.selectable_mask, lp_selectable(keys, bias))
    # key 0 (bias 0) loses to its copies with bias 0.5 (rows 12 and 16, themselves duplicates of each other)
    assert not result.selectable_mask[[0, 12, 16]].any()
    assert result.duplicate_of[12] == 16 and result.duplicate_of[16] == 12 and result.duplicate_of[0] == -1
    assert not result.selectable_mask[13]  # lower bias than row 1


@pytest.mark.parametrize(
    "name", ["gaussian_d3", "gaussian_d6", "lattice_cube", "layernorm_projected", "duplicates"]
)
@pytest.mark.parametrize("constant", [0.0, -3.5, 1e6])
def test_constant_bias_gives_the_no_bias_verdicts(name, constant):
    keys = CASES[name].keys
    bias = np.full(len(keys), constant)
    result = selectable_keys(keys, bias=bias)
    np.testing.assert_array_equal(result.selectable_mask, result_for(name).selectable_mask)
    np.testing.assert_array_equal(result.duplicate_of, result_for(name).duplicate_of)
    assert verify_selectability(keys, result, bias=bias).size == 0


@pytest.mark.parametrize(
    "name", ["gaussian_d3", "gaussian_d6", "lattice_cube", "polygon_midpoints", "duplicates"]
)
def test_linear_bias_gives_the_no_bias_verdicts(name, rng):
    """q.k + k.w = (q + w).k: a bias linear in the keys cannot change which keys can win."""
    keys = CASES[name].keys
    bias = keys @ rng.standard_normal(keys.shape[1])
    result = selectable_keys(keys, bias=bias)
    np.testing.assert_array_equal(result.selectable_mask, result_for(name).selectable_mask)
    assert verify_selectability(keys, result, bias=bias).size == 0


def test_a_vertex_wins_whatever_its_bias():
    """q = -t (1, 1) with t large makes (0, 0) the argmax even with bias -1000: vertices stay selectable."""
    keys = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]], dtype=float)
    bias = np.array([-1000.0, 0, 0, 0, 0])
    result = selectable_keys(keys, bias=bias)
    np.testing.assert_array_equal(result.selectable_mask, [True, True, True, True, False])
    assert exact_witness_holds(keys, 0, result.witness_queries[0], bias)
    assert exact_combination_holds(keys, 4, result.combinations[4][0], bias) is None


def test_bias_exact_binary_case_known_verdicts():
    keys = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1], [1, 0], [0.5, 0.5], [1.5, 1.5]])
    bias = np.array([0, 0, 0, 0, 1, -1, 0.4, 0.6])
    # (1,0): 1/2 (0,0) + 1/2 (2,0) has bias 0 >= -1. (0.5,0.5): 1/2 (0,0) + 1/2 (1,1) has bias 0.5 >= 0.4.
    # (1.5,1.5) = a (1,1) + (1 - a) p with p in the square forces a <= 1/2: best bias 0.5 < 0.6, so it wins.
    expected = np.array([True, True, True, True, True, False, False, True])
    np.testing.assert_array_equal(lp_selectable(keys, bias), expected)
    result = selectable_keys(keys, bias=bias)
    np.testing.assert_array_equal(result.selectable_mask, expected)
    assert verify_selectability(keys, result, bias=bias).size == 0
    for i in result.selectable_indices:
        assert exact_witness_holds(keys, i, result.witness_queries[i], bias)
    for i in result.unselectable_indices:
        assert exact_combination_holds(keys, i, result.combinations[i][0], bias) is None


BIAS_CASES = [name for name in NAMES if len(CASES[name].keys) <= 40]


@pytest.mark.parametrize("name", BIAS_CASES)
def test_case_with_random_bias_agrees_with_lp(name):
    keys = CASES[name].keys.astype(np.float64)
    bias = np.random.default_rng(len(name)).standard_normal(len(keys))
    result = selectable_keys(keys, bias=bias)
    check_result_structure(keys, result)
    assert verify_selectability(keys, result, bias=bias).size == 0
    np.testing.assert_array_equal(result.selectable_mask, lp_selectable(keys, bias))


def test_equal_keys_with_distinct_biases():
    """Minimal reproducer: two equal keys, the one with the larger bias wins for every query (e.g. q = 0)."""
    keys, bias = [[1.0], [1.0]], [0.0, 1.0]
    result = selectable_keys(keys, bias=bias)
    np.testing.assert_array_equal(result.selectable_mask, [False, True])
    assert verify_selectability(keys, result, bias=bias).size == 0


def test_nearest_neighbour_bias_makes_every_key_selectable():
    """With b = -|k|^2 / 2, argmax q.k + b is the key nearest to q: q = k_i picks k_i, even inside."""
    keys = CASES["lattice_cube"].keys
    bias = -0.5 * (keys**2).sum(axis=1)
    result = selectable_keys(keys, bias=bias)
    assert result.selectable_mask.all()
    assert verify_selectability(keys, result, bias=bias).size == 0
    assert all(exact_witness_holds(keys, i, result.witness_queries[i], bias) for i in range(0, 125, 7))


def test_farthest_point_bias_keeps_exactly_the_vertices():
    """With b = +|k|^2 / 2, argmax q.k + b is the key farthest from -q: only hull vertices ever win."""
    keys = CASES["lattice_cube"].keys
    bias = 0.5 * (keys**2).sum(axis=1)
    result = selectable_keys(keys, bias=bias)
    np.testing.assert_array_equal(result.selectable_mask, CASES["lattice_cube"].expected)
    assert verify_selectability(keys, result, bias=bias).size == 0
    for i in result.selectable_indices:
        assert exact_witness_holds(keys, i, result.witness_queries[i], bias)
    for i in result.unselectable_indices[::9]:
        assert exact_combination_holds(keys, i, result.combinations[i][0], bias) is None


# ------------------------------------------------------------------------------------------------
# methods, tolerance, dtypes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["gaussian_d4", "polygon_midpoints", "layernorm_projected", "duplicates", "d1"]
)
def test_lp_method_agrees_with_auto(name):
    keys = CASES[name].keys
    result = selectable_keys(keys, method="lp")
    assert result.method == "lp"
    np.testing.assert_array_equal(result.selectable_mask, result_for(name).selectable_mask)
    assert verify_selectability(keys, result).size == 0
    assert selectable_keys(keys, method="wolfe").method == "wolfe"
    np.testing.assert_array_equal(
        selectable_keys(keys, method="wolfe").selectable_mask, result.selectable_mask
    )


def test_lp_method_agrees_with_auto_with_bias(rng):
    keys = rng.standard_normal((30, 3))
    bias = 0.3 * rng.standard_normal(30)
    lp = selectable_keys(keys, bias=bias, method="lp")
    np.testing.assert_array_equal(lp.selectable_mask, selectable_keys(keys, bias=bias).selectable_mask)
    assert verify_selectability(keys, lp, bias=bias).size == 0


@pytest.mark.parametrize("relative_distance", [1e-7, 1e-5, 1e-3])
def test_tol_is_the_relative_distance_to_the_hull_of_the_others(relative_distance):
    """A key just outside an edge of a square is selectable iff its distance exceeds tol * scale."""
    square = np.array([[0, 0], [4, 0], [0, 4], [4, 4]], dtype=float) + 10.0
    keys = np.vstack([square, [[12.0, 10.0]]])  # the midpoint of the bottom edge ...
    radius = distinct_radius(keys)
    keys[4, 1] -= relative_distance * radius  # ... pushed out by relative_distance * scale
    scale_check = distinct_radius(keys)
    distance = relative_distance * radius / scale_check
    for tol in (distance / 1000, distance / 30, distance * 30, distance * 1000):
        result = selectable_keys(keys, tol=tol)
        assert result.tol == tol
        assert result.selectable_mask[4] == (distance > tol)
        assert result.selectable_mask[:4].all() or tol > 0.1  # the corners are ~0.7 scale from the others
        assert result.borderline_mask[4] == (tol / 10 < distance < tol * 10)
        assert verify_selectability(keys, result).size == 0


def test_default_tol_follows_the_dtype():
    keys = CASES["gaussian_d3"].keys
    assert default_tol(keys) == 1e-9
    assert default_tol(keys.astype(np.float32)) == 1e-6
    assert default_tol(keys.astype(np.float16)) == 1e-3
    assert default_tol(np.arange(3)) == 1e-9
    assert default_tol([[1.0, 2.0]]) == 1e-9
    for dtype, tol in [(np.float64, 1e-9), (np.float32, 1e-6), (np.float16, 1e-3), (np.int64, 1e-9)]:
        assert selectable_keys(np.round(keys * 100).astype(dtype)).tol == tol


def test_float16_keys(rng):
    keys = rng.standard_normal((50, 4)).astype(np.float16)
    result = selectable_keys(keys)
    assert result.tol == 1e-3
    assert verify_selectability(keys, result).size == 0
    decided = (
        ~result.borderline_mask
    )  # keys further than 10 tol from the boundary must match the exact oracle
    oracle = lp_selectable(keys.astype(np.float64))
    np.testing.assert_array_equal(result.selectable_mask[decided], oracle[decided])


# ------------------------------------------------------------------------------------------------
# hull_vertices
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_hull_vertices_are_first_copies_of_extreme_points(name):
    keys = CASES[name].keys.astype(np.float64)
    vertices = hull_vertices(keys)
    assert vertices.dtype == np.intp
    assert np.all(np.diff(vertices) > 0)
    _, first, inverse, counts = np.unique(
        keys, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    first = np.sort(first)
    repeated = counts[inverse.ravel()] > 1
    expected = []
    for i in first:
        if len(first) == 1:
            expected.append(i)
        elif not repeated[i]:  # a lone key is a vertex iff it is selectable (Qhull or LP oracle)
            if oracle_mask(name)[i]:
                expected.append(i)
        elif not lp_in_hull(keys[i], keys[first[first != i]])[0]:
            expected.append(i)
    np.testing.assert_array_equal(vertices, expected)


def test_hull_vertices_on_small_examples():
    square = [[0, 0], [1, 0], [0, 1], [1, 1]]
    np.testing.assert_array_equal(hull_vertices([*square, [1, 0], [0.5, 0.5], [0, 0]]), [0, 1, 2, 3])
    np.testing.assert_array_equal(hull_vertices([[0.5, 0.5], [1, 1], *square]), [1, 2, 3, 4])
    np.testing.assert_array_equal(hull_vertices([[3.0], [3.0], [1.0], [3.0]]), [0, 2])
    np.testing.assert_array_equal(hull_vertices([[2.0, 2.0]] * 4), [0])
    np.testing.assert_array_equal(
        hull_vertices(CASES["gaussian_d5"].keys), qhull_vertices(CASES["gaussian_d5"].keys)
    )


def test_hull_vertices_tol():
    points = np.array([[0, 0], [4, 0], [0, 4], [2, 2 + 1e-5]])  # last point just outside the diagonal
    np.testing.assert_array_equal(hull_vertices(points), [0, 1, 2, 3])
    np.testing.assert_array_equal(hull_vertices(points, tol=1e-3), [0, 1, 2])


# ------------------------------------------------------------------------------------------------
# invariances
# ------------------------------------------------------------------------------------------------

INVARIANCE_CASES = [
    "gaussian_d5",
    "lattice_cube",
    "layernorm_projected",
    "polygon_midpoints",
    "duplicates",
    "d1",
]


def transform(kind, keys, gen):
    n, d = keys.shape
    if kind == "permutation":
        order = gen.permutation(n)
        return keys[order], order
    if kind == "translation":
        return keys + 50.0 * gen.standard_normal(d), np.arange(n)
    if kind == "rotation":
        rotation = special_ortho_group.rvs(d, random_state=gen) if d > 1 else np.array([[-1.0]])
        return keys @ rotation.T, np.arange(n)
    if kind == "scaling_up":
        return keys * 1e5, np.arange(n)
    return keys * 1e-4, np.arange(n)  # scaling_down


KINDS = ["permutation", "translation", "rotation", "scaling_up", "scaling_down"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", INVARIANCE_CASES)
def test_invariance(name, kind):
    keys = CASES[name].keys.astype(np.float64)
    gen = np.random.default_rng([INVARIANCE_CASES.index(name), KINDS.index(kind)])
    moved, order = transform(kind, keys, gen)
    result = selectable_keys(moved)
    np.testing.assert_array_equal(result.selectable_mask, result_for(name).selectable_mask[order])
    assert result.affine_rank == result_for(name).affine_rank
    assert verify_selectability(moved, result).size == 0
    if kind == "permutation":
        assert result.scale == pytest.approx(result_for(name).scale, rel=1e-12)
        np.testing.assert_array_equal(result.duplicate_of >= 0, result_for(name).duplicate_of[order] >= 0)


@pytest.mark.parametrize("kind", ["permutation", "translation", "rotation", "scaling_up"])
def test_invariance_with_bias(kind, rng):
    keys = rng.standard_normal((40, 3))
    bias = 0.2 * rng.standard_normal(40)
    base = selectable_keys(keys, bias=bias)
    moved, order = transform(kind, keys, rng)
    moved_bias = bias[order] * (1e5 if kind == "scaling_up" else 1.0)
    result = selectable_keys(moved, bias=moved_bias)
    np.testing.assert_array_equal(result.selectable_mask, base.selectable_mask[order])
    assert verify_selectability(moved, result, bias=moved_bias).size == 0


@pytest.mark.parametrize("offset", [1e8, -1e10])
def test_verifier_measures_residuals_about_the_mean(offset, rng):
    """A common offset changes nothing: the verdicts agree and the verifier accepts every certificate."""
    keys = rng.standard_normal((203, 3))
    bias = rng.standard_normal(203)
    for moved_bias in (None, bias + offset):
        base = selectable_keys(keys, bias=None if moved_bias is None else bias)
        result = selectable_keys(keys + offset, bias=moved_bias)
        np.testing.assert_array_equal(result.selectable_mask, base.selectable_mask)
        assert verify_selectability(keys + offset, result, bias=moved_bias).size == 0
        assert base.n_unselectable > 100


@pytest.mark.parametrize(
    "factor",
    [
        1e-300,
        1e299,
        1e-150,
        1e150,
        1e-170,
        1e160,
    ],
)
def test_extreme_positive_scaling(factor):
    """Finite keys of any magnitude: verdicts on a square with an inner point do not depend on the unit."""
    keys = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.2, 0.3]]) * factor
    result = selectable_keys(keys)
    np.testing.assert_array_equal(result.selectable_mask, [True, True, True, True, False])
    assert verify_selectability(keys, result).size == 0


def test_real_minilm_keys_against_the_lp_oracle():
    """Real float16 keys of all-MiniLM-L6-v2 (layer 0, head 0, 160 tokens, d = 32) from the bundled file."""
    path = Path(__file__).resolve().parents[2] / "data" / "minilm_keys.npz"
    with np.load(path) as data:
        keys = data["keys"][0, 0]
    assert keys.dtype == np.float16 and keys.shape == (160, 32)
    result = selectable_keys(keys)
    assert result.tol == 1e-3
    assert verify_selectability(keys, result).size == 0
    exact = selectable_keys(keys, tol=1e-9)  # the float16 values are exact in float64
    assert verify_selectability(keys, exact).size == 0
    oracle = lp_selectable(keys.astype(np.float64))
    np.testing.assert_array_equal(exact.selectable_mask, oracle)
    np.testing.assert_array_equal(
        result.selectable_mask | result.borderline_mask, oracle | result.borderline_mask
    )
    assert exact.n_unselectable > 0


# ------------------------------------------------------------------------------------------------
# threads, serialisation
# ------------------------------------------------------------------------------------------------


def _same_results(a, b):
    np.testing.assert_array_equal(a.selectable_mask, b.selectable_mask)
    np.testing.assert_array_equal(a.borderline_mask, b.borderline_mask)
    np.testing.assert_array_equal(a.witness_queries, b.witness_queries)
    np.testing.assert_array_equal(a.margins, b.margins)
    assert a.combinations.keys() == b.combinations.keys()
    for key, (idx, w) in a.combinations.items():
        np.testing.assert_array_equal(idx, b.combinations[key][0])
        np.testing.assert_array_equal(w, b.combinations[key][1])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_one_and_two_threads_give_identical_results(monkeypatch):
    keys = np.random.default_rng(3000).standard_normal((3000, 6))
    calls = []

    def counting(parallel):
        return lambda *args: calls.append(numba.get_num_threads()) or parallel(*args)

    for name in ("distance_to_hull_batch", "distance_to_working_set"):
        monkeypatch.setattr(_kernels, name, counting(getattr(_kernels, name)))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = selectable_keys(keys)
        numba.set_num_threads(2)
        two = selectable_keys(keys)
    finally:
        numba.set_num_threads(before)
    assert 1 in calls and 2 in calls  # the parallel kernel ran under both settings
    _same_results(one, two)
    assert verify_selectability(keys, two).size == 0


JSON_CASES = ["gaussian_d4", "duplicates", "all_equal", "d1"]
@pytest.mark.parametrize("name", [*JSON_CASES, "single"])
def test_to_dict_is_json(name):
    result = result_for(name)
    text = json.dumps(result.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["selectable_mask"] == result.selectable_mask.tolist()
    assert data["duplicate_of"] == result.duplicate_of.tolist()
    assert data["n"] == result.n and data["tol"] == result.tol and data["method"] == result.method
    assert sorted(int(k) for k in data["combinations"]) == result.unselectable_indices.tolist()
    assert sorted(int(k) for k in data["witness_queries"]) == result.selectable_indices.tolist()
    for key, entry in data["combinations"].items():
        np.testing.assert_array_equal(entry["indices"], result.combinations[int(key)][0])
        np.testing.assert_array_equal(entry["weights"], result.combinations[int(key)][1])


def test_to_dict_with_bias_is_json(rng):
    keys = rng.standard_normal((20, 2))
    result = selectable_keys(keys, bias=rng.standard_normal(20))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["has_bias"] is True and data["bias_scale"] == result.bias_scale


def test_result_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        result_for("d1").n = 3


# ------------------------------------------------------------------------------------------------
# exact oracle self-checks (an oracle that cannot fail proves nothing)
# ------------------------------------------------------------------------------------------------


def test_exact_oracles_reject_wrong_certificates():
    keys = np.array([[0, 0], [2, 0], [0, 2], [1, 1], [3, 3]], dtype=float)
    assert exact_combination_holds(keys, 3, [1, 2]) is None
    assert exact_combination_holds(keys, 3, [0, 4]) is None
    assert exact_combination_holds(keys, 4, [0, 3]) is not None  # (3,3) = -2 (0,0) + 3 (1,1): negative weight
    assert exact_combination_holds(keys, 3, [0, 1]) is not None  # off the line through them
    assert exact_combination_holds(keys, 3, [3]) is not None
    assert exact_witness_holds(keys, 4, [1.0, 1.0])
    assert not exact_witness_holds(keys, 1, [1.0, 0.0])
    assert not exact_witness_holds(keys, 3, [1.0, 1.0])
    assert exact_witness_holds(keys, 3, [1.0, 1.0], bias=[0, 0, 0, 4.0 + 2**-40, 0])
    assert not exact_witness_holds(keys, 3, [1.0, 1.0], bias=[0, 0, 0, 4.0, 0])  # a tie is not a win
    np.testing.assert_array_equal(lp_selectable(keys), [True, True, True, False, True])
    np.testing.assert_array_equal(lp_selectable(keys, [0, 0, 0, 4.5, 0]), [True, True, True, True, True])
    assert lp_in_hull([1.0, 1.0], keys[:3])[0] and not lp_in_hull([1.0, 1.01], keys[:3])[0]
    np.testing.assert_array_equal(qhull_vertices(keys), [0, 1, 2, 4])


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------

GOOD = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize(
    ("keys", "error", "match"),
    [
        ([[0.0, np.nan], [1.0, 0.0]], InputError, r"`keys` contains 1 NaN"),
        ([[0.0, np.inf], [1.0, 0.0]], InputError, r"`keys` contains 1 infinite"),
        ([0.0, 1.0, 2.0], InputError, r"`keys` must be a 2-D array .* got shape \(3,\)"),
        (np.zeros((2, 2, 2)), InputError, r"`keys` must be a 2-D .* got shape \(2, 2, 2\)"),
        (np.zeros((0, 3)), InputError, r"`keys`.*\(0, 3\)"),
        (np.zeros((3, 0)), InputError, r"`keys`.*\(3, 0\)"),
        ([["a", "b"], ["c", "d"]], TypeError, "`keys`"),
        ([[1, 2], [3]], TypeError, "`keys`"),
        (np.ones((2, 2), dtype=complex), TypeError, "`keys` must be real"),
        (np.array([[object(), 1]], dtype=object), TypeError, "`keys`"),
        ([[0.0, 0.0], [1e307, 0.0]], InputError, r"`keys` must have entries of magnitude <= 1e\+300.*index \(1, 0\)"),
    ],
)
def test_bad_keys(keys, error, match):
    with pytest.raises(error, match=match):
        selectable_keys(keys)


def test_magnitude_limit_applies_to_every_entry_point():
    huge = np.random.default_rng(5).standard_normal((300, 3)) * 1e307
    with pytest.raises(InputError, match=r"`keys` must have entries of magnitude <= 1e\+300"):
        verify_selectability(huge, selectable_keys(GOOD))
    with pytest.raises(InputError, match=r"`points` must have entries of magnitude"):
        hull_vertices(huge)
    with pytest.raises(InputError, match=r"`bias` must have entries of magnitude"):
        selectable_keys(GOOD, bias=[0.0, 1e301, 0.0])


@pytest.mark.parametrize(
    ("bias", "error", "match"),
    [
        ([0.0, 1.0], InputError, r"`bias` must have length 3 .* got length 2"),
        ([0.0, 1.0, 2.0, 3.0], InputError, r"`bias` must have length 3"),
        ([[0.0, 1.0, 2.0]], InputError, r"`bias` must be a 1-D"),
        ([0.0, np.nan, 1.0], InputError, r"`bias` contains 1 NaN"),
        ([0.0, -np.inf, 1.0], InputError, r"`bias` contains 1 infinite"),
        (["a", "b", "c"], TypeError, "`bias`"),
        ([1j, 0, 0], TypeError, "`bias` must be real"),
    ],
)
def test_bad_bias(bias, error, match):
    with pytest.raises(error, match=match):
        selectable_keys(GOOD, bias=bias)
    with pytest.raises(error, match=match):
        verify_selectability(GOOD, selectable_keys(GOOD), bias=bias)


@pytest.mark.parametrize(
    ("tol", "error", "match"),
    [
        (-1e-6, InputError, r"`tol` must be a finite number >= 0; got -1e-06"),
        (np.nan, InputError, r"`tol` must be a finite number >= 0; got nan"),
        (np.inf, InputError, r"`tol`"),
        (0.0, InputError, r"`tol` must be >= 1e-13"),
        (1e-14, InputError, r"`tol` must be >= 1e-13"),
        (1.0, InputError, r"`tol` must be < 1.0 \(a fraction of the data radius\); got 1.0"),
        (5.0, InputError, r"`tol` must be < 1.0"),
        ("1e-6", TypeError, "`tol`"),
        (True, TypeError, "`tol`"),
    ],
)
def test_bad_tol(tol, error, match):
    with pytest.raises(error, match=match):
        selectable_keys(GOOD, tol=tol)
    with pytest.raises(error, match=match):
        hull_vertices(GOOD, tol=tol)


@pytest.mark.parametrize("method", ["simplex", "LP", None, ""])
def test_bad_method(method):
    with pytest.raises(InputError, match=r"`method` must be one of 'auto', 'wolfe', 'lp'"):
        selectable_keys(GOOD, method=method)


@pytest.mark.parametrize(
    ("points", "error", "match"),
    [
        ([[np.nan, 0.0]], InputError, "`points` contains 1 NaN"),
        ([1.0, 2.0], InputError, r"`points` must be a 2-D"),
        (np.zeros((0, 2)), InputError, "`points`"),
        ([["x"]], TypeError, "`points`"),
    ],
)
def test_bad_hull_vertices_points(points, error, match):
    with pytest.raises(error, match=match):
        hull_vertices(points)


def test_bad_verify_keys():
    result = selectable_keys(GOOD)
    with pytest.raises(InputError, match="`keys` contains 1 NaN"):
        verify_selectability([[0.0, np.nan], [1.0, 0.0], [0.0, 1.0]], result)
    with pytest.raises(InputError, match=r"`result` is for keys of shape \(3, 2\)"):
        verify_selectability(np.zeros((3, 3)), result)


def test_points_on_a_sphere_are_all_selectable():
    gen = np.random.default_rng(77)
    points = gen.standard_normal((200, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    result = selectable_keys(points)
    assert result.selectable_mask.all()
    assert verify_selectability(points, result).size == 0


def test_layernorm_keys_in_a_hyperplane_all_selectable_after_scaling_many_not_before():
    gen = np.random.default_rng(88)
    raw = gen.standard_normal((80, 5))
    projected = selectable_keys(layer_norm_rows(raw, scale=False))
    scaled = selectable_keys(layer_norm_rows(raw))
    assert projected.affine_rank == scaled.affine_rank == 4
    assert scaled.selectable_mask.all()
    assert projected.n_unselectable >= 10
    np.testing.assert_array_equal(projected.selectable_mask, lp_selectable(layer_norm_rows(raw, scale=False)))


def test_many_collinear_and_coplanar_points_in_higher_dimension():
    gen = np.random.default_rng(99)
    t = gen.permutation(np.arange(-20, 21)).astype(float)
    line = np.array([3.0, -1.0, 0.5, 2.0, 7.0])[None] + t[:, None] * np.array([1.0, 2.0, -1.0, 0.0, 3.0])
    result = selectable_keys(line)
    assert result.affine_rank == 1
    np.testing.assert_array_equal(result.selectable_indices, np.sort([np.argmin(t), np.argmax(t)]))
    assert exact_verdicts_hold(line, result) == []
    assert verify_selectability(line, result).size == 0


# ------------------------------------------------------------------------------------------------
# batch counts for Monte Carlo runs (one numba call over many sets, the engine for the rest)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_batch_count_of_each_case_is_the_engine_count_under_symmetries(name, rng):
    keys = CASES[name].keys
    moved = 3.5 * keys[rng.permutation(keys.shape[0])] + rng.standard_normal(keys.shape[1])
    counts = count_unselectable(np.stack([keys, moved]), default_tol(keys))
    np.testing.assert_array_equal(counts, [selectable_keys(keys).n_unselectable] * 2)
    if CASES[name].general_position:
        assert counts[0] == keys.shape[0] - qhull_vertices(keys).size


@pytest.mark.parametrize("d", [1, 2, 3, 8, 15])
@pytest.mark.parametrize("n", [1, 2, 5, 20, 60])
@pytest.mark.parametrize("normalize", ["none", "projection", "layernorm"])
def test_batch_counts_match_the_engine_and_qhull_on_random_sets(n, d, normalize):
    gen = np.random.default_rng([n, d])
    key_sets = gen.standard_normal((12, n, d))
    if d == 1 and normalize != "none":
        key_sets = np.zeros_like(key_sets)  # the projection of a 1-D key is 0: all keys equal
    elif normalize != "none":
        key_sets = layer_norm_rows(key_sets.reshape(-1, d), scale=normalize == "layernorm").reshape(12, n, d)
    counts = count_unselectable(key_sets, 1e-9)
    np.testing.assert_array_equal(counts, [selectable_keys(keys).n_unselectable for keys in key_sets])
    if normalize == "none" and 2 <= d <= 8 and n > d + 1:
        np.testing.assert_array_equal(counts, [n - qhull_vertices(keys).size for keys in key_sets])


def test_batch_counts_of_large_sets_match_qhull():
    key_sets = np.random.default_rng(11).standard_normal((2, 300, 3))  # above the batch kernel's size limit
    counts = count_unselectable(key_sets, 1e-9)
    np.testing.assert_array_equal(counts, [300 - qhull_vertices(keys).size for keys in key_sets])


def test_batch_kernel_leaves_equal_keys_and_borderline_keys_to_the_engine():
    square_and_centre = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]], dtype=float)
    repeated = np.vstack([square_and_centre[:4], square_and_centre[:1]])
    nearly_on_edge = square_and_centre.copy()
    nearly_on_edge[4] = [1.0, -2e-9]  # 1e-9 beyond the edge [0, 0]-[2, 0]: within 10 tol of the hull
    key_sets = np.stack([square_and_centre, repeated, nearly_on_edge])
    low, high, max_major = wolfe_limits(1e-9, 2)
    counts, settled = _kernels.count_unselectable_sets(key_sets, low, high, max_major)
    np.testing.assert_array_equal(settled, [True, False, False])
    assert counts[0] == 1
    full = count_unselectable(key_sets, 1e-9)
    np.testing.assert_array_equal(full, [selectable_keys(keys).n_unselectable for keys in key_sets])
    assert selectable_keys(nearly_on_edge).borderline_mask[4]
