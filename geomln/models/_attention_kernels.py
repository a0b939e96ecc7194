"""Numba kernels of :mod:`geomln.attention`: per-key projected Newton for the largest softmax weight on a ball.

One key per ``prange`` slot; every array argument is float64 C-contiguous (``rows`` np.intp). No
fastmath: the duality gaps computed here are certificates. The Hessian's product calls BLAS from the threads:
run the kernel with one BLAS thread (:func:`geomln._blas.one_blas_thread`).
"""

import numpy as np

from .._jit import jit, parallel_jit, prange
from .._loops import dot

MAX_ITERATIONS = 200  # Newton iterations per continuation stage
_LINE_SEARCH_STEPS = 60
_SECULAR_STEPS = 50
_EPS = np.finfo(np.float64).eps


@parallel_jit
def solve_keys(keys, bias, rows, radii, scale, tol, loose_tol, queries, values, gaps, iterations):
    """For each key ``rows[s]``: minimise ``-log softmax(scale * keys @ q + bias)_i`` over ``|q| <= radii[-1]``.

    `keys` must be centred (the start is the key's own direction). Writes slot ``s`` of `queries` (b, d),
    `values` (the minimum found, ``-log`` weight), `gaps` (its duality gap) and `iterations` (all stages).
    Continuation: the radii are solved in order, to `loose_tol` except the last (to `tol`), each warm-started
    from the previous optimum (scaled out with the radius when it lay on the boundary).
    """
    for s in prange(rows.shape[0]):
        values[s], gaps[s], iterations[s] = _solve_key(keys, bias, rows[s], radii, scale, tol, loose_tol,
                                                       queries[s])


@jit
def _solve_key(keys, bias, i, radii, scale, tol, loose_tol, q):
    n, d = keys.shape
    length = np.sqrt(dot(keys[i], keys[i]))
    for a in range(d):
        q[a] = keys[i, a] * (radii[0] / length) if length > 0 else 0.0
    p = np.empty(n)
    gradient = np.empty(d)
    weighted = np.empty((n, d))
    hessian = np.empty((d, d))
    factor = np.empty((d, d))
    trial = np.empty(d)
    work = np.empty((3, d))
    f, gap, total = 0.0, 0.0, 0
    previous = radii[0]
    for stage in range(radii.shape[0]):
        current = radii[stage]
        if stage > 0 and np.sqrt(dot(q, q)) >= previous * (1 - 1e-6):
            q *= current / previous
        stage_tol = tol if stage == radii.shape[0] - 1 else loose_tol
        f, gap, count = _newton(keys, bias, i, q, current, scale, stage_tol, p, gradient, weighted, hessian,
                                factor, trial, work)
        total += count
        previous = current
    return f, gap, total


@jit
def _newton(keys, bias, i, q, radius, scale, tol, p, gradient, weighted, hessian, factor, trial, work):
    """Projected Newton from `q` (updated in place) until the gap is <= tol; returns (f, gap, iterations)."""
    f = _objective(keys, bias, i, q, scale, p, gradient, True)
    gap = _gap(q, f, gradient, radius)
    count = 0
    mu = max(0.0, -dot(q, gradient)) / (radius * radius)  # exact at an optimum on the boundary (g = -mu q)
    step = work[0]
    while gap > tol and count < MAX_ITERATIONS:
        count += 1
        _hessian(keys, p, scale, weighted, hessian)
        mu = _ball_minimiser(hessian, q, gradient, radius, mu, factor, step, work[1], work[2])
        slope = 0.0
        for a in range(q.shape[0]):
            step[a] -= q[a]
            slope += gradient[a] * step[a]
        alpha = 1.0
        accepted = False
        for _ in range(_LINE_SEARCH_STEPS):
            for a in range(q.shape[0]):
                trial[a] = q[a] + alpha * step[a]
            f_trial = _objective(keys, bias, i, trial, scale, p, gradient, False)
            # Armijo, forgiving the rounding of f itself (near the optimum the decrease is below it)
            if f_trial <= f + 1e-4 * alpha * slope + 8 * _EPS * (1.0 + abs(f)):
                accepted = True
                break
            alpha *= 0.5
        if not accepted:
            break  # no progress possible at float64 precision (p and gradient still belong to q)
        q[:] = trial
        f = _objective(keys, bias, i, q, scale, p, gradient, True)
        gap = _gap(q, f, gradient, radius)
    return f, gap, count


@jit
def _objective(keys, bias, i, q, scale, p, gradient, with_gradient):
    """Return ``-log softmax(scale * keys @ q + bias)_i``; `with_gradient` also fills softmax `p` and the gradient."""
    n, d = keys.shape
    own = 0.0
    for a in range(d):
        own += keys[i, a] * q[a]
    own = scale * own + bias[i]
    top = -np.inf
    for j in range(n):
        score = 0.0
        for a in range(d):
            score += keys[j, a] * q[a]
        p[j] = scale * score + bias[j] - own
        top = max(top, p[j])
    total = 0.0
    for j in range(n):
        p[j] = np.exp(p[j] - top)
        total += p[j]
    f = top + np.log(total)
    if with_gradient:
        gradient[:] = 0.0
        for j in range(n):
            p[j] /= total
            for a in range(d):
                gradient[a] += p[j] * keys[j, a]
        for a in range(d):
            gradient[a] = scale * (gradient[a] - keys[i, a])
    return f


@jit
def _gap(q, f, gradient, radius):
    """Duality gap in -log weight; never above f itself, since no weight exceeds 1."""
    gap = radius * np.sqrt(dot(gradient, gradient)) + dot(q, gradient)
    return min(max(gap, 0.0), max(f, 0.0))


@jit
def _hessian(keys, p, scale, weighted, hessian):
    """Hessian ``scale^2 sum_j p_j (k_j - m)(k_j - m)^T`` (m = p @ keys), O(n d^2), as one product ``W^T W``.

    Keys with ``p_j < 1e-18 max(p)`` are left out: they change the model by less than rounding does (the
    Hessian only shapes the step; the gaps use the exact gradient).
    """
    n, d = keys.shape
    mean = np.zeros(d)
    largest = 0.0
    for j in range(n):
        largest = max(largest, p[j])
        for a in range(d):
            mean[a] += p[j] * keys[j, a]
    rows = 0
    for j in range(n):
        if p[j] >= 1e-18 * largest:
            root = scale * np.sqrt(p[j])
            for a in range(d):
                weighted[rows, a] = root * (keys[j, a] - mean[a])
            rows += 1
    np.dot(weighted[:rows].T, weighted[:rows], hessian)  # BLAS (numba calls scipy's): a few times the loops' speed


@jit
def _ball_minimiser(hessian, q, gradient, radius, mu, factor, x, target, work):
    """Minimiser `x` of the model ``g.(x - q) + (x - q).H(x - q) / 2`` over ``|x| <= radius``; returns its mu.

    ``x(mu) = (H + mu I)^{-1} (H q - g)`` with ``mu = 0`` when that lies in the ball, else ``mu > 0`` with
    ``|x(mu)| = radius``, found by Newton's method on ``phi(mu) = 1 / |x(mu)| - 1 / radius`` from the
    larger of the previous iteration's `mu` and a lower bound. ``phi`` is concave and increasing, so from
    the left of the root the iterates rise monotonically to it, and a step from the right lands on its
    left (clipped at 0; Moré & Sorensen 1983); one Cholesky factor per step. H is shifted by a tiny
    multiple of its trace, more if rounding made it indefinite. The model's minimiser only shapes the step;
    the result is scaled into the ball.
    """
    d = q.shape[0]
    trace = 0.0
    largest = 0.0  # Gershgorin bound on the largest eigenvalue
    for a in range(d):
        trace += hessian[a, a]
        target[a] = -gradient[a]
        row = 0.0
        for b in range(d):
            target[a] += hessian[a, b] * q[b]
            row += abs(hessian[a, b])
        largest = max(largest, row)
    shift = 1e-14 * (1.0 + trace)
    mu = max(mu, np.sqrt(dot(target, target)) / radius - largest)  # |x(mu)| >= |t| / (largest + mu)
    for _ in range(_SECULAR_STEPS):
        while not _cholesky(hessian, shift + mu, factor):
            shift *= 10.0
        _solve_lower(factor, target, work)
        _solve_upper(factor, work, x)
        length = np.sqrt(dot(x, x))
        if abs(length - radius) <= 1e-9 * radius or (mu == 0.0 and length <= radius):
            break
        _solve_lower(factor, x, work)
        mu = max(0.0, mu + (length * length / dot(work, work)) * (length - radius) / radius)
    length = np.sqrt(dot(x, x))
    if length > radius:
        x *= radius / length
    return mu


@jit
def _cholesky(matrix, shift, factor):
    """Upper factor U of ``matrix + shift I = U^T U`` into `factor` (row updates: contiguous, vectorised).

    Returns False if a pivot is not positive.
    """
    d = matrix.shape[0]
    for a in range(d):
        for b in range(a, d):
            factor[a, b] = matrix[a, b]
        factor[a, a] += shift
    for k in range(d):
        pivot = factor[k, k]
        if not pivot > 0.0:
            return False
        root = np.sqrt(pivot)
        factor[k, k] = root
        for b in range(k + 1, d):
            factor[k, b] /= root
        for a in range(k + 1, d):
            u = factor[k, a]
            for b in range(a, d):
                factor[a, b] -= u * factor[k, b]
    return True


@jit
def _solve_lower(factor, right, out):
    """Solve ``U^T out = right``."""
    d = factor.shape[0]
    out[:] = right
    for a in range(d):
        out[a] /= factor[a, a]
        for b in range(a + 1, d):
            out[b] -= factor[a, b] * out[a]


@jit
def _solve_upper(factor, right, out):
    """Solve ``U out = right``."""
    d = factor.shape[0]
    for a in range(d - 1, -1, -1):
        total = right[a]
        for c in range(a + 1, d):
            total -= factor[a, c] * out[c]
        out[a] = total / factor[a, a]
