"""The CLI skeleton (version, help, usage errors, error reporting) and ``geomln angles``.

Expected numbers come from a float64 reference in ``cli_helpers`` (``math.atan2`` angles, ``eigh`` plane
fit), not from the library functions the command calls.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import assert_one_error_line, check_matrix_report, ref_report, run, summary

import geomln
from geomln.cli import _main as cli

# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def gaussian(rng):
    return rng.normal(size=(40, 6)) + 0.5


@pytest.fixture
def layer_normed(rng):
    return geomln.layer_norm(rng.normal(size=(30, 5)) * 2 + 1, eps=0.0)


def save_csv(path, points):
    np.savetxt(path, points, delimiter=",", fmt="%.17g")
    return path


# --------------------------------------------------------------------------------------------- skeleton


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    out, err = capsys.readouterr()
    assert out == f"geomln {geomln.__version__}\n" and err == ""


def test_help_lists_angles(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: geomln")
    assert re.search(r"^\s+angles\s+angles of a matrix's rows to 1", out, flags=re.MULTILINE)
    assert "--version" in out and "--traceback" in out


def test_angles_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["angles", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: geomln angles")
    for option in ("--json", "--out", "--name", "file"):
        assert option in out


def test_no_subcommand_prints_help_and_exits_2(capsys):
    code, out, err = run([], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("usage: geomln")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
        (["angles"], r"the following arguments are required: file"),
        (["angles", "x.csv", "--bogus"], r"unrecognized arguments: --bogus"),
        (["--bogus"], r"unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert re.search(message, err)
    assert "Traceback" not in err


def test_every_registered_subcommand_follows_the_protocol():
    import importlib

    for name, (module_name, help_text) in cli.SUBCOMMANDS.items():
        module = importlib.import_module(f"geomln.cli.{module_name}")
        assert callable(module.add_args) and callable(module.run), name
        assert help_text and "\n" not in help_text, name


def test_python_dash_m_version():
    done = subprocess.run(
        [sys.executable, "-m", "geomln", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"geomln {geomln.__version__}"


# --------------------------------------------------------------------------------------------- angles: output


def parse_text(out):
    lines = out.splitlines()
    header = re.fullmatch(r"(.+): n = (\d+) vectors, d = (\d+)", lines[0])
    assert header, lines[0]
    stats = {}
    for line in lines[1:4]:
        match = re.fullmatch(
            r"\s+(.+?)\s+mean\s+(\S+)\s+median\s+(\S+)\s+min\s+(\S+)\s+max\s+(\S+)",
            line,
        )
        assert match, line
        stats[match.group(1)] = [float(v) for v in match.groups()[1:]]
    plane = re.fullmatch(
        r"\s+fitted hyperplane: normal at (\S+) deg to 1, rms residual (\S+), offset (\S+)",
        lines[4],
    )
    assert plane, lines[4]
    assert len(lines) == 5
    return (
        header.group(1),
        int(header.group(2)),
        int(header.group(3)),
        stats,
        [float(v) for v in plane.groups()],
    )


def test_angles_text_on_csv(tmp_path, capsys, gaussian):
    path = save_csv(tmp_path / "keys.csv", gaussian)
    code, out, err = run(["angles", str(path)], capsys)
    assert code == 0 and err == ""
    name, n, d, stats, plane = parse_text(out)
    assert (name, n, d) == (str(path), 40, 6)
    ref = ref_report(gaussian)
    np.testing.assert_allclose(stats["angle to 1 (deg)"], summary(ref["angle_to_ones"]), atol=6e-4)
    np.testing.assert_allclose(
        stats["folded angle to 1 (deg)"], summary(ref["folded_angle_to_ones"]), atol=6e-4
    )
    np.testing.assert_allclose(
        stats["angle to fitted plane (deg)"], summary(ref["angle_to_hyperplane_through_origin"]), atol=6e-4
    )
    assert plane[0] == pytest.approx(ref["angle_of_normal_to_ones"], abs=6e-5)
    assert plane[1] == pytest.approx(ref["rms_residual"], rel=1e-3)
    assert abs(plane[2]) == pytest.approx(ref["offset_abs"], rel=1e-3, abs=1e-4)


def check_json(report, points, path):
    assert report["file"] == str(path)
    check_matrix_report(report, points)


def test_angles_json_on_npy(tmp_path, capsys, gaussian):
    path = tmp_path / "keys.npy"
    np.save(path, gaussian)
    code, out, err = run(["angles", str(path), "--json"], capsys)
    assert code == 0 and err == ""
    report = json.loads(out)
    check_json(report, gaussian, path)
    assert report["hyperplane"]["is_unique"] is True
    assert report["hyperplane"]["angle_of_normal_to_ones"] > 1.0


def test_angles_json_on_layer_norm_outputs(tmp_path, capsys, layer_normed):
    path = tmp_path / "ln.npy"
    np.save(path, layer_normed)
    code, out, _ = run(["angles", str(path), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    check_json(report, layer_normed, path)
    assert report["hyperplane"]["angle_of_normal_to_ones"] < 1e-9
    assert report["hyperplane"]["rms_residual"] < 1e-12
    assert report["angle_to_ones"]["min"] == pytest.approx(90.0, abs=1e-9)
    assert report["angle_to_hyperplane_through_origin"]["max"] < 1e-9


def test_angles_json_on_csv_and_npz_agree_with_npy(tmp_path, capsys, gaussian):
    np.save(tmp_path / "keys.npy", gaussian)
    save_csv(tmp_path / "keys.csv", gaussian)
    np.savez(tmp_path / "keys.npz", keys=gaussian, other=np.ones(3))
    reports = []
    for argv in (["keys.npy"], ["keys.csv"], ["keys.npz", "--name", "keys"]):
        code, out, _ = run(["angles", str(tmp_path / argv[0]), *argv[1:], "--json"], capsys)
        assert code == 0
        report = json.loads(out)
        del report["file"]
        reports.append(report)
    assert reports[0] == reports[1] == reports[2]


def test_angles_is_invariant_to_row_order(tmp_path, capsys, rng, gaussian):
    np.save(tmp_path / "a.npy", gaussian)
    np.save(tmp_path / "b.npy", gaussian[rng.permutation(len(gaussian))])
    reports = []
    for name in ("a.npy", "b.npy"):
        code, out, _ = run(["angles", str(tmp_path / name), "--json"], capsys)
        assert code == 0
        reports.append(json.loads(out))
    for key in ("angle_to_ones", "folded_angle_to_ones", "angle_to_hyperplane_through_origin"):
        for stat in ("mean", "median", "min", "max"):
            assert reports[0][key][stat] == pytest.approx(reports[1][key][stat], abs=1e-9)
    assert reports[0]["hyperplane"]["rms_residual"] == pytest.approx(reports[1]["hyperplane"]["rms_residual"])


@pytest.mark.parametrize("as_json", [False, True])
def test_angles_out_writes_the_same_as_stdout(tmp_path, capsys, gaussian, as_json):
    path = save_csv(tmp_path / "keys.csv", gaussian)
    flags = ["--json"] if as_json else []
    _, expected, _ = run(["angles", str(path), *flags], capsys)
    target = tmp_path / "result.out"
    target.write_text("stale")
    code, out, err = run(["angles", str(path), *flags, "--out", str(target)], capsys)
    assert code == 0 and out == "" and err == ""
    assert target.read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.csv", "result.out"]


def test_angles_out_dash_is_stdout(tmp_path, capsys, gaussian):
    path = save_csv(tmp_path / "keys.csv", gaussian)
    code, out, _ = run(["angles", str(path), "--json", "--out", "-"], capsys)
    assert code == 0 and json.loads(out)["n"] == 40


# --------------------------------------------------------------------------------------------- angles: errors


def _write(path, content):
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


BAD_INPUTS = {
    "missing": ("absent.csv", None, [], [r"no such file: '.*absent\.csv'"]),
    "unsupported": ("keys.xlsx", "x", [], [r"unsupported file type '\.xlsx'", r"supported: \.npy"]),
    "1-D": (
        "vec.npy",
        np.arange(5.0),
        [],
        [r"file '.*vec\.npy' must have at least 2 dimensions \(token, dim\); got shape \(5,\)"],
    ),
    "d=1": (
        "col.csv",
        "1\n2\n3\n",
        [],
        [r"`file` must have at least 2 column\(s\) \(d >= 2\); got shape \(3, 1\)"],
    ),
    "one row": ("row.csv", "1,2,3\n", [], [r"`file` must have at least 2 row\(s\); got shape \(1, 3\)"]),
    "NaN": ("nan.csv", "1,2\n3,nan\n5,6\n", [], [r"file '.*nan\.csv' contains 1 NaN value\(s\) \(first at row 1\)"]),
    "inf": (
        "inf.npy",
        np.array([[1.0, 2.0], [3.0, 4.0], [np.inf, 0.0]]),
        [],
        [r"1 infinite value\(s\) \(first at row 2\)"],
    ),
    "strings": (
        "str.npy",
        np.array([["a", "b"], ["c", "d"]]),
        [],
        [r"file '.*str\.npy' must be a floating-point array; got dtype <U1"],
    ),
    "complex": (
        "c.npy",
        np.ones((3, 2), dtype=complex),
        [],
        [r"file '.*c\.npy' must be real-valued; got complex dtype"],
    ),
    "zero row": ("zero.csv", "1,2\n0,0\n3,1\n", [], [r"`vectors` has 1 zero vector\(s\) \(first at row 1\)"]),
    "corrupt npy": ("bad.npy", b"not numpy at all", [], [r"cannot read '.*bad\.npy'"]),
    "truncated npz": ("bad.npz", b"PK\x03\x04 truncated", [], [r"cannot read '.*bad\.npz'"]),
    "ragged csv": ("ragged.csv", "1,2,3\n4,5\n", [], [r"cannot read '.*ragged\.csv'"]),
    "empty csv": ("empty.csv", "", [], [r"'.*empty\.csv' holds no numbers"]),
    "npz without name": (
        "two.npz",
        None,
        [],
        [r"holds 2 arrays; choose one with --name \.\.\. \(available: a, b\)"],
    ),
    "npz wrong name": ("two.npz", None, ["--name", "c"], [r"`--name` 'c' is not an array of .* \(available: a, b\)"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=BAD_INPUTS)
@pytest.mark.parametrize("as_json", [False, True])
def test_angles_errors_are_one_line_exit_1_and_leave_no_output(tmp_path, capsys, case, as_json):
    filename, content, extra, patterns = BAD_INPUTS[case]
    path = tmp_path / filename
    if filename == "two.npz":
        np.savez(path, a=np.ones((3, 2)), b=np.ones((3, 2)))
    elif content is not None:
        _write(path, content)
    target = tmp_path / "out" / "result.txt"
    target.parent.mkdir()
    argv = ["angles", str(path), *extra, "--out", str(target), *(["--json"] if as_json else [])]
    code, out, err = run(argv, capsys)
    assert code == 1
    assert out == ""
    assert_one_error_line(err, *patterns)
    assert list(target.parent.iterdir()) == []


def test_angles_error_keeps_an_existing_output_file(tmp_path, capsys):
    target = tmp_path / "result.json"
    target.write_text("previous")
    code, _, err = run(["angles", str(tmp_path / "absent.npy"), "--out", str(target)], capsys)
    assert code == 1
    assert_one_error_line(err, r"no such file")
    assert target.read_text() == "previous"


def test_angles_out_into_missing_directory(tmp_path, capsys, gaussian):
    path = save_csv(tmp_path / "keys.csv", gaussian)
    target = tmp_path / "missing" / "result.txt"
    code, out, err = run(["angles", str(path), "--out", str(target)], capsys)
    assert code == 1 and out == ""
    assert_one_error_line(err, r"cannot write '.*result\.txt'")
    assert not target.parent.exists()


def test_angles_failure_while_writing_leaves_no_partial_file(tmp_path, capsys, gaussian, monkeypatch):
    from geomln.cli import _output

    path = save_csv(tmp_path / "keys.csv", gaussian)
    target = tmp_path / "result.json"

    class Exploding:
        def __init__(self, stream):
            self.stream = stream

        def write(self, text):
            self.stream.write(text[: len(text) // 2])
            raise OSError(28, "No space left on device")

    real = _output.atomic_output

    def half_writer(out):
        class Context:
            def __enter__(self):
                self.inner = real(out)
                return Exploding(self.inner.__enter__())

            def __exit__(self, *exc):
                return self.inner.__exit__(*exc)

        return Context()

    monkeypatch.setattr(_output, "atomic_output", half_writer)
    code, out, err = run(["angles", str(path), "--json", "--out", str(target)], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.csv"]


# ------------------------------------------------------------------------------------ main's error policy


@pytest.fixture
def broken_angles(monkeypatch):
    """Make `geomln angles` raise the exception stored in the returned dict under "exc"."""
    import geomln.cli.angles as module

    box = {}

    def run_(args):
        raise box["exc"]

    monkeypatch.setattr(module, "run", run_)
    return box


def test_unexpected_error_is_one_internal_error_line(capsys, broken_angles, tmp_path):
    broken_angles["exc"] = RuntimeError("kaboom")
    code, out, err = run(["angles", str(tmp_path / "x.npy")], capsys)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines == ["geomln: internal error: RuntimeError: kaboom (rerun with --traceback)"]


def test_traceback_flag_reraises_unexpected_errors(broken_angles, tmp_path):
    broken_angles["exc"] = RuntimeError("kaboom")
    with pytest.raises(RuntimeError, match="kaboom"):
        cli.main(["--traceback", "angles", str(tmp_path / "x.npy")])
    broken_angles["exc"] = TypeError("wrong kind")
    with pytest.raises(TypeError, match="wrong kind"):
        cli.main(["--traceback", "angles", str(tmp_path / "x.npy")])


def test_traceback_flag_keeps_expected_errors_short(capsys, broken_angles, tmp_path):
    broken_angles["exc"] = geomln.InputError("`keys` is bad")
    code, _, err = run(["--traceback", "angles", str(tmp_path / "x.npy")], capsys)
    assert code == 1
    assert_one_error_line(err, r"`keys` is bad")


def test_keyboard_interrupt_exits_130(capsys, broken_angles, tmp_path):
    broken_angles["exc"] = KeyboardInterrupt()
    code, _, err = run(["angles", str(tmp_path / "x.npy")], capsys)
    assert code == 130
    assert err == "geomln: error: interrupted\n"
