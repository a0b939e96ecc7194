"""Full Figure 1c/1d grid with geomln.estimate_unselectable, side by side with the published pipeline.

Run: ``python benchmarks/bench_montecarlo.py [--workers 2] [--baseline-cells 24] [--baseline-trials 2]``.

1. The full default grid (n = 3..60, d = 3..15, 100 trials, normalizations none and layernorm:
   150,800 key sets) through ``geomln.estimate_unselectable``: wall time, warm-up, time inside cells,
   and the split between the engine (``selectable_keys``) and everything else.
2. The published pipeline (tech-srl/layer_norm_expressivity_role, ``unselectable/stollen_prob_search.py``,
   adopted from andreasgrv/unargmaxable): for every key, "braid reflection" (reflect a query across the
   hyperplane that swaps the key with the current argmax, patience 100), then, if that fails, one
   Chebyshev-ball LP per key (Gurobi there; HiGHS via scipy here, same formulation and box [-100, 100]).
   It runs in this process, one set at a time (the original also opens a process pool per key set, which
   only adds overhead), on a uniform random sample of the grid's cells with the same keys as the engine;
   its total is extrapolated to the grid and compared with the engine on the same sets.

``benchmarks/baselines.py`` is used for the baseline when it exists (``braid_lp_unselectable``).
"""

import argparse
import os
import sys
import time

import numpy as np
from scipy.optimize import linprog

import geomln
from geomln import _montecarlo_cells as cells
from geomln.selectability import selectable_keys

LB, UB, EPSILON, PATIENCE = -100.0, 100.0, 1e-8, 100


def _braid_reflection(keys, index):
    """The published heuristic: True if a query making `index` the argmax was found (within the box)."""
    point = keys[index].copy()
    winner = int(np.argmax(keys @ point))
    for _ in range(PATIENCE):
        if winner == index:
            break
        normal = keys[index] - keys[winner]
        normal /= np.linalg.norm(normal)
        point = point - 2.0 * (normal @ point) * normal
        winner = int(np.argmax(keys @ point))
    return winner == index and bool(np.all((point >= LB) & (point <= UB)))


def _chebyshev_lp(keys, index):
    """The published exact test: is there x in the box with (k_j - k_i).x + |k_j - k_i| r <= 0, r >= eps?"""
    n, d = keys.shape
    braid = np.delete(keys - keys[index], index, axis=0)
    cheby = np.linalg.norm(braid, axis=1, keepdims=True)
    result = linprog(
        np.concatenate([np.zeros(d), [-1.0]]),
        A_ub=np.hstack([braid, cheby]),
        b_ub=np.zeros(n - 1),
        bounds=[(LB, UB)] * d + [(EPSILON, None)],
        method="highs",
        options={"primal_feasibility_tolerance": EPSILON * 0.1},  # the original's Gurobi FeasibilityTol
    )
    return result.status == 0  # optimal: a query exists, the key is selectable


def published_unselectable(keys):
    """Number of keys the published pipeline calls bounded (unselectable)."""
    n, d = keys.shape
    if n < d + 1:  # as in the original: too few keys for one to lie inside the others' hull
        return 0
    return sum(not (_braid_reflection(keys, i) or _chebyshev_lp(keys, i)) for i in range(n))


_SHARED = {}


def _pooled_key(index):
    keys = _SHARED["keys"]
    return not (_braid_reflection(keys, index) or _chebyshev_lp(keys, index))


def published_unselectable_as_run(keys):
    """As the published code runs it: a fresh fork pool of cpu_count - 1 processes per key set."""
    import multiprocessing

    n, d = keys.shape
    if n < d + 1:
        return 0
    _SHARED["keys"] = keys  # a module global inherited by the forked workers, as in the original
    with multiprocessing.get_context("fork").Pool(processes=max(1, (os.cpu_count() or 2) - 1)) as pool:
        return sum(pool.imap_unordered(_pooled_key, range(n)))


try:  # another helper's faithful version, when it exists
    sys.path.insert(0, os.path.dirname(__file__))
    from baselines import braid_lp_unselectable as published_unselectable  # noqa: F811
except ImportError:
    pass


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


def engine_split(rng, sets=1500):
    """Per-set cost in this process on sets drawn like the grid's: engine (wall and CPU) vs the rest.

    CPU time is what the grid costs on idle cores; wall time also counts waiting for a shared CPU.
    """
    cold = cells.warmup()
    print(f"  engine warm-up in this process (numba cache load): {cold:.2f} s")
    raw = [rng.standard_normal((int(rng.integers(3, 61)), int(rng.integers(3, 16)))) for _ in range(sets)]
    start = time.perf_counter()
    data = [keys for x in raw for keys in (cells.normalize("none", x), cells.normalize("layernorm", x))]
    rest = (time.perf_counter() - start) / len(data)
    wall, cpu = time.perf_counter(), time.process_time()
    for keys in data:
        selectable_keys(keys)
    wall, cpu = (time.perf_counter() - wall) / len(data), (time.process_time() - cpu) / len(data)
    print(
        f"  engine alone on {len(data)} grid-like sets (none + layernorm): wall {wall * 1e3:.3f} ms, "
        f"CPU {cpu * 1e3:.3f} ms per set; normalization {rest * 1e3:.3f} ms per set"
    )
    print(f"  -> grid: {cpu * 150_800:.0f} CPU-s of engine time, {cpu * 150_800 / 2:.0f} s on 2 idle cores")
    return cpu


def baseline(cells_count, trials, rng, grid_sets, wall, as_run_sets):
    all_cells = [(n, d, norm) for n in range(3, 61) for d in range(3, 16) for norm in ("none", "layernorm")]
    picked = [all_cells[i] for i in rng.choice(len(all_cells), size=cells_count, replace=False)]
    ours = theirs = as_run = 0.0  # CPU seconds in this process; the pooled run in wall seconds
    agree = total = run_sets = 0
    for n, d, norm in sorted(picked):
        sample_rng = np.random.default_rng(cells.cell_seed(0, "gaussian", n, d))
        for _ in range(trials):
            keys = cells.normalize(norm, sample_rng.standard_normal((n, d)))
            start = time.process_time()
            mine = selectable_keys(keys).n_unselectable
            ours += time.process_time() - start
            start = time.process_time()
            published = published_unselectable(keys)
            theirs += time.process_time() - start
            agree += mine == published
            total += 1
            if as_run_sets and total % max(1, cells_count * trials // as_run_sets) == 0:
                start = time.perf_counter()
                agree_run = published_unselectable_as_run(keys) == published
                as_run += time.perf_counter() - start
                run_sets += 1
                assert agree_run
    print(f"published pipeline on {cells_count} random cells x {trials} sets ({total} sets, same keys):")
    print(f"  engine    {ours / total * 1e3:9.3f} ms CPU per set")
    print(
        f"  published {theirs / total * 1e3:9.3f} ms CPU per set (same unselectable count on {agree}/{total})"
    )
    print(f"  per-set speed-up on the same sets: {theirs / ours:.0f}x")
    if run_sets:
        print(
            f"  published, as run (a process pool per set; {run_sets} sets spread over the sample, wall): "
            f"{as_run / run_sets * 1e3:.1f} ms per set -> {as_run / run_sets * grid_sets / 3600:.1f} h "
            "for the grid on one core"
        )
        print(f"  per-set speed-up vs the pipeline as run: {as_run / run_sets / (ours / total):.0f}x")
    extrapolated = theirs / total * grid_sets
    print(
        f"  published pipeline extrapolated to the grid: {extrapolated:,.0f} s on one core "
        f"({extrapolated / 2 / 3600:.2f} h on 2 cores)"
    )
    if wall is None:
        return
    print(
        f"  vs this run's full grid wall time: {extrapolated / 2 / wall:.0f}x (2 cores each; target >= 100x)"
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-cells", type=int, default=24)
    parser.add_argument("--baseline-trials", type=int, default=2)
    parser.add_argument("--as-run-sets", type=int, default=12, help="sets timed with a process pool per set")
    parser.add_argument("--skip-grid", action="store_true", help="only the per-set comparison")
    args = parser.parse_args()
    rng = np.random.default_rng(2023)
    wall = None
    if not args.skip_grid:
        _, wall = full_grid(args.workers)
    engine_split(rng)
    baseline(args.baseline_cells, args.baseline_trials, rng, 150_800, wall, args.as_run_sets)


if __name__ == "__main__":
    main()
