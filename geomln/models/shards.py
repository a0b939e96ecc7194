"""Captures of many texts streamed to disk shard by shard, and the handle that reads them back one at a time.

:func:`capture_to_shards` runs :func:`~geomln.models.capture.capture_keys` over groups of ``shard_size``
inputs and writes each group as a key file ``OUT/shard-00000.npz``, ``OUT/shard-00001.npz``, ... (atomically),
rewriting ``OUT/manifest.json`` after each (see :mod:`geomln.models._manifest`), so memory holds one shard and
an interrupted run leaves only complete shards, which ``resume=True`` keeps. :func:`open_shards` returns a
:class:`KeyShards` that :func:`~geomln.analyze_keys` analyses shard by shard; :func:`~geomln.load_keys`
concatenates all shards into one :class:`~geomln.KeyArray`.
"""

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from .._files import ensure_directory
from .._validation import as_positive_int
from ..errors import DataFileError
from ._manifest import MANIFEST_NAME, is_shard_source, read_manifest, shard_name, write_manifest
from .capture import capture_windows, plan_capture, window_bar
from .keyfile import load_keys

__all__ = ["KeyShards", "open_shards", "capture_to_shards", "as_shards"]


@dataclass(frozen=True, eq=False)
class KeyShards:
    """One array of a shard directory, read shard by shard (build it with :func:`open_shards`).

    Attributes
    ----------
    manifest : dict
        The checked manifest (``path`` is the manifest file, ``files`` the shard files in order).
    name : str
        The array read from every shard.
    """

    manifest: dict
    name: str

    @property
    def path(self):
        """The manifest file."""
        return self.manifest["path"]

    @property
    def shape(self):
        """Shape of the array with all shards concatenated along ``token``: ``(..., n_tokens, d)``."""
        return tuple(self.manifest["arrays"][self.name]["shape"])

    @property
    def n_tokens(self):
        """Rows of the token axis over all shards."""
        return self.manifest["n_tokens"]

    @property
    def seq_offsets(self):
        """Sequence ``s`` of all shards is rows ``seq_offsets[s]:seq_offsets[s + 1]``."""
        return np.concatenate([[0], np.cumsum(self.manifest["sequence_lengths"])]).astype(np.intp)

    @property
    def n_slices(self):
        """Number of ``(n, d)`` matrices over all shards (one per leading index and sequence)."""
        return int(np.prod(self.shape[:-2], dtype=np.int64)) * self.manifest["n_sequences"]

    def key_arrays(self):
        """Yield the :class:`~geomln.KeyArray` of each shard in order (one in memory at a time)."""
        for file in self.manifest["files"]:
            yield load_keys(file, name=self.name)

    def __repr__(self):
        return (f"KeyShards({str(self.path)!r}, name={self.name!r}, shape={self.shape}, "
                f"{len(self.manifest['files'])} shard(s))")


def open_shards(path, *, name=None):
    """Open array `name` of a shard directory (or its ``manifest.json``) for analysis shard by shard.

    Parameters
    ----------
    path : str or Path
        What :func:`capture_to_shards` (``geomln capture --shard-size``) wrote.
    name : str, optional
        Array to read (default: the manifest's default, ``keys``).

    Returns
    -------
    KeyShards

    Raises
    ------
    DataFileError
        No manifest, an interrupted capture, a missing shard file, or an unknown `name` (listing the arrays).
    """
    manifest = read_manifest(path)
    name = manifest["default"] if name is None else str(name)
    if name not in manifest["arrays"]:
        raise DataFileError(f"`name` must be one of the arrays of {str(manifest['path'])!r}: "
                            f"{', '.join(manifest['arrays'])}; got {name!r}")
    return KeyShards(manifest, name)


def _fingerprint(model, plan, shard_size, names, dtype):
    """Hash of what decides the shards' contents: token ids, windows, options and the model's name."""
    config = getattr(model, "config", None)
    facts = {"windows": plan.windows, "shard_size": shard_size, "names": names, "dtype": dtype,
             "max_tokens": plan.max_tokens, "window": plan.window_info["length"],
             "model": [type(model).__name__, str(getattr(config, "_name_or_path", ""))]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _previous(out, fingerprint, resume):
    """Return the manifest to continue (or None to start afresh), refusing to mix two runs in `out`."""
    stale = sorted(p.name for p in out.glob("shard-*.npz"))
    if not (out / MANIFEST_NAME).is_file():
        if stale and not resume:
            raise DataFileError(f"`out` {str(out)!r} already holds shard files ({stale[0]}, ...); pass "
                                f"resume=True to redo them or choose an empty directory")
        return None
    if not resume:
        raise DataFileError(f"`out` {str(out)!r} already holds a capture ({MANIFEST_NAME}); pass resume=True to "
                            f"continue it or choose an empty directory")
    manifest = read_manifest(out, complete=False)
    if manifest["fingerprint"] != fingerprint:
        raise DataFileError(f"`resume`: the capture in {str(out)!r} was made from other inputs, options or "
                            f"model; choose another directory, or remove its {MANIFEST_NAME} and shards")
    return manifest


def capture_to_shards(model, inputs, out, *, shard_size, names=None, dtype="float32", metadata=None,
                      progress=False, resume=False, **options):
    """Capture keys of many inputs into shard files of `shard_size` inputs each, plus a manifest.

    Parameters
    ----------
    model, inputs
        As for :func:`~geomln.models.capture.capture_keys`; all inputs are tokenized and split into windows
        first (a list of token ids in memory), then captured one shard at a time.
    out : str or Path
        Directory (created if needed) for ``shard-00000.npz``, ... and ``manifest.json``.
    shard_size : int
        Inputs per shard (an input longer than the window is several sequences, all in its shard).
    names : sequence of str, optional
        Arrays to store (default all that the model offers), as for :meth:`CapturedKeys.save`.
    dtype : {"float32", "float16", "float64"}
        Storage dtype.
    metadata : dict, optional
        JSON-serialisable extras stored under ``metadata["capture"]`` of every shard and of the manifest.
    progress : bool
        Draw a progress bar over the windows on stderr (tqdm).
    resume : bool
        Continue an interrupted run in `out` made from the same inputs, options and model (checked through a
        fingerprint); its complete shards are kept. Without it, `out` must hold no earlier capture.
    **options
        ``tokenizer``, ``max_tokens``, ``window``, ``overflow``, ``key_modules``, ``query_modules``,
        ``d_head`` of :func:`~geomln.models.capture.capture_keys`.

    Returns
    -------
    KeyShards
        The stored default array (``keys``), ready for :func:`~geomln.analyze_keys`.

    Raises
    ------
    DataFileError
        `out` cannot be created, holds another capture (without `resume`) or one of other inputs (with it).
    InputError, TypeError
        As :func:`~geomln.models.capture.capture_keys`, and for a `shard_size` that is not a positive integer.

    Notes
    -----
    Each shard is a complete key file (:func:`~geomln.load_keys` reads it alone; its
    ``metadata["capture"]["windows"]["input_index"]`` counts all inputs); the manifest is rewritten after each
    shard and says ``"complete": true`` after the last. Concatenating the shards along ``token`` gives exactly
    the arrays and tokens of one :func:`capture_keys` call over all inputs. The fingerprint covers the token
    ids, options and the model's class and name, not its weights.

    Examples
    --------
    >>> import pytest, tempfile
    >>> torch = pytest.importorskip("torch")
    >>> transformers = pytest.importorskip("transformers")
    >>> import geomln
    >>> from geomln.models.shards import capture_to_shards
    >>> _ = torch.manual_seed(0)
    >>> config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2,
    ...                                  num_attention_heads=2, intermediate_size=16)
    >>> out = tempfile.mkdtemp()
    >>> shards = capture_to_shards(transformers.BertModel(config), [[1, 5, 7, 2], [1, 9, 2], [1, 4, 2]], out,
    ...                            shard_size=2)
    >>> [f.name for f in shards.manifest["files"]], shards.shape
    (['shard-00000.npz', 'shard-00001.npz'], (2, 2, 10, 4))
    >>> len(geomln.analyze_keys(out).rows)                           # layer x head x sequence
    12
    """
    shard_size = as_positive_int(shard_size, "shard_size")
    names = None if names is None else list(names)
    plan = plan_capture(model, inputs, **options)
    out = ensure_directory(out, "out")
    fingerprint = _fingerprint(model, plan, shard_size, names, dtype)
    manifest = _previous(out, fingerprint, resume)
    input_index = plan.window_info["input_index"]
    n_inputs = len(plan.window_info["windows_per_input"])
    firsts = list(range(0, n_inputs, shard_size))
    bounds = np.searchsorted(input_index, [*firsts, n_inputs]).tolist()
    if manifest is None:
        lengths = [len(w["input_ids"]) for w in plan.windows]
        manifest = {"complete": False, "fingerprint": fingerprint, "shard_size": shard_size,
                    "n_inputs": n_inputs, "n_sequences": len(lengths), "n_tokens": sum(lengths),
                    "default": None, "arrays": {}, "sequence_lengths": lengths, "metadata": {}, "shards": []}
    done = len(manifest["shards"])
    bar = window_bar(progress, len(plan.windows), initial=bounds[done])
    try:
        for index in range(done, len(firsts)):
            start, stop = bounds[index], bounds[index + 1]
            captured = capture_windows(model, plan, start, stop, progress=None if bar is None else bar.update)
            captured.metadata["capture"].update(metadata or {})
            captured.metadata["shard"] = {"index": index, "inputs": [firsts[index], min(firsts[index] + shard_size,
                                                                                         n_inputs)],
                                          "sequences": [start, stop], "fingerprint": fingerprint}
            captured.save(out / shard_name(index), names=names, dtype=dtype)
            stored = list(captured.arrays) if names is None else names
            manifest["shards"].append({"file": shard_name(index), **{k: captured.metadata["shard"][k] for k in (
                "inputs", "sequences")}, "n_tokens": int(captured.seq_offsets[-1])})
            if not manifest["arrays"]:
                manifest["default"] = "keys" if "keys" in stored else stored[0]
                manifest["arrays"] = {n: {"axes": list(captured.axes[n]), "shape": [
                    *captured.arrays[n].shape[:-2], manifest["n_tokens"], captured.arrays[n].shape[-1]]}
                    for n in stored}
                meta = captured.metadata
                manifest["metadata"] = {"model": meta["model"], "capture": {
                    **{k: v for k, v in meta["capture"].items() if k != "sequence_lengths"},
                    "windows": plan.window_info}, "arrays": {n: meta["arrays"][n] for n in stored}}
            manifest["complete"] = index == len(firsts) - 1
            write_manifest(out, manifest)
    finally:
        if bar is not None:
            bar.close()
    return open_shards(out)


def as_shards(keys, *, name=None):
    """Return `keys` as :class:`KeyShards` when it is one or names a shard directory/manifest, else None."""
    if isinstance(keys, KeyShards):
        return keys
    return open_shards(keys, name=name) if is_shard_source(keys) else None
