"""Convex hulls with facets.

Exact 2-D/3-D kernels, Qhull up to affine rank 6.
"""

from .convex import (
    ConvexHull,
    convex_hull,
)

__all__ = [
    "ConvexHull",
    "convex_hull",
]
