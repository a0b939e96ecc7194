"""Numba kernels for planar convex hulls: Akl-Toussaint filtering, then Andrew's monotone chain.

Input: centred float64 coordinates of shape (n, 2), C-contiguous, and an absolute tolerance ``eps``
(the caller passes ``tol * scale``). A point counts as a hull vertex only if it lies more than ``eps``
outside the line through its two hull neighbours, so points on an edge (within ``eps``) are dropped.
"""

import numpy as np

from .._jit import jit

__all__ = ["monotone_chain"]


@jit
def _turn(points, i, j, k):
    """Twice the signed area of the triangle (i, j, k): > 0 for a counterclockwise turn."""
    ax = points[j, 0] - points[i, 0]
    ay = points[j, 1] - points[i, 1]
    bx = points[k, 0] - points[i, 0]
    by = points[k, 1] - points[i, 1]
    return ax * by - ay * bx


@jit
def _dist(points, i, j):
    dx = points[j, 0] - points[i, 0]
    dy = points[j, 1] - points[i, 1]
    return np.sqrt(dx * dx + dy * dy)


@jit
def _filter_candidates(points, eps):
    """Return the indices (increasing) of the points not strictly inside the octagon of 8 extremes.

    A point more than ``eps`` inside every edge of that octagon is more than ``eps`` inside the hull,
    so it can be neither a vertex nor a point on the hull's boundary (Akl & Toussaint 1978).
    """
    n = points.shape[0]
    # directions at angles 0, 45, ..., 315 degrees, counterclockwise
    dx = np.array([1.0, 1.0, 0.0, -1.0, -1.0, -1.0, 0.0, 1.0])
    dy = np.array([0.0, 1.0, 1.0, 1.0, 0.0, -1.0, -1.0, -1.0])
    best = np.full(8, -np.inf)
    arg = np.zeros(8, dtype=np.intp)
    for i in range(n):
        x = points[i, 0]
        y = points[i, 1]
        for k in range(8):
            s = dx[k] * x + dy[k] * y
            if s > best[k]:
                best[k] = s
                arg[k] = i
    poly = np.empty(8, dtype=np.intp)
    m = 0
    for k in range(8):
        if m == 0 or (
            points[arg[k], 0] != points[poly[m - 1], 0] or points[arg[k], 1] != points[poly[m - 1], 1]
        ):
            poly[m] = arg[k]
            m += 1
    while (
        m > 1
        and points[poly[m - 1], 0] == points[poly[0], 0]
        and points[poly[m - 1], 1] == points[poly[0], 1]
    ):
        m -= 1
    keep = np.ones(n, dtype=np.bool_)
    if m >= 3:
        lengths = np.empty(m)
        for e in range(m):
            lengths[e] = _dist(points, poly[e], poly[(e + 1) % m])
        for i in range(n):
            inside = True
            for e in range(m):
                if _turn(points, poly[e], poly[(e + 1) % m], i) <= eps * lengths[e]:
                    inside = False
                    break
            if inside:
                keep[i] = False
    return np.flatnonzero(keep)


@jit
def _chain(points, order, hull, start, step, eps):
    """One monotone chain over `order` (forwards for step=1, backwards for step=-1), written into `hull`.

    A point within `eps` of the last or the second-to-last chain point is a copy and is skipped (the
    turn test pivots on the second-to-last point and is ill-conditioned for a point right next to it).
    """
    m = len(order)
    h = 0
    i = start
    for _ in range(m):
        p = order[i]
        i += step
        skip = False
        while True:
            if h >= 1 and _dist(points, hull[h - 1], p) <= eps:
                skip = True
                break
            if h >= 2:
                base = _dist(points, hull[h - 2], p)
                if base <= eps:
                    skip = True
                    break
                if _turn(points, hull[h - 2], hull[h - 1], p) <= eps * base:
                    h -= 1
                    continue
            break
        if not skip:
            hull[h] = p
            h += 1
    return h


@jit
def _cleanup_ring(points, ring, eps):
    """Drop, until none is left, ring vertices within `eps` of the line through their two neighbours."""
    k = len(ring)
    keep = ring.copy()
    changed = True
    while changed and k > 3:
        changed = False
        j = 0
        out = np.empty(k, dtype=np.intp)
        for i in range(k):
            prev = keep[(i - 1) % k] if j == 0 else out[j - 1]
            nxt = keep[(i + 1) % k]
            base = _dist(points, prev, nxt)
            if base > eps and _turn(points, prev, keep[i], nxt) > eps * base:
                out[j] = keep[i]
                j += 1
            else:
                changed = True
        keep = out[:j].copy()
        k = j
    return keep


@jit
def monotone_chain(points, eps):
    """Hull vertices of planar points in counterclockwise order.

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Finite float64 coordinates, C-contiguous.
    eps : float
        Absolute tolerance: a point within `eps` of the segment joining its neighbours on the hull is
        not a vertex; points within `eps` of each other count as one (the lowest index in sorted order).

    Returns
    -------
    ndarray of intp
        Vertex indices, counterclockwise. Fewer than 3 entries mean the points are (within `eps`) collinear.
    """
    # Sweep along a generic direction rather than x: the chain's tolerance tests are ill-conditioned
    # only for hull edges (almost) perpendicular to the sweep, and axis-aligned edges are common.
    n = points.shape[0]
    cs = 0.8775825618903728  # cos(0.5)
    sn = 0.479425538604203  # sin(0.5)
    rotated = np.empty((n, 2))
    for i in range(n):
        rotated[i, 0] = cs * points[i, 0] + sn * points[i, 1]
        rotated[i, 1] = -sn * points[i, 0] + cs * points[i, 1]
    points = rotated
    cand = _filter_candidates(points, eps)
    # lexicographic order (x, then y, then index): two stable sorts
    o1 = np.argsort(points[cand, 1], kind="mergesort")
    c1 = cand[o1]
    o2 = np.argsort(points[c1, 0], kind="mergesort")
    srt = c1[o2]
    # drop exact duplicates, keeping the first index
    uniq = np.empty(len(srt), dtype=np.intp)
    u = 0
    for k in range(len(srt)):
        p = srt[k]
        if u > 0 and points[p, 0] == points[uniq[u - 1], 0] and points[p, 1] == points[uniq[u - 1], 1]:
            continue
        uniq[u] = p
        u += 1
    uniq = uniq[:u]
    if u == 1:
        return uniq.copy()
    lower = np.empty(u, dtype=np.intp)
    upper = np.empty(u, dtype=np.intp)
    nl = _chain(points, uniq, lower, 0, 1, eps)
    nu = _chain(points, uniq, upper, u - 1, -1, eps)
    out = np.empty(nl + nu, dtype=np.intp)
    k = 0
    for j in range(nl - 1):
        out[k] = lower[j]
        k += 1
    for j in range(nu - 1):
        out[k] = upper[j]
        k += 1
    if k < 2:  # every point within eps of one point
        out[0] = lower[0]
        return out[:1].copy()
    ring = out[:k].copy()
    if k > 3:
        ring = _cleanup_ring(points, ring, eps)
    return ring
