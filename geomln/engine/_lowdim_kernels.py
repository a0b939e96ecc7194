"""Numba kernels of the large-n, low-dimension path: fan-triangulation certificates and exact margins.

Inputs are finite, C-contiguous float64 arrays in normalized coordinates (centred, divided by the radius).
"""

import numpy as np

from .._jit import jit

_BLOCK = 1024  # points scored at a time against every facet (an 8 KiB workspace)


@jit
def _exit_facets(points_t, scaled_normals, offsets):
    """For each point y, the facet f maximizing ``scaled_normals[f] . y + offsets[f]``, and that maximum.

    Blocks of points are scored one facet at a time along contiguous memory (vectorised over points).
    """
    dim, n = points_t.shape
    facets = offsets.shape[0]
    best = np.full(n, -np.inf)
    best_at = np.full(n, -1, dtype=np.intp)
    value = np.empty(_BLOCK)
    for begin in range(0, n, _BLOCK):
        width = min(_BLOCK, n - begin)
        for f in range(facets):
            for i in range(width):
                value[i] = offsets[f]
            for t in range(dim):
                weight = scaled_normals[f, t]
                row = points_t[t, begin:begin + width]
                for i in range(width):
                    value[i] += weight * row[i]
            block_best, block_at = best[begin:begin + width], best_at[begin:begin + width]
            for i in range(width):  # branch-free, so that it vectorises too
                better = value[i] > block_best[i]
                block_best[i] = value[i] if better else block_best[i]
                block_at[i] = f if better else block_at[i]
    return best, best_at


@jit
def fan_certificates(points, points_t, scaled_normals, offsets, inverses, corners, excluded, low):
    """Certify the points strictly inside a polytope Q by the fan triangulation of Q from one of its vertices.

    Q's facets that do not contain the apex cut Q into simplices ``(apex, facet)``. With each facet's
    outward normal divided by its distance ``h_f`` from the apex (`scaled_normals`, (F, dim)) and
    ``offsets[f] = -scaled_normals[f] . apex``, the ray from the apex through a point y leaves Q through
    the facet maximizing ``r_f = scaled_normals[f] . y + offsets[f]``; when ``r < 1`` the point is strictly
    inside Q, in the simplex of that facet, whose barycentric coordinates ``inverses[f] @ (y, 1)`` are
    the certificate: they must be >= 0 and, applied to the simplex's corners ``corners[f]`` (apex first),
    reproduce the point within `low`. Rows flagged in `excluded` (Q's own vertices) are not certified.
    `points_t` is the transpose of `points`.

    Returns
    -------
    certified : ndarray of intp, shape (m,)
        The points certified strictly inside Q, in increasing order.
    simplex : ndarray of intp, shape (m,)
        Their simplex (facet index).
    weights : ndarray, shape (m, dim + 1)
        Their barycentric coordinates.
    others : ndarray of intp
        The points not certified, in increasing order.
    """
    n, dim = points.shape
    ratio, facet = _exit_facets(points_t, scaled_normals, offsets)
    certified = np.empty(n, dtype=np.intp)
    simplex = np.empty(n, dtype=np.intp)
    weights = np.empty((n, dim + 1))
    others = np.empty(n, dtype=np.intp)
    left = 0
    lifted = np.empty(dim + 1)
    coordinates = np.empty(dim + 1)
    count = 0
    for i in range(n):
        others[left] = i  # kept only if the point is not certified below
        left += 1
        if excluded[i] or not ratio[i] < 1.0 - 1e-9:
            continue  # a vertex of Q, or on or beyond Q's boundary: left to the engine
        f = facet[i]
        for t in range(dim):
            lifted[t] = points[i, t]
        lifted[dim] = 1.0
        positive = True
        for k in range(dim + 1):
            value = 0.0
            for t in range(dim + 1):
                value += inverses[f, k, t] * lifted[t]
            coordinates[k] = value
            positive = positive and value >= 0.0
        if not positive:
            continue
        residual2 = 0.0
        for t in range(dim):
            value = -points[i, t]
            for k in range(dim + 1):
                value += coordinates[k] * corners[f, k, t]
            residual2 += value * value
        if residual2 <= low * low:
            certified[count] = i
            simplex[count] = f
            for k in range(dim + 1):
                weights[count, k] = coordinates[k]
            count += 1
            left -= 1
    return certified[:count], simplex[:count], weights[:count], others[:left]


@jit
def lower_corner_margins(points, certified, simplex, corner_keys, directions, margins):
    """Lower ``margins[c]`` to the margin of key c's witness over the certified keys that use c as a corner.

    A certified key ``y = sum_k w_k c_k`` scores ``u . y <= max_k u . c_k`` for any direction u, so under
    key c's unit witness ``directions[c]`` only keys whose certificate uses c can come closer to c than
    the other corners do. Key ``certified[r]`` uses the corners ``corner_keys[simplex[r]]``. Keys without a
    witness have NaN directions and are skipped.
    """
    dim = points.shape[1]
    simplices, corners = corner_keys.shape
    witness = np.zeros((simplices, corners, dim))
    own = np.full((simplices, corners), np.inf)  # u_c . c; inf where c has no witness (never lowered)
    for f in range(simplices):
        for k in range(corners):
            c = corner_keys[f, k]
            if not np.isnan(directions[c, 0]):
                own[f, k] = 0.0
                for t in range(dim):
                    witness[f, k, t] = directions[c, t]
                    own[f, k] += directions[c, t] * points[c, t]
    closest = np.full((simplices, corners), np.inf)
    for row in range(certified.shape[0]):
        y = certified[row]
        f = simplex[row]
        for k in range(corners):
            margin = own[f, k]
            for t in range(dim):
                margin -= witness[f, k, t] * points[y, t]
            if margin < closest[f, k]:
                closest[f, k] = margin
    for f in range(simplices):
        for k in range(corners):
            c = corner_keys[f, k]
            if closest[f, k] < margins[c]:
                margins[c] = closest[f, k]
