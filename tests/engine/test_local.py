"""The score-tree path for sets where most keys are vertices (circles, spheres) against Qhull and the engine."""

import numpy as np
import pytest
from oracles import certificate_failures, qhull_vertices

from geomln import selectable_keys
from geomln.engine import _local as local

N = 1500


def circle(n, even, gen):
    angles = 2 * np.pi * np.arange(n) / n if even else gen.uniform(0, 2 * np.pi, n)
    return np.column_stack([np.cos(angles), np.sin(angles)])


def in_plane(points):
    """The circle as LayerNorm output of d = 3 would give it: in the plane of zero-mean vectors."""
    basis = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]])
    return 3.0 + points @ (basis / np.linalg.norm(basis, axis=1)[:, None])


def sphere(n, d, gen):
    x = gen.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1)[:, None]


CASES = {
    "circle_even": lambda gen: circle(N, True, gen),
    "circle_random": lambda gen: circle(N, False, gen),
    "circle_even_in_r3": lambda gen: in_plane(circle(N, True, gen)),
    "circle_random_in_r3": lambda gen: in_plane(circle(N, False, gen)),
    "sphere_s2": lambda gen: sphere(N, 3, gen),
    "sphere_s3": lambda gen: sphere(N, 4, gen),
    "circle_and_interior": lambda gen: np.vstack([circle(N, False, gen), 0.9 * gen.uniform(-0.7, 0.7, (N, 2))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tree_path_matches_engine_and_qhull(name, rng, monkeypatch):
    keys = CASES[name](rng)
    general = selectable_keys(keys)
    monkeypatch.setattr(local, "MIN_KEYS", 100)
    tree = selectable_keys(keys)
    assert certificate_failures(keys, tree) == {}
    firm = ~tree.borderline_mask & ~general.borderline_mask
    np.testing.assert_array_equal(tree.selectable_mask[firm], general.selectable_mask[firm])
    if keys.shape[1] == 2 or name.startswith("sphere"):  # full rank: Qhull applies
        vertices = np.zeros(keys.shape[0], dtype=bool)
        vertices[qhull_vertices(keys)] = True
        np.testing.assert_array_equal(tree.selectable_mask[~tree.borderline_mask], vertices[~tree.borderline_mask])


def test_tree_path_runs_on_circles_where_every_key_is_borderline(rng):
    """100,000 evenly spaced keys on a circle: every margin is 2 pi^2 / n^2, about 2 tol."""
    keys = circle(100_000, True, rng)
    result = selectable_keys(keys)
    assert result.selectable_mask.all() and result.borderline_mask.all()
    assert np.all((result.margins > result.tol) & (result.margins < 10 * result.tol))


def test_mostly_interior_sets_keep_the_general_path(rng):
    keys = rng.standard_normal((5000, 3))
    tree = local.ScoreTree(keys)
    assert not local.most_keys_vertices(tree, 1e-9)
