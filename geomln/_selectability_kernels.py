"""Numba kernels of the selectability engine: top-2 scans and Wolfe's minimum-norm-point algorithm.

All inputs are finite, C-contiguous float64 arrays in *normalized* coordinates (centred, divided by the
data radius, projected onto the affine hull), so every tolerance here is relative to the data's scale.

A point set may be *lifted*: with a bias the last coordinate is the (normalized) bias, and candidate
indices ``c >= n`` stand for the virtual points ``points[c - n] - ray * e_last``, which turn the polytope
``conv(points)`` into ``conv(points) - cone(e_last)`` near the origin (see ``selectability.py``).
"""

import numpy as np

from ._jit import jit, parallel_jit, prange

#: statuses returned per key by :func:`distance_to_hull_batch`
UNSELECTABLE = 0  # distance to the hull of the others <= low: certain
SELECTABLE = 1  # witness margin over every other key > high: certain
CONVERGED = 2  # exact distance found, between low and high: decide by tol, borderline
NEED_POINT = 3  # a key outside conv(candidates) violates the witness: add it and run again
STALLED = 4  # Wolfe's algorithm stopped making progress (numerically degenerate corral)


@parallel_jit
def top_two(scores, row_keys, exclude_row_key):
    """For each row of `scores`, the index and value of the largest entry and the second largest value.

    With `exclude_row_key`, the entry ``scores[r, row_keys[r]]`` is skipped (the runner-up of a key is
    then the best *other* key).
    """
    rows, cols = scores.shape
    best_index = np.empty(rows, dtype=np.intp)
    best_value = np.empty(rows)
    second_value = np.empty(rows)
    for r in prange(rows):
        top = -np.inf
        second = -np.inf
        top_at = -1
        skip = row_keys[r] if exclude_row_key else -1
        for c in range(cols):
            if c == skip:
                continue
            value = scores[r, c]
            if value > top:
                second = top
                top = value
                top_at = c
            elif value > second:
                second = value
        best_index[r] = top_at
        best_value[r] = top
        second_value[r] = second
    return best_index, best_value, second_value


@jit
def _candidate_dot(points, c, n, ray, x):
    """Dot product of candidate `c` (real or virtual) with `x`."""
    if c < n:
        return np.dot(points[c], x)
    return np.dot(points[c - n], x) - ray * x[x.shape[0] - 1]


@jit
def _candidate_into(points, c, n, ray, origin, out):
    """Write candidate `c` minus `origin` into `out`."""
    base = c if c < n else c - n
    for t in range(out.shape[0]):
        out[t] = points[base, t] - origin[t]
    if c >= n:
        out[out.shape[0] - 1] -= ray


@jit
def _affine_minimizer(corral, size):
    """Weights (summing to 1) of the point of least norm in the affine hull of ``corral[:size]``.

    Returns the weights and whether the corral is affinely independent (full column rank).
    """
    dim = corral.shape[1]
    alpha = np.zeros(size)
    if size == 1:
        alpha[0] = 1.0
        return alpha, True
    # x = p0 + B^T t, minimise ||x|| by least squares on the differences
    differences = np.empty((dim, size - 1))
    for k in range(1, size):
        for t in range(dim):
            differences[t, k - 1] = corral[k, t] - corral[0, t]
    rhs = np.empty(dim)
    for t in range(dim):
        rhs[t] = -corral[0, t]
    solution, _, rank, _ = np.linalg.lstsq(differences, rhs, 1e-12)
    total = 0.0
    for k in range(1, size):
        alpha[k] = solution[k - 1]
        total += solution[k - 1]
    alpha[0] = 1.0 - total
    return alpha, rank == size - 1


@jit
def min_norm_point(points, origin_key, candidates, n, ray, low, max_major):
    """Wolfe's algorithm: the point of ``conv(candidates) - points[origin_key]`` closest to the origin.

    Candidates equal to `origin_key` are skipped. Stops early once the distance is <= `low`.

    Returns
    -------
    x : ndarray, shape (dim,)
        The nearest point (relative to the key).
    support : ndarray of intp, shape (k,)
        Candidate indices with positive weight.
    weights : ndarray, shape (k,)
        Their convex weights.
    stalled : bool
        True if the algorithm stopped on a numerical stall rather than optimality or `low`.
    """
    dim = points.shape[1]
    origin = points[origin_key]
    origin_ray = origin_key + n if ray > 0 else -1  # the key's own virtual point is not "another key"
    capacity = dim + 2
    corral = np.empty((capacity, dim))
    corral_ids = np.empty(capacity, dtype=np.intp)
    weights = np.empty(capacity)
    relative = np.empty(dim)
    # start from the nearest candidate
    best_norm = np.inf
    best = -1
    for c in candidates:
        if c == origin_key or c == origin_ray:
            continue
        _candidate_into(points, c, n, ray, origin, relative)
        norm2 = np.dot(relative, relative)
        if norm2 < best_norm:
            best_norm = norm2
            best = c
    size = 1
    corral_ids[0] = best
    _candidate_into(points, best, n, ray, origin, corral[0])
    weights[0] = 1.0
    x = corral[0].copy()
    independent = True
    stalled = True  # unless a stopping rule below is met within max_major iterations
    for _ in range(max_major):
        norm2 = np.dot(x, x)
        if norm2 <= low * low:
            stalled = False
            break
        origin_dot = np.dot(origin, x)
        entering = -1
        smallest = np.inf
        for c in candidates:
            if c == origin_key or c == origin_ray:
                continue
            value = _candidate_dot(points, c, n, ray, x) - origin_dot
            if value < smallest:
                smallest = value
                entering = c
        scale2 = 0.0
        for k in range(size):
            scale2 = max(scale2, np.dot(corral[k], corral[k]))
        if norm2 - smallest <= 1e-13 * max(scale2, 1e-300):
            stalled = False
            break  # optimal: no candidate lies beyond the supporting plane at x
        already = False
        for k in range(size):
            if corral_ids[k] == entering:
                already = True
        if already or size == capacity:
            break
        corral_ids[size] = entering
        _candidate_into(points, entering, n, ray, origin, corral[size])
        weights[size] = 0.0
        size += 1
        while True:  # minor cycle
            alpha, independent = _affine_minimizer(corral, size)
            if not independent:
                break
            positive = True
            for k in range(size):
                if alpha[k] <= 1e-14:
                    positive = False
            if positive:
                for k in range(size):
                    weights[k] = alpha[k]
                break
            theta = 1.0
            for k in range(size):
                if alpha[k] <= 1e-14 and weights[k] - alpha[k] > 0:
                    theta = min(theta, weights[k] / (weights[k] - alpha[k]))
            kept = 0
            for k in range(size):
                value = (1.0 - theta) * weights[k] + theta * alpha[k]
                if value > 1e-14:
                    weights[kept] = value
                    corral_ids[kept] = corral_ids[k]
                    for t in range(dim):
                        corral[kept, t] = corral[k, t]
                    kept += 1
            if kept == size:  # no weight reached zero: drop the smallest to guarantee progress
                smallest_at = 0
                for k in range(1, size):
                    if weights[k] < weights[smallest_at]:
                        smallest_at = k
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
                break
        if not independent:
            break
        for t in range(dim):
            x[t] = 0.0
        for k in range(size):
            for t in range(dim):
                x[t] += weights[k] * corral[k, t]
    return x, corral_ids[:size].copy(), weights[:size].copy(), stalled


@parallel_jit
def distance_to_hull_batch(points, keys, candidates, n, ray, low, high, max_major):
    """Decide, for each key, whether its distance to the hull of the other points exceeds `low`/`high`.

    For key ``i`` Wolfe's algorithm finds the point of ``conv(candidates without i)`` nearest to
    ``points[i]``. If it is within `low`, the key is certainly unselectable. Otherwise ``q = -x`` separates the
    key from the candidates; a scan over *all* points gives the key's true margin for ``q``: above `high`
    it is certainly selectable; if no point violates the separation the distance is exact (status
    CONVERGED); else the most violating point is reported so the caller can add it to the candidates.

    Returns
    -------
    status : ndarray of int8, shape (b,)
    distance : ndarray, shape (b,)
        Distance from the key to conv(candidates), an upper bound of its distance to the others' hull.
    margin : ndarray, shape (b,)
        Margin of the witness direction over all other points (``-inf`` where not computed).
    direction : ndarray, shape (b, dim)
        Unit witness direction ``-x / |x|`` (zeros where the key is unselectable).
    support : ndarray of intp, shape (b, dim + 2)
        Candidate indices of the convex combination, padded with -1.
    weights : ndarray, shape (b, dim + 2)
        Their weights, padded with 0.
    violator : ndarray of intp, shape (b,)
        The point to add for status NEED_POINT, else -1.
    """
    b = keys.shape[0]
    dim = points.shape[1]
    status = np.empty(b, dtype=np.int8)
    distance = np.empty(b)
    margin = np.full(b, -np.inf)
    direction = np.zeros((b, dim))
    support = np.full((b, dim + 2), -1, dtype=np.intp)
    weights = np.zeros((b, dim + 2))
    violator = np.full(b, -1, dtype=np.intp)
    total = n * 2 if ray > 0 else n
    for row in prange(b):
        key = keys[row]
        key_ray = key + n if ray > 0 else -1
        x, ids, w, stalled = min_norm_point(points, key, candidates, n, ray, low, max_major)
        for k in range(ids.shape[0]):
            support[row, k] = ids[k]
            weights[row, k] = w[k]
        norm = np.sqrt(np.dot(x, x))
        distance[row] = norm
        if norm <= low:
            status[row] = UNSELECTABLE
            continue
        if stalled:
            status[row] = STALLED
            continue
        # witness q = -x / |x|: margin over point c is q.(p_key - p_c) = (x.p_c - x.p_key) / |x|
        key_dot = np.dot(points[key], x)
        worst = np.inf
        worst_at = -1
        for c in range(total):
            if c == key or c == key_ray:
                continue
            value = _candidate_dot(points, c, n, ray, x) - key_dot
            if value < worst:
                worst = value
                worst_at = c
        margin[row] = worst / norm
        for t in range(dim):
            direction[row, t] = -x[t] / norm
        if margin[row] > high:
            status[row] = SELECTABLE
        elif worst >= norm * norm * (1.0 - 1e-9) - 1e-15:
            status[row] = CONVERGED
        else:
            status[row] = NEED_POINT
            violator[row] = worst_at
    return status, distance, margin, direction, support, weights, violator
