"""Shared preprocessing of the exact engine: normalized coordinates in the affine hull, and the decision loop.

Every point set is centred at its mean, divided by its radius ``s = max_i |x_i - mean|`` and rotated
onto its affine hull; directions along which every point deviates by at most ``tol / 4`` are dropped.
Distances and margins in these coordinates are therefore relative to ``s``.
"""

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .._blas import one_blas_thread
from .._jit import get_num_threads
from . import _kernels as kernels
from ._blocks import BlockIndex, grouped_columns

#: verdicts whose deciding quantity lies within this factor of `tol` are reported as borderline
BORDERLINE_FACTOR = 10.0
#: length of the virtual ray (in normalized units) that models "any lower bias" in the lifted problem
RAY_LENGTH = 16.0
_MAX_MAJOR_PER_DIM = 50
#: batches below this many flops run serially: starting threads costs more than it saves
PARALLEL_WORK = 4_000_000
#: keys per warm-up round of :func:`decide`, and the fraction of them still finding a violator that ends it
WARMUP_SAMPLE = 512
WARMUP_DONE = 0.02
#: from this many keys in a round, and this many site coordinates (sites that no longer sit in a core's cache,
#: so that each key's own scan streams them from memory), the witnesses are checked in one batched scan
_BATCHED_CHECK = 256
_BATCHED_SITE_ENTRIES = 1 << 17  # (below it, n = 1,024 in d = 8 took 18 ms batched against 13 ms)
#: LP rounds over a growing working set before the LP over all points
_LP_ROUNDS = 8
#: rows per block when measuring distances to the affine hull (bounds the temporary memory)
_TAIL_BLOCK = 4096


@dataclass(frozen=True)
class AffineFrame:
    """Normalized coordinates of a point set in its affine hull.

    ``coords = (points - centre) @ basis / radius``; ``basis`` has orthonormal columns.
    """

    centre: np.ndarray
    radius: float
    basis: np.ndarray
    coords: np.ndarray

    @property
    def rank(self):
        """Affine rank of the point set (number of kept directions)."""
        return self.basis.shape[1]

    def to_original_direction(self, directions):
        """Map directions from normalized coordinates back to the original space (unit norm kept)."""
        return directions @ self.basis.T


def affine_frame(points, tol):
    """Centre, normalize and rotate `points` (n, d) onto their affine hull, dropping spreads <= tol / 4."""
    n, d = points.shape
    centre = points.mean(axis=0)
    centred = points - centre
    peak = float(np.abs(centred).max())  # divide first: squares of tiny or huge coordinates under/overflow
    radius = peak * float(np.sqrt(((centred / peak) ** 2).sum(axis=1).max())) if peak > 0 else 0.0
    if radius == 0.0:
        return AffineFrame(centre, 0.0, np.zeros((d, 0)), np.zeros((n, 0)))
    centred /= radius
    gram = centred.T @ centred if n >= d else None
    with one_blas_thread():  # a d x d problem (or n x d with n < d): BLAS threads only cost here
        if gram is not None:
            basis = np.linalg.eigh(gram)[1][:, ::-1]
        else:
            basis = np.linalg.svd(centred, full_matrices=False)[2].T
    coords = centred @ basis
    del centred
    # largest distance of any point from the span of the first r directions, for every r (in row blocks)
    tail = np.zeros(coords.shape[1] + 1)
    for start in range(0, n, _TAIL_BLOCK):
        squares = coords[start:start + _TAIL_BLOCK] ** 2
        np.maximum(tail[:-1], np.sqrt(np.cumsum(squares[:, ::-1], axis=1)[:, ::-1].max(axis=0)), out=tail[:-1])
    rank = int(np.flatnonzero(tail <= tol / 4.0)[0])
    return AffineFrame(centre, radius, np.ascontiguousarray(basis[:, :rank]),
                       np.ascontiguousarray(coords[:, :rank]))


@dataclass
class Decisions:
    """Per-key outcome of :func:`decide` (arrays aligned with the tested keys).

    ``support`` holds the ids of each key's convex combination packed at the front of its row and padded
    with -1 (width ``2 * dim + 2``, enough for a basic solution of the LP fallback); ``weights`` likewise.
    """

    status: np.ndarray
    distance: np.ndarray
    margin: np.ndarray
    direction: np.ndarray
    support: np.ndarray
    weights: np.ndarray

    @classmethod
    def empty(cls, count, dim):
        """Decisions for `count` keys, all STALLED (undecided) until filled."""
        return cls(np.full(count, kernels.STALLED, dtype=np.int8), np.full(count, np.inf), np.full(count, -np.inf),
                   np.zeros((count, dim)), np.full((count, 2 * dim + 2), -1, dtype=np.intp),
                   np.zeros((count, 2 * dim + 2)))

    def combination(self, slot):
        """Return the (ids, weights) of key `slot`'s convex combination."""
        used = int((self.support[slot] >= 0).sum())
        return self.support[slot, :used], self.weights[slot, :used]


def wolfe_limits(tol, dim):
    """Return Wolfe's stopping distances ``(low, high)`` for `tol` and its iteration cap in dimension `dim`.

    A key within `low` of the hull is certainly unselectable, one separated by more than `high` certainly
    selectable; in between the exact distance decides and the key is borderline.
    """
    return tol / BORDERLINE_FACTOR, tol * BORDERLINE_FACTOR, _MAX_MAJOR_PER_DIM * (dim + 2) + 100


def _seed_candidates(points, n, seeds):
    seeds = np.unique(np.asarray(seeds, dtype=np.intp))
    if seeds.size >= 2:
        return seeds
    extremes = [int(np.argmax(points[:n, 0])), int(np.argmin(points[:n, 0])), 0, n - 1]
    return np.unique(np.concatenate([seeds, np.asarray(extremes, dtype=np.intp)]))


def decide(points, n, keys, seeds, tol, *, ray=0.0):
    """Decide the distance of each of `keys` to the hull of the other points, to the precision `tol` needs.

    Parameters
    ----------
    points : ndarray, shape (m, dim)
        Normalized coordinates; rows ``>= n`` (if any) are query points that are never candidates.
    n : int
        Number of hull points (rows ``< n``).
    keys : ndarray of intp
        Rows to test.
    seeds : array_like of intp
        Hull points known (or likely) to be extreme: the initial candidate set (Clarkson's working set).
    tol : float
        Relative tolerance; keys within ``tol / BORDERLINE_FACTOR`` are settled early.
    ray : float
        Length of the virtual downward ray in the last coordinate (bias problems), or 0.

    Returns
    -------
    Decisions
    """
    dim = points.shape[1]
    low, high, max_major = wolfe_limits(tol, dim)
    count = keys.shape[0]
    decisions = Decisions.empty(count, dim)
    candidates = _seed_candidates(points, n, seeds)
    sites_t, site_norm2 = _sites(points, n, ray)
    index = hints = None  # the sites' block index and the warm starts, built for the first batched check
    pending = np.arange(count)
    sampling = count > 4 * WARMUP_SAMPLE
    while pending.size:
        # while most keys would still find a violator, a round on all of them scans every site for each (n^2 d
        # work) to add the same few points: warm the candidates up on an evenly spaced sample of keys instead
        batch = pending[:: pending.size // WARMUP_SAMPLE][:WARMUP_SAMPLE] if sampling else pending
        if ray == 0 and batch.size >= _BATCHED_CHECK and n * dim >= _BATCHED_SITE_ENTRIES:
            index = BlockIndex(points[:n]) if index is None else index
            order, cand_t, blocks = grouped_columns(points[candidates])
            hints = hints.update(points, keys, decisions) if hints is not None else _Hints(points, keys, decisions)
            result = _check_witnesses(index, points, keys[batch], low, high, kernels.distance_to_working_set(
                points, keys[batch], candidates[order], cand_t, site_norm2[candidates[order]], blocks,
                hints.starts(points[keys[batch]], candidates[order], n), low, high, max_major))
        else:
            cand_t = np.ascontiguousarray(sites_t[:, candidates])
            work = batch.size * (candidates.size + sites_t.shape[1]) * dim
            kernel = kernels.distance_to_hull_batch if work > PARALLEL_WORK else kernels.distance_to_hull_serial
            result = kernel(points, keys[batch], n, ray > 0, candidates, cand_t, site_norm2[candidates], sites_t,
                            low, high, max_major)
        st, dist, marg, direc, supp, wts, violator = result
        decisions.status[batch], decisions.distance[batch], decisions.margin[batch] = st, dist, marg
        decisions.direction[batch] = direc
        decisions.support[batch, : supp.shape[1]], decisions.weights[batch, : wts.shape[1]] = supp, wts
        need = st == kernels.NEED_POINT
        repeated = need & np.isin(violator, candidates)  # no progress for these keys: the LP decides them
        decisions.status[batch[repeated]] = kernels.STALLED
        need &= ~repeated
        candidates = np.union1d(candidates, violator[need])  # grows every round: at most n rounds
        if sampling:
            pending = pending[~np.isin(pending, batch[~need])]
            sampling = need.mean() > WARMUP_DONE and pending.size > 4 * WARMUP_SAMPLE
        else:
            pending = pending[need]
    working = np.unique(candidates % n)  # site ids -> point ids (site n + j is point j shifted down the ray)
    for slot in np.flatnonzero(decisions.status == kernels.STALLED):
        solve_on_working_set(points, n, keys[slot], working, ray, tol, slot, decisions)
    return decisions


class _Hints:
    """Warm starts for Wolfe's algorithm: the corral of the nearest key already found unselectable.

    A key near one inside a simplex of the working set is often inside it too (about half of them among
    clusters), and Wolfe's algorithm then stops at once; else it goes on from a corral near the answer.
    """

    def __init__(self, points, keys, decisions):
        self.slots = np.flatnonzero(decisions.status == kernels.UNSELECTABLE)
        self.tree = cKDTree(points[keys[self.slots]]) if self.slots.size else None
        self.support = decisions.support[self.slots]

    def update(self, points, keys, decisions):
        """Return these hints, or new ones once the keys found unselectable have doubled."""
        found = np.count_nonzero(decisions.status == kernels.UNSELECTABLE)
        return self if found < 2 * max(self.slots.size, WARMUP_SAMPLE // 2) else _Hints(points, keys, decisions)

    def starts(self, queries, candidates, n):
        """Each query's warm start, as positions in `candidates` (b, width; -1 where none)."""
        if self.tree is None:
            return np.full((queries.shape[0], 1), -1, dtype=np.intp)
        position = np.full(n + 1, -1, dtype=np.intp)  # slot n maps the padding -1 to -1
        position[candidates] = np.arange(candidates.size)
        return position[self.support[self.tree.query(queries)[1]]]


def _check_witnesses(index, points, keys, low, high, result):
    """Turn the statuses of :func:`kernels.distance_to_working_set` into those over all sites, in place.

    Each open key's witness is scored against every site by the block index (BLAS tiles or pruned blocks),
    with the rules of :func:`kernels.distance_to_hull_batch`: a margin above `high` over all sites is
    SELECTABLE, Wolfe's stopping rule still met over all sites (the key was not separated early) CONVERGED,
    else the best other site is the key's violator (NEED_POINT). Returns `result`.
    """
    status, distance, margin, direction, _, _, violator = result
    open_ = np.flatnonzero((status == kernels.SELECTABLE) | (status == kernels.CONVERGED))
    best, best_score, _, _ = index.best_other(direction[open_], keys[open_])
    margin[open_] = np.einsum("bd,bd->b", direction[open_], points[keys[open_]]) - best_score
    converged = (status[open_] == kernels.CONVERGED) & (distance[open_] - margin[open_] <= low)
    status[open_] = np.where(margin[open_] > high, kernels.SELECTABLE,
                             np.where(converged, kernels.CONVERGED, kernels.NEED_POINT))
    need = status[open_] == kernels.NEED_POINT
    violator[open_[need]] = best[need]
    return result


def _sites(points, n, ray):
    """Return the sites as columns (dim, total): the n points, then (with a ray) their copies shifted down it."""
    sites = points[:n]
    if ray > 0:
        shifted = sites.copy()
        shifted[:, -1] -= ray
        sites = np.vstack([sites, shifted])
    return np.ascontiguousarray(sites.T), (sites * sites).sum(axis=1)


def _solve_with_all_sites(points, n, key, ray, tol, slot, decisions):
    """Decide key `slot` by Wolfe's algorithm against every site at once; return False if it stalled too."""
    low, high, max_major = wolfe_limits(tol, points.shape[1])
    sites_t, site_norm2 = _sites(points, n, ray)
    ids = np.arange(sites_t.shape[1])
    st, dist, marg, direc, supp, wts, _ = kernels.distance_to_hull_serial(
        points, np.array([key]), n, ray > 0, ids, sites_t, site_norm2, sites_t, low, high, 4 * max_major)
    if st[0] == kernels.STALLED:
        return False
    decisions.status[slot], decisions.distance[slot], decisions.margin[slot] = st[0], dist[0], marg[0]
    decisions.direction[slot] = direc[0]
    decisions.support[slot] = -1
    decisions.weights[slot] = 0.0
    decisions.support[slot, : supp.shape[1]], decisions.weights[slot, : wts.shape[1]] = supp[0], wts[0]
    return True


def solve_on_working_set(points, n, key, working, ray, tol, slot, decisions, best_two=None):
    """Decide key `slot` by the LP fallback over a working set, then over all points if that does not decide.

    The LP over the working set ``W`` (:func:`solve_with_lp` on ``W`` and the key) either finds a combination
    of points of ``W`` within `tol` of the key, a certificate for all points as it stands, or a witness that
    separates the key from ``W``; that witness's margin over all points is recomputed exactly, and points
    beating it join ``W`` for the next round. A witness is used only when its margin over all points exceeds
    `tol`; after a few rounds (or if neither HiGHS nor Wolfe decides over ``W``) Wolfe's algorithm against all
    points decides, or where it stalls, the LP over all points.

    `best_two(direction, key)` returns the two best hull points other than `key` along `direction`, their
    scores and the key's own score (default: a scan of the n points; a witness never favours the ray, whose
    weight is kept >= 0, so the shifted sites of a bias problem never beat their originals).
    """
    best_two = _best_two_by_scan(points, n) if best_two is None else best_two
    working = np.empty(0, dtype=np.intp) if working is None else np.unique(working[working != key])
    for _ in range(_LP_ROUNDS if working.size else 0):
        rows = np.append(working, key)
        local = Decisions.empty(1, points.shape[1])
        try:
            solve_with_lp(points[rows], rows.size, rows.size - 1, ray, tol, 0, local)
        except RuntimeError:
            break
        status = local.status[0]
        if status == kernels.UNSELECTABLE or (status == kernels.CONVERGED and not local.margin[0] > -np.inf):
            used = local.support[0] >= 0
            decisions.status[slot], decisions.distance[slot] = status, local.distance[0]
            decisions.support[slot] = -1
            decisions.weights[slot] = 0.0
            decisions.support[slot, : used.sum()] = working[local.support[0][used]]
            decisions.weights[slot, : used.sum()] = local.weights[0][used]
            return
        direction = local.direction[0]
        best, second, best_score, second_score, own_score = best_two(direction, key)
        margin = own_score - best_score
        if margin > tol:
            decisions.status[slot] = kernels.SELECTABLE if margin > tol * BORDERLINE_FACTOR else kernels.CONVERGED
            decisions.margin[slot], decisions.direction[slot] = margin, direction
            decisions.distance[slot] = max(local.distance[0], margin)
            return
        beating = [k for k, score in ((best, best_score), (second, second_score))
                   if k >= 0 and own_score - score < local.margin[0] and k not in working]
        if not beating:
            break
        working = np.union1d(working, beating)
    if not _solve_with_all_sites(points, n, key, ray, tol, slot, decisions):  # O(n d) per step: faster than HiGHS
        solve_with_lp(points, n, key, ray, tol, slot, decisions, wolfe=False)


def _best_two_by_scan(points, n):
    """``best_two`` of :func:`solve_on_working_set` by scoring every hull point (the rows ``< n`` of `points`)."""

    def best_two(direction, key):
        scores = points[:n] @ direction
        if key < n:
            scores[key] = -np.inf
        order = np.argsort(-scores, kind="stable")[:2] if n < 3 else np.argpartition(-scores, 1)[:2]
        order = order[np.argsort(-scores[order], kind="stable")]
        second = int(order[1]) if order.size > 1 else -1
        return (int(order[0]), second, float(scores[order[0]]), float(scores[second]) if second >= 0 else -np.inf,
                float(points[key] @ direction))

    return best_two


def solve_with_lp(points, n, key, ray, tol, slot, decisions, *, wolfe=True):
    """Decide key `slot` with two HiGHS linear programs (the fallback where Wolfe's algorithm stalled).

    HiGHS meets its constraints only to about 1e-7, so a solution is used only where it certifies the
    verdict by itself (a combination within `tol`, or a witness margin above `tol`, both recomputed
    exactly); otherwise Wolfe's algorithm runs against all sites (unless `wolfe` is False: the caller ran
    it already), which resolves distances near `tol`. Raises RuntimeError if nothing decides.
    """
    status, distance, margin, direction = decisions.status, decisions.distance, decisions.margin, decisions.direction
    from scipy.optimize import linprog  # imported here: scipy.optimize alone would double geomln's import time
    others = np.setdiff1d(np.arange(n), [key])
    lifted = points[others]
    target = points[key]
    m, dim = lifted.shape
    with_ray = ray > 0
    # membership: min t  s.t.  |sum_j lam_j p_j - mu e_last - p_key|_inf <= t, sum lam = 1, lam, mu, t >= 0
    columns = m + int(with_ray) + 1
    block = np.zeros((dim, columns))
    block[:, :m] = lifted.T
    if with_ray:
        block[-1, m] = -1.0
    block[:, -1] = -1.0
    upper = block
    lower = -block
    lower[:, -1] = -1.0
    a_ub = np.vstack([upper, lower])
    b_ub = np.concatenate([target, -target])
    a_eq = np.zeros((1, columns))
    a_eq[0, :m] = 1.0
    objective = np.zeros(columns)
    objective[-1] = 1.0
    member = linprog(objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0], bounds=(0, None), method="highs")
    if member.status == 0:
        lam = member.x[:m]
        used = np.flatnonzero(lam > 1e-14)
        weights = lam[used] / lam[used].sum()  # HiGHS meets sum(lam) = 1 only to its feasibility tolerance
        residual = lifted[used].T @ weights - target  # so judge the certificate actually stored
        if with_ray:
            residual[-1] -= member.x[m]
        residual_norm = float(np.linalg.norm(residual))
        decisions.support[slot] = -1
        decisions.support[slot, : used.size] = others[used]
        decisions.weights[slot, : used.size] = weights
        distance[slot] = residual_norm
        if residual_norm <= tol:
            status[slot] = kernels.CONVERGED if residual_norm > tol / BORDERLINE_FACTOR else kernels.UNSELECTABLE
            return
    # separation: max delta  s.t.  q.(p_key - p_j) >= delta for all j, -1 <= q <= 1 (q_last >= 0 with a bias)
    objective = np.zeros(dim + 1)
    objective[-1] = -1.0
    a_ub = np.hstack([-(target - lifted), np.ones((m, 1))])
    bounds = [(-1.0, 1.0)] * dim + [(None, None)]
    if with_ray:
        bounds[dim - 1] = (0.0, 1.0)
    separate = linprog(objective, A_ub=a_ub, b_ub=np.zeros(m), bounds=bounds, method="highs")
    if separate.status == 0 and -separate.fun > 0:
        q = separate.x[:dim]
        unit = q / np.linalg.norm(q)
        exact_margin = float(np.min((target - lifted) @ unit))
        if exact_margin > tol:
            margin[slot] = exact_margin
            direction[slot] = unit
            distance[slot] = max(distance[slot], exact_margin)
            status[slot] = kernels.SELECTABLE if exact_margin > tol * BORDERLINE_FACTOR else kernels.CONVERGED
            return
    if not (wolfe and _solve_with_all_sites(points, n, key, ray, tol, slot, decisions)):
        raise RuntimeError(f"neither HiGHS nor Wolfe's algorithm decided key {key}; please report this input")


def decide_in_prefixes(points, keys, ends, shared_seeds, seeds, lows, highs):
    """Decide each of `keys` against the hull of its own prefix ``points[:ends[r]]`` (itself excluded).

    `points` (m, dim) are normalized coordinates; the points `shared_seeds` (known extreme points) and
    `seeds` (b, k) start each key's working set (ids, padded with -1); `lows` and `highs` are per-key
    stopping distances as in :func:`wolfe_limits`. Returns :class:`Decisions`; status NEED_POINT never
    occurs, STALLED keys are left to the caller.

    A key's cost grows with its prefix, and numba gives each thread one contiguous range of rows, so the
    rows are dealt out in turn (row ``r`` to range ``r mod threads``); each key's result does not depend on
    its thread.
    """
    points = np.ascontiguousarray(points)
    max_major = wolfe_limits(1.0, points.shape[1])[2]
    deal = np.argsort(np.arange(len(keys)) % get_num_threads(), kind="stable")
    outputs = kernels.distance_to_prefix_hulls(
        points, np.ascontiguousarray(points.T), (points * points).sum(axis=1),
        np.asarray(keys, dtype=np.intp)[deal], np.asarray(ends, dtype=np.intp)[deal],
        np.unique(np.asarray(shared_seeds, dtype=np.intp)),
        np.ascontiguousarray(np.asarray(seeds)[deal], dtype=np.intp),
        np.ascontiguousarray(np.asarray(lows)[deal], dtype=np.float64),
        np.ascontiguousarray(np.asarray(highs)[deal], dtype=np.float64), max_major)
    undeal = np.empty_like(deal)
    undeal[deal] = np.arange(deal.size)
    return Decisions(*(output[undeal] for output in outputs[:6]))
