"""Warm-up for worker processes: load (or compile) the engine's kernels and time one reference call."""

import time

import numpy as np

from .selectability import selectable_keys

__all__ = ["reference_seconds", "warm_engine"]


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
