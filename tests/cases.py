"""Named, deliberately pathological key sets for the selectability engine (deterministic).

``CASES[name]`` is a :class:`Case`: the keys, the expected selectable mask when it is known by
construction (else None: the tests use the oracles), whether the float values are exact small
integers (exact ``Fraction`` certificate checks apply) and whether the set is full-rank and in
general position in low dimension (Qhull applies).
"""

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["Case", "CASES", "layer_norm_rows"]


@dataclass(frozen=True)
class Case:
    keys: np.ndarray
    expected: np.ndarray | None = None
    exact: bool = False
    general_position: bool = False


def layer_norm_rows(x, *, scale=True):
    """LayerNorm without affine parameters (eps = 0): centre each row, then divide by its std if `scale`."""
    centred = x - x.mean(axis=1, keepdims=True)
    return centred / centred.std(axis=1, keepdims=True) if scale else centred


def _mask(n, true_indices):
    mask = np.zeros(n, dtype=bool)
    mask[list(true_indices)] = True
    return mask


def _lattice_cube():
    keys = np.array(list(itertools.product(range(5), repeat=3)), dtype=float)
    corners = [i for i, row in enumerate(keys) if set(row) <= {0.0, 4.0}]
    return Case(keys, _mask(len(keys), corners), exact=True)


def _polygon_midpoints(sides=7):
    angles = 2 * np.pi * np.arange(sides) / sides
    vertices = np.column_stack([np.cos(angles), np.sin(angles)])
    midpoints = (vertices + np.roll(vertices, -1, axis=0)) / 2
    keys = np.vstack([vertices, midpoints])
    return Case(keys, _mask(2 * sides, range(sides)))


def _duplicated_corner():
    square = np.array(list(itertools.product(range(3), repeat=2)), dtype=float)  # corner (0, 0) is row 0
    keys = np.vstack([square, [[0.0, 0.0]], [[1.0, 1.0]]])  # a second (0, 0) and a second centre
    expected = np.array([(row[0] in (0, 2) and row[1] in (0, 2)) for row in keys])
    expected[[0, 9]] = False  # both copies of the duplicated corner
    return Case(keys, expected, exact=True)


def _duplicates():
    rng = np.random.default_rng(101)
    base = rng.standard_normal((30, 3))
    vertex = int(np.argmax(base[:, 0]))  # certainly a vertex
    interior = int(np.argmin(np.linalg.norm(base - base.mean(axis=0), axis=1)))  # very likely interior
    keys = np.vstack([base, base[[vertex, vertex, interior, 3]]])
    return Case(keys)


def _collinear_3d():
    steps = [3, 0, 4, 1, 5, 2]
    keys = np.array([[1, 2, 3]], dtype=float) + np.array(steps, dtype=float)[:, None] * np.array([[2, -1, 1]])
    return Case(keys, _mask(6, [steps.index(0), steps.index(5)]), exact=True)


def _coplanar_3d():
    grid = list(itertools.product(range(4), repeat=2))
    origin, u, v = np.array([1, 0, 2]), np.array([1, 2, 0]), np.array([0, 1, 3])
    keys = np.array([origin + a * u + b * v for a, b in grid], dtype=float)
    corners = [i for i, (a, b) in enumerate(grid) if a in (0, 3) and b in (0, 3)]
    return Case(keys, _mask(len(grid), corners), exact=True)


def _cross_polytope_facets(d=5):
    """Vertices +-d e_i and the centroid (+-1, ..., +-1) of every facet: only the 2d vertices win."""
    vertices = np.vstack([np.eye(d), -np.eye(d)]) * d
    centroids = np.array(list(itertools.product([-1.0, 1.0], repeat=d)))
    return Case(np.vstack([vertices, centroids]), _mask(2 * d + 2**d, range(2 * d)), exact=True)


def _plane_grid_20d():
    """A 6 x 6 integer grid on a 2-plane in 20-D (rank 2): only the grid's 4 corners are selectable."""
    rng = np.random.default_rng(505)
    basis = rng.integers(-3, 4, size=(2, 20)).astype(float)
    grid = list(itertools.product(range(6), repeat=2))
    keys = np.array(grid, dtype=float) @ basis + rng.integers(-5, 5, 20)
    corners = [i for i, (a, b) in enumerate(grid) if a in (0, 5) and b in (0, 5)]
    return Case(keys, _mask(len(grid), corners), exact=True)


def _d1():
    keys = np.array([[3], [-1], [4], [1], [5], [9], [2], [6]], dtype=float)
    return Case(keys, _mask(8, [1, 5]), exact=True)


def _d1_tied_max():
    keys = np.array([[2], [7], [7], [0], [3]], dtype=float)
    return Case(keys, _mask(5, [3]), exact=True)


def _eps_perturbed():
    rng = np.random.default_rng(202)
    cube = np.array(list(itertools.product(range(5), repeat=3)), dtype=float)
    radius = np.linalg.norm(cube - cube.mean(axis=0), axis=1).max()
    return Case(cube + 1e-3 * radius * rng.uniform(-1, 1, cube.shape), general_position=True)


def _gaussian(d, seed):
    return Case(np.random.default_rng(seed).standard_normal((60, d)), general_position=d <= 7)


def _model_like_float32():
    """Attention-layer keys: LayerNorm'd hidden states through a random projection, stored as float32."""
    rng = np.random.default_rng(404)
    hidden = layer_norm_rows(rng.standard_normal((120, 24)) + rng.standard_normal(24))
    projection = rng.standard_normal((24, 10)) * np.linspace(0.2, 1.5, 10)
    keys = hidden @ projection / np.sqrt(24) + 3.0 * rng.standard_normal(10)
    return Case(keys.astype(np.float32))


def _build():
    rng = np.random.default_rng(303)
    cases = {
        "lattice_cube": _lattice_cube(),
        "polygon_midpoints": _polygon_midpoints(),
        "duplicated_corner": _duplicated_corner(),
        "duplicates": _duplicates(),
        "layernorm_scaled": Case(layer_norm_rows(rng.standard_normal((40, 8))), np.ones(40, dtype=bool)),
        "d1": _d1(),
        "d1_tied_max": _d1_tied_max(),
        "collinear_3d": _collinear_3d(),
        "coplanar_3d": _coplanar_3d(),
        "cross_polytope_facets": _cross_polytope_facets(),
        "plane_grid_20d": _plane_grid_20d(),
        "n_below_d": Case(rng.standard_normal((4, 5)), np.ones(4, dtype=bool)),
        "n_is_d_plus_1": Case(rng.standard_normal((6, 5)), np.ones(6, dtype=bool)),
        "all_equal": Case(np.tile([[1.5, -2.0, 3.0]], (5, 1)), np.zeros(5, dtype=bool), exact=True),
        "single": Case(np.array([[1.0, 2.0, 3.0]]), np.ones(1, dtype=bool), exact=True),
        "eps_perturbed": _eps_perturbed(),
        "layernorm_projected": Case(layer_norm_rows(rng.standard_normal((60, 6)), scale=False)),
        "model_like_float32": _model_like_float32(),
    }
    for d in range(3, 16):
        cases[f"gaussian_d{d}"] = _gaussian(d, 1000 + d)
    return cases


CASES = _build()
