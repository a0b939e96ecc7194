"""Helpers of ``geomln experiment``: common options, torch set-up, provenance, CSV output."""

import csv
import datetime
import platform
import sys
from pathlib import Path

import numpy as np

from .._files import atomic_output
from .._version import __version__
from ..errors import GeomlnError


def _common(parser):
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _torch(threads):
    try:
        import torch
    except ImportError:
        raise GeomlnError("`geomln experiment` needs PyTorch: pip install 'geomln[torch]'") from None
    if threads < 1:
        raise GeomlnError(f"`--threads` must be >= 1; got {threads}")
    torch.set_num_threads(threads)
    return torch


def _loop_options(args):
    """Keyword arguments of the training loop that both experiments take from the same CLI options."""
    return {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "eval_every": args.eval_every,
        "progress": not args.no_progress,
    }


def _provenance(args, torch, started, wall_time):
    arguments = {k: v for k, v in vars(args).items() if not callable(v)}
    versions = {
        "geomln": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    try:
        import tokenizers

        versions["tokenizers"] = tokenizers.__version__
    except ImportError:  # pragma: no cover
        pass
    if "transformers" in sys.modules:  # only where the experiment used it (importing it is slow)
        versions["transformers"] = sys.modules["transformers"].__version__
    return {
        "command": "geomln " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name == "geomln" else None,
        "arguments": arguments,
        "versions": versions,
        "platform": platform.platform(),
        "started_utc": started,
        "wall_time_s": round(wall_time, 3),
    }


def _write_csv(path, header, rows):
    with atomic_output(path) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
