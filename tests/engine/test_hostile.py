"""Hostile key sets: keys a few tol from a facet, many points on circles and spheres, far keys, mixed scales.

Every certificate goes through the independent checker of ``oracles.py`` (not the engine's verifier), and
every verdict that can differ from the truth (known by construction) must be in the borderline band. The
default hypothesis profile runs a few examples; ``HYPOTHESIS_PROFILE=thorough`` runs a long random hunt.
"""

import multiprocessing
import queue

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import certificate_failures, distinct_radius

from geomln import in_hull, selectable_keys

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def facet_with_key(d, c, seed):
    """Random points below a random hyperplane, d of them on it (a facet), and a key c tol radius above it.

    Returns the keys (the key last) and the key's distance to the others' hull in units of tol * radius.
    """
    gen = np.random.default_rng(seed)
    normal = gen.standard_normal(d)
    normal /= np.linalg.norm(normal)
    facet = gen.standard_normal((d, d))
    facet -= np.outer(facet @ normal, normal)  # on the hyperplane through 0
    below = gen.standard_normal((3 * d + 4, d))
    below -= np.outer(np.abs(below @ normal) + 0.1, normal)
    foot = gen.dirichlet(np.ones(d)) @ facet  # inside the facet, so the nearest point of the hull
    keys = np.vstack([facet, below, foot])
    radius = distinct_radius(keys)  # the key moves by ~1e-8 radius: the radius stays the same to 1e-8
    keys[-1] = foot + c * 1e-9 * radius * normal
    return keys, c * radius / distinct_radius(keys)


def check(keys, result, truth=None, bias=None):
    """All certificates hold; verdicts that differ from `truth` (relative distances / tol) are borderline."""
    assert certificate_failures(keys, result, bias=bias) == {}
    if truth is not None:
        wrong = result.selectable_mask != (truth > 1.0)
        assert not (wrong & ~result.borderline_mask).any(), np.flatnonzero(wrong & ~result.borderline_mask)
        assert (0.1 <= truth[wrong]).all() and (truth[wrong] <= 10.0).all()


@given(st.integers(min_value=2, max_value=8), st.floats(min_value=0.5, max_value=20.0), seeds)
def test_a_key_a_few_tol_above_a_facet(d, c, seed):
    keys, distance = facet_with_key(d, c, seed)
    truth = np.full(len(keys), np.inf)
    truth[-1] = distance
    result = selectable_keys(keys)
    check(keys, result)
    key_wrong = result.selectable_mask[-1] != (distance > 1.0)
    assert not key_wrong or result.borderline_mask[-1]
    if 0.1 * 1.01 > distance or distance > 10.0 * 1.01:
        assert not key_wrong
    membership = in_hull(keys[-1:], keys[:-1])
    assert membership.inside_mask[0] == (not result.selectable_mask[-1]) or membership.borderline_mask[0]


def circle_truth(angles, radius_of_set):
    """Distance of each point of the unit circle to the hull of the others (neighbours' chord), per tol."""
    order = np.argsort(angles)
    sorted_angles = angles[order]
    gaps = np.diff(np.concatenate([sorted_angles, sorted_angles[:1] + 2 * np.pi]))
    before, after = np.roll(gaps, 1), gaps
    truth = np.empty(angles.size)
    truth[order] = 2 * np.sin(before / 2) * np.sin(after / 2) / radius_of_set / 1e-9
    return truth


@given(st.integers(min_value=100, max_value=3000), seeds, st.sampled_from([1.0, 1e-6, 1e6]))
def test_many_points_on_a_circle_in_a_plane_of_r3(n, seed, unit):
    """LayerNorm without eps in d = 3: points on a circle; every key is a vertex, many within tol of a chord."""
    gen = np.random.default_rng(seed)
    angles = gen.uniform(0, 2 * np.pi, n)
    plane = np.linalg.qr(gen.standard_normal((3, 2)))[0]
    keys = unit * (np.column_stack([np.cos(angles), np.sin(angles)]) @ plane.T) + 3 * unit * gen.standard_normal(3)
    result = selectable_keys(keys)
    check(keys, result, circle_truth(angles, distinct_radius(keys) / unit))


@given(st.integers(min_value=3, max_value=8), st.integers(min_value=50, max_value=800), seeds)
def test_many_points_on_a_sphere(d, n, seed):
    gen = np.random.default_rng(seed)
    keys = gen.standard_normal((n, d))
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    check(keys, selectable_keys(keys))


@given(st.integers(min_value=2, max_value=8), st.integers(min_value=3, max_value=60),
       st.floats(min_value=3.0, max_value=12.0), seeds, st.booleans(), st.sampled_from(["auto", "lp"]))
def test_far_keys(d, n, log_distance, seed, with_bias, method):
    """The far key squeezes the others into a cluster a few tol wide: HiGHS alone cannot resolve it."""
    gen = np.random.default_rng(seed)
    keys = gen.standard_normal((n, d))
    far = gen.standard_normal(d)
    keys = np.vstack([keys, 10.0**log_distance * far / np.linalg.norm(far)])
    bias = gen.standard_normal(n + 1) if with_bias else None
    check(keys, selectable_keys(keys, bias=bias, method=method), bias=bias)


@given(st.integers(min_value=2, max_value=6), st.lists(st.floats(min_value=-9.0, max_value=0.0), min_size=2,
       max_size=5), seeds)
def test_clusters_at_mixed_scales(d, log_scales, seed):
    gen = np.random.default_rng(seed)
    keys = np.vstack([gen.standard_normal(d) + 10.0**s * gen.standard_normal((12, d)) for s in log_scales])
    check(keys, selectable_keys(keys))


@given(st.integers(min_value=1, max_value=6), st.floats(min_value=-300.0, max_value=299.0), seeds)
def test_huge_and_tiny_magnitudes(d, log_unit, seed):
    gen = np.random.default_rng(seed)
    keys = gen.standard_normal((40, d)) * 10.0**log_unit
    bias = gen.standard_normal(40) * 10.0**log_unit
    check(keys, selectable_keys(keys))
    check(keys, selectable_keys(keys, bias=bias), bias=bias)


def test_the_checker_rejects_tampered_certificates():
    keys, _ = facet_with_key(3, 0.3, 7)  # the key is 0.3 tol above the facet: unselectable, a combination
    result = selectable_keys(keys)
    assert not result.selectable_mask[-1] and certificate_failures(keys, result) == {}
    indices, weights = result.combinations[len(keys) - 1]
    moved = keys.copy()
    moved[-1] += 3e-9 * distinct_radius(keys) * np.eye(3)[0]  # 3 tol away from the combination
    assert len(keys) - 1 in certificate_failures(moved, result)
    shifted = np.roll(weights, 1)
    if not np.allclose(shifted, weights):
        tampered = dict(result.combinations.items())
        tampered[len(keys) - 1] = (indices, shifted)
        assert len(keys) - 1 in certificate_failures(keys, _with(result, combinations=tampered))
    vertex = int(result.selectable_indices[0])
    queries = result.witness_queries.copy()
    queries[vertex] *= -1
    assert vertex in certificate_failures(keys, _with(result, witness_queries=queries))
    assert certificate_failures(keys + 1e8, selectable_keys(keys + 1e8)) == {}


def _with(result, **changes):
    import dataclasses

    return dataclasses.replace(result, **changes)


def _decide_far_key_sets(out):
    """Decide far-key sets over d = 2..8 and far distances 1e3..1e12; put the number of bad certificates."""
    bad = 0
    for d in range(2, 9):
        for log_distance in (3, 5, 7, 9, 11, 12):
            gen = np.random.default_rng([d, log_distance])
            keys = np.vstack([gen.standard_normal((50, d)), 10.0**log_distance * np.eye(d)[0]])
            bias = gen.standard_normal(51)
            for result, b in ((selectable_keys(keys), None), (selectable_keys(keys, bias=bias), bias)):
                bad += len(certificate_failures(keys, result, bias=b))
            bad += int(in_hull(keys[:5], keys[5:]).inside_mask.size != 5)
    out.put(bad)


def test_far_keys_terminate_under_a_watchdog():
    """The sets that once hung: 50 keys and a far one. Run in a child process killed after a generous limit."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_decide_far_key_sets, args=(out,), daemon=True)
    child.start()
    try:
        bad = out.get(timeout=600)
    except queue.Empty:
        pytest.fail("deciding far-key sets did not finish within 600 s: a loop without progress")
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
    assert bad == 0
