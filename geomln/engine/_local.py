"""Sets where most keys are vertices, in low dimension: witnesses and working sets from a score tree.

On a circle or a sphere every key is a vertex and many are borderline-close, so the engine's general steps
turn quadratic: the witness scan scores all keys against every key's direction, and Clarkson's loop grows one
working set shared by all keys towards ``n`` while each check scans all keys. Here a k-d tree over the keys
lifted by ``sqrt(R^2 - |k|^2)`` answers "which keys score highest along ``q``" exactly (the highest scores
``q.k`` are the nearest lifted keys to ``(R q, 0)``: ``|(R q, 0) - (k, l)|^2 = 2 R^2 - 2 R q.k``), in about
``O(log n)`` per query. Each key's own direction is scored through the tree; the keys it does not certify get
their own working sets, started from their nearest lifted neighbours, and Clarkson's loop runs per key with
every witness checked against all keys through the tree. The verdict rules, stopping distances and
certificates are those of :func:`geomln.engine._geometry.decide`; scores that decide are recomputed exactly
from the keys, the tree only proposes which keys to score.
"""

import numpy as np

from . import _kernels as kernels
from ._geometry import PARALLEL_WORK, Decisions, solve_with_lp, wolfe_limits

__all__ = ["MIN_KEYS", "MAX_DIM", "ScoreTree", "most_keys_vertices", "witness_pass", "decide_local"]

#: the path is used from this many keys on (below it the engine's scan is as fast)
MIN_KEYS = 4096
#: and up to this dimension (above it a k-d tree query visits most of the tree)
MAX_DIM = 8
_SAMPLE = 256  # keys whose own directions decide whether most keys are vertices
_PROPOSED = 3  # keys the tree proposes per query (the best two, and one for ties in the lifted distances)


class ScoreTree:
    """Top scores ``q.k`` over the rows of `points` (m, dim) for many unit directions ``q``, by a k-d tree."""

    def __init__(self, points):
        from scipy.spatial import cKDTree  # imported here: scipy.spatial costs import time

        self.points = points
        self.shifted = points - _sphere_centre(points)  # scores along q change by a constant: same order
        norm2 = (self.shifted * self.shifted).sum(axis=1)
        self.radius = float(np.sqrt(norm2.max()))
        lift = np.sqrt(np.maximum(norm2.max() - norm2, 0.0))  # |lifted key| = R for every key
        self.lifted = np.column_stack([self.shifted, lift])
        self.tree = cKDTree(self.lifted, balanced_tree=False)

    def best(self, directions, exclude):
        """Return the best key other than `exclude` along each unit direction, and its exact score.

        Parameters
        ----------
        directions : ndarray, shape (b, dim)
        exclude : ndarray of intp, shape (b,)
            A key to leave out per direction (-1 for none).

        Returns
        -------
        best, second : ndarray of intp, shape (b,)
            The highest-scoring key other than `exclude`, and the next one.
        best_score, second_score : ndarray, shape (b,)
        """
        query = np.column_stack([self.radius * directions, np.zeros(directions.shape[0])])
        _, proposed = self.tree.query(query, k=min(_PROPOSED, self.points.shape[0]))
        scores = np.einsum("bd,bkd->bk", directions, self.shifted[proposed])
        scores[proposed == exclude[:, None]] = -np.inf
        order = np.argsort(-scores, axis=1)[:, :2]
        rows = np.arange(directions.shape[0])[:, None]
        picked, picked_scores = proposed[rows, order], scores[rows, order]
        return picked[:, 0], picked[:, 1], picked_scores[:, 0], picked_scores[:, 1]

    def neighbours(self, keys, count):
        """Return the `count` keys nearest to each of `keys` in the lifted space (the key itself left out)."""
        _, near = self.tree.query(self.lifted[keys], k=count + 1)
        own = near == keys[:, None]
        own[~own.any(axis=1), -1] = True  # a key tied at distance 0 with another key may be listed after it
        return near[~own].reshape(keys.size, count)


def _sphere_centre(points):
    """Return the centre of the sphere fitted to `points` by least squares, or 0 if it lies far out.

    Keys on (or near) a sphere then all have nearly the same norm about it, so their lifts are nearly 0 and
    tree queries stay near the keys; their own directions about it are good witnesses.
    """
    design = np.column_stack([2.0 * points, np.ones(points.shape[0])])
    solution = np.linalg.lstsq(design, (points * points).sum(axis=1), rcond=None)[0]
    centre = solution[:-1]
    return centre if np.linalg.norm(centre) <= 1.0 else np.zeros(points.shape[1])


def _own_directions(points, keys):
    norms = np.linalg.norm(points[keys], axis=1)
    usable = norms > 0
    return keys[usable], points[keys[usable]] / norms[usable, None]


def most_keys_vertices(tree, tol):
    """Whether most keys of a fixed sample lie farther than ``tol / 10`` from the hull of the others.

    Decided by :func:`decide_local`: the keys it finds certainly unselectable are the deep ones.
    """
    m = tree.points.shape[0]
    sample = np.sort(np.random.default_rng(0).choice(m, min(_SAMPLE, m), replace=False))
    decisions = decide_local(tree, sample, tol)
    return np.count_nonzero(decisions.status != kernels.UNSELECTABLE) > 0.5 * sample.size


def witness_pass(tree):
    """Score every key's own direction through the tree; return each key's best certified margin and direction.

    As the engine's witness scan: the strict argmax of each direction is certified by it, with margin
    ``top - second`` (the direction is a unit vector).
    """
    points = tree.points
    m, dim = points.shape
    keys, directions = _own_directions(tree.shifted, np.arange(m))
    winner, _, top, second = tree.best(directions, np.full(keys.size, -1, dtype=np.intp))
    margins = top - second
    best_margin = np.full(m, -np.inf)
    order = np.lexsort((-margins, winner))  # best margin first within each winner
    first = np.concatenate([[True], winner[order][1:] != winner[order][:-1]])
    chosen = order[first]
    best_margin[winner[chosen]] = margins[chosen]
    best_direction = np.zeros((m, dim))
    best_direction[winner[chosen]] = directions[chosen]
    return best_margin, best_direction


def decide_local(tree, keys, tol):
    """Decide `keys` as :func:`geomln.engine._geometry.decide` does, with a working set per key.

    Each key's working set starts with its ``2 dim + 2`` nearest lifted neighbours. A witness that a key
    outside its working set beats is not final: the best such key joins that working set (and only that one)
    and the key is decided again. A key whose best violator is already in its set, or whose Wolfe run
    stalls, is decided by the LP fallback.

    Returns
    -------
    Decisions
    """
    points = tree.points
    m, dim = points.shape
    low, high, max_major = wolfe_limits(tol, dim)
    decisions = Decisions.empty(keys.size, dim)
    pending = np.arange(keys.size)
    candidates = tree.neighbours(keys, min(2 * dim + 2, m - 1))
    while pending.size:
        work = pending.size * candidates.shape[1] ** 2 * dim  # about the flops of the Wolfe runs
        kernel = kernels.distance_to_own_hulls if work > PARALLEL_WORK else kernels.distance_to_own_hulls_serial
        st, dist, marg, direc, supp, wts, _ = kernel(points, keys[pending], candidates, low, high, max_major)
        st[st == kernels.NEED_POINT] = kernels.STALLED  # cannot happen: the checks ran over the working set
        witnessed = np.flatnonzero((st == kernels.SELECTABLE) | (st == kernels.CONVERGED))
        best, _, best_score, _ = tree.best(direc[witnessed], keys[pending[witnessed]])
        own_score = np.einsum("bd,bd->b", direc[witnessed], tree.shifted[keys[pending[witnessed]]])
        margin = own_score - best_score
        outside = ~(candidates[witnessed] == best[:, None]).any(axis=1)
        violated = margin < marg[witnessed]
        need = np.zeros(pending.size, dtype=bool)
        need[witnessed[violated & outside]] = True
        final = witnessed[~(violated & outside)]
        marg[final] = np.minimum(marg[final], margin[~(violated & outside)])
        rounding = (st[final] == kernels.SELECTABLE) & ~(marg[final] > high)  # a rounding-level disagreement
        st[final[rounding]] = kernels.STALLED
        st[need] = kernels.NEED_POINT
        done = ~need
        slots = pending[done]
        decisions.status[slots], decisions.distance[slots], decisions.margin[slots] = st[done], dist[done], marg[done]
        decisions.direction[slots] = direc[done]
        decisions.support[slots, : supp.shape[1]], decisions.weights[slots, : wts.shape[1]] = supp[done], wts[done]
        violator = np.full(pending.size, -1, dtype=np.intp)
        violator[witnessed] = best
        candidates = np.ascontiguousarray(np.column_stack([candidates[need], violator[need]]))
        pending = pending[need]
    for slot in np.flatnonzero(decisions.status == kernels.STALLED):
        solve_with_lp(points, m, keys[slot], 0.0, tol, slot, decisions)
    return decisions
