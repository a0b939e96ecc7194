"""The ``geomln`` command line: a registry of subcommands, each ``add_args(parser)`` + ``run(args) -> int``.

Expected failures print one ``geomln: error: ...`` line and exit 1; usage errors exit 2;
anything unexpected prints one ``internal error`` line unless ``--traceback`` is given.
Library errors name Python parameters (`` `keys` ``, ``resume=True``); before they are printed, each
mention of a parameter a subcommand takes from a flag is rewritten to that flag (:func:`speak_cli`).
"""

import argparse
import importlib
import re
import signal
import sys
import threading

from .._version import __version__
from ..errors import GeomlnError

__all__ = ["main", "speak_cli", "forget_handled_interrupt", "SUBCOMMANDS"]

#: name -> (module under geomln.cli, one-line help). Modules are imported lazily.
SUBCOMMANDS = {
    "angles": ("angles", "angles of a matrix's rows to 1 and to their fitted hyperplane"),
    "experiment": ("experiment", "reproduce the paper's experiments on CPU (needs the torch extra)"),
    "capture": ("capture", "record keys, queries and hidden states of a local model (needs the torch extra)"),
    "theory": ("theory", "exact expected unselectable fraction of Gaussian keys over a grid of (n, d)"),
    "montecarlo": ("montecarlo", "Monte Carlo of unselectable keys over (n, d): the paper's Figure 1c/1d"),
    "analyze": ("analyze", "per layer x head report of the keys that can never get the top attention score"),
}


#: a backticked name, or name=value with a value written in Python (quoted string, True/False, int, ...)
_MENTION = re.compile(
    r"`(?P<quoted>[A-Za-z_]\w*)`"
    r"|(?<![\w.\-/\\])(?P<name>[A-Za-z_]\w*)=(?P<value>'[^']*'|\"[^\"]*\"|True\b|False\b|\.\.\.|-?\d+\b)"
)


def speak_cli(message, flags):
    """Rewrite the Python parameter names in an error `message` into the command-line flags they come from.

    Parameters
    ----------
    message : str
        Text of a library error, e.g. ``"distribution 'from_keys' needs `keys`"``.
    flags : dict of str to str
        Parameter name -> flag (``{"keys": "--keys"}``); a key ``"name=value"`` gives the wording of one
        exact assignment (``{"resume=False": "--overwrite"}``).

    Returns
    -------
    str
        `message` with `` `name` `` -> `` `flag` `` and ``name=value`` -> ``flag value`` (``flag`` alone for
        ``True``, ``without flag`` for ``False``) wherever `name` is in `flags`; everything else unchanged.

    Examples
    --------
    >>> speak_cli("`scheduler` needs executor='dask'; choose one with name=...",
    ...           {"scheduler": "--scheduler", "executor": "--executor", "name": "--name"})
    '`--scheduler` needs --executor dask; choose one with --name ...'
    >>> speak_cli("rerun with resume=True, or resume=False", {"resume": "--resume", "resume=False": "--overwrite"})
    'rerun with --resume, or --overwrite'
    """

    def replace(match):
        if match["quoted"] is not None:
            return f"`{flags[match['quoted']]}`" if match["quoted"] in flags else match[0]
        name, value = match["name"], match["value"]
        if match[0] in flags:
            return flags[match[0]]
        if name not in flags:
            return match[0]
        if value == "True":
            return flags[name]
        if value == "False":
            return f"without {flags[name]}"
        return f"{flags[name]} {value.strip(chr(39) + chr(34))}"

    return _MENTION.sub(replace, message)


def _flags(parser, args):
    """Map the dest of every option on the path of subcommands `args` took through `parser` to its long flag."""
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen is not None:
                flags.update(_flags(action.choices[chosen], args))
        elif action.option_strings and action.dest != "help":
            flags[action.dest] = action.option_strings[-1]
    return flags


def _build_parser(argv):
    """Return the parser, with the options of the subcommand `argv` names (its first word not a flag).

    Only that subcommand's module is imported: each pulls in numpy, scipy and more (about 1 s for all).
    """
    parser = argparse.ArgumentParser(
        prog="geomln", description="Exact geometry of attention keys: LayerNorm, selectable keys, hulls."
    )
    parser.add_argument("--version", action="version", version=f"geomln {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of unexpected errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((word for word in argv if not word.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        if name == chosen:
            module = importlib.import_module(f"geomln.cli.{module_name}")
            sub.description = module.__doc__
            module.add_args(sub)
            sub.set_defaults(run=module.run)
    return parser


def forget_handled_interrupt():
    """Clear CPython's record of an unhandled Ctrl-C, once the command line has handled it (exit status 130).

    A KeyboardInterrupt that escaped a nested evaluation (an extension module running Python code while it
    is imported, say) sets that record although :func:`main` caught the interrupt, and under ``python -m``
    the interpreter then kills itself with SIGINT at exit (status -2, not 130). Any evaluation that completes
    clears it. Does nothing where the C API is not reachable (not CPython).
    """
    import ctypes

    run_source = getattr(getattr(ctypes, "pythonapi", None), "PyRun_SimpleString", None)
    if run_source is not None:
        run_source(b"pass")


def _import_subcommand(argv):
    """:func:`_build_parser`, or None after a Ctrl-C (which may land while numpy, scipy, ... are imported).

    An extension module that imports another one from C can turn the KeyboardInterrupt into an ImportError
    (numpy: ``PyCapsule_Import could not import module "datetime"``), so a Ctrl-C is also noted by a SIGINT
    handler of our own while the import runs, where Python lets us set one (the main thread).
    """
    interrupts = []

    def note_interrupt(signum, frame):
        interrupts.append(signum)
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, note_interrupt) if in_main_thread else None
    try:
        return _build_parser(argv)
    except KeyboardInterrupt:
        return None
    except ImportError:
        if interrupts:
            return None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def main(argv=None):
    """Run the command line with `argv` (default ``sys.argv[1:]``) and return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _import_subcommand(argv)
    if parser is None:
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
        # parameters named like a flag's dest, plus the subcommand's own PARAMETERS (e.g. checkpoint -> --out)
        module = sys.modules[f"geomln.cli.{SUBCOMMANDS[args.command][0]}"]
        flags = {**_flags(parser, args), **getattr(module, "PARAMETERS", {})}
        print(f"geomln: error: {speak_cli(str(exc), flags)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("geomln: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if args.traceback:
            raise
        print(f"geomln: internal error: {type(exc).__name__}: {exc} (rerun with --traceback)", file=sys.stderr)
        return 1
