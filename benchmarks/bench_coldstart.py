"""README command 1 on a cold and on a warm numba cache, as fresh processes.

Run: ``python benchmarks/bench_coldstart.py [--repeats 3] [--output benchmarks/results/coldstart.md]``.

Each repeat points ``NUMBA_CACHE_DIR`` at a new empty folder and runs the two parts of command 1 as a new
user would, ``geomln montecarlo --out TMP`` (its defaults: the full Figure 1c/1d grid, all cores, plots) and
``geomln analyze data/minilm_keys.npz --queries queries``: first on the empty cache (cold; analyze then finds
the kernels montecarlo compiled, as in command 1), then again on the cache they filled (warm). Wall seconds and
CPU seconds (the command with all its worker processes: this process is their child subreaper, so orphaned
workers are reaped here and counted) are reported as medians over the repeats. It checks that the cache
really went to ``NUMBA_CACHE_DIR`` (numba otherwise writes next to the sources, in ``__pycache__``).

Then, once per command in one process (``--workers 1``) on an empty cache, numba's compile events give which
kernels compile, with how many specializations, and the seconds of each entry kernel (nested helpers
included).
"""

import argparse
import ctypes
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36

_PROBE = """
import sys, time
import numba.core.event as event

records = []


class Compiles(event.Listener):
    def __init__(self):
        self.stack = []

    def on_start(self, ev):
        self.stack.append((time.perf_counter(), time.process_time()))

    def on_end(self, ev):
        wall, cpu = self.stack.pop()
        func = ev.data["dispatcher"].py_func
        records.append((len(self.stack), func.__module__ + "." + func.__qualname__,
                        time.perf_counter() - wall, time.process_time() - cpu))


event.register("numba:compile", Compiles())
from geomln.cli import main

code = main(sys.argv[1:])
for depth, name, wall, cpu in records:
    if name.startswith("geomln."):
        print(depth, name, wall, cpu, file=sys.stderr)
sys.exit(code)
"""


def commands(out):
    """The two parts of README command 1, as argument lists for ``python -m geomln``."""
    return {
        "montecarlo": ["montecarlo", "--out", str(out)],
        "analyze": ["analyze", "data/minilm_keys.npz", "--queries", "queries"],
    }


def reap_orphans():
    """Wait for every remaining child (orphaned grandchildren land here), so their CPU time is counted."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def timed_run(argv, env):
    """Run ``python -m geomln argv``; return wall and CPU seconds (its whole process tree) and stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "geomln", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    reap_orphans()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"`geomln {' '.join(argv)}` failed ({done.returncode}):\n{done.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stderr


def index_files(folder):
    return {path for path in Path(folder).rglob("*.nbi")}


def measure(repeats, env):
    """Cold then warm runs of both parts, `repeats` times; return {(part, cache): [(wall, cpu), ...]}."""
    times = {}
    source_indexes = index_files(ROOT / "geomln")
    written = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            run_env = dict(env, NUMBA_CACHE_DIR=cache)
            for state in ("cold", "warm"):
                for part, argv in commands(Path(out) / state).items():
                    wall, cpu, _ = timed_run(argv, run_env)
                    times.setdefault((part, state), []).append((wall, cpu))
            written.append(len(index_files(cache)))
    leaked = index_files(ROOT / "geomln") - source_indexes
    return times, written, leaked


def compile_profile(env):
    """Per command, in one process on an empty cache: {part: [(depth, kernel, wall, cpu), ...]}."""
    profile = {}
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        run_env = dict(env, NUMBA_CACHE_DIR=cache)
        for part, argv in commands(Path(out) / "mc").items():
            argv = [*argv, "--workers", "1"] if part == "montecarlo" else argv
            done = subprocess.run([sys.executable, "-c", _PROBE, *argv], cwd=ROOT, env=run_env,
                                  capture_output=True, text=True, check=True)
            rows = [line.split() for line in done.stderr.splitlines() if line[:1].isdigit() and " geomln." in line]
            profile[part] = [(int(d), name, float(w), float(c)) for d, name, w, c in rows]
    return profile


def report(times, written, leaked, profile, repeats, load):
    lines = [
        f"README command 1 in fresh processes, {repeats} repeat(s); medians (wall / CPU seconds, CPU = the "
        "command and all its worker processes)",
        "",
        "| part | cold cache wall | cold cache CPU | warm cache wall | warm cache CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    totals = {}
    for part in ("montecarlo", "analyze"):
        cells = []
        for state in ("cold", "warm"):
            runs = times[part, state]
            for k in (0, 1):
                value = statistics.median(run[k] for run in runs)
                totals[state, k] = totals.get((state, k), 0.0) + value
                cells.append(f"{value:.1f} s")
        lines.append(f"| `geomln {' '.join(commands('TMP')[part])}` | " + " | ".join(cells) + " |")
    lines.append("| command 1 without the install | " + " | ".join(
        f"{totals[state, k]:.1f} s" for state in ("cold", "warm") for k in (0, 1)) + " |")
    spread = ", ".join(f"{part} {state} wall {min(r[0] for r in runs):.1f}-{max(r[0] for r in runs):.1f} s"
                       for (part, state), runs in times.items())
    lines += [
        "",
        f"Range over the repeats: {spread}.",
        f"Load average (1 min) at start and end: {load[0]:.1f}, {load[1]:.1f} on {os.cpu_count()} cores.",
        f"Cache isolation: {min(written)}-{max(written)} index files (*.nbi) written to NUMBA_CACHE_DIR per "
        f"repeat, {len(leaked)} new ones next to the sources.",
        "",
        "Kernels compiled on an empty cache, one process per command (montecarlo with --workers 1); seconds of "
        "each entry kernel include its nested helpers:",
        "",
        "| command | entry kernel | wall | CPU | helpers compiled (specializations) |",
        "|---|---|---:|---:|---|",
    ]
    for part, rows in profile.items():
        counts = {}
        for _, name, _, _ in rows:
            counts[name] = counts.get(name, 0) + 1
        helpers = ", ".join(f"{name.rsplit('.', 1)[1]} ({count})" for name, count in counts.items()
                            if all(r[1] != name or r[0] > 0 for r in rows))
        entries = [row for row in rows if row[0] == 0]
        for k, (_, name, wall, cpu) in enumerate(entries):
            lines.append(f"| {part if k == 0 else ''} | `{name.removeprefix('geomln.')}` | {wall:.1f} s | "
                         f"{cpu:.1f} s | {helpers if k == 0 else ''} |")
        lines.append(f"| {part} | total | {sum(r[2] for r in entries):.1f} s | {sum(r[3] for r in entries):.1f} s "
                     "| |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-profile", action="store_true", help="skip the per-kernel compile table")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    args = parser.parse_args()
    if hasattr(ctypes.CDLL(None), "prctl"):
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("NUMBA_CACHE_DIR", None)
    load = [os.getloadavg()[0]]
    started = time.perf_counter()
    times, written, leaked = measure(args.repeats, env)
    profile = {} if args.no_profile else compile_profile(env)
    load.append(os.getloadavg()[0])
    body = report(times, written, leaked, profile, args.repeats, load)
    print(body)
    if args.output:
        header = (
            "# Cold start benchmark\n\n"
            f"Command: `python benchmarks/bench_coldstart.py --repeats {args.repeats} --output {args.output}`\n\n"
            f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {time.perf_counter() - started:.0f} s; "
            f"python {platform.python_version()}, {platform.platform()}.\n\n"
        )
        Path(args.output).write_text(header + body + "\n")


if __name__ == "__main__":
    main()
