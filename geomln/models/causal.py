"""Causal attention: the last query position at which each key can still win the strict argmax.

Used by :func:`geomln.analyze_keys` with ``causal=True``; see :func:`causal_last_positions`.
"""

import numpy as np

from .._validation import as_points, as_tol, as_vector
from ..engine.membership import in_hull
from ..engine.selectability import default_tol, selectable_keys

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

    * one engine call on a prefix ``keys[:t + 1]`` answers ``P_i(t)`` for *all* ``i <= t`` at once. A
      selectable key's witness query ``q`` stays a witness until the first later key scoring within
      ``10 * tol`` of it, so ``lo_i`` jumps to just before that key; an unselectable key's convex
      combination uses keys ``S``, so ``P_i`` is false from ``max(i, max S)`` on;
    * without a bias, the arrival question ``P_i(i)`` (is ``k_i`` outside ``conv(k_0..k_{i-1})``?) is
      answered for many keys at once by :func:`~geomln.in_hull` of a block of later keys against the hull of
      the keys before the block: "inside" settles ``L_i = i - 1`` exactly (the earlier hull only grows);
      an "outside" separating direction ``u`` settles ``P_i(i)`` when no key of the block before ``i``
      scores within ``10 * tol`` of ``u.k_i``, and also extends ``lo_i`` like a witness. Unsettled keys
      are split into halves and re-tested against longer prefixes (each split settles its first key
      exactly), so the test is exact in the end.

    The full set is evaluated first (every hull vertex then has ``L_i = n - 1`` at once). Remaining open
    brackets are closed by a parallel binary search: each round evaluates the one prefix that lies
    strictly inside the most open brackets (the midpoint of one of them), which shrinks every bracket
    containing it. So the cost is a few engine calls on prefixes plus ``O(log n)`` levels of blocked
    hull-membership tests, not one hull per prefix; certificates within ``10 * tol`` of a tie are never
    extended, so verdicts agree with a per-prefix computation except for keys that are borderline
    there.

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
    _use_engine_result(points, offsets, full, n - 1, lo, hi, tol, spread)
    if bias is None and (hi - lo > 1).any():
        _settle_arrivals(points, lo, hi, tol, spread)
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


def _settle_arrivals(points, lo, hi, tol, spread):
    """Decide P_i(i) (k_i outside the hull of the earlier keys) for open keys with blocked in_hull tests."""
    pending = [np.flatnonzero((hi - lo > 1) & (lo < np.arange(points.shape[0])))]
    while pending:
        group = pending.pop()
        if group.size == 0:
            continue
        split = int(group[group.size // 2])
        upper, lower = group[group >= split], group[group < split]
        pending.append(lower)
        if split == 0:
            continue
        member = in_hull(points[upper], points[:split], tol=tol)
        unsettled = []
        for slot, i in enumerate(upper):
            if member.inside_mask[slot]:
                hi[i] = i  # inside the hull of keys before the block, hence of keys before i: never wins
                lo[i] = i - 1
                continue
            u = member.separating_directions[slot]
            own = points[i] @ u
            slack = SAFETY * tol * spread
            before = points[split:i] @ u
            if i == split or np.all(before < own - slack):
                reach = _witness_reach(points, np.zeros(points.shape[0]), i, i + 1, u, own, slack)
                lo[i] = min(max(lo[i], i, reach), hi[i] - 1)
            else:
                unsettled.append(i)
        pending.append(np.asarray(unsettled, dtype=np.intp))
