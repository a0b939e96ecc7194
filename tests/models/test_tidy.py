"""KeyReport's tidy outputs: per-key long format, pandas frames, causal curves, per-slice grids and their plots."""

import numpy as np
import pytest

from geomln import KeyArray, analyze_keys
from geomln.cli._main import main

SQUARE_AND_CENTRE = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]], dtype=float)


@pytest.fixture
def report(rng):
    values = np.stack([SQUARE_AND_CENTRE, SQUARE_AND_CENTRE[::-1], rng.normal(size=(5, 2))])
    keys = KeyArray.from_array(values, axes="head,token,dim", tokens=list("abcde"))
    return analyze_keys(keys, causal=True, queries=KeyArray.from_array(rng.normal(size=(3, 5, 2)),
                                                                       axes="head,token,dim"), query_norm=5.0)


def test_per_key_has_one_row_per_key_without_pandas(report):
    columns = report.per_key()
    assert {len(c) for c in columns.values()} == {15}
    assert columns["head"].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert columns["index"].tolist()[:6] == [0, 1, 2, 3, 4, 0]
    assert columns["token"].tolist()[:5] == list("abcde")
    for row in report.rows:
        mine = columns["head"] == row["labels"]["head"]
        assert np.flatnonzero(~columns["selectable"][mine]).tolist() == row["unselectable_indices"]
        assert columns["causal_last_position"][mine].tolist() == row["causal_last_positions"]
        assert columns["argmax_count"][mine].tolist() == row["argmax_counts"]
        np.testing.assert_allclose(columns["max_attention"][mine], row["max_attention"])
    assert columns["causally_selectable"].dtype == bool
    assert np.rec.fromarrays(list(columns.values()), names=list(columns)).shape == (15,)


def test_to_pandas_per_slice_and_per_key(report):
    pandas = pytest.importorskip("pandas")
    frame = report.to_pandas()
    assert isinstance(frame, pandas.DataFrame) and len(frame) == 3
    assert frame["n_unselectable"].tolist() == [r["n_unselectable"] for r in report.rows]
    long = report.to_pandas(per_key=True)
    assert len(long) == 15 and long.groupby("head")["selectable"].sum().tolist() == [
        r["n"] - r["n_unselectable"] for r in report.rows]


def test_causal_curve_counts_the_keys_still_winnable(report):
    lengths, fractions, groups = report.causal_curve()
    assert lengths.tolist() == [1, 2, 3, 4, 5] and groups == [None]
    expected = []
    for t in range(5):
        alive = sum(sum(i <= t <= last for i, last in enumerate(r["causal_last_positions"])) for r in report.rows)
        expected.append(alive / (3 * (t + 1)))
    np.testing.assert_allclose(fractions[0], expected)
    per_head = report.causal_curve(group_by="head")[1]
    assert per_head.shape == (3, 5) and per_head[0, -1] == pytest.approx(4 / 5)


def test_causal_curve_needs_a_causal_report():
    with pytest.raises(Exception, match="causal=True"):
        analyze_keys(SQUARE_AND_CENTRE).causal_curve()


def test_metric_grid_and_plots_without_layer_axes(report):
    import matplotlib

    matplotlib.use("Agg")
    from geomln.plotting import plot_causal_curve, plot_slice_metric, plot_unselectable_by_layer_head

    grid, rows, cols = report.metric_grid("causal_pair_fraction")
    assert rows == [None] and cols == [0, 1, 2]
    ax = plot_slice_metric(report, "fraction_unselectable", fixed_scale=True)
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.2, 0.2, report.rows[2]["fraction_unselectable"]]])
    assert ax.images[0].get_clim() == (0.0, 1.0) and ax.get_xlabel() == "head"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["all"]
    assert plot_unselectable_by_layer_head(report, fixed_scale=True).images[0].get_clim() == (0.0, 1.0)
    lines = plot_causal_curve(report, group_by="head").lines
    np.testing.assert_allclose(lines[1].get_ydata(), report.causal_curve(group_by="head")[1][1])
    import matplotlib.pyplot as plt

    plt.close("all")


def test_cli_notes_pre_rotary_keys(tmp_path, rng, capsys):
    path = tmp_path / "k.npz"
    from geomln import save_keys

    save_keys(path, {"keys_pre_rope": rng.normal(size=(2, 6, 3))}, axes="head,token,dim",
              array_metadata={"keys_pre_rope": {"rope": "pre-rotary", "scored": False}})
    assert main(["analyze", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("geomln: note: analysing pre-rotary vectors") and len(captured.err.splitlines()) == 1
    assert "note: pre-rotary vectors" in captured.out
