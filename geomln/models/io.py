"""Reading numeric matrices from the files people save them in."""

import csv
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataFileError
from ._readers import check_magic, no_pickle_advice, read_npz

__all__ = ["load_array", "TEXT_SUFFIXES"]

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}
_SUPPORTED = (".npy", ".npz", *TEXT_SUFFIXES)
_INTEGER = re.compile(r"[+-]?\d+")


def _input_file(path, supported):
    """Return ``(Path, lower-case suffix)`` of an existing file whose suffix is in `supported`.

    Raises :class:`DataFileError` naming the path: for a directory, for an unknown suffix (listing
    `supported`) and when no such file exists. Shared by :func:`load_array` and :func:`geomln.load_keys`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise DataFileError(f"{str(path)!r} is a directory, not a file; pass one of its files "
                            f"({', '.join(supported)})")
    if suffix not in supported:
        raise DataFileError(f"unsupported file type {suffix or '(none)'!r} for {str(path)!r}; "
                            f"supported: {', '.join(supported)}")
    if not path.is_file():
        raise DataFileError(f"no such file: {str(path)!r}")
    return path, suffix


def _non_empty(array, label):
    """Return `array`, or raise :class:`DataFileError` naming `label` (the file) when it has no values."""
    if array.size == 0:
        raise DataFileError(f"{label} holds an empty array (shape {array.shape})")
    return array


def _cells(line, delimiter):
    # the csv module undoes the quotes pandas puts around names holding the delimiter
    return line.split() if delimiter is None else [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_header(cells, data_lines, delimiter):
    """Whether the first row `cells` names columns (see the Notes of :func:`load_array`)."""
    if cells[0] == "" or not any(_is_number(c) for c in cells):
        return True
    if len(cells) < 2 or cells != [str(i) for i in range(len(cells))]:  # one column: "0" is more likely a value
        return False
    # pandas' header for unnamed columns, 0..d-1: a header unless the data are integers too (then undecidable)
    return any(not _INTEGER.fullmatch(c) for line in data_lines for c in _cells(line, delimiter))


def _read_text(path, delimiter):
    """Return ``(float64 array (n, d), column names or None)`` of a text file with an optional header row."""
    with open(path, encoding="utf-8-sig") as stream:  # -sig: spreadsheets start CSV files with a BOM
        lines = stream.read().splitlines()
    start = next((i for i, line in enumerate(lines) if line.split("#", 1)[0].strip()), None)
    if start is None:
        raise DataFileError(f"{str(path)!r} holds no numbers")
    first = _cells(lines[start].split("#", 1)[0], delimiter)
    rest = (text for line in lines[start + 1:] if (text := line.split("#", 1)[0]).strip())
    header = _is_header(first, rest, delimiter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numpy warns on a file without data
        array = np.loadtxt(lines, delimiter=delimiter, ndmin=2, comments="#", skiprows=start + 1 if header else 0)
    if array.size == 0:
        raise DataFileError(f"{str(path)!r} holds no numbers" + (" below its header row" if header else ""))
    if not header:
        return array, None
    if first[0] == "" and len(first) == array.shape[1]:  # pandas' to_csv() writes its index under ""
        if not np.array_equal(array[:, 0], np.arange(len(array))):
            raise DataFileError(f"cannot read {str(path)!r}: its first column has an empty header, as pandas "
                                f"writes for an index, but does not hold 0, 1, ..., {len(array) - 1}; write "
                                f"the file with to_csv(index=False) or remove that column")
        array, first = array[:, 1:], first[1:]
    if len(first) != array.shape[1]:
        raise DataFileError(f"cannot read {str(path)!r}: its header row names {len(first)} column(s) but its "
                            f"rows hold {array.shape[1]}; fix the header or remove it")
    return np.ascontiguousarray(array), first


def _read(path, suffix, name):
    """Return ``(array, column names or None)`` of an existing file with a supported `suffix`."""
    try:
        if suffix in TEXT_SUFFIXES:
            return _read_text(path, TEXT_SUFFIXES[suffix])
        if suffix == ".npz":
            (chosen, _, stacked, _), _, arrays = read_npz(path, name)
            return _non_empty(np.stack(arrays) if stacked else arrays[0], f"array {chosen!r} of {str(path)!r}"), None
        with open(path, "rb") as stream:
            check_magic(path, stream, suffix)
            return _non_empty(np.load(stream, allow_pickle=False), repr(str(path))), None
    except DataFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"cannot read {str(path)!r}: {no_pickle_advice(exc)}") from None


def load_array(path, *, name=None):
    """Read one numeric array from a ``.npy``, ``.npz``, ``.csv``, ``.tsv`` or ``.txt`` file.

    Parameters
    ----------
    path : str or Path
        The file. Text files hold one row per line, separated by commas (``.csv``), tabs
        (``.tsv``) or white space (``.txt``); lines starting with ``#`` are comments. A header row
        and a pandas index column are recognised (see Notes).
    name : str, optional
        For ``.npz`` archives holding several arrays, which one to read (default: the only array, or
        the ``default`` of a key file written by :func:`geomln.save_keys`); names as for
        :func:`geomln.load_keys`.

    Returns
    -------
    ndarray
        The array as stored (validation is left to the function that uses it).

    Raises
    ------
    DataFileError
        If the path is a directory or missing, the file is unreadable, of an unsupported suffix, not
        in the format its suffix says (e.g. text saved as ``.npy``), holds pickled Python objects
        (never loaded), lacks the named array, holds an empty array, or is a text file without
        numbers or with a header that does not fit its rows.

    Notes
    -----
    The first row of a text file is a header (column names, never data) when none of its cells is a
    number (``k0,k1,k2``), when its first cell is empty (``,0,1,2``: the index column that
    ``pandas.DataFrame.to_csv()`` writes by default), or when it is exactly ``0,1,...,d-1`` with
    ``d >= 2`` -- the header ``to_csv(index=False)`` writes for unnamed columns -- and some later cell
    is not written as an integer (``0.25``, ``1e-3``). A first row mixing numbers and words is read
    as data (and refused). A file whose every cell is an integer and whose first row is
    ``0,1,...,d-1`` is read as data: that header and that data row cannot be told apart. An index
    column (empty first header cell) is dropped when it holds ``0, 1, ..., n-1``, and the file is
    refused otherwise.

    Examples
    --------
    >>> import numpy as np, tempfile, os, geomln
    >>> path = os.path.join(tempfile.mkdtemp(), "keys.npy")
    >>> np.save(path, np.eye(3))
    >>> geomln.load_array(path).shape
    (3, 3)
    """
    path, suffix = _input_file(path, _SUPPORTED)
    return _read(path, suffix, name)[0]
