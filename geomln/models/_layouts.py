"""Which axis is which: the naming conventions geomln applies to unnamed arrays, and the hint when none applies.

Used by :func:`geomln.load_keys` (names inside files) and :func:`geomln.as_key_array` (objects in memory), so
that a file and the same tensor in memory are read alike. The rule: a 2-D array is ``(token, dim)``; an array
of 3 or more axes is read only when its axes are named (by `axes=`, the file's metadata or one of the
conventions below), and refused otherwise with the exact `axes=` to pass.
"""

import re

from ..errors import InputError

__all__ = ["convention_axes", "refuse_unnamed", "tl_rotary_facts"]

# TransformerLens ActivationCache names: attention hooks [batch, pos, head, d_head], the rest [batch, pos, d].
TL_ATTN = re.compile(r"(^|\.)attn\.hook_(q|k|v|z|rot_q|rot_k|result)$")
_TL_OTHER = re.compile(r"^blocks\.\d+\.")
_TL_PRE_ROTARY = re.compile(r"^(?P<stem>.*\battn\.hook_)(?P<kind>[qk])$")


def convention_axes(name, ndim, stacked):
    """Return ``(axes as stored, description of the convention applied)`` for an array called `name`.

    Returns ``(None, None)`` when no convention names the leading axes of an array of `ndim` axes
    (`stacked`: a leading ``layer`` axis was added by stacking ``*``-numbered arrays).
    """
    layer = ("layer",) if stacked else ()
    base = ndim - len(layer)
    probe = (name or "").replace("*", "0")
    if TL_ATTN.search(probe) and base == 4:
        return (*layer, "batch", "token", "head", "dim"), (
            f"TransformerLens hook name {name!r}: [batch, pos, head, d_head]")
    if _TL_OTHER.match(probe) and base == 3:
        return (*layer, "batch", "token", "dim"), f"TransformerLens hook name {name!r}: [batch, pos, d_model]"
    if base == 2:
        return (*layer, "token", "dim"), None
    return None, None


def refuse_unnamed(shape, label):
    """Raise the :class:`InputError` for an array of `shape` (3+ axes) whose leading axes nobody named."""
    placeholder = ",".join([*(f"axis{i}" for i in range(len(shape) - 2)), "token", "dim"])
    examples = {3: "'head,token,dim'", 4: "'batch,token,head,dim' (TransformerLens [batch, pos, head, "
                                          "d_head]) or 'batch,head,token,dim' (Hugging Face key tensors)",
                5: "'layer,batch,token,head,dim'"}
    example = examples.get(len(shape), f"'{placeholder}'")
    raise InputError(f"{label} has shape {tuple(shape)} and nothing names its {len(shape) - 2} leading axes, so "
                     f"geomln will not guess which axis holds the tokens; pass axes= naming every axis as "
                     f"stored, e.g. axes={example}, or axes='{placeholder}' if the last two axes are the "
                     f"tokens and the features")


def tl_rotary_facts(name, names):
    """RoPE facts for a TransformerLens ``hook_k``/``hook_q`` whose cache (`names`) also holds ``hook_rot_*``.

    Returns a dict of metadata (``rope``, ``scored``, ``description``), empty when `name` is not such a hook.
    """
    match = _TL_PRE_ROTARY.match(name or "")
    if match is None:
        return {}
    rotated = f"{match['stem']}rot_{match['kind']}"
    family = re.compile("^" + re.escape(rotated).replace(r"\*", r"\d+") + "$")
    if not any(family.match(n) for n in names):
        return {}
    return {"rope": "pre-rotary", "scored": False,
            "description": f"{name!r} holds the projections before the rotary embedding; the model's scores "
                           f"use {rotated!r}: analyse that for what the model attends with"}
