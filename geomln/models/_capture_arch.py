"""Per-architecture adapters of `capture_keys`: where each layer's keys and queries come from.

An adapter turns a Hugging Face base model into a :class:`Layout`: per layer the normalisation whose input is
``hidden_before_ln``, the attention module whose input is ``hidden_after_ln`` (and whose
``position_embeddings`` keyword holds the rotary tables), and the projections whose outputs are split into
per-head queries and keys. Rotary models record the projections as ``*_pre_rope`` and rotate them afterwards
with :func:`rotate`, in the model's own convention (rotate-half on the first ``rotary_dims`` dimensions, or
GPT-J's interleaved pairs). torch is only touched through the tensors the hooks receive.
"""

from dataclasses import dataclass

from ..errors import InputError


@dataclass
class Projection:
    """A module whose output (``(seq, features)``, batch dropped) `split` turns into ``name -> (heads, seq, d)``."""

    module: object
    split: object
    where: dict  # name -> hook point suffix, e.g. {"keys": "output[24:48]"}


@dataclass
class LayerSpec:
    """The modules of one layer; `norm`/`attention` are None when unknown (generic modules)."""

    norm: object
    attention: object
    projections: list


@dataclass
class Layout:
    """What an adapter found: one :class:`LayerSpec` per layer and the facts for ``metadata["model"]``."""

    layers: list
    info: dict
    rope_style: str | None = None  # "rotate-half", "interleaved" or None (no rotary embedding)
    sin_first: bool = False  # position_embeddings is (sin, cos) instead of (cos, sin)


SUPPORTED = "BERT/RoBERTa, GPT-2, LLaMA/Mistral/Qwen2, GPT-NeoX/Pythia, Falcon, GPT-J"


def _heads(x, n_heads, d_head):
    """(seq, n_heads * d_head) -> (n_heads, seq, d_head)."""
    return x.reshape(x.shape[0], n_heads, d_head).transpose(0, 1)


def _separate(q, k, n_q, n_kv, d_head):
    """Projections of separate q and k linear layers."""
    return [Projection(q, lambda out: {"queries": _heads(out, n_q, d_head)}, {"queries": "output"}),
            Projection(k, lambda out: {"keys": _heads(out, n_kv, d_head)}, {"keys": "output"})]


def _gqa_info(n_q, n_kv, d_head):
    if n_q % n_kv:
        raise InputError(f"the model has {n_q} query heads, not a multiple of its {n_kv} key/value heads")
    group = n_q // n_kv
    return {"n_heads": n_q, "n_kv_heads": n_kv, "d_head": d_head,
            "query_groups": {"group_size": group, "kv_head_of_query": [h // group for h in range(n_q)],
                             "convention": "repeat_kv: query head h uses key/value head "
                                           "h // (n_heads // n_kv_heads)"}}


def _rope_info(rotary_dims, d_head, style):
    return {"rotary": {"style": style, "rotary_dims": int(rotary_dims), "d_head": int(d_head),
                     "partial": int(rotary_dims) < int(d_head)}}


def _bert(base):
    layers = base.encoder.layer
    specs = []
    for i, layer in enumerate(layers):
        att = layer.attention.self
        n, d = att.num_attention_heads, att.attention_head_size
        norm = base.embeddings.LayerNorm if i == 0 else layers[i - 1].output.LayerNorm
        specs.append(LayerSpec(norm, att, _separate(att.query, att.key, n, n, d)))
    return Layout(specs, {"architecture": "bert", "normalization": "post-LN (LayerNorm after each residual sum)",
                          **_gqa_info(n, n, d), "rotary": None})


def _gpt2(base):
    specs = []
    for block in base.h:
        attn = block.attn
        n, d, w = attn.num_heads, attn.head_dim, attn.split_size

        def split(out, n=n, d=d, w=w):
            return {"queries": _heads(out[:, :w], n, d), "keys": _heads(out[:, w:2 * w], n, d)}

        specs.append(LayerSpec(block.ln_1, attn.c_attn, [
            Projection(attn.c_attn, split, {"queries": f"output[0:{w}]", "keys": f"output[{w}:{2 * w}]"})]))
    return Layout(specs, {"architecture": "gpt2", "normalization": "pre-LN (LayerNorm ln_1 before attention)",
                          **_gqa_info(n, n, d), "rotary": None})


def _llama(base):
    specs = []
    for layer in base.layers:
        att = layer.self_attn
        d = att.head_dim
        n_q, n_kv = att.q_proj.out_features // d, att.k_proj.out_features // d
        specs.append(LayerSpec(layer.input_layernorm, att, _separate(att.q_proj, att.k_proj, n_q, n_kv, d)))
    return Layout(specs, {"architecture": "llama", "normalization": "pre-RMSNorm (input_layernorm before "
                                                                   "attention)",
                          **_gqa_info(n_q, n_kv, d), **_rope_info(d, d, "rotate-half")}, "rotate-half")


def _neox(base):
    specs = []
    for layer in base.layers:
        att = layer.attention
        d = att.head_size
        n = att.query_key_value.out_features // (3 * d)

        def split(out, n=n, d=d):
            qkv = out.reshape(out.shape[0], n, 3 * d).transpose(0, 1)  # per head [q | k | v]
            return {"queries": qkv[..., :d], "keys": qkv[..., d:2 * d]}

        where = {"queries": f"output viewed (seq, {n}, 3*{d})[..., 0:{d}]",
                 "keys": f"output viewed (seq, {n}, 3*{d})[..., {d}:{2 * d}]"}
        specs.append(LayerSpec(layer.input_layernorm, att, [Projection(att.query_key_value, split, where)]))
    return Layout(specs, {"architecture": "gpt_neox", "normalization": "pre-LN (input_layernorm before "
                                                                       "attention)",
                          **_gqa_info(n, n, d), **_rope_info(att.rotary_ndims, d, "rotate-half")}, "rotate-half")


def _falcon(base):
    config = base.config
    if getattr(config, "alibi", False):
        raise InputError("`model` is a Falcon with alibi=True: its scores add ALiBi position biases that are not "
                         "key vectors; capture its key/query modules with key_modules=..., query_modules=... and "
                         "analyse with the biases in mind")
    specs = []
    for layer in base.h:
        att = layer.self_attention
        n, d = att.num_heads, att.head_dim
        if att.new_decoder_architecture:
            n_kv = att.num_kv_heads
            g = n // n_kv

            def split(out, n_kv=n_kv, g=g, d=d):
                qkv = out.reshape(out.shape[0], n_kv, g + 2, d)
                return {"queries": qkv[:, :, :g].reshape(out.shape[0], n_kv * g, d).transpose(0, 1),
                        "keys": qkv[:, :, g].transpose(0, 1)}

            where = {"queries": f"output viewed (seq, {n_kv}, {g}+2, {d})[:, :, :{g}]",
                     "keys": f"output viewed (seq, {n_kv}, {g}+2, {d})[:, :, {g}]"}
        elif att.multi_query:
            n_kv = 1

            def split(out, n=n, d=d):
                qkv = out.reshape(out.shape[0], n + 2, d).transpose(0, 1)
                return {"queries": qkv[:n], "keys": qkv[n:n + 1]}

            where = {"queries": f"output viewed (seq, {n}+2, {d})[:, :{n}]",
                     "keys": f"output viewed (seq, {n}+2, {d})[:, {n}]"}
        else:
            n_kv = n

            def split(out, n=n, d=d):
                qkv = out.reshape(out.shape[0], n, 3, d).transpose(0, 1)
                return {"queries": qkv[:, :, 0], "keys": qkv[:, :, 1]}

            where = {"queries": f"output viewed (seq, {n}, 3, {d})[..., 0, :]",
                     "keys": f"output viewed (seq, {n}, 3, {d})[..., 1, :]"}
        norm = getattr(layer, "ln_attn", None) or layer.input_layernorm
        specs.append(LayerSpec(norm, att, [Projection(att.query_key_value, split, where)]))
    return Layout(specs, {"architecture": "falcon", "normalization": "pre-LN (LayerNorm before attention)",
                          **_gqa_info(n, n_kv, d), **_rope_info(d, d, "rotate-half")}, "rotate-half")


def _gptj(base):
    specs = []
    for block in base.h:
        att = block.attn
        n, d = att.num_attention_heads, att.head_dim
        specs.append(LayerSpec(block.ln_1, att, _separate(att.q_proj, att.k_proj, n, n, d)))
    rotary = att.rotary_dim or d
    return Layout(specs, {"architecture": "gptj", "normalization": "pre-LN (LayerNorm ln_1 before attention)",
                          **_gqa_info(n, n, d), **_rope_info(rotary, d, "interleaved")}, "interleaved",
                  sin_first=True)


_ADAPTERS = (
    (lambda b: hasattr(b, "embeddings") and hasattr(getattr(b, "encoder", None), "layer"), _bert),
    (lambda b: all(hasattr(x, "ln_1") and hasattr(x.attn, "c_attn") for x in b.h), _gpt2),
    (lambda b: all(hasattr(x, "ln_1") and hasattr(x.attn, "q_proj") for x in b.h), _gptj),
    (lambda b: all(hasattr(x, "self_attention") and hasattr(x.self_attention, "query_key_value") for x in b.h),
     _falcon),
    (lambda b: all(hasattr(x, "input_layernorm") and hasattr(x.self_attn, "k_proj") for x in b.layers), _llama),
    (lambda b: all(hasattr(x, "input_layernorm") and hasattr(x.attention, "query_key_value") for x in b.layers),
     _neox),
)


def find_layout(model):
    """Return the :class:`Layout` of a supported Hugging Face model.

    Raises
    ------
    TypeError
        Naming the generic ``key_modules=``/``query_modules=`` API when the layout is not supported.
    """
    base = getattr(model, "base_model", model)
    for matches, adapter in _ADAPTERS:
        try:
            found = matches(base) and len(list(_blocks(base))) > 0
        except (AttributeError, TypeError):
            found = False
        if found:
            return adapter(base)
    raise TypeError(f"unsupported layout: `model` ({type(model).__name__}) is none of {SUPPORTED}; pass the "
                    f"key/query modules with capture_keys(model, inputs, key_modules=[one module per layer], "
                    f"query_modules=[...]), whose outputs are the keys/queries [batch, seq, n_heads * d_head] "
                    f"(give d_head=...) or already split [batch, seq, heads, d_head]")


def _blocks(base):
    for name in ("layers", "h"):
        if hasattr(base, name):
            return getattr(base, name)
    return base.encoder.layer


def _split_generic(out, d_head, n_tokens, label):
    """Split a generic module's output (batch dropped) into (heads, seq, d)."""
    if out.ndim == 2:
        if d_head is None or out.shape[-1] % d_head:
            raise InputError(f"{label} returned shape (seq, {out.shape[-1]}); pass d_head=... dividing "
                             f"{out.shape[-1]} to split it into heads (got d_head={d_head})")
        return _heads(out, out.shape[-1] // d_head, d_head)
    if out.ndim == 3 and out.shape[0] == n_tokens != out.shape[1]:
        return out.transpose(0, 1)
    if out.ndim == 3 and out.shape[1] == n_tokens != out.shape[0]:
        return out
    raise InputError(f"{label} returned shape {tuple(out.shape)} (batch dropped) for {n_tokens} tokens; expected "
                     f"(seq, n_heads * d_head), (seq, heads, d_head) or (heads, seq, d_head) with heads != seq")


def generic_layout(model, key_modules, query_modules, d_head, recorder):
    """Return a :class:`Layout` over user-given modules, one per layer (queries optional)."""
    keys = list(key_modules)
    queries = None if query_modules is None else list(query_modules)
    if not keys:
        raise InputError("`key_modules` must hold one module per layer; got an empty list")
    if queries is not None and len(queries) != len(keys):
        raise InputError(f"`query_modules` must hold one module per layer like `key_modules` ({len(keys)}); "
                         f"got {len(queries)}")
    config = getattr(model, "config", None)
    if d_head is None and config is not None:
        d_head = getattr(config, "head_dim", None) or (
            getattr(config, "hidden_size", 0) // max(getattr(config, "num_attention_heads", 0) or 1, 1) or None)
    specs = []
    for i, key in enumerate(keys):
        pairs = [("keys", key, "key_modules")] + ([] if queries is None else [("queries", queries[i],
                                                                               "query_modules")])
        projections = []
        for name, module, arg in pairs:
            if not hasattr(module, "register_forward_hook"):
                raise TypeError(f"`{arg}[{i}]` must be a torch.nn.Module; got {type(module).__name__}")
            label = f"`{arg}[{i}]`"

            def split(out, name=name, label=label):
                if not hasattr(out, "ndim"):
                    raise InputError(f"{label} returned a {type(out).__name__}, not a tensor; pass the module "
                                     f"whose output is the {name} tensor")
                return {name: _split_generic(out, d_head, recorder.n_tokens, label)}

            projections.append(Projection(module, split, {name: "output"}))
        specs.append(LayerSpec(None, None, projections))
    return Layout(specs, {"architecture": "generic (key_modules=/query_modules=)", "rotary": "unknown",
                          "d_head": d_head})


def rope_tables(layout, first, second):
    """Return the (cos, sin) tables, each (seq, rotary_dims), from the attention's position_embeddings."""
    cos, sin = (second, first) if layout.sin_first else (first, second)
    if layout.rope_style == "interleaved":  # GPT-J: one angle per pair of dimensions
        cos, sin = cos.repeat_interleave(2, dim=-1), sin.repeat_interleave(2, dim=-1)
    return cos, sin


def rotate(torch, x, cos, sin, style):
    """Rotate (heads, seq, d) by (seq, r) tables on the first r dims, as the model's ``apply_rotary_pos_emb``."""
    r = cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    if style == "interleaved":
        pairs = rot.reshape(*rot.shape[:-1], r // 2, 2)
        turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    else:
        turned = torch.cat((-rot[..., r // 2:], rot[..., : r // 2]), dim=-1)
    return torch.cat((rot * cos + turned * sin, rest), dim=-1)
