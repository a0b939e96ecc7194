"""Text forms of Monte Carlo tables: rows to CSV and JSON and back, and the checkpoint file.

The JSON document (format ``geomln.montecarlo/1``) is also the checkpoint: it is rewritten atomically
with ``"complete": false`` as cells finish (at most every ``SAVE_SECONDS``, and whenever a run stops early)
and once more at the end with ``true``.
"""

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import NamedTuple

from .._files import atomic_output
from ..errors import DataFileError

#: seconds between two checkpoint rewrites: each rewrites the whole table (a full grid has 1,508 cells, and
#: rewriting after each one took 4.6 s of the parent's time in a 12 s run)
SAVE_SECONDS = 2.0

__all__ = [
    "FORMAT",
    "COLUMNS",
    "MonteCarloRow",
    "cell_key",
    "csv_text",
    "json_text",
    "read_csv",
    "read_json",
    "Checkpoint",
]

FORMAT = "geomln.montecarlo/1"


class MonteCarloRow(NamedTuple):
    """One cell of a Monte Carlo table: `trials` key sets of `n` keys in ``R^d``.

    Attributes
    ----------
    n, d : int
        Number of keys per set and their dimension.
    distribution, normalization : str
        How the keys were drawn and what was applied to them afterwards.
    trials : int
        Number of key sets.
    fraction : float
        Mean over the sets of the fraction of unselectable keys.
    fraction_sd : float
        Standard deviation of that fraction over the sets (NaN for one set).
    fraction_low, fraction_high : float
        Two-sided 95% Student-t interval for the expected fraction, clipped to [0, 1].
    any_unselectable : float
        Fraction of the sets with at least one unselectable key (the paper's Figure 1c/1d).
    any_unselectable_low, any_unselectable_high : float
        Two-sided 95% Wilson interval for that probability.
    mean_vertices : float
        Mean number of selectable keys per set (the hull vertices, when the keys are distinct).
    theory_fraction : float
        Exact expected fraction where it is known (Gaussian keys, their projection; 0 for points on a
        sphere), else NaN.
    seconds : float
        Wall time spent on this cell (sampling, normalization and the engine).
    """

    n: int
    d: int
    distribution: str
    normalization: str
    trials: int
    fraction: float
    fraction_sd: float
    fraction_low: float
    fraction_high: float
    any_unselectable: float
    any_unselectable_low: float
    any_unselectable_high: float
    mean_vertices: float
    theory_fraction: float
    seconds: float


COLUMNS = MonteCarloRow._fields
_INT = {"n", "d", "trials"}
_STR = {"distribution", "normalization"}


def cell_key(row):
    """Return the identity of a row's cell: (distribution, normalization, n, d)."""
    return (row.distribution, row.normalization, row.n, row.d)


def _to_json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def row_json(row):
    """One row as a compact JSON object (NaN written as null)."""
    return json.dumps(
        {name: _to_json_value(value) for name, value in zip(COLUMNS, row, strict=True)}, allow_nan=False
    )


def _coerce(name, value, source):
    try:
        if name in _INT:
            return int(value)
        if name in _STR:
            return str(value)
        return float("nan") if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        raise DataFileError(
            f"{source}: column {name!r} holds {value!r}, which is not a valid value"
        ) from None


def row_from_mapping(mapping, source):
    """Rebuild a row from a dict read from CSV or JSON, raising :class:`DataFileError` on a bad record."""
    missing = [name for name in COLUMNS if name not in mapping]
    if missing:
        raise DataFileError(f"{source}: a row lacks the column(s) {', '.join(missing)}")
    return MonteCarloRow(*(_coerce(name, mapping[name], source) for name in COLUMNS))


def csv_text(rows):
    """Return the rows as CSV with a header; floats written with ``repr`` so they read back exactly."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                "" if isinstance(v, float) and math.isnan(v) else repr(v) if isinstance(v, float) else v
                for v in row
            ]
        )
    return stream.getvalue()


def json_text(row_texts, provenance, complete):
    """Return the JSON document from serialized rows (so a checkpoint costs a join, not a re-encode)."""
    head = json.dumps(
        {"format": FORMAT, "complete": bool(complete), "columns": list(COLUMNS), "provenance": provenance},
        indent=1,
        allow_nan=False,
    )
    body = ",\n  ".join(row_texts)
    return (
        head[:-2] + ',\n "rows": [\n  ' + body + "\n ]\n}\n"
        if row_texts
        else head[:-2] + ',\n "rows": []\n}\n'
    )


def read_csv(path):
    """Rows of a CSV file written by :func:`csv_text`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            records = list(csv.DictReader(stream))
    except OSError as exc:
        raise DataFileError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataFileError(f"{str(path)!r} is not a Monte Carlo CSV table: {exc}") from None
    return tuple(row_from_mapping(record, repr(str(path))) for record in records)


def read_json(path):
    """``(rows, provenance, complete)`` from a JSON document written by :func:`json_text`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as stream:
            payload = json.load(stream)
    except OSError as exc:
        raise DataFileError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != FORMAT
        or not isinstance(payload.get("rows"), list)
    ):
        raise DataFileError(
            f'{str(path)!r} is not a geomln Monte Carlo result (expected "format": {FORMAT!r})'
        )
    rows = tuple(row_from_mapping(record, repr(str(path))) for record in payload["rows"])
    return rows, payload.get("provenance", {}), bool(payload.get("complete", False))


class Checkpoint:
    """Finished rows of a run, rewritten atomically to `path` (when given) at most every ``SAVE_SECONDS``.

    :meth:`flush` writes rows added since the last rewrite; a run that stops early calls it, so the file
    then holds every finished cell.
    """

    def __init__(self, path, provenance, order):
        self.path = None if path is None else Path(path)
        self.provenance = provenance
        self.order = order  # cell key -> sort key of the table
        self.rows = {}
        self.texts = {}
        self.written = False
        self.unsaved = False
        self.saved_at = time.monotonic()

    def add(self, rows, *, save=True):
        for row in rows:
            self.rows[cell_key(row)] = row
            self.texts[cell_key(row)] = row_json(row)
        self.unsaved = self.unsaved or (save and bool(rows))
        self.tick()

    def tick(self):
        """Write the rows added since the last rewrite once ``SAVE_SECONDS`` have passed since it."""
        if self.unsaved and time.monotonic() - self.saved_at >= SAVE_SECONDS:
            self.save(complete=False)

    def flush(self):
        """Write the rows added since the last rewrite, if any."""
        if self.unsaved:
            self.save(complete=False)

    def save(self, *, complete):
        if self.path is None:
            return
        texts = [self.texts[key] for key in sorted(self.texts, key=self.order)]
        with atomic_output(self.path) as stream:
            stream.write(json_text(texts, self.provenance, complete))
        self.written = True
        self.unsaved = False
        self.saved_at = time.monotonic()
