"""Full Figure 1c/1d grid with geomln.estimate_unselectable, side by side with the published pipeline.

Run: ``python benchmarks/bench_montecarlo.py [--workers 2] [--baseline-cells 120] [--baseline-trials 3]``.

0. The batch kernel's first call in fresh processes, with an empty numba cache and with a filled one.
1. The full default grid (n = 3..60, d = 3..15, 100 trials, normalizations none and layernorm:
   150,800 key sets) through ``geomln.estimate_unselectable``: wall time, warm-up, time inside cells,
   and the per-set cost of the batch path the cells use vs one ``selectable_keys`` call per set.
2. The published pipeline (tech-srl/layer_norm_expressivity_role, ``unselectable/stollen_prob_search.py``,
   adopted from andreasgrv/unargmaxable): for every key, "braid reflection" (reflect a query across the
   hyperplane that swaps the key with the current argmax, patience 100), then, if that fails, one
   Chebyshev-ball LP per key (Gurobi there; HiGHS via scipy here, same formulation and box [-100, 100]).
   It runs in this process, one set at a time, on a uniform random sample of the grid's cells with the
   same keys as geomln; its total is extrapolated to the grid and compared with geomln on the same sets.
   A few of the sets also run as the original runs them, with a fresh process pool per key set.

The baseline's two steps are ``braid_heuristic`` and ``chebyshev_lp`` from ``benchmarks/baselines.py``.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import geomln
from geomln.engine.selectability import count_unselectable, selectable_keys
from geomln.montecarlo import _cells as cells

sys.path.insert(0, os.path.dirname(__file__))
from baselines import braid_heuristic, chebyshev_lp  # noqa: E402


def published_unselectable(keys):
    """Number of keys the published pipeline calls bounded (unselectable), one key after another.

    As in the original, sets with ``n < d + 1`` are skipped (0). The original also asserts full linear
    rank, which LayerNorm outputs never have (they lie in the hyperplane orthogonal to 1); the assertion
    is left out so that the layernorm half of the grid can be timed too.
    """
    n, d = keys.shape
    if n < d + 1:
        return 0
    return sum(_published_key_is_bounded(keys, key) for key in range(n))


def _published_key_is_bounded(keys, key):
    return not (braid_heuristic(keys, None, key)[0] or chebyshev_lp(keys, None, key)[0])


_SHARED = {}


def _pooled_key(index):
    return _published_key_is_bounded(_SHARED["keys"], index)


def published_unselectable_as_run(keys):
    """As the published code runs it: a fresh fork pool of cpu_count - 1 processes per key set."""
    import multiprocessing

    n, d = keys.shape
    if n < d + 1:
        return 0
    _SHARED["keys"] = keys  # a module global inherited by the forked workers, as in the original
    with multiprocessing.get_context("fork").Pool(processes=max(1, (os.cpu_count() or 2) - 1)) as pool:
        return sum(pool.imap_unordered(_pooled_key, range(n)))


_FIRST_CELL = """
from geomln.montecarlo import _cells as cells
print(cells.warmup())
"""


def first_call_seconds():
    """Batch-kernel first call in fresh processes: with an empty numba cache (compile), then with it filled."""
    seconds = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _FIRST_CELL], env=env, capture_output=True, text=True,
                                 check=True)
            seconds.append(float(out.stdout))
    print(f"batch kernel first call in a fresh process: cold cache {seconds[0]:.1f} s, warm cache {seconds[1]:.2f} s")


def full_grid(workers):
    start = time.perf_counter()
    result = geomln.estimate_unselectable(
        range(3, 61),
        range(3, 16),
        trials=100,
        normalization=["none", "layernorm"],
        seed=0,
        workers=workers,
        progress=False,
    )
    wall = time.perf_counter() - start
    timings = result.provenance["timings"]
    inside = float(result.column("seconds").sum())
    sets = int(result.column("trials").sum())
    print(f"full grid: {len(result)} cells, {sets:,} key sets, {timings['workers_used']} worker(s)")
    print(f"  wall time                 {wall:8.1f} s   (target < 60 s)")
    print(f"  warm-up (summed)          {timings['warmup_seconds']:8.1f} s")
    print(f"  inside cells (summed)     {inside:8.1f} s   = {inside / sets * 1e3:.3f} ms per key set")
    print(
        f"  pool start-up, pickling, checkpoints, idle: {wall * timings['workers_used'] - inside:.1f} "
        "worker-seconds"
    )
    return result, wall


def per_set_costs(rng, cells_count=60):
    """Per-set CPU cost in this process on cells drawn like the grid's, 100 trials each: the batch path the
    grid uses (one numba call per cell and normalization) vs one ``selectable_keys`` call per set.
    """
    cold = cells.warmup()
    selectable_keys(rng.standard_normal((40, 3)))
    print(f"  batch kernel warm-up in this process (numba cache load): {cold:.2f} s")
    shapes = [(int(rng.integers(3, 61)), int(rng.integers(3, 16))) for _ in range(cells_count)]
    data = [
        cells.normalize(norm, rng.standard_normal((100 * n, d))).reshape(100, n, d)
        for n, d in shapes
        for norm in ("none", "layernorm")
    ]
    sets = 100 * len(data)
    cpu = time.process_time()
    batch = [count_unselectable(key_sets, 1e-9) for key_sets in data]
    batch_cpu = (time.process_time() - cpu) / sets
    cpu = time.process_time()
    single = [[selectable_keys(keys).n_unselectable for keys in key_sets] for key_sets in data]
    single_cpu = (time.process_time() - cpu) / sets
    assert all(np.array_equal(b, s) for b, s in zip(batch, single, strict=True))
    print(
        f"  on {sets} grid-like sets (none + layernorm; same counts): batch path {batch_cpu * 1e3:.3f} ms CPU "
        f"per set, selectable_keys per set {single_cpu * 1e3:.3f} ms ({single_cpu / batch_cpu:.0f}x)"
    )


def baseline(cells_count, trials, rng, grid_sets, wall, as_run_sets):
    all_cells = [(n, d, norm) for n in range(3, 61) for d in range(3, 16) for norm in ("none", "layernorm")]
    picked = [all_cells[i] for i in rng.choice(len(all_cells), size=cells_count, replace=False)]
    ours = theirs = as_run = 0.0  # CPU seconds in this process; the pooled run in wall seconds
    agree = total = run_sets = 0
    for n, d, norm in sorted(picked):
        sample_rng = np.random.default_rng(cells.cell_seed(0, "gaussian", n, d))
        key_sets = cells.normalize(norm, sample_rng.standard_normal((trials * n, d))).reshape(trials, n, d)
        start = time.process_time()
        mine = count_unselectable(key_sets, 1e-9)  # as in the grid: the cell's trials in one call
        ours += time.process_time() - start
        for trial, keys in enumerate(key_sets):
            start = time.process_time()
            published = published_unselectable(keys)
            theirs += time.process_time() - start
            agree += mine[trial] == published
            total += 1
            if as_run_sets and total % max(1, cells_count * trials // as_run_sets) == 0:
                start = time.perf_counter()
                agree_run = published_unselectable_as_run(keys) == published
                as_run += time.perf_counter() - start
                run_sets += 1
                assert agree_run
    print(f"published pipeline on {cells_count} random cells x {trials} sets ({total} sets, same keys):")
    print(f"  geomln (batch path) {ours / total * 1e3:9.3f} ms CPU per set")
    print(
        f"  published, in process {theirs / total * 1e3:9.3f} ms CPU per set "
        f"(same unselectable count on {agree}/{total}) -> {theirs / ours:.0f}x per set"
    )
    lean = theirs / total * grid_sets
    print(f"  extrapolated to the grid: {lean:,.0f} s on one core ({lean / 2:,.0f} s on 2 cores)")
    if run_sets:
        pooled = as_run / run_sets
        print(
            f"  published, as run (a process pool per set; {run_sets} sets spread over the sample, wall): "
            f"{pooled * 1e3:.1f} ms per set -> {pooled * grid_sets / 3600:.1f} h for the grid on one core, "
            f"{pooled / (ours / total):.0f}x per set"
        )
    if wall is None:
        return
    print(f"  vs this run's full grid wall time (2 cores each; target >= 100x): in process {lean / 2 / wall:.0f}x",
          end="")
    print(f", as run {pooled * grid_sets / 2 / wall:.0f}x" if run_sets else "")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-cells", type=int, default=120)
    parser.add_argument("--baseline-trials", type=int, default=3)
    parser.add_argument("--as-run-sets", type=int, default=12, help="sets timed with a process pool per set")
    parser.add_argument("--skip-grid", action="store_true", help="only the per-set comparison")
    parser.add_argument("--no-compile", action="store_true", help="skip the cold/warm first-call timing")
    args = parser.parse_args()
    if not args.no_compile:
        first_call_seconds()
    rng = np.random.default_rng(2023)
    wall = None
    if not args.skip_grid:
        _, wall = full_grid(args.workers)
    per_set_costs(rng)
    baseline(args.baseline_cells, args.baseline_trials, rng, 150_800, wall, args.as_run_sets)


if __name__ == "__main__":
    main()
