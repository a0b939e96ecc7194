"""The largest softmax attention weight each key can receive from a query of bounded norm.

Selectability (:func:`~geomln.selectable_keys`) is a yes/no answer that allows queries of any norm. Real
queries have bounded norms, so a vertex that needs an enormous query to win is unselectable in practice.
:func:`max_attention` turns the verdict into a number: ``max_{|q| <= R} softmax(scale * K q + b)_i``.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from .._validation import as_points, as_tol, as_vector
from ..errors import GeomlnWarning, InputError

__all__ = ["MaxAttention", "max_attention"]

_MAX_ITERATIONS = 200
_BISECTION_STEPS = 80
_EPS = np.finfo(float).eps
_ROUNDING_FLOOR = 1000 * _EPS
_BLOCK_ENTRIES = 1 << 22  # entries of the per-block (keys, d, n) Hessian intermediate


@dataclass(frozen=True)
class MaxAttention:
    """Largest attention weight per key over queries of bounded norm, with primal and dual certificates.

    Attributes
    ----------
    weights : ndarray, shape (n,)
        ``softmax(scale * keys @ q_i + bias)_i`` for the returned query ``q_i``: a weight that is attained.
    upper_bounds : ndarray, shape (n,)
        Weights no query with ``|q| <= query_norm`` can exceed (from the dual, see Notes);
        ``weights <= upper_bounds <= weights * exp(tol)``.
    queries : ndarray, shape (n, d)
        The maximising queries, ``|q_i| <= query_norm``.
    gaps : ndarray, shape (n,)
        Duality gaps ``log(upper_bounds / weights)``.
    query_norm, scale, tol : float
        The query-norm bound, the score scale and the gap actually required (see `tol` of
        :func:`max_attention`).
    iterations : int
        Newton iterations used by the slowest block of keys (all continuation stages).
    """

    weights: np.ndarray
    upper_bounds: np.ndarray
    queries: np.ndarray
    gaps: np.ndarray
    query_norm: float
    scale: float
    tol: float
    iterations: int


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


def max_attention(keys, *, query_norm, bias=None, scale=None, tol=1e-9):
    """Largest softmax attention weight each key can receive from a query of norm at most `query_norm`.

    Parameters
    ----------
    keys : array_like, shape (n, d)
        Key vectors.
    query_norm : float
        Bound ``R > 0`` on the Euclidean norm of the query.
    bias : array_like, shape (n,), optional
        Additive score per key.
    scale : float, optional
        Scores are ``scale * (q . k_j) + b_j``; default ``1 / sqrt(d)`` as in dot-product attention
        (only the product ``scale * query_norm`` matters).
    tol : float, default 1e-9
        Duality gap at which a key's answer is accepted: ``weights <= true maximum <= upper_bounds
        <= weights * exp(tol)``, i.e. a relative precision of `tol`. Raised to the rounding floor
        ``2.2e-13 * query_norm * scale * spread`` (``spread`` = key radius + bias range) when that is larger:
        the gradient that certifies an interior optimum is only known to float64 precision.

    Returns
    -------
    MaxAttention
        The attained weights, their certified upper bounds and the maximising queries.

    Raises
    ------
    InputError
        If `keys` is not a finite non-empty 2-D array, `bias` has the wrong length, or `query_norm`,
        `scale` or `tol` are not positive finite numbers.

    Warns
    -----
    GeomlnWarning
        If some key did not reach the requested gap (its `upper_bounds` entry is still a valid bound).

    See Also
    --------
    selectable_keys : whether a key can win for a query of unbounded norm.

    Notes
    -----
    For key ``i`` minimise ``f_i(q) = log sum_j exp(s q.(k_j - k_i) + b_j - b_i) = -log weight_i(q)``,
    a smooth convex function, over the ball ``|q| <= R``. Writing ``p = softmax`` at ``q`` and
    ``g = grad f_i(q) = s (K^T p - k_i)``, Fenchel duality (``LSE(z) = max_p p.z + H(p)`` and
    ``min_{|q|<=R} q.g = -R |g|``) gives the lower bound ``f_i(q) - (R |g| + q.g)`` on ``min f_i``; the
    gap ``R |g| + q.g >= 0`` vanishes exactly at the optimum (either ``g = 0`` inside the ball, or
    ``q = -R g / |g|`` on its boundary). Each Newton iteration minimises the exact quadratic model over
    the ball (``x(mu) = (H + mu I)^{-1} (H q - g)`` with ``mu >= 0`` found by bisection on ``|x(mu)| = R``,
    using one batched eigendecomposition of the ``d x d`` Hessians), followed by an Armijo line search,
    vectorised over blocks of keys; it stops when every gap is at most `tol`. Each iteration costs
    ``O(b n d^2 + b d^3)`` for a block of ``b`` keys, so it suits per-head key sets (``n`` up to a few
    thousand, ``d`` up to a few hundred). A vertex's weight tends to 1 as ``R -> inf``; an interior key's
    stays bounded (e.g. the centre of a square of four keys never gets more than 1/5).

    Examples
    --------
    >>> import geomln
    >>> square_and_centre = [[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]]
    >>> result = geomln.max_attention(square_and_centre, query_norm=20.0, scale=1.0)
    >>> [round(float(w), 6) for w in result.weights]
    [1.0, 1.0, 1.0, 1.0, 0.2]
    >>> bool((result.upper_bounds >= result.weights).all())
    True
    """
    points = as_points(keys, "keys")
    n, d = points.shape
    offsets = np.zeros(n)
    if bias is not None:
        offsets = as_vector(bias, "bias", length=n, length_name="the number of keys")
    radius = _positive(query_norm, "query_norm")
    scale = 1.0 / np.sqrt(d) if scale is None else _positive(scale, "scale")
    tol = as_tol(tol, default=1e-9)
    if tol <= 0:
        raise InputError(f"`tol` must be > 0; got {tol}")
    # the gradient, a difference of O(spread) numbers, is exact to ~eps * spread: R |g| cannot go lower
    tol = max(tol, _ROUNDING_FLOOR * radius * scale * _spread(points, offsets))
    queries = np.zeros((n, d))
    f = np.zeros(n)
    gaps = np.zeros(n)
    worst = 0
    block = max(1, _BLOCK_ENTRIES // (n * d + d * d))
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        q, f_block, gap_block, iterations = _solve_block(points, offsets, rows, radius, scale, tol)
        queries[rows], f[rows], gaps[rows] = q, f_block, gap_block
        worst = max(worst, iterations)
    if np.any(gaps > tol):
        bad = np.flatnonzero(gaps > tol)
        worst_key = int(bad[np.argmax(gaps[bad])])
        warnings.warn(f"max_attention: {bad.size} key(s) stopped with a duality gap above tol={tol} (largest "
                      f"{gaps.max():.3g} at key {worst_key}); their upper_bounds still hold",
                      GeomlnWarning, stacklevel=2)
    return MaxAttention(weights=np.exp(-f), upper_bounds=np.exp(np.minimum(gaps - f, 0.0)), queries=queries,
                        gaps=gaps, query_norm=radius, scale=float(scale), tol=tol, iterations=worst)


def _positive(value, name):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a positive number; got {type(value).__name__} {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise InputError(f"`{name}` must be a finite number > 0; got {value!r}")
    return number
