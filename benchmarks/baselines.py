"""Baselines for ``bench_selectability.py``: other ways to decide which keys can win the argmax.

Every function returns a :class:`BaselineResult` whose ``selectable_mask`` is aligned with ``indices``
(the keys it was asked about; all keys when ``indices`` is None). None of this is part of geomln.

(a) :func:`published_method` -- the method of Brody, Alon & Yahav (2023), code in
    github.com/tech-srl/layer_norm_expressivity_role (``unselectable/stollen_prob_search.py``, itself
    adopted from github.com/andreasgrv/unargmaxable, Grivas et al. 2022): the braid-reflection heuristic
    (patience 100), then, for each key the heuristic could not certify, one Chebyshev-ball LP
    ``max r  s.t.  (k_j - k_i).q + ||k_j - k_i|| r <= b_i - b_j  (j != i),  -100 <= q <= 100,  r >= 1e-8``.
    The original solves it with Gurobi (barrier, FeasibilityTol 1e-9); here scipy's HiGHS with
    ``primal_feasibility_tolerance=1e-9`` (with HiGHS's default 1e-7 this formulation calls every
    unselectable key selectable). A key is selectable iff the LP is solved to optimality.
(b) :func:`membership_lp` -- one HiGHS feasibility LP per key: is ``k_i`` a convex combination of the
    other keys (with a bias: one whose combined bias is ``>= b_i``)?
(c) :func:`qhull_vertices` -- ``scipy.spatial.ConvexHull(keys).vertices`` (no bias).
(d) :func:`cdd_redundancy` -- cddlib's redundancy removal (``pycddlib-standalone``, floating point) on
    the V-representation ``[1, k_j]`` (with a bias: points ``(k_j, b_j)`` plus the ray ``(0, ..., 0, -1)``).
"""

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

__all__ = ["BaselineResult", "published_method", "membership_lp", "qhull_vertices", "cdd_redundancy"]

PUBLISHED_BOUND = 100.0  # the original's lb=-100, ub=100 on every query coordinate
PUBLISHED_EPSILON = 1e-8  # the original's lower bound on the Chebyshev radius
PUBLISHED_PATIENCE = 100


@dataclass
class BaselineResult:
    """Verdicts of one baseline on the keys ``indices``.

    ``failures`` lists ``(key, message)`` for keys where a solver returned an unusable status or a
    check failed. The published method keeps its verdict for them (a non-optimal LP means "bounded" in
    the original code); the membership LP has no verdict for them and lists them in ``no_verdict``
    (their ``selectable_mask`` entry is meaningless). ``details``
    holds method-specific counters and ``setup_seconds``, the one-off cost (rank check, matrix
    construction) that does not grow with the number of keys tested.
    """

    indices: np.ndarray
    selectable_mask: np.ndarray
    failures: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    no_verdict: set = field(default_factory=set)


def _indices(n, indices):
    return np.arange(n, dtype=np.intp) if indices is None else np.asarray(indices, dtype=np.intp)


# ----------------------------------------------------------------------------------------------------
# (a) the published method
# ----------------------------------------------------------------------------------------------------


def _scores(keys, bias, point):
    act = keys @ point
    return act if bias is None else act + bias


def braid_heuristic(keys, bias, key, patience=PUBLISHED_PATIENCE, bound=PUBLISHED_BOUND):
    """The braid-reflection heuristic: True when it found an in-bounds query making `key` the argmax.

    Starts from the key itself as the query; while another key ``j`` wins, reflects the query across the
    hyperplane where the scores of ``key`` and ``j`` tie. Gives up after `patience` reflections.
    """
    point = keys[key].copy()
    winner = int(np.argmax(_scores(keys, bias, point)))
    for _ in range(patience):
        if winner == key:
            break
        normal = keys[key] - keys[winner]
        norm = np.linalg.norm(normal)
        normal = normal / norm
        coeff = normal @ point
        if bias is not None:
            coeff = coeff + (bias[key] - bias[winner]) / norm
        point = point - 2.0 * coeff * normal
        winner = int(np.argmax(_scores(keys, bias, point)))
    return winner == key and bool(np.all((point >= -bound) & (point <= bound))), point


def chebyshev_lp(keys, bias, key, bound=PUBLISHED_BOUND, epsilon=PUBLISHED_EPSILON, feasibility_tol=1e-9):
    """The original's exact step: the largest ball inside the key's (bounded) argmax cell.

    Returns ``(selectable, point, status, message)``; selectable iff HiGHS reports an optimal solution.
    """
    n, d = keys.shape
    braid = np.delete(keys - keys[key], key, axis=0)
    braid_b = np.zeros(n - 1) if bias is None else np.delete(bias - bias[key], key)
    cheby = np.linalg.norm(braid, axis=1, keepdims=True)
    objective = np.zeros(d + 1)
    objective[-1] = -1.0  # maximize r
    bounds = [(-bound, bound)] * d + [(epsilon, None)]
    res = linprog(
        objective,
        A_ub=np.hstack([braid, cheby]),
        b_ub=-braid_b,
        bounds=bounds,
        method="highs",
        options={"primal_feasibility_tolerance": feasibility_tol},
    )
    point = res.x[:d] if res.status == 0 else None
    return res.status == 0, point, int(res.status), res.message


def published_method(keys, bias=None, *, indices=None, patience=PUBLISHED_PATIENCE, feasibility_tol=1e-9):
    """Baseline (a): braid heuristic, then one Chebyshev-ball LP per key the heuristic left open.

    Like the original, it asserts that the keys have full rank and calls every key selectable when
    ``n < d + 1``; the query a positive verdict rests on is checked to make the key the argmax (the
    original asserts this; here a failed check is recorded in ``failures``).
    """
    keys = np.ascontiguousarray(keys, dtype=np.float64)
    bias = None if bias is None else np.asarray(bias, dtype=np.float64)
    n, d = keys.shape
    idx = _indices(n, indices)
    start = time.perf_counter()
    rank = np.linalg.matrix_rank(keys)
    if rank != min(n, d):
        raise AssertionError(f"Rank={rank}, dim={d}")  # the original's assertion
    mask = np.ones(idx.size, dtype=bool)
    details = {"heuristic_selectable": 0, "lp_solved": 0, "lp_status": {}}
    details["setup_seconds"] = time.perf_counter() - start
    result = BaselineResult(idx, mask, details=details)
    if n < d + 1:
        return result
    for slot, key in enumerate(idx):
        selectable, point = braid_heuristic(keys, bias, key, patience)
        if selectable:
            result.details["heuristic_selectable"] += 1
        else:
            result.details["lp_solved"] += 1
            selectable, point, status, message = chebyshev_lp(keys, bias, key, feasibility_tol=feasibility_tol)
            result.details["lp_status"][status] = result.details["lp_status"].get(status, 0) + 1
            if status not in (0, 2):
                result.failures.append((int(key), f"HiGHS status {status}: {message}"))
        if selectable and int(np.argmax(_scores(keys, bias, point))) != key:
            result.failures.append((int(key), "witness query does not make the key the argmax"))
        mask[slot] = selectable
    return result


# ----------------------------------------------------------------------------------------------------
# (b) one membership LP per key
# ----------------------------------------------------------------------------------------------------


def membership_lp(keys, bias=None, *, indices=None):
    """Baseline (b): key ``i`` is unselectable iff the LP ``sum_j l_j k_j = k_i, sum l = 1, l >= 0``
    (``j != i``; with a bias also ``sum_j l_j b_j >= b_i``) is feasible (HiGHS, default tolerances)."""
    keys = np.ascontiguousarray(keys, dtype=np.float64)
    bias = None if bias is None else np.asarray(bias, dtype=np.float64)
    n, d = keys.shape
    idx = _indices(n, indices)
    mask = np.ones(idx.size, dtype=bool)
    start = time.perf_counter()
    a_eq_full = np.vstack([keys.T, np.ones((1, n))])
    result = BaselineResult(idx, mask, details={"lp_status": {}, "setup_seconds": time.perf_counter() - start})
    for slot, key in enumerate(idx):
        keep = np.ones(n, dtype=bool)
        keep[key] = False
        a_eq = a_eq_full[:, keep]
        b_eq = np.append(keys[key], 1.0)
        a_ub = b_ub = None
        if bias is not None:
            a_ub = -bias[keep][None, :]
            b_ub = [-bias[key]]
        res = linprog(np.zeros(n - 1), A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        result.details["lp_status"][int(res.status)] = result.details["lp_status"].get(int(res.status), 0) + 1
        if res.status == 0:
            mask[slot] = False
        elif res.status == 2:
            mask[slot] = True
        else:
            result.no_verdict.add(int(key))
            result.failures.append((int(key), f"HiGHS status {res.status}: {res.message}"))
    return result


# ----------------------------------------------------------------------------------------------------
# (c) Qhull and (d) cddlib
# ----------------------------------------------------------------------------------------------------


def qhull_vertices(keys):
    """Baseline (c): the vertices Qhull reports (scipy's default options for ConvexHull)."""
    from scipy.spatial import ConvexHull

    keys = np.ascontiguousarray(keys, dtype=np.float64)
    mask = np.zeros(keys.shape[0], dtype=bool)
    mask[ConvexHull(keys).vertices] = True
    return BaselineResult(np.arange(keys.shape[0], dtype=np.intp), mask)


def _cdd_matrix(keys, bias):
    import cdd

    n = keys.shape[0]
    if bias is None:
        rows = np.hstack([np.ones((n, 1)), keys])
    else:
        points = np.hstack([np.ones((n, 1)), keys, np.asarray(bias, dtype=np.float64)[:, None]])
        ray = np.zeros((1, points.shape[1]))
        ray[0, -1] = -1.0
        rows = np.vstack([points, ray])
    return cdd.matrix_from_array(rows.tolist(), rep_type=cdd.RepType.GENERATOR)


def cdd_redundancy(keys, bias=None, *, indices=None):
    """Baseline (d): cddlib's redundancy test on the V-representation; redundant rows are unselectable.

    With ``indices=None`` one call of ``cdd.redundant_rows`` (cddlib's ``dd_RedundantRows``) on all rows;
    otherwise ``cdd.redundant(mat, row)`` (one LP against all other rows) for each requested row, for
    extrapolation on sets too big to run whole.
    """
    import cdd

    keys = np.ascontiguousarray(keys, dtype=np.float64)
    n = keys.shape[0]
    start = time.perf_counter()
    matrix = _cdd_matrix(keys, bias)
    setup = time.perf_counter() - start
    if indices is None:
        redundant = cdd.redundant_rows(matrix)
        mask = np.ones(n, dtype=bool)
        mask[[row for row in redundant if row < n]] = False
        return BaselineResult(np.arange(n, dtype=np.intp), mask, details={"call": "redundant_rows"})
    idx = _indices(n, indices)
    mask = np.array([cdd.redundant(matrix, int(row)) is not None for row in idx], dtype=bool)
    return BaselineResult(idx, mask, details={"call": "redundant per row", "setup_seconds": setup})
