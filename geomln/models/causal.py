"""Causal attention: the last query position at which each key can still win the strict argmax.

Used by :func:`geomln.analyze_keys` with ``causal=True``; see :func:`causal_last_positions`.
"""

import numpy as np

from .._validation import as_points, as_tol, as_vector
from ..engine import _kernels as kernels
from ..engine._geometry import BORDERLINE_FACTOR, affine_frame, decide_in_prefixes
from ..engine.selectability import default_tol, selectable_keys
from ._causal_kernels import witness_reaches

__all__ = ["causal_last_positions", "SAFETY"]

#: cheap certificates (witness scans) must clear the tolerance by this factor; closer calls go to the engine
SAFETY = 10.0


def causal_last_positions(keys, *, bias=None, tol=None, full=None):
    """For each key, the last query position at which causal attention can make it the strict argmax.

    Under causal attention the query at position ``t`` sees keys ``0..t``. Key ``i`` can win at ``t``
    (``P_i(t)``) iff it is selectable among ``keys[:t + 1]``; ``P_i`` only turns false as ``t`` grows
    (adding keys never makes a key easier to pick), so each key has a last winning position ``L_i``:
    ``P_i(t)`` holds exactly for ``i <= t <= L_i``, and ``L_i = i - 1`` when key ``i`` never wins
    (it lies in the hull of, or duplicates, an earlier key).

    Parameters
    ----------
    keys : array_like, shape (n, d)
        Keys in sequence order.
    bias : array_like, shape (n,), optional
        Additive score per key.
    tol : float, optional
        Relative tolerance of :func:`~geomln.selectable_keys` (default from the dtype of `keys`).
    full : Selectability, optional
        The result of ``selectable_keys(keys, bias=bias, tol=tol)`` if already computed.

    Returns
    -------
    ndarray of intp, shape (n,)
        ``L_i`` in ``[i - 1, n - 1]``.

    Notes
    -----
    Every key keeps a bracket ``lo_i < L_i + 1 <= hi_i``: ``P_i(lo_i)`` is known true (``lo_i = i - 1``:
    nothing known yet) and ``P_i(hi_i)`` known false (``hi_i = n``: nothing known). Certificates move
    the ends, each valid for a whole range of positions thanks to the monotonicity:

    * the full set is evaluated first: every hull vertex then has ``L_i = n - 1`` at once (its witness
      has fewer competitors on a prefix), and an unselectable key's convex combination on keys ``S``
      makes ``P_i`` false from ``max(i, max S)`` on;
    * without a bias, each open key is then decided against its own prefix (Wolfe's algorithm in
      Clarkson's loop, in numba, warm-started from the full set's vertices and the key's last support):
      first on arrival (``keys[:i + 1]``), then at the middle of its bracket. A witness query stays a
      witness until the first later key scoring within ``10 * tol`` of it, so ``lo_i`` jumps to just
      before that key; a combination moves ``hi_i`` as above. The tolerance is the prefix's own (from
      bounds of the prefix radius), and only verdicts outside the borderline band are used;
    * brackets still open (a bias, borderline or stalled keys) are closed with engine calls on whole
      prefixes: each round evaluates the one prefix that lies strictly inside the most open brackets (the
      midpoint of one of them), which shrinks every bracket containing it.

    So the cost is one engine call plus ``O(log n)`` rounds of per-key decisions for the keys that are not
    vertices of the full set; certificates within ``10 * tol`` of a tie are never extended, so verdicts
    agree with a per-prefix computation except for keys that are borderline there.

    Examples
    --------
    >>> from geomln.models.causal import causal_last_positions
    >>> keys = [[0, 0], [4, 0], [0, 4], [1, 1], [4, 4]]
    >>> causal_last_positions(keys).tolist()   # [1, 1] arrives inside the triangle: never wins
    [4, 4, 4, 2, 4]
    """
    points = as_points(keys, "keys")
    n = points.shape[0]
    offsets = np.zeros(n)
    if bias is not None:
        offsets = as_vector(bias, "bias", length=n, length_name="the number of keys")
    tol = as_tol(tol, default=default_tol(keys))
    if full is None:
        full = selectable_keys(points, bias=bias, tol=tol)
    spread = float(np.linalg.norm(points - points.mean(axis=0), axis=1).max())
    lo = np.arange(n) - 1
    hi = np.full(n, n)
    lo[0] = max(lo[0], 0)  # a lone key always wins
    lo[full.selectable_mask] = n - 1  # a witness on all keys is one on every prefix
    supports = dict(full.combinations.items())
    for i, (support, _) in supports.items():
        hi[i] = max(min(hi[i], max(i, int(support.max()))), lo[i] + 1)
    if bias is None:
        _search_prefixes(points, lo, hi, tol, full.selectable_indices, supports, full.duplicate_of)
    while True:
        open_ = np.flatnonzero(hi - lo > 1)
        if open_.size == 0:
            return lo.astype(np.intp)
        t = _busiest_checkpoint(lo[open_], hi[open_])
        prefix = selectable_keys(points[:t + 1], bias=None if bias is None else offsets[:t + 1], tol=tol)
        _use_engine_result(points, offsets, prefix, t, lo, hi, tol, spread)


def _busiest_checkpoint(lo, hi):
    """Return the midpoint of an open bracket that lies strictly inside the most brackets ``(lo, hi)``."""
    candidates = np.unique((lo + hi) // 2)
    order_lo, order_hi = np.sort(lo), np.sort(hi)
    covering = np.searchsorted(order_lo, candidates, side="left") - np.searchsorted(order_hi, candidates,
                                                                                     side="right")
    return int(candidates[np.argmax(covering)])


def _witness_reach(points, offsets, key, start, query, own, slack):
    """Last position reached by a witness: one before the first key ``j >= start`` (j != key) within slack."""
    scores = points[start:] @ query + offsets[start:]
    close = scores >= own - slack
    if start <= key < points.shape[0]:
        close[key - start] = False
    hits = np.flatnonzero(close)
    return points.shape[0] - 1 if hits.size == 0 else start + int(hits[0]) - 1


def _use_engine_result(points, offsets, result, t, lo, hi, tol, spread):
    """Move the brackets of keys ``0..t`` with the engine's verdicts and certificates on ``keys[:t+1]``."""
    bias_range = float(np.ptp(offsets[:t + 1]))
    for i in range(t + 1):
        if hi[i] - lo[i] <= 1:
            continue
        if result.selectable_mask[i]:
            query = result.witness_queries[i]
            reach = t
            if np.isfinite(query).all():
                slack = SAFETY * tol * (np.linalg.norm(query) * spread + bias_range)
                own = points[i] @ query + offsets[i]
                reach = max(t, _witness_reach(points, offsets, i, t + 1, query, own, slack))
            lo[i] = min(max(lo[i], reach), hi[i] - 1)
        else:
            support = result.combinations[i][0]
            hi[i] = max(min(hi[i], max(i, int(support.max()))), lo[i] + 1)


def _prefix_scales(coords, first_copy, tol):
    """Lower and upper bounds of each prefix's radius (over distinct keys) in the normalized coordinates."""
    means = np.cumsum(coords * first_copy[:, None], axis=0) / np.cumsum(first_copy)[:, None]
    norms = np.linalg.norm(coords, axis=1)
    peak = np.maximum.accumulate(norms)
    farthest = np.maximum.accumulate(np.where(norms == peak, np.arange(norms.size), 0))
    lower = np.linalg.norm(coords[farthest] - means, axis=1)
    # the frame dropped directions in which every key deviates by at most tol / 4
    return lower, peak + np.linalg.norm(means, axis=1) + tol / 2


def _search_prefixes(points, lo, hi, tol, vertices, supports, duplicate_of):
    """Close the brackets of bias-free keys by deciding each key against its own prefix, one round at a time.

    A key whose arrival is open is decided against ``keys[:i + 1]`` first, then at the middle of its
    bracket. Each decision uses the prefix's tolerance (from bounds of its radius, see
    :func:`_prefix_scales`) and is taken only where it is certain there: a witness moves ``lo_i`` up to
    its reach, a convex combination on keys ``S`` moves ``hi_i`` to ``max(i, max S)``. Borderline and
    stalled keys are left open for the engine. The full set's `vertices` (extreme in every prefix that
    holds them) and each key's full-set combination `supports` start the working sets; `duplicate_of` is
    the full set's.
    """
    n = points.shape[0]
    active = np.flatnonzero(hi - lo > 1)
    if active.size == 0:
        return
    first = np.unique(points, axis=0, return_index=True)[1] if (duplicate_of >= 0).any() else np.arange(n)
    frame = affine_frame(points[first], tol)
    if frame.rank == 0:
        return
    coords = np.ascontiguousarray(((points - frame.centre) / frame.radius) @ frame.basis)
    first_copy = np.zeros(n)
    first_copy[first] = 1.0
    lower, upper = _prefix_scales(coords, first_copy, tol)
    slack = BORDERLINE_FACTOR * tol * float(upper.max())
    width = 2 * frame.rank + 2
    seeds = np.full((n, width), -1, dtype=np.intp)
    for i in active:
        support = supports[i][0][:width]
        seeds[i, :support.size] = support
    while active.size:
        t = np.where(lo[active] < active, active, (lo[active] + hi[active]) // 2)
        decisions = decide_in_prefixes(coords, active, t + 1, vertices, seeds[active],
                                       lower[t] * (tol / BORDERLINE_FACTOR), upper[t] * (tol * BORDERLINE_FACTOR))
        seeds[active] = -1
        seeds[active, :decisions.support.shape[1]] = decisions.support
        inside = decisions.status == kernels.UNSELECTABLE
        last_used = np.maximum(active, decisions.support.max(axis=1))
        # the combination also holds on the shorter prefix keys[:last_used + 1] if it is certain there
        certain_earlier = decisions.distance <= lower[last_used] * (tol / BORDERLINE_FACTOR)
        end = np.where(certain_earlier, last_used, t)[inside]
        hi[active[inside]] = np.maximum(np.minimum(hi[active[inside]], end), lo[active[inside]] + 1)
        won = decisions.status == kernels.SELECTABLE
        reach = t[won]
        far = decisions.margin[won] > slack
        reach[far] = witness_reaches(coords, active[won][far], t[won][far] + 1,
                                     np.ascontiguousarray(decisions.direction[won][far]), slack)
        keys = active[won]
        lo[keys] = np.minimum(np.maximum(lo[keys], np.maximum(t[won], reach)), hi[keys] - 1)
        active = active[(inside | won) & (hi[active] - lo[active] > 1)]
