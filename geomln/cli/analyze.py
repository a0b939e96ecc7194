"""Report, per layer x head (x sequence) of a key file, which keys can never receive the top attention score.

Prints a readable table (sequences pooled per layer x head); --format json/csv writes the full per-slice
report (to --out when given, atomically; the table then still goes to stdout). A shard directory is
analysed one shard at a time and reported as one file. --plot draws the unselectable
fraction per (layer, head) as a heatmap.
"""

import io
import sys
import warnings
from pathlib import Path

import numpy as np

from .._files import atomic_output
from ..errors import DataFileError, GeomlnWarning, InputError
from ..executors import EXECUTORS
from ..models.analysis import NORMALIZATIONS, analyze_keys
from ..models.io import load_array
from ..models.keyfile import load_keys
from ..models.shards import as_shards
from ._output import write_text

#: library parameters that are not named like a flag (see geomln.cli._main.speak_cli)
PARAMETERS = {"keys": "file"}
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")
_PROGRESS_MIN_SLICES = 10


def add_args(parser):
    parser.add_argument("file", help="key file (.npz, .npy, .safetensors, .pt, .h5, .csv, .tsv, .txt), or a "
                                     "shard directory of `geomln capture --shard-size` (or its manifest.json), "
                                     "analysed shard by shard")
    parser.add_argument("--name", help="array inside the file (default: the file's default array), e.g. "
                                       "hidden_before_ln")
    parser.add_argument("--axes", help="axis names as stored, e.g. layer,head,token,dim (default: the file's "
                                       "metadata)")
    parser.add_argument("--bias", metavar="FILE", help="additive score per key, a vector of length n (.npy, "
                                                       ".npz, .csv, .tsv, .txt)")
    parser.add_argument("--causal", action="store_true",
                        help="also analyse causal attention (the query at t sees keys 0..t)")
    parser.add_argument("--queries", metavar="FILE_OR_ARRAY",
                        help="real queries: a key file, or the name of an array in FILE (e.g. queries)")
    parser.add_argument("--normalization", choices=NORMALIZATIONS,
                        help="normalize every key first (LayerNorm's projection, scaling, full LayerNorm, "
                             "RMSNorm)")
    parser.add_argument("--query-norm", type=float, metavar="R",
                        help="also report the largest attention weight each key can get from a query of "
                             "norm <= R")
    parser.add_argument("--tol", type=float, help="relative tolerance (default from the stored dtype)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    parser.add_argument("--per-slice", action="store_true",
                        help="table: one line per slice, not per layer x head")
    parser.add_argument("--out", help="write the --format output to this file (atomically) instead of stdout")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="heatmap of the unselectable fraction per (layer, head)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: this process (default); dask: the Dask cluster at --scheduler, else a "
                             "local Dask cluster (needs the dask extra)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (default: one on a terminal for 10+ slices or --query-norm)")


def _load_bias(path, keys):
    """Load the --bias vector and check it holds one score per key of every slice of `keys`."""
    values = np.asarray(load_array(path))
    if values.ndim == 2 and 1 in values.shape:
        values = values.reshape(-1)
    if values.ndim != 1:
        raise InputError(f"`--bias` must hold a vector of one score per key; {str(path)!r} has shape "
                         f"{values.shape}")
    lengths = sorted({keys.n_tokens} if keys.seq_offsets is None else set(np.diff(keys.seq_offsets).tolist()))
    if lengths != [values.size]:
        found = (f"every slice has {lengths[0]} keys" if len(lengths) == 1 else
                 f"the slices have {' or '.join(map(str, lengths))} keys, so no one --bias fits them all")
        raise InputError(f"`--bias` must hold one score per key of each slice of the file: {found}, and "
                         f"{str(path)!r} holds {values.size} scores; choose with --name an array whose "
                         f"slices have {values.size} keys, or give a --bias to match")
    return values


def _check_destination(path, option):
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise DataFileError(f"`{option}`: directory {str(parent)!r} does not exist")


def _plot_bytes(report, suffix):
    from matplotlib.figure import Figure

    from ..plotting import plot_unselectable_by_layer_head

    grid = report.fraction_grid()[0]
    figure = Figure(figsize=(1.2 + 0.45 * grid.shape[1], 1.0 + 0.4 * grid.shape[0]), layout="constrained")
    plot_unselectable_by_layer_head(report, ax=figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format=suffix.lstrip("."), dpi=120)
    return buffer.getvalue()


def run(args):
    if args.plot is not None:
        suffix = Path(args.plot).suffix.lower()
        if suffix not in _PLOT_SUFFIXES:
            raise DataFileError(f"`--plot` must end in {', '.join(_PLOT_SUFFIXES)}; got {args.plot!r}")
        _check_destination(args.plot, "--plot")
    if args.out is not None and str(args.out) != "-":
        _check_destination(args.out, "--out")
    keys = as_shards(args.file, name=args.name)
    if keys is None:
        keys = load_keys(args.file, name=args.name, axes=args.axes)
    elif args.axes is not None:
        raise InputError("`--axes` cannot be given with a shard directory: its shard files name their axes")
    bias = None if args.bias is None else _load_bias(args.bias, keys)
    long_run = keys.n_slices >= _PROGRESS_MIN_SLICES or args.query_norm is not None
    progress = not args.no_progress and sys.stderr.isatty() and long_run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GeomlnWarning)
        report = analyze_keys(keys, bias=bias, causal=args.causal, queries=args.queries,
                              normalization=args.normalization, tol=args.tol, query_norm=args.query_norm,
                              progress=progress, executor=args.executor, scheduler=args.scheduler)
    for warning in caught:  # the library's caveats become one note line each; anything else is re-issued
        if issubclass(warning.category, GeomlnWarning):
            print(f"geomln: note: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    table = report.to_table(per_slice=args.per_slice)
    text = {"table": table, "json": report.to_json(), "csv": report.to_csv()}[args.format]
    image = None if args.plot is None else _plot_bytes(report, Path(args.plot).suffix.lower())
    # everything is computed: now write, each file atomically
    if image is not None:
        with atomic_output(args.plot, "wb") as stream:
            stream.write(image)
    write_text(text, args.out)
    if args.out is not None and str(args.out) != "-":
        sys.stdout.write(table)
    return 0
