"""Key files: attention keys saved in any common format, loaded as a labelled array of ``(n, d)`` matrices.

A :class:`KeyArray` holds float64 values in the canonical layout ``(..., n, d)``: the last two axes are
always ``token`` and ``dim``, the leading axes carry names (``layer``, ``head``, ``batch``, ...). Several
sequences of different lengths may be stored concatenated along ``token``; ``seq_offsets`` then says where
each starts and :meth:`KeyArray.slices` yields them separately, so they are never analysed as one set.

The metadata format (written by :func:`save_keys` and ``geomln capture``)
--------------------------------------------------------------------------
An ``.npz`` archive may hold, next to its float arrays, a 0-d string array named ``__geomln_meta__``
containing one JSON object (the same JSON may sit in a ``.safetensors`` header's metadata, in an HDF5 file's
root attribute, or as a string entry of a ``.pt`` dict)::

    {"format": "geomln.keys", "version": 1,
     "default": "keys",                               # array read when no name is given
     "arrays": {"keys": {"axes": ["layer", "head", "token", "dim"], "hook_points": [...], ...}, ...},
     "tokens": ["[CLS]", "in", ...],                  # one string per row of the token axis (optional)
     "seq_offsets": [0, 57, 120],                     # sequence s = rows seq_offsets[s]:seq_offsets[s+1]
     "model": {...}, ...}                             # anything else is passed through to `metadata`

``tokens`` and ``seq_offsets`` apply to every array of the file (they share the token axis). HDF5 datasets
may instead carry an ``axes`` attribute (``"layer,head,token,dim"``).
"""

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._files import atomic_output
from ..errors import DataFileError, InputError
from ._layouts import convention_axes, refuse_unnamed, tl_rotary_facts
from ._manifest import is_shard_source, read_manifest
from ._readers import META_KEY, READERS, Bf16, no_pickle_advice
from .io import TEXT_SUFFIXES, _input_file, _non_empty, _read

__all__ = ["KeyArray", "KeySlice", "load_keys", "save_keys", "META_KEY", "SUPPORTED_SUFFIXES"]

FORMAT_NAME = "geomln.keys"
FORMAT_VERSION = 1
SUPPORTED_SUFFIXES = (".npy", ".npz", ".safetensors", ".pt", ".pth", ".h5", ".hdf5", *TEXT_SUFFIXES)
_AXIS_ALIASES = {"pos": "token", "position": "token", "tokens": "token", "d_head": "dim", "d_model": "dim",
                 "feature": "dim", "features": "dim"}


class KeySlice(NamedTuple):
    """One ``(n, d)`` matrix of a :class:`KeyArray`, as yielded by :meth:`KeyArray.slices`."""

    labels: dict
    """Axis name -> index for every leading axis, plus ``"sequence"`` when the array has ``seq_offsets``."""
    matrix: np.ndarray
    """Read-only float64 view of shape ``(n, d)``; row ``i`` is token ``i`` of the slice."""
    tokens: tuple | None
    """The ``n`` token strings of the slice, or None when the file has none."""


def _parse_axes(axes, name="axes"):
    if isinstance(axes, str):
        axes = [part.strip() for part in axes.split(",")]
    try:
        axes = tuple(_AXIS_ALIASES.get(str(a), str(a)) for a in axes)
    except TypeError:
        raise TypeError(f"`{name}` must be a comma-separated string or a sequence of names; "
                        f"got {axes!r}") from None
    if any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", a) for a in axes) or len(set(axes)) != len(axes):
        raise InputError(f"`{name}` must be distinct identifiers like 'layer,head,token,dim'; got {axes!r}")
    if "token" not in axes or "dim" not in axes:
        raise InputError(f"`{name}` must name a 'token' axis and a 'dim' axis; got {', '.join(axes)}")
    return axes


def _key_values(value, label):
    """Return (float64 array, name of the original dtype) or raise on non-float input."""
    value, source = _to_numpy(value)
    if source == "bfloat16":  # ml_dtypes' bfloat16 (torch's and safetensors' are converted by _to_numpy)
        value = value.astype(np.float32)
    kind = value.dtype.kind
    if kind == "c":
        raise TypeError(f"{label} must be real-valued; got complex dtype {value.dtype}. "
                        f"Take .real or abs() first")
    if kind in "iub":
        raise TypeError(f"{label} holds {value.dtype} values, not floating-point keys (token ids or a "
                        f"mask?); capture keys with `geomln capture`, or cast with .astype(float) if they "
                        f"are features")
    if kind != "f":
        raise TypeError(f"{label} must be a floating-point array; got dtype {value.dtype}")
    return np.ascontiguousarray(value, dtype=np.float64), source


def _as_offsets(seq_offsets, n_tokens, name):
    offsets = np.asarray(seq_offsets)
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or offsets.size < 2:
        raise InputError(f"`seq_offsets` of {name} must be a 1-D integer array [0, ..., n]; got {offsets!r}")
    if offsets[0] != 0 or offsets[-1] != n_tokens or np.any(np.diff(offsets) <= 0):
        raise InputError(f"`seq_offsets` of {name} must increase strictly from 0 to the {n_tokens} rows "
                         f"of the token axis; got {offsets.tolist()}")
    offsets = offsets.astype(np.intp)
    offsets.flags.writeable = False
    return offsets


@dataclass(frozen=True, eq=False)
class KeyArray:
    """Float64 key matrices in the canonical layout ``(..., n, d)`` with named axes.

    Build one with :func:`load_keys` or :meth:`from_array`; the constructor itself expects the
    canonical layout already (``axes`` ending in ``("token", "dim")``).

    Attributes
    ----------
    values : ndarray of shape (..., n, d)
        Read-only, finite, C-contiguous float64. ``n`` counts all tokens of all sequences.
    axes : tuple of str
        One name per axis of `values`; the last two are ``"token"`` and ``"dim"``.
    metadata : dict
        What the file said (model, hook points, ...) plus ``source_dtype`` (the stored dtype before the
        upcast to float64, e.g. ``"float16"``, ``"bfloat16"``), and for loaded files ``path``, ``name``,
        ``stored_axes`` and ``stored_shape``.
    tokens : tuple of str or None
        One string per row of the token axis.
    seq_offsets : ndarray of shape (n_sequences + 1,) or None
        Sequence ``s`` is rows ``seq_offsets[s]:seq_offsets[s + 1]`` of the token axis.

    Examples
    --------
    >>> import numpy as np
    >>> from geomln import KeyArray
    >>> values = np.arange(24.0).reshape(2, 6, 2)
    >>> keys = KeyArray.from_array(values, axes="head,token,dim", seq_offsets=[0, 4, 6])
    >>> keys.shape, keys.n_slices
    ((2, 6, 2), 4)
    >>> [(s.labels, s.matrix.shape) for s in keys.slices()][:2]
    [({'head': 0, 'sequence': 0}, (4, 2)), ({'head': 0, 'sequence': 1}, (2, 2))]
    """

    values: np.ndarray
    axes: tuple
    metadata: dict = field(default_factory=dict)
    tokens: tuple | None = None
    seq_offsets: np.ndarray | None = None

    def __post_init__(self):
        values = self.values
        if not (isinstance(values, np.ndarray) and values.dtype == np.float64 and values.flags.c_contiguous):
            values = np.ascontiguousarray(values, dtype=np.float64)
        axes = _parse_axes(self.axes)
        if axes[-2:] != ("token", "dim") or len(axes) != values.ndim:
            raise InputError(f"`axes` of a KeyArray must end in ('token', 'dim') and name all {values.ndim} "
                             f"axes of shape {values.shape}; got {axes}. Use KeyArray.from_array to reorder")
        if values.shape[-1] == 0 or values.shape[-2] == 0:
            raise InputError(f"key matrices need n >= 1 tokens and d >= 1 dims; got shape {values.shape}")
        values = values.view()
        values.flags.writeable = False
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "metadata", dict(self.metadata))
        n = values.shape[-2]
        if self.tokens is not None:
            tokens = tuple(str(t) for t in self.tokens)
            if len(tokens) != n:
                raise InputError(f"`tokens` must hold one string per row of the token axis ({n}); "
                                 f"got {len(tokens)}")
            object.__setattr__(self, "tokens", tokens)
        if self.seq_offsets is not None:
            if "sequence" in axes:
                raise InputError("an axis named 'sequence' cannot be combined with `seq_offsets`; rename it")
            object.__setattr__(self, "seq_offsets", _as_offsets(self.seq_offsets, n, "the key array"))

    @classmethod
    def from_array(cls, array, *, axes=None, tokens=None, seq_offsets=None, metadata=None, name="keys"):
        """Check `array` and move its ``token`` and ``dim`` axes last.

        Parameters
        ----------
        array : array_like or torch.Tensor
            Floating-point values (float16/bfloat16/float32 are upcast to float64).
        axes : str or sequence of str, optional
            Names of the axes *as stored*, e.g. ``"batch,token,head,dim"``; must contain ``token`` and
            ``dim`` (aliases: ``pos``/``position`` -> ``token``; ``d_head``/``d_model``/``feature`` ->
            ``dim``).
            Default: ``("token", "dim")`` for 2-D arrays; arrays of 3 or more axes need `axes` (geomln does
            not guess which axis holds the tokens).
        tokens, seq_offsets, metadata
            As the attributes of the same name.
        name : str
            How to call the array in error messages.

        Returns
        -------
        KeyArray

        Raises
        ------
        TypeError
            For integer, boolean, complex or non-numeric arrays.
        InputError
            For arrays with fewer than 2 dimensions, 3 or more dimensions without `axes` (the message
            shows the shape and the `axes` to pass), `axes` that do not match the rank, NaN or infinite
            values (naming the slice and row), or inconsistent `tokens` / `seq_offsets`.
        """
        label = name if " " in name else f"`{name}`"
        values, source = _key_values(array, label)
        if values.ndim < 2:
            raise InputError(f"{label} must have at least 2 dimensions (token, dim); "
                             f"got shape {values.shape}")
        if axes is None:
            if values.ndim > 2:
                refuse_unnamed(values.shape, label)
            stored = ("token", "dim")
        else:
            stored = _parse_axes(axes)
            if len(stored) != values.ndim:
                raise InputError(f"`axes` names {len(stored)} axes ({', '.join(stored)}) but {label} has "
                                 f"{values.ndim} dimensions, shape {values.shape}")
        order = [i for i, a in enumerate(stored) if a not in ("token", "dim")]
        order += [stored.index("token"), stored.index("dim")]
        canonical = np.ascontiguousarray(values.transpose(order))
        meta = {"source_dtype": source, **(metadata or {}), "stored_axes": list(stored),
                "stored_shape": list(values.shape)}
        result = cls(canonical, tuple(stored[i] for i in order), meta, tokens, seq_offsets)
        result._check_finite(label)
        return result

    def _check_finite(self, label):
        bad = ~np.isfinite(self.values)
        if not bad.any():
            return
        n_nan = int(np.isnan(self.values).sum())
        first = np.unravel_index(int(np.argmax(bad)), self.values.shape)
        where = [f"{a}={int(i)}" for a, i in zip(self.axes[:-2], first[:-2], strict=True)]
        row = int(first[-2])
        if self.seq_offsets is not None:
            s = int(np.searchsorted(self.seq_offsets, row, side="right") - 1)
            where.append(f"sequence={s}, row {row - int(self.seq_offsets[s])}")
        else:
            where.append(f"row {row}")
        n_inf = int(bad.sum()) - n_nan
        what = " and ".join(p for p in (f"{n_nan} NaN" * bool(n_nan), f"{n_inf} infinite" * bool(n_inf)) if p)
        raise InputError(f"{label} contains {what} value(s) (first at {', '.join(where)}); "
                         f"remove them or recapture")

    # ---- shape helpers -------------------------------------------------------------------------------
    @property
    def shape(self):
        """Shape of `values`, ``(..., n, d)``."""
        return self.values.shape

    @property
    def ndim(self):
        """Number of axes of `values`."""
        return self.values.ndim

    @property
    def d(self):
        """Feature dimension (last axis)."""
        return self.values.shape[-1]

    @property
    def n_tokens(self):
        """Rows of the token axis (all sequences together)."""
        return self.values.shape[-2]

    @property
    def leading_axes(self):
        """Names of the axes before ``token``."""
        return self.axes[:-2]

    @property
    def n_sequences(self):
        """Number of sequences along the token axis (1 without `seq_offsets`)."""
        return 1 if self.seq_offsets is None else len(self.seq_offsets) - 1

    @property
    def n_slices(self):
        """Number of matrices :meth:`slices` yields."""
        return int(np.prod(self.values.shape[:-2], dtype=np.int64)) * self.n_sequences

    def __array__(self, dtype=None, copy=None):
        return np.array(self.values, dtype=dtype, copy=True if copy is None else copy)

    def __repr__(self):
        dims = ", ".join(f"{a}={s}" for a, s in zip(self.axes, self.shape, strict=True))
        dtype = self.metadata.get("source_dtype")
        return f"KeyArray({dims}; {self.n_sequences} sequence(s), source_dtype={dtype})"

    # ---- iteration -----------------------------------------------------------------------------------
    def slices(self):
        """Yield every ``(n, d)`` matrix to analyse, one per leading index and sequence.

        Iterates over the leading axes in C order (the last leading axis fastest) and, inside each
        leading index, over the sequences given by `seq_offsets` -- so sequences stored concatenated
        are never analysed as one set. Without `seq_offsets` the whole token axis is one slice.

        Yields
        ------
        KeySlice
            A named tuple ``(labels, matrix, tokens)``: `labels` maps every leading axis name to its
            index (plus ``"sequence"`` -> sequence number when `seq_offsets` is set), `matrix` is a
            read-only float64 view ``(n, d)`` and `tokens` the slice's token strings or None.
            Row ``i`` of `matrix` is row ``seq_offsets[s] + i`` of the token axis.
        """
        bounds = [(0, self.n_tokens)] if self.seq_offsets is None else list(
            zip(self.seq_offsets[:-1].tolist(), self.seq_offsets[1:].tolist(), strict=True))
        for index in np.ndindex(*self.values.shape[:-2]):
            block = self.values[index]
            base = {a: int(i) for a, i in zip(self.leading_axes, index, strict=True)}
            for s, (start, stop) in enumerate(bounds):
                labels = dict(base, sequence=s) if self.seq_offsets is not None else dict(base)
                tokens = None if self.tokens is None else self.tokens[start:stop]
                yield KeySlice(labels, block[start:stop], tokens)

    def select(self, **indices):
        """Return the KeyArray with some leading axes fixed, e.g. ``keys.select(layer=0, head=3)``.

        Raises
        ------
        InputError
            If an axis is not a leading axis or an index is out of range.
        """
        index = []
        for axis, size in zip(self.leading_axes, self.shape[:-2], strict=True):
            i = indices.pop(axis, None)
            if i is not None and not -size <= int(i) < size:
                raise InputError(f"`{axis}` index must be in [0, {size}); got {i}")
            index.append(slice(None) if i is None else int(i))
        if indices:
            raise InputError(f"cannot select on {', '.join(indices)}: leading axes are "
                             f"{', '.join(self.leading_axes) or '(none)'}")
        kept = tuple(a for a, i in zip(self.leading_axes, index, strict=True) if isinstance(i, slice))
        return KeyArray(self.values[tuple(index)], (*kept, "token", "dim"), self.metadata, self.tokens,
                        self.seq_offsets)




def load_keys(path, *, name=None, axes=None):
    """Load key matrices from a file into a :class:`KeyArray` (float64, layout ``(..., n, d)``).

    Parameters
    ----------
    path : str or Path
        A shard directory of :func:`~geomln.models.shards.capture_to_shards` (or its ``manifest.json``:
        the shards are read one after the other and concatenated along ``token``), or a
        ``.npy``, ``.npz``, ``.safetensors`` (read with numpy; torch not needed), ``.pt``/``.pth``
        (``torch.load(weights_only=True)``: a tensor, or a possibly nested dict/list of tensors whose
        names are joined with ``.``), ``.h5``/``.hdf5``, or ``.csv``/``.tsv``/``.txt`` (one row per token;
        a header row and a pandas index column are recognised as by :func:`load_array`, and the header's
        names kept in ``metadata["columns"]``).
    name : str, optional
        Which array of a multi-array file (npz member, safetensors/pt key, HDF5 dataset path). Optional
        when the file holds one array or its metadata names a ``default``. A ``*`` stands for a layer
        number and stacks the matching arrays in numeric order along a new leading ``layer`` axis:
        ``name="blocks.*.attn.hook_k"`` reads a whole TransformerLens cache.
    axes : str or sequence of str, optional
        Names of the axes as stored, e.g. ``"layer,head,token,dim"`` (overrides the file's metadata).
        Default: the file's metadata; else TransformerLens conventions for names like
        ``blocks.0.attn.hook_k`` (``[batch, pos, head, d_head]`` -> ``(batch, head, token, dim)``) and
        ``blocks.0.hook_resid_pre`` (``[batch, pos, d]``), named in ``metadata["layout_convention"]``;
        else ``(token, dim)`` for 2-D arrays. Arrays of 3 or more axes that nothing names are refused
        with the shape and the `axes` to pass. A TransformerLens ``hook_k``/``hook_q`` read from a cache
        that also holds ``hook_rot_k``/``hook_rot_q`` is labelled ``metadata["rope"] = "pre-rotary"``
        (``scored`` False: :func:`analyze_keys` then warns that the model's scores do not use it).

    Returns
    -------
    KeyArray
        ``metadata["source_dtype"]`` keeps the stored dtype (float16, bfloat16, float32, ...), from which
        tolerances can be chosen; ``tokens`` and ``seq_offsets`` come from the file's metadata.

    Raises
    ------
    DataFileError
        Unknown suffix (the message lists the supported ones), a directory, a missing or unreadable file,
        a file not in the format its suffix says, pickled objects (never loaded), an empty array, missing
        array name (the message lists the arrays), a missing optional reader package, inconsistent
        metadata.
    InputError
        Fewer than 2 dimensions, 3 or more unnamed dimensions, `axes` not matching the rank, NaN or
        infinite values (naming the slice and row).
    TypeError
        Integer, boolean or complex arrays.

    See Also
    --------
    save_keys : write arrays with the metadata this function reads.

    Examples
    --------
    >>> import numpy as np, tempfile, os, geomln
    >>> path = os.path.join(tempfile.mkdtemp(), "keys.npz")
    >>> rows = np.arange(30.0).reshape(1, 2, 5, 3)
    >>> geomln.save_keys(path, {"keys": rows}, axes="layer,head,token,dim", seq_offsets=[0, 3, 5])
    >>> keys = geomln.load_keys(path)
    >>> keys.axes, keys.n_slices, keys.metadata["source_dtype"]
    (('layer', 'head', 'token', 'dim'), 4, 'float32')
    >>> [s.matrix.shape for s in keys.slices()]
    [(3, 3), (2, 3), (3, 3), (2, 3)]
    """
    if is_shard_source(path):
        return _load_shards(read_manifest(path), name, axes)
    path, suffix = _input_file(path, SUPPORTED_SUFFIXES)
    try:
        if suffix in READERS:
            (chosen, members, stacked, names), meta, arrays = READERS[suffix](path, name)
        else:
            if name is not None:
                raise DataFileError(f"{str(path)!r} holds a single array; omit `name` (got {name!r})")
            array, columns = _read(path, suffix, None)
            (chosen, members, stacked, names), arrays = (None, [None], False, []), [array]
            meta = None if columns is None else {"columns": columns}
    except (DataFileError, InputError, TypeError):
        raise
    except (OSError, ValueError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"cannot read {str(path)!r}: {no_pickle_advice(exc)}") from None
    label = f"array {chosen!r} of {str(path)!r}" if chosen else f"file {str(path)!r}"
    converted = [(_non_empty(a, label), source) for a, source in map(_to_numpy, arrays)]
    if stacked:
        shapes = {a.shape for a, _ in converted}
        if len(shapes) != 1:
            raise DataFileError(f"{label}: cannot stack {len(arrays)} arrays of different shapes "
                                f"{sorted(shapes)}")
    array = np.stack([a for a, _ in converted]) if stacked else converted[0][0]
    meta = dict(meta or {})
    entry = dict(meta.pop("arrays", {}).get(chosen, {})) if chosen is not None else {}
    tokens, offsets = meta.pop("tokens", None), meta.pop("seq_offsets", None)
    file_axes = entry.pop("axes", None) or meta.pop("axes", None)
    if stacked and file_axes is not None and len(_parse_axes(file_axes)) == array.ndim - 1:
        file_axes = ("layer", *_parse_axes(file_axes))  # the file describes one member of the stack
    convention = None
    stored = axes if axes is not None else file_axes
    if stored is None:
        stored, convention = convention_axes(chosen, array.ndim, stacked)
    metadata = {**tl_rotary_facts(chosen, names), **meta, **entry, "source_dtype": converted[0][1],
                "path": str(path), "name": chosen}
    if convention is not None:
        metadata["layout_convention"] = convention
    if stacked:
        metadata["stacked_names"] = members
    return KeyArray.from_array(array, axes=stored, tokens=tokens, seq_offsets=offsets, metadata=metadata,
                               name=label)


def _load_shards(manifest, name, axes):
    """Concatenate array `name` of every shard of `manifest` along ``token`` into one :class:`KeyArray`."""
    parts = [load_keys(file, name=name, axes=axes) for file in manifest["files"]]
    first = parts[0]
    offsets = [0]
    for part in parts:
        offsets += (offsets[-1] + part.seq_offsets[1:]).tolist()
    tokens = None if any(p.tokens is None for p in parts) else [t for p in parts for t in p.tokens]
    metadata = {**first.metadata, "path": str(manifest["path"]), "n_shards": len(parts),
                "stored_shape": [*first.shape[:-2], sum(p.n_tokens for p in parts), first.d]}
    return KeyArray(np.concatenate([p.values for p in parts], axis=-2), first.axes, metadata, tokens, offsets)


def _to_numpy(value):
    """Return (numpy array, name of the stored dtype) for a numpy array, torch tensor or bfloat16 view."""
    if isinstance(value, Bf16):
        return value.view(np.ndarray), "bfloat16"
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        source = str(value.dtype).replace("torch.", "")
        return (value.float().numpy() if source == "bfloat16" else value.numpy()), source
    return np.asarray(value), np.asarray(value).dtype.name


def save_keys(path, arrays, *, axes, tokens=None, seq_offsets=None, metadata=None, array_metadata=None,
              default=None, dtype="float32"):
    """Write float arrays and their axis names, tokens and sequence offsets to an ``.npz`` key file.

    Parameters
    ----------
    path : str or Path
        Destination ending in ``.npz``; written atomically (temporary file, then rename).
    arrays : dict of str -> array_like
        The arrays; each needs a ``token`` axis of the same length.
    axes : str, sequence of str, or dict of str -> axes
        Axis names of every array (one spec for all, or one per array name), as for :func:`load_keys`.
        Arrays are stored in the canonical layout (``token``, ``dim`` last).
    tokens : sequence of str, optional
    seq_offsets : sequence of int, optional
        Shared by all arrays; see :class:`KeyArray`.
    metadata : dict, optional
        JSON-serialisable extras stored at the top level of ``__geomln_meta__`` (model, command, ...).
    array_metadata : dict of str -> dict, optional
        JSON-serialisable extras per array (hook points, description).
    default : str, optional
        The array :func:`load_keys` reads when no name is given (default: the first array).
    dtype : {"float32", "float16", "float64"}
        Storage dtype.

    Raises
    ------
    DataFileError
        If `path` does not end in ``.npz`` or cannot be written.
    InputError
        If an array fails the checks of :meth:`KeyArray.from_array` or `default` is not among `arrays`.

    Examples
    --------
    >>> import os, tempfile, numpy as np, geomln
    >>> path = os.path.join(tempfile.mkdtemp(), "keys.npz")
    >>> keys = np.random.default_rng(0).normal(size=(2, 5, 4))          # (head, token, dim)
    >>> geomln.save_keys(path, {"keys": keys}, axes="head,token,dim", tokens=list("abcde"))
    >>> loaded = geomln.load_keys(path)
    >>> loaded.axes, loaded.values.shape
    (('head', 'token', 'dim'), (2, 5, 4))
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise DataFileError(f"key files are written as .npz; got {str(path)!r}")
    if dtype not in ("float32", "float16", "float64"):
        raise InputError(f"`dtype` must be one of 'float32', 'float16', 'float64'; got {dtype!r}")
    if not arrays or META_KEY in arrays:
        raise InputError(f"`arrays` must be a non-empty dict of names (not {META_KEY!r}) to arrays")
    default = next(iter(arrays)) if default is None else default
    if default not in arrays:
        raise InputError(f"`default` must be one of the array names {', '.join(arrays)}; got {default!r}")
    stored, entries = {}, {}
    for name, value in arrays.items():
        spec = axes.get(name) if isinstance(axes, dict) else axes
        key_array = KeyArray.from_array(value, axes=spec, tokens=tokens, seq_offsets=seq_offsets, name=name)
        stored[name] = key_array.values.astype(dtype)
        entries[name] = {"axes": list(key_array.axes), **((array_metadata or {}).get(name, {}))}
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "default": default, "arrays": entries,
            **({"tokens": [str(t) for t in tokens]} if tokens is not None else {}),
            **({"seq_offsets": [int(o) for o in seq_offsets]} if seq_offsets is not None else {}),
            **(metadata or {})}
    stored[META_KEY] = np.array(json.dumps(meta))
    with atomic_output(path, "wb") as stream:
        np.savez_compressed(stream, **stored)
