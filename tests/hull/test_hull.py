import itertools

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import ConvexHull as QhullHull
from scipy.spatial import QhullError

import geomln
from geomln.errors import InputError
from geomln.hull.convex import ConvexHull, convex_hull


@pytest.fixture
def rng():
    return np.random.default_rng(20230617)


# ------------------------------------------------------------------------------------------------
# independent oracles and checkers
# ------------------------------------------------------------------------------------------------


def lp_vertices(points):
    """Indices of points not in the convex hull of the other (distinct) points: one HiGHS LP each."""
    out = []
    for i, p in enumerate(points):
        same = (points == p).all(axis=1)
        if np.flatnonzero(same)[0] != i:
            continue  # a later copy of an earlier point
        others = points[~same]
        if len(others) == 0:
            out.append(i)
            continue
        a_eq = np.vstack([others.T, np.ones(len(others))])
        b_eq = np.append(p, 1.0)
        res = linprog(np.zeros(len(others)), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        if res.status == 2:  # infeasible: p is extreme
            out.append(i)
        else:
            assert res.status == 0
    return np.array(out, dtype=np.intp)


def check_equations(hull, points, slack=10.0):
    """Every point on or behind every facet; facets' vertices on them; unit normals in the affine hull."""
    eq = hull.equations
    assert eq.shape == (hull.n_facets, points.shape[1] + 1)
    if hull.n_facets == 0:
        return
    normals, offsets = eq[:, :-1], eq[:, -1]
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    eps = slack * hull.tol * hull.scale + 1e-12 * hull.scale
    dist = points @ normals.T + offsets
    assert dist.max() <= eps
    on_plane = np.take_along_axis(dist.T, hull.facets, axis=1)
    assert np.abs(on_plane).max() <= eps
    # normals lie in the span of the points' directions
    centred = points - points.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=True)
    null = vt[hull.affine_rank :]
    assert np.abs(normals @ null.T).max(initial=0.0) <= 1e-9


def check_surface_3d(hull, points):
    """Closed oriented triangle mesh: Euler's formula, each edge in two triangles in opposite directions."""
    tri = hull.facets
    directed = {}
    for a, b, c in tri:
        for e in ((a, b), (b, c), (c, a)):
            assert e not in directed, "a directed edge occurs twice: inconsistent orientation"
            directed[e] = True
    for a, b in directed:
        assert (b, a) in directed
    n_edges = len(directed) // 2
    assert hull.n_vertices - n_edges + hull.n_facets == 2
    # outward: right-hand-rule normal (in the hull's basis) agrees with the equation's normal,
    # and the centroid is strictly inside
    p = (points - hull.centroid) @ hull.basis.T
    cross = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
    assert (np.einsum("ij,ij->i", cross, hull.equations[:, :-1] @ hull.basis.T) > 0).all()
    inside = hull.equations[:, :-1] @ points.mean(axis=0) + hull.equations[:, -1]
    assert (inside < 0).all()


def check_polygon(hull, points):
    """Edges form one cycle; counterclockwise in the basis coordinates; centroid strictly inside."""
    edges = hull.facets
    np.testing.assert_array_equal(edges[:, 1], np.roll(edges[:, 0], -1))
    assert len(set(edges[:, 0])) == len(edges) == hull.n_vertices
    uv = (points - hull.centroid) @ hull.basis.T
    ring = uv[edges[:, 0]]
    signed = 0.5 * np.sum(ring[:, 0] * np.roll(ring[:, 1], -1) - ring[:, 1] * np.roll(ring[:, 0], -1))
    assert signed > 0
    np.testing.assert_allclose(signed, hull.volume, rtol=1e-12)
    inside = hull.equations[:, :-1] @ points.mean(axis=0) + hull.equations[:, -1]
    assert (inside < 0).all()


def check_all(hull, points):
    check_equations(hull, points)
    if hull.affine_rank == 3:
        check_surface_3d(hull, points)
    if hull.affine_rank == 2:
        check_polygon(hull, points)


# ------------------------------------------------------------------------------------------------
# named datasets
# ------------------------------------------------------------------------------------------------


def lattice_cube():
    return np.array(list(itertools.product(range(5), repeat=3)), dtype=float)


def polygon_with_midpoints(k=7, radius=3.0):
    angles = 2 * np.pi * np.arange(k) / k
    corners = radius * np.column_stack([np.cos(angles), np.sin(angles)])
    mids = 0.5 * (corners + np.roll(corners, -1, axis=0))
    return np.vstack([corners, mids, [[0.0, 0.0]]])


def layer_norm_rows(rng, n=200, d=4):
    x = rng.standard_normal((n, d))
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.sqrt((x**2).mean(axis=1, keepdims=True))


def rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------------------------
# agreement with Qhull and with the LP oracle
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 4, 5])
@pytest.mark.parametrize("n", [7, 40, 500])
def test_agrees_with_qhull_in_general_position(rng, d, n):
    x = rng.standard_normal((n, d))
    hull = convex_hull(x)
    qh = QhullHull(x)
    np.testing.assert_array_equal(hull.vertex_indices, np.sort(qh.vertices))
    assert hull.volume == pytest.approx(qh.volume, rel=1e-10)
    assert hull.area == pytest.approx(qh.area, rel=1e-10)
    assert hull.affine_rank == d
    assert hull.method == {2: "monotone_chain", 3: "quickhull"}.get(d, "qhull")
    check_all(hull, x)


@pytest.mark.parametrize("d", [2, 3])
def test_agrees_with_hull_vertices_of_the_selectability_engine(rng, d):
    from geomln.engine.selectability import hull_vertices

    for x in (rng.standard_normal((300, d)), rng.uniform(-1, 1, (300, d)), lattice_cube()[:, :d]):
        np.testing.assert_array_equal(convex_hull(x).vertex_indices, hull_vertices(x))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("d", [2, 3])
def test_small_integer_sets_against_lp_oracle(seed, d):
    # few distinct integer values: many duplicates, collinear and coplanar points
    x = np.random.default_rng(seed).integers(0, 4, size=(40, d)).astype(float)
    hull = convex_hull(x)
    np.testing.assert_array_equal(hull.vertex_indices, lp_vertices(x))
    check_all(hull, x)


@pytest.mark.parametrize(("n", "d"), [(2, 3), (3, 3), (4, 5), (4, 3), (5, 8), (7, 9)])
def test_few_points_form_a_simplex(rng, n, d):
    x = rng.standard_normal((n, d))
    hull = convex_hull(x)
    assert hull.affine_rank == min(n - 1, d)
    np.testing.assert_array_equal(hull.vertex_indices, np.arange(n))
    check_all(hull, x)


def test_spherical_points(rng):
    x = rng.standard_normal((2000, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    hull = convex_hull(x)
    np.testing.assert_array_equal(hull.vertex_indices, np.sort(QhullHull(x).vertices))
    check_all(hull, x)


# ------------------------------------------------------------------------------------------------
# degenerate inputs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_all_points_equal(d):
    x = np.full((6, d), 2.5)
    hull = convex_hull(x)
    assert hull.affine_rank == 0
    np.testing.assert_array_equal(hull.vertex_indices, [0])
    assert hull.facets.shape == (0, 1)
    assert hull.equations.shape == (0, d + 1)
    assert hull.volume == 0.0 and hull.area == 0.0
    assert hull.basis.shape == (0, d)


def test_single_point():
    hull = convex_hull([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(hull.vertex_indices, [0])
    assert hull.method == "point"


def test_one_dimensional_input(rng):
    x = rng.standard_normal((50, 1))
    hull = convex_hull(x)
    np.testing.assert_array_equal(hull.vertex_indices, np.sort([np.argmin(x), np.argmax(x)]))
    assert hull.volume == pytest.approx(np.ptp(x))
    check_all(hull, x)


def test_collinear_in_3d(rng):
    direction = np.array([1.0, -2.0, 0.5])
    t = rng.uniform(-1, 1, 30)
    x = np.array([3.0, 1.0, -1.0]) + t[:, None] * direction
    x = np.vstack([x, x[:3]])  # duplicates too
    hull = convex_hull(x)
    assert hull.affine_rank == 1
    np.testing.assert_array_equal(hull.vertex_indices, np.sort([np.argmin(t), np.argmax(t)]))
    assert hull.volume == pytest.approx(np.ptp(t) * np.linalg.norm(direction), rel=1e-12)
    assert hull.facets.shape == (2, 1)
    check_all(hull, x)
    # the endpoint equations are +- the direction
    np.testing.assert_allclose(np.abs(hull.equations[:, :-1] @ direction), np.linalg.norm(direction))


def test_coplanar_points_in_3d_are_rank_2(rng):
    uv = rng.standard_normal((300, 2))
    basis = rotation(rng, 3)[:2]
    x = uv @ basis + np.array([5.0, -1.0, 2.0])
    hull = convex_hull(x)
    assert hull.affine_rank == 2 and hull.method == "monotone_chain"
    qh = QhullHull(uv)
    np.testing.assert_array_equal(hull.vertex_indices, np.sort(qh.vertices))
    assert hull.volume == pytest.approx(qh.volume, rel=1e-9)
    assert hull.area == pytest.approx(qh.area, rel=1e-9)
    check_all(hull, x)


def test_layer_norm_outputs_in_r4_are_rank_3(rng):
    x = layer_norm_rows(rng, 300, 4)
    hull = convex_hull(x)
    assert hull.affine_rank == 3 and hull.method == "quickhull"
    # the hull lives in the hyperplane orthogonal to 1: all normals orthogonal to 1
    np.testing.assert_allclose(hull.equations[:, :-1].sum(axis=1), 0.0, atol=1e-12)
    basis = np.linalg.svd(x - x.mean(axis=0))[2][:3]
    qh = QhullHull((x - x.mean(axis=0)) @ basis.T)
    np.testing.assert_array_equal(hull.vertex_indices, np.sort(qh.vertices))
    assert hull.volume == pytest.approx(qh.volume, rel=1e-9)
    assert hull.area == pytest.approx(qh.area, rel=1e-9)
    check_all(hull, x)


def test_layer_norm_outputs_in_r6_delegate_to_qhull_in_their_hyperplane(rng):
    x = layer_norm_rows(rng, 120, 6)
    with pytest.raises(QhullError, match="QH"):
        QhullHull(x)  # Qhull itself rejects the raw rank-deficient input
    hull = convex_hull(x)
    assert hull.affine_rank == 5 and hull.method == "qhull"
    np.testing.assert_array_equal(hull.vertex_indices, lp_vertices(x))
    check_equations(hull, x)


def test_lattice_cube():
    x = lattice_cube()
    hull = convex_hull(x)
    corners = [i for i, p in enumerate(x) if set(p) <= {0.0, 4.0}]
    np.testing.assert_array_equal(hull.vertex_indices, corners)
    assert hull.n_facets == 12
    assert hull.volume == pytest.approx(64.0, rel=1e-14)
    assert hull.area == pytest.approx(96.0, rel=1e-14)
    check_all(hull, x)


def test_lattice_cube_rotated_and_shuffled(rng):
    x = lattice_cube()
    perm = rng.permutation(len(x))
    y = x[perm] @ rotation(rng, 3) + 10.0
    hull = convex_hull(y)
    assert sorted(perm[hull.vertex_indices]) == [i for i, p in enumerate(x) if set(p) <= {0.0, 4.0}]
    assert hull.n_facets == 12
    assert hull.volume == pytest.approx(64.0, rel=1e-12)
    check_all(hull, y)


@pytest.mark.parametrize("k", [3, 4, 7, 12])
def test_regular_polygon_with_edge_midpoints(k):
    x = polygon_with_midpoints(k)
    hull = convex_hull(x)
    np.testing.assert_array_equal(hull.vertex_indices, np.arange(k))
    assert hull.n_facets == k
    check_all(hull, x)


def test_regular_polygon_with_midpoints_embedded_in_3d(rng):
    uv = polygon_with_midpoints(9)
    x = uv @ rotation(rng, 3)[:2] - 4.0
    hull = convex_hull(x)
    assert hull.affine_rank == 2
    np.testing.assert_array_equal(hull.vertex_indices, np.arange(9))
    check_all(hull, x)


def test_prism_with_points_on_edges_and_faces():
    # triangular prism: 6 corners, plus edge midpoints and face centres, none of them vertices
    tri = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    corners = np.vstack([np.column_stack([tri, np.zeros(3)]), np.column_stack([tri, np.full(3, 2.0)])])
    extra = [0.5 * (corners[i] + corners[j]) for i, j in itertools.combinations(range(6), 2)]
    extra += [corners[:3].mean(axis=0), corners[3:].mean(axis=0), [1.5, 1.5, 1.0], [1.0, 0.0, 1.0]]
    x = np.vstack([extra, corners])
    hull = convex_hull(x)
    np.testing.assert_array_equal(hull.vertex_indices, len(extra) + np.arange(6))
    assert hull.n_facets == 8  # 2 triangles + 3 rectangles split in two
    assert hull.volume == pytest.approx(9.0, rel=1e-13)
    check_all(hull, x)


def test_duplicated_vertices_reported_by_first_index(rng):
    base = rng.standard_normal((60, 3))
    x = np.vstack([base, base[::-1], base[:10]])
    hull = convex_hull(x)
    np.testing.assert_array_equal(hull.vertex_indices, np.sort(QhullHull(base).vertices))
    check_all(hull, x)
    x2 = np.vstack([base[:, :2], base[:, :2]])
    np.testing.assert_array_equal(convex_hull(x2).vertex_indices, np.sort(QhullHull(base[:, :2]).vertices))
    # first copies also in the Qhull path
    x5 = rng.standard_normal((40, 5))
    y5 = np.vstack([x5[:5], x5])  # rows 5..9 repeat rows 0..4
    expected = [v if v < 5 else v + 5 for v in QhullHull(x5).vertices]
    np.testing.assert_array_equal(convex_hull(y5).vertex_indices, np.sort(expected))


def test_eps_perturbed_points_follow_the_tolerance(rng):
    # perturbations far below tol * scale do not create vertices ...
    x = lattice_cube() + 1e-13 * rng.standard_normal((125, 3))
    hull = convex_hull(x)
    assert hull.n_vertices == 8 and hull.n_facets == 12
    check_equations(hull, x)
    p = polygon_with_midpoints(8)
    outward = p[8:16] / np.linalg.norm(p[8:16], axis=1, keepdims=True)
    tiny = p.copy()
    tiny[8:16] += 1e-12 * outward
    np.testing.assert_array_equal(convex_hull(tiny).vertex_indices, np.arange(8))
    # ... while perturbations far above it do
    big = p.copy()
    big[8:16] += 1e-6 * outward
    np.testing.assert_array_equal(convex_hull(big).vertex_indices, np.arange(16))
    np.testing.assert_array_equal(convex_hull(big, tol=1e-5).vertex_indices, np.arange(8))


def test_tol_decides_rank(rng):
    uv = rng.standard_normal((100, 2))
    x = np.column_stack([uv, 1e-7 * rng.standard_normal(100)])
    assert convex_hull(x).affine_rank == 3
    assert convex_hull(x, tol=1e-5).affine_rank == 2


def test_rank_above_6_is_refused(rng):
    with pytest.raises(InputError, match=r"affine rank 7.*hull_vertices"):
        convex_hull(rng.standard_normal((30, 7)))
    # rank counts, not d: 9-D points in a 4-D affine subspace are fine
    x = rng.standard_normal((40, 4)) @ rng.standard_normal((4, 9))
    hull = convex_hull(x)
    assert hull.affine_rank == 4
    check_equations(hull, x)


# ------------------------------------------------------------------------------------------------
# invariances
# ------------------------------------------------------------------------------------------------


def _transforms(rng, d):
    rot = rotation(rng, d)
    return {
        "translation": (lambda x: x + rng.uniform(-50, 50, d), 1.0),
        "rotation": (lambda x: x @ rot, 1.0),
        "scaling": (lambda x: 1e3 * x, 1e3),
        "tiny-scaling": (lambda x: 1e-5 * x, 1e-5),
    }


@pytest.mark.parametrize("name", ["translation", "rotation", "scaling", "tiny-scaling", "permutation"])
@pytest.mark.parametrize("dataset", ["gauss2", "gauss3", "cube", "polygon", "layernorm4", "gauss4"])
def test_invariance(rng, name, dataset):
    x = {
        "gauss2": rng.standard_normal((200, 2)),
        "gauss3": rng.standard_normal((200, 3)),
        "cube": lattice_cube(),
        "polygon": polygon_with_midpoints(10),
        "layernorm4": layer_norm_rows(rng, 150, 4),
        "gauss4": rng.standard_normal((80, 4)),
    }[dataset]
    ref = convex_hull(x)
    if name == "permutation":
        perm = rng.permutation(len(x))
        moved = convex_hull(x[perm])
        np.testing.assert_array_equal(np.sort(perm[moved.vertex_indices]), ref.vertex_indices)
        factor = 1.0
    else:
        transform, factor = _transforms(rng, x.shape[1])[name]
        y = transform(x)
        moved = convex_hull(y)
        np.testing.assert_array_equal(moved.vertex_indices, ref.vertex_indices)
        check_all(moved, y)
    r = ref.affine_rank
    assert moved.n_facets == ref.n_facets
    assert moved.volume == pytest.approx(ref.volume * factor**r, rel=1e-9)
    assert moved.area == pytest.approx(ref.area * factor ** (r - 1), rel=1e-9)


# ------------------------------------------------------------------------------------------------
# the result object
# ------------------------------------------------------------------------------------------------


def test_result_is_frozen_and_signed_distances(rng):
    x = rng.standard_normal((50, 3))
    hull = convex_hull(x)
    assert isinstance(hull, ConvexHull)
    with pytest.raises(AttributeError):
        hull.volume = 1.0
    dist = hull.signed_distances(x)
    assert dist.shape == (50, hull.n_facets)
    assert dist.max() <= 1e-12
    far = hull.signed_distances([[10.0, 0.0, 0.0]])
    assert (far > 0).any()
    with pytest.raises(InputError, match="`points` must have 3 columns"):
        hull.signed_distances([[1.0, 2.0]])


def test_exported_from_package():
    assert geomln.convex_hull is convex_hull
    assert geomln.ConvexHull is ConvexHull


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "error", "match"),
    [
        ([1.0, 2.0, 3.0], InputError, r"`points` must be a 2-D array of shape \(n, d\); got shape \(3,\)"),
        (np.empty((0, 3)), InputError, "`points` must have at least 1 row"),
        (np.empty((3, 0)), InputError, r"`points` must have at least 1 column"),
        ([[0.0, 1.0], [np.nan, 2.0]], InputError, "`points` contains 1 NaN value"),
        ([[0.0, 1.0], [np.inf, 2.0]], InputError, "`points` contains 1 infinite value"),
        ([["a", "b"]], TypeError, "`points` must be a numeric array"),
        ([[1 + 1j, 0]], TypeError, "`points` must be real-valued"),
    ],
)
def test_bad_points(points, error, match):
    with pytest.raises(error, match=match):
        convex_hull(points)


@pytest.mark.parametrize(
    ("tol", "error", "match"),
    [
        (-1e-9, InputError, "`tol` must be a finite number >= 0"),
        (np.nan, InputError, "`tol`"),
        ("1e-9", TypeError, "`tol`"),
    ],
)
def test_bad_tol(tol, error, match):
    with pytest.raises(error, match=match):
        convex_hull([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], tol=tol)
