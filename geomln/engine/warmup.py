"""Warm-up: load (or compile) the engine's kernels, time one reference call, split a compile over two processes.

On an empty numba cache the batch kernel of :func:`~geomln.engine.selectability.count_unselectable` takes
most of a first Monte Carlo run to compile, on one core. Its call tree splits in two parts that compile
independently: the per-key decision with Wolfe's algorithm inside (:func:`compile_wolfe`, for a second
process) and the per-set helpers (:func:`compile_batch_kernel`, here). Each part is written to the cache,
and numba loads a part another process compiled instead of compiling it again.
"""

import time

import numpy as np

from . import _kernels as kernels
from ._geometry import wolfe_limits
from .selectability import count_unselectable, selectable_keys

__all__ = ["reference_seconds", "warm_engine", "compile_wolfe", "compile_batch_kernel"]

_TOL = 1e-9  # any tolerance: the compiled code does not depend on it


def reference_seconds():
    """Median seconds of one :func:`selectable_keys` call on 40 Gaussian keys in R^8 (9 calls, after one).

    The scale of the cost model that groups cheap work into Dask tasks (``geomln.executors``); the median
    is robust to a busy neighbour.
    """
    sets = np.random.default_rng(0).standard_normal((10, 40, 8))
    selectable_keys(sets[0])
    seconds = []
    for keys in sets[1:]:
        start = time.perf_counter()
        selectable_keys(keys)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def warm_engine():
    """Load the engine's kernels; return (seconds it took, :func:`reference_seconds`).

    Examples
    --------
    >>> from geomln.engine.warmup import warm_engine
    >>> seconds, unit = warm_engine()
    >>> 0 < unit <= seconds
    True
    """
    start = time.perf_counter()
    unit = reference_seconds()
    return time.perf_counter() - start, unit


def compile_wolfe():
    """Compile (or load) the per-key decision the batch kernel calls, with the argument types it passes.

    Returns the seconds it took. Meant for a second process while :func:`compile_batch_kernel` runs here.
    """
    start = time.perf_counter()
    points = np.eye(3)
    points_t = np.ascontiguousarray(points.T)
    low, high, max_major = wolfe_limits(_TOL, 3)
    out = kernels._allocate_decisions(np.intp(1), 3)
    kernels._decide_key(points, 0, 3, np.bool_(False), np.arange(3), points_t, np.ones(3), points_t, low, high,
                        max_major, np.intp(0), out)
    return time.perf_counter() - start


def compile_batch_kernel(wolfe=None):
    """Compile (or load) the Monte Carlo batch kernel; return the seconds it took.

    Parameters
    ----------
    wolfe : concurrent.futures.Future, optional
        A :func:`compile_wolfe` running in another process: the kernel's other helpers compile first, then
        this waits for it, so that the kernel finds the per-key decision in the cache.

    Examples
    --------
    >>> from geomln.engine.warmup import compile_batch_kernel
    >>> compile_batch_kernel() >= 0
    True
    """
    start = time.perf_counter()
    if wolfe is not None:
        keys = np.eye(3)
        points, _ = kernels._normalized_set(keys)
        kernels.has_equal_rows(keys)
        kernels._reflection_certifies(points, np.ascontiguousarray(points.T), 0, 1.0, kernels.REFLECTIONS,
                                      np.empty(kernels._SCORE_BLOCK), np.empty(3))
        wolfe.result()
    count_unselectable(np.random.default_rng(0).standard_normal((2, 40, 3)), _TOL)
    return time.perf_counter() - start
