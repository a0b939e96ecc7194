"""The NumPy max_attention that geomln shipped before its numba kernel: the naive oracle of tests/test_attention.py.

Block-vectorised projected Newton with one batched eigendecomposition per iteration and an 80-step bisection
for the ball constraint. Slow (~0.5 s for 80 keys in d = 32) but independent of the kernel.
"""

from types import SimpleNamespace

import numpy as np

_MAX_ITERATIONS = 200
_BISECTION_STEPS = 80
_EPS = np.finfo(float).eps
_ROUNDING_FLOOR = 1000 * _EPS
_BLOCK_ENTRIES = 1 << 22  # entries of the per-block (keys, d, n) Hessian intermediate


def _objective(keys, bias, q, rows, scale):
    """For keys `rows` at queries `q` (b, d): f = -log weight, softmax p (b, n) and gradient (b, d)."""
    z = scale * (q @ keys.T) + bias
    z -= z[np.arange(rows.size), rows][:, None]
    top = z.max(axis=1, keepdims=True)
    e = np.exp(z - top)
    total = e.sum(axis=1)
    f = top[:, 0] + np.log(total)
    p = e / total[:, None]
    gradient = scale * (p @ keys - keys[rows])
    return f, p, gradient


def _newton_step(keys, p, gradient, q, radius, scale):
    """Minimiser of the quadratic model of f over the ball |x| <= radius, for every key of the block."""
    mean = p @ keys
    hessian = np.matmul(keys.T[None, :, :] * p[:, None, :], keys) - mean[:, :, None] * mean[:, None, :]
    hessian *= scale * scale
    values, vectors = np.linalg.eigh(hessian)
    values = np.maximum(values, 0.0) + 1e-14 * (1.0 + values[:, -1:])
    target = np.einsum("bij,bj->bi", hessian, q) - gradient
    r = np.einsum("bji,bj->bi", vectors, target)

    def norm_at(mu):
        return np.linalg.norm(r / (values + mu[:, None]), axis=1)

    mu = np.zeros(q.shape[0])
    outside = norm_at(mu) > radius
    if outside.any():
        low = np.zeros(outside.sum())
        high = np.linalg.norm(r[outside], axis=1) / radius  # |x(mu)| <= |r| / mu <= radius there
        sub_values, sub_r = values[outside], r[outside]
        for _ in range(_BISECTION_STEPS):
            middle = 0.5 * (low + high)
            too_long = np.linalg.norm(sub_r / (sub_values + middle[:, None]), axis=1) > radius
            low = np.where(too_long, middle, low)
            high = np.where(too_long, high, middle)
        mu[outside] = high  # the feasible side
    x = np.einsum("bij,bj->bi", vectors, r / (values + mu[:, None]))
    lengths = np.linalg.norm(x, axis=1)
    over = lengths > radius
    x[over] *= (radius / lengths[over])[:, None]
    return x


def _gap(q, f, gradient, radius):
    """Duality gap in -log weight; never above f itself, since no weight exceeds 1."""
    gap = radius * np.linalg.norm(gradient, axis=1) + np.einsum("bi,bi->b", q, gradient)
    return np.clip(gap, 0.0, np.maximum(f, 0.0))


def _newton(keys, bias, rows, q, radius, scale, tol):
    """Projected Newton iterations on the keys `rows` from the queries `q` until every gap is <= tol."""
    f, p, gradient = _objective(keys, bias, q, rows, scale)
    gap = _gap(q, f, gradient, radius)
    active = np.flatnonzero(gap > tol)
    iterations = 0
    while active.size and iterations < _MAX_ITERATIONS:
        iterations += 1
        sub_rows, start = rows[active], q[active]
        step = _newton_step(keys, p[active], gradient[active], start, radius, scale) - start
        slope = np.einsum("bi,bi->b", gradient[active], step)
        alpha = np.ones(active.size)
        accepted = np.zeros(active.size, dtype=bool)
        new_q = start.copy()
        for _ in range(60):
            pending = np.flatnonzero(~accepted)
            trial = start[pending] + alpha[pending, None] * step[pending]
            f_trial = _objective(keys, bias, trial, sub_rows[pending], scale)[0]
            # Armijo, forgiving the rounding of f itself (near the optimum the decrease is below it)
            f_now = f[active][pending]
            ok = f_trial <= f_now + 1e-4 * alpha[pending] * slope[pending] + 8 * _EPS * (1.0 + np.abs(f_now))
            new_q[pending[ok]] = trial[ok]
            accepted[pending[ok]] = True
            alpha[pending[~ok]] *= 0.5
            if accepted.all():
                break
        q[active] = new_q
        f[active], p[active], gradient[active] = _objective(keys, bias, q[active], sub_rows, scale)
        gap[active] = _gap(q[active], f[active], gradient[active], radius)
        if not accepted.any():
            break  # no progress possible at float64 precision
        active = active[gap[active] > tol]
    return q, f, gap, iterations


def _spread(keys, bias):
    return float(np.linalg.norm(keys - keys.mean(axis=0), axis=1).max()) + float(np.ptp(bias))


def _solve_block(keys, bias, rows, radius, scale, tol):
    """Continuation in the radius: solve loosely on growing balls, warm-starting each from the last.

    On a large ball the objective is nearly piecewise linear and Newton's model is poor far from the
    optimum; on a ball of radius ~ 1 / (scale * spread) it is well conditioned, and each optimum is a
    good start on a ball 4 times larger (scaled out with the radius when it lies on the boundary).
    """
    centred = keys[rows] - keys.mean(axis=0)
    lengths = np.linalg.norm(centred, axis=1)
    spread = _spread(keys, bias)
    radii = [radius]
    if spread > 0:
        while radii[-1] * scale * spread > 8.0:
            radii.append(radii[-1] / 4.0)
    radii.reverse()
    q = np.zeros_like(centred)
    nonzero = lengths > 0
    q[nonzero] = centred[nonzero] * (radii[0] / lengths[nonzero])[:, None]
    total = 0
    previous = radii[0]
    for stage, current in enumerate(radii):
        if stage:
            on_boundary = np.linalg.norm(q, axis=1) >= previous * (1 - 1e-6)
            q[on_boundary] *= current / previous
        last = stage == len(radii) - 1
        q, f, gap, iterations = _newton(keys, bias, rows, q, current, scale, tol if last else max(tol, 1e-3))
        total += iterations
        previous = current
    return q, f, gap, total


def naive_max_attention(keys, *, query_norm, bias=None, scale=None, tol=1e-9):
    """Same contract as geomln.max_attention (valid inputs only); returns weights, upper_bounds, queries, gaps, tol."""
    points = np.asarray(keys, dtype=float)
    n, d = points.shape
    offsets = np.zeros(n) if bias is None else np.asarray(bias, dtype=float)
    radius = float(query_norm)
    scale = 1.0 / np.sqrt(d) if scale is None else float(scale)
    tol = max(tol, _ROUNDING_FLOOR * radius * scale * _spread(points, offsets))
    queries = np.zeros((n, d))
    f = np.zeros(n)
    gaps = np.zeros(n)
    block = max(1, _BLOCK_ENTRIES // (n * d + d * d))
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        q, f_block, gap_block, _ = _solve_block(points, offsets, rows, radius, scale, tol)
        queries[rows], f[rows], gaps[rows] = q, f_block, gap_block
    return SimpleNamespace(weights=np.exp(-f), upper_bounds=np.exp(np.minimum(gaps - f, 0.0)), queries=queries,
                           gaps=gaps, tol=tol)
