"""Unselectable keys on short sentences (Table 3 of Brody et al. 2023), shared by Tables 3 and 4.

Table 3 of the paper runs its "w/o scaling" GPT-2 on single sentences of at most 128 tokens (SST-2 in the
paper; here verses of the King James Bible from the held-out part of the language-model corpus) instead of
1,024-token windows. Each sentence is a separate set of keys, starting at position 0; the paper's number is
the mean over sentences of each sentence's fraction of unselectable keys.

The sentences differ in length, so their keys are stored concatenated along the token axis with
``seq_offsets`` (the key-file convention of :mod:`geomln.models.keyfile`): sentence ``s`` is rows
``seq_offsets[s]:seq_offsets[s + 1]``.
"""

import numpy as np

from .._validation import as_positive_int, as_rng
from ..errors import InputError

__all__ = ["heldout_lines", "sample_sentences", "collect_sentence_keys", "sentence_fractions", "summarize_fractions"]


def heldout_lines(text, *, train_fraction=0.9):
    """Return the complete, non-empty lines of the held-out part ``text[int(len(text) * train_fraction):]``.

    The split is the one of the language-model experiment (:mod:`geomln.experiments.lm`), so no held-out
    line was seen in training. The first line is dropped when the split falls inside it.

    Returns
    -------
    list of str
    """
    split = int(len(text) * train_fraction)
    tail = text[split:]
    lines = tail.split("\n")
    if split > 0 and text[split - 1] != "\n":
        lines = lines[1:]  # the split cut this line: its start was trained on
    return [line.strip() for line in lines if line.strip()]


def sample_sentences(lines, encode, *, max_tokens=128, n_sentences=1000, rng=0):
    """Tokenize `lines` one by one, truncate to `max_tokens`, and draw up to `n_sentences` of them.

    Parameters
    ----------
    lines : list of str
    encode : callable
        ``encode(str) -> sequence of int``: the model's tokenizer for one sentence.
    max_tokens : int
        Longer sentences are truncated to their first `max_tokens` tokens (as the paper's
        ``max_length=128, truncation=True``).
    n_sentences : int
        Number of sentences drawn without replacement (all of them if fewer), kept in corpus order.
    rng : int, Generator or None

    Returns
    -------
    sentences : list of ndarray of int64
        The token ids of each drawn sentence (at least 2 tokens each).
    indices : ndarray of intp
        Their positions in `lines`.
    n_truncated : int
        How many drawn sentences were longer than `max_tokens`.
    """
    max_tokens = as_positive_int(max_tokens, "max_tokens", minimum=2)
    n_sentences = as_positive_int(n_sentences, "n_sentences")
    encoded = [np.asarray(encode(line), dtype=np.int64) for line in lines]
    usable = np.array([i for i, ids in enumerate(encoded) if ids.size >= 2], dtype=np.intp)
    if usable.size == 0:
        raise InputError(f"`lines`: none of the {len(lines)} lines has 2 or more tokens")
    generator = as_rng(rng)
    chosen = np.sort(generator.choice(usable, size=min(n_sentences, usable.size), replace=False))
    n_truncated = int(sum(encoded[i].size > max_tokens for i in chosen))
    return [encoded[i][:max_tokens] for i in chosen], chosen, n_truncated


def collect_sentence_keys(forward, sentences):
    """Run `forward` on every sentence alone and concatenate the per-layer vectors along the token axis.

    Parameters
    ----------
    forward : callable
        ``forward(ids) -> list of (before, after)`` with one pair of ``(n, d)`` arrays per layer, for one
        sentence of ``n`` token ids.
    sentences : list of ndarray of int

    Returns
    -------
    before, after : ndarray, shape (layer, total_tokens, d)
    seq_offsets : ndarray of int64, shape (n_sentences + 1,)
    """
    pairs = [forward(np.asarray(s, dtype=np.int64)) for s in sentences]
    if not pairs:
        raise InputError("`sentences` is empty")
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(np.int64)
    n_layers = len(pairs[0])
    before = np.stack([np.concatenate([p[layer][0] for p in pairs]) for layer in range(n_layers)])
    after = np.stack([np.concatenate([p[layer][1] for p in pairs]) for layer in range(n_layers)])
    return np.ascontiguousarray(before), np.ascontiguousarray(after), offsets


def sentence_fractions(keys, seq_offsets, *, tol=None, progress=False):
    """Fraction of unselectable keys per layer and sentence, with :func:`geomln.selectable_keys`.

    Parameters
    ----------
    keys : ndarray, shape (layer, total_tokens, d)
    seq_offsets : ndarray of int, shape (n_sentences + 1,)
        Sentence ``s`` is rows ``seq_offsets[s]:seq_offsets[s + 1]``.
    tol : float, optional

    Returns
    -------
    ndarray, shape (layer, n_sentences)
    """
    import geomln

    from ._training import progress_bar

    keys = np.asarray(keys, dtype=np.float64)
    offsets = np.asarray(seq_offsets, dtype=np.int64)
    if keys.ndim != 3:
        raise InputError(f"`keys` must have shape (layer, token, d); got shape {keys.shape}")
    if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != keys.shape[1] or np.any(np.diff(offsets) < 1):
        raise InputError(
            f"`seq_offsets` must increase strictly from 0 to the {keys.shape[1]} rows of `keys`; got {offsets!r}"
        )
    out = np.empty((keys.shape[0], offsets.size - 1))
    cells = [(layer, s) for layer in range(keys.shape[0]) for s in range(offsets.size - 1)]
    for layer, s in progress_bar(cells, "selectable keys", progress=progress):
        matrix = keys[layer, offsets[s] : offsets[s + 1]]
        out[layer, s] = geomln.selectable_keys(matrix, tol=tol).fraction_unselectable
    return out


def summarize_fractions(fractions, seq_offsets):
    """Percentages per layer: the paper's mean over sentences, the share of all keys, and the spread.

    Returns
    -------
    dict
        ``percent_mean_over_sentences`` (the paper's number), ``percent_of_all_keys`` (weighted by length),
        ``percent_sd_over_sentences``, ``share_of_sentences_with_any_unselectable``, and the sentence
        lengths (``n_sentences``, ``tokens``, ``length_min/median/max``).
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    lengths = np.diff(np.asarray(seq_offsets, dtype=np.int64))
    return {
        "percent_mean_over_sentences": (100 * fractions.mean(axis=1)).round(2).tolist(),
        "percent_of_all_keys": (100 * (fractions * lengths).sum(axis=1) / lengths.sum()).round(2).tolist(),
        "percent_sd_over_sentences": (100 * fractions.std(axis=1)).round(2).tolist(),
        "share_of_sentences_with_any_unselectable": (fractions > 0).mean(axis=1).round(4).tolist(),
        "n_sentences": int(lengths.size),
        "tokens": int(lengths.sum()),
        "length_min": int(lengths.min()),
        "length_median": float(np.median(lengths)),
        "length_max": int(lengths.max()),
    }
