"""Slow, obviously correct oracles for the selectability engine and hull membership.

Nothing here imports geomln: every function is a direct transcription of a definition.

- :func:`qhull_vertices`: Qhull (scipy) vertices, for low dimension and points in general position.
- :func:`lp_in_hull`: one HiGHS feasibility LP "x = sum_j lam_j p_j, lam >= 0, sum lam = 1".
- :func:`lp_selectable`: key i is selectable iff the strict system ``q.(k_i - k_j) + b_i - b_j > 0`` for all
  ``j != i`` is feasible. Homogenised with a bias weight ``s`` it becomes the LP
  "exists (q, s): q.(k_i - k_j) + s (b_i - b_j) >= 1 for all j, s >= 1" (a strictly feasible (q, 1) scales
  to a solution; a solution (q, s) gives q / s). Without the ``s`` the LP would be wrong for biases of any
  fixed size: ``k_i = k_j``, ``b_i - b_j = 0.5`` is selectable over j but ``0.5 >= 1`` fails.
- ``exact_*``: :class:`fractions.Fraction` checks of certificates for inputs whose floats are exact.
- :func:`certificate_failures`: every certificate of a result on any finite input; combinations in exact
  rationals (so no offset or unit costs precision), witnesses in floats about the mean.
"""

import itertools
from fractions import Fraction

import numpy as np
from scipy.optimize import linprog
from scipy.spatial import ConvexHull

__all__ = [
    "qhull_vertices",
    "lp_in_hull",
    "lp_selectable",
    "distinct_radius",
    "exact_combination_holds",
    "exact_witness_holds",
    "exact_verdicts_hold",
    "certificate_failures",
]


def qhull_vertices(points):
    """Sorted indices of the vertices Qhull reports (low d, full rank, general position, no duplicates)."""
    return np.sort(ConvexHull(np.asarray(points, dtype=float)).vertices).astype(np.intp)


def lp_in_hull(x, hull_points):
    """Whether `x` lies in conv(`hull_points`), by one HiGHS feasibility LP: (inside, weights or None)."""
    p = np.asarray(hull_points, dtype=float)
    m = p.shape[0]
    a_eq = np.vstack([p.T, np.ones((1, m))])
    b_eq = np.append(np.asarray(x, dtype=float), 1.0)
    res = linprog(np.zeros(m), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status == 0:
        return True, res.x
    if res.status == 2:
        return False, None
    raise AssertionError(f"oracle LP returned status {res.status}: {res.message}")


def lp_selectable(keys, bias=None):
    """For each key, whether some query makes it the strict argmax of ``q.k + b`` (one LP per key)."""
    k = np.asarray(keys, dtype=float)
    n, d = k.shape
    b = np.zeros(n) if bias is None else np.asarray(bias, dtype=float)
    out = np.zeros(n, dtype=bool)
    if n == 1:
        return np.ones(1, dtype=bool)
    for i in range(n):
        others = np.arange(n) != i
        diff_k = k[i] - k[others]
        diff_b = b[i] - b[others]
        if np.any((diff_k == 0).all(axis=1) & (diff_b <= 0)):
            continue  # an identical key with at least the same bias: never strictly ahead of it
        # variables (q, s); constraints -(q.dk + s db) <= -1, s >= 1
        a_ub = -np.hstack([diff_k, diff_b[:, None]])
        bounds = [(None, None)] * d + [(1.0, None)]
        res = linprog(np.zeros(d + 1), A_ub=a_ub, b_ub=-np.ones(n - 1), bounds=bounds, method="highs")
        if res.status not in (0, 2):
            raise AssertionError(f"oracle LP for key {i} returned status {res.status}: {res.message}")
        out[i] = res.status == 0
    return out


def distinct_radius(keys):
    """``max_i |k_i - mean(k)|`` over the distinct keys: the scale `tol` is relative to."""
    unique = np.unique(np.asarray(keys, dtype=float), axis=0)
    return float(np.linalg.norm(unique - unique.mean(axis=0), axis=1).max())


def _fractions(array):
    return [[Fraction(float(v)) for v in row] for row in np.atleast_2d(np.asarray(array, dtype=float))]


def _solve_exact(columns, target):
    """Solve ``sum_j w_j columns[j] = target`` exactly; return the unique solution or None.

    None when the system is inconsistent or its solution is not unique (free variables).
    """
    rows = len(target)
    cols = len(columns)
    matrix = [[columns[j][r] for j in range(cols)] + [target[r]] for r in range(rows)]
    pivots = []
    row = 0
    for col in range(cols):
        pivot = next((r for r in range(row, rows) if matrix[r][col] != 0), None)
        if pivot is None:
            continue
        matrix[row], matrix[pivot] = matrix[pivot], matrix[row]
        lead = matrix[row][col]
        matrix[row] = [v / lead for v in matrix[row]]
        for r in range(rows):
            if r != row and matrix[r][col] != 0:
                factor = matrix[r][col]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[row], strict=True)]
        pivots.append(col)
        row += 1
    if any(all(v == 0 for v in matrix[r][:cols]) and matrix[r][cols] != 0 for r in range(rows)):
        return None  # inconsistent
    if len(pivots) < cols:
        return None  # not unique
    solution = [Fraction(0)] * cols
    for r, col in enumerate(pivots):
        solution[col] = matrix[r][cols]
    return solution


def exact_combination_holds(keys, key, support, bias=None):
    """Exactly: is ``keys[key]`` a convex combination of some of ``keys[support]``?

    For every subset of the support whose barycentric system has a unique solution, solves the weights in
    rationals and checks they are >= 0, sum to 1 and reproduce the key -- and, with a `bias`, that the
    combined bias is at least the key's. Trying the subsets is complete: the best combined bias over the
    support's combinations is attained at a basic solution, i.e. on an affinely independent subset.
    Returns None when some subset proves the verdict, else a short reason string.
    """
    rows = _fractions(keys)
    support = sorted({int(s) for s in np.asarray(support).ravel()})
    if not support or key in support:
        return "empty support or support contains the key itself"
    offsets = None if bias is None else [Fraction(float(v)) for v in bias]
    target = rows[key] + [Fraction(1)]
    dim = len(rows[key])
    reasons = set()
    for size in range(1, len(support) + 1):
        for subset in itertools.combinations(support, size):
            weights = _solve_exact([rows[s] + [Fraction(1)] for s in subset], target)
            if weights is None:
                reasons.add("key off the affine hull of the support (no unique exact barycentric solution)")
            elif any(w < 0 for w in weights):
                reasons.add("negative exact weight")
            elif sum(weights) != 1 or any(
                sum(w * rows[s][t] for w, s in zip(weights, subset, strict=True)) != rows[key][t]
                for t in range(dim)
            ):
                reasons.add("combination does not reproduce the key")  # only if _solve_exact is wrong
            elif (
                offsets is not None
                and sum(w * offsets[s] for w, s in zip(weights, subset, strict=True)) < offsets[key]
            ):
                reasons.add("combined bias is below the key's bias")
            else:
                return None
    return "; ".join(sorted(reasons))


def exact_witness_holds(keys, key, query, bias=None):
    """Exactly: does the float `query` (read as an exact rational) make ``keys[key]`` the strict argmax?"""
    rows = _fractions(keys)
    q = [Fraction(float(v)) for v in np.asarray(query, dtype=float)]
    offsets = [Fraction(0)] * len(rows) if bias is None else [Fraction(float(v)) for v in bias]
    scores = [
        sum(a * b for a, b in zip(q, row, strict=True)) + off for row, off in zip(rows, offsets, strict=True)
    ]
    return all(scores[key] > s for j, s in enumerate(scores) if j != key)


def exact_verdicts_hold(keys, result):
    """Exact proof of every verdict of a no-bias result on keys whose float values are exact.

    Returns the list of ``(key, reason)`` that fail (empty when every verdict is proven).
    """
    failures = []
    for key in range(result.n):
        if result.selectable_mask[key]:
            if not exact_witness_holds(keys, key, result.witness_queries[key]):
                failures.append((key, "witness does not make the key the strict argmax exactly"))
        else:
            support, _ = result.combinations[key]
            reason = exact_combination_holds(keys, key, support)
            if reason is not None:
                failures.append((key, reason))
    return failures


def _unit_radius(keys):
    """The keys in units of a power of two (about 1, exact) and their distinct radius in those units."""
    k = np.asarray(keys, dtype=float)
    unit = 2.0 ** -np.frexp(np.abs(k).max())[1] if k.size and np.abs(k).max() > 0 else 1.0
    scaled = np.unique(k * unit, axis=0)
    return k * unit, unit, float(np.sqrt(((scaled - scaled.mean(axis=0)) ** 2).sum(axis=1)).max())


def certificate_failures(keys, result, bias=None):
    """Keys whose certificate fails, checked without geomln: ``{key: reason}`` (empty when all hold).

    A witness must make its key the strict argmax of ``q.k + b`` (scores in floats about the mean: the
    margins the engine reports are at least ``tol`` and far above their rounding). A combination must use
    other keys with weights >= 0 summing to 1 (to 1e-9) and reproduce the key within ``2 tol`` times the
    independently computed distinct radius -- with a bias, reach its bias within ``2 tol`` times the bias
    range -- where the residual is computed exactly in rationals from the float weights and keys.
    """
    k, unit, radius = _unit_radius(keys)
    n = k.shape[0]
    b = np.zeros(n) if bias is None else np.asarray(bias, dtype=float)
    b_scaled, b_unit, _ = _unit_radius(b[:, None])
    b_scaled = b_scaled[:, 0]
    distinct = np.unique(np.column_stack([k, b_scaled]), axis=0)[:, -1]
    bias_range = float(np.abs(distinct - distinct.mean()).max()) if bias is not None else 0.0
    bias_range = bias_range if bias_range > 0 else b_unit  # the engine's bias_scale is 1 without a spread
    failures = {}
    centred = k - k.mean(axis=0)
    for key in np.flatnonzero(result.selectable_mask):
        q = result.witness_queries[key]
        if not np.isfinite(q).all():
            failures[int(key)] = "non-finite witness"
            continue
        scores = centred @ q / unit + (b_scaled - b_scaled.mean()) / b_unit
        if not (scores[key] > np.delete(scores, key).max(initial=-np.inf)):
            failures[int(key)] = "witness does not make the key the strict argmax"
    slack = 2 * result.tol
    for key in np.flatnonzero(~result.selectable_mask):
        if int(key) not in result.combinations:
            failures[int(key)] = "no combination"
            continue
        indices, weights = (np.asarray(part) for part in result.combinations[int(key)])
        if indices.size == 0 or key in indices or (weights < 0).any() or abs(weights.sum() - 1) > 1e-9:
            failures[int(key)] = "malformed combination"
            continue
        w = [Fraction(float(v)) for v in weights]
        total = sum(w)
        residual2 = sum(
            (sum(wj * Fraction(float(k[j, t])) for wj, j in zip(w, indices, strict=True)) / total
             - Fraction(float(k[key, t]))) ** 2
            for t in range(k.shape[1])
        )
        if residual2 > Fraction(slack * radius) ** 2:
            failures[int(key)] = f"residual {float(residual2) ** 0.5 / radius:.3g} radius above 2 tol"
        elif bias is not None:
            deficit = Fraction(float(b_scaled[key])) - sum(
                wj * Fraction(float(b_scaled[j])) for wj, j in zip(w, indices, strict=True)) / total
            if deficit > Fraction(slack * bias_range):
                failures[int(key)] = "combined bias falls short"
    return failures
