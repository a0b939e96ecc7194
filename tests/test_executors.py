"""The local process pool: no main guard in any of the four ways people run Python, and a clean Ctrl-C.

The four forms (a script file without ``if __name__ == "__main__":``, ``python -c``, stdin and a notebook
kernel) each run ``estimate_unselectable`` with two workers in a fresh interpreter and print the table as
JSON; it must equal, value for value, the same call computed in this process with ``workers=1``. The
interrupt tests send a real SIGINT to ``geomln montecarlo`` and read what it says against what it saved.
"""

import json
import math
import operator
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from pathlib import Path

import pytest

from geomln.executors import process_pool_map
from geomln.montecarlo.estimate import MonteCarloResult, estimate_unselectable

CALL = dict(n=[6, 9], d=3, trials=150, seed=3, normalization=["none", "layernorm"], progress=False)
SCRIPT = f"""
import json, math, geomln
result = geomln.estimate_unselectable(**{CALL!r}, workers=2)
assert result.provenance["timings"]["workers_used"] == 2
print(json.dumps([[None if isinstance(v, float) and math.isnan(v) else v for v in row[:-1]] for row in result]))
"""


def _table(result):
    return [[None if isinstance(v, float) and math.isnan(v) else v for v in row[:-1]] for row in result]


@pytest.fixture(scope="module")
def expected():
    return _table(estimate_unselectable(**CALL, workers=1))


def _printed_table(completed):
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr and "bootstrapping" not in completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _python(*args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, **kw)


def test_a_script_without_a_main_guard(tmp_path, expected):
    script = tmp_path / "tour.py"
    script.write_text(SCRIPT)
    assert _printed_table(_python(str(script), cwd=tmp_path)) == expected


def test_python_dash_c(tmp_path, expected):
    assert _printed_table(_python("-c", SCRIPT, cwd=tmp_path)) == expected


def test_python_reading_stdin(tmp_path, expected):
    assert _printed_table(_python("-", input=SCRIPT, cwd=tmp_path)) == expected


def test_a_notebook_kernel(expected):
    nbformat = pytest.importorskip("nbformat", reason="needs nbformat (pip install 'geomln[test]')")
    nbclient = pytest.importorskip("nbclient", reason="needs nbclient (pip install 'geomln[test]')")
    pytest.importorskip("ipykernel", reason="needs ipykernel (pip install 'geomln[test]')")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SCRIPT)])
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    printed = "".join(out.get("text", "") for out in notebook.cells[0].outputs if out.get("name") == "stdout")
    assert json.loads(printed.strip().splitlines()[-1]) == expected


def test_process_pool_map_yields_every_task_once():
    assert sorted(process_pool_map(operator.mul, [(i, 3) for i in range(7)], 2, int, ())) == [
        ((i, 3), 3 * i) for i in range(7)
    ]


def test_prepare_runs_here_before_any_task_is_submitted(tmp_path):
    marker = tmp_path / "prepared"
    here = os.getpid()

    def prepare_here(side):
        assert not marker.exists()
        assert side.result() != here  # the side ran in a worker
        marker.write_text(str(os.getpid()))

    results = dict(process_pool_map(os.path.exists, [(str(marker),)] * 4, 2, int, (),
                                    prepare=(os.getpid, prepare_here)))
    assert results == {(str(marker),): True}
    assert marker.read_text() == str(here)


def test_a_dead_worker_raises_broken_process_pool_and_leaves_no_worker():
    results = process_pool_map(os._exit, [(3,)], 1, int, ())
    with pytest.raises(BrokenProcessPool), closing(results):
        list(results)


def test_stopping_with_many_tasks_queued_prints_nothing():
    # loky's manager thread raised KeyError (a thread traceback and a leaked semaphore on stderr) when it
    # was killed while task ids still waited in its queue, in 3 or 4 of every 5 such rounds before the fix
    rounds = """
import operator
from contextlib import closing
from geomln.executors import process_pool_map
for _ in range(8):
    with closing(process_pool_map(operator.mul, [(2, 3)] * 2000, 2, int, ())) as results:
        assert next(results) == ((2, 3), 6)
"""
    done = subprocess.run([sys.executable, "-c", rounds], capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


class _SlowToPickle:
    """Pickles to the int 3, slowly: the call queue's feeder thread is busy with it when the pool stops."""

    def __reduce__(self):
        time.sleep(0.2)
        return int, (3,)


def test_no_queue_feeder_thread_outlives_a_pool_stopped_early():
    # the feeder thread holds the call queue's semaphores; left running, it unlinked them while the
    # interpreter exited and loky's resource tracker printed "leaked semlock objects" (seen once in CI)
    tasks = [(2, _SlowToPickle())] * 20
    with closing(process_pool_map(operator.mul, tasks, 2, int, ())) as results:
        assert next(results) == (tasks[0], 6)
    assert not [thread for thread in threading.enumerate() if thread.name == "QueueFeederThread"]


#: one cell that runs for about a minute beside small ones that finish at once, so that a run is
#: interrupted while a checkpoint exists and cells are still running
LONG_RUN = ["montecarlo", "--n", "10,20,30,40000", "--d", "8", "--trials", "100", "--normalization", "none",
            "--workers", "2", "--no-progress"]


def _children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


def _worker_processes_started(process, out):
    commands = [Path(f"/proc/{child}/cmdline").read_bytes() for child in _children(process.pid)]
    return sum(b"popen_loky" in command for command in commands) >= 2


def _checkpoint_written(process, out):
    return (out / "results.json").exists()


def _numpy_loading(process, out):
    """Whether the CLI is importing its subcommand: numpy's compiled core is mapped into the process.

    Before that moment the interpreter itself may still be starting (importing ``site``), where a SIGINT
    is Python's own fatal error, not geomln's to handle; on a cold machine that lasts well over 0.3 s.
    """
    return "_multiarray_umath" in Path(f"/proc/{process.pid}/maps").read_text()


def _interrupt(tmp_path, when, settle=0.5):
    """Start the long run, wait until `when(process, out)` holds and `settle` seconds more, send SIGINT;
    return code, stdout, stderr, out."""
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "geomln", *LONG_RUN, "--out", str(out)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not when(process, out):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(settle)  # e.g. let the parent leave the milliseconds in which it spawns workers with SIGINT ignored
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr, out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc (Linux)")
@pytest.mark.parametrize("when", [_worker_processes_started, _checkpoint_written])
def test_ctrl_c_prints_one_true_line_and_exits_130(tmp_path, when):
    code, stdout, stderr, out = _interrupt(tmp_path, when)
    assert code == 130, stderr
    assert stdout == "" and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    saved = out / "results.json"
    if "nothing was saved" in stderr:
        assert when is _worker_processes_started and not saved.exists()
        return
    done = int(stderr.split("geomln: interrupted after ")[1].split(" of ")[0])
    assert 1 <= done < 4 and len(MonteCarloResult.from_json(saved)) == done
    assert len(MonteCarloResult.from_csv(out / "results.csv")) == done
    command = shlex.split(stderr.split("continue with: ")[1])
    assert command[:2] == ["geomln", "montecarlo"] and command[-1] == "--resume"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the memory map from /proc (Linux)")
def test_ctrl_c_while_the_subcommands_are_imported(tmp_path):
    code, stdout, stderr, _ = _interrupt(tmp_path, _numpy_loading, settle=0)
    assert (code, stdout) == (130, ""), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr


def _import_turning_ctrl_c_into_import_error(argv):
    # what numpy's C core does when the Ctrl-C lands in its PyCapsule_Import of datetime
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs at the next bytecode boundary
    except KeyboardInterrupt:
        raise ImportError('PyCapsule_Import could not import module "datetime"') from None
    raise AssertionError("no SIGINT arrived")


def test_ctrl_c_turned_into_an_import_error_is_an_interrupt(monkeypatch, capsys):
    from geomln.cli import _main

    monkeypatch.setattr(_main, "_build_parser", _import_turning_ctrl_c_into_import_error)
    assert _main.main(["montecarlo"]) == 130
    assert capsys.readouterr().err == "geomln: error: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the import's own handler is gone


def test_an_import_error_without_ctrl_c_is_not_an_interrupt(monkeypatch):
    from geomln.cli import _main

    def broken(argv):
        raise ImportError("no module named 'something'")

    monkeypatch.setattr(_main, "_build_parser", broken)
    with pytest.raises(ImportError, match="something"):
        _main.main(["montecarlo"])


# a Ctrl-C that escaped a nested evaluation, as one may while numpy's extension module imports, then handled
ESCAPED_INTERRUPT = """
import ctypes, sys
run = ctypes.pythonapi.PyRun_String
run.restype, run.argtypes = ctypes.py_object, [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]
try:
    run(b"raise KeyboardInterrupt", 257, {}, {})  # 257: Py_file_input
except KeyboardInterrupt:
    pass
if sys.argv[1:] == ["forget"]:
    from geomln.cli._main import forget_handled_interrupt
    forget_handled_interrupt()
raise SystemExit(130)
"""


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's record of an unhandled Ctrl-C")
def test_a_handled_ctrl_c_exits_130_under_python_dash_m(tmp_path):
    (tmp_path / "interrupted.py").write_text(ESCAPED_INTERRUPT)
    run = [sys.executable, "-m", "interrupted"]
    assert subprocess.run(run, cwd=tmp_path).returncode == -signal.SIGINT  # what `python -m geomln` did
    assert subprocess.run([*run, "forget"], cwd=tmp_path).returncode == 130
