"""Convex hulls with facets for point sets of affine rank at most 6, computed in their affine hull."""

from dataclasses import dataclass

import numpy as np

from .._blas import one_blas_thread
from .._validation import as_points, as_tol
from ..errors import InputError
from . import _kernels2d, _kernels3d

__all__ = ["ConvexHull", "convex_hull", "DEFAULT_TOL", "MAX_FACET_RANK"]

DEFAULT_TOL = 1e-9
"""Default relative tolerance of :func:`convex_hull` (a multiple of the data's scale)."""

MAX_FACET_RANK = 6
"""Largest affine rank for which facets are computed (above it their number explodes)."""

_SMALL_D = 8  # up to this many columns the preprocessing runs in numba, above it through BLAS


@dataclass(frozen=True)
class ConvexHull:
    """The convex hull of ``n`` points in ``R^d``, computed in their ``r``-dimensional affine hull.

    Attributes
    ----------
    vertex_indices : ndarray of intp, shape (n_vertices,)
        Sorted indices of the extreme points. A duplicated vertex is reported once, by its first index;
        points on an edge or facet (within the tolerance) are not vertices.
    facets : ndarray of intp, shape (n_facets, r)
        Point indices of each facet of the hull inside its affine hull: no rows for ``r = 0``, the two
        endpoints for ``r = 1``, edges for ``r = 2`` (listed in cyclic order, each ``(a, b)`` with the
        polygon counterclockwise in the coordinates of `basis`), triangles for ``r = 3`` (counterclockwise
        seen from outside, so ``cross(b - a, c - a)`` points outward), and Qhull's simplices (not
        oriented) for ``r = 4..6``. Faces that are not simplices come triangulated, over vertices only.
    equations : ndarray, shape (n_facets, d + 1)
        ``[normal, offset]`` per facet, in the original coordinates, as in ``scipy.spatial.ConvexHull``:
        `normal` is a unit outward normal lying in the affine hull's directions (orthogonal to every
        direction in which the points do not spread), and ``normal @ x + offset <= 0`` for points of
        the hull (up to the tolerance).
    volume : float
        ``r``-dimensional volume of the hull inside its affine hull (length for ``r = 1``, area for
        ``r = 2``); 0 for ``r = 0``. The ``d``-dimensional volume is 0 whenever ``r < d``.
    area : float
        ``(r - 1)``-dimensional measure of its relative boundary (perimeter for ``r = 2``, surface area
        for ``r = 3``); 0 for ``r <= 1``.
    affine_rank : int
        ``r``, the dimension of the affine hull after dropping directions of spread at most ``tol * scale``.
    n_points, ndim : int
        ``n`` and ``d``.
    centroid : ndarray, shape (d,)
        Mean of the points.
    basis : ndarray, shape (r, d)
        Orthonormal rows spanning the affine hull's directions (the identity when ``r = d``).
    scale : float
        Largest distance of a point from the centroid.
    tol : float
        The relative tolerance used; every predicate compared against ``tol * scale``.
    method : str
        ``"point"``, ``"segment"``, ``"monotone_chain"``, ``"quickhull"`` (numba) or ``"qhull"`` (scipy).
    """

    vertex_indices: np.ndarray
    facets: np.ndarray
    equations: np.ndarray
    volume: float
    area: float
    affine_rank: int
    n_points: int
    ndim: int
    centroid: np.ndarray
    basis: np.ndarray
    scale: float
    tol: float
    method: str

    @property
    def n_vertices(self):
        """Number of vertices."""
        return int(self.vertex_indices.shape[0])

    @property
    def n_facets(self):
        """Number of facets (triangles and simplices counted separately)."""
        return int(self.facets.shape[0])

    def signed_distances(self, points):
        """Signed distance of each point to each facet's hyperplane, positive outside.

        A point lies in the hull (up to the tolerance) when no distance exceeds ``tol * scale``; the
        facets with a positive distance are the ones it lies beyond.

        Parameters
        ----------
        points : array_like, shape (k, d)

        Returns
        -------
        ndarray, shape (k, n_facets)
            ``points @ equations[:, :-1].T + equations[:, -1]``.

        Raises
        ------
        InputError
            If `points` is not of shape ``(k, d)`` or holds NaN or infinite values.
        """
        x = as_points(points, "points")
        if x.shape[1] != self.ndim:
            raise InputError(
                f"`points` must have {self.ndim} columns like the hull's points; got shape {x.shape}"
            )
        return x @ self.equations[:, :-1].T + self.equations[:, -1]


def _principal_frame(y, scale, eps):
    """Eigenvectors of the scatter matrix (columns, by decreasing eigenvalue) and the spread along each."""
    d = y.shape[1]
    if d <= _SMALL_D:
        gram = _kernels3d.small_gram(y)
    else:
        gram = y.T @ y
    with one_blas_thread():  # d x d: BLAS threads only cost here
        evals, evecs = np.linalg.eigh(gram)
    evecs = np.ascontiguousarray(evecs[:, ::-1])
    if d <= _SMALL_D:
        spreads = _kernels3d.max_abs_projection(y, evecs)
    else:
        spreads = np.zeros(d)
        for start in range(0, y.shape[0], 4096):
            spreads = np.maximum(spreads, np.abs(y[start : start + 4096] @ evecs).max(axis=0))
    return evecs, spreads


def _reduce_frame(coords, frame, k):
    """Return coordinates and frame for the top-`k` principal directions (a kernel found the points flat)."""
    gram = coords.T @ coords
    with one_blas_thread():
        evals, evecs = np.linalg.eigh(gram)
    q = evecs[:, ::-1][:, :k].T
    return np.ascontiguousarray(coords @ q.T), q @ frame


def _first_copies(points, indices):
    """Map each index to the first index of an identical row."""
    if indices.size == 0:
        return indices
    _, first, inverse = np.unique(points, axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)[indices]]


def _hull_segment(coords):
    t = coords[:, 0]
    lo, hi = int(np.argmin(t)), int(np.argmax(t))
    facets = np.array([[lo], [hi]], dtype=np.intp)
    normals = np.array([[-1.0], [1.0]])
    offsets = np.array([t[lo], -t[hi]])
    return facets, normals, offsets, float(t[hi] - t[lo]), 0.0


def _hull_polygon(coords, ring):
    a = coords[ring]
    b = coords[np.roll(ring, -1)]
    edge = b - a
    length = np.hypot(edge[:, 0], edge[:, 1])
    normals = np.column_stack([edge[:, 1], -edge[:, 0]]) / length[:, None]
    offsets = -0.5 * ((normals * a).sum(axis=1) + (normals * b).sum(axis=1))
    volume = 0.5 * float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum())
    facets = np.column_stack([ring, np.roll(ring, -1)]).astype(np.intp)
    return facets, normals, offsets, volume, float(length.sum())


def _hull_qhull(coords):
    from scipy.spatial import ConvexHull as QhullHull
    from scipy.spatial import QhullError

    try:
        qh = QhullHull(coords)
    except QhullError as exc:
        summary = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"`points` span {coords.shape[1]} dimensions only barely: Qhull failed on their projection onto "
            f"their affine hull ({summary}); pass a larger `tol` to drop the thin directions"
        ) from None
    return (
        qh.simplices.astype(np.intp),
        qh.equations[:, :-1],
        qh.equations[:, -1],
        float(qh.volume),
        float(qh.area),
    )


def _retriangulate_faces(coords, facets, neighbors, normals, offsets, eps):
    """Replace each planar face made of several triangles by a fan over the corners of its polygon.

    The corners are the vertices of the face's 2-D hull (monotone chain with the same `eps`), so
    points on an edge or inside a face, which quickhull may have inserted, are dropped.
    """
    group, seeds = _kernels3d.coplanar_groups(coords, facets, neighbors, normals, offsets, eps)
    sizes = np.bincount(group, minlength=seeds.shape[0])
    if (sizes == 1).all():
        return facets, normals, offsets
    single = sizes[group] == 1
    tri, nrm, off = [facets[single]], [normals[single]], [offsets[single]]
    for g in np.flatnonzero(sizes > 1):
        members = group == g
        verts = np.unique(facets[members])
        seed = seeds[g]
        normal = normals[seed]
        axis = np.zeros(3)
        axis[np.argmin(np.abs(normal))] = 1.0
        e1 = np.cross(normal, axis)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(normal, e1)
        local = coords[verts]
        uv = np.ascontiguousarray(np.column_stack([local @ e1, local @ e2]))
        ring = verts[_kernels2d.monotone_chain(uv, eps)]
        if ring.shape[0] < 3:  # cannot happen for a face of positive area; keep quickhull's triangles
            tri.append(facets[members]), nrm.append(normals[members]), off.append(offsets[members])
            continue
        k = ring.shape[0] - 2
        tri.append(np.column_stack([np.full(k, ring[0]), ring[1:-1], ring[2:]]))
        nrm.append(np.repeat(normal[None, :], k, axis=0))
        off.append(np.full(k, offsets[seed]))
    return np.concatenate(tri).astype(np.intp), np.concatenate(nrm), np.concatenate(off)


def convex_hull(points, *, tol=None):
    """Convex hull of points, with facets and facet equations, computed in the points' affine hull.

    Parameters
    ----------
    points : array_like, shape (n, d)
        Finite coordinates; any ``d``, any affine rank up to 6.
    tol : float, optional
        Relative tolerance, default ``1e-9``. With ``scale`` the largest distance of a point from the
        centroid, every decision compares a distance with ``eps = tol * scale``: (1) the affine rank is
        the number of principal directions (eigenvectors of the scatter matrix of the centred points,
        i.e. right singular vectors) along which some point lies farther than ``eps`` from the centroid;
        (2) a point is beyond a facet when its signed distance to the facet's hyperplane exceeds ``eps``,
        and in 2-D a point within ``eps`` of the line through its hull neighbours is not a vertex; (3) points
        within ``eps`` of a vertex are copies of it. Use about ``1e-6`` for data from float32 models.

    Returns
    -------
    ConvexHull
        Vertices, facets, equations, volume and area (see :class:`ConvexHull`).

    Raises
    ------
    InputError
        If `points` is not a non-empty finite 2-D array, if `tol` is negative, or if the affine rank
        exceeds 6, where facets are not offered (use ``geomln.hull_vertices`` for the vertices).
    TypeError
        If `points` is not numeric.

    See Also
    --------
    scipy.spatial.ConvexHull : Qhull, used here for affine ranks 4 to 6.

    Notes
    -----
    The points are centred and, when their affine rank ``r`` is below ``d``, projected onto the
    orthonormal basis of their affine hull; facets and equations are mapped back to the original
    coordinates. By rank: 0 gives one vertex (the first point) and no facets; 1 the two endpoints;
    2 Andrew's monotone chain after Akl-Toussaint filtering, O(n log n); 3 quickhull, expected
    O(n log n), with ties between equally far eye points broken so that only vertices are ever
    inserted; both in numba. Ranks 4 to 6 are delegated to Qhull (``scipy.spatial.ConvexHull``)
    on the projected points, never on rank-deficient raw input (which Qhull rejects); Qhull then
    decides with its own tolerances rather than `tol`. If a numba kernel finds the points flatter
    than the rank test said (a direction of spread just above ``eps`` that is not a facet normal), the
    hull is computed one rank lower; if quickhull meets inconsistent visibility on near-degenerate
    input it falls back to Qhull.

    Examples
    --------
    >>> import numpy as np
    >>> import geomln
    >>> square = [[0, 0], [2, 0], [2, 2], [0, 2], [1, 0], [1, 1]]  # plus an edge midpoint and the centre
    >>> hull = geomln.convex_hull(square)
    >>> hull.vertex_indices
    array([0, 1, 2, 3])
    >>> hull.facets
    array([[0, 1],
           [1, 2],
           [2, 3],
           [3, 0]])
    >>> float(hull.volume), float(hull.area)
    (4.0, 8.0)
    >>> hull.equations[0]  # the bottom edge: -y + 0 <= 0
    array([ 0., -1.,  0.])
    >>> geomln.convex_hull([[1, 1, 1], [3, 3, 3], [2, 2, 2]]).vertex_indices  # collinear in 3-D
    array([0, 1])
    """
    x = as_points(points, "points")
    tol = as_tol(tol, default=DEFAULT_TOL)
    n, d = x.shape
    y, centroid, scale = _kernels3d.center_points(x)
    eps = tol * scale
    if scale > 0.0:
        evecs, spreads = _principal_frame(y, scale, eps)
        keep = spreads > eps
    else:
        evecs, keep = np.eye(d), np.zeros(d, dtype=bool)
    rank = int(keep.sum())
    if rank > MAX_FACET_RANK:
        raise InputError(
            f"`points` have affine rank {rank} (shape {x.shape}); facets are offered up to rank "
            f"{MAX_FACET_RANK} only, because their number explodes. Use geomln.hull_vertices(points) "
            "for the vertices"
        )
    if rank == d:
        frame, coords = np.eye(d), y
    else:
        frame = np.ascontiguousarray(evecs[:, keep].T)
        coords = np.ascontiguousarray(y @ frame.T)

    method = None
    while method is None:
        if rank == 0:
            method = "point"
            facets, normals, offsets = np.empty((0, 1), np.intp), np.empty((0, 0)), np.empty(0)
            volume = area = 0.0
        elif rank == 1:
            method = "segment"
            facets, normals, offsets, volume, area = _hull_segment(coords)
        elif rank == 2:
            ring = _kernels2d.monotone_chain(coords, eps)
            if ring.shape[0] < 3:
                coords, frame = _reduce_frame(coords, frame, 1)
                rank = 1
                continue
            method = "monotone_chain"
            facets, normals, offsets, volume, area = _hull_polygon(coords, ring)
        elif rank == 3:
            status, facets, neighbors, normals, offsets = _kernels3d.quickhull(
                coords, eps, _kernels3d.tie_directions()
            )
            if status == 1:
                coords, frame = _reduce_frame(coords, frame, 2)
                rank = 2
                continue
            if status == 0:
                method = "quickhull"
                facets, normals, offsets = _retriangulate_faces(
                    coords, facets, neighbors, normals, offsets, eps
                )
                volume, area = _kernels3d.triangle_measures(coords, facets)
            else:
                method = "qhull"
                facets, normals, offsets, volume, area = _hull_qhull(coords)
        else:
            method = "qhull"
            facets, normals, offsets, volume, area = _hull_qhull(coords)

    if method == "qhull":
        facets = _first_copies(x, facets.reshape(-1)).reshape(facets.shape)
    if rank == 0:
        vertex_indices = np.zeros(1, dtype=np.intp)
    else:
        vertex_indices = np.unique(facets).astype(np.intp)
    normals_x = normals @ frame if rank > 0 else np.empty((0, d))
    equations = (
        np.column_stack([normals_x, offsets - normals_x @ centroid]) if rank > 0 else np.empty((0, d + 1))
    )
    return ConvexHull(
        vertex_indices=vertex_indices,
        facets=np.ascontiguousarray(facets, dtype=np.intp),
        equations=equations,
        volume=float(volume),
        area=float(area),
        affine_rank=rank,
        n_points=n,
        ndim=d,
        centroid=centroid,
        basis=frame,
        scale=float(scale),
        tol=tol,
        method=method,
    )
