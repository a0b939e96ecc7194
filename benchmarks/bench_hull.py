"""Benchmark geomln.convex_hull against scipy.spatial.ConvexHull (Qhull) on Gaussian points in 2-D and 3-D.

Both run side by side in one process on the same inputs; the table gives medians over repeats, the
ratio Qhull / geomln (> 1 means geomln is faster) and whether the vertex sets agree. Numba compile
time is measured separately in fresh subprocesses: with an empty cache directory (cold) and again
with the cache it filled (warm).

    python benchmarks/bench_hull.py                 # n = 1e3 .. 1e6
    python benchmarks/bench_hull.py --max-exp 5 --repeats 3
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy.spatial import ConvexHull as QhullHull

_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
import geomln
t1 = time.perf_counter()
rng = np.random.default_rng(0)
out = []
for d in (2, 3):
    x = rng.standard_normal((200, d))
    t = time.perf_counter(); geomln.convex_hull(x); first = time.perf_counter() - t
    t = time.perf_counter(); geomln.convex_hull(x); again = time.perf_counter() - t
    out.append(f"{d} {first:.4f} {again:.6f}")
print(f"import {t1 - t0:.4f}")
print("\\n".join(out))
"""


def first_call_times(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True
    )
    lines = out.stdout.split("\n")
    result = {"import": float(lines[0].split()[1])}
    for line in lines[1:]:
        if line.strip():
            d, first, again = line.split()
            result[int(d)] = (float(first), float(again))
    return result


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-exp", type=int, default=3)
    parser.add_argument("--max-exp", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-compile", action="store_true", help="do not measure compile times")
    args = parser.parse_args(argv)

    import geomln

    if not args.skip_compile:
        with tempfile.TemporaryDirectory() as cache:
            cold = first_call_times(cache)
            warm = first_call_times(cache)
        print("numba compile time (first call on n=200, in a fresh process; steady-state call in brackets)")
        print("| d | cold cache | warm cache |")
        print("|---|---|---|")
        for d in (2, 3):
            print(
                f"| {d} | {cold[d][0]:.2f} s ({cold[d][1] * 1e3:.2f} ms) "
                f"| {warm[d][0]:.3f} s ({warm[d][1] * 1e3:.2f} ms) |"
            )
        print(f"(import geomln: {cold['import']:.2f} s cold, {warm['import']:.2f} s warm)\n")

    rng = np.random.default_rng(args.seed)
    geomln.convex_hull(rng.standard_normal((100, 2)))  # compile or load from cache outside the timings
    geomln.convex_hull(rng.standard_normal((100, 3)))
    print(f"Gaussian points, median of >= {args.repeats} runs (up to 200 for small n), one thread")
    print("| d | n | vertices | geomln | Qhull (scipy) | Qhull / geomln | same vertices | volume rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for d in (2, 3):
        for e in range(args.min_exp, args.max_exp + 1):
            n = 10**e
            x = rng.standard_normal((n, d))
            # small inputs run in well under a millisecond: more repeats keep the median stable
            reps = max(args.repeats, min(200, 10**5 // n)) if n < 10**6 else max(3, args.repeats // 2)
            t_g, hull = median_time(lambda x=x: geomln.convex_hull(x), reps)
            t_q, qh = median_time(lambda x=x: QhullHull(x), reps)
            same = np.array_equal(hull.vertex_indices, np.sort(qh.vertices))
            rel = abs(hull.volume - qh.volume) / qh.volume
            print(
                f"| {d} | {n:,} | {hull.n_vertices} | {t_g * 1e3:.2f} ms | {t_q * 1e3:.2f} ms "
                f"| {t_q / t_g:.2f} | {'yes' if same else 'NO'} | {rel:.1e} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
