"""Angles of vectors to directions, to the all-ones vector and to fitted hyperplanes."""

from dataclasses import dataclass

import numpy as np

from .._validation import as_float_array, as_points, as_vector
from ..errors import InputError

__all__ = ["angle_to", "angle_to_ones", "fit_hyperplane", "angle_to_hyperplane", "Hyperplane"]


def _unit_rows(vectors, name):
    # Divide by the largest entry first so that norms of tiny or huge vectors neither underflow nor overflow.
    peak = np.abs(vectors).max(axis=-1)
    zero = peak == 0
    if zero.any():
        if zero.ndim == 0:
            raise InputError(f"`{name}` is a zero vector; its angle is undefined")
        first = tuple(int(i) for i in np.argwhere(zero)[0])
        where = f"row {first[0]}" if len(first) == 1 else f"index {first}"
        raise InputError(
            f"`{name}` has {int(zero.sum())} zero vector(s) (first at {where}); its angle is undefined"
        )
    rescaled = vectors / peak[..., None]
    return rescaled / np.linalg.norm(rescaled, axis=-1)[..., None]


def _angles(vectors, direction, direction_name):
    """Unfolded angles in degrees; Kahan's ``2 atan2(|u - v|, |u + v|)`` stays accurate near 0 and 180."""
    array = as_float_array(vectors, "vectors")
    d = array.shape[-1]
    direction = as_vector(direction, direction_name, length=d, length_name="the last axis of `vectors`")
    u, v = _unit_rows(array, "vectors"), _unit_rows(direction, direction_name)
    return np.degrees(2.0 * np.arctan2(np.linalg.norm(u - v, axis=-1), np.linalg.norm(u + v, axis=-1)))


def _fold(degrees):
    return 90.0 - np.abs(degrees - 90.0)


def angle_to(vectors, direction, *, folded=False):
    """Angle in degrees between each vector and a direction.

    Parameters
    ----------
    vectors : array_like, shape (..., d)
        Non-zero vectors along the last axis.
    direction : array_like, shape (d,)
        A non-zero direction.
    folded : bool, default False
        If True, return the angle to the *line* spanned by `direction`,
        ``90 - |theta - 90|`` in [0, 90], so that ``v`` and ``-v`` count alike.

    Returns
    -------
    ndarray, shape (...)
        Angles in [0, 180] (or [0, 90] when folded).

    Raises
    ------
    InputError
        If a vector or the direction is zero, or the lengths of the last axes differ.

    Examples
    --------
    >>> import geomln
    >>> geomln.angle_to([[1.0, 0.0], [-1.0, 1.0]], [1.0, 0.0])
    array([  0., 135.])
    >>> geomln.angle_to([[1.0, 0.0], [-1.0, 1.0]], [1.0, 0.0], folded=True)
    array([ 0., 45.])
    """
    degrees = _angles(vectors, direction, "direction")
    return _fold(degrees) if folded else degrees


def angle_to_ones(vectors, *, folded=False):
    """Angle in degrees between each vector and the all-ones vector ``1``.

    With ``folded=True`` this is the paper's "angle of the queries to 1" metric.

    Parameters
    ----------
    vectors : array_like, shape (..., d)
        Non-zero vectors along the last axis.
    folded : bool, default False
        Angle to the line through ``1`` (in [0, 90]) instead of to the ray.

    Returns
    -------
    ndarray, shape (...)

    See Also
    --------
    angle_to

    Examples
    --------
    >>> import geomln
    >>> geomln.angle_to_ones([[2.0, 2.0, 2.0], [1.0, -1.0, 0.0]])
    array([ 0., 90.])
    """
    array = as_float_array(vectors, "vectors")
    return angle_to(array, np.ones(array.shape[-1]), folded=folded)


@dataclass(frozen=True)
class Hyperplane:
    """An affine hyperplane ``{x : normal . x == offset}`` fitted to points.

    Attributes
    ----------
    normal : ndarray, shape (d,)
        Unit normal, oriented so that its sum is >= 0 (towards ``1``).
    offset : float
        ``normal . centroid``.
    centroid : ndarray, shape (d,)
        Mean of the fitted points (the plane passes through it).
    rms_residual : float
        Root mean square of the points' signed distances to the plane.
    angle_to_ones : float
        Folded angle in degrees between `normal` and ``1``: 0 for LayerNorm outputs.
    is_unique : bool
        False when many hyperplanes fit the points equally well (the one returned is still a
        best fit): when they span fewer than ``d - 1`` dimensions, or when the two smallest
        singular values of the centred points tie (e.g. points spread evenly over a sphere).
    """

    normal: np.ndarray
    offset: float
    centroid: np.ndarray
    rms_residual: float
    angle_to_ones: float
    is_unique: bool


def fit_hyperplane(points):
    """Fit the affine hyperplane that minimises the squared distances to `points` (total least squares).

    Parameters
    ----------
    points : array_like, shape (n, d)
        At least two points in ``d >= 2`` dimensions.

    Returns
    -------
    Hyperplane

    Raises
    ------
    InputError
        If ``d < 2`` (a hyperplane of a line is a point: undefined here), ``n < 2``, or non-finite values.

    Notes
    -----
    The normal is the right singular vector of the centred points with the smallest singular
    value. LayerNorm outputs (without affine map) lie exactly in the plane ``sum(x) = 0``, so the
    fitted normal is parallel to ``1`` and the residual is zero up to rounding.

    Examples
    --------
    >>> import numpy as np, geomln
    >>> keys = geomln.layer_norm(np.random.default_rng(0).normal(size=(50, 4)))
    >>> plane = geomln.fit_hyperplane(keys)
    >>> bool(plane.rms_residual < 1e-12), bool(plane.angle_to_ones < 1e-6)
    (True, True)
    """
    array = as_points(points, "points", min_rows=2, min_dim=2)
    n, d = array.shape
    centroid = array.mean(axis=0)
    _, singular_values, vt = np.linalg.svd(array - centroid, full_matrices=True)
    normal = vt[-1]
    total = normal.sum()
    if total < 0 or (total == 0 and normal[np.flatnonzero(normal)[0]] < 0):
        normal = -normal
    residuals = (array - centroid) @ normal
    padded = np.zeros(d)
    padded[: singular_values.size] = singular_values
    scale_ = max(padded[0], np.finfo(float).tiny)
    is_unique = bool(padded[d - 2] - padded[d - 1] > 1e3 * np.finfo(float).eps * scale_ * max(n, d))
    return Hyperplane(
        normal=normal,
        offset=float(normal @ centroid),
        centroid=centroid,
        rms_residual=float(np.sqrt(np.mean(residuals**2))),
        angle_to_ones=float(angle_to_ones(normal, folded=True)),
        is_unique=is_unique,
    )


def angle_to_hyperplane(vectors, normal):
    """Angle in degrees between each vector and a hyperplane through the origin with the given normal.

    Parameters
    ----------
    vectors : array_like, shape (..., d)
        Non-zero vectors.
    normal : array_like, shape (d,)
        Normal of the hyperplane (need not be unit length).

    Returns
    -------
    ndarray, shape (...)
        Angles in [0, 90]: 0 for vectors inside the plane, 90 for vectors along the normal.

    Raises
    ------
    InputError
        If a vector or the normal is zero, or the lengths of the last axes differ.

    Examples
    --------
    >>> import geomln
    >>> geomln.angle_to_hyperplane([[1.0, -1.0], [1.0, 1.0]], [1.0, 1.0])
    array([ 0., 90.])
    """
    return 90.0 - _fold(_angles(vectors, normal, "normal"))
