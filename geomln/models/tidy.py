"""Reports in the shapes analysis tools want: one row per key, pandas frames, causal curves, per-slice grids.

These read a :class:`~geomln.KeyReport`'s rows and never recompute geometry; the report's methods
(:meth:`~geomln.KeyReport.per_key`, :meth:`~geomln.KeyReport.to_pandas`, ...) call them.
"""

import numpy as np

__all__ = ["per_key", "to_pandas", "causal_curve", "metric_grid", "label_names", "report_notes"]

#: per-key columns of a report row -> column name in the long format (present only when the run computed them)
_PER_KEY_LISTS = {"causal_last_positions": "causal_last_position", "argmax_counts": "argmax_count",
                  "max_attention": "max_attention"}


def label_names(rows):
    """Label names of the report rows, in order of first appearance."""
    names = []
    for row in rows:
        names.extend(n for n in row["labels"] if n not in names)
    return names


def _tokens_of(meta, labels, n):
    tokens, offsets = meta.get("tokens"), meta.get("seq_offsets")
    if tokens is None:
        return None
    start = 0 if offsets is None else offsets[labels.get("sequence", 0)]
    return tokens[start:start + n]


def per_key(report):
    """One row per key of every slice, as a dict of equal-length NumPy columns (see :meth:`KeyReport.per_key`)."""
    rows = report.rows
    names = label_names(rows)
    columns = {name: [] for name in names}
    columns.update(index=[], selectable=[], borderline=[], duplicate_unselectable=[])
    extra = [key for key in _PER_KEY_LISTS if rows and key in rows[0]]
    with_tokens = report.meta.get("tokens") is not None
    if with_tokens:
        columns["token"] = []
    for key in extra:
        columns[_PER_KEY_LISTS[key]] = []
    if rows and "causal_last_positions" in rows[0]:
        columns["causally_selectable"] = []
    for row in rows:
        n = row["n"]
        for name in names:
            columns[name].extend([row["labels"].get(name, -1)] * n)
        columns["index"].extend(range(n))
        selectable = np.ones(n, dtype=bool)
        selectable[row["unselectable_indices"]] = False
        columns["selectable"].extend(selectable.tolist())
        borderline = np.zeros(n, dtype=bool)
        borderline[row["borderline_indices"]] = True
        columns["borderline"].extend(borderline.tolist())
        duplicate = np.zeros(n, dtype=bool)
        duplicate[row.get("unselectable_duplicate_indices", [])] = True
        columns["duplicate_unselectable"].extend(duplicate.tolist())
        if with_tokens:
            columns["token"].extend(_tokens_of(report.meta, row["labels"], n))
        for key in extra:
            columns[_PER_KEY_LISTS[key]].extend(row[key])
        if "causally_selectable" in columns:
            columns["causally_selectable"].extend((np.asarray(row["causal_last_positions"]) >= np.arange(n)).tolist())
    dtypes = {"index": np.intp, "selectable": bool, "borderline": bool, "duplicate_unselectable": bool,
              "causally_selectable": bool, "token": object, "causal_last_position": np.intp,
              "argmax_count": np.intp, "max_attention": float}
    return {name: np.asarray(values, dtype=dtypes.get(name, np.intp)) for name, values in columns.items()}


def to_pandas(report, *, per_key_rows=False):
    """Return the report as a ``pandas.DataFrame`` (see :meth:`KeyReport.to_pandas`)."""
    try:
        import pandas
    except ImportError:
        raise ImportError("KeyReport.to_pandas needs pandas: pip install 'geomln[pandas]' (or pip install "
                          "pandas); KeyReport.per_key() gives the same columns as NumPy arrays") from None
    if per_key_rows:
        return pandas.DataFrame(per_key(report))
    names = label_names(report.rows)
    records = [{**{name: row["labels"].get(name) for name in names},
                **{k: v for k, v in row.items() if k != "labels"}} for row in report.rows]
    return pandas.DataFrame.from_records(records, columns=[*names, *(k for k in (report.rows or [{}])[0]
                                                                    if k != "labels")])


def causal_curve(report, *, group_by=None):
    """Fraction of the keys of a prefix still selectable, per prefix length (see :meth:`KeyReport.causal_curve`)."""
    rows = report.rows
    if not rows or "causal_last_positions" not in rows[0]:
        from ..errors import InputError

        raise InputError("the report has no causal verdicts; rerun analyze_keys(..., causal=True)")
    groups = sorted({r["labels"].get(group_by) for r in rows}, key=_sort_key) if group_by else [None]
    length = max(r["n"] for r in rows)
    winnable = np.zeros((len(groups), length))
    visible = np.zeros((len(groups), length))
    for row in rows:
        g = groups.index(row["labels"].get(group_by)) if group_by else 0
        last = np.asarray(row["causal_last_positions"])
        n = last.size
        # prefix 0..t: key i <= t can still win iff its last winning prefix end is >= t
        alive = (last[:, None] >= np.arange(n)[None, :]) & (np.arange(n)[:, None] <= np.arange(n)[None, :])
        winnable[g, :n] += alive.sum(axis=0)
        visible[g, :n] += np.arange(1, n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(visible > 0, winnable / np.maximum(visible, 1), np.nan)
    return np.arange(1, length + 1), fraction, groups


def metric_grid(report, metric, rows, cols):
    """Key-weighted mean of a per-slice `metric` over ``rows x cols`` (see :meth:`KeyReport.metric_grid`)."""
    row_values = sorted({r["labels"].get(rows) for r in report.rows}, key=_sort_key)
    col_values = sorted({r["labels"].get(cols) for r in report.rows}, key=_sort_key)
    weighted = np.zeros((len(row_values), len(col_values)))
    total = np.zeros_like(weighted)
    for row in report.rows:
        value = metric(row) if callable(metric) else row[metric]
        i = row_values.index(row["labels"].get(rows))
        j = col_values.index(row["labels"].get(cols))
        weighted[i, j] += value * row["n"]
        total[i, j] += row["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / np.maximum(total, 1), np.nan), row_values, col_values


def report_notes(meta):
    """Return the caveat lines of a report's `meta` (see :meth:`KeyReport.notes`)."""
    lines = []
    if meta.get("scored") is False:
        lines.append(f"note: {meta.get('rope', 'these')} vectors: the model's attention scores do not use them"
                     + (f" ({meta['description']})" if meta.get("description") else ""))
    if meta.get("layout_convention"):
        lines.append(f"note: axes named by convention: {meta['layout_convention']}")
    duplicates = meta.get("unselectable_duplicates") or {}
    if duplicates.get("mostly_duplicates"):
        lines.append(f"note: {duplicates['n']} of the unselectable keys ({100 * duplicates['share']:.0f}%) are "
                     f"exact copies of another key (repeated tokens without position information?): they tie "
                     f"with their copy rather than lose")
    return lines


def _sort_key(value):
    return (value is None, value if value is not None else 0)
