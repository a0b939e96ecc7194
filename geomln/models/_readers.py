"""Readers of key files by format (npz, safetensors, torch, HDF5) for :func:`geomln.load_keys`.

Each reader takes ``(path, name_request)`` and returns ``((name, stored names read, stacked?, all names in the
file), file metadata or None, arrays read)``; optional packages (safetensors, torch, h5py) are imported only
when their format is read. The metadata format is described in :mod:`geomln.models.keyfile`.
"""

import json
import re

import numpy as np

from ..errors import DataFileError

__all__ = ["META_KEY", "READERS", "Bf16", "check_magic", "no_pickle_advice", "read_npz"]

META_KEY = "__geomln_meta__"


def _meta_from_json(text, path):
    if text is None:
        return None
    try:
        meta = json.loads(str(text))
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{str(path)!r}: {META_KEY} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataFileError(f"{str(path)!r}: {META_KEY} must be a JSON object; got {type(meta).__name__}")
    return meta


def _need(module, path, extra):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise DataFileError(f"reading {str(path)!r} needs the optional package {module.split('.')[0]!r}: "
                            f"pip install 'geomln[{extra}]'") from None


#: first bytes of each NumPy format (a .npz archive is a zip file; an empty one starts with the end record)
_MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}
_FORMAT = {".npy": "a NumPy .npy file", ".npz": "a NumPy .npz archive"}


def check_magic(path, stream, suffix):
    """Raise :class:`DataFileError` unless `stream` (at its start) begins like a `suffix` file; rewind it.

    numpy reads any other file as a pickle, and its error then suggests loading pickles unsafely.
    """
    start = stream.read(6)
    stream.seek(0)
    if start.startswith(_MAGIC[suffix]):
        return
    actual = next((s for s, magics in _MAGIC.items() if start.startswith(magics)), None)
    if actual is not None:
        hint = f"it is {_FORMAT[actual]}: rename it to {path.stem}{actual}"
    elif not start:
        hint = "the file is empty"
    elif all(32 <= b < 127 or b in b"\t\r\n" for b in start):
        hint = "it looks like text: rename it to .csv, .tsv or .txt if it holds rows of numbers"
    else:
        hint = f"its first bytes are {start!r}"
    raise DataFileError(f"cannot read {str(path)!r}: not {_FORMAT[suffix]} ({hint})")


def no_pickle_advice(exc):
    """Return numpy's message for `exc`, without its advice to load pickled data (geomln never does)."""
    if "pickle" in str(exc):
        return "it holds Python objects (pickled data), which geomln never loads; save a numeric array"
    return str(exc)


def read_npz(path, name_request):
    """Read ``.npz`` archives (also for :func:`geomln.load_array`): members without ``__geomln_meta__``."""
    with open(path, "rb") as stream:
        check_magic(path, stream, ".npz")
        with np.load(stream, allow_pickle=False) as archive:
            names = [n for n in archive.files if n != META_KEY]
            meta = _meta_from_json(archive[META_KEY][()] if META_KEY in archive.files else None, path)
            picked = _pick(path, names, name_request, meta)
            return picked, meta, [archive[n] for n in picked[1]]


def _read_safetensors(path, name_request):
    safe_open = _need("safetensors", path, "formats").safe_open
    with safe_open(str(path), framework="np") as handle:
        names = list(handle.keys())
        meta = _meta_from_json((handle.metadata() or {}).get(META_KEY), path)
        picked = _pick(path, names, name_request, meta)
        with open(path, "rb") as stream:  # numpy has no bfloat16: read those tensors' bytes ourselves
            header = json.loads(stream.read(int.from_bytes(stream.read(8), "little")))
            start = stream.tell()
            arrays = []
            for n in picked[1]:
                if header[n]["dtype"] != "BF16":
                    arrays.append(handle.get_tensor(n))
                    continue
                begin, end = header[n]["data_offsets"]
                stream.seek(start + begin)
                raw = np.frombuffer(stream.read(end - begin), dtype="<u2").astype(np.uint32) << 16
                arrays.append(Bf16(raw.view(np.float32).reshape(header[n]["shape"])))
    return picked, meta, arrays


class Bf16(np.ndarray):
    """float32 values that were stored as bfloat16 (remembered for ``source_dtype``)."""

    def __new__(cls, array):
        return np.asarray(array).view(cls)


def _flatten(obj, prefix, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}{k}.", out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}{i}.", out)
    elif hasattr(obj, "detach"):
        out[prefix[:-1]] = obj
    elif isinstance(obj, str) and prefix == f"{META_KEY}.":
        out[META_KEY] = obj


def _read_torch(path, name_request):
    torch = _need("torch", path, "torch")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds (UnpicklingError, RuntimeError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFileError(f"cannot read {str(path)!r} with torch.load(weights_only=True): {first}. Save "
                            f"a tensor or a dict of tensors (torch.save(cache.cache_dict, ...))") from None
    if hasattr(obj, "detach"):
        if name_request is not None:
            raise DataFileError(f"{str(path)!r} holds a single tensor; omit `name` (got {name_request!r})")
        return (None, [None], False, []), None, [obj]
    flat = {}
    _flatten(obj, "", flat)
    meta = _meta_from_json(flat.pop(META_KEY, None), path)
    picked = _pick(path, list(flat), name_request, meta)
    return picked, meta, [flat[n] for n in picked[1]]


def _read_h5(path, name_request):
    h5py = _need("h5py", path, "formats")
    with h5py.File(path, "r") as handle:
        names = []
        handle.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
        raw = handle.attrs.get(META_KEY)
        meta = _meta_from_json(raw.decode() if isinstance(raw, bytes) else raw, path)
        request = name_request.lstrip("/") if isinstance(name_request, str) else name_request
        picked = _pick(path, names, request, meta)
        arrays = [handle[n][()] for n in picked[1]]
        axes = handle[picked[1][0]].attrs.get("axes")
    if axes is not None and not picked[2]:
        axes = [a.decode() if isinstance(a, bytes) else str(a) for a in np.atleast_1d(axes)]
        meta = dict(meta or {})
        entry = meta.setdefault("arrays", {}).setdefault(picked[0], {})
        entry.setdefault("axes", axes[0] if len(axes) == 1 else axes)
    return picked, meta, arrays


def _pick(path, names, request, meta):
    """Return (name, [stored names to read], stacked, names) for `request`; ``*`` stacks a numbered family."""
    def listing():
        shown = ", ".join(names[:30]) + (f", ... ({len(names) - 30} more)" if len(names) > 30 else "")
        return shown or "(none)"

    if request is None:
        default = (meta or {}).get("default")
        if len(names) == 1:
            return names[0], names, False, names
        if default in names:
            return default, [default], False, names
        raise DataFileError(f"{str(path)!r} holds {len(names)} arrays; choose one with name=... "
                            f"(available: {listing()})")
    if request in names:
        return request, [request], False, names
    if "*" in request:
        pattern = re.compile("^" + re.escape(request).replace(r"\*", r"(\d+)") + "$")
        found = sorted((int(m.group(1)), n) for n in names if (m := pattern.match(n)))
        if found:
            return request, [n for _, n in found], True, names
    raise DataFileError(f"`name` {request!r} is not an array of {str(path)!r} (available: {listing()})")


READERS = {".npz": read_npz, ".safetensors": _read_safetensors, ".pt": _read_torch, ".pth": _read_torch,
            ".h5": _read_h5, ".hdf5": _read_h5}
