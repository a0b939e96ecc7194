"""``geomln montecarlo`` into a folder that holds a previous run: refused, continued (--resume) or replaced."""

import pytest
from cli_helpers import assert_one_error_line, run

from geomln.cli.montecarlo import OUTPUTS
from geomln.errors import InputError
from geomln.montecarlo import _cells as cells
from geomln.montecarlo.estimate import MonteCarloResult


@pytest.fixture
def out(tmp_path):
    return tmp_path / "run"


def grid(out, n="4,5"):
    return ["montecarlo", "--n", n, "--d", "2", "--trials", "3", "--workers", "1", "--no-progress",
            "--out", str(out)]


def contents(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture
def previous(out, capsys):
    """A finished run with plots, plus a file of the user's own."""
    assert run(grid(out), capsys)[0] == 0
    (out / "notes.txt").write_text("mine")
    assert sorted(contents(out)) == sorted([*OUTPUTS, "notes.txt"])
    return contents(out)


def test_rerun_without_resume_or_overwrite_is_refused_and_changes_nothing(out, capsys, previous):
    code, _, err = run(grid(out, n="6"), capsys)
    assert code == 1
    assert_one_error_line(err, f"`--out` '{out}' holds a previous run", "results.csv", "heatmap_fraction.png",
                          "add --resume to continue it or --overwrite to replace it")
    assert contents(out) == previous


def test_a_folder_of_unrelated_files_is_not_a_previous_run(out, capsys):
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run([*grid(out), "--no-plots"], capsys)[0] == 0
    assert sorted(contents(out)) == ["notes.txt", "results.csv", "results.json"]


def test_overwrite_replaces_the_previous_run_and_keeps_other_files(out, capsys, previous):
    code, printed, _ = run([*grid(out, n="6"), "--no-plots", "--overwrite"], capsys)
    assert code == 0 and "(2 computed, 0 resumed)" in printed
    assert sorted(contents(out)) == ["notes.txt", "results.csv", "results.json"]  # no old PNGs beside it
    assert (out / "notes.txt").read_text() == "mine"
    assert [row.n for row in MonteCarloResult.from_csv(out / "results.csv")] == [6, 6]


def test_overwrite_that_fails_midway_leaves_no_half_written_file(out, capsys, previous, monkeypatch):
    def failing(context, label, n, *args):
        raise InputError("`sampler` failed")

    monkeypatch.setattr(cells, "run_cell", failing)
    code, _, err = run([*grid(out, n="6"), "--overwrite"], capsys)
    assert code == 1
    assert_one_error_line(err, "`sampler` failed")
    assert contents(out) == {"notes.txt": b"mine"}


def test_resume_that_grows_the_table_without_plots_drops_the_stale_plots(out, capsys, previous):
    code, printed, _ = run([*grid(out, n="4,5,6"), "--no-plots", "--resume"], capsys)
    assert code == 0 and "(2 computed, 4 resumed)" in printed
    assert sorted(contents(out)) == ["notes.txt", "results.csv", "results.json"]


def test_resume_and_overwrite_together_are_a_usage_error(out, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run([*grid(out), "--resume", "--overwrite"], capsys)
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not out.exists()
