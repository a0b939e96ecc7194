"""The exact engine: which keys can win the strict maximum score, with certificates.

Selectability (hull vertices) with a witness query or convex weights for every verdict, hull
membership, and the independent checker of the certificates.
"""

from .certificates import verify_selectability
from .membership import (
    HullMembership,
    in_hull,
)
from .selectability import (
    Combinations,
    Selectability,
    default_tol,
    hull_vertices,
    selectable_keys,
)

__all__ = [
    "HullMembership",
    "in_hull",
    "Selectability",
    "Combinations",
    "selectable_keys",
    "verify_selectability",
    "hull_vertices",
    "default_tol",
]
