"""Which keys can win the maximum attention score: exact verdicts with certificates.

Key ``i`` of ``keys`` (n, d) is *selectable* iff some query ``q`` gives it the strictly highest score,
``q.k_i + b_i > q.k_j + b_j`` for all ``j != i``. Without a bias this holds iff ``k_i`` is a vertex of
the convex hull of the keys and no other key equals it.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from .._validation import as_bounded, as_choice, as_points, as_tol, as_vector
from ..errors import InputError
from . import _kernels as kernels
from . import _local as local
from . import _lowdim as lowdim
from . import _own_sets as own_sets
from . import _scan_kernels as scan_kernels
from ._combinations import Combinations, packed_combinations
from ._geometry import (
    BORDERLINE_FACTOR,
    PARALLEL_WORK,
    RAY_LENGTH,
    Decisions,
    affine_frame,
    decide,
    solve_with_lp,
    wolfe_limits,
)
from .certificates import verify_selectability  # noqa: F401 - its public path before the checker moved

__all__ = ["Selectability", "Combinations", "selectable_keys", "hull_vertices", "default_tol"]

METHODS = ("auto", "wolfe", "lp")
MAX_TOL = 1.0  # at tol >= 1 every key would be within tol of the others' hull: nothing to decide
_DEFAULT_TOL = {"float64": 1e-9, "float32": 1e-6, "float16": 1e-3, "bfloat16": 1e-2}
_BLOCK_ENTRIES = 1 << 23  # entries of one block of scores in the witness scan (64 MiB)
_SCAN_SAMPLE = 2048  # keys whose directions are scanned first (then the others', where many certify themselves)
_FULL_SCAN_OWN_WINS = 0.2  # the scan goes on over the other keys where more of the sample win their own direction
_SCAN_CHUNK = 4096  # ... farthest from the centre first, a chunk at a time, until fewer of a chunk win ...
# ... than this share: a chunk where fewer than about half win its own costs over two scan rows per vertex it
# certifies, and the own working sets find those vertices for less (n = 1e5, d = 16: 20.3 -> 18.8 s)
_SCAN_STOP_OWN_WINS = 0.45
_BATCH_MAX_KEYS = 256  # count_unselectable: larger sets go through the engine one by one
_WHITEN_RATIO = 4.0  # keys are whitened where their spreads along the principal axes differ by more than this
_WHITEN_MAX_RATIO = 1e4  # and by at most this (beyond it the certificates' rounding would grow)
_WHITEN_MIN_KEYS = 64  # small sets gain nothing from it
_TREE_PROBE = 64  # keys whose own directions are scanned before the score tree is considered
_TREE_OWN_WINS = 0.25  # the score tree is considered only where at least this fraction of them win their own
_TREE_INSIDE_MAX_DIM = 7  # above it the score tree is used only where most keys certify themselves (see _decide_all)
_TREE_INSIDE_OWN_SHARE = 0.75  # share of the tree's sample that must win their own direction there
_TREE_ALWAYS_DIM = 3  # up to R^3 the tree's own probe costs milliseconds: no pre-probe (it misjudges a circle
# with keys inside, whose own directions lose to neighbours once the centre is off by more than their spacing)


def default_tol(values):
    """Return the default relative tolerance for data stored in the dtype of `values`.

    float64 and integers: 1e-9; float32: 1e-6; float16: 1e-3; bfloat16: 1e-2 -- about ten to a
    hundred units of rounding of the storage format, relative to the data's radius.

    Examples
    --------
    >>> import numpy as np, geomln
    >>> geomln.default_tol(np.zeros(3, dtype=np.float32))
    1e-06
    """
    dtype = getattr(values, "dtype", None)
    name = str(dtype).replace("torch.", "") if dtype is not None else "float64"
    return _DEFAULT_TOL.get(name, 1e-9)


@dataclass(frozen=True)
class Selectability:
    """Verdicts on which keys can receive the strictly highest attention score, with certificates.

    Attributes
    ----------
    selectable_mask : ndarray of bool, shape (n,)
        True where some query makes the key the strict argmax.
    n, d : int
        Number of keys and their dimension.
    affine_rank : int
        Dimension of the keys' affine hull (after dropping spreads below ``tol / 4``).
    duplicate_of : ndarray of intp, shape (n,)
        Index of another key identical to this one (with the same bias), or -1.
    witness_queries : ndarray, shape (n, d)
        For each selectable key a query for which it is the strict argmax of ``q.k + b``; NaN rows
        for unselectable keys.
    margins : ndarray, shape (n,)
        Normalized margin of the witness: ``min_j (q.(k_i - k_j) + b_i - b_j)`` for the unit witness in
        normalized coordinates, in units of the data radius `scale`; NaN for unselectable keys and inf
        for a key without competitors (``to_dict`` writes both as null).
    combinations : Mapping
        Read-only :class:`Combinations` mapping ``{i: (indices, weights)}`` for each unselectable key:
        other keys with non-negative weights summing to 1 whose combination equals ``k_i`` up to
        ``2 * tol * scale`` (with a bias, whose combined bias is at least ``b_i`` up to the same tolerance).
    borderline_mask : ndarray of bool, shape (n,)
        Keys whose distance to the hull of the others lies within a factor 10 of ``tol``: their verdict
        may flip under perturbations of that size.
    tol : float
        The relative tolerance used.
    scale : float
        The data radius ``max_i |k_i - mean(k)|`` (over distinct keys) that `tol` is relative to.
    bias_scale : float
        The bias range ``max_i |b_i - mean(b)|`` (over distinct keys) used to normalize the bias; 1 without one.
    method : str
        The method that produced the verdicts.
    has_bias : bool
        Whether a bias took part.
    """

    selectable_mask: np.ndarray
    n: int
    d: int
    affine_rank: int
    duplicate_of: np.ndarray
    witness_queries: np.ndarray
    margins: np.ndarray
    combinations: Combinations = field(repr=False)
    borderline_mask: np.ndarray
    tol: float
    scale: float
    bias_scale: float
    method: str
    has_bias: bool

    @property
    def unselectable_indices(self):
        """Sorted indices of the keys that can never be the strict argmax."""
        return np.flatnonzero(~self.selectable_mask)

    @property
    def selectable_indices(self):
        """Sorted indices of the selectable keys."""
        return np.flatnonzero(self.selectable_mask)

    @property
    def n_unselectable(self):
        """Number of unselectable keys."""
        return int(self.n - self.selectable_mask.sum())

    @property
    def fraction_unselectable(self):
        """Fraction of the keys that are unselectable."""
        return self.n_unselectable / self.n

    def to_dict(self):
        """Return a JSON-ready dictionary of the verdicts and their certificates."""
        return {
            "n": self.n,
            "d": self.d,
            "affine_rank": self.affine_rank,
            "tol": self.tol,
            "scale": self.scale,
            "bias_scale": self.bias_scale,
            "method": self.method,
            "has_bias": self.has_bias,
            "fraction_unselectable": self.fraction_unselectable,
            "selectable_mask": self.selectable_mask.tolist(),
            "borderline_mask": self.borderline_mask.tolist(),
            "duplicate_of": self.duplicate_of.tolist(),
            "margins": [float(m) if np.isfinite(m) else None for m in self.margins],
            "witness_queries": {str(i): self.witness_queries[i].tolist() for i in self.selectable_indices},
            "combinations": {
                str(i): {"indices": idx.tolist(), "weights": w.tolist()} for i, (idx, w) in self.combinations.items()
            },
        }


def _find_duplicates(points, bias):
    """Index of an identical other row of (key, bias) for each row (or -1), and the first copy of each row."""
    n = points.shape[0]
    # fast path: identical rows have identical projections, so distinct projections rule duplicates out
    projection = points @ np.linspace(1.0, 2.0, points.shape[1]) + (0.0 if bias is None else np.pi * bias)
    projection.sort()
    if not np.any(projection[1:] == projection[:-1]):
        return np.full(n, -1, dtype=np.intp), np.arange(n)
    rows = points if bias is None else np.hstack([points, bias[:, None]])
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse)
    duplicate_of = np.full(rows.shape[0], -1, dtype=np.intp)
    repeated = counts[inverse] > 1
    if repeated.any():
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # point every copy at the next copy of its group (cyclically)
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        group_start = starts[inverse]
        next_position = group_start + (position - group_start + 1) % counts[inverse]
        duplicate_of[repeated] = order[next_position[repeated]]
    return duplicate_of, np.sort(first)


def _witness_scan(lifted, n, has_bias):
    """Score all keys against the directions of keys; return each key's best certified margin and direction.

    Direction ``i`` is key ``i``'s own normalized coordinates; with a bias (the last lifted coordinate) its
    bias weight is 0, so it certifies keys that are strict vertices of the keys' own hull, which stay
    selectable with a large enough query whatever the bias (see :func:`_bias_witnesses`). The strict argmax
    of every direction is certified by that direction.

    The scan costs ``O(rows * n * d)``, as BLAS products a tile at a time. It starts with a fixed sample of
    ``min(2048, 32 d^2)`` keys and goes on over the other keys when more than a fifth of the sampled keys won their
    own direction (many keys are vertices, as in moderate and high dimension: each is then certified by one
    scan row, where Clarkson's loop would spend several): farthest from the centre first, 4,096 at a time, until
    at most 45 % of a chunk win their own (the keys nearer the centre are then mostly interior, as inside a
    sphere). Otherwise most keys are interior, the sample's winners seed the working sets, and the interior
    keys are settled far more cheaply by Wolfe's algorithm than by an ``n x n`` scan.
    """
    directions = lifted[:, :-1] if has_bias else lifted  # a view: the bias weight of every direction is 0
    norms = np.linalg.norm(directions, axis=1)
    norms[norms == 0] = np.inf
    best_margin = np.full(n, -np.inf)
    best_direction = np.zeros(n, dtype=np.intp)
    sample_size = min(_SCAN_SAMPLE, 32 * max(lifted.shape[1], 1) ** 2)  # few vertices in low dimension
    if n <= sample_size:
        _scan_rows(directions, norms, np.arange(n), best_margin, best_direction)
    else:
        sample = np.sort(np.random.default_rng(0).choice(n, sample_size, replace=False))
        own = _scan_rows(directions, norms, sample, best_margin, best_direction)
        if own.mean() > _FULL_SCAN_OWN_WINS:
            rest = np.setdiff1d(np.arange(n), sample)
            distance = np.where(np.isfinite(norms), norms, 0.0)  # keys at the centre (norm inf here) go last
            rest = rest[np.argsort(-distance[rest], kind="stable")]
            for start in range(0, rest.size, _SCAN_CHUNK):  # farthest keys first, while they win their own
                own = _scan_rows(directions, norms, rest[start:start + _SCAN_CHUNK], best_margin, best_direction)
                if own.mean() <= _SCAN_STOP_OWN_WINS:
                    break
    unit = np.zeros((n, lifted.shape[1]))
    unit[:, : directions.shape[1]] = directions[best_direction] / norms[best_direction, None]
    return best_margin, unit


def _scan_rows(directions, norms, rows_to_scan, best_margin, best_direction):
    """Scan the directions of `rows_to_scan` blockwise, updating the best margins; return own-win flags.

    Scores are ``directions @ directions.T``: a direction scores key ``j`` by its (bias-free) coordinates.
    Small scans run fused in numba; larger ones as BLAS tiles (``_scan_kernels.tiled_top_two``).
    """
    n, dim = directions.shape
    small = rows_to_scan.size * n * dim <= PARALLEL_WORK
    directions = np.ascontiguousarray(directions)
    if small:
        directions_t = np.ascontiguousarray(directions.T)
    own_win = np.zeros(rows_to_scan.size, dtype=bool)
    block = rows_to_scan.size if small else scan_kernels.TILE_QUERIES
    for start in range(0, rows_to_scan.size, block):
        rows = rows_to_scan[start:start + block]
        if small:
            winner, top, second = kernels.scan_top_two_serial(directions, directions_t, rows)
        else:
            winner, top, second, _ = scan_kernels.tiled_top_two(directions, directions[rows])
        margins = (top - second) / norms[rows]
        own_win[start:start + rows.size] = winner == rows
        order = np.lexsort((-margins, winner))  # best margin first within each winner
        first = np.concatenate([[True], winner[order][1:] != winner[order][:-1]])
        chosen = order[first]
        better = margins[chosen] > best_margin[winner[chosen]]
        best_margin[winner[chosen[better]]] = margins[chosen[better]]
        best_direction[winner[chosen[better]]] = rows[chosen[better]]
    return own_win


def _lift(frame, bias):
    """Return normalized coordinates, with the normalized bias appended as the last coordinate when given."""
    if bias is None:
        return frame.coords, 1.0
    spread = float(np.abs(bias - bias.mean()).max())
    bias_scale = spread if spread > 0 else 1.0
    lifted = np.hstack([frame.coords, ((bias - bias.mean()) / bias_scale)[:, None]])
    return np.ascontiguousarray(lifted), bias_scale


def _bias_witnesses(frame, lifted, keys, directions, bias_scale):
    """Return queries (original space) and exact normalized margins for unit witness directions (lifted).

    A direction ``(u, beta)`` scores key ``j`` as ``u.y_j + beta * c_j`` (``c`` the normalized bias).
    When ``beta`` is tiny or negative the keys alone separate the key (the direction came from the
    bias-free scan, or the ray made the bias irrelevant); it is raised to a quarter of the key-only
    margin, which keeps the margin above half the key-only margin because ``|c_i - c_j| <= 2``.
    """
    m = lifted.shape[0]
    queries = np.empty((keys.size, frame.basis.shape[0]))
    margins = np.empty(keys.size)
    if frame.radius == 0.0:  # all keys are equal: the bias alone decides, for any query
        queries[:] = 0.0
        margins[:] = np.inf
        return queries, margins
    key_coords, bias_coord = lifted[:, :-1], lifted[:, -1]
    block = max(1, _BLOCK_ENTRIES // m)
    for start in range(0, keys.size, block):
        rows = np.arange(start, min(keys.size, start + block))
        own = keys[rows]
        unit = directions[rows, :-1]
        beta = directions[rows, -1].copy()
        key_scores = np.ascontiguousarray(unit @ key_coords.T)
        _, runner_up, _ = kernels.top_two(key_scores, own, True)
        key_margin = key_scores[rows - start, own] - runner_up
        weak = beta <= 0.25 * np.minimum(key_margin, 1.0)
        beta[weak] = 0.25 * np.minimum(key_margin[weak], 1.0)
        scores = np.ascontiguousarray(key_scores + beta[:, None] * bias_coord[None, :])
        _, runner_up, _ = kernels.top_two(scores, own, True)
        margins[rows] = (scores[rows - start, own] - runner_up) / np.sqrt(1.0 + beta * beta - directions[rows, -1] ** 2)
        # bias_scale / radius first: each alone may be tiny (subnormal keys and bias), their ratio is not
        queries[rows] = frame.to_original_direction(unit) * (bias_scale / frame.radius / beta)[:, None]
    return queries, margins


def selectable_keys(keys, *, bias=None, tol=None, method="auto"):
    """Decide exactly which keys can receive the strictly highest attention score ``q.k + b``.

    Parameters
    ----------
    keys : array_like, shape (n, d)
        Key vectors (finite).
    bias : array_like, shape (n,), optional
        Additive score per key (e.g. the bias of a softmax output layer).
    tol : float, optional
        Relative tolerance (default from the input dtype, see :func:`default_tol`): a key is selectable iff
        its Euclidean distance to the convex hull of the other keys exceeds ``tol * scale``, where
        ``scale = max_i |k_i - mean(k)|``. With a bias the bias is centred, divided by its range
        ``max_i |b_i - mean(b)|`` and appended as a coordinate, and "hull" means the hull of the other
        lifted keys extended downwards in the bias coordinate. Must be at least 1e-13 and below 1.
    method : {"auto", "wolfe", "lp"}
        "wolfe": witness scan, then Wolfe's minimum-norm-point algorithm inside Clarkson's output-sensitive
        loop, in numba, with a HiGHS fallback where it stalls; "auto": the same, after a linear-time
        certification of the deep interior for large low-dimensional sets (see Notes); "lp": one pair of
        HiGHS linear programs per key (slow; for cross-checks).

    Returns
    -------
    Selectability
        Verdicts, each backed by a witness query or convex-combination weights.

    Raises
    ------
    InputError
        If `keys` is not a finite non-empty 2-D array, an entry of `keys` or `bias` exceeds 1e300 in
        magnitude, `bias` has the wrong length or `tol` is invalid.
    TypeError
        If the inputs are not numeric.

    See Also
    --------
    verify_selectability : check every certificate independently.
    hull_vertices : indices of the extreme points.

    Notes
    -----
    Keys are deduplicated, centred, scaled by their radius and rotated onto their affine hull, so
    rank-deficient sets (LayerNorm outputs, ``n <= d``, collinear keys) are handled exactly. A blockwise
    scan then scores all keys against each key's own direction: every strict argmax with a margin above
    ``10 * tol`` is certified selectable. For the remaining keys Wolfe's algorithm (1976) finds the
    nearest point of the hull of a working set of extreme points; a key further than ``tol / 10`` is
    scanned against all keys with the separating direction, and any key that violates it joins the
    working set (Clarkson 1994) until the verdict is certain or the distance exact. Memory is
    ``O(n d + block)``; time is dominated by the ``O(n^2 d)`` scan for large ``d`` and by the Wolfe steps of
    interior keys for small ``d``. With ``method="auto"``, no bias, at least 20,000 distinct keys spanning
    ``d <= 4`` dimensions, the keys strictly inside polytopes spanned by extreme keys are first certified in
    a few linear passes (fan triangulations, see ``geomln/engine/_lowdim.py``) and only the rest go through the
    steps above; the verdicts are the same. Without a bias, from 4,096 keys spanning at most 8 dimensions of which
    over a quarter lie farther than ``tol / 10`` from the others' hull (spheres; in 8 dimensions only where most
    keys win their own direction), a k-d tree proposes the top scores of the scan and the checks, and each key gets
    its own working set (``geomln/engine/_local.py``): ``O(n log n)`` instead of ``O(n^2 d)``, with the same rules.

    Examples
    --------
    >>> import geomln
    >>> square_and_centre = [[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]]
    >>> result = geomln.selectable_keys(square_and_centre)
    >>> result.unselectable_indices
    array([4])
    >>> idx, w = result.combinations[4]
    >>> float(w.sum())
    1.0
    >>> len(geomln.verify_selectability(square_and_centre, result))
    0
    """
    tol = as_tol(tol, default=default_tol(keys))
    if tol < 1e-13:
        raise InputError(f"`tol` must be >= 1e-13 (float64 resolution of relative distances); got {tol}")
    if tol >= MAX_TOL:
        raise InputError(f"`tol` must be < {MAX_TOL} (a fraction of the data radius); got {tol}")
    method = as_choice(method, "method", METHODS)
    points = as_bounded(as_points(keys, "keys"), "keys")
    n, d = points.shape
    if bias is not None:
        bias = as_bounded(as_vector(bias, "bias", length=n, length_name="the number of keys"), "bias")
    if method == "auto" and bias is None and n >= lowdim.MIN_KEYS and d <= lowdim.MAX_DIM:
        result = _selectable_low_dimension(points, tol)
        if result is not None:
            return result
    duplicate_of, unique_rows = _find_duplicates(points, bias)
    unique = points if unique_rows.size == n else points[unique_rows]
    unique_bias = None if bias is None else bias[unique_rows]
    frame = affine_frame(unique, tol)
    lifted, bias_scale = _lift(frame, unique_bias)
    has_bias = bias is not None
    gains = None if has_bias or method == "lp" else _whitening_gains(lifted, tol)
    if gains is None:
        outcome = _decide_all(lifted, unique.shape[0], tol, has_bias, method)
    else:
        outcome = _decide_whitened(lifted, unique.shape[0], tol, method, gains)
    return _assemble(points, bias_scale, frame, lifted, has_bias, duplicate_of, unique_rows, *outcome, tol, method)


def _decide_all(lifted, m, tol, has_bias, method):
    """Decide every row of `lifted` (normalized coordinates): witness scan, then the decision loop.

    Returns verdict, borderline and margins (m,), witness directions (m, dim), the rows that went
    through the decision loop and their :class:`Decisions`.
    """
    verdict = np.zeros(m, dtype=bool)
    borderline = np.zeros(m, dtype=bool)
    margins = np.full(m, np.nan)
    directions = np.zeros((m, lifted.shape[1]))
    undecided = np.empty(0, dtype=np.intp)
    decisions = Decisions.empty(0, lifted.shape[1])
    if m == 1:
        verdict[0] = True
        margins[0] = np.inf
    else:
        undecided = np.arange(m)
        seeds = np.empty(0, dtype=np.intp)
        tree = None
        if (method != "lp" and not has_bias and m >= local.MIN_KEYS and lifted.shape[1] <= local.MAX_DIM
                and (lifted.shape[1] <= _TREE_ALWAYS_DIM or _own_win_fraction(lifted) >= _TREE_OWN_WINS)):
            tree = local.ScoreTree(lifted)
            vertices = local.most_keys_vertices(tree, tol)
            # in R^8 the tree's queries for the working sets of keys inside cost more than the BLAS scan and own
            # sets (a sphere with as many keys inside: 30 s against 13 s); the tree stays where most keys certify
            # themselves
            tree = tree if vertices and (lifted.shape[1] <= _TREE_INSIDE_MAX_DIM
                                         or tree.own_share >= _TREE_INSIDE_OWN_SHARE) else None
        if method != "lp":
            scanned = _witness_scan(lifted, m, has_bias) if tree is None else local.witness_pass(tree)
            scan_margin, scan_direction = scanned
            certain = scan_margin > tol * BORDERLINE_FACTOR
            verdict[certain] = True
            margins[certain] = scan_margin[certain]
            directions[certain] = scan_direction[certain]
            undecided = np.flatnonzero(~certain)
            seeds = np.flatnonzero(certain)
        if undecided.size:
            if tree is None and method != "lp" and not has_bias:
                decisions = _decide_with_own_sets(lifted, m, undecided, seeds, tol, method)
            elif tree is None:
                decisions = _decide_keys(lifted, m, undecided, seeds, tol, has_bias, method)
            else:
                decisions = local.decide_local(tree, undecided, tol)
            selectable = (decisions.status != kernels.UNSELECTABLE) & (decisions.margin > tol)
            verdict[undecided] = selectable
            borderline[undecided] = (decisions.status == kernels.CONVERGED)
            margins[undecided[selectable]] = decisions.margin[selectable]
            directions[undecided[selectable]] = decisions.direction[selectable]
    return verdict, borderline, margins, directions, undecided, decisions


def _whitening_gains(coords, tol):
    """Per-axis gains that whiten the normalized keys (principal axes), or None where they are nearly round.

    The gains are scaled so that the whitened keys have radius 1; None unless the spreads along the axes differ
    by more than a factor 4 and at most 1e4 (the whitened tolerance ``tol * min(gains)`` stays >= 1e-13).
    """
    m, dim = coords.shape
    if dim < 2 or m < _WHITEN_MIN_KEYS:
        return None
    spread = np.sqrt((coords * coords).mean(axis=0))
    if not spread.min() > 0 or not _WHITEN_RATIO < spread.max() / spread.min() <= _WHITEN_MAX_RATIO:
        return None
    gains = spread.max() / spread
    gains /= np.linalg.norm(coords * gains, axis=1).max()
    return gains if tol * gains.min() >= 1e-13 else None


def _decide_whitened(lifted, m, tol, method, gains):
    """:func:`_decide_all` run on the whitened keys, every certificate rechecked here (bias-free keys).

    Whitening is affine, so the vertices and the convex weights are the same; it only makes the keys' own
    directions good witnesses and Wolfe's corrals well conditioned. A whitened witness ``u`` scores the keys as
    the direction ``gains * u`` does here, so its margin here is the whitened margin divided by
    ``|gains * u|``; a combination's residual is recomputed from these keys. The whitened run uses the tolerance
    ``tol * min(gains)``, so that its combinations within a tenth of it are within ``tol / 10`` here. Keys whose
    rechecked certificate misses the engine's certain thresholds (``10 tol`` margin, ``tol / 10`` residual) or
    that were borderline there are decided again here by the engine's loop, seeded with the certified vertices.
    """
    low, high, _ = wolfe_limits(tol, lifted.shape[1])
    whitened = np.ascontiguousarray(lifted * gains)
    verdict_w, borderline_w, margins_w, directions_w, undecided_w, decisions_w = _decide_all(
        whitened, m, tol * float(gains.min()), False, method)
    verdict = np.zeros(m, dtype=bool)
    margins = np.full(m, np.nan)
    directions = np.zeros_like(lifted)
    chosen = np.flatnonzero(verdict_w & ~borderline_w)
    mapped = directions_w[chosen] * gains
    length = np.linalg.norm(mapped, axis=1)
    margin = margins_w[chosen] / length
    good = margin > high
    certain = chosen[good]
    verdict[certain] = True
    margins[certain] = margin[good]
    directions[certain] = mapped[good] / length[good, None]
    slot_of = np.full(m, -1, dtype=np.intp)
    slot_of[undecided_w] = np.arange(undecided_w.size)
    inside = np.flatnonzero(~verdict_w & ~borderline_w)
    slots = slot_of[inside]
    support, weights = decisions_w.support[slots], decisions_w.weights[slots]
    used = support >= 0
    residual = np.einsum("kj,kjd->kd", np.where(used, weights, 0.0), lifted[np.where(used, support, 0)])
    residual = np.linalg.norm(residual - lifted[inside], axis=1)
    firm = (decisions_w.status[slots] == kernels.UNSELECTABLE) & (residual <= low)
    interior, interior_slots = inside[firm], slots[firm]
    rest = np.setdiff1d(np.arange(m), np.concatenate([certain, interior]))
    decisions = Decisions.empty(interior.size + rest.size, lifted.shape[1])
    decisions.status[: interior.size] = kernels.UNSELECTABLE
    decisions.distance[: interior.size] = residual[firm]
    decisions.support[: interior.size], decisions.weights[: interior.size] = (
        decisions_w.support[interior_slots], decisions_w.weights[interior_slots])
    borderline = np.zeros(m, dtype=bool)
    if rest.size:
        again = _decide_with_own_sets(lifted, m, rest, certain, tol, method)
        for name in ("status", "distance", "margin", "direction", "support", "weights"):
            getattr(decisions, name)[interior.size:] = getattr(again, name)
        selectable = (again.status != kernels.UNSELECTABLE) & (again.margin > tol)
        verdict[rest] = selectable
        borderline[rest] = again.status == kernels.CONVERGED
        margins[rest[selectable]] = again.margin[selectable]
        directions[rest[selectable]] = again.direction[selectable]
    return verdict, borderline, margins, directions, np.concatenate([interior, rest]), decisions


def _own_win_fraction(lifted):
    """Fraction of a fixed sample of keys that are the argmax along their own direction (a cheap probe).

    On circles and spheres every key wins its own direction about their centre (the fitted sphere's centre: the
    keys' mean is off it by ~1/sqrt(n), enough to hand a random circle's own directions to its neighbours);
    where few do, most keys are interior and the score tree's probe (:func:`local.most_keys_vertices`, which
    decides a sample of keys) would cost seconds for nothing.
    """
    m = lifted.shape[0]
    sample = np.sort(np.random.default_rng(0).choice(m, min(_TREE_PROBE, m), replace=False))
    shifted = lifted - local.sphere_centre(lifted)  # argmaxes along any direction are unchanged by a shift
    norms = np.linalg.norm(shifted, axis=1)
    norms[norms == 0] = np.inf
    best_margin, best_direction = np.full(m, -np.inf), np.zeros(m, dtype=np.intp)
    return float(_scan_rows(shifted, norms, sample, best_margin, best_direction).mean())


def _selectable_low_dimension(points, tol):
    """:func:`selectable_keys` for many distinct, full-rank keys in low dimension (see ``_lowdim.py``), or None.

    Keys strictly inside polytopes spanned by extreme keys are certified in a few linear passes; the engine
    decides the keys left among themselves, which gives the same verdicts as among all keys because every
    certificate's corners are among them. A witness's margin can only be lowered further by certified
    keys that use its key as a corner; those are scored exactly. If a margin then no longer clears
    ``10 * tol``, the path gives up (returns None) and the caller runs the engine on all keys.
    """
    frame = lowdim.full_rank_frame(points, tol)
    certified = None if frame is None else lowdim.certify_interior(frame.coords, tol)
    if certified is None:
        return None
    left, blocks = certified
    sub = np.ascontiguousarray(frame.coords[left])
    verdict, borderline, margins, directions, undecided, decisions = _decide_all(sub, left.size, tol, False, "auto")
    n, d = points.shape
    unit = np.full((n, d), np.nan)
    unit[left[verdict]] = directions[verdict]
    exact = np.full(n, np.inf)
    exact[left[verdict]] = margins[verdict]
    lowdim.lower_corner_margins(frame.coords, blocks, unit, exact)
    lowered = exact[left[verdict]] < margins[verdict]
    if not (exact[left[verdict]][lowered] > tol * BORDERLINE_FACTOR).all():
        return None
    margins[verdict] = exact[left[verdict]]
    result = _assemble(points, 1.0, frame, sub, False, np.full(n, -1, dtype=np.intp), left, verdict,
                       borderline, margins, directions, undecided, decisions, tol, "auto")
    combinations = result.combinations
    for keys, simplex, corner_keys, weights in blocks:
        combinations = combinations.extended(keys, weights, corner_keys, rows=simplex)
    return replace(result, combinations=combinations)


def count_unselectable(key_sets, tol):
    """Return the number of unselectable keys in each of many bias-free key sets of one shape.

    For Monte Carlo runs over many small sets: one numba call settles most sets with the engine's own
    decision rules and certificates (see ``count_unselectable_sets``); the few it leaves unsettled (equal
    keys, borderline or stalled keys) go through :func:`selectable_keys`. Sets of more than 256 keys, where
    the batch kernel's scan against all keys costs more than the engine's working-set loop, go through
    :func:`selectable_keys` one by one. Each count equals
    ``selectable_keys(key_sets[s], tol=tol).n_unselectable``.

    Parameters
    ----------
    key_sets : ndarray, shape (sets, n, d)
        Finite float64 keys (validated by the caller).
    tol : float
        Relative tolerance, as in :func:`selectable_keys`.

    Returns
    -------
    ndarray of int64, shape (sets,)

    Examples
    --------
    >>> import numpy as np
    >>> square_and_centre = [[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]]
    >>> house = [[0, 0], [2, 0], [0, 2], [2, 2], [1, 3]]
    >>> count_unselectable(np.array([square_and_centre, house], dtype=float), 1e-9)
    array([1, 0])
    """
    key_sets = np.ascontiguousarray(key_sets, dtype=np.float64)
    if key_sets.shape[1] > _BATCH_MAX_KEYS:  # the batch kernel's O(n^2) steps lose to the engine's O(n h)
        return np.array([selectable_keys(keys, tol=tol).n_unselectable for keys in key_sets], dtype=np.int64)
    low, high, max_major = wolfe_limits(tol, key_sets.shape[2])
    counts, settled = kernels.count_unselectable_sets(key_sets, low, high, max_major)
    for unsettled in np.flatnonzero(~settled):
        counts[unsettled] = selectable_keys(key_sets[unsettled], tol=tol).n_unselectable
    return counts


def _decide_with_own_sets(lifted, m, undecided, seeds, tol, method):
    """Settle what small per-key working sets can (see ``_own_sets.py``), the rest by the general loop."""
    if m < own_sets.MIN_KEYS:
        return _decide_keys(lifted, m, undecided, seeds, tol, False, method)
    decisions, settled, violators = own_sets.settle_with_own_sets(lifted, undecided, seeds, tol)
    rest = np.flatnonzero(~settled)
    if rest.size:
        general = _decide_keys(lifted, m, undecided[rest], np.union1d(seeds, violators), tol, False, method)
        for name in ("status", "distance", "margin", "direction", "support", "weights"):
            getattr(decisions, name)[rest] = getattr(general, name)
    return decisions


def _decide_keys(lifted, m, undecided, seeds, tol, has_bias, method):
    if method == "lp":
        decisions = Decisions.empty(undecided.size, lifted.shape[1])
        for slot, key in enumerate(undecided):
            solve_with_lp(lifted, m, key, RAY_LENGTH if has_bias else 0.0, tol, slot, decisions)
        return decisions
    return decide(lifted, m, undecided, seeds, tol, ray=RAY_LENGTH if has_bias else 0.0)


def _assemble(points, bias_scale, frame, lifted, has_bias, duplicate_of, unique_rows, verdict,
              borderline, margins, directions, undecided, decisions, tol, method):
    n, d = points.shape
    m = unique_rows.size
    selectable_mask = np.zeros(n, dtype=bool)
    selectable_mask[unique_rows] = verdict
    selectable_mask[duplicate_of >= 0] = False
    witness = np.full((n, d), np.nan)
    full_margins = np.full(n, np.nan)
    borderline_mask = np.zeros(n, dtype=bool)
    borderline_mask[unique_rows] = borderline
    chosen = np.flatnonzero(selectable_mask[unique_rows])
    if m == 1:
        witness[unique_rows[chosen]] = 0.0
        full_margins[unique_rows[chosen]] = np.inf
    elif not has_bias:
        witness[unique_rows[chosen]] = frame.to_original_direction(directions[chosen])
        full_margins[unique_rows[chosen]] = margins[chosen]
    else:
        witness[unique_rows[chosen]], full_margins[unique_rows[chosen]] = _bias_witnesses(
            frame, lifted, chosen, directions[chosen], bias_scale)
    unselectable = np.flatnonzero(~verdict & (duplicate_of[unique_rows] < 0))
    combinations = packed_combinations(unselectable, undecided, decisions, unique_rows, duplicate_of)
    return Selectability(
        selectable_mask=selectable_mask, n=n, d=d, affine_rank=frame.rank, duplicate_of=duplicate_of,
        witness_queries=witness, margins=full_margins, combinations=combinations,
        borderline_mask=borderline_mask, tol=tol, scale=frame.radius, bias_scale=bias_scale, method=method,
        has_bias=has_bias,
    )


def hull_vertices(points, *, tol=None):
    """Return the indices of the extreme points (vertices of the convex hull) of a point set.

    Parameters
    ----------
    points : array_like, shape (n, d)
        Any finite points; rank-deficient sets are handled in their affine hull.
    tol : float, optional
        Relative tolerance, as in :func:`selectable_keys`.

    Returns
    -------
    ndarray of intp
        Sorted indices of the vertices; for a vertex that occurs several times, its first copy.

    Examples
    --------
    >>> import geomln
    >>> geomln.hull_vertices([[0, 0], [1, 0], [0, 1], [1, 0], [0.2, 0.2]])
    array([0, 1, 2])
    """
    array = as_bounded(as_points(points, "points"), "points")
    _, first = np.unique(array, axis=0, return_index=True)
    first = np.sort(first)
    result = selectable_keys(array[first], tol=as_tol(tol, default=default_tol(points)))
    return first[result.selectable_mask]
