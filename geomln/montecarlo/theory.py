"""Exact expected number of vertices of the Gaussian polytope and the unselectable fraction it implies.

A key is unselectable by attention exactly when it is not a vertex of the convex hull of all keys
(Brody, Alon & Yahav 2023), so for ``n`` keys drawn iid from the standard normal distribution in
``R^d`` the expected unselectable fraction is ``1 - E f0 / n``, where ``E f0`` is the expected number
of vertices of the Gaussian polytope. This module evaluates ``E f0`` exactly (to rounding error) from
the angle sums of the regular simplex; no random numbers are drawn.
"""

import functools
import numbers

import numpy as np
from scipy import special

from .._validation import as_positive_int
from ..errors import InputError

__all__ = ["expected_vertices_gaussian", "unselectable_fraction_gaussian"]

_SQRT2 = float(np.sqrt(2.0))
_HALF_LOG_2PI = float(0.5 * np.log(2.0 * np.pi))
# Trapezoid rule for the external-angle integral, in units of the curvature scale at its mode: a
# step of 0.25 is exact to ~1e-14 (0.4 already loses 4e-11); the sum stops 60 nats below the mode.
_EXTERNAL_STEP = 0.25
_EXTERNAL_LEFT = 12.0  # left of the mode the log-integrand falls at least like -u**2/2
_EXTERNAL_PROBE = 8.0  # the right end is found from the tangent line there (the log-integrand is concave)
_DROP = 60.0
_INTERNAL_STEP = 0.2  # trapezoid step for the internal-angle contour integral, in curvature units
_INTERNAL_T_MAX = 7.0  # |integrand| <= its saddle value * exp(-t**2): exp(-49) is below rounding
_CHUNK = 2048  # rows per block in the vectorised external-angle quadrature (memory ~ 10 MB)
_COMPLEMENT_BLOCK = 16  # terms per block of the complementary series


def _mills(z):
    """Return ``phi(z) / Phi(z)`` for the standard normal density and distribution, stable for all z."""
    return np.exp(-0.5 * z * z - _HALF_LOG_2PI - special.log_ndtr(z))


def _bisect_increasing(fun, lo, hi, steps=64):
    """Vectorised bisection for the root of an increasing function bracketed by ``[lo, hi]``."""
    lo = np.array(lo, dtype=np.float64)
    hi = np.array(hi, dtype=np.float64)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        above = fun(mid) > 0
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def _stirling_error(x):
    """Return ``log(x!) - (x + 1/2) log x + x - log sqrt(2 pi)`` for x >= 1 (Loader 2000)."""
    x = np.asarray(x, dtype=np.float64)
    small = x < 16
    xs = np.where(small, np.maximum(x, 1.0), 16.0)
    direct = special.gammaln(xs + 1) - (xs + 0.5) * np.log(xs) + xs - _HALF_LOG_2PI
    xl = np.where(small, 16.0, x)
    i2 = 1.0 / (xl * xl)
    series = (1 / 12 - i2 * (1 / 360 - i2 * (1 / 1260 - i2 * (1 / 1680 - i2 / 1188)))) / xl
    return np.where(small, direct, series)


def _log_binom(a, b):
    """Return ``log C(a, b)`` for integers 0 <= b <= a, accurate to ~1e-15 relative even for huge a.

    ``gammaln(a + 1) - gammaln(b + 1) - ...`` loses ~1e-10 to cancellation at a = 1e5; this uses
    Loader's saddle-point form with the large terms written through ``log1p``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    edge = (b == 0) | (b == a)
    bb = np.where(edge, 1.0, b)
    aa = np.where(edge, 2.0, a)
    cc = aa - bb
    value = (
        bb * np.log(aa / bb)
        - cc * np.log1p(-bb / aa)
        + 0.5 * np.log(aa / (2 * np.pi * bb * cc))
        + _stirling_error(aa)
        - _stirling_error(bb)
        - _stirling_error(cc)
    )
    return np.where(edge, 0.0, value)


def _log_external_angles(m, n):
    """Return ``log gamma_{m,n}``, the external angle of the regular `n`-vertex simplex at an `m`-vertex face.

    ``gamma_{m,n} = sqrt(m/pi) * Integral exp(-m x^2) Phi(sqrt(2) x)^(n-m) dx``. The log-integrand
    ``f(x) = -m x^2 + (n-m) log Phi(sqrt(2) x)`` is concave; its mode ``x0 > 0`` is found by bisection and
    the integral is a trapezoid sum over ``x0 + s * u`` with ``s = 1/sqrt(-f''(x0))``. Since
    ``-(log Phi)''`` decreases, ``f`` falls at least like ``-u^2/2`` left of the mode, so ``u >= -12``
    suffices; on the right, concavity puts ``f`` below its tangent at ``u = 8``, which tells how far to
    go for ``f`` to drop 60 nats. Rows are grouped by that right end (a multiple of 8).
    """
    m = np.asarray(m, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    k = n - m
    out = np.zeros(m.shape)
    todo = np.flatnonzero(k > 0)
    for start in range(0, todo.size, _CHUNK):
        idx = todo[start : start + _CHUNK]
        mi, ki = m[idx], k[idx]

        def slope(x, mi=mi, ki=ki):
            return -2 * mi * x + ki * _SQRT2 * _mills(_SQRT2 * x)

        def logf(x, mi=mi, ki=ki):
            return -mi * x * x + ki * special.log_ndtr(_SQRT2 * x)

        hi = np.sqrt(np.log(np.maximum(ki, 1.0))) + 2.0  # slope < 0 there (Mills-ratio bound)
        x0 = _bisect_increasing(lambda x: -slope(x), np.zeros_like(mi), hi)
        z0 = _SQRT2 * x0
        r0 = _mills(z0)
        scale = 1.0 / np.sqrt(2 * mi + 2 * ki * r0 * (z0 + r0))
        f0 = logf(x0)
        x1 = x0 + _EXTERNAL_PROBE * scale
        drop1 = f0 - logf(x1)
        more = np.maximum(_DROP - drop1, 0.0) / np.maximum(-slope(x1) * scale, 1e-300)
        right = _EXTERNAL_PROBE * np.ceil((_EXTERNAL_PROBE + more) / _EXTERNAL_PROBE)
        for end in np.unique(right):
            rows = np.flatnonzero(right == end)
            nodes = np.arange(-_EXTERNAL_LEFT, end + _EXTERNAL_STEP / 2, _EXTERNAL_STEP)
            x = x0[rows, None] + scale[rows, None] * nodes
            total = np.exp(logf(x, mi[rows, None], ki[rows, None]) - f0[rows, None]).sum(axis=1)
            log_integral = f0[rows] + np.log(total * _EXTERNAL_STEP * scale[rows])
            out[idx[rows]] = 0.5 * np.log(mi[rows] / np.pi) + log_integral
    return out


@functools.lru_cache(maxsize=4096)
def _log_internal_angle(m):
    """Return ``log beta_m``: the internal angle at a vertex of the regular simplex with `m` vertices.

    ``beta_m`` is the orthant probability of ``m - 1`` equicorrelated standard normals with correlation
    ``-1/(m-1)``, which equals ``sqrt(m/pi) * Integral exp(-m x^2) ((1 + erf(i x))/2)^(m-1) dx`` over the
    real line. That integrand oscillates and cancels; substituting ``y = i x`` turns it into
    ``sqrt(m/pi) * Integral exp(m y^2) Phi(sqrt(2) y)^(m-1) dt`` along any vertical line ``y = c + i t``
    (the integrand is entire and its modulus on such a line is at most ``g(c) exp(-t^2)``). Taking ``c < 0``
    at the minimum of ``g`` on the real axis (a saddle point) makes the integrand positive near
    ``t = 0`` and the sum well conditioned. ``Phi`` is evaluated through the Faddeeva function,
    ``Phi(sqrt(2) y) = exp(-y^2) w(-i y) / 2``, which never overflows.
    """
    if m == 1:
        return 0.0
    lo = -np.sqrt((m - 1) / 2.0) - 1.0  # F' < 0 there (upper Mills-ratio bound)
    c = float(_bisect_increasing(lambda c: 2 * m * c + (m - 1) * _SQRT2 * _mills(_SQRT2 * c), lo, 0.0))
    z = _SQRT2 * c
    r = float(_mills(z))
    log_g_c = m * c * c + (m - 1) * float(special.log_ndtr(z))
    step = _INTERNAL_STEP / np.sqrt(2 * m - 2 * (m - 1) * r * (z + r))
    t = np.arange(0.0, _INTERNAL_T_MAX + step, step)
    y = c + 1j * t
    values = np.exp(y * y + (m - 1) * np.log(0.5 * special.wofz(-1j * y)) - log_g_c).real
    half_integral = step * (0.5 * values[0] + values[1:].sum())
    return float(0.5 * np.log(m / np.pi) + np.log(2.0 * half_integral) + log_g_c)


def _log_terms(m, n):
    """Return ``log(C(n-1, m-1) * beta_m * gamma_{m,n})`` for integer arrays 1 <= m <= n of equal shape.

    The terms over m = 1..n form a probability distribution (they sum to 1, the angle-sum relation
    of the regular simplex at a vertex), and those of odd and of even m each sum to 1/2. Repeated
    ``(m, n)`` pairs (a grid shares them across values of d) are computed once.
    """
    m = np.asarray(m, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    pairs, inverse = np.unique(np.stack([m.ravel(), n.ravel()], axis=1), axis=0, return_inverse=True)
    um, un = pairs[:, 0], pairs[:, 1]
    log_beta = np.array([_log_internal_angle(int(v)) for v in um])
    logs = _log_binom(un - 1, um - 1) + log_beta + _log_external_angles(um, un)
    return logs[inverse.ravel()].reshape(m.shape)


def _direct_sums(n, d):
    """Return ``S = sum_{m = d, d-2, ... >= 1} C(n-1, m-1) beta_m gamma_{m,n}`` for 1-D arrays n > d + 1."""
    counts = (d + 1) // 2
    owner = np.repeat(np.arange(n.size), counts)
    offset = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    m = d[owner] - 2 * offset
    terms = np.exp(_log_terms(m, n[owner]))
    return np.bincount(owner, weights=terms, minlength=n.size)


def _complement_sums(n, d):
    """Return ``sum_{m = d+2, d+4, ... <= n} C(n-1, m-1) beta_m gamma_{m,n}`` for 1-D arrays n > d + 1.

    All series advance together, a block of terms at a time; a series is cut once its terms
    decrease and have fallen below 1e-18 of its running total (or it reaches ``m = n``).
    """
    totals = np.zeros(n.size)
    active = np.arange(n.size)
    offsets = 2 * np.arange(_COMPLEMENT_BLOCK)
    start = d + 2
    while active.size:
        m = start[active, None] + offsets
        valid = m <= n[active, None]
        terms = np.zeros(m.shape)
        terms[valid] = np.exp(_log_terms(m[valid], np.broadcast_to(n[active, None], m.shape)[valid]))
        totals[active] += terms.sum(axis=1)
        last = terms[:, -1]
        done = ~valid[:, -1] | ((last < terms[:, -2]) & (last <= 1e-18 * totals[active]))
        start[active] += 2 * _COMPLEMENT_BLOCK
        active = active[~done]
    return totals


def _fractions(n, d):
    """Return the unselectable fraction and ``E f0`` for 1-D int64 arrays `n` and `d` of equal length."""
    fraction = np.zeros(n.size)
    vertices = n.astype(np.float64)
    line = (d == 1) & (n > 2)
    fraction[line] = 1.0 - 2.0 / n[line]
    vertices[line] = 2.0
    general = np.flatnonzero((d > 1) & (n > d + 1))
    if general.size:
        sums = _direct_sums(n[general], d[general])
        fraction[general] = 1.0 - 2.0 * sums
        vertices[general] = 2.0 * n[general] * sums
        # Below 1/2 the complementary series, a sum of positive terms, keeps relative accuracy.
        small = general[fraction[general] < 0.5]
        if small.size:
            tails = 2.0 * _complement_sums(n[small], d[small])
            fraction[small] = tails
            vertices[small] = n[small] * (1.0 - tails)
    return fraction, vertices


def _as_counts(value, name):
    """Return `value` (an int or array-like of ints, each >= 1) as an int64 array, raising on bad input."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return np.asarray(as_positive_int(value, name), dtype=np.int64)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"`{name}` must be an integer or an array of integers; could not convert it ({exc})"
        ) from None
    if array.size == 0:
        raise InputError(f"`{name}` must not be empty; got shape {array.shape}")
    if array.dtype.kind not in "iu":
        found = "NaN" if array.dtype.kind == "f" and np.isnan(array).any() else f"dtype {array.dtype}"
        raise TypeError(
            f"`{name}` must be an integer or an array of integers; got {found}"
            + (" (convert with int(...) or .astype(int))" if array.dtype.kind == "f" else "")
        )
    bad = array < 1
    if bad.any():
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape))
        raise InputError(f"`{name}` must be >= 1 everywhere; got {array[first]} at index {first}")
    if array.dtype.kind == "u" and (array > np.iinfo(np.int64).max).any():
        raise InputError(f"`{name}` must be below 2**63; got {array.max()}")
    return array.astype(np.int64)


def _evaluate(n, d):
    n_array = _as_counts(n, "n")
    d_array = _as_counts(d, "d")
    try:
        n_b, d_b = np.broadcast_arrays(n_array, d_array)
    except ValueError:
        raise InputError(
            f"`n` and `d` must broadcast to a common shape; got shapes {n_array.shape} and {d_array.shape}"
        ) from None
    pairs, inverse = np.unique(np.stack([n_b.ravel(), d_b.ravel()], axis=1), axis=0, return_inverse=True)
    fraction, vertices = _fractions(pairs[:, 0], pairs[:, 1])
    inverse = inverse.reshape(n_b.shape)
    return fraction[inverse], vertices[inverse], n_b.ndim == 0


def expected_vertices_gaussian(n, d):
    r"""Return the expected number of vertices of the hull of `n` iid standard normal points in ``R^d``.

    Parameters
    ----------
    n : int or array_like of int
        Number of points, >= 1.
    d : int or array_like of int
        Dimension, >= 1. Broadcast against `n`.

    Returns
    -------
    float or ndarray
        ``E f0``, a float when both arguments are scalars, else an array of their broadcast shape.
        Equal to `n` when ``n <= d + 1`` (the points are then affinely independent almost surely)
        and to 2 when ``d = 1`` and ``n >= 2``.

    Raises
    ------
    TypeError
        If `n` or `d` is not an integer or an array of integers (floats, NaN, strings).
    InputError
        If a value is below 1, an array is empty, or the shapes do not broadcast.

    See Also
    --------
    unselectable_fraction_gaussian : ``1 - E f0 / n``.

    Notes
    -----
    By Baryshnikov & Vitale (1994) the Gaussian polytope has the face numbers of a uniformly random
    projection to ``R^d`` of the regular simplex ``T`` with `n` vertices, so Affentranger & Schneider's
    (1992) projection formula gives

    .. math::

        E f_0 = 2 \sum_{m = d, d-2, \ldots \geq 1} m \binom{n}{m} \beta_m \gamma_{m,n},

    with :math:`\beta_m` the internal angle at a vertex of the regular simplex with `m` vertices
    (the orthant probability of ``m - 1`` standard normals with correlation ``-1/(m-1)``) and
    :math:`\gamma_{m,n} = \sqrt{m/\pi}\int e^{-m x^2} ((1 + \operatorname{erf} x)/2)^{n-m} dx` the
    external angle of ``T`` at a face with `m` vertices (Kabluchko & Zaporozhets 2020). The internal
    angle is evaluated as the same kind of integral along a vertical line of the complex plane
    through a saddle point, where it does not cancel; all terms are positive and summed in log space.
    Because ``m C(n, m) beta_m gamma_{m,n} / n`` over all ``m`` sums to 1 with odd and even ``m``
    each giving 1/2, ``n - E f0`` equals the same sum over ``m = d + 2, d + 4, ...``; this
    complementary series is used when fewer than half of the points are expected to be interior,
    which keeps relative accuracy for tiny fractions. The absolute error of the fraction is about
    1e-13 for ``d <= 30`` and ``n <= 10**5``; each value costs ``O(d)`` one-dimensional quadratures.

    References
    ----------
    .. [1] F. Affentranger and R. Schneider, "Random projections of regular simplices",
       Discrete Comput. Geom. 7 (1992) 219-226.
    .. [2] Yu. M. Baryshnikov and R. A. Vitale, "Regular simplices and Gaussian samples",
       Discrete Comput. Geom. 11 (1994) 141-147.
    .. [3] Z. Kabluchko and D. Zaporozhets, "Absorption probabilities for Gaussian polytopes and
       regular spherical simplices", Adv. Appl. Probab. 52 (2020) 588-616, arXiv:1704.04968.

    Examples
    --------
    >>> import geomln
    >>> round(geomln.expected_vertices_gaussian(10, 2), 4)
    5.4547
    >>> geomln.expected_vertices_gaussian([3, 4, 100], 1)
    array([2., 2., 2.])
    >>> geomln.expected_vertices_gaussian(5, 4)
    5.0
    """
    _, vertices, scalar = _evaluate(n, d)
    return float(vertices) if scalar else vertices


def unselectable_fraction_gaussian(n, d):
    """Return the expected fraction of `n` iid standard normal keys in ``R^d`` that are unselectable.

    Parameters
    ----------
    n : int or array_like of int
        Number of keys, >= 1.
    d : int or array_like of int
        Dimension, >= 1. Broadcast against `n`.

    Returns
    -------
    float or ndarray
        ``1 - E f0 / n`` in [0, 1): a float when both arguments are scalars, else an array of their
        broadcast shape. Zero when ``n <= d + 1``; exactly ``1 - 2/n`` when ``d = 1``.

    Raises
    ------
    TypeError
        If `n` or `d` is not an integer or an array of integers (floats, NaN, strings).
    InputError
        If a value is below 1, an array is empty, or the shapes do not broadcast.

    See Also
    --------
    expected_vertices_gaussian : the formula, its references and its accuracy.

    Notes
    -----
    A key is unselectable when no query gives it the largest attention score, which happens
    exactly when it lies in the convex hull of the other keys (Brody, Alon & Yahav 2023). The
    fraction increases with `n` and decreases with `d`. It is computed as
    ``1 - 2 sum_{m = d, d-2, ...} C(n-1, m-1) beta_m gamma_{m,n}`` or, when below 1/2, as
    ``2 sum_{m = d+2, d+4, ...} C(n-1, m-1) beta_m gamma_{m,n}``, which keeps relative accuracy.

    Examples
    --------
    >>> import geomln
    >>> round(geomln.unselectable_fraction_gaussian(60, 3), 5)
    0.68942
    >>> [f"{value:.4e}" for value in geomln.unselectable_fraction_gaussian(60, [5, 15])]
    ['3.0301e-01', '9.3861e-06']
    >>> geomln.unselectable_fraction_gaussian(10, 1)
    0.8
    """
    fraction, _, scalar = _evaluate(n, d)
    return float(fraction) if scalar else fraction
