"""Worker side of the Monte Carlo: samplers, normalizations, one grid cell, and the interval formulas.

Everything here runs identically in the calling process (``workers=1``) and in pool workers, so
results do not depend on where a cell was computed. Arguments arrive already validated by
:mod:`geomln.montecarlo.estimate`; only the output of user samplers is checked here.
"""

import math
import signal
import time
import zlib

import numpy as np

from .._validation import as_points
from ..engine.selectability import count_unselectable, default_tol
from ..engine.warmup import compile_batch_kernel, reference_seconds
from ..errors import InputError
from ..geometry.layernorm import project, scale

__all__ = [
    "DISTRIBUTIONS",
    "NORMALIZATIONS",
    "Context",
    "cell_seed",
    "trial_blocks",
    "TRIAL_BLOCK",
    "sample",
    "normalize",
    "run_cell",
    "init_worker",
    "run_cell_in_worker",
    "warmup",
    "warm_for_dask",
    "wilson_interval",
    "mean_interval",
]

DISTRIBUTIONS = ("gaussian", "uniform_cube", "uniform_ball", "sphere", "from_keys")
NORMALIZATIONS = ("none", "projection", "scaling", "layernorm", "rmsnorm")
_Z95 = 1.959963984540054  # two-sided 95% standard normal quantile
#: trials per separately seeded task: a cell with more trials runs as several blocks, in parallel
TRIAL_BLOCK = 100


class Context:
    """What every cell of one run shares: trials, the seed, the samplers and the normalizations.

    Parameters
    ----------
    trials : int
    entropy : int
        Root entropy of the run's :class:`numpy.random.SeedSequence`.
    samplers : dict
        Distribution label -> a built-in name, a callable ``sampler(rng, n, d)``, or ``("from_keys", pool)``
        with `pool` the (m, d) key matrix rows are drawn from.
    normalizations : tuple of str
    """

    def __init__(self, trials, entropy, samplers, normalizations):
        self.trials = trials
        self.entropy = entropy
        self.samplers = samplers
        self.normalizations = normalizations


def cell_seed(entropy, label, n, d, block=0):
    """Return the SeedSequence of one trial block of a cell.

    It is the child ``(crc32(label), n, d)`` of the run's root sequence for block 0 and
    ``(crc32(label), n, d, block)`` for the later blocks. This is what
    :meth:`numpy.random.SeedSequence.spawn` does, with the block's identity as the spawn key instead of
    its position, so a block's stream does not depend on which other cells or blocks are run, in which
    order, or in which process. Trials ``b * TRIAL_BLOCK`` up to ``(b + 1) * TRIAL_BLOCK`` of a cell form
    block ``b``; normalizations of one cell share the raw samples.
    """
    code = zlib.crc32(label.encode("utf-8"))
    key = (code, int(n), int(d)) if block == 0 else (code, int(n), int(d), int(block))
    return np.random.SeedSequence(entropy, spawn_key=key)


def trial_blocks(trials):
    """Return the number of trial blocks (separately seeded tasks) of a cell with `trials` trials."""
    return -(-trials // TRIAL_BLOCK)


def sample(kind, rng, n, d):
    """Draw one (n, d) float64 key set from `kind` (see :class:`Context`)."""
    if kind == "gaussian":
        return rng.standard_normal((n, d))
    if kind == "uniform_cube":
        return rng.uniform(-1.0, 1.0, (n, d))
    if kind in ("uniform_ball", "sphere"):
        points = rng.standard_normal((n, d))
        norms = np.linalg.norm(points, axis=1, keepdims=True)
        points /= np.where(norms > 0, norms, 1.0)
        if kind == "uniform_ball":
            points *= rng.random((n, 1)) ** (1.0 / d)
        return points
    if isinstance(kind, tuple):  # ("from_keys", pool)
        pool = kind[1]
        return pool[np.sort(rng.choice(pool.shape[0], size=n, replace=False))]
    drawn = kind(rng, n, d)
    name = f"sampler(rng, {n}, {d}) of {getattr(kind, '__name__', type(kind).__name__)}"
    points = as_points(drawn, name)
    if points.shape != (n, d):
        raise InputError(f"`{name}` must return an array of shape ({n}, {d}); got shape {points.shape}")
    return points


def normalize(kind, points):
    """Apply one normalization to an (n, d) key set, with ``eps = 0`` (exact geometry; zero rows raise)."""
    if kind == "none":
        return points
    if kind == "projection":
        return project(points)
    if kind == "layernorm":
        return scale(project(points))
    return scale(points)  # "scaling" and "rmsnorm": without eps and gain, RMSNorm is exactly the scaling


def run_cell(context, label, n, d, normalizations, block=0):
    """Run trial block `block` of one (distribution, n, d) cell for each of `normalizations`.

    Block ``b`` holds trials ``b * TRIAL_BLOCK`` up to ``min(context.trials, (b + 1) * TRIAL_BLOCK)``, drawn
    from its own stream (:func:`cell_seed`), so that the blocks of one cell can run in parallel.

    Returns
    -------
    dict
        normalization -> (unselectable counts per trial as an int64 array, seconds).
    """
    rng = np.random.default_rng(cell_seed(context.entropy, label, n, d, block))
    kind = context.samplers[label]
    trials = min(TRIAL_BLOCK, context.trials - block * TRIAL_BLOCK)
    start = time.perf_counter()
    if kind in ("gaussian", "uniform_cube"):  # one draw gives the same stream as one draw per trial
        raw = sample(kind, rng, trials * n, d)
    else:
        raw = np.concatenate([sample(kind, rng, n, d) for _ in range(trials)])
    drawn = (time.perf_counter() - start) / len(normalizations)
    results = {}
    for norm in normalizations:
        start = time.perf_counter()
        try:
            keys = normalize(norm, raw)  # every normalization acts row by row
        except InputError as exc:
            raise InputError(
                f"`normalization` {norm!r} failed on the key sets of `distribution` {label!r} (n={n}, d={d}; "
                f"{trials} trials stacked, row r is key r % n of trial r // n): {exc}"
            ) from None
        counts = count_unselectable(keys.reshape(trials, n, d), default_tol(keys))
        results[norm] = (counts, time.perf_counter() - start + drawn)
    return results


def warmup():
    """Compile or load from cache the batch kernel every cell uses; return the seconds it took.

    The full engine, which decides only the rare sets the batch kernel leaves unsettled, loads on first use.
    In a pool the kernel is already in the cache (the parent compiled it while the workers started), and
    this loads it.
    """
    return compile_batch_kernel()


def warm_for_dask():
    """Dask worker warm-up: :func:`warmup`, then the engine's reference time; return (seconds, unit)."""
    start = time.perf_counter()
    warmup()
    unit = reference_seconds()  # the rare sets the batch kernel leaves go through the engine
    return time.perf_counter() - start, unit


_WORKER = {}


def init_worker(context):
    """Pool initializer: keep the shared context; leave Ctrl-C to the parent, which cancels the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["context"] = context
    _WORKER["warmup"] = None


def run_cell_in_worker(label, n, d, normalizations, block):
    """Pool task: :func:`run_cell` with the worker's context; the first task also reports the warm-up."""
    warm = 0.0
    if _WORKER["warmup"] is None:
        _WORKER["warmup"] = warm = warmup()
    return run_cell(_WORKER["context"], label, n, d, normalizations, block), warm


def wilson_interval(successes, trials):
    """Two-sided 95% Wilson score interval for a binomial proportion."""
    z2 = _Z95 * _Z95
    centre = (successes + z2 / 2.0) / (trials + z2)
    half = _Z95 * math.sqrt(successes * (trials - successes) / trials + z2 / 4.0) / (trials + z2)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values, any_high):
    """Return mean, standard deviation and 95% Student-t interval of per-trial fractions (clipped to [0, 1]).

    With one trial the interval is [0, 1]. When every trial gives fraction 0 the t interval has zero
    width; since the expected fraction is at most the probability that any key is unselectable, the
    upper end is then that probability's Wilson upper bound `any_high`.
    """
    from scipy.special import stdtrit

    count = values.size
    mean = float(values.mean())
    if count == 1:
        return mean, float("nan"), 0.0, 1.0
    sd = float(values.std(ddof=1))
    if sd == 0.0 and mean == 0.0:
        return mean, sd, 0.0, any_high
    half = float(stdtrit(count - 1, 0.975)) * sd / math.sqrt(count)
    return mean, sd, max(0.0, mean - half), min(1.0, mean + half)
