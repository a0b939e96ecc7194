"""Monte Carlo estimates of how many random keys are unselectable, over a grid of (n, d).

A key is unselectable when no query gives it the strictly highest attention score, i.e. when it lies
in the convex hull of the other keys (Brody, Alon & Yahav 2023). Each cell of the grid draws `trials`
sets of `n` keys in ``R^d``, optionally normalizes them, and decides every key exactly with
:func:`geomln.selectable_keys`.
"""

import contextlib
import hashlib
import os
import platform
import sys
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._validation import as_choice, as_points, as_positive_int
from .._version import __version__
from ..engine.warmup import compile_batch_kernel, compile_wolfe
from ..errors import GeomlnError, GeomlnWarning, InputError
from ..executors import ClusterError, chunk, estimated_seconds, process_pool_map, resolve_executor
from . import _cells as cells
from ._store import Checkpoint, MonteCarloRow, cell_key, read_json
from ._table import MonteCarloResult
from .theory import unselectable_fraction_gaussian

__all__ = ["MonteCarloResult", "MonteCarloRow", "estimate_unselectable", "DISTRIBUTIONS", "NORMALIZATIONS"]

DISTRIBUTIONS = cells.DISTRIBUTIONS
NORMALIZATIONS = cells.NORMALIZATIONS
METRICS = ("any_unselectable", "fraction")
_SPHERE_VALUED = ("scaling", "layernorm", "rmsnorm")


def _as_count_list(value, name):
    """Return an int, a range or a sequence of ints (each >= 1) as a sorted list of distinct ints."""
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"`{name}` must be an int, a range or a list of ints; got a string {value!r} "
            "(the command line parses '3:60'; in Python use range(3, 61))"
        )
    items = (
        [value]
        if np.ndim(value) == 0
        else list(np.asarray(value).ravel())
        if isinstance(value, np.ndarray)
        else list(value)
    )
    if not items:
        raise InputError(f"`{name}` must hold at least one value; got an empty {type(value).__name__}")
    return sorted(
        {as_positive_int(item.item() if isinstance(item, np.generic) else item, name) for item in items}
    )


def _label(sampler):
    return (
        getattr(sampler, "__qualname__", None) or getattr(sampler, "__name__", None) or type(sampler).__name__
    )


def _resolve_distributions(distribution, keys):
    """Label -> sampler kind for the context, and label -> description for the provenance."""
    items = list(distribution) if isinstance(distribution, (list, tuple)) else [distribution]
    if not items:
        raise InputError("`distribution` must name at least one distribution")
    samplers, described = {}, {}
    for item in items:
        if callable(item):
            label = _label(item)
            full_name = f"{getattr(item, '__module__', '?')}.{label}"
            label = full_name if label in DISTRIBUTIONS else label  # never mistaken for a built-in
            kind, info = item, {"kind": "callable", "name": full_name}
        else:
            if not isinstance(item, str):
                raise TypeError(
                    f"`distribution` must be a name or a callable sampler(rng, n, d); "
                    f"got {type(item).__name__} {item!r}"
                )
            try:
                label = as_choice(item, "distribution", DISTRIBUTIONS)
            except InputError as exc:
                raise InputError(f"{exc} (or pass a callable sampler(rng, n, d))") from None
            if label == "from_keys":
                pool, info = _key_pool(keys)
                kind = ("from_keys", pool)
            else:
                kind, info = label, {"kind": "builtin"}
        if label in samplers:
            raise InputError(f"`distribution` lists {label!r} twice; give each distribution once")
        samplers[label], described[label] = kind, info
    if keys is not None and "from_keys" not in samplers:
        raise InputError("`keys` is only used by distribution='from_keys'; add it or drop `keys`")
    return samplers, described


def _key_pool(keys):
    """Return the (m, d) matrix that 'from_keys' draws rows from, with a description for the provenance."""
    if keys is None:
        raise InputError(
            "distribution 'from_keys' needs `keys`: an (m, d) key matrix or the path of a saved one"
        )
    source = "array"
    if isinstance(keys, (str, Path)):
        from ..models.keyfile import load_keys

        source = str(keys)
        keys = load_keys(keys).values
    elif hasattr(keys, "values") and hasattr(keys, "axes"):  # a KeyArray
        keys = keys.values
    matrix = _pool_matrix(keys)
    info = {
        "kind": "from_keys",
        "source": source,
        "shape": list(matrix.shape),
        "sha256": hashlib.sha256(matrix.tobytes()).hexdigest(),
    }
    return matrix, info


def _pool_matrix(keys):
    """`keys` as a finite (m, d) float64 matrix, with a hint for stacked key files."""
    array = np.asarray(keys) if not isinstance(keys, np.ndarray) else keys
    if array.ndim > 2:
        raise InputError(
            f"`keys` must be one (m, d) key matrix for 'from_keys'; got shape {array.shape}. "
            "Pick one layer/head first (KeyArray.select or array indexing)"
        )
    return as_points(array, "keys")


def _theory_table(labels, normalizations, ns, ds):
    """Return ``{(label, normalization, n, d): exact expected fraction or NaN}`` for every cell of a run.

    The Gaussian fractions come from one vectorized call (cell by cell they would cost ~2 ms each).
    """
    gaussian = {}
    if "gaussian" in labels:
        dims = sorted(set(ds) | {d - 1 for d in ds if d >= 2})
        values = unselectable_fraction_gaussian(np.asarray(ns)[:, None], np.asarray(dims)[None, :])
        gaussian = {(n, d): float(values[i, j]) for i, n in enumerate(ns) for j, d in enumerate(dims)}
    return {
        (label, norm, n, d): _theory(label, norm, n, d, gaussian)
        for label in labels
        for norm in normalizations
        for n in ns
        for d in ds
    }


def _theory(label, normalization, n, d, gaussian):
    """Return the exact expected fraction where it is known, else NaN (`gaussian`: (n, d) -> fraction)."""
    if label not in ("gaussian", "uniform_cube", "uniform_ball", "sphere"):
        return float("nan")
    on_sphere = normalization in _SPHERE_VALUED or (label == "sphere" and normalization == "none")
    sphere_dim = d - 2 if normalization == "layernorm" else d - 1
    if on_sphere:
        # distinct points on a sphere of dimension >= 1 are all vertices; on S^0 keys collide
        return 0.0 if sphere_dim >= 1 else float("nan")
    if label == "gaussian" and normalization == "none":
        return gaussian[n, d]
    if label == "gaussian" and normalization == "projection" and d >= 2:
        # the projection of N(0, I_d) onto the hyperplane orthogonal to 1 is N(0, I_{d-1}) in that hyperplane
        return gaussian[n, d - 1]
    return float("nan")


def _row(label, normalization, n, d, counts, seconds, theory):
    trials = counts.size
    hits = int(np.count_nonzero(counts))
    any_low, any_high = cells.wilson_interval(hits, trials)
    fraction, sd, low, high = cells.mean_interval(counts / n, any_high)
    return MonteCarloRow(
        n,
        d,
        label,
        normalization,
        trials,
        fraction,
        sd,
        low,
        high,
        hits / trials,
        any_low,
        any_high,
        float(n - counts.mean()),
        theory[label, normalization, n, d],
        float(seconds),
    )


def _check_sampler(label, sampler, n, d):
    """Call a user sampler once (with its own stream) so a wrong shape or NaN fails before any work starts."""
    cells.sample(sampler, np.random.default_rng(cells.cell_seed(0, "check:" + label, n, d)), n, d)


def _provenance(ns, ds, trials, labels, normalizations, seed, entropy, workers, described):
    import numba
    import scipy

    return {
        "geomln_version": __version__,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "numba_version": numba.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arguments": {
            "n": ns,
            "d": ds,
            "trials": trials,
            "distribution": labels,
            "normalization": list(normalizations),
            "seed": seed,
            "workers": workers,
        },
        "entropy": str(entropy),
        "distributions": described,
        "engine": "geomln.selectable_keys' decision rules (batch kernel for sets of <= 256 keys) with the default "
        "tolerance (1e-9 relative to the data radius)",
        "seeding": "cell (distribution, n, d) uses "
        "SeedSequence(entropy, spawn_key=(crc32(distribution), n, d)) for trials 0-99, "
        "(crc32(distribution), n, d, b) for trials 100 b to 100 b + 99; its normalizations share the raw keys",
        "timings": {},
    }


def _load_resumable(path, trials, entropy, described):
    """Finished rows of a compatible checkpoint at `path` (none if there is no file)."""
    if path is None or not Path(path).exists():
        return ()
    rows, provenance, _ = read_json(path)
    old = provenance.get("arguments", {})
    mismatches = []
    if old.get("trials") != trials:
        mismatches.append(f"trials {old.get('trials')} (now {trials})")
    if provenance.get("entropy") != str(entropy):
        mismatches.append(f"seed {old.get('seed')} (now a different seed)")
    for label, info in described.items():
        before = provenance.get("distributions", {}).get(label)
        if before is not None and before != info:
            mismatches.append(f"distribution {label!r} defined differently")
    if mismatches:
        raise InputError(
            f"`checkpoint` {str(path)!r} was made with {', '.join(mismatches)}; use the same "
            "arguments to resume, or another path (or resume=False) to start afresh"
        )
    return rows


def estimate_unselectable(
    n,
    d,
    *,
    trials=100,
    distribution="gaussian",
    normalization="none",
    seed=0,
    workers=None,
    progress=True,
    keys=None,
    checkpoint=None,
    resume=False,
    executor="local",
    scheduler=None,
):
    """Estimate by Monte Carlo how many of `n` random keys in ``R^d`` are unselectable, over a grid of (n, d).

    Parameters
    ----------
    n, d : int, range or sequence of int
        Numbers of keys and dimensions (each >= 1); every combination is a cell.
    trials : int, default 100
        Key sets per cell.
    distribution : str, callable, or a list of them, default "gaussian"
        ``"gaussian"`` (iid standard normal, as in the paper), ``"uniform_cube"`` ([-1, 1]^d),
        ``"uniform_ball"`` (unit ball), ``"sphere"`` (unit sphere), ``"from_keys"`` (`n` distinct rows
        drawn from `keys`), or a callable ``sampler(rng, n, d)`` returning an (n, d) array from the
        numpy Generator `rng` (module-level, so that worker processes can import it).
    normalization : str or list of str, default "none"
        Applied to every key set after sampling: ``"none"``, ``"projection"`` (subtract each key's
        mean), ``"scaling"`` (rescale to norm ``sqrt(d)``), ``"layernorm"`` (projection then scaling) or
        ``"rmsnorm"`` (scaling without projection). ``eps = 0`` and no gain: the exact geometry.
    seed : int or None, default 0
        Root of the random streams; None draws fresh entropy (recorded in the provenance).
    workers : int, optional
        Processes for the cells and their blocks of 100 trials; None uses ``os.cpu_count()``, 1 runs in
        this process.
    progress : bool, default True
        Show a tqdm progress bar on stderr for runs longer than a second.
    keys : array_like of shape (m, d), KeyArray or path, optional
        The key matrix for ``"from_keys"`` (any file :func:`geomln.load_keys` reads).
    checkpoint : str or Path, optional
        JSON file rewritten atomically as cells finish (at most every 2 s, and with every finished cell
        when the run stops early; the same format as :meth:`MonteCarloResult.to_json`), so an interrupted
        run leaves a valid partial table.
    resume : bool, default False
        Reuse the finished cells of an existing `checkpoint` made with the same trials, seed and
        distributions; only the missing cells are computed.
    executor : {"local", "dask"} or distributed.Client, default "local"
        ``"local"`` runs on this machine (`workers`); ``"dask"`` sends the cells, grouped into tasks of
        at least ~0.2 s, to a Dask cluster: the one at `scheduler`, or else a ``LocalCluster`` on
        127.0.0.1 with `workers` worker processes. A connected ``distributed.Client`` is used as is.
        Needs the optional extra ``dask``; the table is bit-identical to a local run.
    scheduler : str, optional
        Address of a running Dask scheduler, e.g. ``"tcp://10.0.0.5:8786"`` (only with ``executor="dask"``).

    Returns
    -------
    MonteCarloResult
        One row per (n, d, distribution, normalization) cell; see :class:`MonteCarloRow` for the columns.

    Raises
    ------
    InputError
        A value below 1, an unknown distribution or normalization (listing the choices), ``"layernorm"``
        with ``d = 1``, a sampler returning the wrong shape or non-finite values,
        `keys` of the wrong shape or with fewer rows than the largest `n` or a dimension other than `d`,
        or a `checkpoint` made with other arguments; an unknown `executor`, or `scheduler` without
        ``executor="dask"``.
    ClusterError
        The Dask scheduler cannot be reached or is lost, or a task keeps killing workers; the finished
        cells are kept in `checkpoint` for `resume`.
    ImportError
        ``executor="dask"`` without dask installed.
    DataFileError
        An unreadable `keys` file or checkpoint, or a checkpoint that cannot be written.
    TypeError
        Arguments of the wrong kind.

    See Also
    --------
    unselectable_fraction_gaussian : the exact expectation for Gaussian keys.
    geomln.plotting.plot_unselectable_heatmap : the paper's Figure 1c/1d from a result.

    Notes
    -----
    Every cell (distribution, n, d) draws its trials in blocks of 100, each block from its own stream: the child
    of ``SeedSequence(seed)`` with spawn key ``(crc32(distribution), n, d)`` for the first block and
    ``(crc32(distribution), n, d, b)`` for block ``b >= 1``; blocks run in parallel like cells, and a cell's
    normalizations see the same raw keys. Tables are therefore bit-identical (except the ``seconds`` column) for
    any `workers`, any order of `n` and `d`, and across resumed runs. Workers are separate processes (joblib's
    loky executor), each loading the compiled kernels once; they never re-import ``__main__``, so a script,
    ``python -c``, stdin or a notebook needs no ``if __name__ == "__main__":`` guard, and samplers defined there
    reach the workers by value (cloudpickle). The paper's Figure 1c is the ``any_unselectable`` column of Gaussian
    keys for n = 3..60 and d = 3..15; with ``"layernorm"`` (Figure 1d) every key is selectable, because distinct
    points on a sphere are all vertices. That needs a sphere of dimension >= 1: ``d >= 3`` for ``"layernorm"``
    (keys lie on a (d-2)-sphere), ``d >= 2`` for ``"scaling"``, ``"rmsnorm"`` and ``"sphere"``; below that the
    keys take only two values and repeated keys are unselectable.

    Examples
    --------
    >>> import geomln
    >>> result = geomln.estimate_unselectable(
    ...     range(5, 8), [3, 4], trials=10, normalization=["none", "layernorm"], workers=1, progress=False
    ... )
    >>> len(result)
    12
    >>> result.pivot("any_unselectable", normalization="layernorm")[2].max()
    np.float64(0.0)
    """
    ns = _as_count_list(n, "n")
    ds = _as_count_list(d, "d")
    trials = as_positive_int(trials, "trials")
    norms = [normalization] if isinstance(normalization, str) else list(normalization)
    if not norms:
        raise InputError("`normalization` must name at least one normalization")
    for norm in norms:
        as_choice(norm, "normalization", NORMALIZATIONS)
    if len(set(norms)) != len(norms):
        raise InputError(f"`normalization` lists a value twice: {norms}")
    if ds[0] == 1 and "layernorm" in norms:
        raise InputError(
            "`normalization` 'layernorm' needs d >= 2 (it projects a 1-D key to 0, which cannot be scaled); "
            "got d = 1 in `d`"
        )
    if seed is not None:
        seed = as_positive_int(seed, "seed", minimum=0)
    entropy = np.random.SeedSequence(seed).entropy
    if workers is not None:
        workers = as_positive_int(workers, "workers")
    runner = resolve_executor(executor, scheduler, workers, warmup=cells.warm_for_dask)
    if resume and checkpoint is None:
        raise InputError("`resume` needs a `checkpoint` path to resume from")
    samplers, described = _resolve_distributions(distribution, keys)
    for label, kind in samplers.items():
        if isinstance(kind, tuple):
            pool = kind[1]
            if ds != [pool.shape[1]]:
                raise InputError(
                    f"`d` must be [{pool.shape[1]}] for 'from_keys' (the rows of `keys` are "
                    f"{pool.shape[1]}-dimensional); got {ds}"
                )
            if ns[-1] > pool.shape[0]:
                raise InputError(
                    f"`n` must be at most {pool.shape[0]} for 'from_keys' (the rows of `keys`); got {ns[-1]}"
                )
        elif callable(kind):
            _check_sampler(label, kind, ns[0], ds[0])
    labels = list(samplers)
    label_rank = {label: i for i, label in enumerate(labels)}
    norm_rank = {norm: i for i, norm in enumerate(norms)}

    def order(key):
        return (label_rank[key[0]], norm_rank[key[1]], key[2], key[3])

    provenance = _provenance(ns, ds, trials, labels, norms, seed, entropy, workers, described)
    done = {}
    if resume:
        done = {cell_key(row): row for row in _load_resumable(checkpoint, trials, entropy, described)}
    wanted = [(label, n_, d_) for label in labels for n_ in ns for d_ in ds]
    tasks = []  # one per trial block of each cell still to compute (blocks of one cell run in parallel)
    for label, n_, d_ in wanted:
        missing = tuple(norm for norm in norms if (label, norm, n_, d_) not in done)
        if missing:
            tasks.extend((label, n_, d_, missing, block) for block in range(cells.trial_blocks(trials)))
    theory = _theory_table(labels, norms, ns, ds)
    merger = _BlockMerger(cells.trial_blocks(trials), theory)
    store = Checkpoint(checkpoint, provenance, order)
    store.add(
        [
            row
            for key, row in done.items()
            if key[0] in samplers and key[1] in norms and key[2] in ns and key[3] in ds
        ],
        save=False,
    )
    reused = len(store.rows)
    context = cells.Context(trials, entropy, samplers, tuple(norms))
    workers_used = min(workers or os.cpu_count() or 1, max(len(tasks), 1))
    if runner is None and workers_used > 1 and any(callable(kind) for kind in samplers.values()):
        import cloudpickle

        try:
            cloudpickle.dumps(context)
        except Exception:  # noqa: BLE001 - any pickling failure means: run here instead
            warnings.warn(
                "the sampler cannot be sent to worker processes (it does not pickle, even with cloudpickle); "
                "running in this process",
                GeomlnWarning,
                stacklevel=2,
            )
            workers_used = 1
    existed = checkpoint is not None and Path(checkpoint).exists()
    start = time.perf_counter()
    warm = 0.0
    try:
        cells_to_do = sum(len(task[3]) for task in tasks if task[4] == 0)
        with _progress_bar(progress, cells_to_do, reused) as bar:
            if runner is not None:
                warm, workers_used = (0.0, 0) if not tasks else _run_dask(runner, context, tasks, store, bar,
                                                                            provenance, merger)
            elif workers_used == 1:
                warm = cells.warmup()
                for task in tasks:
                    _finish(merger, task, cells.run_cell(context, *task), store, bar)
            else:
                warm = _run_pool(context, tasks, workers_used, store, bar, merger)
    except KeyboardInterrupt:
        store.flush()
        raise
    except ClusterError as exc:
        store.flush()
        if not store.written:
            raise
        raise ClusterError(
            f"{exc}; the {len(store.rows)} finished cells are saved in `checkpoint` {str(checkpoint)!r}: "
            "rerun with resume=True to compute only the others"
        ) from None
    except BaseException:
        if resume and existed:
            store.flush()  # the checkpoint was the user's: keep what this run added
        elif store.written:
            Path(checkpoint).unlink(missing_ok=True)
        raise
    timings = {
        "total_seconds": time.perf_counter() - start,
        "warmup_seconds": warm,
        "cells_computed": len(store.rows) - reused,
        "cells_resumed": reused,
        "workers_used": workers_used,
    }
    provenance["timings"] = timings
    rows = tuple(store.rows[key] for key in sorted(store.rows, key=order))
    store.save(complete=True)
    return MonteCarloResult(rows, provenance, True)


class _BlockMerger:
    """Collect the trial blocks of each cell; a cell's rows come out once all of its blocks are in."""

    def __init__(self, blocks, theory):
        self.blocks = blocks
        self.theory = theory
        self.parts = {}

    def add(self, task, outcome):
        """Record one finished block; return the rows of its cell if that was the cell's last block."""
        label, n, d, missing, block = task
        parts = self.parts.setdefault((label, n, d), {})
        parts[block] = outcome
        if len(parts) < self.blocks:
            return []
        del self.parts[label, n, d]
        ordered = [parts[b] for b in range(self.blocks)]
        return [
            _row(label, norm, n, d, np.concatenate([part[norm][0] for part in ordered]),
                 sum(part[norm][1] for part in ordered), self.theory)
            for norm in missing
        ]


def _finish(merger, task, outcome, store, bar):
    """Hand a finished block to `merger`; store (checkpoint) and count its cell's rows once complete."""
    rows = merger.add(task, outcome)
    if rows:
        store.add(rows)
        _advance(bar, len(rows))


def _run_dask(runner, context, tasks, store, bar, provenance, merger):
    """Run `tasks` on Dask in chunks of blocks; return the workers' summed warm-up seconds and their number."""
    with runner:
        provenance["executor"] = runner.description
        unit = runner.unit_seconds
        costs = [estimated_seconds(task[1], cells.TRIAL_BLOCK * len(task[3]), unit) for task in tasks]
        for items, outcomes in runner.run(cells.run_cell, chunk(tasks, costs), shared=(context,)):
            for task, outcome in zip(items, outcomes, strict=True):
                _finish(merger, task, outcome, store, bar)
        return runner.warm_seconds, runner.description["dask_workers"]


def _run_pool(context, tasks, workers, store, bar, merger):
    """Run `tasks` on a pool of worker processes, most expensive first; return the summed warm-up seconds.

    The batch kernel compiles (or loads) while the workers start, in two parts, one here and one in a
    worker (``geomln.engine.warmup``), so that the workers load it from the cache instead of each compiling
    it.
    """
    warm = [0.0]

    def prepare_here(wolfe):
        warm[0] = compile_batch_kernel(wolfe) + wolfe.result()

    ordered = sorted(tasks, key=lambda task: -task[1] * len(task[3]))
    def on_idle():  # still warming up or on a long cell: keep the bar on screen, save what finished
        bar.refresh()
        store.tick()

    results = process_pool_map(cells.run_cell_in_worker, ordered, workers, cells.init_worker, (context,),
                               on_idle=on_idle,
                               prepare=(compile_wolfe, prepare_here))
    with contextlib.closing(results):
        try:
            for task, (outcome, seconds) in results:
                warm[0] += seconds
                _finish(merger, task, outcome, store, bar)
        except BrokenProcessPool as exc:
            raise GeomlnError(
                f"a worker process stopped abruptly ({' '.join(str(exc).split())}); out of memory or killed? "
                "Rerun with workers=1 to compute in this process"
            ) from None
    return warm[0]


#: shown until the first cell finishes; ~20 s is the batch kernel's cold compile in
#: benchmarks/results/coldstart.md (19.7 s wall, 16.2 s CPU): whether the cache is cold is not known here
_WARMING_UP = "loading numba kernels (compiling on a first run: ~15 s)"


def _progress_bar(enabled, total, initial):
    from tqdm import tqdm

    bar = tqdm(
        total=total + initial,
        initial=initial,
        disable=not enabled,
        file=sys.stderr,
        delay=1.0,
        unit="cell",
        desc="geomln montecarlo",
        dynamic_ncols=True,
    )
    bar.set_postfix_str(_WARMING_UP, refresh=False)
    return bar


def _advance(bar, cells_done):
    """Count finished cells on the progress bar; the first ones end the warm-up note."""
    if bar.postfix:
        bar.set_postfix_str("", refresh=False)
    bar.update(cells_done)
