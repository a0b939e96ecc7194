import json
import math
import re
import shlex
import threading
import zlib

import numpy as np
import pytest
import scipy.spatial
import scipy.stats

import geomln
from geomln.cli._main import main
from geomln.errors import DataFileError, GeomlnWarning, InputError
from geomln.montecarlo import _cells as cells
from geomln.montecarlo import _store
from geomln.montecarlo.estimate import MonteCarloResult, estimate_unselectable

FAST = dict(workers=1, progress=False)


def table(result):
    """Rows without the timing column, NaN replaced by None so that equal tables compare equal."""
    return [tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row[:-1]) for row in result]


def qhull_unselectable(points):
    """Independent oracle: keys that are not vertices of scipy's (Qhull) convex hull."""
    return points.shape[0] - len(scipy.spatial.ConvexHull(points).vertices)


# --- statistics against independent implementations ---


@pytest.mark.parametrize("successes,trials", [(0, 10), (3, 10), (10, 10), (37, 100), (1, 1)])
def test_wilson_interval_matches_scipy(successes, trials):
    expected = scipy.stats.binomtest(successes, trials).proportion_ci(method="wilson")
    assert cells.wilson_interval(successes, trials) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_mean_interval_matches_student_t(rng):
    values = rng.random(17) * 0.3
    expected = scipy.stats.t.interval(0.95, 16, loc=values.mean(), scale=scipy.stats.sem(values))
    mean, sd, low, high = cells.mean_interval(values, 1.0)
    assert (mean, sd) == pytest.approx((values.mean(), values.std(ddof=1)))
    assert (low, high) == pytest.approx(expected)


def test_mean_interval_all_zero_uses_the_bound_on_any_unselectable():
    assert cells.mean_interval(np.zeros(20), 0.16) == (0.0, 0.0, 0.0, 0.16)
    assert cells.mean_interval(np.array([0.25]), 1.0)[2:] == (0.0, 1.0)


# --- the Monte Carlo against the exact theory and against Qhull ---


def test_gaussian_cells_agree_with_exact_theory():
    result = estimate_unselectable([10, 25, 60], [2, 3, 5], trials=60, seed=0, **FAST)
    theory = geomln.unselectable_fraction_gaussian(result.column("n"), result.column("d"))
    np.testing.assert_allclose(result.column("theory_fraction"), theory, rtol=1e-14, atol=0)  # grid vs columns
    low, high = result.column("fraction_low"), result.column("fraction_high")
    assert np.all((low <= theory) & (theory <= high)), list(zip(low, theory, high, strict=True))
    assert np.all(result.column("fraction_high") - result.column("fraction_low") < 0.1)


def test_projected_gaussian_agrees_with_theory_one_dimension_lower():
    result = estimate_unselectable([12, 40], [3, 4], trials=60, seed=2, normalization="projection", **FAST)
    theory = geomln.unselectable_fraction_gaussian(result.column("n"), result.column("d") - 1)
    np.testing.assert_allclose(result.column("theory_fraction"), theory, rtol=1e-14, atol=0)
    assert np.all((result.column("fraction_low") <= theory) & (theory <= result.column("fraction_high")))


def test_cells_equal_qhull_recount_of_the_documented_streams():
    result = estimate_unselectable([8, 30], [3, 4], trials=15, seed=7, **FAST)
    for row in result:
        sequence = np.random.SeedSequence(7, spawn_key=(zlib.crc32(b"gaussian"), row.n, row.d))
        rng = np.random.default_rng(sequence)
        counts = np.array([qhull_unselectable(rng.standard_normal((row.n, row.d))) for _ in range(15)])
        assert row.fraction == pytest.approx(np.mean(counts / row.n), abs=1e-15)
        assert row.any_unselectable == np.mean(counts > 0)
        assert row.mean_vertices == pytest.approx(row.n - counts.mean())


def test_trials_beyond_one_block_come_from_the_documented_block_streams():
    result = estimate_unselectable(12, 3, trials=250, seed=5, **FAST)
    counts = []
    for block, size in enumerate([100, 100, 50]):  # TRIAL_BLOCK = 100 trials per separately seeded block
        key = (zlib.crc32(b"gaussian"), 12, 3) + ((block,) if block else ())
        rng = np.random.default_rng(np.random.SeedSequence(5, spawn_key=key))
        counts += [qhull_unselectable(rng.standard_normal((12, 3))) for _ in range(size)]
    (row,) = result
    assert row.trials == 250
    assert row.fraction == pytest.approx(np.mean(np.array(counts) / 12), abs=1e-15)
    assert row.any_unselectable == np.mean(np.array(counts) > 0)


def test_the_blocks_of_one_cell_run_in_parallel_with_identical_results():
    kw = dict(trials=230, seed=8, normalization=["none", "layernorm"], progress=False)
    pooled = estimate_unselectable(30, 4, workers=2, **kw)
    assert pooled.provenance["timings"]["workers_used"] == 2  # one cell, three blocks, two processes
    assert table(pooled) == table(estimate_unselectable(30, 4, workers=1, **kw))


@pytest.mark.parametrize("distribution", ["uniform_cube", "uniform_ball"])
def test_cells_equal_a_trial_by_trial_recount_with_the_engine(distribution):
    norms = ["none", "projection", "layernorm"]
    result = estimate_unselectable([9, 25], [3, 6], trials=10, seed=3, distribution=distribution,
                                   normalization=norms, **FAST)
    for n, d in [(9, 3), (9, 6), (25, 3), (25, 6)]:
        rng = np.random.default_rng(cells.cell_seed(3, distribution, n, d))
        raw = [cells.sample(distribution, rng, n, d) for _ in range(10)]  # one draw per trial, shared by norms
        for norm in norms:
            counts = np.array([geomln.selectable_keys(cells.normalize(norm, keys)).n_unselectable for keys in raw])
            (row,) = [row for row in result if (row.n, row.d, row.normalization) == (n, d, norm)]
            assert row.fraction == pytest.approx(np.mean(counts / n), abs=1e-15)
            assert row.mean_vertices == pytest.approx(n - counts.mean())


def test_one_dimension_is_exact():
    row = estimate_unselectable(9, 1, trials=5, **FAST).rows[0]
    assert (row.fraction, row.fraction_sd, row.fraction_low, row.fraction_high) == (7 / 9, 0.0, 7 / 9, 7 / 9)
    assert row.theory_fraction == pytest.approx(7 / 9)


# --- normalizations ---


@pytest.mark.parametrize("distribution", ["gaussian", "uniform_cube", "uniform_ball"])
def test_keys_on_a_sphere_are_all_selectable(distribution):
    result = estimate_unselectable(
        [10, 40],
        [3, 5],
        trials=10,
        seed=1,
        distribution=distribution,
        normalization=["scaling", "layernorm", "rmsnorm"],
        **FAST,
    )
    assert np.all(result.column("fraction") == 0.0)
    assert np.all(result.column("any_unselectable") == 0.0)
    np.testing.assert_array_equal(result.column("mean_vertices"), result.column("n"))
    np.testing.assert_array_equal(result.column("theory_fraction"), 0.0)


def test_sphere_distribution_is_all_selectable_and_projection_alone_is_not():
    sphere = estimate_unselectable(40, [2, 4], trials=10, distribution="sphere", **FAST)
    assert np.all(sphere.column("fraction") == 0.0)
    projected = estimate_unselectable(40, [3, 5], trials=10, normalization=["none", "projection"], **FAST)
    none, projection = (projected.pivot("fraction", normalization=k)[2] for k in ("none", "projection"))
    assert np.all(projection > 0.05) and np.all(projection > none)


def test_layernorm_in_two_dimensions_collapses_keys_to_two_points():
    row = estimate_unselectable(6, 2, trials=5, normalization="layernorm", **FAST).rows[0]
    assert row.any_unselectable == 1.0 and math.isnan(row.theory_fraction)


def test_uniform_samplers_stay_in_their_sets():
    for kind, bound in (("uniform_cube", 1.0), ("uniform_ball", 1.0), ("sphere", 1.0)):
        points = cells.sample(kind, np.random.default_rng(0), 500, 4)
        norms = np.linalg.norm(points, axis=1) if kind != "uniform_cube" else np.abs(points).max(axis=1)
        assert points.shape == (500, 4) and norms.max() <= bound + 1e-12
        if kind == "sphere":
            np.testing.assert_allclose(norms, 1.0)
        if kind == "uniform_ball":  # P(|x| < 1/2) = 2^-4 in R^4
            assert abs(np.mean(norms < 0.5) - 1 / 16) < 0.03


# --- reproducibility ---


def test_workers_and_cell_order_do_not_change_the_table():
    kw = dict(trials=8, seed=11, normalization=["none", "layernorm"], progress=False)
    serial = estimate_unselectable(range(4, 40, 7), [3, 6], workers=1, **kw)
    parallel = estimate_unselectable([39, 4, 25, 11, 32, 18], [6, 3], workers=2, **kw)
    assert table(serial) == table(parallel)
    assert parallel.provenance["timings"]["workers_used"] == 2
    alone = estimate_unselectable(18, 6, workers=1, **kw)
    assert table(alone) == [row for row in table(serial) if row[0] == 18 and row[1] == 6]
    other_seed = estimate_unselectable(range(4, 40, 7), [3, 6], workers=1, **{**kw, "seed": 12})
    assert table(other_seed) != table(serial)


def test_cli_interrupt_before_any_cell_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cells, "run_cell", interrupted)
    out = tmp_path / "run"
    argv = ["montecarlo", "--n", "5", "--d", "3", "--trials", "3", "--workers", "1", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("geomln: interrupted before any of the 2 cells finished; nothing was saved")
    assert err.count("\n") == 1 and "--resume" not in err and not out.exists()
    again = shlex.split(err.split("Start again with: ")[1])
    assert again[:2] == ["geomln", "montecarlo"] and again[again.index("--out") + 1] == str(out)


def test_closure_samplers_reach_the_workers_and_unpicklable_ones_run_here():
    def shifted(rng, n, d):
        return rng.standard_normal((n, d)) + 5.0  # a translation does not change the hull

    kw = dict(trials=6, seed=4, distribution=shifted, progress=False)
    moved = estimate_unselectable([10, 30], 3, workers=2, **kw)  # cloudpickle sends the closure by value
    assert moved.provenance["timings"]["workers_used"] == 2
    assert table(moved) == table(estimate_unselectable([10, 30], 3, workers=1, **kw))
    lock = threading.Lock()

    def locked(rng, n, d):
        with lock:
            return shifted(rng, n, d)

    with pytest.warns(GeomlnWarning, match="worker processes"):
        alone = estimate_unselectable([10, 30], 3, workers=2, **{**kw, "distribution": locked})
    assert alone.provenance["timings"]["workers_used"] == 1
    for row in moved:
        rng = np.random.default_rng(cells.cell_seed(4, row.distribution, row.n, 3))
        counts = [qhull_unselectable(rng.standard_normal((row.n, 3)) + 5.0) for _ in range(6)]
        assert row.fraction == pytest.approx(np.mean(counts) / row.n, abs=1e-15)
    assert moved.rows[0].distribution.endswith("shifted") and math.isnan(moved.rows[0].theory_fraction)


def gaussian(rng, n, d):  # a user sampler named like a built-in distribution
    return rng.standard_normal((n, d))


def test_user_sampler_named_like_a_builtin_gets_no_theory():
    row = estimate_unselectable(12, 3, trials=3, distribution=gaussian, **FAST).rows[0]
    assert row.distribution == f"{__name__}.gaussian" and math.isnan(row.theory_fraction)


def test_from_keys_draws_distinct_rows(tmp_path, rng):
    pool = rng.standard_normal((50, 3))
    path = tmp_path / "pool.npy"
    np.save(path, pool)
    from_file = estimate_unselectable([5, 50], 3, trials=4, distribution="from_keys", keys=path, **FAST)
    from_array = estimate_unselectable([5, 50], 3, trials=4, distribution="from_keys", keys=pool, **FAST)
    assert table(from_file) == table(from_array)
    whole = from_file.rows[1]  # n = 50 draws every row: the same set in every trial
    assert whole.fraction == qhull_unselectable(pool) / 50 and whole.fraction_sd == 0.0
    assert from_file.provenance["distributions"]["from_keys"]["source"] == str(path)


# --- output formats ---


def test_csv_and_json_round_trip(tmp_path):
    result = estimate_unselectable([6, 12], [1, 3], trials=4, normalization=["none", "projection"], **FAST)
    result.to_json(tmp_path / "r.json")
    result.to_csv(tmp_path / "r.csv")
    again = MonteCarloResult.from_json(tmp_path / "r.json")
    assert table(again) == table(result) and again.complete
    assert [row.seconds for row in again] == [row.seconds for row in result]
    assert again.provenance == json.loads(json.dumps(result.provenance))
    assert (
        again.provenance["arguments"]["n"] == [6, 12]
        and again.provenance["geomln_version"] == geomln.__version__
    )
    from_csv = MonteCarloResult.from_csv(tmp_path / "r.csv")
    assert table(from_csv) == table(result)
    assert (tmp_path / "r.csv").read_text() == result.to_csv()
    records = json.loads(result.to_json())["rows"]
    assert [r["theory_fraction"] for r in records if r["d"] == 1] == [
        pytest.approx(2 / 3),
        pytest.approx(5 / 6),
        None,
        None,
    ]  # projection at d = 1: unknown
    assert list(result.column("n")) == [6, 6, 12, 12, 6, 6, 12, 12]
    assert result.labels("normalization") == ["none", "projection"]


def test_bad_table_files_raise_data_file_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"format": "something else", "rows": []}')
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "short.csv").write_text("n,d\n3,4\n")
    with pytest.raises(DataFileError, match="not a geomln Monte Carlo result"):
        MonteCarloResult.from_json(tmp_path / "bad.json")
    with pytest.raises(DataFileError, match="not valid JSON"):
        MonteCarloResult.from_json(tmp_path / "broken.json")
    with pytest.raises(DataFileError, match="lacks the column"):
        MonteCarloResult.from_csv(tmp_path / "short.csv")
    with pytest.raises(DataFileError, match="cannot read"):
        MonteCarloResult.from_json(tmp_path / "missing.json")


def test_pivot_and_column_errors():
    result = estimate_unselectable([5, 7], [2, 3], trials=3, normalization=["none", "scaling"], **FAST)
    ns, ds, values = result.pivot("fraction", normalization="none")
    assert list(ns) == [5, 7] and list(ds) == [2, 3] and values.shape == (2, 2)
    with pytest.raises(InputError, match="`normalization` must be given.*'none', 'scaling'"):
        result.pivot("fraction")
    with pytest.raises(InputError, match="`normalization` must be one of"):
        result.pivot("fraction", normalization="layernorm")
    with pytest.raises(InputError, match="`metric` must be one of"):
        result.pivot("n", normalization="none")
    with pytest.raises(InputError, match="`name` must be one of"):
        result.column("nope")


def test_progress_bar_explains_the_warm_up_until_the_first_cell_finishes(capsys):
    from geomln.montecarlo.estimate import _advance, _progress_bar

    with _progress_bar(True, 3, 0) as bar:
        bar.refresh()
        _advance(bar, 1)
        bar.refresh()
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    shown = [line for line in lines if "geomln montecarlo" in line]
    assert "compiling on a first run" in shown[0] and "0/3" in shown[0]
    assert all("compiling on a first run" not in line for line in shown if "1/3" in line)


# --- checkpoints, resume and interruption ---


def counting(monkeypatch):
    calls = []
    original = cells.run_cell

    def recorded(context, label, n, d, normalizations, block):
        calls.append((n, d, normalizations))
        return original(context, label, n, d, normalizations, block)

    monkeypatch.setattr(cells, "run_cell", recorded)
    return calls


def test_resume_skips_finished_cells(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.json"
    kw = dict(trials=5, seed=3, checkpoint=path, **FAST)
    first = estimate_unselectable([5, 9], [3], normalization="none", **kw)
    assert MonteCarloResult.from_json(path).complete
    calls = counting(monkeypatch)
    resumed = estimate_unselectable([5, 9, 14], [3], normalization=["none", "layernorm"], resume=True, **kw)
    assert sorted(calls) == [(5, 3, ("layernorm",)), (9, 3, ("layernorm",)), (14, 3, ("none", "layernorm"))]
    fresh = estimate_unselectable(
        [5, 9, 14], [3], trials=5, seed=3, normalization=["none", "layernorm"], **FAST
    )
    assert table(resumed) == table(fresh)
    assert [r.seconds for r in resumed.select(normalization="none")][:2] == [r.seconds for r in first]
    assert resumed.provenance["timings"]["cells_resumed"] == 2
    with pytest.raises(InputError, match="`checkpoint`.*trials 5 \\(now 6\\)"):
        estimate_unselectable([5], [3], trials=6, seed=3, checkpoint=path, resume=True, **FAST)
    with pytest.raises(InputError, match="`resume` needs a `checkpoint`"):
        estimate_unselectable(5, 3, resume=True, **FAST)


def test_interrupted_run_leaves_a_valid_partial_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.json"
    original = cells.run_cell
    calls = []

    def interrupted(*args):
        calls.append(args[2:4])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(cells, "run_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        estimate_unselectable([5, 6, 7, 8], 3, trials=4, checkpoint=path, **FAST)
    partial = MonteCarloResult.from_json(path)
    assert not partial.complete and [(row.n, row.d) for row in partial] == [(5, 3), (6, 3)]
    monkeypatch.setattr(cells, "run_cell", original)
    finished = estimate_unselectable([5, 6, 7, 8], 3, trials=4, checkpoint=path, resume=True, **FAST)
    assert table(finished) == table(estimate_unselectable([5, 6, 7, 8], 3, trials=4, **FAST))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]


@pytest.mark.parametrize("interval, written_before", [(3600.0, [False, False, False]), (0.0, [False, True, True])])
def test_checkpoint_rewrites_are_throttled(tmp_path, monkeypatch, interval, written_before):
    monkeypatch.setattr(_store, "SAVE_SECONDS", interval)
    path = tmp_path / "checkpoint.json"
    original, seen = cells.run_cell, []

    def watching(*args):
        seen.append(path.exists())
        return original(*args)

    monkeypatch.setattr(cells, "run_cell", watching)
    result = estimate_unselectable([5, 6, 7], 3, trials=4, checkpoint=path, **FAST)
    assert seen == written_before
    assert MonteCarloResult.from_json(path).complete and table(MonteCarloResult.from_json(path)) == table(result)


# --- bad input: one clear error, no files left behind ---


def wrong_shape(rng, n, d):
    return rng.standard_normal((n, d + 1))


def late_nan(rng, n, d):
    points = rng.standard_normal((n, d))
    if n == 9:
        points[2, 1] = np.nan
    return points


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(n=0, d=3), InputError, "`n` must be >= 1"),
        (dict(n=[5, -2], d=3), InputError, "`n` must be >= 1"),
        (dict(n=[], d=3), InputError, "`n` must hold at least one value"),
        (dict(n="3:60", d=3), TypeError, "`n` must be an int"),
        (dict(n=2.5, d=3), TypeError, "`n` must be an integer"),
        (dict(n=5, d=0), InputError, "`d` must be >= 1"),
        (dict(n=5, d=3, trials=0), InputError, "`trials` must be >= 1"),
        (dict(n=5, d=3, workers=0), InputError, "`workers` must be >= 1"),
        (dict(n=5, d=3, seed=-1), InputError, "`seed` must be >= 0"),
        (
            dict(n=5, d=3, distribution="cauchy"),
            InputError,
            "`distribution` must be one of 'gaussian'.*'from_keys'",
        ),
        (dict(n=5, d=3, distribution=3), TypeError, "`distribution` must be a name or a callable"),
        (dict(n=5, d=3, distribution=["gaussian", "gaussian"]), InputError, "lists 'gaussian' twice"),
        (
            dict(n=5, d=3, normalization="batchnorm"),
            InputError,
            "`normalization` must be one of 'none'.*'rmsnorm'",
        ),
        (dict(n=5, d=3, normalization=[]), InputError, "`normalization` must name"),
        (
            dict(n=5, d=[1, 2], normalization="layernorm"),
            InputError,
            "`normalization` 'layernorm' needs d >= 2",
        ),
        (
            dict(n=5, d=3, distribution=wrong_shape),
            InputError,
            r"must return an array of shape \(5, 3\); got shape",
        ),
        (dict(n=5, d=3, distribution=lambda rng, n, d: "x"), TypeError, "`sampler.*must be a numeric array"),
        (dict(n=5, d=3, distribution="from_keys"), InputError, "needs `keys`"),
        (dict(n=5, d=3, keys=np.ones((9, 3))), InputError, "`keys` is only used by"),
        (dict(n=5, d=2, distribution="from_keys", keys=np.eye(9, 3)), InputError, r"`d` must be \[3\]"),
        (dict(n=10, d=3, distribution="from_keys", keys=np.eye(9, 3)), InputError, "`n` must be at most 9"),
        (
            dict(n=5, d=3, distribution="from_keys", keys=np.ones((2, 4, 3))),
            InputError,
            "one \\(m, d\\) key matrix",
        ),
    ],
)
def test_bad_arguments_raise_one_clear_error(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        estimate_unselectable(**{**FAST, **kwargs}, checkpoint=tmp_path / "c.json")
    assert list(tmp_path.iterdir()) == []


def test_sampler_nan_midway_removes_the_checkpoint(tmp_path):
    with pytest.raises(InputError, match=r"`sampler\(rng, 9, 3\) of late_nan` contains 1 NaN value"):
        estimate_unselectable(
            [5, 7, 9], 3, trials=3, distribution=late_nan, checkpoint=tmp_path / "c.json", **FAST
        )
    assert list(tmp_path.iterdir()) == []


def test_unreadable_key_file_and_unwritable_checkpoint(tmp_path):
    (tmp_path / "keys.npy").write_bytes(b"not an npy file")
    with pytest.raises(DataFileError, match="keys.npy"):
        estimate_unselectable(5, 3, distribution="from_keys", keys=tmp_path / "keys.npy", **FAST)
    with pytest.raises(DataFileError, match="no such file"):
        estimate_unselectable(5, 3, distribution="from_keys", keys=tmp_path / "absent.npy", **FAST)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataFileError, match="cannot write"):
        estimate_unselectable(5, 3, trials=2, checkpoint=tmp_path / "file" / "c.json", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "keys.npy"]


# --- command line ---


def test_cli_writes_table_json_and_heatmaps(tmp_path, capsys):
    out = tmp_path / "run"
    small_grid = ["montecarlo", "--n", "4:12:4", "--d", "2,3", "--trials", "5", "--workers", "1",
                  "--out", str(out), "--no-progress"]
    code = main(small_grid)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "fraction_vs_n.png",
        "heatmap_any_unselectable.png",
        "heatmap_fraction.png",
        "results.csv",
        "results.json",
    ]
    result = MonteCarloResult.from_json(out / "results.json")
    assert result.labels("normalization") == ["none", "layernorm"] and len(result) == 12
    assert table(MonteCarloResult.from_csv(out / "results.csv")) == table(result)
    expected = estimate_unselectable(
        [4, 8, 12], [2, 3], trials=5, normalization=["none", "layernorm"], **FAST
    )
    assert table(result) == table(expected)
    printed = capsys.readouterr().out
    assert "12 cells (12 computed, 0 resumed)" in printed
    assert "exact theory: 9 of 9 cells have it inside the 95% interval" in printed
    assert main([*small_grid, "--resume", "--no-plots"]) == 0
    assert "(0 computed, 12 resumed)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--n", "0:5"], "`--n` values must be >= 1"),
        (["--d", "x"], "`--d`: 'x' in 'x' is not an integer"),
        (["--trials", "0"], "`--trials` must be >= 1"),
        (["--workers", "0"], "`--workers` must be >= 1"),
        (["--distribution", "cauchy"], "`--distribution` must be one of"),
        (["--normalization", "none,,layernorm"], "`--normalization`: cannot parse"),
        (["--normalization", "batchnorm"], "`--normalization` must be one of"),
        (["--distribution", "from_keys", "--keys", "missing.npy"], "no such file"),
    ],
)
def test_cli_errors_are_one_line_and_leave_no_files(tmp_path, capsys, argv, match):
    out = tmp_path / "run"
    assert main(["montecarlo", "--out", str(out), "--workers", "1", "--no-progress", *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("geomln: error: ")
    assert re.search(match, err), err
    assert not out.exists()


def test_cli_unwritable_output_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["montecarlo", "--out", str(tmp_path / "file" / "run"), "--n", "5", "--d", "3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("geomln: error: `--out`: cannot create directory") and err.count("\n") == 1


def test_cli_interrupt_keeps_partial_results_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    original = cells.run_cell
    calls = []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(cells, "run_cell", interrupted)
    out = tmp_path / "run"
    argv = [
        "montecarlo",
        "--n",
        "5,6,7",
        "--d",
        "3",
        "--trials",
        "3",
        "--workers",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("geomln: interrupted after 2 of 6 cells") and err.count("\n") == 1
    partial = MonteCarloResult.from_csv(out / "results.csv")
    assert [(row.n, row.normalization) for row in partial] == [(5, "none"), (5, "layernorm")]
    monkeypatch.setattr(cells, "run_cell", original)
    resume = shlex.split(err.split("continue with: ")[1])
    assert resume[:2] == ["geomln", "montecarlo"] and resume[-1] == "--resume"
    assert main([*resume[1:], "--no-progress"]) == 0
    assert "(4 computed, 2 resumed)" in capsys.readouterr().out
    assert MonteCarloResult.from_json(out / "results.json").complete
