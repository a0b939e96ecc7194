"""The largest softmax attention weight each key can receive from a query of bounded norm.

Selectability (:func:`~geomln.selectable_keys`) is a yes/no answer that allows queries of any norm. Real
queries have bounded norms, so a vertex that needs an enormous query to win is unselectable in practice.
:func:`max_attention` turns the verdict into a number: ``max_{|q| <= R} softmax(scale * K q + b)_i``.
"""

import sys
import warnings
from dataclasses import dataclass

import numpy as np

from .._blas import one_blas_thread
from .._jit import get_num_threads
from .._validation import as_points, as_tol, as_vector
from ..errors import GeomlnWarning, InputError
from ._attention_kernels import solve_keys

__all__ = ["MaxAttention", "max_attention"]

_ROUNDING_FLOOR = 1000 * np.finfo(float).eps
_LOOSE_TOL = 1e-3  # gap of the continuation stages before the last
_ITERATIONS_GUESS = 6  # Newton iterations per key, all stages (for sizing progress steps only)
_CHUNK_WORK = 10**8  # floating-point operations per progress step
_PROGRESS_DELAY = 1.0  # seconds before the bar appears


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
        Newton iterations used by the slowest key (all continuation stages).
    """

    weights: np.ndarray
    upper_bounds: np.ndarray
    queries: np.ndarray
    gaps: np.ndarray
    query_norm: float
    scale: float
    tol: float
    iterations: int


def _spread(keys, bias):
    return float(np.linalg.norm(keys - keys.mean(axis=0), axis=1).max()) + float(np.ptp(bias))


def _radii(radius, scale, spread):
    """Continuation radii, growing 4-fold from ~8 / (scale * spread) up to `radius`.

    On a large ball the objective is nearly piecewise linear and Newton's model is poor far from the
    optimum; on a ball of radius ~ 1 / (scale * spread) it is well conditioned, and each optimum is a
    good start on a ball 4 times larger.
    """
    radii = [radius]
    if spread > 0:
        while radii[-1] * scale * spread > 8.0:
            radii.append(radii[-1] / 4.0)
    return np.array(radii[::-1])


def _chunks(n, d):
    """Key ranges of ~0.1 s of work each (one progress-bar step), at least a few keys per thread."""
    per_key = _ITERATIONS_GUESS * (n * d * (d + 2) + d**3)
    size = max(16 * get_num_threads(), _CHUNK_WORK // per_key)
    return [np.arange(start, min(n, start + size)) for start in range(0, n, size)]


def max_attention(keys, *, query_norm, bias=None, scale=None, tol=1e-9, progress=True):
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
    progress : bool, default True
        Show a tqdm progress bar on stderr (keys done) for runs longer than a second.

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
    ``q = -R g / |g|`` on its boundary). Each key runs its own projected Newton method in a numba kernel
    (keys in parallel): the Hessian ``s^2 sum_j p_j (k_j - m)(k_j - m)^T`` is built once per iteration in
    ``O(n d^2)``, the exact quadratic model is minimised over the ball (``x(mu) = (H + mu I)^{-1} (H q - g)``,
    ``mu >= 0`` from a few monotone Newton steps on the secular equation ``1/|x(mu)| = 1/R``, one Cholesky
    factor each, warm-started from the previous iteration), followed by an Armijo line search; it stops when
    the gap is at most `tol`. A continuation in the radius (balls growing 4-fold from ``~8 / (s spread)``,
    each solved to a gap of 1e-3 and warm-starting the next) keeps the model good far from the optimum. Each
    iteration costs ``O(n d^2 + d^3)`` per key, a few iterations per key (about 10 ms of CPU for all 80 keys
    of a MiniLM head in d = 32). A vertex's weight tends to 1 as ``R -> inf``; an interior key's
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
    spread = _spread(points, offsets)
    tol = max(tol, _ROUNDING_FLOOR * radius * scale * spread)
    centred = np.ascontiguousarray(points - points.mean(axis=0))  # translation invariant; exact gradients
    radii = _radii(radius, scale, spread)
    queries = np.zeros((n, d))
    f = np.zeros(n)
    gaps = np.zeros(n)
    iterations = np.zeros(n, dtype=np.intp)
    from tqdm import tqdm

    with tqdm(total=n, unit="key", desc="max_attention", file=sys.stderr, disable=not progress,
              delay=_PROGRESS_DELAY, leave=False, dynamic_ncols=True) as bar:
        for rows in _chunks(n, d):
            block = slice(rows[0], rows[-1] + 1)
            with one_blas_thread():  # the kernel's threads each call BLAS
                solve_keys(centred, offsets, rows, radii, float(scale), tol, max(tol, _LOOSE_TOL), queries[block],
                           f[block], gaps[block], iterations[block])
            bar.update(rows.size)
    if np.any(gaps > tol):
        bad = np.flatnonzero(gaps > tol)
        worst_key = int(bad[np.argmax(gaps[bad])])
        warnings.warn(f"max_attention: {bad.size} key(s) stopped with a duality gap above tol={tol} (largest "
                      f"{gaps.max():.3g} at key {worst_key}); their upper_bounds still hold",
                      GeomlnWarning, stacklevel=2)
    return MaxAttention(weights=np.exp(-f), upper_bounds=np.exp(np.minimum(gaps - f, 0.0)), queries=queries,
                        gaps=gaps, query_norm=radius, scale=float(scale), tol=tol,
                        iterations=int(iterations.max()))


def _positive(value, name):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a positive number; got {type(value).__name__} {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise InputError(f"`{name}` must be a finite number > 0; got {value!r}")
    return number
