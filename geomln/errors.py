"""Exception and warning classes raised by geomln.

Every error geomln raises on purpose is a :class:`GeomlnError`, so callers can
catch them all at once; each also subclasses the builtin that fits it, so code
written against NumPy conventions (``except ValueError``) keeps working.
"""

__all__ = ["GeomlnError", "InputError", "DataFileError", "GeomlnWarning"]


class GeomlnError(Exception):
    """Base class of every error geomln raises deliberately."""


class InputError(GeomlnError, ValueError):
    """An argument has the wrong shape or holds values geomln cannot use (NaN, inf, empty, ...)."""


class DataFileError(GeomlnError, OSError):
    """A data file is missing, unreadable, of an unsupported format or lacks the requested array."""


class GeomlnWarning(UserWarning):
    """A result is valid but may not mean what the caller expects."""
