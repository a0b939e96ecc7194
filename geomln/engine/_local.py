"""Sets where many keys are vertices, in low dimension: witnesses and working sets from a score tree.

On a circle or a sphere every key is a vertex and many are borderline-close, so the engine's general steps
turn quadratic: the witness scan scores all keys against every key's direction, and Clarkson's loop grows one
working set shared by all keys towards ``n`` while each check scans all keys. Here a k-d tree over the keys
lifted by ``sqrt(R^2 - |k|^2)`` answers "which keys score highest along ``q``" exactly (the highest scores
``q.k`` are the nearest lifted keys to ``(R q, 0)``: ``|(R q, 0) - (k, l)|^2 = 2 R^2 - 2 R q.k``), in about
``O(log n)`` per query. Each key's own direction is scored through the tree; the keys it does not certify get
their own working sets, started from the top scorers of their own direction, and Clarkson's loop runs per key
with every witness checked against all keys through the tree. The path is taken when more than a quarter of a
sample of keys are vertices (a sphere with keys inside it as well as a bare sphere). The verdict rules,
stopping distances and certificates are those of :func:`geomln.engine._geometry.decide`; scores that decide
are recomputed exactly from the keys, the tree only proposes which keys to score.
"""

import numpy as np

from .._jit import get_num_threads
from . import _kernels as kernels
from ._geometry import BORDERLINE_FACTOR, PARALLEL_WORK, Decisions, wolfe_limits
from ._geometry import solve_on_working_set as shared_solve

__all__ = ["MIN_KEYS", "MAX_DIM", "ScoreTree", "most_keys_vertices", "witness_pass", "decide_local",
           "solve_on_working_set"]

#: the path is used from this many keys on (below it the engine's scan is as fast)
MIN_KEYS = 4096
#: and up to this dimension (above it a k-d tree query visits most of the tree)
MAX_DIM = 8
_SAMPLE = 256  # keys whose verdicts decide whether the path is taken
_VERTEX_SHARE = 0.25  # the path is taken when more than this share of the sample lie off the others' hull
_PROPOSED = 3  # keys the tree proposes per query (the best two, and one for ties in the lifted distances)
_MAX_ADDED = 64  # keys a key's working set may gain before the LP decides it
_MAX_TILTS = 10  # tilted directions per round in _between
_PARALLEL_QUERIES = 4096  # tree queries from which a batch runs on numba's threads
_COVER_SLACK = 1e-12  # relative slack of _covered against rounding (scores are rounded to ~1e-16 R)


class ScoreTree:
    """Top scores ``q.k`` over the rows of `points` (m, dim) for many unit directions ``q``, by a k-d tree."""

    def __init__(self, points):
        from scipy.spatial import cKDTree  # imported here: scipy.spatial costs import time

        self.points = points
        self.shifted = points - sphere_centre(points)  # scores along q change by a constant: same order
        norm2 = (self.shifted * self.shifted).sum(axis=1)
        self.radius = float(np.sqrt(norm2.max()))
        lift = np.sqrt(np.maximum(norm2.max() - norm2, 0.0))  # |lifted key| = R for every key
        self.lifted = np.column_stack([self.shifted, lift])
        self.tree = cKDTree(self.lifted, balanced_tree=False)
        self.own_top = None  # (m, k) top scorers of each key's own direction, set by witness_pass
        self.own_floor = None  # (m,) and the lowest of their scores
        self.own_share = 0.0  # share of a sample of keys whose own directions certify them (most_keys_vertices)

    def top(self, directions, count):
        """Return the `count` + 1 keys with the highest scores along each unit direction, best first.

        The proposals of the tree are ordered by their scores recomputed from the keys (returned too, in
        shifted coordinates); every key not returned scores at most the last score returned, up to rounding.
        """
        count = min(count + 1, self.points.shape[0])
        query = np.column_stack([self.radius * directions, np.zeros(directions.shape[0])])
        _, proposed = self.tree.query(query, k=count, workers=_workers(query.shape[0]))
        proposed = proposed.reshape(directions.shape[0], count)
        scores = np.einsum("bd,bkd->bk", directions, self.shifted[proposed])
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(proposed, order, axis=1), np.take_along_axis(scores, order, axis=1)

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
        _, proposed = self.tree.query(query, k=min(_PROPOSED, self.points.shape[0]), workers=_workers(query.shape[0]))
        scores = np.einsum("bd,bkd->bk", directions, self.shifted[proposed])
        scores[proposed == exclude[:, None]] = -np.inf
        order = np.argsort(-scores, axis=1)[:, :2]
        rows = np.arange(directions.shape[0])[:, None]
        picked, picked_scores = proposed[rows, order], scores[rows, order]
        return picked[:, 0], picked[:, 1], picked_scores[:, 0], picked_scores[:, 1]

    def neighbours(self, keys, count):
        """Return the `count` keys nearest to each of `keys` in the lifted space (the key itself left out)."""
        _, near = self.tree.query(self.lifted[keys], k=count + 1, workers=_workers(keys.size))
        own = near == keys[:, None]
        own[~own.any(axis=1), -1] = True  # a key tied at distance 0 with another key may be listed after it
        return near[~own].reshape(keys.size, count)


def _workers(queries):
    """Threads for a batch of tree queries: numba's thread count for large batches (results do not depend on it)."""
    return get_num_threads() if queries >= _PARALLEL_QUERIES else 1


def sphere_centre(points):
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


def _seeds(tree, keys, width):
    """Return the first working set of each key: the `width` other keys scoring highest along its own direction.

    On a sphere these are its nearest neighbours; for a key inside they are the keys beyond it, which a
    combination needs. Keys at the centre (no own direction) get their nearest lifted neighbours. Also returns
    each key's own unit direction (shifted coordinates; zeros at the centre) and the score along it that no key
    outside the set exceeds (up to rounding; inf at the centre), for :func:`_covered`. Cached on the tree by
    :func:`witness_pass` for all keys.
    """
    norms = np.linalg.norm(tree.shifted[keys], axis=1)
    has_own = norms > 0
    directions = np.zeros((keys.size, tree.shifted.shape[1]))
    directions[has_own] = tree.shifted[keys[has_own]] / norms[has_own, None]
    if tree.own_top is None or tree.own_top.shape[1] < width + 1:
        top = np.full((keys.size, width + 1), -1, dtype=np.intp)
        floor = np.full(keys.size, np.inf)
        top[has_own], scores = tree.top(directions[has_own], width)
        floor[has_own] = scores[:, -1]
    else:
        top, floor = tree.own_top[keys], tree.own_floor[keys]
    seeds = np.empty((keys.size, width), dtype=np.intp)
    rows = top[has_own]
    keep = rows != keys[has_own, None]
    keep[keep.all(axis=1), -1] = False  # the key is not among its top scorers (another key wins its direction)
    seeds[has_own] = rows[keep].reshape(-1, width)
    if not has_own.all():
        seeds[~has_own] = tree.neighbours(keys[~has_own], width)
    return seeds, directions, floor


def _covered(tree, own, directions, witnesses, margins, floor):
    """Whether every key that would lower each witness's margin is in the key's first working set.

    A key ``j`` lowers the margin of the unit witness ``w`` of key ``i`` only if ``w.s_j >= t = w.s_i - margin``
    (``s`` the shifted keys, all within the radius ``R`` of the tree's centre). On that cap of the ball the
    score along the key's own direction ``q`` is at least ``t c - sqrt(R^2 - t^2) sqrt(1 - c^2)``
    (``c = q.w``, where ``c R > -t``); where this exceeds `floor` (the score along ``q`` that no key outside the
    first working set exceeds), the margin over the working set is the margin over all keys and no tree query is needed.
    """
    radius = tree.radius
    threshold = np.einsum("bd,bd->b", witnesses, tree.shifted[own]) - margins
    cosine = np.einsum("bd,bd->b", directions, witnesses)
    sine = np.linalg.norm(directions - cosine[:, None] * witnesses, axis=1)
    half_chord = np.sqrt(np.maximum((radius - threshold) * (radius + threshold), 0.0))
    lowest = threshold * cosine - half_chord * sine
    # the bound holds where the cap does not reach -R q (there the lowest score would be -R): c R > -t
    return (lowest > floor + _COVER_SLACK * radius) & (threshold <= radius) & (cosine * radius > -threshold)


def most_keys_vertices(tree, tol):
    """Whether more than a quarter of a fixed sample of keys lie farther than ``tol / 10`` from the others' hull.

    Decided by :func:`decide_local`: the keys it finds certainly unselectable are the deep ones. (From about a
    quarter on, the engine's shared working set grows towards the many vertices and its checks scan all keys,
    which costs more than per-key working sets do for the interior keys.) Also records on the tree the share of the
    sample whose own directions certify them (``own_share``), for :func:`witness_pass` and the engine's choice.
    """
    m = tree.points.shape[0]
    sample = np.sort(np.random.default_rng(0).choice(m, min(_SAMPLE, m), replace=False))
    keys, directions = _own_directions(tree.shifted, sample)
    top, scores = tree.top(directions, 1)
    certified = (top[:, 0] == keys) & (scores[:, 0] - scores[:, 1] > BORDERLINE_FACTOR * tol)
    tree.own_share = np.count_nonzero(certified) / sample.size
    decisions = decide_local(tree, sample, tol)
    return np.count_nonzero(decisions.status != kernels.UNSELECTABLE) > _VERTEX_SHARE * sample.size


def witness_pass(tree):
    """Score every key's own direction through the tree; return each key's best certified margin and direction.

    As the engine's witness scan: the strict argmax of each direction is certified by it, with margin
    ``top - second`` (the direction is a unit vector). Unless :func:`most_keys_vertices` found that most keys
    certify themselves, the top ``2 dim + 2`` scorers of each key's own direction are kept on the tree
    (``own_top``): they seed the key's working set in :func:`decide_local`.
    """
    points = tree.points
    m, dim = points.shape
    width = min(_PROPOSED - 1 if tree.own_share > 0.5 else 2 * dim + 2, m - 1)  # most certify: no seeds needed
    keys, directions = _own_directions(tree.shifted, np.arange(m))
    top, scores = tree.top(directions, width)
    tree.own_top = np.full((m, top.shape[1]), -1, dtype=np.intp)
    tree.own_top[keys] = top
    tree.own_floor = np.full(m, np.inf)
    tree.own_floor[keys] = scores[:, -1]
    winner = top[:, 0]
    margins = scores[:, 0] - scores[:, 1]
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

    Each key's working set starts with the ``2 dim + 2`` other keys that score highest along its own
    direction. A witness that a key outside its working set beats is not final: the best two keys along it
    and the keys :func:`_between` finds join that working set (and only that one) and the key is decided
    again. A key whose set grew by more than 64 keys, whose Wolfe run stalls, or whose witness clears ``10 tol``
    over its set but not over all keys (a rounding-level disagreement) is decided by
    :func:`solve_on_working_set`.

    Returns
    -------
    Decisions
    """
    points = tree.points
    m, dim = points.shape
    low, high, max_major = wolfe_limits(tol, dim)
    decisions = Decisions.empty(keys.size, dim)
    pending = np.arange(keys.size)
    width = min(2 * dim + 2, m - 1)
    candidates, own_directions, floor = _seeds(tree, keys, width)
    working = [None] * keys.size  # the working sets of the keys that the LP decides
    beyond_added = np.zeros(keys.size, dtype=bool)  # whether a key's working set got the top scorers of a witness
    starts = np.full((keys.size, 1), -1, dtype=np.intp)  # Wolfe's starts: each key's support in its last round
    while pending.size:
        work = pending.size * candidates.shape[1] ** 2 * dim  # about the flops of the Wolfe runs
        kernel = kernels.distance_to_own_hulls if work > PARALLEL_WORK else kernels.distance_to_own_hulls_serial
        st, dist, marg, direc, supp, wts, _ = kernel(points, keys[pending], candidates, starts, low, high, max_major)
        st[st == kernels.NEED_POINT] = kernels.STALLED  # cannot happen: the checks ran over the working set
        witnessed = np.flatnonzero((st == kernels.SELECTABLE) | (st == kernels.CONVERGED))
        covered = _covered(tree, keys[pending[witnessed]], own_directions[pending[witnessed]], direc[witnessed],
                           marg[witnessed], floor[pending[witnessed]])
        witnessed = witnessed[~covered]  # the others are final: their margins hold over all keys
        # a witness pointing away from the key's own direction separates a key inside from the keys beyond it:
        # once per key, the top scorers along it join the working set (the far side), without a check
        slots = pending[witnessed]
        inward = ~beyond_added[slots] & (np.einsum("bd,bd->b", own_directions[slots], direc[witnessed]) < 0)
        beyond = witnessed[inward]
        beyond_added[pending[beyond]] = True
        witnessed = witnessed[~inward]
        own = keys[pending[witnessed]]
        best, second, best_score, second_score = tree.best(direc[witnessed], own)
        own_score = np.einsum("bd,bd->b", direc[witnessed], tree.shifted[own])
        margin = own_score - best_score
        in_set = candidates[witnessed]
        outside = ~(in_set == best[:, None]).any(axis=1)
        need_witnessed = (margin < marg[witnessed]) & outside
        final = witnessed[~need_witnessed]
        marg[final] = np.minimum(marg[final], margin[~need_witnessed])
        rounding = (st[final] == kernels.SELECTABLE) & ~(marg[final] > high)  # a rounding-level disagreement
        st[final[rounding]] = kernels.STALLED
        need = np.zeros(pending.size, dtype=bool)
        need[witnessed[need_witnessed]] = True
        need[beyond] = True
        full = need & ((candidates >= 0).sum(axis=1) >= width + _MAX_ADDED)
        need &= ~full
        st[full] = kernels.STALLED
        first_added = np.full(pending.size, -1, dtype=np.intp)
        second_added = np.full(pending.size, -1, dtype=np.intp)
        first_added[witnessed] = best
        second_added[witnessed] = second  # the runner-up joins too (fewer rounds); not a violator is harmless
        done = ~need
        slots = pending[done]
        decisions.status[slots], decisions.distance[slots], decisions.margin[slots] = st[done], dist[done], marg[done]
        decisions.direction[slots] = direc[done]
        decisions.support[slots, : supp.shape[1]], decisions.weights[slots, : wts.shape[1]] = supp[done], wts[done]
        for row in np.flatnonzero(done & (st == kernels.STALLED)):
            working[pending[row]] = candidates[row][candidates[row] >= 0]
        tilts = np.zeros(pending.size, dtype=bool)
        tilts[witnessed] = True
        tilts = tilts[need]
        far_side = np.full((pending.size, width + 1), -1, dtype=np.intp)
        if beyond.size:
            far_side[beyond] = tree.top(direc[beyond], width)[0]
            far_side[beyond] = np.where(far_side[beyond] == keys[pending[beyond], None], -1, far_side[beyond])
        between = np.full((tilts.size, _MAX_TILTS), -1, dtype=np.intp)
        found = _between(tree, keys[pending[need][tilts]], direc[need][tilts], candidates[need][tilts])
        between[tilts, : found.shape[1]] = found
        added = np.column_stack([first_added[need], second_added[need], between, far_side[need]])
        candidates = _joined(candidates[need], added)
        starts = supp[need]
        pending = pending[need]
    for slot in np.flatnonzero(decisions.status == kernels.STALLED):
        solve_on_working_set(tree, keys[slot], working[slot], tol, slot, decisions)
    return decisions


def _between(tree, keys, witnesses, candidates):
    """Keys between each key and the best violator of its witness: the best along tilts of its own direction.

    The best violator along a witness ``w`` lies far from the key when the key's working set sits on one side
    of it (a gap in a circle's angles), and Clarkson's loop would then halve the angle towards the key's
    neighbour beyond the gap round by round. The directions ``q + t w`` (``q`` the key's own unit direction) for
    ``t = 4^-1 .. 4^-J``, down to a quarter of the angle its working set spans, find keys on the witness's side
    at every scale in one round; their top scorers join the working set.
    """
    own = tree.shifted[keys]
    norms = np.linalg.norm(own, axis=1)
    if keys.size == 0 or not (norms > 0).all():
        return np.full((keys.size, 0), -1, dtype=np.intp)
    own = own / norms[:, None]
    valid = candidates >= 0
    ids = np.where(valid, candidates, keys[:, None])
    cosines = np.einsum("bd,bkd->bk", own, tree.shifted[ids]) / np.maximum(
        np.linalg.norm(tree.shifted[ids], axis=2), 1e-300)
    spans = np.sqrt(np.maximum(2.0 - 2.0 * np.where(valid, cosines, 1.0).min(axis=1), 0.0))
    smallest = max(float(np.median(spans)) / 4.0, 1e-7)
    count = min(int(np.ceil(np.log(1.0 / smallest) / np.log(4.0))), _MAX_TILTS)
    found = np.full((keys.size, count), -1, dtype=np.intp)
    for j in range(count):
        tilted = own + 4.0 ** -(j + 1) * witnesses
        tilted /= np.linalg.norm(tilted, axis=1)[:, None]
        top = tree.top(tilted, 1)
        found[:, j] = np.where(top[0][:, 0] == keys, top[0][:, -1], top[0][:, 0])
    return found


def _joined(candidates, added):
    """Append the columns `added` to the working sets `candidates`, with -1 where a key is already in its row."""
    for column in added.T:
        column = np.where((candidates == column[:, None]).any(axis=1), -1, column)
        if (column >= 0).any():
            candidates = np.column_stack([candidates, column])
    return np.ascontiguousarray(candidates)


def solve_on_working_set(tree, key, working, tol, slot, decisions):
    """Decide key `slot` by :func:`geomln.engine._geometry.solve_on_working_set`, witnesses checked through the tree."""

    def best_two(direction, key):
        best, second, best_score, second_score = tree.best(direction[None], np.array([key]))
        return best[0], second[0], best_score[0], second_score[0], float(direction @ tree.shifted[key])

    shared_solve(tree.points, tree.points.shape[0], key, working, 0.0, tol, slot, decisions, best_two)
