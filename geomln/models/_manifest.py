"""The manifest of a sharded capture: ``OUT/manifest.json`` naming the shard files ``OUT/shard-00000.npz``, ...

Written by :func:`geomln.models.shards.capture_to_shards` after every shard (atomically, so it only ever names
complete shards), with ``"complete": true`` after the last one. Read here, below :mod:`geomln.models.keyfile`,
so that :func:`geomln.load_keys` and :func:`geomln.analyze_keys` accept a shard directory::

    {"format": "geomln.shards", "version": 1, "complete": true, "fingerprint": "<sha256 of inputs + options>",
     "shard_size": 7, "n_inputs": 30, "n_sequences": 31, "n_tokens": 640, "default": "keys",
     "arrays": {"keys": {"axes": ["layer", "head", "token", "dim"], "shape": [2, 2, 640, 4]}, ...},
     "sequence_lengths": [...],                       # one per sequence (window), in order
     "metadata": {"model": {...}, "capture": {...}},  # shared by all shards
     "shards": [{"file": "shard-00000.npz", "inputs": [0, 7], "sequences": [0, 8], "n_tokens": 150}, ...]}

``inputs`` and ``sequences`` are half-open ranges of the input texts and of the captured sequences (a text
longer than the model's window is several sequences, all in the same shard).
"""

import json
from pathlib import Path

from .._files import atomic_output
from ..errors import DataFileError

__all__ = ["MANIFEST_NAME", "FORMAT_NAME", "shard_name", "is_shard_source", "read_manifest", "write_manifest"]

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "geomln.shards"
FORMAT_VERSION = 1
_FIELDS = ("complete", "fingerprint", "shard_size", "n_inputs", "n_sequences", "n_tokens", "default", "arrays",
           "sequence_lengths", "metadata", "shards")


def shard_name(index):
    """Return the file name of shard `index`: ``shard-00000.npz``, ..."""
    return f"shard-{index:05d}.npz"


def is_shard_source(path):
    """Whether `path` (a str or Path) is a directory holding a manifest, or a ``.json`` file (read as one)."""
    if not isinstance(path, (str, Path)):
        return False
    path = Path(path)
    return (path / MANIFEST_NAME).is_file() if path.is_dir() else path.suffix.lower() == ".json"


def read_manifest(path, *, complete=True):
    """Read and check the manifest of the shard directory `path` (or the manifest file itself).

    Returns the manifest dict with ``"path"`` (the manifest's Path) and ``"files"`` (the shard Paths) added.
    Raises :class:`DataFileError` naming the path for a directory without a manifest, a file that is not one,
    a shard file that is missing, and (with `complete`) a capture that was interrupted.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME if path.is_dir() else path
    if not manifest_path.is_file():
        where = f"directory {str(path)!r} holds no {MANIFEST_NAME}" if path.is_dir() else f"no such file: {str(path)!r}"
        raise DataFileError(f"{where}; expected a shard directory of `geomln capture --shard-size` or its "
                            f"{MANIFEST_NAME}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFileError(f"cannot read the shard manifest {str(manifest_path)!r}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DataFileError(f"{str(manifest_path)!r} is not a shard manifest (expected \"format\": "
                            f"{FORMAT_NAME!r}); key files are .npz, .npy, .safetensors, .pt, .h5, ...")
    missing = [k for k in _FIELDS if k not in manifest]
    if manifest.get("version") != FORMAT_VERSION or missing:
        raise DataFileError(f"shard manifest {str(manifest_path)!r}: expected version {FORMAT_VERSION} with "
                            f"{', '.join(_FIELDS)}; got version {manifest.get('version')!r}"
                            + (f", missing {', '.join(missing)}" if missing else ""))
    if complete and not manifest["complete"]:
        n_shards = -(-manifest["n_inputs"] // manifest["shard_size"])
        raise DataFileError(f"{str(manifest_path.parent)!r} holds an interrupted capture ({len(manifest['shards'])} "
                            f"of {n_shards} shards); finish it by rerunning the capture with --resume "
                            f"(resume=True in Python)")
    files = [manifest_path.parent / shard["file"] for shard in manifest["shards"]]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise DataFileError(f"shard manifest {str(manifest_path)!r} names missing shard file(s) "
                            f"{', '.join(absent)}")
    return {**manifest, "path": manifest_path, "files": files}


def write_manifest(directory, manifest):
    """Write `manifest` (without the ``path``/``files`` that :func:`read_manifest` adds) atomically."""
    body = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
            **{k: v for k, v in manifest.items() if k not in ("path", "files", "format", "version")}}
    with atomic_output(Path(directory) / MANIFEST_NAME) as stream:
        stream.write(json.dumps(body, indent=1) + "\n")
