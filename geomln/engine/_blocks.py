"""Exact top two scores along many directions, scanning only the blocks of points that can compete.

The best key along a direction ``u`` among n keys costs ``O(n d)`` by a scan, and the engine asks it for tens of
thousands of directions (every witness must beat all keys), which made large interior-heavy sets quadratic.
Here the keys are split, by medians along their widest coordinate, into blocks of at most :data:`LEAF` keys,
each with a bounding ball: a block scores at most ``u . centre + |u| radius`` along ``u``, so once the block of
highest bound is scored, only the blocks whose bound still reaches the second score are. Where most keys
lie well inside (a Gaussian cloud, clusters), a direction scores a few blocks; where balls do not separate
(high dimension, most keys on a sphere) a first batch shows it and the tiled BLAS scan runs instead. The
scores are exact dot products of the keys, the bounds only decide which keys are scored, with a slack above
their rounding, so the result is that of the full scan (ties to the smaller key id).
"""

import numpy as np

from . import _scan_kernels as scan_kernels

__all__ = ["LEAF", "BlockIndex"]

#: keys per block, at most
LEAF = 64
_PROBE = 256  # directions of the first batch, which decides whether blocks pay
_MAX_SCANNED = 0.25  # blocks pay while a direction scores at most this share of them
_SLACK = 1e-12  # relative rounding slack of scores and bounds


class BlockIndex:
    """Blocks of the rows of `points` (m, dim) with their bounding balls, for :meth:`top_two` queries.

    Examples
    --------
    >>> import numpy as np
    >>> from geomln.engine._blocks import BlockIndex
    >>> points = np.random.default_rng(0).normal(size=(5000, 3))
    >>> directions = np.eye(3)
    >>> top_at = BlockIndex(points).top_two(directions)[0]
    >>> bool((top_at == points.argmax(axis=0)).all())
    True
    """

    def __init__(self, points):
        self.points = np.ascontiguousarray(points, dtype=np.float64)
        order, starts = _split(self.points)
        grouped = self.points[order]
        self.ids = order
        self.starts = starts
        self.points_t = np.ascontiguousarray(grouped.T)
        sizes = np.diff(starts)
        self.centres = np.add.reduceat(grouped, starts[:-1], axis=0) / sizes[:, None]
        offsets = np.linalg.norm(grouped - np.repeat(self.centres, sizes, axis=0), axis=1)
        scale = float(np.linalg.norm(self.points, axis=1).max(initial=0.0))
        self.radii = np.maximum.reduceat(offsets, starts[:-1]) * (1 + _SLACK) + _SLACK * scale
        self.slack = 4 * _SLACK * (scale + float(np.abs(self.centres).sum(axis=1).max(initial=0.0)))
        self.pays = None  # decided by the first _PROBE directions of the first batch of at least that many

    def top_two(self, directions):
        """Return ``(top_at, top, second, second_at)`` along each row of `directions` (b, dim).

        The same as :func:`geomln.engine._scan_kernels.tiled_top_two` over the rows: the best and second best
        row id along each direction and their scores (``-1`` and ``-inf`` when there is no second row).
        """
        directions = np.ascontiguousarray(directions, dtype=np.float64)
        if self.pays is None and directions.shape[0] > _PROBE:  # the probe decides how the rest is scored
            first, rest = self.top_two(directions[:_PROBE]), self.top_two(directions[_PROBE:])
            return tuple(np.concatenate([a, b]) for a, b in zip(first, rest, strict=True))
        if self.pays is False:
            return scan_kernels.tiled_top_two(self.points, directions)
        *result, scanned = scan_kernels.pruned_top_two(self.points_t, self.ids, self.starts, self.centres,
                                                       self.radii, self.slack, directions)
        if self.pays is None and directions.shape[0] == _PROBE:
            self.pays = bool(scanned.mean() <= _MAX_SCANNED * self.radii.size)
        return tuple(result)


def _split(points):
    """Return an order of the rows grouping them into blocks of at most LEAF, and the block starts.

    A block larger than LEAF is split at the median of its coordinate of widest range (deterministic).
    """
    m = points.shape[0]
    order = np.arange(m)
    pending, blocks = [(0, m)], []
    while pending:
        begin, end = pending.pop()
        if end - begin <= LEAF:
            blocks.append(begin)
            continue
        rows = order[begin:end]
        part = points[rows]
        axis = int(np.argmax(part.max(axis=0) - part.min(axis=0)))
        half = (end - begin) // 2
        order[begin:end] = rows[np.argpartition(part[:, axis], half, kind="introselect")]
        pending += [(begin + half, end), (begin, begin + half)]
    return order, np.append(np.sort(blocks), m).astype(np.intp)
