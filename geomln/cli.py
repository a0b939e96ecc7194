"""The ``geomln`` command line: a registry of subcommands, each ``add_args(parser)`` + ``run(args) -> int``.

Expected failures print one ``geomln: error: ...`` line and exit 1; usage errors exit 2;
anything unexpected prints one ``internal error`` line unless ``--traceback`` is given.
"""

import argparse
import importlib
import sys

from ._version import __version__
from .errors import GeomlnError

__all__ = ["main", "SUBCOMMANDS"]

#: name -> (module under geomln.commands, one-line help). Modules are imported lazily.
SUBCOMMANDS = {
    "angles": ("angles", "angles of a matrix's rows to 1 and to their fitted hyperplane"),
    "experiment": ("experiment", "reproduce the paper's experiments on CPU (needs the torch extra)"),
    "capture": ("capture", "record keys, queries and hidden states of a local model (needs the torch extra)"),
    "theory": ("theory", "exact expected unselectable fraction of Gaussian keys over a grid of (n, d)"),
    "montecarlo": ("montecarlo", "Monte Carlo of unselectable keys over (n, d): the paper's Figure 1c/1d"),
    "analyze": ("analyze", "per layer x head report of the keys that can never get the top attention score"),
}


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="geomln", description="Exact geometry of attention keys: LayerNorm, selectable keys, hulls."
    )
    parser.add_argument("--version", action="version", version=f"geomln {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of unexpected errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(f"geomln.commands.{module_name}")
        sub = commands.add_parser(name, help=help_text, description=module.__doc__)
        module.add_args(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv=None):
    """Run the command line with `argv` (default ``sys.argv[1:]``) and return the exit code."""
    try:
        parser = _build_parser()  # imports every subcommand (numpy, scipy, ...): Ctrl-C may land here
    except KeyboardInterrupt:
        print("geomln: error: interrupted", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except (GeomlnError, TypeError) as exc:
        if args.traceback and not isinstance(exc, GeomlnError):
            raise
        print(f"geomln: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("geomln: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if args.traceback:
            raise
        print(f"geomln: internal error: {type(exc).__name__}: {exc} (rerun with --traceback)", file=sys.stderr)
        return 1
