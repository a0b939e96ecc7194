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

__all__ = ["LEAF", "BlockIndex", "grouped_columns"]

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
        self.ids, self.points_t, (self.starts, self.centres_t, self.radii, self.slack) = grouped_columns(self.points)
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
        *result, scanned = scan_kernels.pruned_top_two(self.points_t, self.ids, self.starts, self.centres_t,
                                                       self.radii, self.slack, directions)
        if self.pays is None and directions.shape[0] == _PROBE:
            self.pays = bool(scanned.mean() <= _MAX_SCANNED * self.radii.size)
        return tuple(result)


    def best_other(self, directions, keys):
        """Return ``(best, best_score, runner, runner_score)``: along each direction, the best row but the key.

        `directions` (b, dim) and `keys` (b,) go in pairs (a key may be no row of the index). `best` is the
        best row other than ``keys[r]`` along ``directions[r]`` and `best_score` its score; `runner` is the next
        other row where the top two tell it (else -1: when the key itself is first or second) and
        `runner_score` its score.
        """
        top_at, top, second, second_at = self.top_two(directions)
        own = top_at == keys
        runner = np.where(own | (second_at == keys), -1, second_at)
        return np.where(own, second_at, top_at), np.where(own, second, top), runner, second


def grouped_columns(points, leaf=LEAF):
    """Group the rows of `points` (m, dim) into blocks with bounding balls; return ``(order, points_t, blocks)``.

    ``points_t = points[order].T`` (C order) holds the rows as columns, block by block, and ``blocks = (starts,
    centres_t, radii, slack)`` as :func:`geomln.engine._scan_kernels.pruned_top_two` takes them: every row of
    block l lies within ``radii[l]`` of ``centres_t[:, l]`` (radii rounded up), and `slack` bounds the rounding
    of a score or a bound along a unit direction.
    """
    order, starts, grouped = scan_kernels.split_blocks(np.ascontiguousarray(points, dtype=np.float64), leaf)
    sizes = np.diff(starts)
    centres = np.add.reduceat(grouped, starts[:-1], axis=0) / sizes[:, None]
    offsets = np.linalg.norm(grouped - np.repeat(centres, sizes, axis=0), axis=1)
    scale = float(np.linalg.norm(points, axis=1).max(initial=0.0))
    radii = np.maximum.reduceat(offsets, starts[:-1]) * (1 + _SLACK) + _SLACK * scale
    slack = 4 * _SLACK * (scale + float(np.abs(centres).sum(axis=1).max(initial=0.0)))
    return order, np.ascontiguousarray(grouped.T), (starts, np.ascontiguousarray(centres.T), radii, slack)
