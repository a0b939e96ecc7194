"""Benchmark max_attention: the numba kernel vs the NumPy solver it replaced, on the same keys.

Run from the repository root::

    python benchmarks/bench_attention.py            # a few minutes on a busy 2-core machine

Everything is measured side by side in one process; times are medians of `--repeats` calls (wall and CPU).
The old solver (tests/naive_attention.py) is timed on a few slices / keys and extrapolated linearly (marked).
Cold (numba cache deleted) and warm-cache first calls are measured in fresh subprocesses. Writes the table to
benchmarks/results/attention.md (atomically) unless ``--output -``.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from naive_attention import _solve_block, _spread, naive_max_attention  # noqa: E402

import geomln  # noqa: E402

FIRST_CALL = "import time, geomln; t = time.perf_counter(); geomln.max_attention([[0.0, 1.0], [1.0, 0.0]], " \
             "query_norm=1.0, progress=False); print(time.perf_counter() - t)"


def timed(function, repeats):
    """Median wall and CPU seconds of `repeats` calls, and the last result."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return float(np.median(walls)), float(np.median(cpus)), result


def first_call(cold):
    if cold:
        for path in (REPO / "geomln" / "models" / "__pycache__").glob("_attention_kernels*.nb[ic]"):
            path.unlink()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    output = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True)
    return float(output.stdout.split()[-1])


def old_seconds_for_rows(keys, rows, radius):
    """Wall seconds of the NumPy solver on `rows` of `keys` (all keys enter the objective)."""
    n, d = keys.shape
    scale = 1.0 / np.sqrt(d)
    tol = max(1e-9, 1000 * np.finfo(float).eps * radius * scale * _spread(keys, np.zeros(n)))
    start = time.perf_counter()
    _solve_block(keys, np.zeros(n), rows, radius, scale, tol)
    return time.perf_counter() - start


def attention_rows(repeats):
    lines = ["| case | old (NumPy) s | new wall s | new CPU s | speed-up | agree |", "|---|---|---|---|---|---|"]
    slices = [np.ascontiguousarray(s.matrix) for s in geomln.load_keys(REPO / "data" / "minilm_keys.npz").slices()]
    new_wall, new_cpu, results = timed(lambda: [geomln.max_attention(m, query_norm=8.0, progress=False)
                                                for m in slices], repeats)
    sample = range(0, len(slices), max(1, len(slices) // 4))[:4]  # slices of layers 0, 1, 3, 4
    start = time.perf_counter()
    olds = [naive_max_attention(slices[index], query_norm=8.0) for index in sample]
    old = (time.perf_counter() - start) * len(slices) / len(sample)
    agree = all(_consistent(results[index], o) for index, o in zip(sample, olds, strict=True))
    lines.append(f"| MiniLM file, {len(slices)} slices 80 x 32, R = 8 | {old:.1f} (extrapolated from "
                 f"{len(sample)}) | {new_wall:.3f} | {new_cpu:.3f} | {old / new_wall:.0f}x | {agree} |")
    keys = np.random.default_rng(0).normal(size=(1024, 64))
    new_wall, new_cpu, _ = timed(lambda: geomln.max_attention(keys, query_norm=8.0, progress=False), repeats)
    rows = np.arange(64)
    old = old_seconds_for_rows(keys, rows, 8.0) * keys.shape[0] / rows.size
    lines.append(f"| Gaussian n = 1,024, d = 64, R = 8 | {old:.1f} (extrapolated from 64 keys) | {new_wall:.3f} | "
                 f"{new_cpu:.3f} | {old / new_wall:.0f}x | |")
    wall, cpu, _ = timed(lambda: geomln.analyze_keys(REPO / "data" / "minilm_keys.npz", query_norm=8.0), repeats)
    lines.append(f"| analyze_keys(minilm_keys.npz, query_norm=8), whole file | | {wall:.3f} | {cpu:.3f} | | |")
    return lines


def _consistent(new, old):
    return bool(np.all(new.weights <= old.upper_bounds * (1 + 1e-12))
                and np.all(old.weights <= new.upper_bounds * (1 + 1e-12)))


def write_result(text, output):
    """Write `text` to `output` atomically (a temporary file in its folder, then a rename), or stdout for "-"."""
    if output == "-":
        sys.stdout.write(text)
        return
    handle, temporary = tempfile.mkstemp(dir=Path(output).parent, suffix=".md")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temporary, output)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "attention.md"))
    args = parser.parse_args(argv)
    cold, warm = first_call(cold=True), first_call(cold=False)
    geomln.max_attention([[0.0], [1.0]], query_norm=1.0, progress=False)
    geomln.selectable_keys(np.random.default_rng(1).normal(size=(50, 3)))
    load = open("/proc/loadavg").read().split()[0] if Path("/proc/loadavg").exists() else "?"
    command = "python benchmarks/bench_attention.py"
    text = "\n".join([
        f"# max_attention (`{command}`; causal analysis: benchmarks/bench_causal.py)", "",
        f"{os.cpu_count()} cores, numba threads {geomln._jit.get_num_threads()}, load average {load} at the "
        f"start; medians of {args.repeats}. max_attention first call in a fresh process: cold (compiling) "
        f"{cold:.1f} s, warm cache {warm:.2f} s.", "",
        *attention_rows(args.repeats), ""])
    if args.output != "-":
        print(text)
    write_result(text, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
