"""Benchmark causal_last_positions against selectable_keys on the same Gaussian keys.

Run from the repository root::

    python benchmarks/bench_causal.py            # all rows (several minutes on a busy 2-core machine)
    python benchmarks/bench_causal.py --quick    # n <= 8,192 only

Both are measured side by side in one process (medians of `--repeats` calls, one call for n > 8,192);
``causal_last_positions`` computes its own ``selectable_keys`` call, so the ratio is at least 1. Writes the
table to benchmarks/results/causal.md (atomically) unless ``--output -``.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from bench_attention import timed, write_result

import geomln
from geomln.models.causal import causal_last_positions

REPO = Path(__file__).resolve().parent.parent
CASES = [(2048, 8), (2048, 16), (2048, 64), (8192, 8), (8192, 16), (8192, 128), (32768, 8), (32768, 128)]


def rows(repeats, quick):
    lines = ["| keys | causal_last_positions s | selectable_keys s | ratio |", "|---|---|---|---|"]
    for n, d in CASES:
        if quick and n > 8192:
            continue
        keys = np.random.default_rng(n + d).normal(size=(n, d))
        count = 1 if n > 8192 else repeats
        plain = timed(lambda keys=keys: geomln.selectable_keys(keys), count)[0]
        causal = timed(lambda keys=keys: causal_last_positions(keys), count)[0]
        lines.append(f"| Gaussian n = {n:,}, d = {d} | {causal:.3f} | {plain:.3f} | {causal / plain:.2f}x |")
        print(lines[-1], flush=True)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only n <= 8,192")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "causal.md"))
    args = parser.parse_args(argv)
    causal_last_positions(np.random.default_rng(1).normal(size=(200, 4)))  # compile / load the kernels
    load = open("/proc/loadavg").read().split()[0] if Path("/proc/loadavg").exists() else "?"
    command = "python benchmarks/bench_causal.py" + (" --quick" if args.quick else "")
    text = "\n".join([
        f"# causal_last_positions vs selectable_keys (`{command}`)", "",
        f"{os.cpu_count()} cores, numba threads {geomln._jit.get_num_threads()}, load average {load} at the "
        f"start; medians of {args.repeats} (one call for n > 8,192), warm kernels.", "",
        *rows(args.repeats, args.quick), ""])
    write_result(text, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
