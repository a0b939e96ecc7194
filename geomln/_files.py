"""Atomic file output: write to a temporary file beside the target, then rename over it."""

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import DataFileError

__all__ = ["atomic_output", "ensure_directory"]


def ensure_directory(path, name="out"):
    """Create directory `path` (and parents) or raise :class:`DataFileError` naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFileError(f"`{name}`: cannot create directory {str(path)!r}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise DataFileError(f"`{name}`: directory {str(path)!r} is not writable")
    return path


def _new_file_mode():
    """Permissions a plain ``open(path, "w")`` would give (mkstemp's own are 0o600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_output(path, mode="w"):
    """Open a temporary file next to `path` for writing; on success rename it to `path`.

    If the body raises, the temporary file is removed and `path` is left as it was, so a
    reader never sees a half-written file.

    Parameters
    ----------
    path : str or Path
        Final destination.
    mode : {"w", "wb"}
        Text or binary.

    Yields
    ------
    file object
        The temporary file.
    """
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise DataFileError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as stream:
            yield stream
        os.chmod(temporary, _new_file_mode())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
