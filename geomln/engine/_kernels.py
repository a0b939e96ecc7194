"""Numba kernels of the selectability engine: top-2 scans and Wolfe's minimum-norm-point algorithm.

All inputs are finite, C-contiguous float64 arrays in *normalized* coordinates (centred, divided by the
data radius, projected onto the affine hull), so every tolerance here is relative to the data's scale.

A point set may be *lifted*: with a bias the last coordinate is the (normalized) bias, and candidate
indices ``c >= n`` stand for the virtual points ``points[c - n] - ray * e_last``, which turn the polytope
``conv(points)`` into ``conv(points) - cone(e_last)`` near the origin (see ``selectability.py``).
"""

import numpy as np

from .._jit import inline_jit, jit, parallel_jit, prange
from .._loops import dot
from ._scan_kernels import block_bounds, block_scores

#: statuses returned per key by :func:`distance_to_hull_batch`
UNSELECTABLE = 0  # distance to the hull of the others <= low: certain
SELECTABLE = 1  # witness margin over every other key > high: certain
CONVERGED = 2  # exact distance found, between low and high: decide by tol, borderline
NEED_POINT = 3  # a key outside conv(candidates) violates the witness: add it and run again
STALLED = 4  # Wolfe's algorithm stopped making progress (numerically degenerate corral)
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_SCAN_CHUNK = 64  # rows per thread task in scan_top_two (they share one score workspace)
_SCORE_BLOCK = 512  # keys scored at a time by one scan row (a 4 KiB workspace)
REFLECTIONS = 8  # braid reflections tried before Wolfe's algorithm in sets where most keys are vertices





@jit
def _keep_top_two(value, index, top, second, top_at):
    """Fold `value` (at `index`) into a running (largest, second largest, index of largest)."""
    if value > top:
        return value, top, index
    if value > second:
        return top, value, top_at
    return top, second, top_at


@jit
def top_two(scores, row_keys, exclude_row_key):
    """For each row of `scores`, the index and value of the largest entry and the second largest value.

    With `exclude_row_key`, the entry ``scores[r, row_keys[r]]`` is skipped (the runner-up of a key is
    then the best *other* key). Serial: it is linear in the block, which the matrix product that
    produced the block dominates.
    """
    rows = scores.shape[0]
    best_index = np.empty(rows, dtype=np.intp)
    best_value = np.empty(rows)
    second_value = np.empty(rows)
    for r in range(rows):
        skip = row_keys[r] if exclude_row_key else -1
        top, second, top_at = -np.inf, -np.inf, -1
        for c in range(scores.shape[1]):
            if c != skip:
                top, second, top_at = _keep_top_two(scores[r, c], c, top, second, top_at)
        best_index[r], best_value[r], second_value[r] = top_at, top, second
    return best_index, best_value, second_value


@jit
def _scan_row(directions_t, direction, scores):
    """Largest and second largest score ``direction . directions_t[:, c]`` over all c, and the argmax.

    Scores are computed block by block into the workspace `scores` (length ``_SCORE_BLOCK``, small enough
    to stay in cache) along contiguous memory, so the inner loop vectorises.
    """
    dim, n = directions_t.shape
    top, second, top_at = -np.inf, -np.inf, -1
    for begin in range(0, n, _SCORE_BLOCK):
        width = min(n - begin, _SCORE_BLOCK)
        block = scores[:width]
        block[:] = 0.0
        for t in range(dim):
            weight = direction[t]
            row = directions_t[t, begin:begin + width]
            for c in range(width):
                block[c] += weight * row[c]
        for c in range(width):
            top, second, top_at = _keep_top_two(block[c], begin + c, top, second, top_at)
    return top_at, top, second


@jit
def scan_top_two_serial(directions, directions_t, rows):
    """Run :func:`scan_top_two` serially, for small scans (no thread start-up cost)."""
    count = rows.shape[0]
    best_index, best_value, second_value = np.empty(count, dtype=np.intp), np.empty(count), np.empty(count)
    scores = np.empty(_SCORE_BLOCK)
    for r in range(count):
        best_index[r], best_value[r], second_value[r] = _scan_row(directions_t, directions[rows[r]], scores)
    return best_index, best_value, second_value


@parallel_jit
def scan_top_two(directions, directions_t, rows):
    """Fused ``top_two(directions[rows] @ directions.T)`` for low dimensions, in parallel over rows.

    `directions_t` is the transpose of `directions` (C-contiguous). Scores are computed on the fly, one
    row at a time (no score matrix), which in low dimension is as fast as a BLAS product and keeps BLAS's
    own threads from competing with numba's. Rows go to threads in chunks that share one workspace.
    """
    count = rows.shape[0]
    best_index, best_value, second_value = np.empty(count, dtype=np.intp), np.empty(count), np.empty(count)
    chunks = (count + _SCAN_CHUNK - 1) // _SCAN_CHUNK
    for chunk in prange(chunks):
        scores = np.empty(_SCORE_BLOCK)
        for r in range(chunk * _SCAN_CHUNK, min(count, (chunk + 1) * _SCAN_CHUNK)):
            best_index[r], best_value[r], second_value[r] = _scan_row(directions_t, directions[rows[r]], scores)
    return best_index, best_value, second_value


@jit
def _row_dot(matrix, row, x):
    """``matrix[row] . x`` as a plain loop (numba's np.dot on short vectors pays a BLAS call each time)."""
    total = 0.0
    for t in range(x.shape[0]):
        total += matrix[row, t] * x[t]
    return total


@jit
def _scores_into(columns, x, scores):
    """``scores[k] = x . columns[:, k]``; the inner loop runs along contiguous memory and vectorises."""
    count = columns.shape[1]
    for k in range(count):
        scores[k] = 0.0
    for t in range(columns.shape[0]):
        weight = x[t]
        for k in range(count):
            scores[k] += weight * columns[t, k]


@inline_jit
def _affine_minimizer(corral, size, q, r, alpha, valid):
    """Weights (summing to 1) of the point of least norm in the affine hull of ``corral[:size]``.

    Solves ``min |p_0 + sum_k t_k (p_k - p_0)|`` by a modified Gram-Schmidt QR factorisation (with one
    reorthogonalisation pass) of the differences, in the workspaces `q` (rows), `r` and `alpha`, which
    receives the weights. The first `valid` columns of `q` and `r` are reused: they already factor the
    first `valid` differences (each column depends only on the earlier ones, so the result is the same as
    a full factorisation). Returns whether the corral is affinely independent (no difference is,
    relative to its length, within 1e-12 of the span of the earlier ones).
    """
    dim = corral.shape[1]
    alpha[0] = 1.0
    if size == 1:
        return True
    columns = size - 1
    for k in range(valid, columns):
        length = 0.0
        for t in range(dim):
            q[k, t] = corral[k + 1, t] - corral[0, t]
            length += q[k, t] * q[k, t]
        for j in range(k):
            r[j, k] = 0.0
        for _ in range(2):
            for j in range(k):
                projection = _row_dot(q, j, q[k])
                r[j, k] += projection
                for t in range(dim):
                    q[k, t] -= projection * q[j, t]
        norm = np.sqrt(_row_dot(q, k, q[k]))
        if norm <= 1e-12 * np.sqrt(length) or norm == 0.0:
            return False
        r[k, k] = norm
        for t in range(dim):
            q[k, t] /= norm
    # t = -R^{-1} Q^T p_0, back-substituted in place in alpha[1:]
    for k in range(columns):
        alpha[k + 1] = -_row_dot(q, k, corral[0])
    total = 0.0
    for k in range(columns - 1, -1, -1):
        value = alpha[k + 1]
        for j in range(k + 1, columns):
            value -= r[k, j] * alpha[j + 1]
        alpha[k + 1] = value / r[k, k]
        total += alpha[k + 1]
    alpha[0] = 1.0 - total
    return True


@inline_jit
def _minor_cycle(corral, corral_ids, weights, size, workspace, valid):
    """Wolfe's minor cycle: move the weights towards the affine minimizer, dropping points that reach 0.

    `valid` columns of the workspace's QR factorisation still match the corral (see
    :func:`_affine_minimizer`). Returns the new corral size, whether the corral stayed affinely
    independent, and how many columns of the factorisation match the returned corral.
    """
    dim = corral.shape[1]
    q, r, alpha = workspace
    while True:
        independent = _affine_minimizer(corral, size, q, r, alpha, valid)
        if not independent:
            return size, False, 0
        positive = True
        for k in range(size):
            if alpha[k] <= 1e-14:
                positive = False
        if positive:
            for k in range(size):
                weights[k] = alpha[k]
            return size, True, size - 1
        valid = 0  # points are dropped below: the corral changes, refactor it
        theta = 1.0
        for k in range(size):
            if alpha[k] <= 1e-14 and weights[k] - alpha[k] > 0:
                theta = min(theta, weights[k] / (weights[k] - alpha[k]))
        kept = 0
        smallest_at = 0
        for k in range(size):
            value = (1.0 - theta) * weights[k] + theta * alpha[k]
            if value > 1e-14:
                weights[kept] = value
                corral_ids[kept] = corral_ids[k]
                for t in range(dim):
                    corral[kept, t] = corral[k, t]
                if value < weights[smallest_at]:
                    smallest_at = kept
                kept += 1
        if kept == size:  # no weight reached zero numerically: drop the smallest to guarantee progress
            for k in range(smallest_at, size - 1):
                weights[k] = weights[k + 1]
                corral_ids[k] = corral_ids[k + 1]
                for t in range(dim):
                    corral[k, t] = corral[k + 1, t]
            kept -= 1
        size = kept
        total = 0.0
        for k in range(size):
            total += weights[k]
        for k in range(size):
            weights[k] /= total
        if size == 1:
            weights[0] = 1.0
            return size, True, 0


@jit
def _normal_part(q, rows, x, out):
    """Write into `out` the part of `x` orthogonal to the orthonormal rows ``q[:rows]``, projected twice.

    ``x = sum_k w_k (p_k - o)`` is rounded to about ``1e-16`` absolutely, so when ``|x|`` is tiny its
    direction is only known to ``1e-16 / |x|``; the projection removes that rounding along the corral's
    affine hull (the second pass removes the first pass's own rounding: "twice is enough"), leaving the
    normal from the origin to that affine hull to about ``1e-16`` relative.
    """
    for t in range(x.shape[0]):
        out[t] = x[t]
    for _ in range(2):
        for j in range(rows):
            projection = _row_dot(q, j, out)
            for t in range(out.shape[0]):
                out[t] -= projection * q[j, t]


@inline_jit
def _fold_least(cand_t, cand_ids, skip_a, skip_b, normal, starts, leaf, scores, entering, smallest):
    """Fold the candidates of block `leaf` into the least score so far (see :func:`_entering`); return it."""
    begin, end = starts[leaf], starts[leaf + 1]
    block = block_scores(cand_t, normal, begin, end - begin, scores[begin:])
    for c in range(end - begin):
        k = begin + c
        if ((block[c] < smallest or (block[c] == smallest and k < entering))
                and cand_ids[k] != skip_a and cand_ids[k] != skip_b):
            smallest, entering = block[c], k
    return entering, smallest


@jit
def _entering(cand_t, cand_ids, skip_a, skip_b, normal, blocks, scores, bounds):
    """Return the candidate of least score ``normal . c`` (the first among equal ones) and its score.

    Ids equal to `skip_a` or `skip_b` are skipped. `blocks` is ``(starts, centres_t, radii, slack)`` as for
    :func:`geomln.engine._scan_kernels.pruned_top_two`: the candidates grouped into blocks with bounding balls.
    The block of lowest bound ``normal . centre - |normal| radius`` is scored first, then only the blocks whose
    bound, less ``|normal|`` times the slack, still reaches below the least score so far; with one block every
    candidate is scored. The scores are those of the full scan, so the result is too. `scores` and `bounds`
    are workspaces (a candidate and a block each).
    """
    starts, centres_t, radii, slack = blocks
    length = np.sqrt(dot(normal, normal))
    margin = slack * length
    first = block_bounds(centres_t, radii, normal, length, -1.0, bounds)  # of -scores: the lowest first
    entering, smallest = _fold_least(cand_t, cand_ids, skip_a, skip_b, normal, starts, first, scores, -1, np.inf)
    for leaf in range(radii.shape[0]):
        if leaf == first or bounds[leaf] + margin < -smallest:
            continue
        entering, smallest = _fold_least(cand_t, cand_ids, skip_a, skip_b, normal, starts, leaf, scores, entering,
                                         smallest)
    return entering, smallest


@jit
def min_norm_point(origin, cand_ids, cand_t, cand_norm2, blocks, start, skip_a, skip_b, low, high, max_major):
    """Wolfe's algorithm: the point of ``conv(candidates) - origin`` closest to the origin.

    Candidates are the columns of `cand_t` (dim, m) with ids `cand_ids`; ids equal to `skip_a` or `skip_b`
    (the key itself and its virtual copy) are skipped. `cand_norm2` holds the squared column norms and `blocks`
    groups the columns for the entering point's search (see :func:`_entering`; one block scores them all).
    `start` lists candidate positions (padded with -1) to start from, the corral of a nearby key, say: the
    minor cycle from their centroid gives the starting corral (empty, or affinely dependent: the nearest
    candidate is the start). Where the origin lies in their hull that is the answer at once. Stops
    once the distance is <= `low`, once the witness ``-normal`` separates the origin from every candidate
    by more than `high`, or once its margin is within `low` of ``|x|`` (the distance is then known to
    `low`). Candidates are scored with the normal (see :func:`_normal_part`), not with the rounded `x`.

    Returns
    -------
    x : ndarray, shape (dim,)
        The nearest point (relative to the origin), as the convex combination of the support.
    normal : ndarray, shape (dim,)
        `x` with its rounding along the support's affine hull removed: the witness direction is ``-normal``.
    support : ndarray of intp, shape (k,)
        Candidate ids with positive weight.
    weights : ndarray, shape (k,)
        Their convex weights.
    stalled : bool
        True if the algorithm stopped without meeting a stopping rule (numerically degenerate corral, a
        repeated entering point or `max_major` iterations).
    separated : bool
        True if it stopped early because ``-normal`` already separates the origin from every candidate by a
        margin above `high` (then `x` is not the nearest point, only a good enough witness direction).
    """
    dim, count = cand_t.shape
    capacity = dim + 2
    corral = np.empty((capacity, dim))
    corral_ids = np.empty(capacity, dtype=np.intp)
    weights = np.empty(capacity)
    workspace = (np.empty((capacity, dim)), np.empty((capacity, capacity)), np.empty(capacity))
    scores = np.empty(count)
    bounds = np.empty(blocks[2].shape[0])
    size = 0
    valid = np.intp(0)  # QR columns that match the corral (np.intp: a literal 0 would compile _minor_cycle twice)
    for k in range(start.shape[0]):  # a warm start: the corral of a nearby key, without this key's ids
        if start[k] >= 0 and cand_ids[start[k]] != skip_a and cand_ids[start[k]] != skip_b and size < dim + 1:
            corral_ids[size] = start[k]
            for t in range(dim):
                corral[size, t] = cand_t[t, start[k]] - origin[t]
            size += 1
    if size > 1:  # from its centroid, the minor cycle reaches the least point of a sub-corral (within: of them all)
        for k in range(size):
            weights[k] = 1.0 / size
        size, independent, valid = _minor_cycle(corral, corral_ids, weights, size, workspace, valid)
        if not independent:
            size, valid = 0, np.intp(0)
    if size == 0:  # start from the nearest candidate: |c - o|^2 - |o|^2 = |c|^2 - 2 c.o
        _scores_into(cand_t, origin, scores)
        best_norm = np.inf
        first = -1
        for k in range(count):
            if cand_ids[k] == skip_a or cand_ids[k] == skip_b:
                continue
            norm2 = cand_norm2[k] - 2.0 * scores[k]
            if norm2 < best_norm:
                best_norm = norm2
                first = k
        size = 1
        corral_ids[0] = first
        for t in range(dim):
            corral[0, t] = cand_t[t, first] - origin[t]
    if size == 1:
        weights[0] = 1.0
    x = np.zeros(dim)
    for k in range(size):
        for t in range(dim):
            x[t] += weights[k] * corral[k, t]
    normal = x.copy()
    stalled = True  # unless a stopping rule below is met within max_major iterations
    separated = False
    for _ in range(max_major):
        norm2 = dot(x, x)
        if norm2 <= low * low:
            stalled = False
            break
        _normal_part(workspace[0], valid, x, normal)
        normal_norm = max(np.sqrt(dot(normal, normal)), 1e-300)
        origin_dot = dot(origin, normal)
        entering, smallest = _entering(cand_t, cand_ids, skip_a, skip_b, normal, blocks, scores, bounds)
        margin = (smallest - origin_dot) / normal_norm
        if margin > high:  # -normal beats every candidate by more than `high`: witness found
            stalled = False
            separated = True
            break
        if np.sqrt(norm2) - margin <= low:
            stalled = False
            break  # optimal to `low`: the margin of -normal nearly reaches the distance |x|
        already = False
        for k in range(size):
            if corral_ids[k] == entering:
                already = True
        if already or size == capacity:
            break
        corral_ids[size] = entering
        for t in range(dim):
            corral[size, t] = cand_t[t, entering] - origin[t]
        weights[size] = 0.0
        size, independent, valid = _minor_cycle(corral, corral_ids, weights, size + 1, workspace, valid)
        if not independent:
            break
        for t in range(dim):
            x[t] = 0.0
        for k in range(size):
            for t in range(dim):
                x[t] += weights[k] * corral[k, t]
    support = np.empty(size, dtype=np.intp)
    for k in range(size):
        support[k] = cand_ids[corral_ids[k]]
    return x, normal, support, weights[:size].copy(), stalled, separated


@jit
def _allocate_decisions(b, dim):
    return (np.empty(b, dtype=np.int8), np.empty(b), np.full(b, -np.inf), np.zeros((b, dim)),
            np.full((b, dim + 2), -1, dtype=np.intp), np.zeros((b, dim + 2)), np.full(b, -1, dtype=np.intp))


@jit
def one_block(count, dim):
    """Return the `blocks` argument of :func:`min_norm_point` that puts all `count` candidates in one block."""
    return np.array([0, count], dtype=np.intp), np.zeros((dim, 1)), np.full(1, np.inf), 0.0


@jit
def _wolfe_into(points, key, key_ray, cand_ids, cand_t, cand_norm2, blocks, start, low, high, max_major, row, out):
    """Run Wolfe's algorithm for one key against the working set and write its outcome into slot `row` of `out`.

    Writes the support, weights and distance; where that decides the key (within `low`: UNSELECTABLE; no
    stopping rule met: STALLED) also the status, else the unit witness direction. Returns ``(normal, separated,
    open)``: Wolfe's normal, whether it stopped because ``-normal`` separates the key from the working set by
    more than `high`, and whether the key is still open (its witness must be checked against all sites).
    """
    status, distance, margin, direction, support, weights, violator = out
    x, normal, ids, w, stalled, separated = min_norm_point(points[key], cand_ids, cand_t, cand_norm2, blocks, start,
                                                           key, key_ray, low, high, max_major)
    for k in range(ids.shape[0]):
        support[row, k] = ids[k]
        weights[row, k] = w[k]
    norm = np.sqrt(dot(x, x))
    distance[row] = norm
    if norm <= low:
        status[row] = UNSELECTABLE
        return normal, separated, False
    if stalled:
        status[row] = STALLED
        return normal, separated, False
    normal_norm = max(np.sqrt(dot(normal, normal)), 1e-300)
    for t in range(normal.shape[0]):
        direction[row, t] = -normal[t] / normal_norm
    return normal, separated, True


@jit
def _decide_key(points, key, n, has_ray, cand_ids, cand_t, cand_norm2, sites_t, low, high, max_major, row, out):
    """Decide one key and write its outcome into slot `row` of the output arrays `out`."""
    _decide_from(points, key, n, has_ray, cand_ids, cand_t, cand_norm2, np.empty(0, dtype=np.intp), sites_t, low,
                 high, max_major, row, out)


@jit
def _decide_from(points, key, n, has_ray, cand_ids, cand_t, cand_norm2, start, sites_t, low, high, max_major, row,
                 out):
    """:func:`_decide_key` with Wolfe's algorithm started from the candidate positions `start` (-1 padded)."""
    status, distance, margin, direction, support, weights, violator = out
    key_ray = key + n if has_ray else -1
    normal, separated, still_open = _wolfe_into(points, key, key_ray, cand_ids, cand_t, cand_norm2,
                                                one_block(cand_t.shape[1], points.shape[1]), start, low, high,
                                                max_major, row, out)
    if not still_open:
        return
    # witness q = -normal / |normal|: margin over site c is q.(p_key - p_c) = (normal.p_c - normal.p_key) / |normal|
    normal_norm = max(np.sqrt(dot(normal, normal)), 1e-300)
    scores = np.empty(sites_t.shape[1])
    _scores_into(sites_t, normal, scores)
    worst = np.inf
    worst_at = -1
    for c in range(scores.shape[0]):
        if scores[c] < worst and c != key and c != key_ray:
            worst = scores[c]
            worst_at = c
    margin[row] = (worst - dot(points[key], normal)) / normal_norm
    if margin[row] > high:
        status[row] = SELECTABLE
    elif not separated and distance[row] - margin[row] <= low:  # Wolfe's own stopping rule, now over all sites
        status[row] = CONVERGED
    else:  # the same arithmetic as over the candidates, so the violator is not a candidate
        status[row] = NEED_POINT
        violator[row] = worst_at


@jit
def distance_to_hull_serial(points, keys, n, has_ray, cand_ids, cand_t, cand_norm2, sites_t, low, high, max_major):
    """Run :func:`distance_to_hull_batch` serially, for small batches (no thread start-up cost)."""
    out = _allocate_decisions(keys.shape[0], points.shape[1])
    for row in range(keys.shape[0]):
        _decide_key(points, keys[row], n, has_ray, cand_ids, cand_t, cand_norm2, sites_t, low, high, max_major,
                    row, out)
    return out


@parallel_jit
def distance_to_hull_batch(points, keys, n, has_ray, cand_ids, cand_t, cand_norm2, sites_t, low, high, max_major):
    """Decide, for each key, whether its distance to the hull of the other sites exceeds `low`/`high`.

    `sites_t` (dim, total) holds the hull's sites as columns: the n real points, then (with `has_ray`) their
    virtual copies shifted down the ray. `cand_t` holds the columns of the working set, ids `cand_ids`.
    For key ``i`` (a row of `points`), Wolfe's algorithm finds the point of ``conv(candidates without i)``
    nearest to it. If that is within `low`, the key is certainly unselectable. Otherwise ``q = -x``
    separates the key from the candidates; a scan over *all* sites gives the key's true margin for ``q``:
    above `high` it is certainly selectable; if no site violates the separation the distance is exact
    (status CONVERGED); else the most violating site is reported so the caller can add it to the
    candidates. Keys are processed in parallel; each key's result is independent of the threads.

    Returns
    -------
    status : ndarray of int8, shape (b,)
    distance : ndarray, shape (b,)
        Distance from the key to conv(candidates), an upper bound of its distance to the others' hull.
    margin : ndarray, shape (b,)
        Margin of the witness direction over all other sites (``-inf`` where not computed).
    direction : ndarray, shape (b, dim)
        Unit witness direction ``-x / |x|`` (zeros where the key is unselectable).
    support : ndarray of intp, shape (b, dim + 2)
        Site ids of the convex combination, padded with -1.
    weights : ndarray, shape (b, dim + 2)
        Their weights, padded with 0.
    violator : ndarray of intp, shape (b,)
        The site to add for status NEED_POINT, else -1.
    """
    out = _allocate_decisions(keys.shape[0], points.shape[1])
    for row in prange(keys.shape[0]):
        _decide_key(points, keys[row], n, has_ray, cand_ids, cand_t, cand_norm2, sites_t, low, high, max_major,
                    row, out)
    return out


@parallel_jit
def distance_to_working_set(points, keys, cand_ids, cand_t, cand_norm2, blocks, starts, low, high, max_major):
    """Run Wolfe's algorithm for each key against the working set only, for the caller to check the witnesses.

    The arguments are those of :func:`distance_to_hull_batch` for bias-free sites, without the sites, and the
    candidates' `blocks` (see :func:`_entering`) and each key's warm start, a row of `starts` (b, w) (see
    :func:`min_norm_point`): the statuses are relative to the working set. UNSELECTABLE and STALLED are final;
    SELECTABLE means the witness separates the key from the working set by more than `high`, CONVERGED that
    Wolfe's stopping rule was met (the distance to the working set's hull is exact). The margins are left at
    ``-inf``: a scan of all the sites along the witness directions, batched by the caller as BLAS tiles, gives
    them (one key's scan of all sites streams them from memory: at n = 1e5 it cost more than the key's Wolfe
    run).
    """
    out = _allocate_decisions(keys.shape[0], points.shape[1])
    for row in prange(keys.shape[0]):
        _, separated, still_open = _wolfe_into(points, keys[row], np.intp(-1), cand_ids, cand_t, cand_norm2, blocks,
                                               starts[row], low, high, max_major, row, out)
        if still_open:
            out[0][row] = SELECTABLE if separated else CONVERGED
    return out


@jit
def _positions(ids, wanted):
    """Positions in `ids` of the ids `wanted` (-1 for a padding -1 or an id not in `ids`)."""
    out = np.full(wanted.shape[0], -1, dtype=np.intp)
    for k in range(wanted.shape[0]):
        if wanted[k] >= 0:
            for c in range(ids.shape[0]):
                if ids[c] == wanted[k]:
                    out[k] = c
                    break
    return out


@jit
def _decide_own(points, key, candidates, start, low, high, max_major, row, out):
    """Decide one key against its own working set ``points[candidates]`` (see :func:`distance_to_own_hulls`)."""
    width = 0
    for c in range(candidates.shape[0]):
        width += candidates[c] >= 0
    used = np.empty(width, dtype=np.intp)  # the row's ids without its -1 padding
    local = np.empty((width + 1, points.shape[1]))  # the working set, then the key (local id `width`, no candidate)
    width = 0
    for c in range(candidates.shape[0]):
        if candidates[c] >= 0:
            used[width] = candidates[c]
            local[width] = points[candidates[c]]
            width += 1
    local[width] = points[key]
    local_t = np.ascontiguousarray(local[:width].T)
    norm2 = (local[:width] * local[:width]).sum(axis=1)
    _decide_from(local, width, width + 1, False, np.arange(width), local_t, norm2, _positions(used, start), local_t,
                 low, high, max_major, row, out)
    support = out[4]
    for k in range(support.shape[1]):
        if support[row, k] >= 0:
            support[row, k] = used[support[row, k]]


@jit
def distance_to_own_hulls_serial(points, keys, candidates, starts, low, high, max_major):
    """Run :func:`distance_to_own_hulls` serially, for small batches (no thread start-up cost)."""
    out = _allocate_decisions(keys.shape[0], points.shape[1])
    for row in range(keys.shape[0]):
        _decide_own(points, keys[row], candidates[row], starts[row], low, high, max_major, row, out)
    return out


@parallel_jit
def distance_to_own_hulls(points, keys, candidates, starts, low, high, max_major):
    """Decide each key as :func:`distance_to_hull_batch` does, against its own row of `candidates` only.

    Row ``r`` of `candidates` (b, width) lists the ids of key ``keys[r]``'s working set (other keys, padded
    with -1 anywhere; at least one id per row); the statuses and margins are relative to that set (so
    NEED_POINT does not occur: Wolfe's stopping rules were met over the same sites), and the caller checks
    each witness against all keys. Support ids are ids of rows of `points`. Row ``r`` of `starts` lists ids
    (-1 padded) that Wolfe's algorithm starts from, those of the set (the key's support in its last round,
    say; see :func:`min_norm_point`).
    """
    out = _allocate_decisions(keys.shape[0], points.shape[1])
    for row in prange(keys.shape[0]):
        _decide_own(points, keys[row], candidates[row], starts[row], low, high, max_major, row, out)
    return out


@jit
def _normalized_set(keys):
    """Return `keys` centred at their mean and divided by their radius, and whether that was safe.

    Not safe (the caller must use the full engine) when the radius is zero or so extreme that squares
    of coordinates could under- or overflow.
    """
    n, dim = keys.shape
    total = np.zeros(dim)  # summed row by row, as keys.sum(axis=0) does, without compiling numba's axis sum
    for i in range(n):
        for t in range(dim):
            total[t] += keys[i, t]
    centred = np.empty((n, dim))  # loops, not array expressions: each of those compiles a kernel of its own
    radius2 = 0.0
    for i in range(n):
        for t in range(dim):
            centred[i, t] = keys[i, t] - total[t] / n
        radius2 = max(radius2, _row_dot(centred, i, centred[i]))
    if not 1e-280 < radius2 < 1e280:
        return centred, False
    radius = np.sqrt(radius2)
    for i in range(n):
        for t in range(dim):
            centred[i, t] /= radius
    return centred, True


@jit
def has_equal_rows(points):
    """Whether two rows of `points` are equal (as values: 0.0 == -0.0), in expected O(n d) time.

    Rows are hashed into an open-addressing table; rows with equal hashes are compared.
    """
    n, dim = points.shape
    bits = (points + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0, so equal values have equal bits
    size = 1
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, dtype=np.intp)
    mask = np.uint64(size - 1)
    for i in range(n):
        code = np.uint64(0)
        for t in range(dim):
            code = (code ^ bits[i, t]) * _HASH_MULTIPLIER
            code ^= code >> np.uint64(29)
        slot = code & mask
        while table[slot] >= 0:
            other = table[slot]
            same = True
            for t in range(dim):
                if points[other, t] != points[i, t]:
                    same = False
                    break
            if same:
                return True
            slot = (slot + np.uint64(1)) & mask
        table[slot] = i
    return False


@jit
def _reflection_certifies(points, points_t, key, high, reflections, scores, query):
    """Whether a few braid reflections of the key's own direction make it the argmax by more than `high`.

    The cheap heuristic of Grivas et al. (2022): reflect the query across the hyperplane on which the key
    and the current winner tie, so that the key beats that winner. Costs ``O(n d)`` per reflection;
    `scores` and `query` are workspaces.
    """
    dim = points.shape[1]
    for t in range(dim):
        query[t] = points[key, t]
    for _ in range(reflections):
        top_at, top, second = _scan_row(points_t, query, scores)
        if top_at == key:
            return top - second > high * np.sqrt(dot(query, query))
        along, length2 = 0.0, 0.0
        for t in range(dim):
            step = points[key, t] - points[top_at, t]
            along += query[t] * step
            length2 += step * step
        for t in range(dim):
            query[t] -= 2.0 * along / length2 * (points[key, t] - points[top_at, t])
    return False


@inline_jit
def _count_unselectable_in_set(points, ids, low, high, max_major, out):
    """Count the unselectable keys of one normalized set as the engine decides them.

    Returns ``(settled, count)``: `settled` is False as soon as a key is neither certainly unselectable nor
    certainly selectable (borderline, stalled), and the whole set must then go through the engine.
    """
    n, dim = points.shape
    points_t = np.empty((dim, n))
    norm2 = np.empty(n)
    for i in range(n):
        norm2[i] = _row_dot(points, i, points[i])
        for t in range(dim):
            points_t[t, i] = points[i, t]
    certain = np.zeros(n, dtype=np.bool_)
    certified = 0
    scores = np.empty(_SCORE_BLOCK)
    for i in range(n):  # the engine's witness scan: each key's own direction certifies its strict argmax
        if norm2[i] > 0.0:
            top_at, top, second = _scan_row(points_t, points[i], scores)
            if (top - second) / np.sqrt(norm2[i]) > high and not certain[top_at]:
                certain[top_at] = True
                certified += 1
    status, support, weights = out[0], out[4], out[5]
    query = np.empty(dim)
    # typed like the engine's arguments, not as literals: the engine's compiled _decide_key serves here too
    no_ray, first_row = np.bool_(False), np.intp(0)
    # where the scan certified most keys, the others are likely vertices too: try cheap reflections first
    reflections = REFLECTIONS if 2 * certified > n else 0
    unselectable = 0
    for i in range(n):
        if certain[i] or _reflection_certifies(points, points_t, i, high, reflections, scores, query):
            continue
        support[0, :] = -1
        _decide_key(points, i, n, no_ray, ids, points_t, norm2, points_t, low, high, max_major, first_row, out)
        if status[0] == SELECTABLE:
            continue
        if status[0] != UNSELECTABLE:
            return False, 0
        residual = np.empty(dim)  # re-check the certificate: |sum_k w_k p_k - p_i| <= 10 low (= tol)
        for t in range(dim):
            residual[t] = points[i, t]
        for k in range(support.shape[1]):
            if support[0, k] >= 0:
                for t in range(dim):
                    residual[t] -= weights[0, k] * points[support[0, k], t]
        if np.sqrt(dot(residual, residual)) > 10.0 * low:
            return False, 0
        unselectable += 1
    return True, unselectable


@jit
def count_unselectable_sets(key_sets, low, high, max_major):
    """Count the unselectable keys in each of many small bias-free key sets, in one serial call.

    Each set (a row of `key_sets`, shape (sets, n, dim)) is centred and divided by its radius, then
    decided as the engine decides it: the own-direction witness scan certifies strict argmaxes with a
    margin above `high`, and Wolfe's algorithm against all other keys decides every other key (within
    `low`: unselectable, with its convex combination re-checked; separated by more than `high`:
    selectable). Sets with equal keys, an extreme radius or a key between `low` and `high` are left
    unsettled for the caller to run through the full engine.

    Returns
    -------
    counts : ndarray of int64, shape (sets,)
    settled : ndarray of bool, shape (sets,)
    """
    sets, n, dim = key_sets.shape
    counts = np.zeros(sets, dtype=np.int64)
    settled = np.zeros(sets, dtype=np.bool_)
    ids = np.arange(n)
    out = _allocate_decisions(np.intp(1), dim)  # np.intp: one specialization, the engine's
    for s in range(sets):
        if n == 1:
            settled[s] = True
            continue
        if has_equal_rows(key_sets[s]):
            continue
        points, safe = _normalized_set(key_sets[s])
        if safe:
            settled[s], counts[s] = _count_unselectable_in_set(points, ids, low, high, max_major, out)
    return counts, settled


@parallel_jit
def distance_to_prefix_hulls(points, points_t, norm2, keys, ends, shared_seeds, seeds, lows, highs, max_major):
    """Decide each key against the hull of its own prefix of the points, with Clarkson's loop inside.

    Key ``keys[r]`` sees only the sites ``points[:ends[r]]`` (itself excluded) and its own tolerances
    ``lows[r]``, ``highs[r]``. Its working set starts from the sorted ids `shared_seeds` and its own
    ``seeds[r]`` (padded with -1), those inside the prefix; while :func:`_decide_key` reports a violating
    site, the site joins the working set and the key is decided again; a repeated violator makes it
    STALLED. `points_t` is ``points.T`` (C order) and `norm2` the squared row norms.
    Returns the arrays of :func:`distance_to_hull_batch`.
    """
    out = _allocate_decisions(keys.shape[0], points.shape[1])
    status, support, weights, violator = out[0], out[4], out[5], out[6]
    for row in prange(keys.shape[0]):
        key, end = keys[row], ends[row]
        ids = np.empty(end, dtype=np.intp)
        size = 0
        for seed in seeds[row]:  # the key's own seeds first, at positions 0..own-1: Wolfe starts from them
            if 0 <= seed < end and seed != key and not (ids[:size] == seed).any():
                ids[size] = seed
                size += 1
        own = size
        own_sorted = np.sort(ids[:own])
        at = 0
        for seed in shared_seeds:  # then the shared seeds, merged past the own ones (both sorted)
            if seed >= end:
                break
            while at < own and own_sorted[at] < seed:
                at += 1
            if seed != key and not (at < own and own_sorted[at] == seed):
                ids[size] = seed
                size += 1
        if size == 0:
            ids[0] = 1 if key == 0 else 0
            size = 1
        start = np.full(seeds.shape[1], -1, dtype=np.intp)  # Wolfe starts from the key's seeds, then from
        start[:own] = np.arange(own)  # its last support
        while True:
            candidates = ids[:size].copy()
            cand_t = np.ascontiguousarray(points_t[:, candidates])
            support[row, :] = -1
            weights[row, :] = 0.0
            _decide_from(points, key, end, False, candidates, cand_t, norm2[candidates], start, points_t[:, :end],
                         lows[row], highs[row], max_major, row, out)
            if status[row] != NEED_POINT:
                break
            if (candidates == violator[row]).any():
                status[row] = STALLED
                break
            start = _positions(candidates, support[row])
            ids[size] = violator[row]
            size += 1
    return out
