import numpy as np
import pytest
from cases import CASES, layer_norm_rows
from oracles import distinct_radius, exact_combination_holds, lp_in_hull

from geomln.engine.membership import HullMembership, in_hull
from geomln.errors import InputError


def check_membership(points, hull_points, result, *, oracle=True):
    """Every answer through its certificate, and (optionally) against the LP oracle."""
    points = np.asarray(points, dtype=float)
    hull_points = np.asarray(hull_points, dtype=float)
    k, d = points.shape
    assert isinstance(result, HullMembership)
    assert result.inside_mask.shape == (k,) and result.inside_mask.dtype == bool
    assert result.separating_directions.shape == (k, d)
    assert result.margins.shape == result.distances.shape == result.borderline_mask.shape == (k,)
    inside = np.flatnonzero(result.inside_mask)
    outside = np.flatnonzero(~result.inside_mask)
    assert sorted(result.combinations) == inside.tolist()
    assert np.isnan(result.separating_directions[inside]).all() and np.isnan(result.margins[inside]).all()
    slack = 2 * result.tol * result.scale + 1e-12 * (1 + result.scale)
    for j in inside:
        indices, weights = result.combinations[j]
        assert indices.shape == weights.shape and indices.size >= 1
        assert ((indices >= 0) & (indices < len(hull_points))).all()
        assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.linalg.norm(weights @ hull_points[indices] - points[j]) <= slack
        assert result.distances[j] <= result.tol * 1.000001
    for j in outside:
        u = result.separating_directions[j]
        assert np.linalg.norm(u) == pytest.approx(1.0, abs=1e-12)
        lead = u @ points[j] - np.max(hull_points @ u)
        assert lead > 0, f"direction of point {j} does not separate it"
        assert result.margins[j] == pytest.approx(lead / result.scale, rel=1e-6, abs=1e-12)
        assert result.distances[j] >= result.margins[j] * (1 - 1e-9)
        assert result.distances[j] > result.tol
    if oracle:
        expected = np.array([lp_in_hull(x, hull_points)[0] for x in points])
        np.testing.assert_array_equal(result.inside_mask, expected)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_points_against_the_lp_oracle(d, seed):
    gen = np.random.default_rng([seed, d, 11])
    hull_points = gen.standard_normal((20 + 3 * d, d))
    points = gen.standard_normal((30, d)) * np.linspace(0.05, 1.5, 30)[:, None]
    result = in_hull(points, hull_points)
    check_membership(points, hull_points, result)
    assert 0 < result.inside_mask.sum() < len(points)  # both answers occur
    assert not result.borderline_mask.any()


def test_scale_is_the_documented_radius_of_the_hull_points():
    corners = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    cluster = np.column_stack([0.5 + 0.01 * np.arange(20), np.full(20, 0.5)])  # pulls the mean to a corner
    hull_points = np.vstack([corners, cluster])
    documented = distinct_radius(hull_points)  # 4.54; the radius of the vertices about their own mean is 2.83
    result = in_hull([[4.0, 4.0 + 0.8e-9 * documented]], hull_points)  # 0.8 tol * documented scale away
    assert result.scale == pytest.approx(documented, rel=1e-12)
    assert result.inside_mask[0]


def test_hull_points_themselves_are_inside(rng):
    hull_points = rng.standard_normal((30, 4))
    result = in_hull(hull_points, hull_points)
    assert result.inside_mask.all()
    check_membership(hull_points, hull_points, result, oracle=False)


def test_convex_combinations_are_inside_and_pushed_out_points_are_outside(rng):
    hull_points = rng.standard_normal((25, 3))
    weights = rng.dirichlet(np.ones(25), size=20)
    inside = weights @ hull_points
    centre = hull_points.mean(axis=0)
    outside = centre + 3.0 * (hull_points[:10] - centre)  # beyond any hull point along its ray
    points = np.vstack([inside, outside])
    result = in_hull(points, hull_points)
    np.testing.assert_array_equal(result.inside_mask, np.arange(30) < 20)
    check_membership(points, hull_points, result)


@pytest.mark.parametrize("name", ["lattice_cube", "coplanar_3d", "collinear_3d", "polygon_midpoints", "d1"])
def test_integer_and_boundary_cases_exactly(name):
    """Keys of the named cases against the hull of the case's selectable keys: all inside, proven exactly."""
    keys = CASES[name].keys
    vertices = CASES[name].expected
    result = in_hull(keys, keys[vertices])
    assert result.inside_mask.all()
    check_membership(keys, keys[vertices], result, oracle=False)
    if CASES[name].exact:
        hull = keys[vertices]
        augmented = np.vstack([hull, keys])
        for j, (indices, _) in result.combinations.items():
            assert exact_combination_holds(augmented, len(hull) + j, indices) is None


def test_layernorm_outputs_on_and_off_their_hyperplane(rng):
    d = 6
    hull_points = layer_norm_rows(rng.standard_normal((40, d)))  # rank d - 1, sphere in the sum-zero plane
    combos = rng.dirichlet(np.ones(40), size=10) @ hull_points
    lifted = combos + 0.05 * np.ones(d)  # off the hyperplane: outside, separated along +ones
    lowered = combos - 1e-3 * np.ones(d)
    in_plane_far = 1.5 * layer_norm_rows(rng.standard_normal((10, d)))  # in the plane, beyond the sphere
    points = np.vstack([combos, lifted, lowered, in_plane_far])
    result = in_hull(points, hull_points)
    np.testing.assert_array_equal(result.inside_mask, np.arange(40) < 10)
    check_membership(points, hull_points, result)
    ones = np.ones(d) / np.sqrt(d)
    np.testing.assert_allclose(result.separating_directions[10:20], np.tile(ones, (10, 1)), atol=1e-9)
    np.testing.assert_allclose(result.separating_directions[20:30], np.tile(-ones, (10, 1)), atol=1e-9)
    np.testing.assert_allclose(result.margins[10:20] * result.scale, 0.05 * np.sqrt(d), rtol=1e-9)
    # in-plane separating directions lie in the plane
    np.testing.assert_allclose(result.separating_directions[30:] @ ones, 0.0, atol=1e-9)


def test_single_and_repeated_hull_point():
    hull_points = np.array([[1.0, 2.0, 3.0]] * 3)
    points = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 4.0], [0.0, 0.0, 0.0]])
    result = in_hull(points, hull_points)
    np.testing.assert_array_equal(result.inside_mask, [True, False, False])
    check_membership(points, hull_points, result)
    indices, weights = result.combinations[0]
    np.testing.assert_array_equal(weights, [1.0])


def test_segment_in_three_dimensions():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([3.0, 1.0, 4.0])
    hull_points = np.array([a, b, (a + b) / 2, a + 0.25 * (b - a)])
    points = np.array(
        [a + 0.75 * (b - a), a + 1.5 * (b - a), a - 0.5 * (b - a), (a + b) / 2 + [0.0, 0.0, 0.1]]
    )
    result = in_hull(points, hull_points)
    np.testing.assert_array_equal(result.inside_mask, [True, False, False, False])
    check_membership(points, hull_points, result)
    assert exact_combination_holds(np.vstack([hull_points, points[:1]]), 4, result.combinations[0][0]) is None


@pytest.mark.parametrize("relative_distance", [1e-7, 1e-5])
def test_tol_is_the_relative_distance_to_the_hull(relative_distance):
    square = np.array([[0, 0], [4, 0], [0, 4], [4, 4]], dtype=float) - 7.0
    scale = distinct_radius(square)
    point = np.array([[-5.0, -7.0 - relative_distance * scale]])  # below the bottom edge
    for tol in (relative_distance / 100, relative_distance * 100):
        result = in_hull(point, square, tol=tol)
        assert result.tol == tol and result.scale == pytest.approx(scale)
        assert result.inside_mask[0] == (relative_distance <= tol)
        check_membership(point, square, result, oracle=False)
    assert in_hull(point, square, tol=relative_distance * 3).borderline_mask[0]


def test_float32_hull_uses_the_float32_tolerance(rng):
    hull_points = rng.standard_normal((30, 3)).astype(np.float32)
    points = rng.standard_normal((10, 3))
    result = in_hull(points, hull_points)
    assert result.tol == 1e-6
    check_membership(points, hull_points.astype(np.float64), result)


@pytest.mark.parametrize(
    ("points", "hull_points", "error", "match"),
    [
        (
            np.zeros((2, 3)),
            np.zeros((4, 2)),
            InputError,
            r"`points` must have d = 2 columns .* got shape \(2, 3\)",
        ),
        ([[np.nan, 0.0]], np.eye(2), InputError, "`points` contains 1 NaN"),
        ([[0.0, 0.0]], [[np.inf, 0.0], [1.0, 1.0]], InputError, "`hull_points` contains 1 infinite"),
        ([0.0, 0.0], np.eye(2), InputError, r"`points` must be a 2-D"),
        ([[0.0, 0.0]], [1.0, 2.0], InputError, r"`hull_points` must be a 2-D"),
        (np.zeros((0, 2)), np.eye(2), InputError, "`points`"),
        ([[0.0, 0.0]], np.zeros((0, 2)), InputError, "`hull_points`"),
        ([["a", "b"]], np.eye(2), TypeError, "`points`"),
        ([[0.0, 0.0]], np.eye(2) * 1j, TypeError, "`hull_points` must be real"),
    ],
)
def test_bad_arrays(points, hull_points, error, match):
    with pytest.raises(error, match=match):
        in_hull(points, hull_points)


@pytest.mark.parametrize(
    ("tol", "error"), [(-1.0, InputError), (np.nan, InputError), (0.0, InputError), ("small", TypeError)]
)
def test_bad_tol(tol, error):
    with pytest.raises(error, match="`tol`"):
        in_hull([[0.0, 0.0]], np.eye(2), tol=tol)
