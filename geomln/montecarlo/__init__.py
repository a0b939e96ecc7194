"""Monte Carlo of unselectable keys over a grid of (n, d), and the exact Gaussian theory.

Together they reproduce the paper's Figure 1c/1d.
"""

from .estimate import (
    DISTRIBUTIONS,
    NORMALIZATIONS,
    MonteCarloResult,
    MonteCarloRow,
    estimate_unselectable,
)
from .theory import (
    expected_vertices_gaussian,
    unselectable_fraction_gaussian,
)

__all__ = [
    "MonteCarloResult",
    "MonteCarloRow",
    "estimate_unselectable",
    "DISTRIBUTIONS",
    "NORMALIZATIONS",
    "expected_vertices_gaussian",
    "unselectable_fraction_gaussian",
]
