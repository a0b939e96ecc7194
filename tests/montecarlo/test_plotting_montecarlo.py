import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import geomln  # noqa: E402
from geomln.errors import InputError  # noqa: E402
from geomln.plotting import plot_fraction_vs_n, plot_unselectable_heatmap  # noqa: E402


@pytest.fixture(scope="module")
def result():
    return geomln.estimate_unselectable(
        [4, 8, 16, 24],
        [2, 3, 5],
        trials=12,
        seed=5,
        normalization=["none", "layernorm"],
        workers=1,
        progress=False,
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("metric", ["any_unselectable", "fraction"])
def test_heatmap_shows_the_table_with_n_on_y_and_d_on_x(result, metric):
    ax = plot_unselectable_heatmap(result, metric=metric, normalization="none")
    mesh = ax.collections[0]
    expected = np.array(
        [
            [row.__getattribute__(metric) for row in result.select(normalization="none") if row.n == n]
            for n in (4, 8, 16, 24)
        ]
    )
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(4, 3), expected)
    assert mesh.get_clim() == (0.0, 1.0)
    x_edges, y_edges = mesh.get_coordinates()[0, :, 0], mesh.get_coordinates()[:, 0, 1]
    np.testing.assert_allclose(x_edges, [1.5, 2.5, 4.0, 6.0])  # centred on d = 2, 3, 5
    np.testing.assert_allclose(y_edges, [2, 6, 12, 20, 28])  # centred on n = 4, 8, 16, 24
    assert ax.get_xlabel().startswith("d") and ax.get_ylabel().startswith("n")


def test_heatmap_of_layernorm_is_zero_from_d_3_and_masks_missing_cells(result):
    fig, ax = plt.subplots()
    assert plot_unselectable_heatmap(result, normalization="layernorm", ax=ax) is ax
    values = np.ma.asarray(ax.collections[0].get_array()).reshape(4, 3)
    assert np.all(values[:, 1:] == 0) and np.all(values[1:, 0] == 1)  # d = 2: keys collapse onto 2 points
    partial = geomln.MonteCarloResult(result.rows[:5], {}, False)  # n = 4 (3 cells), n = 8 (2 cells)
    mesh = plot_unselectable_heatmap(partial, normalization="none").collections[0]
    assert np.ma.getmaskarray(mesh.get_array()).reshape(2, 3).tolist() == [[False] * 3, [False, False, True]]


def test_heatmap_errors(result):
    with pytest.raises(InputError, match="`metric` must be one of 'any_unselectable', 'fraction'"):
        plot_unselectable_heatmap(result, metric="seconds", normalization="none")
    with pytest.raises(InputError, match="`normalization` must be given.*'none', 'layernorm'"):
        plot_unselectable_heatmap(result)
    with pytest.raises(InputError, match="`distribution` must be one of 'gaussian'"):
        plot_unselectable_heatmap(result, normalization="none", distribution="sphere")


def test_fraction_curves_with_exact_theory(result):
    ax = plot_fraction_vs_n(result, normalization="none")
    lines = ax.get_lines()
    assert [line.get_gid() for line in lines] == ["monte carlo", "theory"] * 3
    for d, (mc, theory) in zip((2, 3, 5), zip(lines[::2], lines[1::2], strict=True), strict=True):
        rows = [row for row in result.select(normalization="none") if row.d == d]
        np.testing.assert_array_equal(mc.get_xdata(), [row.n for row in rows])
        np.testing.assert_array_equal(mc.get_ydata(), [row.fraction for row in rows])
        np.testing.assert_array_equal(theory.get_xdata(), np.arange(4, 25))
        np.testing.assert_allclose(
            theory.get_ydata(), geomln.unselectable_fraction_gaussian(np.arange(4, 25), d)
        )
        assert theory.get_color() == mc.get_color() and theory.get_linestyle() == "--"
    drawn = [row for row in result.select(normalization="none") if row.fraction > 0]
    assert len(ax.collections) == len({row.d for row in drawn})  # one band per d with a nonzero cell
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["d = 2", "d = 3", "d = 5", "exact theory", "95 % interval"]
    top = max(max(row.fraction_high for row in drawn), float(geomln.unselectable_fraction_gaussian(24, 2)))
    assert ax.get_ylim()[1] == pytest.approx(min(1.02, 1.08 * top))


def test_fraction_curves_leave_out_intervals_of_zero_cells_and_fit_the_y_range(result):
    ax = plot_fraction_vs_n(result, normalization="layernorm", d=[3, 5])  # keys on a sphere: all zero
    assert not ax.collections and ax.get_ylim()[1] == pytest.approx(0.05)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["d = 3", "d = 5", "exact theory"]


def test_theory_curves_wrap_panels(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from geomln.cli import montecarlo

    eight = geomln.estimate_unselectable([4, 8], [2, 3], trials=4, seed=1, workers=1, progress=False,
                                         distribution=["gaussian", "uniform_cube", "sphere", "uniform_ball"],
                                         normalization=["none", "layernorm"])
    shapes = []
    original = Figure.subplots

    def spy(self, nrows=1, ncols=1, **kwargs):
        shapes.append((nrows, ncols))
        return original(self, nrows, ncols, **kwargs)

    monkeypatch.setattr(Figure, "subplots", spy)
    montecarlo.save_theory_curves(eight, tmp_path)
    assert shapes == [(3, 3)] and (tmp_path / "fraction_vs_n.png").stat().st_size > 0


def test_fraction_curves_select_d_and_skip_theory(result):
    ax = plot_fraction_vs_n(result, d=[3], theory=False, normalization="none")
    assert [line.get_gid() for line in ax.get_lines()] == ["monte carlo"]
    on_sphere = plot_fraction_vs_n(result, d=5, normalization="layernorm")
    mc, theory = on_sphere.get_lines()
    assert list(theory.get_ydata()) == [0.0] * 4 and list(mc.get_ydata()) == [0.0] * 4
    with pytest.raises(InputError, match="`d` must be one of 2, 3, 5"):
        plot_fraction_vs_n(result, d=4, normalization="none")


def test_cli_heatmap_png_matches_the_library_figure(tmp_path):
    from geomln.cli.montecarlo import save_heatmaps

    paths = save_heatmaps(
        geomln.estimate_unselectable([5, 9], 3, trials=3, workers=1, progress=False), tmp_path
    )
    assert [p.name for p in paths] == ["heatmap_any_unselectable.png", "heatmap_fraction.png"]
    image = plt.imread(paths[0])
    assert image.ndim == 3 and image.shape[0] > 100
