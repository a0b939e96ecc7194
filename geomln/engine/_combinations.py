"""Convex-combination certificates of unselectable keys, packed in arrays.

A result with many thousands of unselectable keys stores their certificates as a few 2-D arrays (one row per
key) and builds no per-key Python objects until a certificate is looked up.
"""

from collections.abc import Mapping

import numpy as np

__all__ = ["Combinations", "packed_combinations"]


class Combinations(Mapping):
    """Read-only mapping ``key -> (indices, weights)`` of convex-combination certificates.

    Backed by packed arrays (one row per unselectable key, in one or more blocks sorted by key), so results
    with many thousands of unselectable keys cost no per-key Python objects until a certificate is looked
    up. In a block, row r's indices are ``table[r]``, or ``table[rows[r]]`` when many keys share a few
    supports (the simplices of a triangulation); its first ``counts[r]`` entries are used (all if None).
    """

    def __init__(self, keys, indices, weights, counts):
        order = np.argsort(keys, kind="stable")
        self._blocks = [(np.take(keys, order), None, np.take(indices, order, axis=0), np.take(weights, order, axis=0),
                         np.take(counts, order))]

    def __getitem__(self, key):
        for keys, rows, table, weights, counts in self._blocks:
            position = int(np.searchsorted(keys, key))
            if position < keys.size and keys[position] == key:
                used = weights.shape[1] if counts is None else counts[position]
                row = position if rows is None else rows[position]
                return table[row, :used], weights[position, :used]
        raise KeyError(key)

    def __iter__(self):
        keys = [block[0] for block in self._blocks]
        return (int(key) for key in (keys[0] if len(keys) == 1 else np.sort(np.concatenate(keys))))

    def __len__(self):
        return sum(block[0].size for block in self._blocks)

    def __repr__(self):
        return f"Combinations({len(self)} unselectable keys)"

    def extended(self, keys, weights, table, rows=None):
        """Return a new mapping that also holds the certificates of `keys` (increasing, none already present).

        Key ``keys[r]`` is the combination of ``table[rows[r]]`` (``table[r]`` if `rows` is None) with weights
        ``weights[r]``. The arrays are kept as they are (a new block), not copied.
        """
        combined = Combinations.__new__(Combinations)
        combined._blocks = [*self._blocks, (keys, rows, table, weights, None)]
        return combined


def packed_combinations(unselectable, undecided, decisions, unique_rows, duplicate_of):
    """Certificates of the unselectable keys, in original key indices, as a :class:`Combinations`.

    Support ids ``>= m`` are virtual points (a key pushed down the bias ray); they stand for the same key,
    so their weights merge with its own. A duplicated key's certificate is its copy, with weight 1.

    Parameters
    ----------
    unselectable : ndarray of intp
        Unselectable rows among the ``m`` distinct keys (copies of duplicated keys excluded).
    undecided : ndarray of intp
        Rows that went through the decision loop, aligned with `decisions`.
    decisions : Decisions
        Their outcomes (support ids and weights of each convex combination).
    unique_rows : ndarray of intp, shape (m,)
        Original index of each distinct key.
    duplicate_of : ndarray of intp, shape (n,)
        Index of another identical key for each key, or -1.
    """
    m = unique_rows.size
    slot_of = np.full(m, -1, dtype=np.intp)
    slot_of[undecided] = np.arange(undecided.size)
    slots = slot_of[unselectable]
    support, weights = decisions.support[slots], decisions.weights[slots].copy()
    counts = (support >= 0).sum(axis=1)
    virtual = support >= m
    support = np.where(virtual, support - m, support)
    indices = unique_rows[np.maximum(support, 0)]
    for row in np.flatnonzero(virtual.any(axis=1)):
        ids, position = np.unique(indices[row, : counts[row]], return_inverse=True)
        merged = np.bincount(position, weights=weights[row, : counts[row]])
        indices[row, : ids.size], weights[row, : ids.size], counts[row] = ids, merged, ids.size
    copies = np.flatnonzero(duplicate_of >= 0)
    width = max(int(counts.max(initial=0)), 1)  # the widest certificate (Wolfe's use at most dim + 1 points)
    indices, weights = indices[:, :width], weights[:, :width]
    copy_indices = np.zeros((copies.size, width), dtype=np.intp)
    copy_indices[:, 0] = duplicate_of[copies]
    copy_weights = np.zeros((copies.size, width))
    copy_weights[:, 0] = 1.0
    return Combinations(
        np.concatenate([unique_rows[unselectable], copies]).astype(np.intp),
        np.vstack([indices.reshape(-1, width), copy_indices]),
        np.vstack([weights.reshape(-1, width), copy_weights]),
        np.concatenate([counts, np.ones(copies.size, dtype=counts.dtype)]),
    )
