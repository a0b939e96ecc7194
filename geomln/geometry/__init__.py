"""LayerNorm as geometry, and angles.

Projection onto the hyperplane orthogonal to 1, scaling to norm sqrt(d), and the angles of vectors
to 1 and to fitted hyperplanes.
"""

from .angles import (
    Hyperplane,
    angle_to,
    angle_to_hyperplane,
    angle_to_ones,
    fit_hyperplane,
)
from .layernorm import (
    factorized_layer_norm,
    layer_norm,
    project,
    rms_norm,
    scale,
)

__all__ = [
    "angle_to",
    "angle_to_ones",
    "fit_hyperplane",
    "angle_to_hyperplane",
    "Hyperplane",
    "project",
    "scale",
    "layer_norm",
    "factorized_layer_norm",
    "rms_norm",
]
