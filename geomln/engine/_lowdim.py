"""Large key sets in low dimension: certify the deep interior in O(n) before the exact engine runs.

For n in the tens of thousands and d <= 4, almost every key is interior and the engine's cost is one Wolfe run
per key. Here the extreme keys in a fixed set of directions span a small polytope Q (Akl & Toussaint 1978);
each key strictly inside Q gets its convex-combination certificate from the fan triangulation of Q from one
of its vertices, in one linear pass. A few such rounds (:func:`certify_interior`) leave only keys near the
boundary (about 0.02-0.2% of Gaussian keys), which go through the engine; its verdicts on that subset equal
those on the whole set, because every certificate's corners are kept in it.
"""

import itertools
from dataclasses import dataclass

import numpy as np

from .._blas import one_blas_thread
from ..hull._kernels3d import center_points
from . import _lowdim_kernels as kernels
from ._geometry import BORDERLINE_FACTOR, AffineFrame
from ._kernels import has_equal_rows

__all__ = ["MIN_KEYS", "MAX_DIM", "HULL_KEYS", "InnerPolytope", "full_rank_frame", "inner_polytope",
           "certify_interior", "lower_corner_margins"]

#: the path is used from this many keys on (below it the engine alone is as fast)
MIN_KEYS = 20_000
#: and up to this dimension (the number of Q's facets grows quickly with d)
MAX_DIM = 4
#: the last round takes the hull of all keys left once there are at most this many
HULL_KEYS = 5_000


@dataclass(frozen=True)
class InnerPolytope:
    """Q's vertices, and the keys certified strictly inside Q (increasing) with their certificates.

    Key ``certified[r]`` is the combination of the keys ``corner_keys[simplex[r]]`` with ``weights[r]``;
    ``others`` lists the keys not certified (increasing).
    """

    vertices: np.ndarray
    certified: np.ndarray
    simplex: np.ndarray
    corner_keys: np.ndarray
    weights: np.ndarray
    others: np.ndarray


def full_rank_frame(points, tol):
    """Return the normalized frame of `points` if they are distinct and span their space, else None.

    Without rotation: ``coords = (points - centre) / radius``. Full rank here means the root-mean-square
    spread along the thinnest direction exceeds ``max(100 tol, 1e-6)``, far above the ``tol / 4`` below which
    the engine's own frame would drop a direction; thinner sets go through the engine.
    """
    if has_equal_rows(points):
        return None
    centred, centre, radius = center_points(points)
    if not 1e-150 < radius < 1e150:
        return None
    centred /= radius
    gram = centred.T @ centred / points.shape[0]
    with one_blas_thread():  # d x d: BLAS threads only cost here
        smallest = float(np.linalg.eigvalsh(gram)[0])
    if not smallest > max(100.0 * tol, 1e-6) ** 2:  # far above both tol / 4 and the eigenvalue's rounding
        return None
    d = points.shape[1]
    return AffineFrame(centre, radius, np.eye(d), centred)


def _axes(d):
    """Return the coordinate axes, both ways."""
    return np.vstack([np.eye(d), -np.eye(d)])


def _axes_and_diagonals(d):
    """Return the coordinate axes both ways and the 2^d diagonal directions."""
    return np.vstack([_axes(d), np.array(list(itertools.product([-1.0, 1.0], repeat=d))) / np.sqrt(d)])


def _extreme_keys(coords, directions, chunk=16384):
    """Return the sorted distinct indices of the keys scoring highest along each of `directions`."""
    best = np.full(directions.shape[0], -np.inf)
    best_at = np.zeros(directions.shape[0], dtype=np.intp)
    for start in range(0, coords.shape[0], chunk):  # in chunks: no (directions x n) score matrix
        scores = directions @ coords[start:start + chunk].T
        at = scores.argmax(axis=1)
        top = scores[np.arange(at.size), at]
        better = top > best
        best[better], best_at[better] = top[better], start + at[better]
    return np.unique(best_at)


def inner_polytope(coords, tol, directions=None):
    """Certify the keys strictly inside a polytope Q spanned by some of them, or return None.

    Q is the hull of the keys extreme along `directions`, or of all keys when `directions` is None
    (Qhull's vertices are only candidates: every certificate is checked in the kernel). Indices in the
    result are rows of `coords`. Returns None when Q is degenerate (Qhull cannot build it).
    """
    from scipy.spatial import ConvexHull, QhullError

    n, d = coords.shape
    spanning = np.arange(n) if directions is None else _extreme_keys(coords, directions)
    try:
        hull = ConvexHull(coords[spanning])
    except QhullError:
        return None
    vertices = spanning[hull.vertices]
    apex_local = hull.vertices[0]
    apex = coords[spanning[apex_local]]
    keep = ~(hull.simplices == apex_local).any(axis=1)
    normals = hull.equations[keep, :d]
    heights = -(normals @ apex + hull.equations[keep, d])
    facet_keys = np.hstack([np.full((keep.sum(), 1), spanning[apex_local]), spanning[hull.simplices[keep]]])
    usable = heights > 1e-9
    facet_keys, normals, heights = facet_keys[usable], normals[usable], heights[usable]
    if heights.size == 0:
        return None
    corners = coords[facet_keys]  # (F, d + 1, d): apex, then the facet's vertices
    homogeneous = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], axis=2).transpose(0, 2, 1)
    inverses = np.linalg.inv(homogeneous)
    scaled_normals = normals / heights[:, None]
    excluded = np.zeros(n, dtype=bool)
    excluded[vertices] = True
    certified, simplex, weights, others = kernels.fan_certificates(
        coords, np.ascontiguousarray(coords.T), np.ascontiguousarray(scaled_normals),
        np.ascontiguousarray(-(scaled_normals @ apex)), np.ascontiguousarray(inverses),
        np.ascontiguousarray(corners), excluded, tol / BORDERLINE_FACTOR)
    return InnerPolytope(vertices, certified, simplex, np.ascontiguousarray(facet_keys), weights, others)


def certify_interior(coords, tol):
    """Certify most interior keys in rounds; return the keys left (increasing) and the certificate blocks.

    Round 1 uses the extreme keys along the axes, round 2 along the axes and the diagonals (a superset of
    directions, so round 1's polytope vertices are extreme again and survive), and once at most
    ``HULL_KEYS`` keys are left, a last round uses the hull of all of them. Every certificate's corners
    are keys left at the end. Returns None if a polytope is degenerate.

    Returns
    -------
    left : ndarray of intp
    blocks : list of (keys, simplex, corner_keys, weights)
        Certified key indices (increasing); key ``keys[r]`` is the combination of the keys
        ``corner_keys[simplex[r]]`` with ``weights[r]``.
    """
    n, d = coords.shape
    left = np.arange(n)
    blocks = []
    for directions in (_axes(d), _axes_and_diagonals(d), None):
        if directions is None and left.size > HULL_KEYS:
            break  # too many keys near the boundary for a hull round: the engine takes them
        if directions is not None and left.size <= HULL_KEYS:
            continue  # few enough keys left for the hull round already
        first = left.size == n  # indices are already key indices: no copies
        inner = inner_polytope(coords if first else np.ascontiguousarray(coords[left]), tol, directions)
        if inner is None:
            return None
        keys = inner.certified if first else left[inner.certified]
        corner_keys = inner.corner_keys if first else left[inner.corner_keys]
        blocks.append((keys, inner.simplex, corner_keys, inner.weights))
        left = inner.others if first else left[inner.others]
    return left, blocks


def lower_corner_margins(coords, blocks, directions, margins):
    """Lower each witnessed key's margin to its exact value over the keys certified with it as a corner.

    `directions` (n, d) holds the unit witness of each selectable key left (NaN rows elsewhere) and
    `margins` (n,) its margin over the keys left; see ``_lowdim_kernels.lower_corner_margins``.
    """
    for keys, simplex, corner_keys, _ in blocks:
        kernels.lower_corner_margins(coords, keys, simplex, corner_keys, directions, margins)
