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
    :func:`load_keys`, :func:`save_keys`, :func:`as_key_array`, :func:`analyze_keys`, :func:`max_attention`,
    :func:`load_array`.

Plots are in :mod:`geomln.plotting`, PyTorch capture in :mod:`geomln.capture`, the paper's experiments in
:mod:`geomln.experiments` (both need the ``torch`` extra). Nothing is compiled or even imported at
``import geomln``: each public name, and each submodule (``geomln.capture``, ``geomln.plotting``, ...),
is imported on first access, and numba kernels compile (or load from their on-disk cache) on first use.
"""

import importlib

from . import _aliases  # noqa: F401 - installs the old module paths (geomln.capture, ...) as aliases
from ._version import __version__

#: public name -> the subpackage that exports it, by theme (imported on first access, see ``__getattr__``)
_EXPORTS = {
    # LayerNorm geometry
    "project": "geometry",
    "scale": "geometry",
    "layer_norm": "geometry",
    "factorized_layer_norm": "geometry",
    "rms_norm": "geometry",
    # angles
    "angle_to": "geometry",
    "angle_to_ones": "geometry",
    "fit_hyperplane": "geometry",
    "angle_to_hyperplane": "geometry",
    "Hyperplane": "geometry",
    # selectability
    "selectable_keys": "engine",
    "verify_selectability": "engine",
    "Selectability": "engine",
    "hull_vertices": "engine",
    "default_tol": "engine",
    "in_hull": "engine",
    "HullMembership": "engine",
    # files
    "load_array": "models",
    # key files
    "load_keys": "models",
    "save_keys": "models",
    "KeyArray": "models",
    "as_key_array": "models",
    "open_shards": "models",
    "KeyShards": "models",
    # convex hulls
    "convex_hull": "hull",
    "ConvexHull": "hull",
    # Gaussian theory
    "expected_vertices_gaussian": "montecarlo",
    "unselectable_fraction_gaussian": "montecarlo",
    # Monte Carlo
    "estimate_unselectable": "montecarlo",
    "MonteCarloResult": "montecarlo",
    "MonteCarloRow": "montecarlo",
    # key analysis
    "analyze_keys": "models",
    "KeyReport": "models",
    "max_attention": "models",
    # errors
    "GeomlnError": "errors",
    "InputError": "errors",
    "DataFileError": "errors",
    "ClusterError": "errors",
    "GeomlnWarning": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    """Import a public name or a submodule (``geomln.capture``) on first access, then keep it."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    elif name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the submodule exists but needs something missing (e.g. torch): say that
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
