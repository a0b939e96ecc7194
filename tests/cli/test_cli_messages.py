"""Errors that reach the command line name its flags, never the library's Python parameters."""

import re

import numpy as np
import pytest
from cli_helpers import assert_one_error_line, run

import geomln
from geomln.cli import _main as cli
from geomln.cli import montecarlo as montecarlo_command
from geomln.errors import ClusterError

#: what a Python spelling looks like: a backticked parameter without dashes, or name=value
PYTHON_SPELLING = r"`[A-Za-z_]\w*`|(?<![\w.\-/])[A-Za-z_]\w*=\S"


def assert_speaks_cli(err, *patterns):
    """One ``geomln: error:`` line matching `patterns`, with no Python parameter spelling left in it."""
    assert_one_error_line(err, *patterns)
    assert not re.search(PYTHON_SPELLING, err), err


# --------------------------------------------------------------------------------------------- speak_cli


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("distribution 'from_keys' needs `keys`", "distribution 'from_keys' needs `--keys`"),
        ("`query_norm` must be > 0", "`--query-norm` must be > 0"),
        ("needs executor='dask' (got executor=\"local\")", "needs --executor dask (got --executor local)"),
        ("choose one with name=... (available: a, b)", "choose one with --name ... (available: a, b)"),
        ("rerun with resume=True", "rerun with --resume"),
        ("another path (or resume=False)", "another path (or --overwrite)"),
        ("turn it off with causal=False", "turn it off with without --causal"),
        ("pass workers=1", "pass --workers 1"),
    ],
)
def test_speak_cli_rewrites_mentions_of_mapped_parameters(message, expected):
    flags = {"keys": "--keys", "query_norm": "--query-norm", "executor": "--executor", "name": "--name",
             "resume": "--resume", "resume=False": "--overwrite", "causal": "--causal", "workers": "--workers"}
    assert cli.speak_cli(message, flags) == expected


@pytest.mark.parametrize(
    "message",
    [
        "`sampler` returned NaN",  # not a flag
        "slice layer=0, head=1",  # names that are not flags
        "no such file: '/tmp/name=3/keys.npy'",  # inside a path
        "already `--keys`, and --name=x",  # already a flag
        "`keys.values` and keys.name='a'",  # attributes, not parameters
    ],
)
def test_speak_cli_leaves_everything_else_alone(message):
    assert cli.speak_cli(message, {"keys": "--keys", "name": "--name"}) == message


# --------------------------------------------------------------------------------------------- subcommands


@pytest.fixture
def key_file(tmp_path, rng):
    path = tmp_path / "keys.npz"
    geomln.save_keys(path, {"keys": rng.standard_normal((2, 6, 3))}, axes="head,token,dim", seq_offsets=[0, 2, 6])
    return path


@pytest.fixture
def grid(tmp_path):
    return ["montecarlo", "--n", "4,5", "--d", "2", "--trials", "3", "--workers", "1", "--no-progress",
            "--no-plots", "--out", str(tmp_path / "run")]


@pytest.mark.parametrize(
    ("argv", "patterns"),
    [
        (["--distribution", "from_keys"], ["needs `--keys`"]),
        (["--distribution", "cauchy"], ["`--distribution` must be one of 'gaussian'"]),
        (["--normalization", "batchnorm"], ["`--normalization` must be one of 'none'"]),
        (["--keys", "keys.npy"], ["`--keys` is only used by --distribution from_keys"]),
        (["--scheduler", "tcp://127.0.0.1:1"], ["`--scheduler`.*needs --executor dask"]),
        (["--d", "1,2", "--normalization", "layernorm"], ["`--normalization` 'layernorm' needs d >= 2.*`--d`"]),
    ],
)
def test_montecarlo_input_errors_name_flags(capsys, grid, argv, patterns):
    code, _, err = run([*grid, *argv], capsys)
    assert code == 1
    assert_speaks_cli(err, *patterns)


def test_montecarlo_resume_with_other_arguments_names_flags(capsys, grid):
    assert run(grid, capsys)[0] == 0
    code, _, err = run([*grid[:6], "4", *grid[7:], "--resume"], capsys)
    assert code == 1
    assert_speaks_cli(err, r"`--out` .*results\.json' was made with trials 3 \(now 4\)", r"\(or --overwrite\)")


def test_montecarlo_lost_cluster_names_the_resume_flag(capsys, grid, monkeypatch):
    def lost(*args, checkpoint, **kwargs):
        checkpoint.write_text("{}")
        raise ClusterError(f"lost the Dask cluster; the 1 finished cells are saved in `checkpoint` "
                           f"{str(checkpoint)!r}: rerun with resume=True to compute only the others")

    monkeypatch.setattr(montecarlo_command, "estimate_unselectable", lost)
    code, _, err = run(grid, capsys)
    assert code == 1
    assert_speaks_cli(err, "saved in `--out`", "rerun with --resume to compute only the others: geomln montecarlo")


@pytest.mark.parametrize(
    ("argv", "patterns"),
    [
        (["--bias", "bias.npy"], ["`--bias` must hold one score per key", "2 or 4 keys", "choose with --name"]),
        (["--tol", "-1"], ["`--tol` must be a finite number >= 0"]),
        (["--query-norm", "-1"], ["`--query-norm` must be a finite number > 0"]),
        (["--axes", "a,b"], ["`--axes` must name a 'token' axis"]),
        (["--scheduler", "tcp://127.0.0.1:1"], ["`--scheduler`.*needs --executor dask \\(got --executor local\\)"]),
    ],
)
def test_analyze_errors_name_flags(tmp_path, capsys, key_file, argv, patterns):
    np.save(tmp_path / "bias.npy", np.zeros(3))
    code, _, err = run(["analyze", str(key_file), *[str(tmp_path / a) if a.endswith(".npy") else a for a in argv]],
                       capsys)
    assert code == 1
    assert_speaks_cli(err, *patterns)


def test_analyze_bias_of_the_wrong_length_for_equal_slices(tmp_path, capsys, rng):
    geomln.save_keys(tmp_path / "keys.npz", {"keys": rng.standard_normal((2, 4, 3))}, axes="head,token,dim")
    np.save(tmp_path / "bias.npy", np.zeros(3))
    code, _, err = run(["analyze", str(tmp_path / "keys.npz"), "--bias", str(tmp_path / "bias.npy")], capsys)
    assert code == 1
    assert_speaks_cli(err, "every slice has 4 keys", "holds 3 scores", "--name")


@pytest.mark.parametrize("name", [None, "keys"])
def test_analyze_file_choice_names_the_name_flag(tmp_path, capsys, name):
    if name is None:
        np.savez(tmp_path / "many.npz", a=np.eye(3), b=np.eye(3))
        argv, pattern = [str(tmp_path / "many.npz")], r"choose one with --name \.\.\. \(available: a, b\)"
    else:
        np.save(tmp_path / "one.npy", np.eye(3))
        argv, pattern = [str(tmp_path / "one.npy"), "--name", name], "omit `--name`"
    code, _, err = run(["analyze", *argv], capsys)
    assert code == 1
    assert_speaks_cli(err, pattern)
