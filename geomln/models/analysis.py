"""Per-slice reports on saved key matrices: which keys can win attention, causally, and which queries pick.

:func:`analyze_keys` runs the exact engine (:func:`~geomln.selectable_keys`) on every ``(n, d)`` slice of a
key file (one per layer x head x sequence) and returns a :class:`KeyReport` with a stable row schema.
"""

import contextlib
import numbers
import time
import types
import warnings
from pathlib import Path

import numpy as np

from .._validation import as_choice, as_tol, as_vector
from .._version import __version__
from ..engine.selectability import default_tol, selectable_keys
from ..engine.warmup import warm_engine
from ..errors import DataFileError, GeomlnWarning, InputError
from ..executors import chunk, estimated_seconds, resolve_executor
from ..geometry.layernorm import layer_norm, project, rms_norm, scale
from .adapters import as_key_array
from .attention import max_attention
from .causal import causal_last_positions
from .keyfile import KeyArray, load_keys
from .report import SCHEMA_VERSION, KeyReport
from .shards import as_shards

__all__ = ["analyze_keys", "causal_last_positions", "NORMALIZATIONS"]

#: what ``normalization=`` may apply to the keys before the analysis (``None`` applies nothing)
NORMALIZATIONS = ("projection", "scaling", "layernorm", "rmsnorm")
_NORMALIZERS = {"projection": project, "scaling": scale, "layernorm": lambda x: layer_norm(x),
                "rmsnorm": lambda x: rms_norm(x)}
#: model facts carried from a key array's metadata into the report's ``meta["model"]``
_MODEL_FIELDS = ("name", "architecture", "n_layers", "d_model", "n_heads", "n_kv_heads", "d_head",
                 "query_groups", "rotary", "positional_embedding_type")
#: the share of unselectable keys that are exact duplicates above which the report says so
_MOSTLY = 0.5


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
        try:
            queries = load_keys(source, name=str(queries))
        except DataFileError as exc:  # the array was named by `queries`, not by `name`
            raise DataFileError(str(exc).replace("`name`", "`queries`", 1)) from None
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
