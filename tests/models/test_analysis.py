"""analyze_keys and causal_last_positions against naive oracles (an engine call per prefix, brute argmax)."""

import csv
import functools
import io
import json

import numpy as np
import pytest
from cases import layer_norm_rows

import geomln
from geomln import DataFileError, InputError, KeyArray, analyze_keys, save_keys
from geomln.engine import _geometry
from geomln.models.causal import causal_last_positions

SQUARE = np.array([[0, 0], [4, 0], [0, 4], [4, 4]], dtype=float)


def naive_last_positions(keys, bias=None):
    """L_i = last t with key i selectable among keys[:t+1]: one selectable_keys call per prefix."""
    n = len(keys)
    last = np.arange(n) - 1
    for t in range(n):
        result = geomln.selectable_keys(keys[:t + 1], bias=None if bias is None else bias[:t + 1])
        last[:t + 1][result.selectable_mask] = t
    return last


def square_with_interior(interior_rows, n=8, shift=0.0):
    """n keys on a circle of radius 4 (all vertices), except points near its centre at `interior_rows`."""
    keys = np.empty((n, 2))
    outer = [row for row in range(n) if row not in interior_rows]
    angles = 2 * np.pi * np.arange(len(outer)) / len(outer) + 0.1
    keys[outer] = 4 * np.column_stack([np.cos(angles), np.sin(angles)])
    for row in interior_rows:
        keys[row] = [0.1 * row, -0.05 * row]
    return keys + shift


# --------------------------------------------------------------------------------------------- causal


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_causal_last_positions_match_per_prefix_oracle(rng, d):
    for _ in range(6):
        n = int(rng.integers(2, 35))
        keys = rng.normal(size=(n, d))
        if rng.random() < 0.5:  # later keys shrink towards the middle: many causal verdicts flip
            keys[n // 2:] *= 0.4
        np.testing.assert_array_equal(causal_last_positions(keys), naive_last_positions(keys))


def test_causal_last_positions_with_duplicates_and_lattice(rng):
    for _ in range(6):
        keys = np.round(rng.normal(size=(int(rng.integers(5, 30)), 2)))  # many repeats
        np.testing.assert_array_equal(causal_last_positions(keys), naive_last_positions(keys))


def test_causal_last_positions_with_bias_match_oracle(rng):
    for d in (1, 2, 4):
        for _ in range(4):
            n = int(rng.integers(3, 25))
            keys, bias = rng.normal(size=(n, d)), rng.normal(size=n)
            expected = naive_last_positions(keys, bias)
            np.testing.assert_array_equal(causal_last_positions(keys, bias=bias), expected)


def test_causal_last_positions_on_layer_norm_keys_and_with_one_thread(rng):
    keys = np.vstack([layer_norm_rows(rng.normal(size=(30, 4))), layer_norm_rows(rng.normal(size=(15, 4))) * 0.5])
    keys[40] = keys[3]  # a later copy ends key 3's window
    expected = naive_last_positions(keys)
    np.testing.assert_array_equal(causal_last_positions(keys), expected)
    threads = geomln._jit.get_num_threads()
    geomln._jit.set_num_threads(1)
    try:
        np.testing.assert_array_equal(causal_last_positions(keys), expected)
    finally:
        geomln._jit.set_num_threads(threads)


def test_prefix_decisions_dealt_over_threads_are_in_the_keys_order(rng, monkeypatch):
    points = rng.normal(size=(300, 4))
    keys = np.arange(20, 300, 7)
    ends = keys + 1 + (keys % 3) * 40  # mixed prefix lengths, some past the key
    seeds = np.full((keys.size, 10), -1)
    seeds[:, 0] = keys // 2
    lows, highs = np.full(keys.size, 1e-10), np.full(keys.size, 1e-8)
    decide = functools.partial(_geometry.decide_in_prefixes, points, keys, np.minimum(ends, 300), np.arange(5),
                               seeds, lows, highs)
    monkeypatch.setattr(_geometry, "get_num_threads", lambda: 1)
    in_order = decide()
    monkeypatch.setattr(_geometry, "get_num_threads", lambda: 3)
    dealt = decide()
    assert len(set(in_order.status.tolist())) == 2  # both verdicts occur
    for name in ("status", "distance", "margin", "direction", "support", "weights"):
        np.testing.assert_array_equal(getattr(dealt, name), getattr(in_order, name), err_msg=name)


def test_causal_keys_that_arrive_inside_never_win_and_a_later_copy_ends_a_window():
    keys = np.array([[0, 0], [4, 0], [0, 4], [1, 1], [2, 0], [5, 5], [4, 0]], dtype=float)
    # [1,1] is inside the first triangle; [2,0] lies on an edge; [4,0] is copied at position 6
    assert causal_last_positions(keys).tolist() == [6, 5, 6, 2, 3, 6, 5]


# --------------------------------------------------------------------------------------------- analyze_keys


def synthetic_key_array(rng):
    """(layer=2, head=3, token=16, dim=2) with two sequences of 8; known interior rows per slice."""
    interior = {}
    values = np.empty((2, 3, 16, 2))
    for layer in range(2):
        for head in range(3):
            for seq in range(2):
                rows = {int(r) for r in rng.choice(8, size=layer + head + seq, replace=False)}
                interior[(layer, head, seq)] = sorted(rows)
                values[layer, head, 8 * seq:8 * seq + 8] = square_with_interior(rows, shift=rng.normal())
    tokens = [f"tok{i}" for i in range(16)]
    keys = KeyArray.from_array(values, axes="layer,head,token,dim", seq_offsets=[0, 8, 16], tokens=tokens)
    return keys, interior


def test_rows_list_the_known_unselectable_keys_with_tokens(rng):
    keys, interior = synthetic_key_array(rng)
    report = analyze_keys(keys)
    assert len(report.rows) == 12
    for row in report.rows:
        labels = row["labels"]
        expected = interior[(labels["layer"], labels["head"], labels["sequence"])]
        assert row["unselectable_indices"] == expected
        assert row["n_unselectable"] == len(expected)
        assert row["fraction_unselectable"] == pytest.approx(len(expected) / 8)
        assert row["unselectable_tokens"] == [f"tok{8 * labels['sequence'] + i}" for i in expected]
        assert (row["n"], row["d"], row["affine_rank"], row["n_duplicates"]) == (8, 2, 2, 0)
        assert row["seconds"] >= 0
    assert report.meta["tol"] == 1e-9 and report.meta["n_slices"] == 12


def test_plain_arrays_get_axis_labels_and_paths_are_loaded(tmp_path, rng):
    keys, _ = synthetic_key_array(rng)
    report = analyze_keys(np.asarray(keys.values)[0], axes="head,token,dim")
    assert [row["labels"] for row in report.rows[:2]] == [{"head": 0}, {"head": 1}]
    path = tmp_path / "keys.npz"
    save_keys(path, {"keys": keys.values}, axes=keys.axes, seq_offsets=[0, 8, 16], dtype="float64")
    from_file = analyze_keys(str(path))
    assert [r["unselectable_indices"] for r in from_file.rows] == [
        r["unselectable_indices"] for r in analyze_keys(keys).rows]
    assert from_file.meta["source"] == str(path)


def test_duplicates_and_float16_tolerance(tmp_path):
    keys = np.vstack([SQUARE, SQUARE[:1], [[2.0, 2.0005]]])
    path = tmp_path / "half.npy"
    np.save(path, keys.astype(np.float16))
    row = analyze_keys(str(path)).rows[0]
    assert row["n_duplicates"] == 2 and row["unselectable_indices"] == [0, 4, 5]
    assert analyze_keys(str(path)).meta["tol"] == 1e-3


def test_causal_fields_match_oracle(rng):
    values = rng.normal(size=(2, 20, 2))
    values[:, 10:] *= 0.3
    report = analyze_keys(values, axes="head,token,dim", causal=True)
    for row, block in zip(report.rows, values, strict=True):
        last = naive_last_positions(block)
        position = np.arange(20)
        assert row["causal_last_positions"] == last.tolist()
        assert row["causal_unselectable_indices"] == np.flatnonzero(last < position).tolist()
        winnable = sum(int(p <= t <= last[p]) for t in range(20) for p in range(t + 1))
        assert row["causal_pair_fraction"] == pytest.approx(winnable / (20 * 21 / 2))


def brute_argmax_counts(keys, queries, bias, causal):
    counts = np.zeros(len(keys), dtype=int)
    for t, q in enumerate(queries):
        visible = np.arange(len(keys)) if not causal else np.arange(t + 1)
        scores = keys[visible] @ q + bias[visible]
        counts[visible[np.isclose(scores, scores.max(), rtol=0, atol=1e-9)]] += 1
    return counts


@pytest.mark.parametrize("causal", [False, True])
def test_query_counts_match_brute_force_with_ties(rng, causal):
    keys = square_with_interior({5}, n=8)
    queries = np.vstack([rng.normal(size=(6, 2)), [[1.0, 0.0], [0.0, 0.0]]])  # ties: a corner pair, all keys
    report = analyze_keys(keys, queries=queries, causal=causal)
    row = report.rows[0]
    counts = brute_argmax_counts(keys, queries, np.zeros(8), causal)
    assert row["argmax_counts"] == counts.tolist()
    selectable = np.ones(8, dtype=bool)
    selectable[row["causal_unselectable_indices"] if causal else row["unselectable_indices"]] = False
    never = np.flatnonzero(selectable & (counts == 0))
    assert row["selectable_never_selected_indices"] == never.tolist()
    assert row["n_selected"] == int((counts > 0).sum())
    assert row["n_unselectable_selected"] == int((~selectable & (counts > 0)).sum())  # the zero query


def test_per_slice_queries_follow_the_keys_layout(rng):
    keys, _ = synthetic_key_array(rng)
    queries = KeyArray.from_array(rng.normal(size=(2, 3, 16, 2)), axes="layer,head,token,dim")
    report = analyze_keys(keys, queries=queries)
    slices = list(keys.slices())
    for index, row in enumerate(report.rows):
        layer, head, seq = (row["labels"][a] for a in ("layer", "head", "sequence"))
        block = queries.values[layer, head, 8 * seq:8 * seq + 8]
        expected = brute_argmax_counts(slices[index].matrix, block, np.zeros(8), False)
        assert row["argmax_counts"] == expected.tolist() and row["n_queries"] == 8


@pytest.mark.parametrize("causal", [False, True])
def test_grouped_query_heads_are_paired_with_their_key_head(rng, causal):
    keys = KeyArray.from_array(rng.normal(size=(2, 2, 16, 2)), axes="layer,head,token,dim", seq_offsets=[0, 9, 16])
    queries = KeyArray.from_array(rng.normal(size=(2, 6, 16, 2)), axes="layer,head,token,dim",
                                  seq_offsets=[0, 9, 16])
    report = analyze_keys(keys, queries=queries, causal=causal)
    assert report.meta["query_groups"]["group_size"] == 3
    for row, key_slice in zip(report.rows, keys.slices(), strict=True):
        layer, head, seq = (row["labels"][a] for a in ("layer", "head", "sequence"))
        assert row["query_heads"] == [3 * head, 3 * head + 1, 3 * head + 2]  # repeat_kv: h // 3
        rows = slice(*keys.seq_offsets[seq:seq + 2])
        n = key_slice.matrix.shape[0]
        expected = sum(brute_argmax_counts(key_slice.matrix, queries.values[layer, h, rows], np.zeros(n), causal)
                       for h in row["query_heads"])
        assert row["argmax_counts"] == expected.tolist() and row["n_queries"] == 3 * n
    assert "query heads" in report.to_table().splitlines()[1]
    with pytest.raises(InputError, match="multiple of the keys' heads"):
        analyze_keys(keys, queries=KeyArray.from_array(rng.normal(size=(2, 3, 16, 2)), axes=keys.axes))


def test_queries_by_array_name_of_the_keys_file(tmp_path, rng):
    keys, _ = synthetic_key_array(rng)
    path = tmp_path / "kq.npz"
    queries = rng.normal(size=keys.shape)
    save_keys(path, {"keys": keys.values, "queries": queries}, axes=keys.axes, seq_offsets=[0, 8, 16],
              dtype="float64")
    by_name = analyze_keys(str(path), queries="queries")
    by_array = analyze_keys(keys, queries=KeyArray.from_array(queries, axes=keys.axes))
    assert [r["argmax_counts"] for r in by_name.rows] == [r["argmax_counts"] for r in by_array.rows]


def test_bias_finds_unargmaxable_tokens():
    # a softmax layer: row 4 lies inside the square; with a large bias it becomes selectable again
    weight = np.vstack([SQUARE, [[2.0, 2.0]]])
    assert analyze_keys(weight, bias=np.zeros(5)).rows[0]["unselectable_indices"] == [4]
    assert analyze_keys(weight, bias=[0, 0, 0, 0, 5.0]).rows[0]["unselectable_indices"] == []
    # the zero query picks it
    assert analyze_keys(weight, bias=[0, 0, 0, 0, 0.5]).rows[0]["unselectable_indices"] == []
    # lowering one corner does not help: [2, 2] is also the midpoint of the other diagonal
    assert analyze_keys(weight, bias=[0, 0, 0, -3.0, 0]).rows[0]["unselectable_indices"] == [4]


@pytest.mark.parametrize("normalization", ["projection", "scaling", "layernorm", "rmsnorm"])
def test_normalization_is_applied_before_the_analysis(rng, normalization):
    values = rng.normal(size=(3, 12, 4)) + 1.0
    direct = {"projection": geomln.project, "scaling": geomln.scale, "layernorm": geomln.layer_norm,
              "rmsnorm": geomln.rms_norm}[normalization](values)
    report = analyze_keys(values, axes="head,token,dim", normalization=normalization)
    assert [r["unselectable_indices"] for r in report.rows] == [
        r["unselectable_indices"] for r in analyze_keys(direct, axes="head,token,dim").rows]
    assert report.meta["normalization"] == normalization
    if normalization in ("scaling", "layernorm", "rmsnorm"):  # on a sphere: every distinct key is a vertex
        assert all(r["n_unselectable"] == 0 for r in report.rows)


def test_query_norm_adds_max_attention(rng):
    keys = square_with_interior({2}, n=5)
    row = analyze_keys(keys, query_norm=50.0).rows[0]
    expected = geomln.max_attention(keys, query_norm=50.0).weights
    np.testing.assert_allclose(row["max_attention"], expected)
    assert row["min_max_attention"] == pytest.approx(expected.min())


def test_progress_callback_and_serialisations(rng):
    keys, interior = synthetic_key_array(rng)
    calls = []
    report = analyze_keys(keys, causal=True, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 12) for i in range(1, 13)]
    payload = json.loads(report.to_json())
    assert payload == {"schema_version": geomln.models.analysis.SCHEMA_VERSION, "rows": report.rows,
                       "meta": report.meta}
    parsed = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(parsed) == 12
    for line, row in zip(parsed, report.rows, strict=True):
        assert int(line["layer"]) == row["labels"]["layer"]
        assert int(line["sequence"]) == row["labels"]["sequence"]
        assert line["unselectable_indices"] == " ".join(map(str, row["unselectable_indices"]))
    grid, layers, heads = report.fraction_grid()
    for layer in layers:
        for head in heads:
            pooled = [len(interior[(layer, head, s)]) for s in (0, 1)]
            assert grid[layer, head] == pytest.approx(sum(pooled) / 16)
    table = report.to_table()
    lines = table.splitlines()
    assert len(lines) == 2 + 6 + 1  # title, header, one line per layer x head, total
    assert "causal unsel" in lines[1] and lines[-1].startswith("total: ")
    assert len(report.to_table(per_slice=True).splitlines()) == 2 + 12 + 1


# --------------------------------------------------------------------------------------------- errors


def test_bias_length_mismatch_names_the_slice():
    with pytest.raises(InputError, match=r"`bias` must have length 4 \(the number of keys in slice head=0"):
        analyze_keys(np.stack([SQUARE, SQUARE]), axes="head,token,dim", bias=[1.0, 2.0])


def test_queries_with_another_dimension():
    with pytest.raises(InputError, match=r"`queries` must have d = 2 .* got shape \(3, 5\)"):
        analyze_keys(SQUARE, queries=np.ones((3, 5)))


def test_queries_with_another_leading_shape(rng):
    with pytest.raises(InputError, match=r"`queries` must be one \(m, d\) matrix or have the keys' leading"):
        analyze_keys(rng.normal(size=(2, 3, 5, 2)), axes="layer,head,token,dim",
                     queries=KeyArray.from_array(rng.normal(size=(3, 5, 2)), axes="head,token,dim"))


def test_query_array_name_needs_a_file():
    with pytest.raises(DataFileError, match="`queries`: no such file 'queries'"):
        analyze_keys(SQUARE, queries="queries")


def test_axis_spec_that_does_not_match_the_rank(tmp_path):
    path = tmp_path / "k.npy"
    np.save(path, np.zeros((2, 4, 3)))
    with pytest.raises(InputError, match=r"`axes` names 4 axes"):
        geomln.load_keys(path, axes="layer,head,token,dim")


def test_nan_is_reported_with_slice_and_row(rng):
    values = rng.normal(size=(2, 3, 10, 2))
    values[1, 2, 6, 0] = np.nan
    with pytest.raises(InputError, match=r"1 NaN value\(s\) \(first at layer=1, head=2, sequence=1, row 1"):
        analyze_keys(KeyArray.from_array(values, axes="layer,head,token,dim", seq_offsets=[0, 5, 10]))
    with pytest.raises(InputError, match=r"first at axis0=1, axis1=2, row 6"):
        analyze_keys(values, axes="axis0,axis1,token,dim")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"normalization": "batchnorm"}, "`normalization` must be one of 'projection'"),
    ({"query_norm": -1.0}, "`query_norm` must be a finite number > 0"),
    ({"tol": -1.0}, "`tol` must be a finite number >= 0"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        analyze_keys(SQUARE, **kwargs)


def test_scaling_a_zero_key_names_the_normalization():
    with pytest.raises(InputError, match="`keys` cannot be normalized with 'scaling'"):
        analyze_keys(np.vstack([SQUARE, [[0.0, 0.0]]]), normalization="scaling")


def test_missing_file():
    with pytest.raises(DataFileError, match="no such file"):
        analyze_keys("does/not/exist.npz")
