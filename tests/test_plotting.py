import itertools
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from scipy.spatial import ConvexHull as QhullHull  # noqa: E402

import geomln  # noqa: E402
from geomln.errors import InputError  # noqa: E402
from geomln.plotting import plot_keys  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def by_gid(ax, gid):
    found = [a for a in list(ax.collections) + list(ax.lines) if a.get_gid() == gid]
    assert len(found) <= 1
    return found[0] if found else None


def as_set(rows):
    return {tuple(np.round(r, 12)) for r in np.asarray(rows, dtype=float)}


def offsets_2d(ax, gid):
    return np.asarray(by_gid(ax, gid).get_offsets())


def offsets_3d(ax, gid):
    xs, ys, zs = by_gid(ax, gid)._offsets3d
    return np.column_stack([np.asarray(xs), np.asarray(ys), np.asarray(zs)])


def test_2d_keys_selectable_marked_and_hull_drawn():
    keys = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 0], [1, 1], [0.5, 1.5]], dtype=float)
    ax = plot_keys(keys)
    assert as_set(offsets_2d(ax, "selectable")) == as_set(keys[:4])
    assert as_set(offsets_2d(ax, "unselectable")) == as_set(keys[4:])
    sel, unsel = by_gid(ax, "selectable"), by_gid(ax, "unselectable")
    assert sel.get_paths()[0] != unsel.get_paths()[0]  # different markers
    line = by_gid(ax, "hull")
    xy = np.column_stack(line.get_data())
    np.testing.assert_array_equal(xy[0], xy[-1])  # closed polygon
    assert as_set(xy) == as_set(keys[:4]) and len(xy) == 5
    assert by_gid(ax, "queries") is None


def test_2d_against_qhull(rng):
    keys = rng.standard_normal((300, 2))
    ax = plot_keys(keys)
    assert as_set(offsets_2d(ax, "selectable")) == as_set(keys[QhullHull(keys).vertices])
    assert len(offsets_2d(ax, "unselectable")) == 300 - len(QhullHull(keys).vertices)


def test_duplicated_vertex_is_unselectable():
    keys = np.array([[0, 0], [1, 0], [0, 1], [1, 0]], dtype=float)
    ax = plot_keys(keys)
    assert as_set(offsets_2d(ax, "selectable")) == {(0.0, 0.0), (0.0, 1.0)}
    assert len(offsets_2d(ax, "unselectable")) == 2


def test_queries_drawn_as_arrows_from_the_origin():
    keys = np.array([[0, 0], [3, 0], [0, 3]], dtype=float)
    queries = np.array([[1.0, 2.0], [-1.0, 0.5]])
    ax = plot_keys(keys, queries=queries)
    arrows = by_gid(ax, "queries")
    np.testing.assert_array_equal(arrows.U, queries[:, 0])
    np.testing.assert_array_equal(arrows.V, queries[:, 1])
    np.testing.assert_array_equal(arrows.X, [0, 0])
    np.testing.assert_array_equal(arrows.Y, [0, 0])
    ax1 = plot_keys(keys, queries=[1.0, 2.0])  # a single query as a vector
    assert by_gid(ax1, "queries").N == 1
    lo, hi = ax.get_xlim()
    assert lo <= -1.0 and hi >= 3.0  # arrow tips inside the view


def test_3d_lattice_cube():
    keys = np.array(list(itertools.product(range(3), repeat=3)), dtype=float)
    ax = plot_keys(keys, queries=[[1.0, 1.0, 1.0]])
    assert ax.name == "3d"
    corners = keys[(keys != 1).all(axis=1)]
    assert as_set(offsets_3d(ax, "selectable")) == as_set(corners)
    assert len(offsets_3d(ax, "unselectable")) == 27 - 8
    surface = by_gid(ax, "hull")
    ax.figure.canvas.draw()  # 3-D polygons are projected to paths at draw time
    assert len(surface.get_paths()) == 12
    assert by_gid(ax, "queries") is not None


def test_3d_coplanar_keys_draw_a_polygon(rng):
    uv = rng.standard_normal((40, 2))
    keys = np.column_stack([uv, uv @ [0.3, -0.2] + 1.0])
    ax = plot_keys(keys)
    expected = keys[np.sort(QhullHull(uv).vertices)]
    assert as_set(offsets_3d(ax, "selectable")) == as_set(expected)
    ax.figure.canvas.draw()
    assert len(by_gid(ax, "hull").get_paths()) == 1


def test_draws_into_the_given_axes_and_hull_false():
    fig, ax = plt.subplots()
    out = plot_keys([[0, 0], [1, 0], [0, 1], [0.2, 0.2]], hull=False, ax=ax)
    assert out is ax
    assert by_gid(ax, "hull") is None
    fig3 = plt.figure()
    ax3 = fig3.add_subplot(projection="3d")
    assert plot_keys(np.eye(3), ax=ax3) is ax3


def test_new_figure_when_ax_is_none():
    before = plt.get_fignums()
    ax = plot_keys([[0, 0], [1, 0], [0, 1]])
    assert ax.figure.number not in before


@pytest.mark.parametrize("d", [4, 5])
def test_pca_view_for_higher_dimensions(rng, d):
    keys = rng.standard_normal((60, d))
    queries = rng.standard_normal((2, d))
    ax = plot_keys(keys, queries=queries)
    # selectability decided in d dimensions (Qhull on the full keys as the oracle)
    vertices = np.sort(QhullHull(keys).vertices)
    shown = offsets_2d(ax, "selectable")
    _, _, vt = np.linalg.svd(keys - keys.mean(axis=0))
    proj = keys @ vt[:2].T
    signs = np.sign(np.sum(shown * proj[vertices], axis=0))  # PCA axes are defined up to sign
    np.testing.assert_allclose(shown, proj[vertices] * signs, atol=1e-10)
    arrows = by_gid(ax, "queries")
    drawn = np.column_stack([arrows.U, arrows.V])
    np.testing.assert_allclose(drawn, (queries @ vt[:2].T) * signs, atol=1e-10)
    assert ax.get_xlabel() == "PC 1"
    # the hull drawn is that of the projected keys
    ring = np.column_stack(by_gid(ax, "hull").get_data())
    assert as_set(ring) == as_set((proj * signs)[QhullHull(proj).vertices])


def test_pca_view_above_rank_6_uses_hull_vertices(rng):
    keys = rng.standard_normal((25, 8))
    ax = plot_keys(keys)
    expected = geomln.hull_vertices(keys)
    assert len(offsets_2d(ax, "selectable")) == len(expected)
    assert len(offsets_2d(ax, "unselectable")) == 25 - len(expected)


def test_layer_norm_keys_in_4d_all_selectable(rng):
    keys = geomln.layer_norm(rng.standard_normal((12, 4)))
    ax = plot_keys(keys)
    assert len(offsets_2d(ax, "selectable")) == 12  # on a sphere in their hyperplane: all vertices


def test_one_dimensional_keys():
    ax = plot_keys([[3.0], [1.0], [2.0], [1.5]], queries=[[1.0]])
    assert as_set(offsets_2d(ax, "selectable")) == {(1.0, 0.0), (3.0, 0.0)}
    np.testing.assert_array_equal(by_gid(ax, "queries").V, [0.0])


def test_matplotlib_is_imported_lazily():
    code = "import sys, geomln, geomln.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keys": [[0.0, np.nan]]}, "`keys` contains 1 NaN"),
        ({"keys": [1.0, 2.0]}, r"`keys` must be a 2-D array"),
        ({"keys": [[0.0, 1.0]], "queries": [[1.0, 2.0, 3.0]]}, r"`queries` must have shape \(m, 2\)"),
        ({"keys": [[0.0, 1.0]], "queries": [[np.inf, 2.0]]}, "`queries` contains 1 infinite"),
    ],
)
def test_bad_input(kwargs, match):
    keys = kwargs.pop("keys")
    with pytest.raises(InputError, match=match):
        plot_keys(keys, **kwargs)


def test_3d_keys_need_3d_axes():
    _, ax = plt.subplots()
    with pytest.raises(InputError, match="`ax` must be a 3-D Axes"):
        plot_keys(np.eye(3), ax=ax)
