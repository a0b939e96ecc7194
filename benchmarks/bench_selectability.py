"""Benchmark geomln.selectable_keys against the baselines in baselines.py, side by side, same inputs.

Run from the repository root::

    python benchmarks/bench_selectability.py                 # default cases (~10 min on 1 busy core)
    python benchmarks/bench_selectability.py --quick         # smaller subsets and fewer sets (smoke run)
    python benchmarks/bench_selectability.py --softmax       # also n=50,257, d=768 with bias (minutes)
    python benchmarks/bench_selectability.py --cases n1024_d8,n60_d8 --baselines a,d --threads 2
    python benchmarks/bench_selectability.py --cases n100000_d16 --baselines '' --no-compile   # one product row

Baselines: (a) the published method (braid heuristic + Chebyshev LP, HiGHS), (b) one membership LP per
key (HiGHS), (c) Qhull vertices, (d) cddlib redundancy removal; see baselines.py. Every verdict a baseline
returns is compared with geomln's and disagreements are printed loudly with a reproducer. Baselines too
slow for a whole case run on a seeded random subset of keys and their time is extrapolated linearly
(marked "extrapolated"). numba compile time is measured in fresh subprocesses: cold (after deleting
geomln's numba cache files) and warm-cache first call, separately from in-process steady state.
Every geomln row is also timed against one matrix product ``K V^T`` (n x h x d, V the h keys found
selectable, numpy's BLAS in row blocks of 2^23 entries, same process, same threads): about the least work that
certifies h vertices among n keys. The ratio geomln / product is reported per row (issue 17: within 3x).
Writes the table to benchmarks/results/selectability.md (atomically) unless ``--output -``.
"""

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = 20230516
BASELINE_NAMES = {
    "a": "(a) published: braid + Chebyshev LP",
    "b": "(b) membership LP per key",
    "c": "(c) Qhull vertices",
    "d": "(d) cddlib redundancy",
}
SINGLE_CALL_SECONDS = 5.0  # a geomln call slower than this is timed twice more: the median of the three calls
ONE_CALL_SECONDS = 60.0  # ... and one slower than this only once (marked "1 call")
PRODUCT_BLOCK = 1 << 23  # entries of one block of the reference product K V^T (64 MiB, as the engine's scan)


@dataclass
class Case:
    """One benchmark input: ``sets`` independent Gaussian key sets of shape (n, d) (and a bias)."""

    name: str
    n: int
    d: int
    plan: dict  # baseline letter -> "full" | int (subset size, extrapolated) | "skip: reason"
    sets: int = 1
    baseline_sets: int = 1
    std: float = 1.0
    bias: bool = False
    target: str = ""
    shape: str = "gaussian"  # or "circle" (evenly spaced on the unit circle), "sphere" (uniform on the unit sphere),
    # "circle_random" (random angles), "sphere_inside" (half on the sphere, half inside), "layer_norm" (LayerNorm'd
    # Gaussian rows), "outliers" (Gaussian with 5 keys scaled by 1e6), "clusters" (10 clusters at scales 1e-6..1e2),
    # "anisotropic" (Gaussian times the decaying scales ANISOTROPY ** t along axis t)
    quick_skip: bool = False  # a row that took minutes before issue 17: skipped by --quick (runnable by name)


ANISOTROPY = 0.8  # axis t of the anisotropic case has scale 0.8 ** t (condition number 1,000 at d = 32)


def qhull_skip(n, d):
    """Reason to skip Qhull where it would obviously exceed ~60 s (or many GB), else None."""
    if d >= 9:
        return "skip: Qhull in d >= 9 (60 keys in 15-D ran > 3 min and 5 GB here)"
    if d >= 7 and n > 2000:
        return "skip: Qhull at d = 8, n = 10,000 did not finish in 240 s here"
    return None


def make_cases(quick):
    """The case table; `quick` shrinks subsets and set counts."""
    q = (lambda full, small: small) if quick else (lambda full, small: full)
    cases = []
    for d in (3, 8, 15):
        plan = {"a": "full", "b": "full", "c": qhull_skip(60, d) or "full", "d": "full"}
        cases.append(
            Case(
                f"n60_d{d}",
                60,
                d,
                plan,
                sets=q(200, 30),
                baseline_sets=q(10, 3),
                target="median < 1 ms per set",
            )
        )
    cases.append(
        Case(
            "n1024_d8",
            1024,
            8,
            {"a": q("full", 100), "b": q("full", 100), "c": q("full", "skip: --quick"), "d": "full"},
            target=">= 300x vs (a), >= 50x vs (d)",
        )
    )
    cases.append(
        Case(
            "n10000_d8",
            10000,
            8,
            {"a": q(50, 10), "b": q(50, 10), "c": qhull_skip(10000, 8), "d": q(50, 10)},
            target="< 2 s",
        )
    )
    cases.append(
        Case(
            "n4096_d64",
            4096,
            64,
            {"a": q(200, 20), "b": q(10, 3), "c": qhull_skip(4096, 64), "d": q(5, 2)},
            target="< 1 s",
        )
    )
    cases.append(
        Case(
            "n4096_d128",
            4096,
            128,
            {"a": q(200, 20), "b": q(5, 2), "c": qhull_skip(4096, 128), "d": 1},
            target="< 1 s",
        )
    )
    for d in (2, 3, 4):
        cases.append(
            Case(
                f"n100000_d{d}",
                100_000,
                d,
                {"a": q(10, 3), "b": q(10, 3), "c": "full", "d": q(20, 5)},
                target="no slower than Qhull (c)",
            )
        )
    skip_product = "skip: matrix-product row (issue 17; per-key LPs would take hours)"
    no_baselines = {letter: skip_product for letter in "abcd"}
    for n, d in ((100_000, 8), (100_000, 16), (100_000, 32), (1_000_000, 8)):
        cases.append(Case(f"n{n}_d{d}", n, d, dict(no_baselines), target="< 20 s and <= 3x the product",
                          quick_skip=True))
    cases.append(Case("aniso_n5000_d32", 5000, 32, {**no_baselines, "a": q(50, 10)},
                      target="<= 3x the product", shape="anisotropic"))
    skip_lp = "skip: all-vertex case (Qhull is the reference)"
    for shape, d in (("circle", 2), ("sphere", 4)):
        for n in (10_000, 100_000):
            cases.append(
                Case(f"{shape}_n{n}", n, d, {"a": skip_lp, "b": skip_lp, "c": "full", "d": skip_lp},
                     target="< 1 s", shape=shape)
            )
    for shape, d, n in (("circle_random", 2, 100_000), ("sphere", 5, 100_000), ("sphere", 6, 100_000),
                        ("sphere", 7, 100_000), ("sphere", 8, 10_000), ("sphere", 8, 100_000),
                        ("sphere_inside", 5, 100_000), ("sphere_inside", 8, 100_000), ("layer_norm", 8, 100_000)):
        qhull = "full" if d <= 5 else qhull_skip(n, d) or "skip: Qhull on 100,000 points of S^5 not tried here"
        cases.append(Case(f"{shape}_d{d}_n{n}", n, d, {"a": skip_lp, "b": skip_lp, "c": qhull, "d": skip_lp},
                          target="< 1 s" if d <= 4 else "< 10 s", shape=shape))
    for shape, d in (("gaussian", 8), ("outliers", 5), ("clusters", 8)):
        cases.append(Case(f"{shape}_d{d}_n100000", 100_000, d,
                          {"a": "skip: hostile case", "b": "skip: hostile case", "c": qhull_skip(100_000, d) or "full",
                           "d": "skip: hostile case"}, target="< 10 s", shape=shape))
    cases.append(
        Case(
            "softmax",
            50257,
            768,
            {
                "a": q(10, 3),
                "b": 1,
                "c": "skip: d = 768",
                "d": "skip: d = 768 (cdd at d = 128 already takes ~8 s per row)",
            },
            std=0.02,
            bias=True,
            target="< 10 min and < 4 GB peak",
        )
    )
    return {case.name: case for case in cases}


def case_data(case, set_index=0):
    """Keys (and bias) of one set of a case (Gaussian, or on a circle or sphere), seed ``[SEED, n, d, set_index]``."""
    import numpy as np

    rng = np.random.default_rng([SEED, case.n, case.d, set_index])
    if case.shape == "circle":  # every key a vertex, every margin 2 pi^2 / n^2 (borderline from n ~ 45,000)
        angles = 2 * np.pi * np.arange(case.n) / case.n
        return np.column_stack([np.cos(angles), np.sin(angles)]), None
    if case.shape == "circle_random":  # half the keys lie within tol of the others' hull (tiny gaps)
        angles = rng.uniform(0, 2 * np.pi, case.n)
        return np.column_stack([np.cos(angles), np.sin(angles)]), None
    keys = case.std * rng.standard_normal((case.n, case.d))
    if case.shape == "anisotropic":
        keys *= ANISOTROPY ** np.arange(case.d)
    if case.shape == "layer_norm":
        import geomln

        return np.asarray(geomln.layer_norm(keys)), None
    if case.shape == "outliers":
        keys[:5] *= 1e6
    if case.shape == "clusters":
        scales = 10.0 ** rng.integers(-6, 3, 10)
        labels = rng.integers(0, 10, case.n)
        keys = 100 * rng.standard_normal((10, case.d))[labels] + scales[labels, None] * keys
    if case.shape in ("sphere", "sphere_inside"):
        keys /= np.linalg.norm(keys, axis=1)[:, None]
    if case.shape == "sphere_inside":
        half = case.n // 2
        keys[half:] *= 0.9 * rng.uniform(0, 1, (case.n - half, 1)) ** (1 / case.d)
    bias = case.std * rng.standard_normal(case.n) if case.bias else None
    return keys, bias


def reproducer(case, set_index, keys_idx):
    if case.shape != "gaussian" or case.quick_skip:
        return ("cd benchmarks; python -c \"import geomln, bench_selectability as b; "
                f"keys, _ = b.case_data(b.make_cases(False)['{case.name}'], {set_index}); "
                f"print(geomln.selectable_keys(keys).selectable_mask[{list(map(int, keys_idx))}])\"")
    scale = "" if case.std == 1.0 else f"{case.std} * "
    bias = f"; bias = {scale}rng.standard_normal({case.n})" if case.bias else "; bias = None"
    return (
        "import numpy as np, geomln; "
        f"rng = np.random.default_rng([{SEED}, {case.n}, {case.d}, {set_index}]); "
        f"keys = {scale}rng.standard_normal(({case.n}, {case.d})){bias}; "
        f"r = geomln.selectable_keys(keys, bias=bias); print(r.selectable_mask[{list(map(int, keys_idx))}])"
    )


# ----------------------------------------------------------------------------------------------------
# compile time (subprocesses)
# ----------------------------------------------------------------------------------------------------

COMPILE_SCRIPT = """
import json, time
t0 = time.perf_counter()
import numpy as np
import geomln
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
work = [(rng.standard_normal((60, 8)), None), (rng.standard_normal((2000, 8)), None),
        (rng.standard_normal((300, 6)), rng.standard_normal(300))]
first, second = [], []
for rounds in (first, second):
    for keys, bias in work:
        t = time.perf_counter()
        geomln.selectable_keys(keys, bias=bias)
        rounds.append(time.perf_counter() - t)
print(json.dumps({"import": t_import, "first": sum(first), "steady": sum(second)}))
"""


def cache_files():
    return sorted(p for p in (REPO / "geomln").rglob("*") if p.suffix in (".nbi", ".nbc"))


def measure_compile(env):
    """Cold (cache deleted) and warm-cache first calls of a small workload, each in a fresh process."""
    out = {}
    subprocess.run(["find", "geomln", "-name", "*.nb[ic]", "-delete"], cwd=REPO, check=True)
    for label in ("cold", "warm"):
        proc = subprocess.run(
            [sys.executable, "-c", COMPILE_SCRIPT],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            out[label] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            continue
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
        out[label]["cache_files"] = len(cache_files())
    return out


# ----------------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One (case, method) line of the table."""

    case: str
    method: str
    seconds: float | None = None
    how: str = ""
    agree: str = ""
    ratio: float | None = None
    notes: list = field(default_factory=list)
    peak_gb: float | None = None
    product: float | None = None  # median seconds of the reference product K V^T (geomln rows)
    vertices: int | None = None
    n: int | None = None
    d: int | None = None


def time_geomln(keys, bias, repeats):
    """Time selectable_keys: the first in-process call, then the median of `repeats` calls.

    Calls slower than SINGLE_CALL_SECONDS give the median of three calls, the first one included; calls slower
    than ONE_CALL_SECONDS are timed once.
    Returns (result, seconds, samples, first).
    """
    import numpy as np

    import geomln

    start = time.perf_counter()
    result = geomln.selectable_keys(keys, bias=bias)
    first = time.perf_counter() - start
    samples = []
    if first > ONE_CALL_SECONDS:
        return result, first, 1, first
    if first > SINGLE_CALL_SECONDS:
        samples, repeats = [first], 2
    for _ in range(repeats):
        start = time.perf_counter()
        geomln.selectable_keys(keys, bias=bias)
        samples.append(time.perf_counter() - start)
    return result, float(np.median(samples)), len(samples), first


def time_product(keys, selectable_mask, repeats):
    """Median time of the product ``keys @ keys[selectable].T`` (n x h x d) in row blocks; h = selectable count.

    The blocks are written into one preallocated buffer (first touched before timing), so the time is BLAS's
    own: the least an engine must spend to score every key against every vertex once.
    """
    import numpy as np

    vertices_t = np.ascontiguousarray(keys[selectable_mask].T)
    h = vertices_t.shape[1]
    if h == 0:
        return 0.0
    rows = max(1, PRODUCT_BLOCK // h)
    buffer = np.zeros((min(rows, keys.shape[0]), h))
    samples = []
    for _ in range(max(3, repeats)):
        start = time.perf_counter()
        for begin in range(0, keys.shape[0], rows):
            block = keys[begin:begin + rows]
            np.dot(block, vertices_t, out=buffer[:block.shape[0]])
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def run_baseline(letter, keys, bias, indices):
    import baselines

    if letter == "a":
        return baselines.published_method(keys, bias, indices=indices)
    if letter == "b":
        return baselines.membership_lp(keys, bias, indices=indices)
    if letter == "c":
        return baselines.qhull_vertices(keys)
    return baselines.cdd_redundancy(keys, bias, indices=indices)


def compare(case, set_index, letter, geo, res, disagreements):
    """Count verdict disagreements between geomln and a baseline result; record them with a reproducer."""
    import numpy as np

    mine = geo.selectable_mask[res.indices]
    decided = np.array([int(key) not in res.no_verdict for key in res.indices], dtype=bool)
    if letter == "c":  # Qhull has no tolerance: its vertices within 2 tol of the others' hull are not disagreements
        within_tol = decided & ~mine & res.selectable_mask  # geomln's combinations (verified) reach them within 2 tol
        res.details["within_tol"] = int(within_tol.sum())
        decided &= ~within_tol
    differ = np.flatnonzero((mine != res.selectable_mask) & decided)
    failed = {key for key, _ in res.failures}
    for slot in differ:
        key = int(res.indices[slot])
        disagreements.append(
            {
                "case": case.name,
                "set": set_index,
                "baseline": letter,
                "key": key,
                "geomln": bool(mine[slot]),
                "baseline_says": bool(res.selectable_mask[slot]),
                "geomln_borderline": bool(geo.borderline_mask[key]),
                "geomln_margin": float(geo.margins[key]) if not np.isnan(geo.margins[key]) else None,
                "baseline_failure": next((msg for k, msg in res.failures if k == key), None),
                "reproducer": reproducer(case, set_index, [key]),
            }
        )
    return differ.size, len(failed), int(decided.sum())


def bench_case(case, args, letters, disagreements):
    """All rows of one case."""
    import numpy as np

    rows = []
    import geomln

    if case.quick_skip and args.quick:
        print("  skipped: --quick (run it by name with --cases)", flush=True)
        return [Row(case.name, "geomln", how="skipped: --quick (run it by name with --cases)")]
    geo_times, geo_first, results, fractions, borderline, bad_certificates = [], [], [], [], 0, 0
    product_times, vertex_counts = [], []
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for s in range(case.sets):
        keys, bias = case_data(case, s)
        geo, seconds, samples, first = time_geomln(keys, bias, args.repeats if case.sets == 1 else args.set_repeats)
        geo_times.append(seconds)
        geo_first.append(first)
        product_times.append(time_product(keys, geo.selectable_mask, args.repeats if case.sets == 1 else 1))
        vertex_counts.append(int(geo.selectable_mask.sum()))
        fractions.append(geo.fraction_unselectable)
        if args.verify and case.name != "softmax":
            bad_certificates += int(geomln.verify_selectability(keys, geo, bias=bias).size)
        borderline += int(geo.borderline_mask.sum())
        if s < case.baseline_sets:
            results.append(geo)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    geo_seconds = float(np.median(geo_times))
    geo_row = Row(
        case.name,
        "geomln",
        geo_seconds,
        how="median over sets" if case.sets > 1 else (f"median of {samples}" if samples > 1 else "1 call"),
    )
    geo_row.product, geo_row.n, geo_row.d = float(np.median(product_times)), case.n, case.d
    geo_row.vertices = int(np.median(vertex_counts))
    geo_row.notes.append(f"{100 * float(np.mean(fractions)):.1f}% unselectable")
    if borderline:
        geo_row.notes.append(f"{borderline} borderline")
    if args.verify and case.name != "softmax":
        geo_row.agree = "certificates OK" if bad_certificates == 0 else f"{bad_certificates} BAD CERTIFICATES"
        if bad_certificates:
            disagreements.append(
                {
                    "case": case.name,
                    "set": "any",
                    "baseline": "verify_selectability",
                    "key": -1,
                    "geomln": None,
                    "baseline_says": None,
                    "geomln_borderline": None,
                    "geomln_margin": None,
                    "baseline_failure": f"{bad_certificates} certificates rejected by geomln.verify_selectability",
                    "reproducer": reproducer(case, 0, []),
                }
            )
    if case.sets == 1:
        geo_row.notes.append(f"first in-process call {first:.3g} s")
    if case.bias or case.name == "softmax":
        geo_row.notes.append(f"peak RSS {peak / 1024**2:.2f} GB (before {rss_before / 1024**2:.2f} GB)")
    geo_row.peak_gb = peak / 1024**2
    rows.append(geo_row)
    print(f"  geomln: {geo_seconds * 1e3:.3f} ms ({geo_row.how}); {', '.join(geo_row.notes)}", flush=True)
    if geo_row.product:
        print(f"  product K V^T (n x h x d, h = {geo_row.vertices}): {geo_row.product * 1e3:.3f} ms; "
              f"geomln / product = {geo_seconds / geo_row.product:.3g}x", flush=True)

    for letter in letters:
        plan = case.plan[letter]
        row = Row(case.name, BASELINE_NAMES[letter])
        rows.append(row)
        if isinstance(plan, str) and plan.startswith("skip"):
            row.how = "skipped" + plan[4:]
            print(f"  {letter}: {row.how}", flush=True)
            continue
        if case.bias and letter == "c":
            row.how = "skipped: no bias support"
            continue
        times, n_differ, n_failed, n_checked, failure_messages = [], 0, 0, 0, []
        error = None
        for s in range(case.baseline_sets):
            keys, bias = case_data(case, s)
            indices = None
            if isinstance(plan, int) and plan < case.n:
                sub_rng = np.random.default_rng([SEED, case.n, case.d, s, 999])
                indices = np.sort(sub_rng.choice(case.n, size=plan, replace=False))
            start = time.perf_counter()
            try:
                res = run_baseline(letter, keys, bias, indices)
            except Exception as exc:  # a baseline that fails is reported, not fatal
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                times.append(time.perf_counter() - start)
                break
            elapsed = time.perf_counter() - start
            if indices is not None:  # one-off setup once, the per-key part scaled to all n keys
                setup = min(elapsed, res.details.get("setup_seconds", 0.0))
                elapsed = setup + (elapsed - setup) * case.n / indices.size
            times.append(elapsed)
            differ, failed, checked = compare(case, s, letter, results[s], res, disagreements)
            failure_messages += [msg for _, msg in res.failures]
            n_differ, n_failed, n_checked = n_differ + differ, n_failed + failed, n_checked + checked
        if error is not None:
            row.how = f"FAILED after {times[-1]:.3g} s ({error})"
            print(f"  {letter}: {row.how}", flush=True)
            continue
        row.seconds = float(np.median(times))
        row.ratio = row.seconds / geo_seconds
        if isinstance(plan, int) and plan < case.n:
            row.how = f"extrapolated from {plan} random keys" + (" (per-row cdd.redundant)" if letter == "d" else "")
        else:
            row.how = "full" + (f", median over {case.baseline_sets} sets" if case.baseline_sets > 1 else "")
        row.agree = "yes" if n_differ == 0 else f"NO: {n_differ} of {n_checked}"
        if res.details.get("within_tol"):
            row.notes.append(f"{res.details['within_tol']} Qhull vertices lie within 2 tol of the others' hull "
                             "(geomln: unselectable, combination verified), not compared")
        if n_failed:
            kinds = sorted({msg.split(":")[0] for msg in failure_messages})
            if letter == "b":
                row.notes.append(f"{n_failed} keys without verdict ({', '.join(kinds)}), not compared")
            else:
                row.notes.append(f"{n_failed} solver failures ({', '.join(kinds)}); verdict kept as in the original")
        print(
            f"  {letter}: {row.seconds:.4g} s ({row.how}); {row.ratio:.3g}x geomln; agree: {row.agree}"
            + (f"; {'; '.join(row.notes)}" if row.notes else ""),
            flush=True,
        )
        if n_differ:
            print(
                f"  !!! DISAGREEMENT between geomln and {BASELINE_NAMES[letter]} on {case.name}: "
                f"{n_differ} keys (see end of output)",
                flush=True,
            )
    return rows


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------


def fmt_seconds(seconds):
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def targets(rows, cases):
    """(target, measured, met) lines for the issue-3 targets of the cases that ran."""
    by = {(r.case, r.method[:3]): r for r in rows}
    geo = {r.case: r for r in rows if r.method == "geomln"}
    out = []

    def ratio(case, letter):
        row = by.get((case, f"({letter})"))
        return None if row is None or row.ratio is None else row.ratio

    if "n1024_d8" in geo:
        for letter, want in (("a", 300), ("d", 50)):
            r = ratio("n1024_d8", letter)
            out.append(
                (
                    f"n=1024, d=8: >= {want}x faster than ({letter})",
                    "not run" if r is None else f"{r:.0f}x",
                    None if r is None else r >= want,
                )
            )
    for name in ("n60_d3", "n60_d8", "n60_d15"):
        if name in geo:
            s = geo[name].seconds
            out.append((f"{name}: median < 1 ms per set", fmt_seconds(s), s < 1e-3))
    for name, limit in (("n10000_d8", 2.0), ("n4096_d64", 1.0), ("n4096_d128", 1.0)):
        if name in geo:
            s = geo[name].seconds
            out.append((f"{name}: < {limit:g} s", fmt_seconds(s), s < limit))
    for d in (2, 3, 4):
        name = f"n100000_d{d}"
        if name in geo:
            r = ratio(name, "c")
            out.append(
                (
                    f"{name}: no slower than Qhull",
                    "Qhull not run"
                    if r is None
                    else f"geomln {fmt_seconds(geo[name].seconds)} vs Qhull {fmt_seconds(by[(name, '(c)')].seconds)}",
                    None if r is None else r >= 1.0,
                )
            )
    for name, case in cases.items():  # issue 14: all-vertex and hostile cases (targets "< X s")
        if name in geo and (case.shape not in ("gaussian", "anisotropic") or name == "gaussian_d8_n100000"):
            limit = float(case.target.split()[1])
            qhull = by.get((name, "(c)"))
            versus = "" if qhull is None or qhull.seconds is None else f" (Qhull {fmt_seconds(qhull.seconds)})"
            out.append((f"{name}: {case.target}", fmt_seconds(geo[name].seconds) + versus, geo[name].seconds < limit))
    if "softmax" in geo:
        row = geo["softmax"]
        out.append(
            (
                "softmax n=50257, d=768, bias: < 10 min and < 4 GB",
                f"{fmt_seconds(row.seconds)}, peak RSS {row.peak_gb:.2f} GB",
                row.seconds < 600 and row.peak_gb < 4,
            )
        )
    return out


def machine_info(threads):
    import numba
    import numpy
    import scipy

    try:
        from importlib.metadata import version

        cdd_version = version("pycddlib-standalone")
    except Exception:  # not installed
        cdd_version = "not installed"
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "numba threads": numba.get_num_threads(),
        "BLAS/OMP threads": threads,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "pycddlib-standalone": cdd_version,
        "platform": platform.platform(),
    }


def render(command, info, load, compile_times, rows, target_lines, disagreements, wall):
    lines = [
        "# Selectability benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}; wall time {wall / 60:.1f} min. "
        f"The machine is shared and was busy (load average {load[0]:.1f} at start, {load[1]:.1f} at end on "
        f"{info['cores']} cores), so absolute times are noisy; ratios come from the same process and inputs.",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()),
        "",
    ]
    if compile_times:
        lines += [
            "## numba compile time (fresh processes; workload: n=60,d=8 + n=2000,d=8 + n=300,d=6 with bias)",
            "",
            "| run | import geomln | first calls | steady calls | cache files after |",
            "|---|---|---|---|---|",
        ]
        for label, title in (("cold", "cold (cache deleted)"), ("warm", "warm cache")):
            c = compile_times.get(label, {})
            if "error" in c:
                lines.append(f"| {title} | failed: {c['error']} | | | |")
            elif c:
                lines.append(
                    f"| {title} | {fmt_seconds(c['import'])} | {fmt_seconds(c['first'])} | "
                    f"{fmt_seconds(c['steady'])} | {c['cache_files']} |"
                )
        lines.append("")
    lines += [
        "## Times (seconds per whole key set; ratio = baseline time / geomln time)",
        "",
        "| case | method | time | ratio | how | verdicts agree | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.3g}x"
        lines.append(
            f"| {r.case} | {r.method} | {fmt_seconds(r.seconds)} | {ratio} | {r.how} | {r.agree} | "
            f"{'; '.join(r.notes)} |"
        )
    lines += [
        "",
        "## Engine against one matrix product (issue 17)",
        "",
        "product = median time of `K @ K[selectable].T` (n x h x d; numpy BLAS, row blocks of 2^23 entries, same "
        "process and threads); ratio = geomln median / product. Target: ratio <= 3 on every row, and the "
        "n = 10^5 / 10^6 rows under 20 s.",
        "",
        "| case | n | d | h (vertices) | geomln | product | ratio | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.method != "geomln" or r.seconds is None:
            continue
        ratio = r.seconds / r.product if r.product else None
        limit = r.seconds < 20.0 if r.n >= 100_000 and r.d >= 8 else True
        met = "-" if ratio is None else ("yes" if ratio <= 3.0 and limit else "NO")
        lines.append(f"| {r.case} | {r.n:,} | {r.d} | {r.vertices:,} | {fmt_seconds(r.seconds)} | "
                     f"{fmt_seconds(r.product)} | {'-' if ratio is None else f'{ratio:.3g}x'} | {met} |")
    lines += ["", "## Targets (issues 3 and 14)", "", "| target | measured | met |", "|---|---|---|"]
    for target, measured, met in target_lines:
        lines.append(f"| {target} | {measured} | {'-' if met is None else ('yes' if met else 'NO')} |")
    lines += ["", "## Disagreements", ""]
    if not disagreements:
        lines.append("None: every baseline verdict that was computed matches geomln's.")
    for item in disagreements:
        if item["key"] == -1:
            lines.append(f'- {item["case"]}: {item["baseline_failure"]}\n  `python -c "{item["reproducer"]}"`')
            continue
        lines.append(
            f"- {item['case']} set {item['set']} key {item['key']}: geomln says "
            f"{'selectable' if item['geomln'] else 'unselectable'}, baseline ({item['baseline']}) says "
            f"{'selectable' if item['baseline_says'] else 'unselectable'}; geomln borderline="
            f"{item['geomln_borderline']}, margin={item['geomln_margin']}"
            + (f"; baseline failure: {item['baseline_failure']}" if item["baseline_failure"] else "")
            + f'\n  `python -c "{item["reproducer"]}"`'
        )
    lines += [
        "",
        "Notes: (a) and (b) use scipy's HiGHS (linprog method='highs'); (a) with "
        "primal_feasibility_tolerance=1e-9. Extrapolated times: one-off setup (rank check, matrix "
        "construction) plus the per-key time on a random subset scaled by n / subset size. "
        "(d) extrapolated uses cdd.redundant per row on the full matrix, which at n=1024, d=8 took ~1.6x "
        "the time per row of one cdd.redundant_rows call. geomln times: median of --repeats calls after "
        "a first in-process call, or of three calls (the first included) when the first took > 5 s, or the "
        "first call alone when it took > 60 s.",
        "",
    ]
    return "\n".join(lines)


def write_atomic(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_args(argv):
    default_cases = ("n60_d3,n60_d8,n60_d15,n1024_d8,n10000_d8,n4096_d64,n4096_d128,n100000_d2,n100000_d3,n100000_d4,"
                     "aniso_n5000_d32,n100000_d8,n100000_d16,n100000_d32,n1000000_d8")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cases",
        default=default_cases,
        help=f"comma-separated case names (default: {default_cases}; also: softmax, circle_n10000, circle_n100000, "
        "sphere_n10000, sphere_n100000 and the all-vertex and hostile cases of issue 14, e.g. sphere_d8_n100000, "
        "sphere_inside_d5_n100000, outliers_d5_n100000; see make_cases)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed geomln calls per case after the first (default 5)"
    )
    parser.add_argument("--threads", type=int, default=1, help="numba and BLAS threads (default 1)")
    parser.add_argument("--baselines", default="a,b,c,d", help="comma-separated subset of a,b,c,d (default all)")
    parser.add_argument("--quick", action="store_true",
                        help="small subsets, fewer sets, no Qhull at n=1024, no n=10^5 / 10^6 product rows")
    parser.add_argument("--softmax", action="store_true", help="add the n=50,257, d=768 case with bias (minutes)")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure cold and warm-cache compile time in subprocesses (deletes geomln's numba cache)",
    )
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check geomln's certificates with geomln.verify_selectability (untimed; not for softmax)",
    )
    parser.add_argument(
        "--output",
        default=str(REPO / "benchmarks" / "results" / "selectability.md"),
        help="markdown file to write ('-' to skip)",
    )
    args = parser.parse_args(argv)
    args.set_repeats = max(1, min(args.repeats, 3))
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    cases = make_cases(args.quick)
    names = [c for c in args.cases.split(",") if c]
    if args.softmax and "softmax" not in names:
        names.insert(0, "softmax")
    if "softmax" in names:  # first, so that the process's peak RSS after it is geomln's own
        names.remove("softmax")
        names.insert(0, "softmax")
    unknown = [c for c in names if c not in cases]
    letters = [b for b in args.baselines.split(",") if b]
    bad = [b for b in letters if b not in BASELINE_NAMES]
    if unknown or bad:
        parser.error(f"unknown cases {unknown} (choose from {sorted(cases)}) or baselines {bad} (choose from a,b,c,d)")

    command = "python " + shlex.join(
        ["benchmarks/bench_selectability.py", *sys.argv[1:]]
        if argv is None
        else ["benchmarks/bench_selectability.py", *argv]
    )
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    compile_times = {}
    if args.compile:
        print("compile time: cold (cache deleted) and warm cache, fresh processes ...", flush=True)
        compile_times = measure_compile(dict(os.environ))
        print(f"  {json.dumps(compile_times)}", flush=True)

    import numba

    numba.set_num_threads(args.threads)
    rows, disagreements = [], []
    for name in names:
        case = cases[name]
        print(f"{name}: n={case.n}, d={case.d}{' with bias' if case.bias else ''}", flush=True)
        rows += bench_case(case, args, letters, disagreements)
        if args.output != "-":  # after every case, so that an interrupted run keeps the rows it finished
            partial = render(command, machine_info(args.threads), (load_start, os.getloadavg()[0]), compile_times,
                             rows, targets(rows, cases), disagreements, time.perf_counter() - started)
            write_atomic(args.output, partial)
    wall = time.perf_counter() - started
    target_lines = targets(rows, cases)
    info = machine_info(args.threads)
    text = render(
        command,
        info,
        (load_start, os.getloadavg()[0]),
        compile_times,
        rows,
        target_lines,
        disagreements,
        wall,
    )
    print()
    print(text)
    if disagreements:
        print(
            f"\n!!! {len(disagreements)} VERDICT DISAGREEMENTS between geomln and the baselines (see above)",
            file=sys.stderr,
        )
    if args.output != "-":
        write_atomic(args.output, text)
        print(f"wrote {args.output}")
    return 1 if disagreements else 0


if __name__ == "__main__":
    raise SystemExit(main())
