"""Small working sets per key: most keys settle against a few extreme keys near their own direction.

In Clarkson's loop of :func:`geomln.engine._geometry.decide` every key runs Wolfe's algorithm against one shared
working set that grows towards all the vertices, so an interior key pays ``O(h d)`` per Wolfe iteration for h
vertices. But a key deep inside is already within ``tol / 10`` of the hull of a few extreme keys: those that
score highest along its own direction (the facet region its ray leaves through) and those extreme along the
axes (a polytope round the centre). Here each key first gets such a set of about ``4 dim`` certified vertices;
Wolfe's algorithm against it settles the key when the distance is within `low` (the combination is the
certificate, whatever the set), and a separating witness is checked against all keys: a margin above `high` over
every key settles it as selectable, else a violating key (and the next one, where it violates too) joins that
key's own set and the key is decided again, for up to :data:`ROUNDS` rounds. The violator is the best of the
likely vertices (the seeds and the earlier rounds' violators) where that one violates, else the best of all keys
(both from :class:`~geomln.engine._blocks.BlockIndex`, exactly as a scan would give them).
Everything else (borderline, stalled, unresolved after the rounds) goes through the general loop. The stopping
distances and certificates are the engine's; only who is tried first changes.
"""

import numpy as np

from . import _kernels as kernels
from . import _scan_kernels as scan_kernels
from ._blocks import BlockIndex
from ._geometry import PARALLEL_WORK, Decisions, wolfe_limits

__all__ = ["MIN_KEYS", "settle_with_own_sets"]

#: the engine uses own sets from this many keys on (below it the shared working set is cheap enough)
MIN_KEYS = 5000

ROUNDS = 32  # per-key Clarkson rounds before a key is left to the general loop (in 16-D a round settles 10-20 %)
_MIN_SETTLED = 0.05  # after the first rounds, the rounds stop once one settles less than this share of its keys
_FIRST_ROUNDS = 3
_MIN_SEEDS_PER_DIM = 4  # below this many seeds per dimension the sets would be the seeds themselves


def _own_sets(points, keys, seeds):
    """Each key's starting set (b, width): seeds extreme along the axes, then those best along its own direction."""
    dim = points.shape[1]
    seed_points = points[seeds]
    base = np.unique(np.concatenate([seeds[np.argmax(seed_points, axis=0)], seeds[np.argmin(seed_points, axis=0)]]))
    # all the seeds: the sets are then the nearest along each direction (a random 4,096 of them took n = 1e5,
    # d = 16 from 33 s to 81 s); the selection costs at most a quarter of the witness scan that certified them
    others = np.setdiff1d(seeds, base)
    width = min(others.size, 2 * dim + 2)
    directions = points[keys].copy()
    norms = np.linalg.norm(directions, axis=1)
    directions[norms == 0] = np.eye(1, dim)  # the centre itself: any direction will do
    norms[norms == 0] = 1.0
    directions /= norms[:, None]
    near = scan_kernels.top_columns(points[others], directions, width)
    return np.ascontiguousarray(np.column_stack([others[near], np.broadcast_to(base, (keys.size, base.size))]))


def _violators(index, tier_index, tier, directions, keys, own_score, own_margin, candidates, high):
    """Return ``(best, best_score, runner, runner_score)`` along each witness, as :meth:`BlockIndex.best_other`.

    The likely vertices are scored first: `tier_index` holds the sorted rows `tier` (the seeds, and the keys
    that violated a witness in an earlier round, which in later rounds are the best along nine witnesses in
    ten). Where the best of them other than the key already violates the witness (it scores within `high` of
    the key and beats the margin over the key's own set, `own_margin`) and is outside that set, it is the
    violator and all keys are not scanned: the witness cannot certify the key, and that row joins its set.
    Elsewhere (the witnesses that certify a key, say) all keys are scored.
    """
    at = np.minimum(np.searchsorted(tier, keys), tier.size - 1)
    best, best_score, runner, runner_score = tier_index.best_other(directions, np.where(tier[at] == keys, at, -1))
    best, runner = tier[best], np.where(runner >= 0, tier[np.maximum(runner, 0)], -1)
    rest = np.flatnonzero((own_score - best_score > high) | (own_score - best_score >= own_margin)
                          | (candidates == best[:, None]).any(axis=1))
    all_keys = index.best_other(directions[rest], keys[rest])
    for values, exact in zip((best, best_score, runner, runner_score), all_keys, strict=True):
        values[rest] = exact
    return best, best_score, runner, runner_score


def settle_with_own_sets(points, keys, seeds, tol):
    """Settle what a small working set per key can settle; return the :class:`Decisions` and the settled mask.

    Parameters
    ----------
    points : ndarray, shape (m, dim)
        Normalized bias-free coordinates (C-contiguous).
    keys : ndarray of intp, shape (b,)
        Rows to decide.
    seeds : ndarray of intp
        Rows certified selectable (the working sets are drawn from them), disjoint from `keys`.
    tol : float
        Relative tolerance, as in :func:`geomln.engine._geometry.decide`.

    Returns
    -------
    decisions : Decisions
        Status UNSELECTABLE or SELECTABLE (margin over all keys above ``10 tol``) where settled.
    settled : ndarray of bool, shape (b,)
    violators : ndarray of intp
        Keys that violated some witness: likely vertices, good seeds for the general loop.
    """
    m, dim = points.shape
    low, high, max_major = wolfe_limits(tol, dim)
    decisions = Decisions.empty(keys.size, dim)
    settled = np.zeros(keys.size, dtype=bool)
    seeds = np.unique(seeds)
    if keys.size == 0 or seeds.size < _MIN_SEEDS_PER_DIM * (dim + 1):
        return decisions, settled, np.empty(0, dtype=np.intp)
    candidates = _own_sets(points, keys, seeds)
    index, tier, tier_index = BlockIndex(points), seeds, BlockIndex(points[seeds])
    pending = np.arange(keys.size)
    starts = np.full((keys.size, 1), -1, dtype=np.intp)  # Wolfe's starts: each key's support in its last round
    found = []
    for round_ in range(ROUNDS):
        work = pending.size * candidates.shape[1] ** 2 * dim  # about the flops of the Wolfe runs
        kernel = kernels.distance_to_own_hulls if work > PARALLEL_WORK else kernels.distance_to_own_hulls_serial
        st, dist, marg, direc, supp, wts, _ = kernel(points, keys[pending], candidates, starts, low, high, max_major)
        done = st == kernels.UNSELECTABLE
        witnessed = np.flatnonzero((st == kernels.SELECTABLE) | (st == kernels.CONVERGED))
        witnessed_keys = keys[pending[witnessed]]
        own_score = np.einsum("bd,bd->b", direc[witnessed], points[witnessed_keys])
        best, best_score, runner, runner_score = _violators(index, tier_index, tier, direc[witnessed],
                                                            witnessed_keys, own_score, marg[witnessed],
                                                            candidates[witnessed], high)
        margin = np.minimum(own_score - best_score, marg[witnessed])
        certain = (st[witnessed] == kernels.SELECTABLE) & (margin > high)
        done[witnessed[certain]] = True
        marg[witnessed[certain]] = margin[certain]
        outside = ~(candidates[witnessed] == best[:, None]).any(axis=1) & ~certain & (own_score - best_score
                                                                                        < marg[witnessed])
        need = np.zeros(pending.size, dtype=bool)
        need[witnessed[outside]] = True
        slots = pending[done]
        settled[slots] = True
        decisions.status[slots], decisions.distance[slots], decisions.margin[slots] = st[done], dist[done], marg[done]
        decisions.direction[slots] = direc[done]
        decisions.support[slots, : supp.shape[1]], decisions.weights[slots, : wts.shape[1]] = supp[done], wts[done]
        violator = np.full(pending.size, -1, dtype=np.intp)
        violator[witnessed] = best
        also = np.full(pending.size, -1, dtype=np.intp)
        also[witnessed] = np.where((runner >= 0) & (own_score - runner_score < marg[witnessed]), runner, -1)
        also[need] = np.where((candidates[need] == also[need][:, None]).any(axis=1), -1, also[need])
        found += [violator[need], also[need][also[need] >= 0]]
        candidates = np.ascontiguousarray(np.column_stack([candidates[need], violator[need], also[need]]))
        starts = supp[need]
        enough = round_ < _FIRST_ROUNDS or np.count_nonzero(done) >= _MIN_SETTLED * pending.size
        pending = pending[need]
        if pending.size == 0 or not enough:
            break
        grown = np.union1d(tier, np.concatenate(found[-2:]))
        if grown.size > tier.size:  # the next round scores this round's violators first too
            tier, tier_index = grown, BlockIndex(points[grown])
    return decisions, settled, np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.intp)
