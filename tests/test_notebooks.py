"""The tutorial notebooks run top to bottom in a fresh kernel, and are stored without outputs.

Each notebook is executed with nbclient from the ``notebooks/`` directory (so relative paths such as
``../data/minilm_keys.npz`` resolve as they do for a reader) with ``MPLBACKEND=Agg``. The notebooks assert
their own claims (identities, certificate checks, theory inside the Monte Carlo intervals), so a cell that
raises fails the test. Skipped, with the reason, when nbclient, nbformat or ipykernel is missing.
"""

import importlib.util
import re
from pathlib import Path

import pytest

_HINT = "(pip install 'geomln[test]')"
nbformat = pytest.importorskip("nbformat", reason=f"the notebook tests need nbformat {_HINT}")
nbclient = pytest.importorskip("nbclient", reason=f"the notebook tests need nbclient {_HINT}")
pytest.importorskip("ipykernel", reason=f"the notebook tests need ipykernel {_HINT}")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_layernorm_geometry.ipynb", "02_unselectable_keys.ipynb", "03_real_model_keys.ipynb"]
#: generous per-cell limit: a cold numba cache compiles the engine inside the first cell that uses it
CELL_TIMEOUT = 600

_spec = importlib.util.spec_from_file_location("strip_outputs", NOTEBOOKS / "strip_outputs.py")
strip_outputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(strip_outputs)
has_outputs, strip = strip_outputs.has_outputs, strip_outputs.strip


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert not has_outputs(notebook), f"run `python notebooks/strip_outputs.py` before committing {name}"


def test_has_outputs_and_strip_detect_and_clear_outputs():
    notebook = nbformat.read(NOTEBOOKS / NAMES[0], as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    assert has_outputs(notebook)
    strip(notebook)
    assert not has_outputs(notebook)
    cell.execution_count = 3
    assert has_outputs(notebook)
    assert not has_outputs(strip(notebook))


def _stderr_text(notebook):
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    )


#: one frame of a tqdm bar ("max_attention:  40%|####      | 32/80 [00:01<00:01, 25.1key/s]"); the bars appear
#: only for runs longer than a second, i.e. on a slow or busy machine, so they are not a notebook's own output
_BAR_FRAME = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")


def _without_progress_bars(text):
    return "\n".join(line for line in re.split(r"[\r\n]", text) if line.strip() and not _BAR_FRAME.search(line))


def test_progress_bar_frames_are_dropped_and_everything_else_kept():
    frames = "\rmax_attention:  40%|####      | 32/80 [00:01<00:01, 25.1key/s]\r" + " " * 60 + "\r"
    assert _without_progress_bars(frames) == ""
    assert _without_progress_bars(frames + "GeomlnWarning: 3 keys\n") == "GeomlnWarning: 3 keys"


def test_stderr_text_collects_only_stderr_streams():
    cell = nbformat.v4.new_code_cell("pass")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="fine\n"),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: oops\n"),
    ]
    assert _stderr_text(nbformat.v4.new_notebook(cells=[cell])) == "UserWarning: oops\n"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits the environment
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells and all(cell.execution_count is not None for cell in code_cells)
    # warnings (e.g. GeomlnWarning, matplotlib limits) and progress bars are noise for a reader
    assert _without_progress_bars(_stderr_text(notebook)) == ""
    assert not any(
        output.get("output_type") == "error" for cell in code_cells for output in cell.get("outputs", [])
    )
