"""LayerNorm as geometry: projection onto the hyperplane orthogonal to ``1``, then scaling to norm ``sqrt(d)``.

Brody, Alon & Yahav (2023) decompose ``LayerNorm(x) = scale(project(x)) * weight + bias``.
All functions act on the last axis of an array of any shape ``(..., d)`` and return float64.
"""

import numpy as np

from .._validation import as_float_array, as_vector
from ..errors import InputError

__all__ = ["project", "scale", "layer_norm", "factorized_layer_norm", "rms_norm"]


def project(x):
    """Project vectors onto the hyperplane orthogonal to the all-ones vector ``1``.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Vectors along the last axis.

    Returns
    -------
    ndarray, shape (..., d)
        ``x - mean(x)`` over the last axis: the component of each vector orthogonal to ``1``.

    Raises
    ------
    InputError
        If `x` is empty or holds NaN or infinite values.

    See Also
    --------
    scale, layer_norm

    Examples
    --------
    >>> import geomln
    >>> geomln.project([[1.0, 2.0, 6.0]])
    array([[-2., -1.,  3.]])
    """
    array = as_float_array(x, "x")
    return array - array.mean(axis=-1, keepdims=True)


def scale(x):
    """Rescale vectors to Euclidean norm ``sqrt(d)``, where ``d`` is the length of the last axis.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Non-zero vectors along the last axis.

    Returns
    -------
    ndarray, shape (..., d)
        ``x * sqrt(d) / ||x||``: every vector lies on the sphere of radius ``sqrt(d)``.

    Raises
    ------
    InputError
        If a vector is exactly zero (its direction is undefined); the message names it.

    Examples
    --------
    >>> import geomln
    >>> geomln.scale([[3.0, 4.0]]) ** 2
    array([[0.72, 1.28]])
    """
    array = as_float_array(x, "x")
    # Divide by the largest entry first: norms of tiny or huge vectors then neither underflow nor overflow.
    peak = np.abs(array).max(axis=-1, keepdims=True)
    zero = peak[..., 0] == 0
    if zero.any():
        if zero.ndim == 0:
            where = "`x` is a zero vector"
        else:
            first = tuple(int(i) for i in np.argwhere(zero)[0])
            where = f"`x` has {int(zero.sum())} zero vector(s) (first at "
            where += f"row {first[0]})" if len(first) == 1 else f"index {first})"
        raise InputError(
            f"{where}; a zero vector cannot be scaled to norm sqrt(d). "
            "Use layer_norm or rms_norm, whose eps keeps it finite"
        )
    array = array / peak
    return array * (np.sqrt(array.shape[-1]) / np.linalg.norm(array, axis=-1, keepdims=True))


def factorized_layer_norm(x, *, projection=True, scaling=True, weight=None, bias=None, eps=1e-5):
    """LayerNorm split into its parts: optional projection, optional scaling, then the affine map.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Input vectors.
    projection : bool, default True
        Subtract the mean over the last axis (the paper's "projection").
    scaling : bool, default True
        Divide by ``sqrt(mean(x**2) + eps)``, i.e. scale to norm ``sqrt(d)`` up to `eps`
        (the paper's "scaling"); the mean of squares is taken after the optional projection.
    weight, bias : array_like, shape (d,), optional
        Elementwise affine map applied last (``x * weight + bias``).
    eps : float, default 1e-5
        Added to the mean of squares; keeps zero vectors finite.

    Returns
    -------
    ndarray, shape (..., d)

    Notes
    -----
    With both parts on this is exactly :func:`layer_norm`; without projection it is
    :func:`rms_norm`; with neither it is only the affine map. With ``eps = 0`` and no affine
    map, ``factorized_layer_norm(x) == scale(project(x))``.

    Examples
    --------
    >>> import numpy as np, geomln
    >>> x = np.array([[1.0, 2.0, 6.0]])
    >>> bool(np.allclose(geomln.factorized_layer_norm(x, eps=0.0), geomln.scale(geomln.project(x))))
    True
    """
    array = as_float_array(x, "x")
    d = array.shape[-1]
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise InputError(f"`eps` must be a finite number >= 0; got {eps}")
    if projection:
        array = array - array.mean(axis=-1, keepdims=True)
    if scaling:
        array = array / np.sqrt((array * array).mean(axis=-1, keepdims=True) + eps)
    if weight is not None:
        array = array * as_vector(weight, "weight", length=d, length_name="the last axis of `x`")
    if bias is not None:
        array = array + as_vector(bias, "bias", length=d, length_name="the last axis of `x`")
    return array


def layer_norm(x, *, weight=None, bias=None, eps=1e-5):
    """Apply standard LayerNorm over the last axis, as ``torch.nn.functional.layer_norm`` does.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Input vectors.
    weight, bias : array_like, shape (d,), optional
        Elementwise affine parameters.
    eps : float, default 1e-5
        Added to the variance.

    Returns
    -------
    ndarray, shape (..., d)
        ``(x - mean) / sqrt(var + eps) * weight + bias``.

    Notes
    -----
    ``layer_norm(x) == scale(project(x)) * sqrt(var / (var + eps))``: the projection onto the
    hyperplane orthogonal to ``1`` followed by scaling to norm ``sqrt(d)``, up to the factor
    that `eps` introduces.

    Examples
    --------
    >>> import geomln
    >>> y = geomln.layer_norm([[1.0, 2.0, 6.0]], eps=0.0)
    >>> round(float(y.sum()), 12), round(float((y ** 2).sum()), 12)
    (0.0, 3.0)
    """
    return factorized_layer_norm(x, projection=True, scaling=True, weight=weight, bias=bias, eps=eps)


def rms_norm(x, *, weight=None, eps=1e-6):
    """RMSNorm: LayerNorm's scaling without its projection, as in LLaMA-style models.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Input vectors.
    weight : array_like, shape (d,), optional
        Elementwise gain.
    eps : float, default 1e-6
        Added to the mean of squares.

    Returns
    -------
    ndarray, shape (..., d)
        ``x / sqrt(mean(x**2) + eps) * weight``.

    Examples
    --------
    >>> import geomln
    >>> geomln.rms_norm([[3.0, 4.0]], eps=0.0) ** 2
    array([[0.72, 1.28]])
    """
    return factorized_layer_norm(x, projection=False, scaling=True, weight=weight, eps=eps)
