"""Keys from what researchers hold in memory: TransformerLens caches, Hugging Face KV caches, nnsight outputs.

:func:`as_key_array` turns any of them (or a plain array, a key file, a :class:`~geomln.KeyArray`) into a
:class:`~geomln.KeyArray` in the layout ``(layer, head, token, dim)``, one sequence per batch row (split by
``seq_offsets``), and records in its metadata which convention was applied, the hook points, and whether the
vectors are those the model's attention scores use. None of the libraries is imported: objects are recognised
by their attributes, so any version with the same interface works.
"""

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._layouts import convention_axes
from .keyfile import KeyArray, _parse_axes, _to_numpy, load_keys

__all__ = ["as_key_array", "ROLES"]

#: what :func:`as_key_array` may take from a cache
ROLES = ("keys", "queries")
_TL_HOOK = re.compile(r"^blocks\.(\d+)\.attn\.hook_(rot_)?([qk])$")
_HF_NOTE = ("Hugging Face caches keys as the attention scores use them (after any rotary embedding), "
            "per layer [batch, kv_heads, seq, d_head]")


def as_key_array(obj, *, role="keys", axes=None, n_heads=None, attention_mask=None, name=None):
    """Return the keys (or queries) held by `obj` as a :class:`~geomln.KeyArray`, naming every axis.

    Parameters
    ----------
    obj : KeyArray, array_like, torch.Tensor, path, or a model's cache
        Recognised by their attributes (no import of the libraries):

        - a TransformerLens ``ActivationCache`` (``HookedTransformer`` or the 4.x ``TransformerBridge``),
          or any mapping of hook names ``blocks.{L}.attn.hook_k`` / ``hook_rot_k`` / ``hook_q`` /
          ``hook_rot_q`` to tensors ``[batch, pos, head, d_head]``: the rotated ``hook_rot_*`` are taken
          when the cache has them;
        - a Hugging Face ``DynamicCache`` (``.layers[l].keys``), a legacy cache with ``key_cache``, or the
          tuple of per-layer ``(key, value)`` pairs, each key ``[batch, kv_heads, seq, d_head]``;
        - with `n_heads`: a tensor ``[..., seq, n_heads * d_head]`` (e.g. an nnsight ``.save()`` of a key
          projection's output, ``[batch, seq, d_model]``), or a list of them (one per layer), split into
          heads;
        - anything else: as :meth:`KeyArray.from_array` (2-D is ``(token, dim)``; 3 or more axes need
          `axes`) or, for a path, :func:`~geomln.load_keys`.
    role : {"keys", "queries"}
        Which vectors to take from a TransformerLens cache (Hugging Face caches hold keys only).
    axes : str or sequence of str, optional
        Axis names as stored, for plain arrays and tensors split with `n_heads` (where ``dim`` names the
        ``n_heads * d_head`` axis).
    n_heads : int, optional
        Split the last axis into ``n_heads`` heads of ``d_head = size / n_heads``.
    attention_mask : array_like of shape (batch, seq), optional
        For caches and `n_heads` tensors with a batch axis: keep the tokens where it is nonzero (padding
        dropped), so every sequence holds its real tokens only.
    name : str, optional
        How to call `obj` in error messages (default: `role`).

    Returns
    -------
    KeyArray
        For caches, axes ``(layer, head, token, dim)`` with ``seq_offsets`` (one sequence per batch row);
        ``metadata`` holds ``layout_convention``, ``hook_points``, ``rope`` (``"post-rotary"``,
        ``"pre-rotary"``, ``"none"`` or ``"unknown"``), ``scored`` and, when the cache knows its model,
        ``model`` (``n_heads``, ``n_kv_heads``, ``d_head``, ...).

    Raises
    ------
    InputError
        An unknown `role`, a cache without the requested vectors, layers of different shapes, `n_heads`
        that does not divide the last axis, an `attention_mask` of the wrong shape or one that keeps no
        token of some row, or an array of 3 or more axes without `axes`.
    TypeError
        A mapping that is not a TransformerLens cache, or non-float values.

    Examples
    --------
    >>> import numpy as np, geomln
    >>> rng = np.random.default_rng(0)
    >>> cache = {f"blocks.{l}.attn.hook_k": rng.normal(size=(2, 6, 3, 4)) for l in range(2)}
    >>> keys = geomln.as_key_array(cache)               # [batch, pos, head, d_head] per layer
    >>> keys.axes, keys.shape, keys.seq_offsets.tolist()
    (('layer', 'head', 'token', 'dim'), (2, 3, 12, 4), [0, 6, 12])
    >>> geomln.as_key_array(rng.normal(size=(1, 6, 8)), n_heads=2).shape   # [batch, seq, d_model]
    (2, 6, 4)
    """
    if role not in ROLES:
        raise InputError(f"`role` must be one of {', '.join(map(repr, ROLES))}; got {role!r}")
    label = f"`{name or role}`"
    if isinstance(obj, KeyArray):
        return obj
    if isinstance(obj, (str, Path)):
        return load_keys(obj, axes=axes)
    if n_heads is not None:
        return _split_heads(obj, n_heads, axes, attention_mask, label)
    if _is_mapping(obj):
        return _from_transformerlens(obj, role, attention_mask, label)
    layers = _hf_layers(obj)
    if layers is not None:
        if role != "keys":
            raise InputError(f"{label}: a Hugging Face cache holds keys and values, not queries; capture "
                             f"queries with geomln.capture_keys or a TransformerLens cache")
        return _assemble([_as_numpy(k, label) for k in layers], "head_first", attention_mask, label, {
            "layout_convention": _HF_NOTE, "rope": "unknown", "scored": True,
            "hook_points": [f"past_key_values[{i}].keys" for i in range(len(layers))]})
    return KeyArray.from_array(obj, axes=axes, name=name or role)


def _is_mapping(obj):
    return isinstance(obj, Mapping) or (hasattr(obj, "keys") and hasattr(obj, "__getitem__")
                                        and callable(obj.keys) and not hasattr(obj, "shape"))


def _hf_layers(obj):
    """Per-layer key tensors of a Hugging Face cache, or None when `obj` is not one."""
    if hasattr(obj, "layers") and all(hasattr(layer, "keys") and not callable(layer.keys)
                                      for layer in obj.layers):
        return [layer.keys for layer in obj.layers]
    if hasattr(obj, "key_cache"):
        return list(obj.key_cache)
    if (isinstance(obj, (tuple, list)) and obj and all(isinstance(p, (tuple, list)) and len(p) >= 2
                                                       and getattr(p[0], "ndim", 0) == 4 for p in obj)):
        return [p[0] for p in obj]
    return None


def _as_numpy(value, label):
    array = _to_numpy(value)[0]
    if array.dtype.kind != "f":
        raise TypeError(f"{label} must hold floating-point tensors; got dtype {array.dtype}")
    return array


def _from_transformerlens(cache, role, attention_mask, label):
    found = {}
    for key in cache.keys():
        match = _TL_HOOK.match(str(key))
        if match and match[3] == role[0]:
            found.setdefault(bool(match[2]), {})[int(match[1])] = str(key)
    rotated = bool(found.get(True))
    hooks = found.get(rotated)
    if not hooks:
        shown = ", ".join(list(map(str, cache.keys()))[:8])
        raise (InputError if any(_TL_HOOK.match(str(k)) for k in cache.keys()) else TypeError)(
            f"{label} is a mapping without TransformerLens attention hooks blocks.{{L}}.attn.hook_{role[0]} "
            f"(its names: {shown}{', ...' if len(cache.keys()) > 8 else ''}); pass one array, e.g. "
            f"{role}=cache['<name>'] with axes=..., or run the model with its attention hooks cached")
    layers = sorted(hooks)
    if layers != list(range(len(layers))):
        raise InputError(f"{label}: the cache holds layers {layers} of blocks.{{L}}.attn.hook_{role[0]}; "
                         f"cache every layer from 0, or pass one layer's tensor with axes=...")
    model = _tl_model_facts(cache)
    if rotated:
        rope, scored = "post-rotary", True
    elif model.get("positional_embedding_type") == "rotary":
        rope, scored = "pre-rotary", False
    else:
        rope = "none" if model.get("positional_embedding_type") else "unknown"
        scored = True if rope == "none" else None
    points = [hooks[layer] for layer in layers]
    meta = {"layout_convention": f"TransformerLens ActivationCache: {points[0].replace('blocks.0', 'blocks.{L}')} "
                                 f"[batch, pos, head, d_head]; one sequence per batch row",
            "hook_points": points, "rope": rope, "scored": scored, **({"model": model} if model else {})}
    if rope == "pre-rotary":
        meta["description"] = (f"{points[0]} holds the projections before the rotary embedding and the cache "
                               f"has no hook_rot_{role[0]}; the model's scores do not use these vectors")
    return _assemble([_as_numpy(cache[p], label) for p in points], "pos_first", attention_mask, label, meta)


def _tl_model_facts(cache):
    cfg = getattr(getattr(cache, "model", None), "cfg", None)
    if cfg is None:
        return {}
    n_heads, n_kv = getattr(cfg, "n_heads", None), getattr(cfg, "n_key_value_heads", None) or None
    facts = {"name": getattr(cfg, "model_name", None), "n_layers": getattr(cfg, "n_layers", None),
             "d_model": getattr(cfg, "d_model", None), "n_heads": n_heads, "n_kv_heads": n_kv or n_heads,
             "d_head": getattr(cfg, "d_head", None),
             "positional_embedding_type": getattr(cfg, "positional_embedding_type", None)}
    return {k: v if isinstance(v, (int, float, str)) or v is None else str(v) for k, v in facts.items()}


def _assemble(layers, layout, attention_mask, label, meta):
    """Stack per-layer ``[batch, pos, head, d]`` (`pos_first`) or ``[batch, head, pos, d]`` tensors."""
    shapes = {a.shape for a in layers}
    if len(shapes) != 1 or layers[0].ndim != 4:
        raise InputError(f"{label}: every layer must hold one 4-D tensor of the same shape; got "
                         f"{sorted(shapes)}")
    stacked = np.stack(layers)                                    # (layer, batch, ., ., d)
    if layout == "pos_first":
        stacked = stacked.transpose(0, 1, 3, 2, 4)                # -> (layer, batch, head, pos, d)
    return _batch_as_sequences(stacked, attention_mask, label, meta)


def _batch_as_sequences(values, attention_mask, label, meta):
    """``(layer..., batch, head, pos, d)`` -> KeyArray ``(layer..., head, token, dim)``, a sequence per row."""
    batch, pos = values.shape[-4], values.shape[-2]
    keep = np.ones((batch, pos), dtype=bool)
    if attention_mask is not None:
        mask = _to_numpy(attention_mask)[0]
        if mask.shape != (batch, pos):
            raise InputError(f"`attention_mask` must have shape (batch, seq) = {(batch, pos)} like {label}; "
                             f"got {mask.shape}")
        keep = mask != 0
        if not keep.any(axis=1).all():
            raise InputError(f"`attention_mask` keeps no token of batch row(s) "
                             f"{np.flatnonzero(~keep.any(axis=1)).tolist()}; drop those rows")
    rows = [values[..., b, :, :, :][..., keep[b], :] for b in range(batch)]
    tokens = np.concatenate(rows, axis=-2)                        # (layer..., head, token, d)
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    lead = ("layer",) * (values.ndim - 4)
    return KeyArray.from_array(tokens, axes=(*lead, "head", "token", "dim"), seq_offsets=offsets, metadata=meta,
                               name=label)


def _split_heads(obj, n_heads, axes, attention_mask, label):
    if isinstance(n_heads, bool) or not isinstance(n_heads, (int, np.integer)) or n_heads < 1:
        raise InputError(f"`n_heads` must be a positive integer; got {n_heads!r}")
    per_layer = isinstance(obj, (list, tuple))
    items = list(obj) if per_layer else [obj]
    arrays = [_as_numpy(getattr(item, "value", item) if not hasattr(item, "shape") else item, label)
              for item in items]
    if len({a.shape for a in arrays}) != 1:
        raise InputError(f"{label}: every layer must have the same shape; got {sorted({a.shape for a in arrays})}")
    array = np.stack(arrays) if per_layer else arrays[0]
    width = array.shape[-1]
    if width % n_heads:
        raise InputError(f"`n_heads` = {n_heads} must divide the last axis of {label} ({width} features, shape "
                         f"{array.shape}); pass the model's number of heads (or key/value heads)")
    base = array.ndim - per_layer
    convention = None
    if axes is None:
        stored, _ = convention_axes(None, base, False)
        if stored is None and base == 3:
            stored = ("batch", "token", "dim")
            convention = "module output [batch, seq, n_heads * d_head] (nnsight / Hugging Face)"
        if stored is None:
            raise InputError(f"{label} has shape {array.shape}; with `n_heads` it must be [seq, d_model] or "
                             f"[batch, seq, d_model] (a list of them, one per layer), or pass axes= naming "
                             f"every axis, e.g. axes='batch,token,dim'")
        stored = ("layer",) * per_layer + stored
    else:
        stored = _parse_axes(axes)
        if stored[-1] != "dim" or len(stored) != array.ndim:
            raise InputError(f"`axes` must name all {array.ndim} axes of {label} (shape {array.shape}) and end "
                             f"in 'dim', the axis split into heads; got {', '.join(stored)}")
    split = array.reshape(*array.shape[:-1], n_heads, width // n_heads)
    meta = {"layout_convention": convention or f"axes {','.join(stored)}, last axis split into {n_heads} heads",
            "rope": "unknown", "scored": None}
    if "batch" in stored and stored.index("batch") == len(stored) - 3 and "token" in stored[-2:]:
        # (layer..., batch, token, head, d) -> (layer..., batch, head, token, d): a sequence per batch row
        return _batch_as_sequences(np.swapaxes(split, -2, -3), attention_mask, label, meta)
    if attention_mask is not None:
        raise InputError(f"`attention_mask` needs a batch axis just before the token axis; {label} has axes "
                         f"{', '.join(stored)}")
    return KeyArray.from_array(split, axes=(*stored[:-1], "head", "dim"), metadata=meta, name=label)
