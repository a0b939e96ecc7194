"""Reading numeric matrices from the files people save them in."""

import warnings
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataFileError

__all__ = ["load_array", "TEXT_SUFFIXES"]

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}
_SUPPORTED = (".npy", ".npz", *TEXT_SUFFIXES)


def _input_file(path, supported):
    """Return ``(Path, lower-case suffix)`` of an existing file whose suffix is in `supported`.

    Raises :class:`DataFileError` naming the path and listing `supported` for an unknown suffix, and
    naming the path when no such file exists. Shared by :func:`load_array` and :func:`geomln.load_keys`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in supported:
        raise DataFileError(f"unsupported file type {suffix or '(none)'!r} for {str(path)!r}; "
                            f"supported: {', '.join(supported)}")
    if not path.is_file():
        raise DataFileError(f"no such file: {str(path)!r}")
    return path, suffix


def _read_npz(path, stream, name):
    with np.load(stream, allow_pickle=False) as archive:
        names = list(archive.files)
        if name is None:
            if len(names) != 1:
                raise DataFileError(
                    f"{str(path)!r} holds {len(names)} arrays; choose one with name=... (available: {', '.join(names)})"
                )
            name = names[0]
        if name not in names:
            raise DataFileError(f"{str(path)!r} has no array {name!r} (available: {', '.join(names)})")
        return archive[name]


def load_array(path, *, name=None):
    """Read one numeric array from a ``.npy``, ``.npz``, ``.csv``, ``.tsv`` or ``.txt`` file.

    Parameters
    ----------
    path : str or Path
        The file. Text files hold one row per line, separated by commas (``.csv``), tabs
        (``.tsv``) or white space (``.txt``); lines starting with ``#`` are comments.
    name : str, optional
        For ``.npz`` archives holding several arrays, which one to read.

    Returns
    -------
    ndarray
        The array as stored (validation is left to the function that uses it).

    Raises
    ------
    DataFileError
        If the file is missing, unreadable, of an unsupported suffix, lacks the named array,
        or is a text file without numbers.

    Examples
    --------
    >>> import numpy as np, tempfile, os, geomln
    >>> path = os.path.join(tempfile.mkdtemp(), "keys.npy")
    >>> np.save(path, np.eye(3))
    >>> geomln.load_array(path).shape
    (3, 3)
    """
    path, suffix = _input_file(path, _SUPPORTED)
    try:
        if suffix in TEXT_SUFFIXES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # numpy warns on a file without data
                array = np.loadtxt(path, delimiter=TEXT_SUFFIXES[suffix], ndmin=2, comments="#")
        else:
            # Open the file here so that it is closed even when numpy fails half-way (a truncated .npz).
            with open(path, "rb") as stream:
                if suffix == ".npy":
                    return np.load(stream, allow_pickle=False)
                return _read_npz(path, stream, name)
    except DataFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"cannot read {str(path)!r}: {exc}") from None
    if array.size == 0:
        raise DataFileError(f"{str(path)!r} holds no numbers")
    return array
