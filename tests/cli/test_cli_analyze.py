"""``geomln analyze``: outputs (table, json, csv, plot), the bundled MiniLM file, and every error path."""

import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_error_line, run

from geomln import analyze_keys, cli, save_keys

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "minilm_keys.npz"






@pytest.fixture
def key_file(tmp_path, rng):
    """(layer=2, head=3, token=12, dim=2) keys in two sequences of 6; row 5 of every slice is interior."""
    values = rng.normal(size=(2, 3, 12, 2))
    values[:, :, [5, 11]] = values[:, :, [0, 6]] * 0.0 + np.stack(
        [values[:, :, 0:5].mean(axis=2), values[:, :, 6:11].mean(axis=2)], axis=2)
    path = tmp_path / "keys.npz"
    save_keys(path, {"keys": values, "queries": rng.normal(size=values.shape)}, axes="layer,head,token,dim",
              seq_offsets=[0, 6, 12], dtype="float64")
    return path


@pytest.mark.parametrize("flags", [[], ["--no-progress"]])
def test_progress_bar_on_a_terminal_unless_no_progress(key_file, capsys, monkeypatch, flags):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    code, out, err = run(["analyze", str(key_file), "--query-norm", "2", *flags], capsys)
    assert code == 0 and out.splitlines()[0].startswith(str(key_file))
    assert ("analyze" in err) == (not flags)


def test_table_on_stdout(key_file, capsys):
    code, out, err = run(["analyze", str(key_file)], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"{key_file} [keys]: layer=2 x head=3 x token=12 x dim=2; 12 slices")
    assert re.split(r"\s+", lines[1].strip())[:4] == ["layer", "head", "slices", "keys"]
    report = analyze_keys(str(key_file))
    assert len(lines) == 2 + 6 + 1
    for line, (layer, head) in zip(lines[2:8], [(a, b) for a in range(2) for b in range(3)], strict=True):
        cells = line.split()
        rows = [r for r in report.rows if (r["labels"]["layer"], r["labels"]["head"]) == (layer, head)]
        assert cells[:4] == [str(layer), str(head), "2", "12"]
        assert int(cells[6]) == sum(r["n_unselectable"] for r in rows) >= 2  # the two centroids at least
    assert lines[-1].startswith("total: ")


def test_json_to_out_matches_the_library_and_table_still_printed(key_file, tmp_path, capsys):
    out_path = tmp_path / "report.json"
    code, out, err = run(["analyze", str(key_file), "--format", "json", "--out", str(out_path), "--causal",
                          "--queries", "queries"], capsys)
    assert code == 0 and err == ""
    assert "causal unsel" in out.splitlines()[1]
    payload = json.loads(out_path.read_text())
    expected = analyze_keys(str(key_file), causal=True, queries="queries")
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in expected.rows]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in payload["rows"]] == strip
    assert set(payload) == {"schema_version", "rows", "meta"} and payload["meta"]["causal"] is True


def test_csv_to_stdout(key_file, capsys):
    code, out, _ = run(["analyze", str(key_file), "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 12 and {"layer", "head", "sequence", "unselectable_indices"} <= set(rows[0])


def test_plot_writes_a_png(key_file, tmp_path, capsys):
    plot = tmp_path / "heat.png"
    code, _, err = run(["analyze", str(key_file), "--plot", str(plot)], capsys)
    assert code == 0 and err == ""
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bias_file_and_normalization(tmp_path, capsys):
    keys = np.array([[0, 0], [4, 0], [0, 4], [4, 4], [2, 2]], dtype=float)
    np.save(tmp_path / "w.npy", keys)
    np.savetxt(tmp_path / "b.csv", [0, 0, 0, 0, 1.0])
    code, out, _ = run(["analyze", str(tmp_path / "w.npy"), "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["rows"][0]["unselectable_indices"] == [4]
    weights = str(tmp_path / "w.npy")
    code, out, _ = run(["analyze", weights, "--bias", str(tmp_path / "b.csv"), "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["rows"][0]["unselectable_indices"] == []
    code, out, _ = run(["analyze", weights, "--normalization", "projection", "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["meta"]["normalization"] == "projection"


def test_bundled_minilm_keys_and_hidden_states(capsys):
    code, out, err = run(["analyze", str(BUNDLED)], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "layer=6 x head=12 x token=160 x dim=32; 144 slices, stored as float16, tol=1e-03" in lines[0]
    assert len(lines) == 2 + 72 + 1
    for name in ("hidden_before_ln", "hidden_after_ln"):
        code, out, _ = run(["analyze", str(BUNDLED), "--name", name, "--format", "json"], capsys)
        payload = json.loads(out)
        assert code == 0 and len(payload["rows"]) == 12
        assert all(row["n"] == 80 and row["d"] == 384 for row in payload["rows"])


# --------------------------------------------------------------------------------------------- errors


def error_case(argv, capsys, tmp_path, *patterns):
    before = sorted(os.listdir(tmp_path))
    code, out, err = run(argv, capsys)
    assert code == 1
    assert_one_error_line(err, *patterns)
    assert sorted(os.listdir(tmp_path)) == before  # no partial (or temporary) file left
    return out


def test_error_bias_length_mismatch(key_file, tmp_path, capsys):
    np.save(tmp_path / "bias.npy", np.zeros(4))
    error_case(["analyze", str(key_file), "--bias", str(tmp_path / "bias.npy"), "--out",
                str(tmp_path / "r.json"), "--format", "json"], capsys, tmp_path,
               "`--bias` must hold one score per key", "every slice has 6 keys", "holds 4 scores")


def test_error_queries_with_another_d(key_file, tmp_path, capsys):
    np.save(tmp_path / "q.npy", np.zeros((5, 3)))
    error_case(["analyze", str(key_file), "--queries", str(tmp_path / "q.npy"), "--out",
                str(tmp_path / "r.txt")], capsys, tmp_path, r"`--queries` must have d = 2")


def test_error_unknown_query_array(key_file, tmp_path, capsys):
    error_case(["analyze", str(key_file), "--queries", "values"], capsys, tmp_path, r"`--queries` 'values' is not an",
               "available: keys, queries")


def test_error_axis_spec_mismatch(key_file, tmp_path, capsys):
    error_case(["analyze", str(key_file), "--axes", "layer,token,dim", "--plot", str(tmp_path / "p.png")],
               capsys, tmp_path, r"`--axes` names 3 axes")


def test_error_nan_names_slice_and_row(tmp_path, capsys):
    values = np.ones((2, 3, 4, 2))
    values[1, 0, 2, 1] = np.nan
    np.save(tmp_path / "nan.npy", values)
    error_case(["analyze", str(tmp_path / "nan.npy"), "--axes", "layer,head,token,dim"], capsys, tmp_path,
               r"NaN value\(s\) \(first at layer=1, head=0, row 2\)")


def test_error_unknown_suffix_and_missing_file(tmp_path, capsys):
    (tmp_path / "keys.bin").write_bytes(b"x")
    error_case(["analyze", str(tmp_path / "keys.bin")], capsys, tmp_path, "unsupported file type '.bin'",
               r"supported: \.npy, \.npz")
    error_case(["analyze", str(tmp_path / "none.npz")], capsys, tmp_path, "no such file")


def test_error_bad_plot_suffix_and_missing_out_directory(key_file, tmp_path, capsys):
    error_case(["analyze", str(key_file), "--plot", str(tmp_path / "p.jpg")], capsys, tmp_path,
               r"`--plot` must end in \.png")
    error_case(["analyze", str(key_file), "--out", str(tmp_path / "no" / "r.json")], capsys, tmp_path,
               r"`--out`: directory .* does not exist")


def test_usage_error_for_unknown_normalization(key_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["analyze", str(key_file), "--normalization", "batchnorm"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
