"""Dask executor vs the local process pool for geomln.estimate_unselectable, on this machine.

Run: ``python benchmarks/bench_dask.py [--trials 20] [--large-trials 40] [--skip-large]``
(``--trials 100`` is the full default grid of ``geomln montecarlo``: about 4 minutes here).

1. Overhead on the default grid (n = 3..60, d = 3..15, normalizations none and layernorm), 2 workers:
   local process pool (``workers=2``), ``executor="dask"`` starting its own LocalCluster (start-up, warm-up
   and shut-down included, as ``geomln montecarlo --executor dask`` does), and ``executor=client`` on an
   already running, already warm LocalCluster (the per-task cost of Dask alone). With ``--trials 20``
   (the default here, 30,160 key sets) the grid is the default one with a fifth of the trials.
2. Scaling on a larger grid (n = 200..1000 step 200, d = 4, 8, 16, no normalization) on a running
   LocalCluster of 1 worker, then of 2 workers.

Every table is compared with the local one (all columns but ``seconds``): they must be identical. The
load average is printed, because the machine is shared: wall times are only comparable within a run.
"""

import argparse
import os
import time

import distributed

import geomln
from geomln.montecarlo._cells import warm_for_dask

DEFAULT_GRID = {"n": range(3, 61), "d": range(3, 16), "normalization": ["none", "layernorm"]}
LARGE_GRID = {"n": range(200, 1001, 200), "d": [4, 8, 16], "normalization": "none"}


def _table(result):
    return [repr(tuple(row)[:-1]) for row in result]


def _cluster(workers):
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    )
    return cluster, distributed.Client(cluster, set_as_default=False)


def _run(label, grid, **options):
    start = time.perf_counter()
    result = geomln.estimate_unselectable(**grid, progress=False, **options)
    wall = time.perf_counter() - start
    timings = result.provenance["timings"]
    inside = sum(row.seconds for row in result)
    tasks = result.provenance.get("executor", {}).get("tasks", "-")
    print(
        f"  {label:<44} {wall:7.1f} s wall  {timings['warmup_seconds']:5.1f} s warm-up (summed)  "
        f"{inside:7.1f} s inside cells  tasks {tasks}"
    )
    return result, wall


def overhead(trials):
    grid = {**DEFAULT_GRID, "trials": trials, "seed": 0}
    sets = 58 * 13 * 2 * trials
    print(f"1. default grid, {trials} trials ({sets:,} key sets), 2 workers; load {os.getloadavg()[0]:.1f}")
    local, local_wall = _run("local process pool (workers=2)", grid, workers=2)
    own, own_wall = _run('executor="dask", own LocalCluster', grid, workers=2, executor="dask")
    start = time.perf_counter()
    cluster, client = _cluster(2)
    client.run(geomln.executors.warm_worker, warm_for_dask)
    ready = time.perf_counter() - start
    try:
        warm, warm_wall = _run("executor=client (running, warm cluster)", grid, executor=client)
    finally:
        client.close()
        cluster.close()
    assert _table(own) == _table(local) and _table(warm) == _table(local), "tables differ"
    print(f"  starting and warming a 2-worker LocalCluster: {ready:.1f} s")
    print(
        f"  overhead vs local: {own_wall - local_wall:+.1f} s with its own cluster "
        f"({own_wall / local_wall:.2f}x), {warm_wall - local_wall:+.1f} s on a running cluster "
        f"({warm_wall / local_wall:.2f}x); tables identical"
    )


def scaling(trials):
    grid = {**LARGE_GRID, "trials": trials, "seed": 0}
    cells = 5 * 3
    print(f"2. larger grid: n = 200..1000 step 200, d = 4, 8, 16, {trials} trials ({cells * trials:,} key sets)")
    walls, tables = {}, {}
    for workers in (1, 2):
        cluster, client = _cluster(workers)
        client.run(geomln.executors.warm_worker, warm_for_dask)
        print(f"  load {os.getloadavg()[0]:.1f}")
        try:
            result, walls[workers] = _run(f"running LocalCluster, {workers} worker(s)", grid, executor=client)
            tables[workers] = _table(result)
        finally:
            client.close()
            cluster.close()
    assert tables[1] == tables[2], "tables differ"
    print(f"  speed-up 1 -> 2 workers: {walls[1] / walls[2]:.2f}x (ideal 2 on 2 idle cores); tables identical")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="trials of the default grid (100 = full)")
    parser.add_argument("--large-trials", type=int, default=40, help="trials of the larger grid")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    print(f"geomln {geomln.__version__}, dask.distributed {distributed.__version__}, {os.cpu_count()} cores")
    overhead(args.trials)
    if not args.skip_large:
        scaling(args.large_trials)


if __name__ == "__main__":
    main()
