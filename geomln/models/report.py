"""The result of :func:`~geomln.analyze_keys`: one row per analysed slice, its tables, summaries and files."""

import csv
import io
import json
from dataclasses import dataclass, field

from . import tidy

__all__ = ["KeyReport", "SCHEMA_VERSION"]

#: version of the JSON report layout (``{"schema_version", "rows", "meta"}``); bumped when fields change meaning
SCHEMA_VERSION = 2
#: labels summed over in the aggregated table (one row per layer x head)
_POOLED_LABELS = ("sequence", "batch")


@dataclass(frozen=True)
class KeyReport:
    """One row per analysed ``(n, d)`` slice, plus metadata about the run.

    Attributes
    ----------
    rows : list of dict
        One dict per slice, always with ``labels`` (axis name -> index), ``n``, ``d``, ``affine_rank``,
        ``n_unselectable``, ``fraction_unselectable``, ``unselectable_indices`` (row indices inside the
        slice), ``n_duplicates`` (keys equal to another key), ``unselectable_duplicate_indices`` and
        ``n_unselectable_duplicates`` (unselectable keys that are copies of another key), ``n_borderline``,
        ``borderline_indices`` and ``seconds``; ``unselectable_tokens`` when the file has token strings.
        With ``causal=True`` also
        ``causal_unselectable_indices``, ``n_causal_unselectable``, ``causal_last_positions`` and
        ``causal_pair_fraction``; with queries ``n_queries``, ``argmax_counts``, ``n_selected``,
        ``selectable_never_selected_indices``, ``n_selectable_never_selected`` and
        ``n_unselectable_selected`` (plus ``query_heads``, the query heads paired with this key head, for
        grouped-query attention); with ``query_norm`` ``max_attention`` (per key) and
        ``min_max_attention``.
    meta : dict
        Source, array name, axes, ``source_dtype``, ``tol``, ``normalization``, options and totals; the
        ``layout_convention`` applied to name the axes (or None), ``rope`` and ``scored`` (whether the
        model's scores use these vectors), ``model`` (heads, key/value heads, ``d_head``, query groups, rotary
        facts, when known), ``hook_points``, ``tokens`` and ``seq_offsets`` of the keys, and
        ``unselectable_duplicates`` (``n``, ``share`` of the unselectable keys, ``mostly_duplicates``).
    """

    rows: list
    meta: dict = field(default_factory=dict)

    def to_dict(self):
        """``{"schema_version": SCHEMA_VERSION, "rows": [...], "meta": {...}}``, ready for :func:`json.dumps`."""
        return {"schema_version": SCHEMA_VERSION, "rows": self.rows, "meta": self.meta}

    def to_json(self):
        """Return the report as indented JSON text (:meth:`to_dict`) ending in a newline."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv(self):
        """One CSV line per row: a column per label, scalars as numbers, index lists space-separated."""
        label_names = tidy.label_names(self.rows)
        fields = [k for k in (self.rows[0] if self.rows else {}) if k != "labels"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*label_names, *fields])
        for row in self.rows:
            cells = [row["labels"].get(name, "") for name in label_names]
            for key in fields:
                value = row.get(key)
                cells.append(" ".join(map(str, value)) if isinstance(value, list) else value)
            writer.writerow(cells)
        return buffer.getvalue()

    def fraction_grid(self, *, rows="layer", cols="head"):
        """Unselectable fraction pooled over all other labels, as a ``rows x cols`` grid.

        Returns
        -------
        grid : ndarray of float, shape (n_rows, n_cols)
            ``sum(n_unselectable) / sum(n)`` over the slices with those labels (NaN where none).
        row_values, col_values : list
            The label values along each side (``[None]`` when the report has no such label).
        """
        return self.metric_grid("fraction_unselectable", rows=rows, cols=cols)

    def metric_grid(self, metric, *, rows="layer", cols="head"):
        """Any per-slice metric pooled over all other labels, as a ``rows x cols`` grid.

        Parameters
        ----------
        metric : str or callable
            A scalar field of the rows (``"fraction_unselectable"``, ``"causal_pair_fraction"``,
            ``"min_max_attention"``, ...) or a function ``row -> float``.
        rows, cols : str
            Label names along each side; a name the report lacks gives one ``None`` row or column.

        Returns
        -------
        grid : ndarray of float, shape (n_rows, n_cols)
            Mean of `metric` over the slices with those labels, weighted by their number of keys (so a
            fraction of keys pools exactly); NaN where no slice has those labels.
        row_values, col_values : list
            The label values along each side.

        Examples
        --------
        >>> import numpy as np, geomln
        >>> keys = geomln.KeyArray.from_array(np.random.default_rng(0).normal(size=(2, 3, 12, 2)),
        ...                                   axes="layer,head,token,dim")
        >>> grid, layers, heads = geomln.analyze_keys(keys, causal=True).metric_grid("causal_pair_fraction")
        >>> grid.shape, layers, heads
        ((2, 3), [0, 1], [0, 1, 2])
        """
        return tidy.metric_grid(self, metric, rows, cols)

    def per_key(self):
        """Return the tidy long format: one row per key of every slice, as a dict of NumPy columns.

        Returns
        -------
        dict of str -> ndarray
            A column per label of the slices (``layer``, ``head``, ``sequence``, ...; -1 where a slice lacks
            it), ``index`` (the key's row inside its slice = its position in its sequence), ``selectable``,
            ``borderline``, ``duplicate_unselectable`` (unselectable because it copies another key), and
            when known ``token``; with ``causal=True`` ``causal_last_position`` and ``causally_selectable``;
            with queries ``argmax_count``; with ``query_norm`` ``max_attention``. ``numpy.rec.fromarrays``
            or ``pandas.DataFrame`` take it as is.

        Examples
        --------
        >>> import numpy as np, geomln
        >>> square_and_centre = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]], dtype=float)
        >>> columns = geomln.analyze_keys(square_and_centre, causal=True).per_key()
        >>> columns["index"].tolist(), columns["selectable"].tolist()
        ([0, 1, 2, 3, 4], [True, True, True, True, False])
        >>> columns["causal_last_position"].tolist()
        [4, 4, 4, 4, 3]
        """
        return tidy.per_key(self)

    def to_pandas(self, *, per_key=False):
        """Return a ``pandas.DataFrame``: one row per slice, or with `per_key` one row per key.

        Per-slice frames have a column per label and one per row field (index lists stay lists); per-key
        frames hold the columns of :meth:`per_key`.

        Raises
        ------
        ImportError
            Without pandas (the message names the extra to install).
        """
        return tidy.to_pandas(self, per_key_rows=per_key)

    def causal_curve(self, *, group_by=None):
        """Per prefix length ``t``, the fraction of the ``t`` visible keys that can still win (causal runs).

        Key ``i`` can win at prefix ``0..t-1`` when ``i < t`` and its causal last position is ``>= t - 1``;
        counts are pooled over all slices at least ``t`` keys long (per value of the label `group_by`).

        Returns
        -------
        lengths : ndarray of int, shape (T,)
            Prefix lengths ``1..T`` (``T`` the longest slice).
        fractions : ndarray of float, shape (n_groups, T)
            NaN where no slice of the group is that long.
        groups : list
            The `group_by` label values (``[None]`` without `group_by`).

        Raises
        ------
        InputError
            If the report was made without ``causal=True``.
        """
        return tidy.causal_curve(self, group_by=group_by)

    def to_table(self, *, per_slice=False):
        """Return a readable fixed-width table: by default one line per layer x head (sequences pooled).

        Parameters
        ----------
        per_slice : bool
            One line per slice instead of pooling the ``sequence`` and ``batch`` labels.
        """
        groups = {}
        for row in self.rows:
            labels = row["labels"] if per_slice else {
                k: v for k, v in row["labels"].items() if k not in _POOLED_LABELS}
            groups.setdefault(tuple(labels.items()), []).append(row)
        label_names = [n for n in tidy.label_names(self.rows) if per_slice or n not in _POOLED_LABELS]
        pooled = any(len(g) > 1 for g in groups.values())
        header = [*label_names, *(["slices"] if pooled else []), "keys", "d", "rank", "unselectable",
                  "fraction", "dups", "borderline"]
        first = self.rows[0] if self.rows else {}
        if "causal_pair_fraction" in first:
            header += ["causal unsel", "causal pairs"]
        if "query_heads" in first:
            header += ["query heads"]
        if "n_queries" in first:
            header += ["queries", "never picked"]
        if "min_max_attention" in first:
            header += ["min max-attn"]
        header += ["seconds"]
        lines = []
        for key, members in groups.items():
            labels = dict(key)
            n = sum(r["n"] for r in members)
            unselectable = sum(r["n_unselectable"] for r in members)
            ranks = sorted({r["affine_rank"] for r in members})
            cells = [str(labels.get(name, "")) for name in label_names]
            cells += [str(len(members))] if pooled else []
            cells += [str(n), str(members[0]["d"]), _span(ranks), str(unselectable),
                      f"{unselectable / n:.4f}",
                      str(sum(r["n_duplicates"] for r in members)),
                      str(sum(r["n_borderline"] for r in members))]
            if "causal_pair_fraction" in first:
                pairs = sum(r["n"] * (r["n"] + 1) // 2 for r in members)
                winnable = sum(r["causal_pair_fraction"] * r["n"] * (r["n"] + 1) / 2 for r in members)
                cells += [str(sum(r["n_causal_unselectable"] for r in members)), f"{winnable / pairs:.4f}"]
            if "query_heads" in first:
                cells += [_span(members[0]["query_heads"])]
            if "n_queries" in first:
                cells += [str(sum(r["n_queries"] for r in members)),
                          str(sum(r["n_selectable_never_selected"] for r in members))]
            if "min_max_attention" in first:
                cells += [f"{min(r['min_max_attention'] for r in members):.4g}"]
            cells += [f"{sum(r['seconds'] for r in members):.3f}"]
            lines.append(cells)
        widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(header)]
        text = [self._title(), "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
        text += ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
        text.append(self._summary())
        text += self.notes()
        return "\n".join(text) + "\n"

    def notes(self):
        """Return the caveats the numbers need (pre-rotary vectors, a naming convention, duplicates), a line each."""
        return tidy.report_notes(self.meta)

    def _title(self):
        m = self.meta
        source = m.get("source") or "array"
        name = f" [{m['name']}]" if m.get("name") else ""
        shape = " x ".join(f"{a}={s}" for a, s in zip(m.get("axes", []), m.get("shape", []), strict=False))
        extras = [f"normalization={m['normalization']}"] if m.get("normalization") else []
        extras += ["causal"] if m.get("causal") else []
        extras += ["bias"] if m.get("has_bias") else []
        extras += [f"query_norm={m['query_norm']:g}"] if m.get("query_norm") else []
        return (f"{source}{name}: {shape}; {m.get('n_slices', len(self.rows))} slices, stored as "
                f"{m.get('source_dtype')}, tol={m.get('tol', float('nan')):.0e}"
                + (f"; {', '.join(extras)}" if extras else ""))

    def _summary(self):
        n = sum(r["n"] for r in self.rows)
        unselectable = sum(r["n_unselectable"] for r in self.rows)
        share = unselectable / n if n else 0.0
        text = f"total: {unselectable} of {n} keys unselectable ({100 * share:.2f}%)"
        if self.rows and "n_causal_unselectable" in self.rows[0]:
            text += f"; {sum(r['n_causal_unselectable'] for r in self.rows)} causally unselectable"
        if self.rows and "n_selectable_never_selected" in self.rows[0]:
            text += (f"; {sum(r['n_selectable_never_selected'] for r in self.rows)} selectable keys never "
                     f"the argmax of a real query")
        return text + f"; {self.meta.get('seconds', 0.0):.2f} s"


def _span(values):
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"
