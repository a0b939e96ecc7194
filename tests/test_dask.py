"""Dask executor: grids and key analyses on a LocalCluster (loopback only) equal the local results.

The oracle is always the local path (in this process). Workers are real processes; one test kills a worker
in the middle of a task and another kills workers until the scheduler gives up, then resumes the checkpoint.
"""

import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

import geomln  # noqa: E402
import geomln.cli.montecarlo  # noqa: E402
from geomln import analyze_keys, cli, estimate_unselectable, save_keys  # noqa: E402
from geomln.executors import ClusterError, DaskMissingError, chunk, estimated_seconds  # noqa: E402

TESTS = Path(__file__).resolve().parent


class Doomed:
    """Gaussian keys, except that inside a Dask worker the process dies on the cell ``(n, d) == die_at``.

    ``mode="once"``: only the first time (a marker file records it), so the retried task succeeds.
    ``mode="poison"``: every time while the file `path` exists. Outside a worker it never dies, so the same
    sampler (same name, hence the same seed streams) gives the local oracle.
    """

    def __init__(self, path=None, die_at=None, mode="once"):
        self.path, self.die_at, self.mode = path, die_at, mode

    def __call__(self, rng, n, d):
        if (n, d) == self.die_at and _in_worker():
            if self.mode == "once" and not Path(self.path).exists():
                Path(self.path).write_text("died")
                os._exit(1)
            if self.mode == "poison" and Path(self.path).exists():
                time.sleep(1.0)  # the other cells take milliseconds: let their results reach the client first
                os._exit(1)
        return rng.standard_normal((n, d))


class Faulty:
    """Gaussian keys, except that inside a Dask worker the cell ``(n, d) == fail_at`` raises FileNotFoundError."""

    def __init__(self, fail_at=None):
        self.fail_at = fail_at

    def __call__(self, rng, n, d):
        if (n, d) == self.fail_at and _in_worker():
            raise FileNotFoundError(f"sampler data for n={n} is missing")
        return rng.standard_normal((n, d))


def _in_worker():
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on 127.0.0.1; workers can import this module (for `Doomed`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                         dashboard_address="127.0.0.1:0")
    client = distributed.Client(local, set_as_default=False)
    yield local, client
    client.close()
    local.close()


def table(result):
    """Every column but ``seconds``, exactly (repr keeps NaN comparable and floats bit-exact)."""
    return [repr(tuple(row)[:-1]) for row in result]


def report_rows(report):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in report.rows]


GRID = {"n": range(4, 40, 9), "d": [2, 3], "trials": 10, "seed": 11, "progress": False,
        "distribution": ["gaussian", "uniform_ball"], "normalization": ["none", "scaling"]}


def test_grid_on_a_client_equals_the_local_grid_bit_for_bit(cluster):
    local, client = cluster
    here = estimate_unselectable(**GRID, workers=1)
    there = estimate_unselectable(**GRID, executor=client)
    assert len(there) == 4 * 2 * 2 * 2
    assert table(there) == table(here)
    executor = there.provenance["executor"]
    assert {k: executor[k] for k in ("executor", "scheduler", "dask_workers")} == {
        "executor": "dask", "scheduler": local.scheduler_address, "dask_workers": 2}
    # how many cells share a task follows the workers' measured speed (a busy machine groups fewer): only the
    # bounds are machine-independent; `chunk` itself is tested on fixed costs (its doctest)
    assert 1 <= executor["tasks"] <= 2 * 4 * 2
    assert there.provenance["timings"]["workers_used"] == 2
    assert client.status == "running"  # a client passed in is left open


def test_scheduler_address_and_from_keys_pool(cluster, rng):
    local, _ = cluster
    pool = rng.normal(size=(50, 4))
    options = {"trials": 9, "seed": 2, "progress": False, "distribution": "from_keys", "keys": pool,
               "normalization": ["none", "layernorm"]}
    here = estimate_unselectable([5, 20, 50], 4, workers=1, **options)
    there = estimate_unselectable([5, 20, 50], 4, executor="dask", scheduler=local.scheduler_address, **options)
    assert table(there) == table(here)
    unnormalized = there.select(normalization="none")
    assert unnormalized[-1].n == 50 and unnormalized[-1].mean_vertices < 50  # interior rows of the pool


@pytest.fixture
def one_cell_per_task(monkeypatch):
    """Every cell its own task, so that a failure leaves finished cells behind whatever the machine's speed."""
    monkeypatch.setattr(geomln.executors, "TARGET_TASK_SECONDS", 0.0)


def test_worker_killed_mid_task_still_gives_the_full_identical_table(cluster, tmp_path, one_cell_per_task):
    local, client = cluster
    before = set(client.scheduler_info()["workers"])
    marker = tmp_path / "died"
    grid = {"n": range(5, 60, 6), "d": [3, 4], "trials": 6, "seed": 7, "progress": False}
    here = estimate_unselectable(**grid, distribution=Doomed(), workers=1)
    there = estimate_unselectable(**grid, distribution=Doomed(marker, die_at=(29, 3)), executor=client,
                                  checkpoint=tmp_path / "run.json")
    assert marker.read_text() == "died"  # a worker process really exited inside a task
    assert table(there) == table(here)
    assert len(there) == 10 * 2 and there.provenance["timings"]["cells_computed"] == 20
    client.wait_for_workers(2, timeout=60)
    assert set(client.scheduler_info()["workers"]) != before  # the nanny replaced the dead worker


def test_cluster_failure_keeps_the_checkpoint_and_resume_finishes_identically(cluster, tmp_path,
                                                                              one_cell_per_task):
    local, client = cluster
    poison = tmp_path / "poison"
    poison.write_text("")
    checkpoint = tmp_path / "run.json"
    grid = {"n": range(4, 60, 8), "d": [3, 5], "trials": 6, "seed": 9, "progress": False}
    sampler = Doomed(poison, die_at=(4, 3), mode="poison")  # the cheapest cell: the last task
    local.scheduler.allowed_failures = 0  # the first death of a task's worker gives the task up
    try:
        with pytest.raises(ClusterError, match=r"killing Dask workers.*finished cells are saved in `checkpoint`"):
            estimate_unselectable(**grid, distribution=sampler, executor=client, checkpoint=checkpoint)
    finally:
        local.scheduler.allowed_failures = dask.config.get("distributed.scheduler.allowed-failures")
    partial = geomln.MonteCarloResult.from_json(checkpoint)
    assert not partial.complete and 0 < len(partial) < 14
    assert all((row.n, row.d) != (4, 3) for row in partial)
    poison.unlink()
    client.wait_for_workers(2, timeout=60)
    resumed = estimate_unselectable(**grid, distribution=sampler, executor=client, checkpoint=checkpoint,
                                    resume=True)
    here = estimate_unselectable(**grid, distribution=Doomed(), workers=1)
    assert table(resumed) == table(here)
    assert resumed.provenance["timings"]["cells_resumed"] == len(partial)


def test_an_error_raised_in_a_task_propagates_unchanged(cluster, tmp_path):
    _, client = cluster
    checkpoint = tmp_path / "run.json"
    with pytest.raises(FileNotFoundError, match=r"sampler data for n=9 is missing"):  # an OSError, not a cluster one
        estimate_unselectable([5, 9], 3, trials=3, distribution=Faulty((9, 3)), executor=client,
                              checkpoint=checkpoint, progress=False)
    assert not checkpoint.exists()  # as in a local run: a failed fresh run leaves no partial file


def test_cli_cluster_failure_prints_the_resume_command(monkeypatch, tmp_path, capsys):
    def lose_the_cluster(*args, checkpoint, **kwargs):
        checkpoint.write_text("{}")
        raise ClusterError("lost the Dask cluster at tcp://127.0.0.1:8786 (CancelledError: x); the 3 finished "
                           "cells are saved")

    monkeypatch.setattr(geomln.cli.montecarlo, "estimate_unselectable", lose_the_cluster)
    out = tmp_path / "run"
    argv = ["montecarlo", "--n", "5:9", "--d", "3", "--out", str(out), "--executor", "dask", "--scheduler",
            "tcp://127.0.0.1:8786"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("geomln: error: lost the Dask cluster")
    assert err[0].endswith(f"--out {out} --executor dask --scheduler tcp://127.0.0.1:8786 --resume")
    assert (out / "results.json").exists()


def test_analyze_keys_on_dask_equals_the_local_report(cluster, rng):
    local, client = cluster
    values = rng.normal(size=(2, 3, 30, 3))
    values[:, :, 7] = values[:, :, :4].mean(axis=2)  # an interior key in every slice
    keys = geomln.KeyArray.from_array(values, axes="layer,head,token,dim", seq_offsets=[0, 12, 30])
    queries = geomln.KeyArray.from_array(rng.normal(size=(2, 3, 30, 3)), axes="layer,head,token,dim")
    options = {"causal": True, "queries": queries, "query_norm": 2.0, "normalization": "projection"}
    here = analyze_keys(keys, **options)
    calls = []
    there = analyze_keys(keys, **options, executor=client, progress=lambda done, total: calls.append((done, total)))
    assert report_rows(there) == report_rows(here)
    assert len(there.rows) == 12 and all(7 in row["unselectable_indices"] for row in there.rows[::2])
    assert calls == [(done, 12) for done in range(1, 13)]
    assert there.meta["executor"] == "dask" and here.meta["executor"] == "local"
    by_address = analyze_keys(keys, executor="dask", scheduler=local.scheduler_address)
    assert report_rows(by_address) == report_rows(analyze_keys(keys))


def test_cli_montecarlo_on_its_own_local_cluster_and_analyze_on_a_scheduler(cluster, tmp_path, capsys):
    local, _ = cluster
    common = ["montecarlo", "--n", "5:25:5", "--d", "3,4", "--trials", "10", "--no-plots", "--no-progress"]
    assert cli.main([*common, "--out", str(tmp_path / "here"), "--workers", "1"]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "there"), "--executor", "dask", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "with 1 worker(s)" in out
    here = geomln.MonteCarloResult.from_csv(tmp_path / "here" / "results.csv")
    there = geomln.MonteCarloResult.from_csv(tmp_path / "there" / "results.csv")
    assert table(there) == table(here) and len(here) == 5 * 2 * 2
    stored = json.loads((tmp_path / "there" / "results.json").read_text())
    own = stored["provenance"]["executor"]
    assert stored["complete"] and own["dask_workers"] == 1 and own["scheduler"].startswith("tcp://127.0.0.1:")
    assert own["scheduler"] != local.scheduler_address
    with pytest.raises((OSError, TimeoutError)), dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        distributed.Client(own["scheduler"], set_as_default=False)  # geomln closed the cluster it started

    path = tmp_path / "keys.npz"
    save_keys(path, {"keys": np.random.default_rng(3).normal(size=(2, 2, 15, 3))}, axes="layer,head,token,dim",
              dtype="float64")
    assert cli.main(["analyze", str(path), "--format", "json", "--out", str(tmp_path / "here.json")]) == 0
    assert cli.main(["analyze", str(path), "--format", "json", "--out", str(tmp_path / "there.json"),
                     "--executor", "dask", "--scheduler", local.scheduler_address]) == 0
    here_rows = json.loads((tmp_path / "here.json").read_text())["rows"]
    there_rows = json.loads((tmp_path / "there.json").read_text())["rows"]
    assert [dict(r, seconds=0) for r in there_rows] == [dict(r, seconds=0) for r in here_rows]


# ---- chunking -------------------------------------------------------------------------------------------
def test_chunks_hold_every_item_once_and_reach_the_target():
    costs = [0.5, 0.01, 0.3, 0.02, 0.05, 0.12, 0.07, 0.09]
    items = list("abcdefgh")
    chunks = chunk(items, costs, target=0.2)
    assert sorted(x for c in chunks for x in c) == items
    cost = dict(zip(items, costs, strict=True))
    sums = [sum(cost[x] for x in c) for c in chunks]
    assert all(s >= 0.2 for s in sums[:-1]) and chunks[0] == ["a"] and chunks[1] == ["c"]
    assert estimated_seconds(40, 10, 0.001) == pytest.approx(0.01)
    assert estimated_seconds(92, 1, 1.0) == pytest.approx(2.0)


# ---- error paths ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"executor": "spark"}, geomln.InputError, r"`executor` must be one of .*'local'.*'dask'.*'spark'"),
        ({"executor": 3}, TypeError, r"`executor` must be 'local', 'dask' or a distributed.Client; got int"),
        ({"scheduler": "tcp://127.0.0.1:8786"}, geomln.InputError, r"`scheduler` .* needs executor='dask'"),
        ({"executor": "dask", "scheduler": 8786}, TypeError, r"`scheduler` must be an address string"),
        ({"executor": "dask", "scheduler": " "}, geomln.InputError, r"`scheduler` must be an address"),
        ({"executor": "dask", "scheduler": "tcp://127.0.0.1:8786", "workers": 2}, geomln.InputError,
         r"`workers` sets the size of a local Dask cluster"),
    ],
)
def test_bad_executor_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        estimate_unselectable(5, 3, trials=2, progress=False, **kwargs)
    if "workers" not in kwargs:
        with pytest.raises(error, match=pattern):
            analyze_keys(np.eye(3), **kwargs)


def test_client_with_scheduler_or_workers_is_refused(cluster):
    local, client = cluster
    with pytest.raises(geomln.InputError, match=r"`scheduler` is not used when `executor` is a distributed"):
        estimate_unselectable(5, 3, trials=2, executor=client, scheduler=local.scheduler_address)
    with pytest.raises(geomln.InputError, match=r"`workers` sets the size .* a distributed.Client brings"):
        estimate_unselectable(5, 3, trials=2, executor=client, workers=2)


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    for call in (lambda: estimate_unselectable(5, 3, trials=2, executor="dask"),
                 lambda: analyze_keys(np.eye(3), executor="dask")):
        with pytest.raises(ImportError, match=r"`executor` 'dask' needs dask.distributed.*geomln\[dask\]"):
            call()
    with pytest.raises(DaskMissingError):
        analyze_keys(np.eye(3), executor="dask")


def test_missing_dask_is_one_cli_error_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    out = tmp_path / "new"
    assert cli.main(["montecarlo", "--n", "5", "--d", "3", "--out", str(out), "--executor", "dask"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.match(r"geomln: error: `--executor` 'dask' needs .*geomln\[dask\]", err[0])
    assert not out.exists()


def test_unreachable_scheduler_is_a_cluster_error(tmp_path, capsys):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ClusterError, match=r"cannot connect to the Dask scheduler at `scheduler` 'tcp://"):
            estimate_unselectable(5, 3, trials=2, executor="dask", scheduler=address, progress=False,
                                  checkpoint=tmp_path / "run.json")
        assert not (tmp_path / "run.json").exists()
        assert cli.main(["analyze", str(TESTS.parent / "data" / "minilm_keys.npz"), "--executor", "dask",
                         "--scheduler", address]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("geomln: error: cannot connect to the Dask scheduler")


def test_scheduler_without_workers_is_a_cluster_error():
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as empty:
        with pytest.raises(ClusterError, match=r"has no workers; start some with `dask worker tcp://127"):
            analyze_keys(np.eye(3), executor="dask", scheduler=empty.scheduler_address)
