"""The only module that coerces user input and raises on it.

Every public function passes its arguments through one of these helpers, which
return finite, C-contiguous float64 arrays (the single form the numba kernels
accept) or raise :class:`~geomln.errors.InputError` / :class:`TypeError` with a
message naming the argument, what was expected and what was found.
"""

import numbers

import numpy as np

from .errors import InputError

__all__ = [
    "as_float_array",
    "as_points",
    "as_vector",
    "as_tol",
    "as_bounded",
    "as_rng",
    "as_choice",
    "as_positive_int",
]


def _describe_nonfinite(array, name):
    bad = ~np.isfinite(array)
    n_nan = int(np.isnan(array).sum())
    n_inf = int(bad.sum()) - n_nan
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape))
    if array.ndim <= 2:
        where = f"{'row' if array.ndim == 2 else 'index'} {first[0]}"
    else:
        where = f"index {first}"
    parts = []
    if n_nan:
        parts.append(f"{n_nan} NaN value{'s' if n_nan != 1 else ''}")
    if n_inf:
        parts.append(f"{n_inf} infinite value{'s' if n_inf != 1 else ''}")
    return f"`{name}` contains {' and '.join(parts)} (first at {where}); remove or impute them first"


def as_float_array(value, name, *, min_ndim=1, allow_empty=False):
    """Return `value` as a finite C-contiguous float64 array of at least `min_ndim` dimensions.

    Raises
    ------
    TypeError
        If `value` is not numeric (strings, objects, complex numbers).
    InputError
        If it has too few dimensions, is empty, or holds NaN or infinite values.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        value = (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a numeric array; could not convert it ({exc})") from None
    if array.dtype.kind == "c":
        raise TypeError(f"`{name}` must be real-valued; got complex dtype {array.dtype}. Take .real or abs() first")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be a numeric array; got dtype {array.dtype}")
    if array.ndim < min_ndim:
        raise InputError(f"`{name}` must have at least {min_ndim} dimension(s); got shape {array.shape}")
    if array.size == 0 and not allow_empty:
        raise InputError(f"`{name}` must not be empty; got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise InputError(_describe_nonfinite(array, name))
    return array


def as_points(value, name, *, min_rows=1, min_dim=1):
    """Return `value` as a finite float64 array of shape ``(n, d)`` with ``n >= min_rows`` and ``d >= min_dim``.

    Raises
    ------
    TypeError
        If `value` is not numeric.
    InputError
        If it is not 2-D, too small, or holds NaN or infinite values.
    """
    array = as_float_array(value, name, allow_empty=True)
    if array.ndim != 2:
        raise InputError(f"`{name}` must be a 2-D array of shape (n, d); got shape {array.shape}")
    n, d = array.shape
    if n < min_rows:
        raise InputError(f"`{name}` must have at least {min_rows} row(s); got shape {array.shape}")
    if d < min_dim:
        raise InputError(f"`{name}` must have at least {min_dim} column(s) (d >= {min_dim}); got shape {array.shape}")
    return array


def as_vector(value, name, *, length=None, length_name=None):
    """Return `value` as a finite 1-D float64 array, optionally of a required `length`.

    Raises
    ------
    InputError
        If it is not 1-D, has the wrong length, or holds NaN or infinite values.
    """
    array = as_float_array(value, name, allow_empty=True)
    if array.ndim != 1:
        raise InputError(f"`{name}` must be a 1-D array; got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        what = f" ({length_name})" if length_name else ""
        raise InputError(f"`{name}` must have length {length}{what}; got length {array.shape[0]}")
    if array.shape[0] == 0:
        raise InputError(f"`{name}` must not be empty; got shape {array.shape}")
    return array


#: largest magnitude the geometry accepts: sums and squares of (scaled) entries must stay finite
MAX_MAGNITUDE = 1e300


def as_bounded(array, name):
    """Return the finite float64 `array` if every entry is at most :data:`MAX_MAGNITUDE` in magnitude.

    Raises
    ------
    InputError
        If an entry is larger, naming the limit and the first such entry.
    """
    peak = np.abs(array)
    if array.size and peak.max() > MAX_MAGNITUDE:
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(peak > MAX_MAGNITUDE)), array.shape))
        raise InputError(
            f"`{name}` must have entries of magnitude <= {MAX_MAGNITUDE:.0e} (sums and squares of larger floats "
            f"overflow); got {array[first]:.3e} at index {first}. Divide by a constant first: verdicts do not "
            "depend on the unit"
        )
    return array


def as_tol(value, name="tol", *, default):
    """Return a relative tolerance: `default` for None, else a finite float >= 0.

    Raises
    ------
    InputError
        If the tolerance is negative, NaN or infinite.
    """
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number or None; got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise InputError(f"`{name}` must be a finite number >= 0; got {value}")
    return value


def as_positive_int(value, name, *, minimum=1):
    """Return `value` as an int >= `minimum`.

    Raises
    ------
    InputError
        If it is smaller than `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise InputError(f"`{name}` must be >= {minimum}; got {value}")
    return int(value)


def as_choice(value, name, choices):
    """Return `value` if it is one of `choices`.

    Raises
    ------
    InputError
        If it is not, listing the valid choices.
    """
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise InputError(f"`{name}` must be one of {listed}; got {value!r}")
    return value


def as_rng(value, name="rng"):
    """Return a :class:`numpy.random.Generator` from an int, a SeedSequence, a Generator or None."""
    if value is None or isinstance(value, (numbers.Integral, np.random.SeedSequence, np.random.Generator)):
        return np.random.default_rng(value)
    raise TypeError(f"`{name}` must be an int, a numpy Generator, a SeedSequence or None; got {type(value).__name__}")
