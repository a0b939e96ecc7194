"""Numba kernels that score many directions against a point set: the best columns per row, running top two.

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
def fold_top_two(tile, first_key, top, second, top_at, second_at):
    """Fold a tile of scores into running top-two values per direction.

    ``tile[k, r]`` (keys, directions) is the score of key ``first_key + k`` along direction r; `top`, `second`,
    `top_at` and `second_at` (one slot per direction) receive the largest score, the second largest and their
    keys. Ties keep the earlier key, as a scan in key order does. Branch-free over the directions, so the inner
    loops vectorise; a key row that beats no running second score (most rows, once a few tiles are folded)
    costs one comparison per score.
    """
    keys, count = tile.shape
    for k in range(keys):
        key = first_key + k
        scores = tile[k]
        beats = 0  # an integer sum of comparisons vectorises (a float max would not, without fastmath)
        for r in range(count):
            beats += scores[r] > second[r]
        if beats == 0:  # equal scores never displace an earlier key; after a few tiles most rows stop here
            continue
        for r in range(count):
            value = scores[r]
            best = top[r]
            beats_second = value > second[r]
            second_at[r] = top_at[r] if value > best else (key if beats_second else second_at[r])
            second[r] = max(second[r], min(value, best))
            top_at[r] = key if value > best else top_at[r]
            top[r] = max(best, value)


TILE_KEYS = 2048  # keys per tile of tiled_top_two (a 4 MiB tile with TILE_QUERIES)
TILE_QUERIES = 256  # query directions per tile


def tiled_top_two(points, queries):
    """Return the two best rows of `points` (m, dim) along each row of `queries` (b, dim), a BLAS tile at a time.

    Each tile ``points[keys] @ queries[chunk].T`` (at most TILE_KEYS x TILE_QUERIES) is folded into running
    top-two scores by :func:`fold_top_two`; no score matrix is stored. Returns ``(top_at, top, second,
    second_at)`` (intp, float, float, intp arrays of length b).
    """
    count = queries.shape[0]
    top, second = np.full(count, -np.inf), np.full(count, -np.inf)
    top_at, second_at = np.full(count, -1, dtype=np.intp), np.full(count, -1, dtype=np.intp)
    tile = np.empty((TILE_KEYS, min(count, TILE_QUERIES)))
    for begin in range(0, count, TILE_QUERIES):
        end = min(count, begin + TILE_QUERIES)
        queries_t = np.ascontiguousarray(queries[begin:end].T)
        for first in range(0, points.shape[0], TILE_KEYS):
            keys = points[first:first + TILE_KEYS]
            scores = tile[: keys.shape[0], : end - begin]
            if end - begin < tile.shape[1]:
                scores = np.empty((keys.shape[0], end - begin))
            np.dot(keys, queries_t, out=scores)
            scan_slots = slice(begin, end)
            fold_top_two(scores, first, top[scan_slots], second[scan_slots], top_at[scan_slots],
                         second_at[scan_slots])
    return top_at, top, second, second_at


@parallel_jit
def pruned_top_two(points_t, ids, starts, centres, radii, slack, directions):
    """Top two rows along each direction, scoring only the blocks of rows whose bounding ball can compete.

    Parameters
    ----------
    points_t : ndarray, shape (dim, m)
        The rows as columns, grouped into blocks ``points_t[:, starts[l]:starts[l + 1]]``.
    ids : ndarray of intp, shape (m,)
        Row id of each column (ties go to the smaller id, as in a scan in id order).
    starts : ndarray of intp, shape (leaves + 1,)
    centres : ndarray, shape (leaves, dim)
    radii : ndarray, shape (leaves,)
        Every row of block l lies within ``radii[l]`` of ``centres[l]``, so along a direction u it scores at
        most ``u . centres[l] + |u| radii[l]``.
    slack : float
        Bound on the rounding of a score or a bound along a unit direction: a block is skipped only when its
        bound is below the current second score by more than ``|u|`` times this.
    directions : ndarray, shape (b, dim)

    Returns
    -------
    top_at, top, second, second_at, scanned
        As :func:`tiled_top_two`, and the number of blocks scored per direction. The block of highest
        bound is scored first, then every block whose bound still reaches the second score.
    """
    count, dim = directions.shape
    leaves = radii.shape[0]
    widest = 0
    for leaf in range(leaves):
        widest = max(widest, starts[leaf + 1] - starts[leaf])
    top, second = np.full(count, -np.inf), np.full(count, -np.inf)
    top_at, second_at = np.full(count, -1, dtype=np.intp), np.full(count, -1, dtype=np.intp)
    scanned = np.zeros(count, dtype=np.intp)
    chunks = (count + _CHUNK - 1) // _CHUNK
    for chunk in prange(chunks):
        bounds = np.empty(leaves)
        block = np.empty(widest)
        for r in range(chunk * _CHUNK, min(count, (chunk + 1) * _CHUNK)):
            direction = directions[r]
            length = np.sqrt((direction * direction).sum())
            margin = slack * length
            first = 0
            for leaf in range(leaves):
                bound = radii[leaf] * length
                for t in range(dim):
                    bound += direction[t] * centres[leaf, t]
                bounds[leaf] = bound
                if bound > bounds[first]:
                    first = leaf
            best, runner, best_at, runner_at = -np.inf, -np.inf, -1, -1
            for step in range(leaves + 1):
                leaf = first if step == 0 else step - 1
                if step > 0 and (leaf == first or bounds[leaf] + margin < runner):
                    continue
                begin, size = starts[leaf], starts[leaf + 1] - starts[leaf]
                scores = _block_scores(points_t, direction, begin, size, block)
                scanned[r] += 1
                for c in range(size):
                    value, key = scores[c], ids[begin + c]
                    if value > best or (value == best and key < best_at):
                        runner, runner_at, best, best_at = best, best_at, value, key
                    elif value > runner or (value == runner and key < runner_at):
                        runner, runner_at = value, key
            top[r], second[r], top_at[r], second_at[r] = best, runner, best_at, runner_at
    return top_at, top, second, second_at, scanned
