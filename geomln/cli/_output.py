"""Helpers shared by subcommands: JSON output to stdout or, atomically, to a file."""

import json
import sys

from .._files import atomic_output


def write_text(text, out):
    """Write `text` to the file `out` atomically, or to stdout when `out` is None or ``-``."""
    if out is None or str(out) == "-":
        sys.stdout.write(text)
        return
    with atomic_output(out) as stream:
        stream.write(text)


def dumps_json(payload):
    """Serialise `payload` as indented JSON with a trailing newline."""
    return json.dumps(payload, indent=2, sort_keys=False) + "\n"
