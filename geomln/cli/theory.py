"""Print the exact expected unselectable fraction of iid standard normal keys over a grid of (n, d).

The values come from the closed-form angle sums of the regular simplex (see
``geomln.unselectable_fraction_gaussian``); no sampling is involved. ``table`` prints a grid with one
row per n and one column per d; ``csv`` and ``json`` print one record per (n, d) cell with the
expected number of vertices and the fraction at full precision.
"""

import io

import numpy as np

from .._version import __version__
from ..errors import InputError
from ..montecarlo.theory import expected_vertices_gaussian, unselectable_fraction_gaussian
from ._output import dumps_json, write_text

__all__ = ["parse_int_list", "add_args", "run"]

_MAX_VALUES = 1_000_000
_FORMATS = ("table", "csv", "json")


def _parse_int(token, text, name):
    try:
        return int(token)
    except ValueError:
        raise InputError(f"`{name}`: {token.strip()!r} in {text!r} is not an integer") from None


def parse_int_list(text, name, *, minimum=1):
    """Parse a list of integers written as ranges and single values, e.g. ``"3:60"`` or ``"5,8,13"``.

    Parameters
    ----------
    text : str
        Comma-separated items, each an integer ``a``, an inclusive range ``a:b`` or a stepped
        inclusive range ``a:b:s`` (``s >= 1``; ``b`` is included only when ``a + k s == b``).
        Items may be mixed, e.g. ``"3:10,20,40:60:10"``. Whitespace around items is ignored.
    name : str
        Name of the option being parsed (e.g. ``"--n"``), used in error messages.
    minimum : int, default 1
        Smallest allowed value.

    Returns
    -------
    list of int
        The values in the order written, with repeats dropped (first occurrence kept).

    Raises
    ------
    InputError
        If an item is not an integer or a range of integers, a range is empty or has a step
        below 1, a value is below `minimum`, or the list would hold more than 1,000,000 values.

    Examples
    --------
    >>> parse_int_list("3:7", "--n")
    [3, 4, 5, 6, 7]
    >>> parse_int_list("3:11:4, 20", "--n")
    [3, 7, 11, 20]
    >>> parse_int_list("5,8,13,8", "--d")
    [5, 8, 13]
    """
    if not isinstance(text, str):
        raise TypeError(f"`{name}` must be a string such as '3:60' or '5,8,13'; got {type(text).__name__}")
    values = {}
    for item in text.split(","):
        parts = item.split(":")
        if not item.strip() or len(parts) > 3:
            raise InputError(
                f"`{name}`: cannot parse {text!r}; expected comma-separated integers or ranges "
                "like '3:60' or '3:60:2'"
            )
        numbers = [_parse_int(part, text, name) for part in parts]
        if len(numbers) == 1:
            start = stop = numbers[0]
            step = 1
        else:
            start, stop = numbers[0], numbers[1]
            step = numbers[2] if len(numbers) == 3 else 1
            if step < 1:
                raise InputError(f"`{name}`: the step of {item.strip()!r} must be >= 1; got {step}")
            if stop < start:
                raise InputError(
                    f"`{name}`: the range {item.strip()!r} is empty (its end is below its start)"
                )
        if (stop - start) // step + 1 + len(values) > _MAX_VALUES:
            raise InputError(f"`{name}`: {text!r} holds more than {_MAX_VALUES:,} values")
        if start < minimum:
            raise InputError(f"`{name}` values must be >= {minimum}; got {start} in {text!r}")
        values.update(dict.fromkeys(range(start, stop + 1, step)))
    return list(values)


def add_args(parser):
    parser.add_argument(
        "--n", default="3:60", help="numbers of keys: '3:60', '3:60:2' or '5,8,13' (default 3:60)"
    )
    parser.add_argument("--d", default="3:15", help="dimensions, same syntax (default 3:15)")
    parser.add_argument(
        "--format", choices=_FORMATS, default="table", help="grid table, tidy CSV or JSON (default table)"
    )
    parser.add_argument("--digits", type=int, default=5, help="decimals shown by --format table (default 5)")
    parser.add_argument("--out", help="write to this file (atomically) instead of stdout")


def _table(ns, ds, fraction, digits):
    width = max(digits + 3, 6)
    corner = "n \\ d"
    lines = [
        "Expected unselectable fraction 1 - E f0 / n of n iid standard normal keys in R^d (exact theory)",
        f"{corner:>7}" + "".join(f"{d:>{width}}" for d in ds),
    ]
    for i, n in enumerate(ns):
        lines.append(f"{n:>7}" + "".join(f"{value:>{width}.{digits}f}" for value in fraction[i]))
    return "\n".join(lines) + "\n"


def _csv(ns, ds, vertices, fraction):
    stream = io.StringIO()
    stream.write("n,d,expected_vertices,unselectable_fraction\n")
    for i, n in enumerate(ns):
        for j, d in enumerate(ds):
            stream.write(f"{n},{d},{float(vertices[i, j])!r},{float(fraction[i, j])!r}\n")
    return stream.getvalue()


def _json(ns, ds, vertices, fraction):
    rows = [
        {
            "n": n,
            "d": d,
            "expected_vertices": float(vertices[i, j]),
            "unselectable_fraction": float(fraction[i, j]),
        }
        for i, n in enumerate(ns)
        for j, d in enumerate(ds)
    ]
    payload = {
        "geomln_version": __version__,
        "model": "n iid standard normal keys in R^d; exact expected number of hull vertices",
        "references": [
            "Affentranger & Schneider, Discrete Comput. Geom. 7 (1992)",
            "Baryshnikov & Vitale, Discrete Comput. Geom. 11 (1994)",
            "Kabluchko & Zaporozhets, Adv. Appl. Probab. 52 (2020), arXiv:1704.04968",
        ],
        "n": ns,
        "d": ds,
        "rows": rows,
    }
    return dumps_json(payload)


def run(args):
    ns = parse_int_list(args.n, "--n")
    ds = parse_int_list(args.d, "--d")
    if not 0 <= args.digits <= 17:
        raise InputError(f"`--digits` must be between 0 and 17; got {args.digits}")
    n_grid = np.array(ns, dtype=np.int64)[:, None]
    d_grid = np.array(ds, dtype=np.int64)[None, :]
    fraction = unselectable_fraction_gaussian(n_grid, d_grid)
    vertices = expected_vertices_gaussian(n_grid, d_grid)
    if args.format == "table":
        text = _table(ns, ds, fraction, args.digits)
    elif args.format == "csv":
        text = _csv(ns, ds, vertices, fraction)
    else:
        text = _json(ns, ds, vertices, fraction)
    write_text(text, args.out)
    return 0
