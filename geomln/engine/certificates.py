"""The independent checker of selectability certificates: witness queries and convex combinations.

It uses plain NumPy, none of the engine's kernels, so that a verdict can be trusted without trusting the code
that produced it.
"""

import numpy as np

from .._validation import as_bounded, as_points, as_vector
from ..errors import InputError

__all__ = ["verify_selectability"]

BLOCK_ENTRIES = 1 << 23  # entries of one block of witness scores (64 MiB)


def verify_selectability(keys, result, *, bias=None):
    """Check every certificate of a :class:`Selectability` result independently, with plain NumPy.

    A selectable key's witness query must make it the strict argmax of ``keys @ q + bias``. An
    unselectable key's combination must use other keys with weights ``>= 0`` summing to 1, reproduce the
    key within ``2 * tol * scale`` and, with a bias, reach its bias within ``2 * tol * bias_scale``.

    Parameters
    ----------
    keys : array_like, shape (n, d)
        The keys the result was computed for.
    result : Selectability
        The verdicts to check.
    bias : array_like, shape (n,), optional
        The bias the result was computed with.

    Returns
    -------
    ndarray of intp
        Sorted indices of the keys whose certificate fails (empty when all hold).

    Examples
    --------
    >>> import geomln
    >>> keys = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.2, 0.2]]
    >>> result = geomln.selectable_keys(keys)
    >>> geomln.verify_selectability(keys, result).size
    0
    """
    points = as_bounded(as_points(keys, "keys"), "keys")
    n = points.shape[0]
    if result.n != n or result.d != points.shape[1]:
        raise InputError(f"`result` is for keys of shape ({result.n}, {result.d}); got `keys` of shape {points.shape}")
    offsets = np.zeros(n) if bias is None else as_bounded(
        as_vector(bias, "bias", length=n, length_name="the number of keys"), "bias")
    # every test below depends on differences of keys (and of biases) only: measure them about the mean, in
    # units of a power of two (exact), so a common offset or a huge or tiny unit costs no precision
    points, unit = _centred(points)
    offsets, bias_unit = _centred(offsets[:, None])
    offsets = offsets[:, 0]
    failed = np.zeros(n, dtype=bool)
    selectable = np.flatnonzero(result.selectable_mask)
    block = max(1, BLOCK_ENTRIES // n)
    for start in range(0, selectable.size, block):
        rows = selectable[start:start + block]
        queries = result.witness_queries[rows]
        if not np.isfinite(queries).all():
            failed[rows[~np.isfinite(queries).all(axis=1)]] = True
            queries = np.nan_to_num(queries)
        # the bias enters the score in the keys' own unit: q.k + b = unit (q.k_scaled + (bias_unit / unit) b_scaled)
        scores = queries @ points.T + np.ldexp(offsets, bias_unit - unit)
        own = scores[np.arange(rows.size), rows].copy()
        scores[np.arange(rows.size), rows] = -np.inf
        failed[rows[~(own > scores.max(axis=1))]] = True
    unselectable = np.flatnonzero(~result.selectable_mask)
    slack = 2.0 * result.tol
    for key in unselectable:
        certificate = result.combinations.get(int(key))
        if certificate is None:
            failed[key] = True
            continue
        indices, weights = (np.asarray(part) for part in certificate)
        if (indices.size == 0 or indices.size != weights.size or np.any(indices == key) or np.any(indices < 0)
                or np.any(indices >= n) or np.any(weights < -1e-12) or abs(weights.sum() - 1.0) > 1e-9):
            failed[key] = True
            continue
        residual = np.linalg.norm(weights @ points[indices] - points[key])
        deficit = offsets[key] - weights @ offsets[indices]
        # beyond the slack, a few roundings of the centred coordinates (whose largest entry is below 1)
        if residual > slack * np.ldexp(result.scale, -unit) + 1e-15 or (
                deficit > slack * np.ldexp(result.bias_scale, -bias_unit) + 1e-15):
            failed[key] = True
    return np.flatnonzero(failed)


def _centred(points):
    """Return ``(points - mean) / 2**e`` and ``e``, the power of two that brings the largest entry into [0.5, 1)."""
    _, exponent = np.frexp(np.abs(points).max())
    scaled = np.ldexp(points, -exponent)
    centred = scaled - scaled.mean(axis=0)
    _, spread = np.frexp(np.abs(centred).max())
    return np.ldexp(centred, -spread), int(exponent + spread)
