"""``geomln angles`` on key files: the layouts ``geomln analyze`` reads, one row per slice plus a summary.

Every slice's numbers are checked against the float64 reference of ``cli_helpers`` on that slice's own
matrix, cut from the stored array by hand (not through :meth:`KeyArray.slices`).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_error_line, check_matrix_report, ref_report, run, summary

from geomln import save_keys

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "minilm_keys.npz"
STATS = ("angle_to_ones", "folded_angle_to_ones", "angle_to_hyperplane_through_origin")


@pytest.fixture
def head_file(tmp_path, rng):
    """(head=2, token=9, dim=3) keys in two sequences of 5 and 4 tokens (n > d: one plane fits each), stored
    as (token, head, dim)."""
    values = rng.normal(size=(9, 2, 3)) + 0.3
    path = tmp_path / "keys.npz"
    save_keys(path, {"keys": values, "other": values[:, :1] * 2}, axes="token,head,dim", seq_offsets=[0, 5, 9])
    return path, values


def _json(argv, capsys):
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0 and err == "", err
    return json.loads(out)


def test_every_slice_and_the_summary_agree_with_the_reference(head_file, capsys):
    path, values = head_file
    report = _json(["angles", str(path)], capsys)
    assert (report["name"], report["axes"], report["shape"]) == ("keys", ["head", "token", "dim"], [2, 9, 3])
    assert report["n_slices"] == 4 and report["source_dtype"] == "float32"
    stored = values.astype(np.float32).astype(np.float64)  # save_keys stores float32
    expected = [({"head": h, "sequence": s}, stored[start:stop, h])
                for h in range(2) for s, (start, stop) in enumerate([(0, 5), (5, 9)])]
    assert [row["labels"] for row in report["slices"]] == [labels for labels, _ in expected]
    for row, (_, matrix) in zip(report["slices"], expected, strict=True):
        check_matrix_report(row, matrix)
    refs = [ref_report(matrix) for _, matrix in expected]
    pooled = report["summary"]
    assert (pooled["n"], pooled["d"]) == (18, 3)
    for key in STATS:  # over all vectors; each vector is measured against its own slice's plane
        got = [pooled[key][stat] for stat in ("mean", "median", "min", "max")]
        np.testing.assert_allclose(got, summary(np.concatenate([ref[key] for ref in refs])), atol=1e-9)
    normals = [ref["angle_of_normal_to_ones"] for ref in refs]
    assert pooled["hyperplane"]["angle_of_normal_to_ones"]["max"] == pytest.approx(max(normals), abs=1e-7)
    assert pooled["hyperplane"]["n_not_unique"] == 0


def test_text_has_one_line_per_slice_then_the_summary(head_file, capsys):
    path, _ = head_file
    code, out, err = run(["angles", str(path), "--name", "other"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{path} [other]: head=1 x token=9 x dim=3; 2 slices, stored as float32"
    assert lines[1].split()[:4] == ["head", "sequence", "n", "d"]
    assert [line.split()[:4] for line in lines[2:4]] == [["0", "0", "5", "3"], ["0", "1", "4", "3"]]
    assert lines[4] == "all 2 slices: n = 9 vectors, d = 3"
    assert lines[5].lstrip().startswith("angle to 1 (deg)") and lines[7].lstrip().startswith("angle to fitted")
    assert lines[8].startswith("  fitted hyperplanes: normal at ") and len(lines) == 9


def test_out_is_written_atomically_and_equals_stdout(head_file, tmp_path, capsys):
    path, _ = head_file
    for flags in ([], ["--json"]):
        _, expected, _ = run(["angles", str(path), *flags], capsys)
        target = tmp_path / "angles.out"
        code, out, err = run(["angles", str(path), *flags, "--out", str(target)], capsys)
        assert code == 0 and out == "" and err == ""
        assert target.read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["angles.out", "keys.npz"]


def test_axes_option_reads_a_plain_stacked_npy(tmp_path, rng, capsys):
    values = rng.normal(size=(3, 5, 2)) + 1.0  # (token, head, dim) without metadata
    np.save(tmp_path / "k.npy", values)
    report = _json(["angles", str(tmp_path / "k.npy"), "--axes", "token,head,dim"], capsys)
    assert [row["labels"] for row in report["slices"]] == [{"head": h} for h in range(5)]
    check_matrix_report(report["slices"][4], values[:, 4])


def test_the_bundled_minilm_file(capsys):
    report = _json(["angles", str(BUNDLED)], capsys)
    assert report["n_slices"] == 6 * 12 * 2 and report["summary"]["n"] == 6 * 12 * 160
    assert report["slices"][3]["labels"] == {"layer": 0, "head": 1, "sequence": 1}
    with np.load(BUNDLED) as archive:
        keys, queries = archive["keys"].astype(np.float64), archive["queries"].astype(np.float64)
    check_matrix_report(report["slices"][3], keys[0, 1, 80:])
    code, out, err = run(["angles", str(BUNDLED), "--name", "queries"], capsys)
    assert code == 0 and err == "" and out.splitlines()[1].split()[:3] == ["layer", "head", "sequence"]
    report = _json(["angles", str(BUNDLED), "--name", "queries"], capsys)
    check_matrix_report(report["slices"][-1], queries[5, 11, 80:])


def test_hidden_states_have_a_row_per_layer_and_sequence(tmp_path, rng, capsys):
    hidden = rng.normal(size=(2, 10, 4))  # (layer, token, dim), like the bundled hidden_after_ln
    save_keys(tmp_path / "h.npz", {"keys": hidden[:, :, :3], "hidden_after_ln": hidden}, seq_offsets=[0, 6, 10],
              axes={"keys": "layer,token,dim", "hidden_after_ln": "layer,token,dim"})
    report = _json(["angles", str(tmp_path / "h.npz"), "--name", "hidden_after_ln"], capsys)
    assert [row["labels"] for row in report["slices"]] == [
        {"layer": layer, "sequence": s} for layer in range(2) for s in range(2)]
    check_matrix_report(report["slices"][2], hidden[1, :6].astype(np.float32).astype(np.float64))


def test_unknown_name_lists_the_arrays_without_the_metadata(capsys):
    code, out, err = run(["angles", str(BUNDLED), "--name", "values"], capsys)
    assert code == 1 and out == ""
    assert_one_error_line(err, r"`--name` 'values' is not an array of .* \(available: keys, queries, hidden_before_ln, "
                               r"hidden_after_ln\)$")
    assert "__geomln_meta__" not in err


@pytest.mark.parametrize(
    ("seq_offsets", "zero_row", "match"),
    [
        ([0, 1, 7], None, r"slice head=0, sequence=0 of '.*keys\.npz': `file` must have at least 2 row\(s\); "
                          r"got shape \(1, 4\)"),
        ([0, 4, 7], 5, r"slice head=1, sequence=1 of '.*keys\.npz': `vectors` has 1 zero vector\(s\) "
                       r"\(first at row 1\)"),
    ],
)
def test_a_bad_slice_is_named_in_one_line_and_nothing_is_written(tmp_path, rng, capsys, seq_offsets, zero_row,
                                                                   match):
    values = rng.normal(size=(2, 7, 4))
    if zero_row is not None:
        values[1, zero_row] = 0.0
    save_keys(tmp_path / "keys.npz", {"keys": values}, axes="head,token,dim", seq_offsets=seq_offsets)
    target = tmp_path / "out.json"
    code, out, err = run(["angles", str(tmp_path / "keys.npz"), "--json", "--out", str(target)], capsys)
    assert code == 1 and out == ""
    assert_one_error_line(err, match)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.npz"]
