"""Store notebooks without outputs: clear outputs, execution counts and run metadata in place.

Usage::

    python notebooks/strip_outputs.py              # every notebook next to this script
    python notebooks/strip_outputs.py a.ipynb ...  # the given notebooks
    python notebooks/strip_outputs.py --check      # exit 1 (listing them) if any notebook has outputs

Needs ``nbformat`` (in the ``test`` extra).
"""

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def has_outputs(notebook):
    """Return True if any code cell of `notebook` holds outputs, an execution count or execution metadata."""
    return any(
        cell.cell_type == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None or "execution" in cell.metadata)
        for cell in notebook.cells
    )


def strip(notebook):
    """Clear outputs, execution counts and per-cell execution metadata of `notebook` in place; return it."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    return notebook


def main(argv=None):
    """Strip (or with ``--check`` only inspect) notebooks; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report notebooks that have outputs")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(HERE.glob("*.ipynb"))
    dirty = []
    for path in paths:
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if not has_outputs(notebook):
            continue
        dirty.append(path)
        if not args.check:
            nbformat.write(strip(notebook), path)
    for path in dirty:
        print(f"{'has outputs' if args.check else 'stripped'}: {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
