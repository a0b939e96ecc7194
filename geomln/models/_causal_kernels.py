"""Numba kernel of causal analysis: how far along the sequence a witness query stays a witness."""

import numpy as np

from .._jit import parallel_jit, prange


@parallel_jit
def witness_reaches(points, keys, starts, directions, slack):
    """For each row, the position before the first key ``j >= starts[r]`` (not the key) within `slack` of it.

    Key ``keys[r]`` scores ``own = directions[r] . points[keys[r]]``; the scan stops at the first later key
    ``j`` with ``directions[r] . points[j] >= own - slack`` and returns ``j - 1`` (``n - 1`` if there is none).
    Costs ``O(d)`` per key scanned, ``O(n d)`` per row at worst.
    """
    n, dim = points.shape
    reach = np.full(keys.shape[0], n - 1, dtype=np.intp)
    for row in prange(keys.shape[0]):
        key = keys[row]
        own = 0.0
        for t in range(dim):
            own += directions[row, t] * points[key, t]
        for j in range(starts[row], n):
            score = 0.0
            for t in range(dim):
                score += directions[row, t] * points[j, t]
            if j != key and score >= own - slack:
                reach[row] = j - 1
                break
    return reach
