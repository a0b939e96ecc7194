"""What :func:`geomln.models.capture.capture_keys` accepts as `inputs`, and how long sequences become windows.

Every accepted form is turned into a list of sequences, each a dict with ``input_ids`` (a list of ints) and,
when given, ``token_type_ids``; padding (``attention_mask == 0``) is dropped here, so every sequence is run on
its own without padding. :func:`split_windows` then cuts sequences longer than the window into consecutive
windows, each captured as a sequence of its own.
"""

import numbers
from collections.abc import Mapping

import numpy as np

from .._validation import as_choice
from ..errors import InputError

_USED_KEYS = ("input_ids", "attention_mask", "token_type_ids")
#: keys a tokenizer may return that say nothing the model reads
_IGNORED_KEYS = ("special_tokens_mask", "offset_mapping", "overflow_to_sample_mapping", "length")
_FORMS = ("a text, a list of texts, a BatchEncoding / dict with input_ids (and attention_mask), or token ids "
          "(a list of ints, a list of such lists, or a 1-D/2-D integer tensor or array)")


def _int_rows(value, label):
    """Return an integer tensor/array/list of 1 or 2 dimensions as a 2-D integer ndarray."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise InputError(f"{label} must be a rectangular 1-D or 2-D array of token ids; rows differ in "
                         f"length (pad them and pass attention_mask, or pass a list of lists)") from None
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{label} must hold integer token ids; got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise InputError(f"{label} must be 1-D (one sequence) or 2-D (batch, seq); got shape {array.shape}")
    return array.reshape(1, -1) if array.ndim == 1 else array


def _from_mapping(inputs):
    if "input_ids" not in inputs:
        raise InputError(f"`inputs` is a mapping without 'input_ids' (keys: {', '.join(map(str, inputs))}); "
                         f"pass the tokenizer's output, e.g. tokenizer(texts, return_tensors='pt')")
    unknown = [k for k in inputs if k not in _USED_KEYS + _IGNORED_KEYS]
    if unknown:
        raise InputError(f"`inputs` has {', '.join(map(repr, unknown))}, which capture_keys does not pass to "
                         f"the model (it uses {', '.join(_USED_KEYS)}); remove them")
    ids = _int_rows(inputs["input_ids"], "`inputs['input_ids']`")
    extra = {}
    for name in ("attention_mask", "token_type_ids"):
        if inputs.get(name) is not None:
            extra[name] = _int_rows(inputs[name], f"`inputs[{name!r}]`")
            if extra[name].shape != ids.shape:
                raise InputError(f"`inputs[{name!r}]` must have the shape of input_ids {ids.shape}; got "
                                 f"{extra[name].shape}")
    mask = extra.get("attention_mask", np.ones_like(ids)).astype(bool)
    sequences = []
    for row in range(ids.shape[0]):
        keep = mask[row]
        sequence = {"input_ids": ids[row, keep].tolist()}
        if "token_type_ids" in extra:
            sequence["token_type_ids"] = extra["token_type_ids"][row, keep].tolist()
        sequences.append(sequence)
    return sequences


def _is_ids(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def encode_inputs(inputs, tokenizer, max_tokens):
    """Return the list of sequences (dicts of id lists, padding removed, truncated to `max_tokens`)."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        sequences = _from_mapping(inputs)
    elif hasattr(inputs, "ndim") or isinstance(inputs, np.ndarray):
        sequences = [{"input_ids": row.tolist()} for row in _int_rows(inputs, "`inputs`")]
    elif isinstance(inputs, (list, tuple)):
        if inputs and all(_is_ids(t) for t in inputs):
            inputs = [inputs]
        sequences = []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                if tokenizer is None:
                    raise InputError("`inputs` holds text but no `tokenizer` was given; pass tokenizer=...")
                ids = tokenizer(item, truncation=max_tokens is not None, max_length=max_tokens,
                                verbose=False)["input_ids"]
            elif isinstance(item, (list, tuple)) or hasattr(item, "ndim"):
                rows = _int_rows(item, f"`inputs` item {i}")
                if rows.shape[0] != 1:
                    raise InputError(f"`inputs` item {i} must be one sequence of token ids; got shape "
                                     f"{rows.shape}")
                ids = rows[0].tolist()
            else:
                raise TypeError(f"`inputs` item {i} must be a text or a sequence of token ids; got "
                                f"{type(item).__name__}")
            sequences.append({"input_ids": list(ids)})
    else:
        raise TypeError(f"`inputs` must be {_FORMS}; got {type(inputs).__name__}")
    if not sequences:
        raise InputError("`inputs` must hold at least one text or token-id sequence")
    for i, sequence in enumerate(sequences):
        if not sequence["input_ids"]:
            raise InputError(f"`inputs` item {i} has no tokens")
        if max_tokens is not None:
            sequences[i] = {k: v[:max_tokens] for k, v in sequence.items()}
    return sequences


def model_window(model, base):
    """Return the longest sequence the model's position embeddings allow and where that number comes from."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, numbers.Integral) or limit < 1:
        return None, None
    # RoBERTa-style embeddings count positions from padding_idx + 1
    offset = getattr(getattr(base, "embeddings", None), "padding_idx", None)
    if isinstance(offset, numbers.Integral):
        return int(limit) - int(offset) - 1, "config.max_position_embeddings - padding_idx - 1"
    return int(limit), "config.max_position_embeddings"


def split_windows(sequences, window, source, overflow):
    """Cut sequences longer than `window` into consecutive windows; return (windows, description)."""
    as_choice(overflow, "overflow", ("split", "error"))
    windows, input_index, starts = [], [], []
    for i, sequence in enumerate(sequences):
        n = len(sequence["input_ids"])
        if window is not None and n > window and overflow == "error":
            raise InputError(f"`inputs` item {i} has {n} tokens, more than the window of {window} ({source}); "
                             f"capture it in windows (overflow='split'; `geomln capture` without --no-split) "
                             f"or truncate it (max_tokens={window}; --max-tokens {window})")
        step = n if window is None else window
        for start in range(0, n, step):
            windows.append({k: v[start:start + step] for k, v in sequence.items()})
            input_index.append(i)
            starts.append(start)
    counts = np.bincount(input_index, minlength=len(sequences)).tolist()
    description = {"length": window, "source": source, "overflow": overflow,
                   "n_split": sum(c > 1 for c in counts), "windows_per_input": counts,
                   "input_index": input_index, "start_token": starts}
    return windows, description
