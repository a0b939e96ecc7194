"""Property-based tests: random small integer key sets, every verdict proven exactly and matched by an LP."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from oracles import exact_verdicts_hold, lp_selectable

from geomln.engine.certificates import verify_selectability
from geomln.engine.selectability import selectable_keys

small_integer_keys = st.integers(min_value=1, max_value=4).flatmap(
    lambda d: st.integers(min_value=1, max_value=14).flatmap(
        lambda n: arrays(np.int64, (n, d), elements=st.integers(min_value=-3, max_value=3))
    )
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(small_integer_keys)
def test_integer_key_sets_are_decided_exactly(keys):
    """Lattice points are full of ties, duplicates and points on edges: every verdict must still be exact."""
    result = selectable_keys(keys)
    assert exact_verdicts_hold(keys, result) == []
    assert verify_selectability(keys, result).size == 0
    np.testing.assert_array_equal(result.selectable_mask, lp_selectable(keys))


@SETTINGS
@given(small_integer_keys, st.integers(min_value=0, max_value=2**32 - 1))
def test_verdicts_are_invariant_under_permutation_and_translation(keys, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(keys.shape[0])
    shift = rng.integers(-5, 6, size=keys.shape[1])
    base = selectable_keys(keys).selectable_mask
    moved = selectable_keys(keys[order] + shift).selectable_mask
    np.testing.assert_array_equal(moved, base[order])
