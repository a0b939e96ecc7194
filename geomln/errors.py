"""Exception and warning classes raised by geomln.

Every error geomln raises on purpose is a :class:`GeomlnError`, so callers can
catch them all at once; each also subclasses the builtin that fits it, so code
written against NumPy conventions (``except ValueError``) keeps working.
"""

__all__ = ["GeomlnError", "InputError", "DataFileError", "ClusterError", "DaskMissingError", "GeomlnWarning"]


class GeomlnError(Exception):
    """Base class of every error geomln raises deliberately."""


class InputError(GeomlnError, ValueError):
    """An argument has the wrong shape or holds values geomln cannot use (NaN, inf, empty, ...)."""


class DataFileError(GeomlnError, OSError):
    """A data file is missing, unreadable, of an unsupported format or lacks the requested array."""


class ClusterError(GeomlnError, RuntimeError):
    """The Dask cluster failed: the scheduler cannot be reached or went away, or tasks kept killing workers."""


class DaskMissingError(GeomlnError, ImportError):
    """``executor="dask"`` was asked for but dask.distributed is not installed (an ImportError)."""


class GeomlnWarning(UserWarning):
    """A result is valid but may not mean what the caller expects."""
