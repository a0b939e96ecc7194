"""Per-slice reports on saved key matrices: which keys can win attention, causally, and which queries pick.

:func:`analyze_keys` runs the exact engine (:func:`~geomln.selectable_keys`) on every ``(n, d)`` slice of a
key file (one per layer x head x sequence) and returns a :class:`KeyReport` with a stable row schema.
"""

import contextlib
import csv
import io
import json
import numbers
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._validation import as_choice, as_tol, as_vector
from .._version import __version__
from ..engine.selectability import default_tol, selectable_keys
from ..engine.warmup import warm_engine
from ..errors import DataFileError, GeomlnWarning, InputError
from ..executors import chunk, estimated_seconds, resolve_executor
from ..geometry.layernorm import layer_norm, project, rms_norm, scale
from . import tidy
from .adapters import as_key_array
from .attention import max_attention
from .causal import causal_last_positions
from .keyfile import KeyArray, load_keys
from .shards import as_shards

__all__ = ["KeyReport", "analyze_keys", "causal_last_positions", "NORMALIZATIONS", "SCHEMA_VERSION"]

#: version of the JSON report layout (``{"schema_version", "rows", "meta"}``); bumped when fields change meaning
SCHEMA_VERSION = 2

#: what ``normalization=`` may apply to the keys before the analysis (``None`` applies nothing)
NORMALIZATIONS = ("projection", "scaling", "layernorm", "rmsnorm")
_NORMALIZERS = {"projection": project, "scaling": scale, "layernorm": lambda x: layer_norm(x),
                "rmsnorm": lambda x: rms_norm(x)}
#: labels summed over in the aggregated table (one row per layer x head)
_POOLED_LABELS = ("sequence", "batch")
#: model facts carried from a key array's metadata into the report's ``meta["model"]``
_MODEL_FIELDS = ("name", "architecture", "n_layers", "d_model", "n_heads", "n_kv_heads", "d_head",
                 "query_groups", "rotary", "positional_embedding_type")
#: the share of unselectable keys that are exact duplicates above which the report says so
_MOSTLY = 0.5


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


# ---- input handling ----------------------------------------------------------------------------------
def _source_tol(key_array):
    source = key_array.metadata.get("source_dtype", "float64")
    return default_tol(types.SimpleNamespace(dtype=source))


def _normalize(key_array, normalization):
    if normalization is None:
        return key_array
    as_choice(normalization, "normalization", NORMALIZATIONS)
    try:
        values = _NORMALIZERS[normalization](key_array.values)
    except InputError as exc:
        raise InputError(f"`keys` cannot be normalized with {normalization!r}: {exc}") from None
    return KeyArray(values, key_array.axes, key_array.metadata, key_array.tokens, key_array.seq_offsets)


def _query_arrays(queries, key_array):
    """Return the queries ``(g, m, d)`` of every slice of `key_array` (order of :meth:`KeyArray.slices`), and g."""
    if isinstance(queries, (str, Path)) and not Path(queries).is_file():
        source = key_array.metadata.get("path")
        if source is None:
            raise DataFileError(f"`queries`: no such file {str(queries)!r} (an array name is only accepted "
                                f"when the keys were loaded from a file)")
        queries = load_keys(source, name=str(queries))
    query_array = as_key_array(queries, role="queries")
    if query_array.d != key_array.d:
        raise InputError(f"`queries` must have d = {key_array.d} features like the keys; got shape "
                         f"{query_array.shape}")
    if query_array.ndim == 2 and query_array.seq_offsets is None:
        return [query_array.values[None]] * key_array.n_slices, 1
    grouped, group = _group_query_heads(query_array, key_array)
    offsets = query_array.seq_offsets
    if offsets is None and key_array.seq_offsets is not None and query_array.n_tokens == key_array.n_tokens:
        offsets = key_array.seq_offsets  # queries of the same tokens, stored without metadata
    same = key_array.seq_offsets is not None and np.array_equal(offsets, key_array.seq_offsets)
    if offsets is not None and not same:
        raise InputError(f"`queries` must split their tokens like the keys (seq_offsets "
                         f"{None if key_array.seq_offsets is None else key_array.seq_offsets.tolist()}); got "
                         f"{offsets.tolist()}")
    # without offsets: one block of queries per leading index, shared by its sequences
    bounds = ([(0, query_array.n_tokens)] * key_array.n_sequences if offsets is None
              else list(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)))
    matrices = [grouped[index][:, start:stop] for index in np.ndindex(*key_array.shape[:-2])
                for start, stop in bounds]
    return matrices, group


def _group_query_heads(query_array, key_array):
    """Return the queries as ``(..., g, m, d)`` over the keys' leading shape, and `g` (query heads per key head).

    Without grouped-query attention ``g = 1``. With ``g`` times more query heads than key heads, query head
    ``h`` is paired with key head ``h // g`` (Hugging Face's ``repeat_kv``).
    """
    q_lead, k_lead = query_array.shape[:-2], key_array.shape[:-2]
    if q_lead == k_lead:
        return query_array.values[..., None, :, :], 1
    axis = key_array.leading_axes.index("head") if "head" in key_array.leading_axes else None
    if (axis is None or query_array.leading_axes != key_array.leading_axes or q_lead[axis] % k_lead[axis]
            or q_lead[:axis] + q_lead[axis + 1:] != k_lead[:axis] + k_lead[axis + 1:]):
        raise InputError(f"`queries` must be one (m, d) matrix or have the keys' leading shape "
                         f"{k_lead} ({', '.join(key_array.leading_axes)}), or a multiple of the keys' heads "
                         f"(grouped-query attention); got shape {query_array.shape}")
    group = q_lead[axis] // k_lead[axis]
    values = query_array.values.reshape(*k_lead[:axis + 1], group, *query_array.shape[axis + 1:])
    return np.moveaxis(values, axis + 1, -3), group


def _bias_vector(bias, n, labels):
    where = ", ".join(f"{k}={v}" for k, v in labels.items()) or "the keys"
    return as_vector(bias, "bias", length=n, length_name=f"the number of keys in slice {where}")


# ---- per-slice analysis ------------------------------------------------------------------------------
def _query_fields(matrix, queries, bias, selectable, tol, causal):
    """Argmax counts of the queries ``(g, m, d)`` (g query heads sharing these keys) over the keys."""
    offsets = np.zeros(matrix.shape[0]) if bias is None else bias
    scores = queries @ matrix.T + offsets
    n = matrix.shape[0]
    if causal and queries.shape[1] == n:
        scores[:, np.triu(np.ones((n, n), dtype=bool), 1)] = -np.inf  # the query at t sees keys 0..t
    spread = float(np.linalg.norm(matrix - matrix.mean(axis=0), axis=1).max())
    slack = tol * (np.linalg.norm(queries, axis=-1) * spread + float(np.ptp(offsets)))
    winners = scores >= scores.max(axis=-1, keepdims=True) - slack[..., None]
    counts = winners.sum(axis=(0, 1))
    never = np.flatnonzero(selectable & (counts == 0))
    return {"n_queries": int(queries.shape[0] * queries.shape[1]), "argmax_counts": counts.tolist(),
            "n_selected": int((counts > 0).sum()), "selectable_never_selected_indices": never.tolist(),
            "n_selectable_never_selected": int(never.size),
            "n_unselectable_selected": int((~selectable & (counts > 0)).sum())}


def _analyze_slice(key_slice, *, bias, causal, queries, tol, query_norm, attention_scale):
    start = time.perf_counter()
    matrix = np.ascontiguousarray(key_slice.matrix)
    n, d = matrix.shape
    offsets = None if bias is None else _bias_vector(bias, n, key_slice.labels)
    result = selectable_keys(matrix, bias=offsets, tol=tol)
    unselectable = result.unselectable_indices
    copies = unselectable[result.duplicate_of[unselectable] >= 0]
    row = {"labels": dict(key_slice.labels), "n": n, "d": d, "affine_rank": int(result.affine_rank),
           "n_unselectable": result.n_unselectable, "fraction_unselectable": result.fraction_unselectable,
           "unselectable_indices": unselectable.tolist(),
           "n_duplicates": int((result.duplicate_of >= 0).sum()),
           "unselectable_duplicate_indices": copies.tolist(), "n_unselectable_duplicates": int(copies.size),
           "n_borderline": int(result.borderline_mask.sum()),
           "borderline_indices": np.flatnonzero(result.borderline_mask).tolist()}
    if key_slice.tokens is not None:
        row["unselectable_tokens"] = [key_slice.tokens[i] for i in unselectable]
    selectable = result.selectable_mask
    if causal:
        last = causal_last_positions(matrix, bias=offsets, tol=tol, full=result)
        position = np.arange(n)
        never = np.flatnonzero(last < position)
        row.update({"causal_unselectable_indices": never.tolist(), "n_causal_unselectable": int(never.size),
                    "causal_last_positions": last.tolist(),
                    "causal_pair_fraction": float((last - position + 1).clip(0).sum() / (n * (n + 1) / 2))})
        selectable = last >= np.arange(n)
    if queries is not None:
        row.update(_query_fields(matrix, queries, offsets, selectable, tol, causal))
    if query_norm is not None:
        weights = max_attention(matrix, query_norm=query_norm, bias=offsets, scale=attention_scale,
                                progress=False).weights
        row.update({"max_attention": weights.tolist(), "min_max_attention": float(weights.min())})
    row["seconds"] = time.perf_counter() - start
    return row


def analyze_keys(keys, *, axes=None, bias=None, causal=False, queries=None, normalization=None, tol=None,
                 query_norm=None, attention_scale=None, progress=False, executor="local", scheduler=None):
    """Report, for every ``(n, d)`` slice of a key array, which keys can never receive the top score.

    Parameters
    ----------
    keys : KeyArray, array_like, path, or a model's cache
        Keys: an ``(n, d)`` matrix, an array with `axes`, a key file for :func:`~geomln.load_keys`, or what
        :func:`~geomln.as_key_array` takes (a TransformerLens ``ActivationCache``, a Hugging Face
        ``DynamicCache`` / ``past_key_values``). Sequences split by ``seq_offsets`` (for caches: the batch
        rows) are analysed separately. Keys labelled pre-rotary (``scored`` False) are analysed with a
        :class:`~geomln.GeomlnWarning`: the model's scores do not use them.
    axes : str or sequence of str, optional
        Names of the axes of an array of 3 or more axes, as stored (e.g. ``"layer,head,token,dim"`` or
        TransformerLens' ``"batch,token,head,dim"``); such arrays are refused without it.
    bias : array_like, shape (n,), optional
        Additive score per key (e.g. a softmax output layer's bias, with its weight matrix as `keys`):
        the report then lists the tokens that can never be the argmax.
    causal : bool
        Also analyse causal attention (query ``t`` sees keys ``0..t``): per-key verdicts and the share of
        (position, visible key) pairs in which the key can win (see :func:`causal_last_positions`).
    queries : KeyArray, array_like, path, str or a TransformerLens cache, optional
        Real queries (from a cache: ``hook_rot_q``, else ``hook_q``): one ``(m, d)`` matrix for every
        slice, or an array with the keys' leading shape
        (per layer x head; split into sequences like the keys), or with ``g`` times the keys' heads
        (grouped-query attention: query head ``h`` is paired with key head ``h // g``, the ``repeat_kv``
        convention, and the row of each key head counts its whole query group). A string that is not a file
        names an array
        of the file the keys came from (e.g. ``"queries"``). Rows count how often each key is the argmax
        (ties within `tol` counted for every tied key; with `causal`, query ``t`` only sees keys ``0..t``
        when there is one query per key).
    normalization : {None, "projection", "scaling", "layernorm", "rmsnorm"}
        Apply LayerNorm's projection, its scaling, full LayerNorm (no gain or bias) or RMSNorm to every
        key first, to ask "would LayerNorm fix this".
    tol : float, optional
        Relative tolerance of :func:`~geomln.selectable_keys`; default from the stored dtype
        (``metadata["source_dtype"]``: 1e-3 for float16 files).
    query_norm : float, optional
        Also report, per key, the largest attention weight a query of at most this norm can give it
        (:func:`~geomln.max_attention`).
    attention_scale : float, optional
        Score scale for `query_norm` (default ``1 / sqrt(d)``).
    progress : bool or callable
        True draws a progress bar on stderr (tqdm); a callable is called as ``progress(done, total)``.
    executor : {"local", "dask"} or distributed.Client, default "local"
        ``"local"`` analyses the slices in this process; ``"dask"`` sends them, grouped into tasks of at
        least ~0.2 s, to a Dask cluster: the one at `scheduler`, or else a ``LocalCluster`` on 127.0.0.1
        with one worker process per core. A connected ``distributed.Client`` is used as is. Needs the
        optional extra ``dask``; the rows equal a local run's (except ``seconds``).
    scheduler : str, optional
        Address of a running Dask scheduler, e.g. ``"tcp://10.0.0.5:8786"`` (only with ``executor="dask"``).

    Returns
    -------
    KeyReport

    Raises
    ------
    InputError
        An array of 3 or more axes without `axes` (the message gives the `axes` to pass), NaN or infinite
        keys (naming the slice and row), `bias` of the wrong length, `queries` of another
        dimension or leading shape, an unknown `normalization` or `executor`, `scheduler` without
        ``executor="dask"``.
    ClusterError
        The Dask scheduler cannot be reached or is lost, or a task keeps killing workers.
    ImportError
        ``executor="dask"`` without dask installed.
    DataFileError
        If a path cannot be read.

    See Also
    --------
    selectable_keys, causal_last_positions, max_attention

    Examples
    --------
    >>> import numpy as np, geomln
    >>> square_and_centre = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]], dtype=float)
    >>> report = geomln.analyze_keys(np.stack([square_and_centre, square_and_centre[::-1]]),
    ...                              axes="head,token,dim")
    >>> [(row["labels"], row["unselectable_indices"]) for row in report.rows]
    [({'head': 0}, [4]), ({'head': 1}, [0])]
    """
    started = time.perf_counter()
    shards = as_shards(keys)
    if shards is not None and axes is not None:
        raise InputError("`axes` cannot be given with a shard directory: its shard files name their axes")
    if shards is not None and isinstance(queries, (str, Path)) and Path(queries).is_file():
        raise InputError(f"`queries` of a shard directory must name an array of its shards (e.g. 'queries') or "
                         f"be one (m, d) matrix; got the file {str(queries)!r}")
    parts = iter([as_key_array(keys, axes=axes)]) if shards is None else shards.key_arrays()
    key_array = _normalize(next(parts), normalization)
    facts = key_array.metadata
    if facts.get("scored") is False:
        warnings.warn(f"analysing {facts.get('rope', 'pre-rotary')} vectors ({facts.get('name') or 'keys'}): "
                      f"the model's attention scores do not use them, so their selectability says nothing "
                      f"about its attention; analyse the post-rotary keys instead", GeomlnWarning, stacklevel=2)
    tol = as_tol(tol, default=_source_tol(key_array))
    if query_norm is not None and (isinstance(query_norm, bool) or not isinstance(query_norm, numbers.Real)
                                   or not np.isfinite(query_norm) or query_norm <= 0):
        raise InputError(f"`query_norm` must be a finite number > 0; got {query_norm!r}")
    runner = resolve_executor(executor, scheduler, None, warmup=warm_engine)
    total = key_array.n_slices if shards is None else shards.n_slices
    callback, bar = _progress(progress, total)
    options = {"bias": bias, "causal": causal, "tol": tol, "query_norm": query_norm,
               "attention_scale": attention_scale}
    rows, tokens, n_sequences, first = [], [], 0, key_array
    try:
        with contextlib.nullcontext() if runner is None else runner:
            while key_array is not None:  # one part, or each shard in turn
                query_list, group = (None, 1) if queries is None else _query_arrays(queries, key_array)
                done = len(rows)
                part = _analyze_part(runner, key_array, query_list, options, None if callback is None else (
                    lambda n, _total, done=done: callback(done + n, total)))
                for row in part if shards is not None else ():
                    row["labels"]["sequence"] += n_sequences
                rows += part
                n_sequences += key_array.n_sequences
                tokens = None if tokens is None or key_array.tokens is None else tokens + list(key_array.tokens)
                key_array = next((_normalize(k, normalization) for k in parts), None)
    finally:
        if bar is not None:
            bar.close()
    whole = first if shards is None else shards
    if shards is not None:  # the order of one file's slices: leading labels, then sequence
        rows.sort(key=lambda row: (*(v for k, v in row["labels"].items() if k != "sequence"),
                                   row["labels"]["sequence"]))
    if group > 1:
        for row in rows:
            head = row["labels"]["head"]
            row["query_heads"] = list(range(head * group, (head + 1) * group))
    n_unselectable = sum(r["n_unselectable"] for r in rows)
    copies = sum(r["n_unselectable_duplicates"] for r in rows)
    share = copies / n_unselectable if n_unselectable else 0.0
    meta = {"schema_version": SCHEMA_VERSION, "geomln_version": __version__,
            "source": facts.get("path") if shards is None else str(shards.path),
            "name": facts.get("name"), "axes": list(first.axes), "shape": list(whole.shape),
            "source_dtype": facts.get("source_dtype"), "n_slices": total, "tol": tol,
            "normalization": normalization, "causal": bool(causal), "has_bias": bias is not None,
            "has_queries": queries is not None, "query_norm": query_norm,
            "query_groups": None if group == 1 else {
                "group_size": group, "convention": f"repeat_kv: query head h is paired with key head h // {group}"},
            **({"executor": "local"} if runner is None else runner.description),
            "layout_convention": facts.get("layout_convention"), "rope": facts.get("rope"),
            "scored": facts.get("scored"), "description": facts.get("description"),
            "model": _model_facts(facts), "hook_points": facts.get("hook_points"),
            "tokens": tokens, "seq_offsets": None if whole.seq_offsets is None else whole.seq_offsets.tolist(),
            "unselectable_duplicates": {"n": copies, "share": share, "mostly_duplicates": share > _MOSTLY},
            "seconds": time.perf_counter() - started}
    return KeyReport(rows, meta)


def _model_facts(metadata):
    """Return the model facts of a key array's metadata (under ``model`` in files, flat from a capture)."""
    model = metadata.get("model")
    if not isinstance(model, dict):
        model = {k: metadata[k] for k in _MODEL_FIELDS if k in metadata}
    return model or None


def _analyze_item(options, index, key_slice, queries):
    """Dask task item: one slice's row (`index` only travels along to put it back in order)."""
    return _analyze_slice(key_slice, queries=queries, **options)


def _analyze_on_dask(runner, slices, query_list, options, callback, total):
    """Rows of every slice computed on Dask, in slice order; `callback(done, total)` as chunks finish."""
    items = [(index, key_slice, None if query_list is None else query_list[index])
             for index, key_slice in enumerate(slices)]
    rows = [None] * len(items)
    calls = 4 if options["causal"] else 1  # causal: the full set plus a few prefixes
    costs = [estimated_seconds(item[1].matrix.shape[0], calls, runner.unit_seconds) for item in items]
    done = 0
    for chunk_items, results in runner.run(_analyze_item, chunk(items, costs), shared=(options,)):
        for item, row in zip(chunk_items, results, strict=True):
            rows[item[0]] = row
            done += 1
            if callback is not None:
                callback(done, total)
    return rows


def _analyze_part(runner, key_array, query_list, options, callback):
    """Rows of every slice of `key_array` (on Dask when `runner`, entered by the caller, is given)."""
    total = key_array.n_slices
    if runner is not None:
        return _analyze_on_dask(runner, key_array.slices(), query_list, options, callback, total)
    rows = []
    for index, key_slice in enumerate(key_array.slices()):
        rows.append(_analyze_slice(key_slice, queries=None if query_list is None else query_list[index],
                                   **options))
        if callback is not None:
            callback(index + 1, total)
    return rows


def _progress(progress, total):
    if callable(progress):
        return progress, None
    if not progress:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="slice", desc="analyze", leave=False)
    return (lambda done, _total: bar.update(1)), bar
