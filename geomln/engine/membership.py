"""Hull membership of arbitrary query points, with certificates."""

from dataclasses import dataclass

import numpy as np

from .._validation import as_bounded, as_points, as_tol
from ..errors import InputError
from . import _kernels as kernels
from ._geometry import affine_frame, decide
from .selectability import default_tol, hull_vertices

__all__ = ["HullMembership", "in_hull"]


@dataclass(frozen=True)
class HullMembership:
    """Whether query points lie in the convex hull of a point set, with certificates.

    Attributes
    ----------
    inside_mask : ndarray of bool, shape (k,)
        True for query points within ``tol * scale`` of the hull.
    combinations : dict
        ``{j: (indices, weights)}`` for inside points: hull points with weights >= 0 summing to 1 whose
        combination is within ``2 * tol * scale`` of query point ``j``.
    separating_directions : ndarray, shape (k, d)
        For outside points a unit direction ``u`` with ``u.x_j > max_i u.p_i``; NaN rows for inside points.
    margins : ndarray, shape (k,)
        ``(u.x_j - max_i u.p_i) / scale`` for outside points; NaN for inside points.
    distances : ndarray, shape (k,)
        Euclidean distance to the hull relative to `scale` where it was needed exactly; otherwise an upper
        bound for inside points (at most ``tol / 10``) and a lower bound (the margin) for outside points.
    borderline_mask : ndarray of bool, shape (k,)
        Points whose distance lies within a factor 10 of `tol`.
    tol, scale : float
        Relative tolerance and the radius ``max_i |p_i - mean(p)|`` of the distinct hull points it is
        relative to.
    """

    inside_mask: np.ndarray
    combinations: dict
    separating_directions: np.ndarray
    margins: np.ndarray
    distances: np.ndarray
    borderline_mask: np.ndarray
    tol: float
    scale: float


def in_hull(points, hull_points, *, tol=None):
    """Test which `points` lie in the convex hull of `hull_points`, with a certificate for each answer.

    Parameters
    ----------
    points : array_like, shape (k, d)
        Query points.
    hull_points : array_like, shape (n, d)
        The point set whose convex hull is tested.
    tol : float, optional
        Relative tolerance (default from the dtype of `hull_points`): a query point is inside iff its
        distance to the hull is at most ``tol * scale``, ``scale = max_i |p_i - mean(p)|`` (for a single hull
        point, the largest distance of a query point from it; means and maxima over distinct points).

    Returns
    -------
    HullMembership

    Raises
    ------
    InputError
        If the arrays are not finite and 2-D or their dimensions differ.

    Notes
    -----
    The hull's vertices are found first (:func:`hull_vertices`); each query point then runs Wolfe's
    minimum-norm-point algorithm against them in the hull's normalized affine coordinates. A query
    point off the hull's affine hull (e.g. off the hyperplane of LayerNorm outputs) is outside, with a
    separating direction normal to that hyperplane.

    Examples
    --------
    >>> import numpy as np, geomln
    >>> square = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    >>> result = geomln.in_hull([[0.5, 0.5], [2.0, 0.5]], square)
    >>> result.inside_mask
    array([ True, False])
    >>> u = result.separating_directions[1]   # a unit direction in which the point beats every hull point
    >>> bool(u @ [2.0, 0.5] > (square @ u).max())
    True
    """
    hull = as_bounded(as_points(hull_points, "hull_points"), "hull_points")
    queries = as_bounded(as_points(points, "points"), "points")
    if queries.shape[1] != hull.shape[1]:
        raise InputError(
            f"`points` must have d = {hull.shape[1]} columns like `hull_points`; got shape {queries.shape}"
        )
    tol = as_tol(tol, default=default_tol(hull_points))
    vertices = hull_vertices(hull, tol=tol)
    frame = affine_frame(np.unique(hull, axis=0), tol)
    radius = frame.radius if frame.radius > 0 else float(np.linalg.norm(queries - hull[0], axis=1).max()) or 1.0
    relative = (queries - frame.centre) / radius
    inside_coords = relative @ frame.basis
    off_plane = relative - inside_coords @ frame.basis.T
    off_distance = np.linalg.norm(off_plane, axis=1)
    k, d = queries.shape
    inside = np.zeros(k, dtype=bool)
    borderline = np.zeros(k, dtype=bool)
    directions = np.full((k, d), np.nan)
    margins = np.full(k, np.nan)
    distances = off_distance.copy()
    combinations = {}
    # off the affine hull by more than tol: outside, separated along the normal component
    far = off_distance > tol
    directions[far] = off_plane[far] / off_distance[far, None]
    margins[far] = off_distance[far]
    borderline[far] = off_distance[far] <= 10 * tol
    near = np.flatnonzero(~far)
    if near.size:
        if frame.rank == 0:
            inside[near] = True
            for j in near:
                combinations[int(j)] = (vertices[:1].copy(), np.array([1.0]))
        else:
            vertex_coords = ((hull[vertices] - frame.centre) / radius) @ frame.basis
            stacked = np.ascontiguousarray(np.vstack([vertex_coords, inside_coords[near]]))
            n_hull = vertices.size
            decisions = decide(stacked, n_hull, np.arange(n_hull, n_hull + near.size), np.arange(n_hull), tol)
            is_inside = (decisions.status == kernels.UNSELECTABLE) | (
                (decisions.status == kernels.CONVERGED) & ~(decisions.margin > tol))
            inside[near] = is_inside
            borderline[near] = decisions.status == kernels.CONVERGED
            distances[near] = np.hypot(decisions.distance, off_distance[near])
            for slot, j in enumerate(near):
                if is_inside[slot]:
                    ids, weights = decisions.combination(slot)
                    combinations[int(j)] = (vertices[ids], weights)
                else:
                    directions[j] = frame.to_original_direction(decisions.direction[slot])
                    margins[j] = decisions.margin[slot]
    return HullMembership(inside, combinations, directions, margins, distances, borderline, tol, radius)
