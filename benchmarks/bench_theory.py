"""Timing of the exact Gaussian theory (geomln.unselectable_fraction_gaussian) on typical grids.

Run: ``python benchmarks/bench_theory.py [--large]``. Nothing here is compiled (pure NumPy/SciPy), so
"first call" differs from "steady state" only by the per-process cache of internal angles.
"""

import argparse
import time

import numpy as np

from geomln import theory


def timed(label, n, d, repeats=3):
    theory._log_internal_angle.cache_clear()
    start = time.perf_counter()
    values = theory.unselectable_fraction_gaussian(n, d)
    first = time.perf_counter() - start
    steady = []
    for _ in range(repeats):
        start = time.perf_counter()
        theory.unselectable_fraction_gaussian(n, d)
        steady.append(time.perf_counter() - start)
    cells = np.size(values)
    best = min(steady)
    print(
        f"{label:<42} {cells:>7} cells  first {first * 1e3:9.1f} ms  steady {best * 1e3:9.1f} ms"
        f"  ({best / cells * 1e3:.3f} ms/cell)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", action="store_true", help="also time n = 2..2000 x d = 1..30")
    args = parser.parse_args()
    timed("paper grid n = 3..60, d = 3..15", np.arange(3, 61)[:, None], np.arange(3, 16))
    timed("single cell n = 60, d = 8", 60, 8)
    timed("n = 100,000, d = 1..30", 100_000, np.arange(1, 31))
    timed("n = 10**9, d = 1..30", 10**9, np.arange(1, 31))
    timed(
        "n = 10..100,000 (log grid), d = 2..30",
        np.unique(np.geomspace(10, 1e5, 50).astype(int))[:, None],
        np.arange(2, 31),
    )
    if args.large:
        timed("n = 2..2000, d = 1..30", np.arange(2, 2001)[:, None], np.arange(1, 31), repeats=1)


if __name__ == "__main__":
    main()
