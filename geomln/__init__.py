"""geomln: exact, fast geometry of attention keys.

Themes
------
LayerNorm geometry
    :func:`project`, :func:`scale`, :func:`layer_norm`, :func:`factorized_layer_norm`, :func:`rms_norm`.
Angles
    :func:`angle_to`, :func:`angle_to_ones`, :func:`fit_hyperplane`, :func:`angle_to_hyperplane`.
Selectable keys (exact, with certificates)
    :func:`selectable_keys`, :func:`verify_selectability`, :func:`hull_vertices`, :func:`in_hull`,
    :func:`default_tol`.
Convex hulls with facets (affine rank <= 3 in numba, <= 6 via Qhull)
    :func:`convex_hull`.
Gaussian theory and Monte Carlo
    :func:`expected_vertices_gaussian`, :func:`unselectable_fraction_gaussian`, :func:`estimate_unselectable`.
Keys saved from models
    :func:`load_keys`, :func:`save_keys`, :func:`analyze_keys`, :func:`max_attention`, :func:`load_array`.

Plots are in :mod:`geomln.plotting`, PyTorch capture in :mod:`geomln.capture`, the paper's experiments in
:mod:`geomln.experiments` (both need the ``torch`` extra). Nothing is compiled at import: numba kernels
compile (or load from their on-disk cache) on first use.
"""

from ._version import __version__
from .analysis import KeyReport, analyze_keys
from .angles import Hyperplane, angle_to, angle_to_hyperplane, angle_to_ones, fit_hyperplane
from .attention import max_attention
from .errors import ClusterError, DataFileError, GeomlnError, GeomlnWarning, InputError
from .hull import ConvexHull, convex_hull
from .io import load_array
from .keyfile import KeyArray, load_keys, save_keys
from .layernorm import factorized_layer_norm, layer_norm, project, rms_norm, scale
from .membership import HullMembership, in_hull
from .montecarlo import MonteCarloResult, MonteCarloRow, estimate_unselectable
from .selectability import Selectability, default_tol, hull_vertices, selectable_keys, verify_selectability
from .theory import expected_vertices_gaussian, unselectable_fraction_gaussian

__all__ = [
    "__version__",
    # LayerNorm geometry
    "project",
    "scale",
    "layer_norm",
    "factorized_layer_norm",
    "rms_norm",
    # angles
    "angle_to",
    "angle_to_ones",
    "fit_hyperplane",
    "angle_to_hyperplane",
    "Hyperplane",
    # selectability
    "selectable_keys",
    "verify_selectability",
    "Selectability",
    "hull_vertices",
    "in_hull",
    "HullMembership",
    "default_tol",
    # files
    "load_array",
    # key files
    "load_keys",
    "save_keys",
    "KeyArray",
    # Convex hulls
    "convex_hull",
    "ConvexHull",
    # Gaussian theory
    "expected_vertices_gaussian",
    "unselectable_fraction_gaussian",
    # Monte Carlo
    "estimate_unselectable",
    "MonteCarloResult",
    "MonteCarloRow",
    # Key analysis
    "analyze_keys",
    "KeyReport",
    "max_attention",
    # errors
    "GeomlnError",
    "InputError",
    "DataFileError",
    "ClusterError",
    "GeomlnWarning",
]
