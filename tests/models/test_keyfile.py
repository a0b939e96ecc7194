import json
import struct

import numpy as np
import pytest

from geomln import DataFileError, InputError, KeyArray, load_keys, save_keys
from geomln.models.keyfile import META_KEY, SUPPORTED_SUFFIXES


class _Custom:
    pass


def _meta_json(**fields):
    return json.dumps({"format": "geomln.keys", "version": 1, **fields})


# ---- round trips, one per format --------------------------------------------------------------------------
def test_npy_2d_round_trip(tmp_path, rng):
    values = rng.normal(size=(7, 3))
    np.save(tmp_path / "k.npy", values)
    keys = load_keys(tmp_path / "k.npy")
    assert keys.axes == ("token", "dim")
    assert keys.values.dtype == np.float64 and not keys.values.flags.writeable
    np.testing.assert_array_equal(keys.values, values)
    assert keys.metadata["source_dtype"] == "float64"
    assert keys.tokens is None and keys.seq_offsets is None and keys.n_slices == 1


def test_npy_float16_is_upcast_and_remembered(tmp_path, rng):
    values = rng.normal(size=(2, 5, 4)).astype(np.float16)
    np.save(tmp_path / "k.npy", values)
    keys = load_keys(tmp_path / "k.npy", axes="head,token,dim")
    assert keys.axes == ("head", "token", "dim")
    assert keys.metadata["source_dtype"] == "float16"
    np.testing.assert_array_equal(keys.values, values.astype(np.float64))


def test_npz_single_array_needs_no_name(tmp_path, rng):
    values = rng.normal(size=(4, 2)).astype(np.float32)
    np.savez(tmp_path / "k.npz", only=values)
    keys = load_keys(tmp_path / "k.npz")
    assert keys.metadata["name"] == "only" and keys.metadata["source_dtype"] == "float32"
    np.testing.assert_array_equal(keys.values, values)


def test_save_and_load_keys_round_trip_with_metadata(tmp_path, rng):
    keys = rng.normal(size=(2, 3, 9, 4))
    hidden = rng.normal(size=(2, 9, 6))
    tokens = [f"t{i}" for i in range(9)]
    path = tmp_path / "keys.npz"
    save_keys(path, {"keys": keys, "hidden": hidden},
              axes={"keys": "layer,head,token,dim", "hidden": "layer,token,dim"}, tokens=tokens,
              seq_offsets=[0, 4, 9], metadata={"model": {"name": "toy"}},
              array_metadata={"keys": {"hook_points": ["a", "b"]}}, dtype="float64")
    loaded = load_keys(path)  # the default array is the first one
    assert loaded.axes == ("layer", "head", "token", "dim")
    np.testing.assert_array_equal(loaded.values, keys)
    assert loaded.tokens == tuple(tokens)
    assert loaded.seq_offsets.tolist() == [0, 4, 9]
    assert loaded.metadata["model"] == {"name": "toy"} and loaded.metadata["hook_points"] == ["a", "b"]
    other = load_keys(path, name="hidden")
    assert other.axes == ("layer", "token", "dim")
    np.testing.assert_array_equal(other.values, hidden)
    assert "hook_points" not in other.metadata


def test_save_keys_moves_token_and_dim_last_and_stores_float32(tmp_path, rng):
    stored = rng.normal(size=(5, 2, 3))  # token, head, dim
    save_keys(tmp_path / "k.npz", {"k": stored}, axes="token,head,dim")
    keys = load_keys(tmp_path / "k.npz")
    assert keys.axes == ("head", "token", "dim")
    assert keys.metadata["source_dtype"] == "float32"
    np.testing.assert_array_equal(keys.values, stored.transpose(1, 0, 2).astype(np.float32))


def test_npz_metadata_written_by_hand_is_read(tmp_path, rng):
    values = rng.normal(size=(3, 6, 2))
    np.savez(tmp_path / "k.npz", a=values, b=values[0], **{META_KEY: np.array(_meta_json(
        default="a", arrays={"a": {"axes": ["head", "pos", "d_head"]}}, tokens=list("abcdef")))})
    keys = load_keys(tmp_path / "k.npz")
    assert keys.axes == ("head", "token", "dim")  # aliases pos -> token, d_head -> dim
    assert keys.tokens == tuple("abcdef")


def test_safetensors_round_trip_with_metadata(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    values = rng.normal(size=(2, 5, 3)).astype(np.float16)
    meta = _meta_json(arrays={"k": {"axes": "head,token,dim"}}, seq_offsets=[0, 2, 5])
    st.save_file({"k": values, "other": values[0].astype(np.float32)}, tmp_path / "k.safetensors",
                 metadata={META_KEY: meta})
    keys = load_keys(tmp_path / "k.safetensors", name="k")
    assert keys.axes == ("head", "token", "dim") and keys.metadata["source_dtype"] == "float16"
    np.testing.assert_array_equal(keys.values, values.astype(np.float64))
    assert [s.matrix.shape for s in keys.slices()] == [(2, 3), (3, 3), (2, 3), (3, 3)]


def test_safetensors_bfloat16_read_without_torch(tmp_path):
    pytest.importorskip("safetensors")
    expected = np.array([[1.5, -2.0, 0.15625], [3.0, 1024.0, -0.0078125]])  # exact in bfloat16
    bits = (expected.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"k": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, len(bits)]}}).encode()
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bits)
    keys = load_keys(tmp_path / "b.safetensors")
    assert keys.metadata["source_dtype"] == "bfloat16"
    np.testing.assert_array_equal(keys.values, expected)


@pytest.mark.torch
def test_pt_single_tensor_and_bfloat16(tmp_path):
    torch = pytest.importorskip("torch")
    tensor = torch.tensor([[1.5, -2.0], [0.25, 8.0], [3.0, 1.0]], dtype=torch.bfloat16)
    torch.save(tensor, tmp_path / "k.pt")
    keys = load_keys(tmp_path / "k.pt")
    assert keys.metadata["source_dtype"] == "bfloat16"
    np.testing.assert_array_equal(keys.values, [[1.5, -2.0], [0.25, 8.0], [3.0, 1.0]])
    with pytest.raises(DataFileError, match="single tensor; omit `name`"):
        load_keys(tmp_path / "k.pt", name="x")


@pytest.mark.torch
def test_pt_transformerlens_cache_layout_and_layer_stacking(tmp_path, rng):
    torch = pytest.importorskip("torch")
    batch, pos, heads, d_head, d_model = 2, 5, 3, 4, 6
    hook_k = [rng.normal(size=(batch, pos, heads, d_head)).astype(np.float32) for _ in range(3)]
    cache = {f"blocks.{layer}.attn.hook_k": torch.from_numpy(hook_k[layer]) for layer in range(3)}
    resid = rng.normal(size=(batch, pos, d_model)).astype(np.float32)
    cache["blocks.0.hook_resid_pre"] = torch.from_numpy(resid)
    torch.save(cache, tmp_path / "cache.pth")

    one = load_keys(tmp_path / "cache.pth", name="blocks.1.attn.hook_k")
    assert one.axes == ("batch", "head", "token", "dim")
    np.testing.assert_array_equal(one.values, hook_k[1].transpose(0, 2, 1, 3))

    stacked = load_keys(tmp_path / "cache.pth", name="blocks.*.attn.hook_k")
    assert stacked.axes == ("layer", "batch", "head", "token", "dim")
    np.testing.assert_array_equal(stacked.values, np.stack(hook_k).transpose(0, 1, 3, 2, 4))
    assert stacked.metadata["stacked_names"] == [f"blocks.{i}.attn.hook_k" for i in range(3)]
    first = next(stacked.slices())
    assert first.labels == {"layer": 0, "batch": 0, "head": 0}
    np.testing.assert_array_equal(first.matrix, hook_k[0][0, :, 0, :])

    resid = load_keys(tmp_path / "cache.pth", name="blocks.0.hook_resid_pre")
    assert resid.axes == ("batch", "token", "dim")


@pytest.mark.torch
def test_pt_nested_past_key_values_and_meta(tmp_path, rng):
    torch = pytest.importorskip("torch")
    layers = [(torch.from_numpy(rng.normal(size=(1, 2, 4, 3))), torch.zeros(1, 2, 4, 3)) for _ in range(2)]
    torch.save({"past": layers, META_KEY: _meta_json(axes="batch,head,token,dim")}, tmp_path / "kv.pt")
    keys = load_keys(tmp_path / "kv.pt", name="past.*.0")
    assert keys.axes == ("layer", "batch", "head", "token", "dim") and keys.shape == (2, 1, 2, 4, 3)
    np.testing.assert_array_equal(keys.values, np.stack([k.numpy() for k, _ in layers]))


@pytest.mark.torch
def test_pt_refuses_pickled_objects(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"k": torch.ones(2, 2), "obj": _Custom()}, tmp_path / "bad.pt")  # classes are refused
    with pytest.raises(DataFileError, match=r"weights_only=True"):
        load_keys(tmp_path / "bad.pt", name="k")


def test_h5_dataset_path_axes_attribute_and_root_meta(tmp_path, rng):
    h5py = pytest.importorskip("h5py")
    values = rng.normal(size=(4, 2, 3))  # token, head, dim
    with h5py.File(tmp_path / "k.h5", "w") as handle:
        dataset = handle.create_dataset("layer0/keys", data=values)
        dataset.attrs["axes"] = "token,head,dim"
        handle.create_dataset("layer0/other", data=values[:, 0])
        handle.attrs[META_KEY] = _meta_json(tokens=["a", "b", "c", "d"])
    keys = load_keys(tmp_path / "k.h5", name="/layer0/keys")
    assert keys.axes == ("head", "token", "dim") and keys.tokens == ("a", "b", "c", "d")
    np.testing.assert_array_equal(keys.values, values.transpose(1, 0, 2))
    with pytest.raises(DataFileError, match=r"available: layer0/keys, layer0/other"):
        load_keys(tmp_path / "k.h5")


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t"), (".txt", " ")])
def test_text_formats(tmp_path, suffix, sep):
    path = tmp_path / f"k{suffix}"
    lines = [sep.join(str(v) for v in row) for row in [[1, 2.5], [3, -4]]]
    path.write_text("# keys\n" + "\n".join(lines) + "\n")
    keys = load_keys(path)
    np.testing.assert_array_equal(keys.values, [[1.0, 2.5], [3.0, -4.0]])


# ---- axes and slices --------------------------------------------------------------------------------------
def test_axes_argument_overrides_metadata_and_reorders(rng):
    values = rng.normal(size=(5, 2, 3, 4))  # token, layer, head, dim
    keys = KeyArray.from_array(values, axes=("position", "layer", "head", "features"))
    assert keys.axes == ("layer", "head", "token", "dim")
    np.testing.assert_array_equal(keys.values, values.transpose(1, 2, 0, 3))


def test_slices_split_ragged_sequences_and_carry_tokens(rng):
    values = rng.normal(size=(2, 3, 7, 4))
    tokens = list("abcdefg")
    keys = KeyArray.from_array(values, axes="layer,head,token,dim", tokens=tokens, seq_offsets=[0, 2, 7])
    got = list(keys.slices())
    assert len(got) == keys.n_slices == 2 * 3 * 2
    expected = [({"layer": layer, "head": head, "sequence": s}, values[layer, head, a:b], tuple(tokens[a:b]))
                for layer in range(2) for head in range(3) for s, (a, b) in enumerate([(0, 2), (2, 7)])]
    for (labels, matrix, toks), (want_labels, want_matrix, want_tokens) in zip(got, expected, strict=True):
        assert labels == want_labels and toks == want_tokens
        np.testing.assert_array_equal(matrix, want_matrix)
        assert not matrix.flags.writeable


def test_select_fixes_leading_axes(rng):
    values = rng.normal(size=(2, 3, 5, 4))
    keys = KeyArray.from_array(values, axes="layer,head,token,dim", seq_offsets=[0, 1, 5])
    sub = keys.select(head=2)
    assert sub.axes == ("layer", "token", "dim")
    np.testing.assert_array_equal(sub.values, values[:, 2])
    assert sub.seq_offsets.tolist() == [0, 1, 5]
    np.testing.assert_array_equal(np.asarray(keys.select(layer=1, head=0)), values[1, 0])
    with pytest.raises(InputError, match="`head` index must be in"):
        keys.select(head=3)
    with pytest.raises(InputError, match="cannot select on batch"):
        keys.select(batch=0)


# ---- errors -----------------------------------------------------------------------------------------------
def test_unknown_suffix_lists_supported(tmp_path):
    (tmp_path / "k.xlsx").write_text("x")
    with pytest.raises(DataFileError, match=r"unsupported file type '\.xlsx'.*\.safetensors, \.pt"):
        load_keys(tmp_path / "k.xlsx")
    assert ".hdf5" in SUPPORTED_SUFFIXES


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_keys(tmp_path / "nope.npz")


def test_missing_or_ambiguous_name_lists_arrays(tmp_path, rng):
    np.savez(tmp_path / "k.npz", alpha=rng.normal(size=(2, 2)), beta=rng.normal(size=(2, 2)))
    with pytest.raises(DataFileError, match=r"holds 2 arrays; choose one with name=.*alpha, beta"):
        load_keys(tmp_path / "k.npz")
    with pytest.raises(DataFileError, match=r"`name` 'gamma' is not an array of .* \(available: alpha, beta\)"):
        load_keys(tmp_path / "k.npz", name="gamma")
    with pytest.raises(DataFileError, match=r"`name` 'x\.\*' is not an array of .*"):
        load_keys(tmp_path / "k.npz", name="x.*")


def test_name_for_single_array_file_is_refused(tmp_path):
    np.save(tmp_path / "k.npy", np.ones((2, 2)))
    with pytest.raises(DataFileError, match="single array; omit `name`"):
        load_keys(tmp_path / "k.npy", name="keys")


def test_wrong_rank(tmp_path):
    np.save(tmp_path / "k.npy", np.ones(4))
    with pytest.raises(InputError, match=r"at least 2 dimensions \(token, dim\); got shape \(4,\)"):
        load_keys(tmp_path / "k.npy")


@pytest.mark.parametrize(("axes", "match"), [
    ("layer,token,dim", r"`axes` names 3 axes \(layer, token, dim\) but .* has 4 dimensions"),
    ("layer,head,batch,token,dim", r"`axes` names 5 axes"),
    ("layer,head,token,feature,dim", "distinct identifiers"),  # feature is an alias of dim
    ("layer,head,dim,dim", "distinct identifiers"),
    ("layer,head,seq,dim", "must name a 'token' axis"),
    ("layer,head,token,d-x", "distinct identifiers"),
])
def test_axes_not_matching(tmp_path, axes, match):
    np.save(tmp_path / "k.npy", np.ones((2, 2, 3, 2)))
    with pytest.raises(InputError, match=match):
        load_keys(tmp_path / "k.npy", axes=axes)


def test_axes_of_wrong_type():
    with pytest.raises(TypeError, match="`axes` must be a comma-separated string"):
        KeyArray.from_array(np.ones((2, 2)), axes=3)


def test_nan_names_slice_and_row(tmp_path):
    values = np.ones((2, 3, 6, 2))
    values[1, 2, 4, 1] = np.nan
    values[1, 2, 5, 0] = np.inf
    save_keys(tmp_path / "ok.npz", {"keys": np.ones((2, 3, 6, 2))}, axes="layer,head,token,dim",
              seq_offsets=[0, 3, 6])
    with pytest.raises(InputError, match=r"contains 1 NaN and 1 infinite value\(s\) "
                                         r"\(first at layer=1, head=2, sequence=1, row 1\)"):
        KeyArray.from_array(values, axes="layer,head,token,dim", seq_offsets=[0, 3, 6])
    np.savez(tmp_path / "bad.npz", keys=values)
    with pytest.raises(InputError, match=r"array 'keys' of .*bad\.npz.* contains 1 NaN .*layer=1, "
                                         r"head=2, row 4"):
        load_keys(tmp_path / "bad.npz", axes="layer,head,token,dim")


@pytest.mark.parametrize(("values", "match"), [
    (np.arange(6).reshape(3, 2), r"holds int64 values, not floating-point keys"),
    (np.ones((3, 2), dtype=bool), r"holds bool values"),
    (np.ones((3, 2), dtype=complex), r"must be real-valued; got complex"),
])
def test_integer_and_complex_refused_with_hint(tmp_path, values, match):
    np.save(tmp_path / "k.npy", values)
    with pytest.raises(TypeError, match=match):
        load_keys(tmp_path / "k.npy")


@pytest.mark.parametrize(("offsets", "match"), [
    ([0, 3, 2, 5], "must increase strictly from 0 to the 5 rows"),
    ([1, 5], "must increase strictly"),
    ([0, 4], "must increase strictly"),
    ([0.0, 5.0], "must be a 1-D integer array"),
    ([5], "must be a 1-D integer array"),
])
def test_bad_seq_offsets(offsets, match):
    with pytest.raises(InputError, match=match):
        KeyArray.from_array(np.ones((5, 2)), seq_offsets=offsets)


def test_bad_metadata_in_file(tmp_path):
    np.savez(tmp_path / "t.npz", k=np.ones((3, 2)), **{META_KEY: np.array(_meta_json(tokens=["a", "b"]))})
    with pytest.raises(InputError, match=r"`tokens` must hold one string per row of the token axis "
                                         r"\(3\); got 2"):
        load_keys(tmp_path / "t.npz")
    np.savez(tmp_path / "j.npz", k=np.ones((3, 2)), **{META_KEY: np.array("{not json")})
    with pytest.raises(DataFileError, match="__geomln_meta__ is not valid JSON"):
        load_keys(tmp_path / "j.npz")
    with pytest.raises(InputError, match="'sequence' cannot be combined"):
        KeyArray.from_array(np.ones((2, 3, 2)), axes="sequence,token,dim", seq_offsets=[0, 2, 3])


def test_stacking_arrays_of_different_shapes(tmp_path):
    np.savez(tmp_path / "k.npz", **{"l.0.k": np.ones((3, 2)), "l.1.k": np.ones((4, 2))})
    with pytest.raises(DataFileError, match=r"cannot stack 2 arrays of different shapes"):
        load_keys(tmp_path / "k.npz", name="l.*.k")


def test_corrupt_file(tmp_path):
    (tmp_path / "k.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataFileError, match="cannot read"):
        load_keys(tmp_path / "k.npz")


def test_missing_optional_reader(tmp_path, monkeypatch):
    (tmp_path / "k.h5").write_bytes(b"not really")
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(DataFileError, match=r"needs the optional package 'h5py': "
                                            r"pip install 'geomln\[formats\]'"):
        load_keys(tmp_path / "k.h5")


def test_keyarray_constructor_requires_canonical_axes():
    with pytest.raises(InputError, match=r"must end in \('token', 'dim'\)"):
        KeyArray(np.ones((2, 3)), ("dim", "token"))
    with pytest.raises(InputError, match="n >= 1 tokens"):
        KeyArray(np.ones((0, 3)), ("token", "dim"))


def test_save_keys_errors_leave_no_file(tmp_path):
    with pytest.raises(DataFileError, match=r"written as \.npz"):
        save_keys(tmp_path / "k.npy", {"k": np.ones((2, 2))}, axes="token,dim")
    with pytest.raises(InputError, match="`dtype` must be one of"):
        save_keys(tmp_path / "k.npz", {"k": np.ones((2, 2))}, axes="token,dim", dtype="int8")
    with pytest.raises(InputError, match="`default` must be one of the array names k"):
        save_keys(tmp_path / "k.npz", {"k": np.ones((2, 2))}, axes="token,dim", default="q")
    with pytest.raises(InputError, match="`arrays` must be a non-empty dict"):
        save_keys(tmp_path / "k.npz", {}, axes="token,dim")
    with pytest.raises(InputError, match="`k` contains 1 NaN"):
        save_keys(tmp_path / "k.npz", {"k": np.array([[1.0, np.nan]])}, axes="token,dim")
    assert list(tmp_path.iterdir()) == []
