"""The tidy table of a Monte Carlo run: :class:`MonteCarloResult`, with CSV/JSON input and output."""

from dataclasses import dataclass, field

import numpy as np

from .._files import atomic_output
from .._validation import as_choice
from ..errors import InputError
from ._store import COLUMNS, csv_text, json_text, read_csv, read_json, row_json

__all__ = ["MonteCarloResult"]


@dataclass(frozen=True)
class MonteCarloResult:
    """A tidy table with one row per (n, d, distribution, normalization) cell, and its provenance.

    Iterating yields :class:`MonteCarloRow` named tuples (no pandas needed); :meth:`column` gives one
    column as an array and :meth:`pivot` an (n, d) grid for heatmaps.

    Attributes
    ----------
    rows : tuple of MonteCarloRow
        Sorted by distribution and normalization (in the order requested), then n, then d.
    provenance : dict
        geomln, NumPy and numba versions, platform, the arguments (with the seed's entropy), the
        seeding scheme and timings (total, warm-up, cells computed and resumed, workers used).
    complete : bool
        False for a partial table (an interrupted run's checkpoint).

    Examples
    --------
    >>> import geomln
    >>> result = geomln.estimate_unselectable([8, 12], 2, trials=20, seed=1, workers=1, progress=False)
    >>> len(result), result.columns[:4]
    (2, ('n', 'd', 'distribution', 'normalization'))
    >>> [(row.n, row.trials) for row in result]
    [(8, 20), (12, 20)]
    >>> bool(result.rows[1].fraction_low <= result.rows[1].theory_fraction <= result.rows[1].fraction_high)
    True
    """

    rows: tuple
    provenance: dict = field(repr=False)
    complete: bool = True

    columns = COLUMNS

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def column(self, name):
        """One column as an array (int for n, d and trials, str for the labels, float otherwise).

        Raises
        ------
        InputError
            If `name` is not a column; the message lists the columns.
        """
        as_choice(name, "name", COLUMNS)
        values = [getattr(row, name) for row in self.rows]
        if name in ("n", "d", "trials"):
            return np.array(values, dtype=np.int64)
        if name in ("distribution", "normalization"):
            return np.array(values, dtype=str)
        return np.array(values, dtype=np.float64)

    def labels(self, name):
        """Return the distinct values of column ``"distribution"`` or ``"normalization"`` in table order."""
        as_choice(name, "name", ("distribution", "normalization"))
        return list(dict.fromkeys(getattr(row, name) for row in self.rows))

    def pivot(self, metric="any_unselectable", *, distribution=None, normalization=None):
        """Values of `metric` on the grid of this table's n (rows) and d (columns).

        Parameters
        ----------
        metric : str
            Any float column, e.g. ``"any_unselectable"``, ``"fraction"`` or ``"theory_fraction"``.
        distribution, normalization : str, optional
            Which part of the table; may be omitted when the table holds only one.

        Returns
        -------
        ns : ndarray of int, shape (a,)
        ds : ndarray of int, shape (b,)
        values : ndarray of float, shape (a, b)
            NaN where the table has no such cell.

        Raises
        ------
        InputError
            If `metric` is not a float column, or a label is missing or ambiguous (listing the choices).
        """
        as_choice(
            metric, "metric", [c for c in COLUMNS if c not in ("n", "d", "distribution", "normalization")]
        )
        chosen = self.select(distribution=distribution, normalization=normalization)
        ns = np.array(sorted({row.n for row in chosen}), dtype=np.int64)
        ds = np.array(sorted({row.d for row in chosen}), dtype=np.int64)
        values = np.full((ns.size, ds.size), np.nan)
        for row in chosen:
            values[np.searchsorted(ns, row.n), np.searchsorted(ds, row.d)] = getattr(row, metric)
        return ns, ds, values

    def select(self, *, distribution=None, normalization=None):
        """Return the rows of one distribution and one normalization (each may be omitted when unique).

        Raises
        ------
        InputError
            If a label is not in the table, or is omitted while the table holds several (listing them).
        """
        picked = {}
        for name, value in (("distribution", distribution), ("normalization", normalization)):
            present = self.labels(name)
            if value is None:
                if len(present) != 1:
                    raise InputError(
                        f"`{name}` must be given: the table holds {len(present)} of them "
                        f"({', '.join(map(repr, present))})"
                    )
                value = present[0]
            picked[name] = as_choice(value, name, present)
        return [
            row
            for row in self.rows
            if row.distribution == picked["distribution"] and row.normalization == picked["normalization"]
        ]

    def to_csv(self, path=None):
        """Write the table as CSV (atomically) to `path`, or return it as a string when `path` is None."""
        text = csv_text(self.rows)
        return _write(text, path)

    def to_json(self, path=None):
        """Write the table and its provenance as JSON (atomically) to `path`, or return the string."""
        text = json_text([row_json(row) for row in self.rows], self.provenance, self.complete)
        return _write(text, path)

    @classmethod
    def from_json(cls, path):
        """Read a table written by :meth:`to_json` (or a run's checkpoint).

        Raises
        ------
        DataFileError
            If the file is missing, unreadable or not a geomln Monte Carlo result.
        """
        rows, provenance, complete = read_json(path)
        return cls(rows, provenance, complete)

    @classmethod
    def from_csv(cls, path):
        """Read a table written by :meth:`to_csv` (its provenance is not part of the CSV).

        Raises
        ------
        DataFileError
            If the file is missing, unreadable or lacks a column.
        """
        return cls(read_csv(path), {}, True)


def _write(text, path):
    if path is None:
        return text
    with atomic_output(path) as stream:
        stream.write(text)
    return None
