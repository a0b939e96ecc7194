"""Kernels that score many directions against a point set: the best rows per direction, running top two.

Inputs are finite, C-contiguous float64 arrays in normalized coordinates; indices are ``np.intp``. Scores are
computed as BLAS tiles folded into running results (or, for the pruned scan, a block of points at a time along
contiguous memory) and never stored as a matrix. Each direction's result depends on that direction alone, so
the results do not depend on the number of threads.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._blas import one_blas_thread
from .._jit import get_num_threads, inline_jit, jit, parallel_jit, prange

_CHUNK = 64  # rows per thread task (they share one workspace)


@jit
def block_scores(columns_t, direction, begin, width, block):
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


@jit
def merge_top_two(top, second, top_at, second_at, later_top, later_second, later_top_at, later_second_at):
    """Merge the top two over later keys (the ``later_*`` arrays) into the top two over earlier keys, in place.

    The result is what :func:`fold_top_two` gives over both key ranges in order: ties keep the earlier key.
    """
    for r in range(top.shape[0]):
        if later_top[r] > top[r]:  # the later best leads; the earlier best stays second unless beaten
            if later_second[r] > top[r]:
                second[r], second_at[r] = later_second[r], later_second_at[r]
            else:
                second[r], second_at[r] = top[r], top_at[r]
            top[r], top_at[r] = later_top[r], later_top_at[r]
        elif later_top[r] > second[r]:
            second[r], second_at[r] = later_top[r], later_top_at[r]


TILE_KEYS = 2048  # keys per tile of tiled_top_two (a 4 MiB tile with TILE_QUERIES)
TILE_QUERIES = 256  # query directions per tile
_PARALLEL_WORK = 1 << 24  # multiply-adds (keys x queries x dim) from which a tiled scan is split over threads


def _tiles(points, queries, by_query=False):
    """Yield ``(scores, first_key, slots)``: BLAS tiles ``points[keys] @ queries[slots].T`` covering all pairs.

    With `by_query` the tiles are transposed: ``queries[slots] @ points[keys].T`` (directions, keys).
    """
    count = queries.shape[0]
    buffer = np.empty(TILE_KEYS * min(count, TILE_QUERIES))
    for begin in range(0, count, TILE_QUERIES):
        end = min(count, begin + TILE_QUERIES)
        chunk = queries[begin:end] if by_query else np.ascontiguousarray(queries[begin:end].T)
        for first in range(0, points.shape[0], TILE_KEYS):
            keys = points[first:first + TILE_KEYS]
            shape = (end - begin, keys.shape[0]) if by_query else (keys.shape[0], end - begin)
            scores = buffer[: shape[0] * shape[1]].reshape(shape)
            if by_query:
                np.dot(chunk, keys.T, out=scores)
            else:
                np.dot(keys, chunk, out=scores)
            yield scores, first, slice(begin, end)


def _ranges(total, unit, work):
    """Bounds of one range per thread over `total` items, cut at multiples of `unit` (one range below the work)."""
    units = -(-total // unit)
    threads = min(get_num_threads(), units) if work >= _PARALLEL_WORK else 1
    return [unit * (units * part // threads) for part in range(threads)] + [total]


def _in_threads(function, bounds):
    """``[function(begin, end) for each range of bounds]``, the ranges in Python threads with one BLAS thread each.

    numpy's BLAS calls and the folding kernels release the GIL, so the threads run side by side.
    """
    if len(bounds) == 2:
        return [function(bounds[0], bounds[1])]
    with one_blas_thread(), ThreadPoolExecutor(len(bounds) - 1) as pool:
        return list(pool.map(function, bounds[:-1], bounds[1:]))


def tiled_top_two(points, queries):
    """Return the two best rows of `points` (m, dim) along each row of `queries` (b, dim), a BLAS tile at a time.

    Each tile ``points[keys] @ queries[chunk].T`` (at most TILE_KEYS x TILE_QUERIES) is folded into running
    top-two scores by :func:`fold_top_two`; no score matrix is stored. Large scans split the rows into one
    contiguous range per numba thread, scanned side by side, and merge the ranges in order by
    :func:`merge_top_two`, so the result does not depend on the number of threads. Returns ``(top_at, top,
    second, second_at)`` (intp, float, float, intp arrays of length b).
    """
    count = queries.shape[0]

    def fold(begin, end):
        top, second = np.full(count, -np.inf), np.full(count, -np.inf)
        top_at, second_at = np.full(count, -1, dtype=np.intp), np.full(count, -1, dtype=np.intp)
        for scores, first, slots in _tiles(points[begin:end], queries):
            fold_top_two(scores, begin + first, top[slots], second[slots], top_at[slots], second_at[slots])
        return top, second, top_at, second_at

    (top, second, top_at, second_at), *later = _in_threads(fold, _ranges(points.shape[0], TILE_KEYS,
                                                                          points.size * count))
    for part in later:
        merge_top_two(top, second, top_at, second_at, *part)
    return top_at, top, second, second_at


@inline_jit
def _evicted_first(value, key, other_value, other_key):
    """Whether a kept key leaves before another: a lower score, or the same score and a later key."""
    return value < other_value or (value == other_value and key > other_key)


@jit
def fold_top_columns(tile, first_key, best, values):
    """Fold a tile of scores (directions, keys) into the running `width` best keys per direction.

    ``best[r]`` and ``values[r]`` (directions, width) hold the keys kept for direction r and their scores as a
    min-heap: slot 0 holds the key to leave first (the lowest score, the latest key among equal ones). A key
    displaces it only by beating its score, so ties keep the earlier keys; a key that does not costs one
    comparison, one that does ``log2(width)`` steps down the heap.
    """
    count, keys = tile.shape
    width = best.shape[1]
    for r in range(count):
        scores, kept, kept_values = tile[r], best[r], values[r]
        floor = kept_values[0]
        for k in range(keys):
            value = scores[k]
            if value <= floor:
                continue
            key, slot = first_key + k, 0
            while 2 * slot + 1 < width:
                child = 2 * slot + 1
                if child + 1 < width and _evicted_first(kept_values[child + 1], kept[child + 1], kept_values[child],
                                                         kept[child]):
                    child += 1
                if not _evicted_first(kept_values[child], kept[child], value, key):
                    break
                kept_values[slot], kept[slot] = kept_values[child], kept[child]
                slot = child
            kept_values[slot], kept[slot] = value, key
            floor = kept_values[0]


def top_columns(points, queries, width):
    """For each row of `queries` (b, dim), the `width` rows of `points` (m, dim) scoring highest, a BLAS tile at a time.

    Requires ``width <= m``. Large scans split the queries into one range per numba thread, scanned side by
    side. Returns an intp array (b, width) of row indices in no particular order (ties go to the earlier row).
    """
    count = queries.shape[0]
    best = np.full((count, width), -1, dtype=np.intp)
    values = np.full((count, width), -np.inf)

    def fold(begin, end):
        for scores, first, slots in _tiles(points, queries[begin:end], by_query=True):
            fold_top_columns(scores, first, best[begin:end][slots], values[begin:end][slots])

    _in_threads(fold, _ranges(count, TILE_QUERIES, points.size * count))
    return best


#: pending ranges of split_blocks at most: two per level of its depth-first splits, 64 levels
_MAX_PENDING = 130
#: quickselect rounds on one range before its median is taken from a heap sort (O(k log k) at worst)
_SELECT_ROUNDS = 64


@inline_jit
def _swap_rows(rows, order, a, b):
    """Swap rows `a` and `b` of `rows` and entries `a` and `b` of `order`."""
    for t in range(rows.shape[1]):
        rows[a, t], rows[b, t] = rows[b, t], rows[a, t]
    order[a], order[b] = order[b], order[a]


@inline_jit
def _sift_down(rows, order, axis, root, end):
    """Restore the max-heap on ``rows[:end, axis]`` below `root` (:func:`_heap_sort`)."""
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if child + 1 < end and rows[child + 1, axis] > rows[child, axis]:
            child += 1
        if rows[root, axis] >= rows[child, axis]:
            return
        _swap_rows(rows, order, root, child)
        root = child


@jit
def _heap_sort(rows, order, axis):
    """Sort `rows` (and `order` alike) by column `axis`, in place, in O(k log k)."""
    k = rows.shape[0]
    for root in range(k // 2 - 1, -1, -1):
        _sift_down(rows, order, axis, root, k)
    for end in range(k - 1, 0, -1):
        _swap_rows(rows, order, 0, end)
        _sift_down(rows, order, axis, 0, end)


@jit
def select_rows(rows, order, axis, k, max_rounds):
    """Reorder `rows` (and `order` alike) so that ``rows[:k, axis] <= rows[k, axis] <= rows[k + 1:, axis]``.

    Quickselect with a median-of-three pivot and a three-way partition (a run of equal values ends it at once);
    after `max_rounds` rounds the range left is heap sorted instead, which bounds the worst case. Deterministic.
    """
    lo, hi = 0, rows.shape[0]
    for _ in range(max_rounds):
        if hi - lo <= 1:
            return
        a, b, c = rows[lo, axis], rows[(lo + hi) // 2, axis], rows[hi - 1, axis]
        pivot = max(min(a, b), min(max(a, b), c))
        below, at, above = lo, lo, hi - 1  # [lo, below) < pivot, [below, at) == pivot, (above, hi) > pivot
        while at <= above:
            if rows[at, axis] < pivot:
                _swap_rows(rows, order, below, at)
                below += 1
                at += 1
            elif rows[at, axis] > pivot:
                _swap_rows(rows, order, at, above)
                above -= 1
            else:
                at += 1
        if k < below:
            hi = below
        elif k > above:
            lo = above + 1
        else:
            return
    _heap_sort(rows[lo:hi], order[lo:hi], axis)


@jit
def split_blocks(points, leaf):
    """Group the rows of `points` into blocks of at most `leaf`; return ``(order, starts, grouped)``.

    A range of more than `leaf` rows is split at the median of its coordinate of widest range (the first such
    coordinate), depth first, so the blocks come out in order of their starts; deterministic. ``grouped`` is
    ``points[order]``, built while splitting (each range is contiguous), and `starts` ends with the number of
    rows.
    """
    m, dim = points.shape
    grouped = points.copy()
    order = np.arange(m)
    pending = np.empty((_MAX_PENDING, 2), dtype=np.intp)
    pending[0, 0], pending[0, 1] = 0, m
    waiting = 1
    starts = np.empty(m + 1, dtype=np.intp)
    blocks = 0
    low, high = np.empty(dim), np.empty(dim)
    while waiting:
        waiting -= 1
        begin, end = pending[waiting, 0], pending[waiting, 1]
        if end - begin <= leaf:
            starts[blocks] = begin
            blocks += 1
            continue
        low[:] = np.inf
        high[:] = -np.inf
        for r in range(begin, end):
            for t in range(dim):
                low[t] = min(low[t], grouped[r, t])
                high[t] = max(high[t], grouped[r, t])
        axis = 0
        for t in range(1, dim):
            if high[t] - low[t] > high[axis] - low[axis]:
                axis = t
        half = (end - begin) // 2
        select_rows(grouped[begin:end], order[begin:end], axis, half, _SELECT_ROUNDS)
        pending[waiting, 0], pending[waiting, 1] = begin + half, end
        pending[waiting + 1, 0], pending[waiting + 1, 1] = begin, begin + half
        waiting += 2
    starts[blocks] = m
    return order, starts[:blocks + 1].copy(), grouped


@inline_jit
def block_bounds(centres_t, radii, direction, length, sign, bounds):
    """Fill `bounds` with the most any row of each block scores along ``sign * direction``; return the highest's block.

    ``bounds[l] = |direction| radii[l] + sign * direction . centres_t[:, l]`` (`length` is ``|direction|``, `sign`
    is 1.0 or -1.0, which negates the bound of the lowest score exactly); the first block of highest bound is
    returned.
    """
    leaves = radii.shape[0]
    for leaf in range(leaves):
        bounds[leaf] = radii[leaf] * length
    for t in range(centres_t.shape[0]):  # a direction coordinate at a time: the inner loop vectorises
        weight, row = sign * direction[t], centres_t[t]
        for leaf in range(leaves):
            bounds[leaf] += weight * row[leaf]
    first = 0
    for leaf in range(1, leaves):
        if bounds[leaf] > bounds[first]:
            first = leaf
    return first


@inline_jit
def _fold_block(points_t, ids, starts, leaf, direction, block, best, best_at, runner, runner_at):
    """Fold the columns of block `leaf` into a running top two; return it, as the arguments."""
    begin, size = starts[leaf], starts[leaf + 1] - starts[leaf]
    scores = block_scores(points_t, direction, begin, size, block)
    highest = -np.inf
    for c in range(size):
        highest = max(highest, scores[c])
    if highest < runner:  # no row enters the top two (an equal score may: the smaller id decides)
        return best, best_at, runner, runner_at
    for c in range(size):
        value, key = scores[c], ids[begin + c]
        if value > best or (value == best and key < best_at):
            runner, runner_at, best, best_at = best, best_at, value, key
        elif value > runner or (value == runner and key < runner_at):
            runner, runner_at = value, key
    return best, best_at, runner, runner_at


@parallel_jit
def pruned_top_two(points_t, ids, starts, centres_t, radii, slack, directions):
    """Top two rows along each direction, scoring only the blocks of rows whose bounding ball can compete.

    Parameters
    ----------
    points_t : ndarray, shape (dim, m)
        The rows as columns, grouped into blocks ``points_t[:, starts[l]:starts[l + 1]]``.
    ids : ndarray of intp, shape (m,)
        Row id of each column (ties go to the smaller id, as in a scan in id order).
    starts : ndarray of intp, shape (leaves + 1,)
    centres_t : ndarray, shape (dim, leaves)
    radii : ndarray, shape (leaves,)
        Every row of block l lies within ``radii[l]`` of ``centres_t[:, l]``, so along a direction u it scores
        at most ``u . centres_t[:, l] + |u| radii[l]``.
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
    count = directions.shape[0]
    leaves = radii.shape[0]
    widest = 0
    for leaf in range(leaves):
        widest = max(widest, starts[leaf + 1] - starts[leaf])
    top, second = np.full(count, -np.inf), np.full(count, -np.inf)
    top_at, second_at = np.full(count, -1, dtype=np.intp), np.full(count, -1, dtype=np.intp)
    scanned = np.zeros(count, dtype=np.intp)
    chunks = (count + _CHUNK - 1) // _CHUNK
    for chunk in prange(chunks):
        bounds, block = np.empty(leaves), np.empty(widest)
        for r in range(chunk * _CHUNK, min(count, (chunk + 1) * _CHUNK)):
            direction = directions[r]
            length = np.sqrt((direction * direction).sum())
            margin = slack * length
            first = block_bounds(centres_t, radii, direction, length, 1.0, bounds)
            best, best_at, runner, runner_at = _fold_block(points_t, ids, starts, first, direction, block, -np.inf,
                                                           -1, -np.inf, -1)
            scanned[r] = 1
            for leaf in range(leaves):
                if leaf == first or bounds[leaf] + margin < runner:
                    continue
                best, best_at, runner, runner_at = _fold_block(points_t, ids, starts, leaf, direction, block, best,
                                                               best_at, runner, runner_at)
                scanned[r] += 1
            top[r], second[r], top_at[r], second_at[r] = best, runner, best_at, runner_at
    return top_at, top, second, second_at, scanned
