"""Numba kernels that score many directions against a point set: the best columns per row, the best other key.

Inputs are finite, C-contiguous float64 arrays in normalized coordinates; indices are ``np.intp``. Scores are
computed a block of columns at a time into a small workspace along contiguous memory (the inner loop
vectorises) and never stored as a matrix. Each row's result depends on that row alone, so the results do not
depend on the number of threads.
"""

import numpy as np

from .._jit import jit, parallel_jit, prange

_CHUNK = 64  # rows per thread task (they share one workspace)
_BLOCK = 512  # columns scored at a time (a 4 KiB workspace)


@jit
def _block_scores(columns_t, direction, begin, width, block):
    """``block[c] = direction . columns_t[:, begin + c]`` for ``c < width`` (returns the filled view)."""
    scores = block[:width]
    scores[:] = 0.0
    for t in range(columns_t.shape[0]):
        weight = direction[t]
        row = columns_t[t, begin:begin + width]
        for c in range(width):
            scores[c] += weight * row[c]
    return scores


@jit
def _top_columns_row(columns_t, direction, best, values, block):
    """Write into `best` the indices of the ``best.size`` columns scoring highest along `direction`."""
    count = columns_t.shape[1]
    width = best.shape[0]
    filled = 0
    lowest_at = 0
    for begin in range(0, count, _BLOCK):
        size = min(count - begin, _BLOCK)
        scores = _block_scores(columns_t, direction, begin, size, block)
        for c in range(size):
            value = scores[c]
            if filled < width:
                best[filled] = begin + c
                values[filled] = value
                filled += 1
                if filled == width:
                    for k in range(width):
                        if values[k] < values[lowest_at]:
                            lowest_at = k
            elif value > values[lowest_at]:
                best[lowest_at] = begin + c
                values[lowest_at] = value
                for k in range(width):
                    if values[k] < values[lowest_at]:
                        lowest_at = k


@parallel_jit
def top_columns(directions, columns_t, width):
    """For each row of `directions` (b, dim), the `width` columns of `columns_t` (dim, c) scoring highest.

    Requires ``width <= c``. Returns an intp array (b, width) of column indices in no particular order (ties
    go to the earlier column).
    """
    count = directions.shape[0]
    best = np.empty((count, width), dtype=np.intp)
    chunks = (count + _CHUNK - 1) // _CHUNK
    for chunk in prange(chunks):
        block = np.empty(_BLOCK)
        values = np.empty(width)
        for r in range(chunk * _CHUNK, min(count, (chunk + 1) * _CHUNK)):
            _top_columns_row(columns_t, directions[r], best[r], values, block)
    return best


@jit
def _best_other_row(points_t, direction, skip, block):
    """Index and score of the best column other than `skip` along `direction`, and the score of `skip`."""
    count = points_t.shape[1]
    top, top_at, own = -np.inf, -1, -np.inf
    for begin in range(0, count, _BLOCK):
        size = min(count - begin, _BLOCK)
        scores = _block_scores(points_t, direction, begin, size, block)
        if begin <= skip < begin + size:
            own = scores[skip - begin]
            scores[skip - begin] = -np.inf
        for c in range(size):
            if scores[c] > top:
                top = scores[c]
                top_at = begin + c
    return top_at, top, own


@parallel_jit
def best_other(directions, points_t, keys):
    """For each row r of `directions` (b, dim): the best point other than ``keys[r]`` and both scores.

    `points_t` (dim, n) holds the points as columns. Returns ``(best, best_score, own_score)``: the index of the
    highest-scoring point other than ``keys[r]``, its score ``directions[r] . p``, and ``directions[r] . p_key``.
    """
    count = directions.shape[0]
    best = np.empty(count, dtype=np.intp)
    best_score = np.empty(count)
    own_score = np.empty(count)
    chunks = (count + _CHUNK - 1) // _CHUNK
    for chunk in prange(chunks):
        block = np.empty(_BLOCK)
        for r in range(chunk * _CHUNK, min(count, (chunk + 1) * _CHUNK)):
            best[r], best_score[r], own_score[r] = _best_other_row(points_t, directions[r], keys[r], block)
    return best, best_score, own_score
