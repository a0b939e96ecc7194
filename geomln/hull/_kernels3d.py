"""Numba kernels for convex hulls in 3-D (quickhull) and for the affine-hull preprocessing of every hull.

Quickhull (Barber, Dobkin & Huhdanpaa 1996) on centred float64 coordinates of shape (n, 3). The absolute
tolerance ``eps`` (the caller passes ``tol * scale``) decides every predicate: a point is *above* a facet
when its signed distance to the facet's plane exceeds ``eps``. The eye point chosen for a facet is the
farthest point above it, ties within ``eps`` broken lexicographically along two fixed generic directions
(so that, among the points of its outside set, a vertex is chosen). A point on an edge or a face of the
final hull can still be inserted when a farther point sat in another facet's outside set;
:func:`coplanar_groups` finds the planar faces so that the caller can re-triangulate each face over its
corners only.

Status codes of :func:`quickhull`: 0 ok, 1 the points are (within ``eps``) flat, 2 inconsistent
visibility (near-degenerate input; the caller falls back to Qhull).
"""

import numpy as np

from .._jit import jit

__all__ = [
    "center_points",
    "small_gram",
    "max_abs_projection",
    "quickhull",
    "coplanar_groups",
    "triangle_measures",
]

# Fixed generic directions for breaking ties between equally far points (unit length, no special angles).
_TIE_DIRECTIONS = np.array(
    [[0.5773502691896257 + 0.1, 0.5773502691896257 - 0.07, 0.5773502691896257 + 0.031], [0.3, -0.8, 0.52]]
)
_TIE_DIRECTIONS /= np.sqrt((_TIE_DIRECTIONS**2).sum(axis=1))[:, None]


def tie_directions():
    """Return a fresh copy of the tie-breaking directions (kernels must not read mutable globals)."""
    return _TIE_DIRECTIONS.copy()


# ---------------------------------------------------------------------------------------------------
# affine-hull preprocessing (any d)
# ---------------------------------------------------------------------------------------------------


@jit
def center_points(points):
    """Return the centred copy of `points`, the centroid and the largest distance from it."""
    n, d = points.shape
    c = np.zeros(d)
    for i in range(n):
        for j in range(d):
            c[j] += points[i, j]
    for j in range(d):
        c[j] /= n
    y = np.empty((n, d))
    s2max = 0.0
    for i in range(n):
        s2 = 0.0
        for j in range(d):
            v = points[i, j] - c[j]
            y[i, j] = v
            s2 += v * v
        if s2 > s2max:
            s2max = s2
    return y, c, np.sqrt(s2max)


@jit
def small_gram(y):
    """``y.T @ y`` for a small number of columns, in one pass over the rows."""
    n, d = y.shape
    g = np.zeros((d, d))
    for i in range(n):
        for j in range(d):
            v = y[i, j]
            for k in range(j, d):
                g[j, k] += v * y[i, k]
    for j in range(d):
        for k in range(j):
            g[j, k] = g[k, j]
    return g


@jit
def max_abs_projection(y, basis):
    """``abs(y @ basis).max(axis=0)`` without the (n, k) temporary."""
    n, d = y.shape
    k = basis.shape[1]
    out = np.zeros(k)
    for i in range(n):
        for m in range(k):
            s = 0.0
            for j in range(d):
                s += y[i, j] * basis[j, m]
            s = abs(s)
            if s > out[m]:
                out[m] = s
    return out


# ---------------------------------------------------------------------------------------------------
# quickhull
# ---------------------------------------------------------------------------------------------------


@jit
def _dot3(points, p, nx, ny, nz):
    return nx * points[p, 0] + ny * points[p, 1] + nz * points[p, 2]


@jit
def _pick(points, cand, score, m, eps, w):
    """Return the candidate with the largest score; ties within `eps` go along w[0], w[1], then index."""
    best = -np.inf
    for i in range(m):
        if score[i] > best:
            best = score[i]
    t0 = best - eps
    b1 = -np.inf
    for i in range(m):
        if score[i] >= t0:
            s = _dot3(points, cand[i], w[0, 0], w[0, 1], w[0, 2])
            if s > b1:
                b1 = s
    t1 = b1 - eps
    b2 = -np.inf
    for i in range(m):
        if score[i] >= t0 and _dot3(points, cand[i], w[0, 0], w[0, 1], w[0, 2]) >= t1:
            s = _dot3(points, cand[i], w[1, 0], w[1, 1], w[1, 2])
            if s > b2:
                b2 = s
    t2 = b2 - eps
    chosen = -1
    for i in range(m):
        p = cand[i]
        if (
            score[i] >= t0
            and _dot3(points, p, w[0, 0], w[0, 1], w[0, 2]) >= t1
            and _dot3(points, p, w[1, 0], w[1, 1], w[1, 2]) >= t2
        ):
            if chosen < 0 or p < chosen:
                chosen = p
    return chosen


@jit
def _triangle_cross(points, a, b, c):
    """Return ``cross(points[b] - points[a], points[c] - points[a])`` as three floats."""
    ux = points[b, 0] - points[a, 0]
    uy = points[b, 1] - points[a, 1]
    uz = points[b, 2] - points[a, 2]
    vx = points[c, 0] - points[a, 0]
    vy = points[c, 1] - points[a, 1]
    vz = points[c, 2] - points[a, 2]
    return uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx


@jit
def _plane(points, a, b, c, normals, offsets, f):
    """Store the unit right-hand-rule normal of triangle (a, b, c) in row f; return its length."""
    nx, ny, nz = _triangle_cross(points, a, b, c)
    nrm = np.sqrt(nx * nx + ny * ny + nz * nz)
    if nrm > 0.0:
        nx /= nrm
        ny /= nrm
        nz /= nrm
    normals[f, 0] = nx
    normals[f, 1] = ny
    normals[f, 2] = nz
    offsets[f] = -(nx * points[a, 0] + ny * points[a, 1] + nz * points[a, 2])
    return nrm


@jit
def _initial_simplex(points, eps, w):
    n = points.shape[0]
    allidx = np.arange(n)
    # p0: lexicographic minimum (a vertex, decided by exact comparisons)
    p0 = 0
    for i in range(1, n):
        for j in range(3):
            if points[i, j] < points[p0, j]:
                p0 = i
                break
            if points[i, j] > points[p0, j]:
                break
    score = np.empty(n)
    for i in range(n):
        s = 0.0
        for j in range(3):
            v = points[i, j] - points[p0, j]
            s += v * v
        score[i] = np.sqrt(s)
    p1 = _pick(points, allidx, score, n, eps, w)
    ux = points[p1, 0] - points[p0, 0]
    uy = points[p1, 1] - points[p0, 1]
    uz = points[p1, 2] - points[p0, 2]
    un = np.sqrt(ux * ux + uy * uy + uz * uz)
    if un <= eps:
        return p0, p1, -1, -1
    ux /= un
    uy /= un
    uz /= un
    for i in range(n):
        vx = points[i, 0] - points[p0, 0]
        vy = points[i, 1] - points[p0, 1]
        vz = points[i, 2] - points[p0, 2]
        cx = vy * uz - vz * uy
        cy = vz * ux - vx * uz
        cz = vx * uy - vy * ux
        score[i] = np.sqrt(cx * cx + cy * cy + cz * cz)
    p2 = _pick(points, allidx, score, n, eps, w)
    if score[p2] <= eps:
        return p0, p1, -1, -1
    tmpn = np.empty((1, 3))
    tmpo = np.empty(1)
    _plane(points, p0, p1, p2, tmpn, tmpo, 0)
    for i in range(n):
        score[i] = abs(_dot3(points, i, tmpn[0, 0], tmpn[0, 1], tmpn[0, 2]) + tmpo[0])
    p3 = _pick(points, allidx, score, n, eps, w)
    if score[p3] <= eps:
        return p0, p1, p2, -1
    return p0, p1, p2, p3


@jit
def _assign_outside(points, q, fn, fo, lo, hi, eps, pdist, nxt, head):
    """Push point q onto the outside list of the first facet in ``lo..hi-1`` it lies above (if any)."""
    for f in range(lo, hi):
        dd = _dot3(points, q, fn[f, 0], fn[f, 1], fn[f, 2]) + fo[f]
        if dd > eps:
            pdist[q] = dd
            nxt[q] = head[f]
            head[f] = q
            return


@jit
def _grow_rows(a, cap):
    out = np.empty((cap, a.shape[1]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


@jit
def _grow(a, cap, fill):
    out = np.full(cap, fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


@jit
def quickhull(points, eps, w):
    """Triangulated hull of centred 3-D points.

    Parameters
    ----------
    points : ndarray, shape (n, 3)
        Finite float64 coordinates, C-contiguous, centred on their centroid.
    eps : float
        Absolute tolerance of the above/below predicate (distance to a facet's plane).
    w : ndarray, shape (2, 3)
        Unit tie-breaking directions.

    Returns
    -------
    status : int
        0 ok, 1 flat within `eps`, 2 inconsistent visibility.
    facets : ndarray of intp, shape (m, 3)
        Vertex indices of each triangle, counterclockwise seen from outside.
    neighbors : ndarray of intp, shape (m, 3)
        ``neighbors[t, e]`` shares the edge ``(facets[t, e], facets[t, (e + 1) % 3])`` with t.
    normals : ndarray, shape (m, 3)
        Unit outward normals.
    offsets : ndarray, shape (m,)
        ``normal . x + offset`` is the signed distance of x to the facet's plane.
    """
    n = points.shape[0]
    empty_f = np.empty((0, 3), dtype=np.intp)
    empty_nb = np.empty((0, 3), dtype=np.intp)
    empty_n = np.empty((0, 3))
    empty_o = np.empty(0)
    p0, p1, p2, p3 = _initial_simplex(points, eps, w)
    if p3 < 0:
        return 1, empty_f, empty_nb, empty_n, empty_o

    cap = 64
    fv = np.empty((cap, 3), dtype=np.intp)
    fnb = np.full((cap, 3), -1, dtype=np.intp)
    fn = np.empty((cap, 3))
    fo = np.empty(cap)
    alive = np.zeros(cap, dtype=np.bool_)
    head = np.full(cap, -1, dtype=np.intp)
    stamp_f = np.zeros(cap, dtype=np.intp)
    nxt = np.full(n, -1, dtype=np.intp)
    pdist = np.zeros(n)
    start_of = np.full(n, -1, dtype=np.intp)
    start_stamp = np.zeros(n, dtype=np.intp)
    end_of = np.full(n, -1, dtype=np.intp)

    simplex = np.array([p0, p1, p2, p3])
    nf = 0
    for k in range(4):
        a = simplex[(k + 1) % 4]
        b = simplex[(k + 2) % 4]
        c = simplex[(k + 3) % 4]
        o = simplex[k]
        _plane(points, a, b, c, fn, fo, nf)
        if _dot3(points, o, fn[nf, 0], fn[nf, 1], fn[nf, 2]) + fo[nf] > 0.0:
            b, c = c, b
            _plane(points, a, b, c, fn, fo, nf)
        fv[nf, 0] = a
        fv[nf, 1] = b
        fv[nf, 2] = c
        alive[nf] = True
        nf += 1
    for f in range(4):
        for e in range(3):
            a = fv[f, e]
            b = fv[f, (e + 1) % 3]
            for g in range(4):
                if g == f:
                    continue
                for e2 in range(3):
                    if fv[g, e2] == b and fv[g, (e2 + 1) % 3] == a:
                        fnb[f, e] = g
    for i in range(n):
        _assign_outside(points, i, fn, fo, 0, 4, eps, pdist, nxt, head)

    cand = np.empty(16, dtype=np.intp)
    candscore = np.empty(16)
    visible = np.empty(cap, dtype=np.intp)
    hor_a = np.empty(cap, dtype=np.intp)
    hor_b = np.empty(cap, dtype=np.intp)
    hor_g = np.empty(cap, dtype=np.intp)
    round_ = 0
    f = 0
    while f < nf:
        if not alive[f] or head[f] < 0:
            f += 1
            continue
        round_ += 1
        # eye point: farthest above f, ties broken towards a vertex
        m = 0
        q = head[f]
        while q >= 0:
            if m == len(cand):
                cand = _grow(cand, 2 * m, 0)
                candscore = _grow(candscore, 2 * m, 0.0)
            cand[m] = q
            candscore[m] = pdist[q]
            m += 1
            q = nxt[q]
        p = _pick(points, cand, candscore, m, eps, w)
        # visible facets (breadth-first from f) and the horizon
        nv = 0
        nh = 0
        visible[nv] = f
        nv += 1
        stamp_f[f] = round_
        iv = 0
        while iv < nv:
            v = visible[iv]
            iv += 1
            for e in range(3):
                g = fnb[v, e]
                if stamp_f[g] == round_:
                    continue
                dd = _dot3(points, p, fn[g, 0], fn[g, 1], fn[g, 2]) + fo[g]
                if dd > eps:
                    stamp_f[g] = round_
                    if nv == len(visible):
                        visible = _grow(visible, 2 * nv, 0)
                    visible[nv] = g
                    nv += 1
                else:
                    if nh == len(hor_a):
                        hor_a = _grow(hor_a, 2 * nh, 0)
                        hor_b = _grow(hor_b, 2 * nh, 0)
                        hor_g = _grow(hor_g, 2 * nh, 0)
                    hor_a[nh] = fv[v, e]
                    hor_b[nh] = fv[v, (e + 1) % 3]
                    hor_g[nh] = g
                    nh += 1
        # make room for nh new facets
        if nf + nh > cap:
            newcap = 2 * (nf + nh)
            fv = _grow_rows(fv, newcap)
            fnb = _grow_rows(fnb, newcap)
            fn = _grow_rows(fn, newcap)
            fo = _grow(fo, newcap, 0.0)
            alive = _grow(alive, newcap, False)
            head = _grow(head, newcap, -1)
            stamp_f = _grow(stamp_f, newcap, 0)
            cap = newcap
        first_new = nf
        for h in range(nh):
            a = hor_a[h]
            b = hor_b[h]
            g = hor_g[h]
            if start_stamp[a] == round_:
                return 2, empty_f, empty_nb, empty_n, empty_o
            start_stamp[a] = round_
            start_of[a] = nf
            end_of[b] = nf
            fv[nf, 0] = a
            fv[nf, 1] = b
            fv[nf, 2] = p
            _plane(points, a, b, p, fn, fo, nf)
            alive[nf] = True
            head[nf] = -1
            fnb[nf, 0] = g
            found = False
            for e2 in range(3):
                if fv[g, e2] == b and fv[g, (e2 + 1) % 3] == a:
                    fnb[g, e2] = nf
                    found = True
            if not found:
                return 2, empty_f, empty_nb, empty_n, empty_o
            nf += 1
        for h in range(first_new, nf):
            a = fv[h, 0]
            b = fv[h, 1]
            if start_stamp[b] != round_:
                return 2, empty_f, empty_nb, empty_n, empty_o
            fnb[h, 1] = start_of[b]
            fnb[h, 2] = end_of[a]
            if fnb[h, 2] < first_new or fv[fnb[h, 2], 1] != a:
                return 2, empty_f, empty_nb, empty_n, empty_o
        # retire the visible facets and hand their outside points to the new ones
        for iv in range(nv):
            v = visible[iv]
            alive[v] = False
            q = head[v]
            head[v] = -1
            while q >= 0:
                qn = nxt[q]
                if q != p:
                    _assign_outside(points, q, fn, fo, first_new, nf, eps, pdist, nxt, head)
                q = qn
        f += 1

    newid = np.full(nf, -1, dtype=np.intp)
    m = 0
    for h in range(nf):
        if alive[h]:
            newid[h] = m
            m += 1
    facets = np.empty((m, 3), dtype=np.intp)
    neighbors = np.empty((m, 3), dtype=np.intp)
    normals = np.empty((m, 3))
    offsets = np.empty(m)
    for h in range(nf):
        if alive[h]:
            k = newid[h]
            facets[k] = fv[h]
            normals[k] = fn[h]
            offsets[k] = fo[h]
            for e in range(3):
                neighbors[k, e] = newid[fnb[h, e]]
    return 0, facets, neighbors, normals, offsets


@jit
def coplanar_groups(points, facets, neighbors, normals, offsets, eps):
    """Group the triangles of a hull into planar faces.

    Seeds are taken by decreasing area; a seed's face grows across edges to neighbouring triangles
    whose three vertices lie within `eps` of the *seed's* plane (so no drift along curved surfaces).

    Returns
    -------
    group : ndarray of intp, shape (m,)
        Face label of each triangle.
    seeds : ndarray of intp, shape (n_groups,)
        The seed triangle of each face (its plane is the face's plane).
    """
    m = facets.shape[0]
    area = np.empty(m)
    for t in range(m):
        cx, cy, cz = _triangle_cross(points, facets[t, 0], facets[t, 1], facets[t, 2])
        area[t] = -np.sqrt(cx * cx + cy * cy + cz * cz)
    order = np.argsort(area, kind="mergesort")
    group = np.full(m, -1, dtype=np.intp)
    seeds = np.empty(m, dtype=np.intp)
    stack = np.empty(m, dtype=np.intp)
    ng = 0
    for s in order:
        if group[s] >= 0:
            continue
        group[s] = ng
        seeds[ng] = s
        stack[0] = s
        top = 1
        while top > 0:
            top -= 1
            t = stack[top]
            for e in range(3):
                u = neighbors[t, e]
                if group[u] >= 0:
                    continue
                if (
                    normals[u, 0] * normals[s, 0]
                    + normals[u, 1] * normals[s, 1]
                    + normals[u, 2] * normals[s, 2]
                    <= 0
                ):
                    continue
                flat = True
                for k in range(3):
                    dd = _dot3(points, facets[u, k], normals[s, 0], normals[s, 1], normals[s, 2]) + offsets[s]
                    if abs(dd) > eps:
                        flat = False
                        break
                if flat:
                    group[u] = ng
                    stack[top] = u
                    top += 1
        ng += 1
    return group, seeds[:ng].copy()


@jit
def triangle_measures(points, facets):
    """Return the volume enclosed by outward-oriented triangles and their total area."""
    volume = 0.0
    area = 0.0
    for t in range(facets.shape[0]):
        a = facets[t, 0]
        cx, cy, cz = _triangle_cross(points, a, facets[t, 1], facets[t, 2])
        area += 0.5 * np.sqrt(cx * cx + cy * cy + cz * cz)
        volume += (cx * points[a, 0] + cy * points[a, 1] + cz * points[a, 2]) / 6.0
    return volume, area
