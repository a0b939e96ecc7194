"""max_attention against closed forms, a brute-force optimiser (SLSQP, several starts), limits in R and the
NumPy solver it replaced (tests/naive_attention.py)."""

from pathlib import Path

import numba
import numpy as np
import pytest
from naive_attention import naive_max_attention
from scipy.optimize import minimize

import geomln
from geomln import InputError, max_attention

DATA = Path(__file__).resolve().parents[2] / "data"


def softmax_weight(keys, bias, q, i, scale):
    scores = scale * (keys @ q) + bias
    scores = scores - scores.max()
    e = np.exp(scores)
    return e[i] / e.sum()


def brute_force(keys, bias, radius, scale, rng, starts=12):
    """Best softmax weight per key found by SLSQP from several random starts on the ball."""
    n, d = keys.shape
    best = np.zeros(n)
    for i in range(n):
        def negative_log_weight(q, i=i):
            scores = scale * (keys @ q) + bias
            top = scores.max()
            return -(scores[i] - top - np.log(np.exp(scores - top).sum()))

        ball = {"type": "ineq", "fun": lambda q: radius**2 - q @ q, "jac": lambda q: -2 * q}
        for _ in range(starts):
            start = rng.normal(size=d)
            start *= radius * rng.uniform(0.1, 1.0) / np.linalg.norm(start)
            found = minimize(negative_log_weight, start, method="SLSQP", constraints=[ball],
                             options={"ftol": 1e-14, "maxiter": 500})
            q = found.x
            if np.linalg.norm(q) > radius:
                q = q * radius / np.linalg.norm(q)
            best[i] = max(best[i], softmax_weight(keys, bias, q, i, scale))
    return best


def test_two_keys_on_a_line_match_the_logistic_closed_form():
    for radius in (0.1, 1.0, 7.5):
        result = max_attention([[0.0], [1.0]], query_norm=radius, scale=1.0)
        expected = 1.0 / (1.0 + np.exp(-radius))
        np.testing.assert_allclose(result.weights, [expected, expected], rtol=1e-12)
        np.testing.assert_allclose(np.abs(result.queries[:, 0]), radius, rtol=1e-9)


def test_centre_of_a_square_never_gets_more_than_a_fifth():
    # exp(q.c) <= (exp(q.a) + exp(q.b)) / 2 for both diagonals, so weight(centre) <= 1/5, reached at q = 0
    keys = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]], dtype=float)
    for radius in (0.3, 3.0, 300.0):
        result = max_attention(keys, query_norm=radius, scale=1.0)
        assert result.weights[4] == pytest.approx(0.2, rel=1e-9)
        assert result.upper_bounds[4] == pytest.approx(0.2, rel=1e-9)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape", [(5, 2), (7, 3), (6, 4)])
def test_agrees_with_brute_force_optimiser(rng, shape, with_bias):
    keys = rng.normal(size=shape)
    bias = rng.normal(size=shape[0]) if with_bias else np.zeros(shape[0])
    radius, scale = 2.5, 0.8
    result = max_attention(keys, query_norm=radius, bias=bias if with_bias else None, scale=scale)
    brute = brute_force(keys, bias, radius, scale, rng)
    # our optimum is never beaten, and the optimiser gets as close as its own tolerance
    assert np.all(brute <= result.upper_bounds * (1 + 1e-9))
    np.testing.assert_allclose(result.weights, brute, rtol=1e-5)
    # the returned queries attain the returned weights inside the ball
    assert np.all(np.linalg.norm(result.queries, axis=1) <= radius * (1 + 1e-12))
    attained = [softmax_weight(keys, bias, result.queries[i], i, scale) for i in range(shape[0])]
    np.testing.assert_allclose(attained, result.weights, rtol=1e-12)
    assert np.all(result.upper_bounds >= result.weights)
    assert np.all(result.upper_bounds <= result.weights * np.exp(result.tol) * (1 + 1e-12))


def test_vertices_tend_to_one_and_interior_keys_stay_bounded(rng):
    keys = rng.normal(size=(40, 2))
    vertices = geomln.selectable_keys(keys).selectable_mask
    results = [max_attention(keys, query_norm=r) for r in (1e2, 1e4, 1e6)]
    small, large, huge = (r.weights for r in results)
    for result in results[1:]:  # 1 up to the stated tolerance (raised to the rounding floor at huge norms)
        assert np.all(result.weights[vertices] >= np.exp(-result.tol))
        assert result.tol < 1e-6
    assert np.all(large[vertices] >= small[vertices] - 1e-12)  # more room never hurts
    # interior keys: a finite optimum, reached already at moderate norms
    assert np.all(huge[~vertices] < 0.5)
    np.testing.assert_allclose(huge[~vertices], large[~vertices], rtol=1e-6)


def test_default_scale_is_one_over_sqrt_d(rng):
    keys = rng.normal(size=(6, 4))
    assert max_attention(keys, query_norm=3.0).scale == pytest.approx(0.5)
    np.testing.assert_allclose(max_attention(keys, query_norm=3.0).weights,
                               max_attention(keys, query_norm=1.5, scale=1.0).weights, rtol=1e-8)


def test_single_key_gets_everything():
    result = max_attention([[1.0, 2.0]], query_norm=1.0)
    assert result.weights.tolist() == [1.0]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"keys": [1.0, 2.0], "query_norm": 1.0}, "keys"),
    ({"keys": [[1.0, np.nan]], "query_norm": 1.0}, "keys"),
    ({"keys": [[1.0], [2.0]], "query_norm": 0.0}, "query_norm"),
    ({"keys": [[1.0], [2.0]], "query_norm": np.inf}, "query_norm"),
    ({"keys": [[1.0], [2.0]], "query_norm": 1.0, "bias": [1.0, 2.0, 3.0]}, "bias"),
    ({"keys": [[1.0], [2.0]], "query_norm": 1.0, "scale": -1.0}, "scale"),
    ({"keys": [[1.0], [2.0]], "query_norm": 1.0, "tol": -1.0}, "tol"),
])
def test_errors_name_the_argument(kwargs, match):
    with pytest.raises(InputError, match=match):
        max_attention(**kwargs)


def test_query_norm_of_the_wrong_kind_is_a_type_error():
    with pytest.raises(TypeError, match="query_norm"):
        max_attention([[1.0], [2.0]], query_norm="big")


def assert_consistent(new, old):
    """Each solver's attained weight is within the other's certified upper bound."""
    assert np.all(new.weights <= old.upper_bounds * (1 + 1e-12))
    assert np.all(old.weights <= new.upper_bounds * (1 + 1e-12))
    assert np.all(new.gaps <= new.tol)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize(("shape", "radius"), [((40, 3), 5.0), ((60, 8), 30.0), ((25, 16), 1e3), ((12, 40), 8.0)])
def test_agrees_with_the_naive_numpy_solver(rng, shape, radius, with_bias):
    keys = rng.normal(size=shape) * rng.uniform(0.2, 3.0, size=shape[1]) + 5.0  # anisotropic, off-centre
    bias = rng.normal(size=shape[0]) if with_bias else None
    new = max_attention(keys, query_norm=radius, bias=bias, progress=False)
    old = naive_max_attention(keys, query_norm=radius, bias=bias)
    assert new.tol == old.tol
    assert_consistent(new, old)


def test_agrees_with_the_naive_solver_on_minilm_keys():
    keys = np.ascontiguousarray(next(geomln.load_keys(DATA / "minilm_keys.npz").slices()).matrix)
    assert_consistent(max_attention(keys, query_norm=8.0, progress=False), naive_max_attention(keys, query_norm=8.0))


def test_hostile_keys_duplicates_and_a_hyperplane(rng):
    keys = rng.normal(size=(30, 5))
    keys[:, 4] = 0.0  # rank-deficient: a singular Hessian in every iteration
    keys[10:15] = keys[0]  # duplicates share the weight
    result = max_attention(keys, query_norm=50.0, progress=False)
    assert_consistent(result, naive_max_attention(keys, query_norm=50.0))
    assert np.all(result.weights[10:15] <= 1 / 6 + 1e-12)


def test_one_thread_and_two_threads_give_identical_results(rng):
    keys = rng.normal(size=(50, 6))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = max_attention(keys, query_norm=10.0, progress=False)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        parallel = max_attention(keys, query_norm=10.0, progress=False)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(serial.queries, parallel.queries)
    np.testing.assert_array_equal(serial.upper_bounds, parallel.upper_bounds)


def test_progress_bar_goes_to_stderr_and_only_when_asked(rng, capsys, monkeypatch):
    import geomln.models.attention as attention

    keys = rng.normal(size=(40, 4))
    quiet = max_attention(keys, query_norm=3.0, progress=False)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(attention, "_CHUNK_WORK", 1)  # many steps, and no delay: the bar shows at once
    monkeypatch.setattr(attention, "_PROGRESS_DELAY", 0.0)
    loud = max_attention(keys, query_norm=3.0, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "max_attention" in err
    np.testing.assert_array_equal(quiet.weights, loud.weights)
