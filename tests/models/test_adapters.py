"""as_key_array and analyze_keys on what researchers hold in memory; refusals of unnamed layouts."""

import types
import warnings

import numpy as np
import pytest

import geomln
from geomln import GeomlnWarning, InputError, KeyArray, analyze_keys, as_key_array
from geomln.cli._main import main


# ---- never guess ----------------------------------------------------------------------------------------------
def test_unnamed_4d_array_is_refused_with_the_axes_to_pass(rng):
    hook_k = rng.normal(size=(1, 200, 4, 8))
    with pytest.raises(InputError, match=r"shape \(1, 200, 4, 8\).*axes='batch,token,head,dim'"):
        analyze_keys(hook_k)
    report = analyze_keys(hook_k, axes="batch,token,head,dim")
    assert [r["n"] for r in report.rows] == [200] * 4 and report.meta["axes"][-2:] == ["token", "dim"]


@pytest.mark.torch
def test_bare_tensor_in_a_pt_file_is_refused_by_the_cli(tmp_path, rng, capsys):
    torch = pytest.importorskip("torch")
    path = tmp_path / "hook_k.pt"
    torch.save(torch.from_numpy(rng.normal(size=(1, 30, 2, 4))), path)
    assert main(["analyze", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--axes batch,token,head,dim" in err
    assert main(["analyze", str(path), "--axes", "batch,token,head,dim"]) == 0


def test_two_dimensional_arrays_need_no_axes():
    assert as_key_array(np.eye(3)).axes == ("token", "dim")


# ---- TransformerLens ------------------------------------------------------------------------------------------
def _fake_tl_cache(rng, *, rotary_hooks, positional="rotary", batch=2, pos=9, n_heads=4, n_kv=2, d_head=3):
    """A mapping with ActivationCache's interface (keys(), __getitem__, .model.cfg) and its hook names/shapes."""
    store = {}
    for layer in range(2):
        for kind, heads in (("q", n_heads), ("k", n_kv)):
            store[f"blocks.{layer}.attn.hook_{kind}"] = rng.normal(size=(batch, pos, heads, d_head))
            if rotary_hooks:
                store[f"blocks.{layer}.attn.hook_rot_{kind}"] = rng.normal(size=(batch, pos, heads, d_head))
        store[f"blocks.{layer}.hook_resid_pre"] = rng.normal(size=(batch, pos, 8))

    class Cache:
        model = types.SimpleNamespace(cfg=types.SimpleNamespace(
            n_heads=n_heads, n_key_value_heads=n_kv, d_head=d_head, n_layers=2, d_model=8, model_name="fake",
            positional_embedding_type=positional))
        keys = store.keys
        __getitem__ = store.__getitem__

    return Cache(), store


def test_transformerlens_cache_prefers_rotated_keys_and_assembles_batch_rows(rng):
    cache, store = _fake_tl_cache(rng, rotary_hooks=True)
    keys = as_key_array(cache)
    assert keys.axes == ("layer", "head", "token", "dim") and keys.shape == (2, 2, 18, 3)
    assert keys.seq_offsets.tolist() == [0, 9, 18] and keys.metadata["rope"] == "post-rotary"
    np.testing.assert_array_equal(keys.values[1, 0, 9:], store["blocks.1.attn.hook_rot_k"][1, :, 0])
    assert keys.metadata["model"]["n_kv_heads"] == 2
    report = analyze_keys(cache, queries=cache, causal=True)
    assert report.meta["query_groups"]["group_size"] == 2
    assert all(r["query_heads"] == [2 * r["labels"]["head"], 2 * r["labels"]["head"] + 1] for r in report.rows)
    assert report.meta["hook_points"] == ["blocks.0.attn.hook_rot_k", "blocks.1.attn.hook_rot_k"]
    assert "TransformerLens" in report.meta["layout_convention"] and report.meta["model"]["n_heads"] == 4


def test_transformerlens_pre_rotary_keys_warn_and_say_so(rng):
    cache, _ = _fake_tl_cache(rng, rotary_hooks=False)
    with pytest.warns(GeomlnWarning, match="scores do not use them"):
        report = analyze_keys(cache)
    assert report.meta["scored"] is False and any("do not use them" in n for n in report.notes())
    assert report.notes()[0] in report.to_table()


def test_attention_mask_drops_padding(rng):
    cache, store = _fake_tl_cache(rng, rotary_hooks=True, positional="rotary")
    mask = np.ones((2, 9), dtype=int)
    mask[1, 6:] = 0
    keys = as_key_array(cache, attention_mask=mask)
    assert keys.seq_offsets.tolist() == [0, 9, 15]
    with pytest.raises(InputError, match="`attention_mask` must have shape"):
        as_key_array(cache, attention_mask=mask[:, :4])


def test_mapping_without_attention_hooks_names_the_fix():
    with pytest.raises(TypeError, match=r"without TransformerLens attention hooks .*names: a, b"):
        analyze_keys({"a": np.zeros((3, 2)), "b": np.zeros((3, 2))})


def test_real_transformerlens_bridge_matches_the_hf_cache(tmp_path):
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge import TransformerBridge

    model, ids = _tiny_llama(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bridge's own deprecation chatter
        bridge = TransformerBridge.boot_transformers(str(tmp_path), hf_model=model)
        _, cache = bridge.run_with_cache(ids)
    keys = as_key_array(cache)
    assert keys.metadata["hook_points"][0] == "blocks.0.attn.hook_rot_k"
    np.testing.assert_allclose(keys.values, _hf_keys(model, ids), atol=1e-6)


# ---- Hugging Face past_key_values ---------------------------------------------------------------------------
def _tiny_llama(path=None):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    if path is not None:  # a local checkpoint with a tokenizer, for libraries that load by name
        from tokenizers import Tokenizer, models, pre_tokenizers

        vocab = Tokenizer(models.WordLevel({f"w{i}": i for i in range(50)}, unk_token="w0"))
        vocab.pre_tokenizer = pre_tokenizers.Whitespace()
        transformers.PreTrainedTokenizerFast(tokenizer_object=vocab, unk_token="w0", pad_token="w1",
                                             bos_token="w2", eos_token="w3").save_pretrained(path)
        model.save_pretrained(path)
    return model, torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))


def _hf_keys(model, ids):
    """The model's own post-rotary keys, from geomln's capture (golden-tested against output_attentions)."""
    from geomln.models.capture import capture_keys

    captured = [capture_keys(model, ids[b:b + 1]).arrays["keys"] for b in range(ids.shape[0])]
    return np.concatenate(captured, axis=2)


@pytest.mark.torch
def test_dynamic_cache_keys_are_the_models_post_rotary_keys():
    torch = pytest.importorskip("torch")
    model, ids = _tiny_llama()
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    keys = as_key_array(cache)
    assert keys.shape == (2, 2, 14, 4) and keys.metadata["scored"] is True
    np.testing.assert_allclose(keys.values, _hf_keys(model, ids), atol=1e-6)
    legacy = tuple((layer.keys, layer.values) for layer in cache.layers)
    np.testing.assert_array_equal(as_key_array(legacy).values, keys.values)
    assert analyze_keys(cache).meta["n_slices"] == 2 * 2 * 2
    with pytest.raises(InputError, match="holds keys and values, not queries"):
        as_key_array(cache, role="queries")


# ---- nnsight-style [..., d_model] outputs ----------------------------------------------------------------------
@pytest.mark.torch
def test_module_outputs_split_into_heads_match_the_pre_rotary_projections():
    torch = pytest.importorskip("torch")
    from geomln.models.capture import capture_keys

    model, ids = _tiny_llama()
    outputs = []
    hooks = [layer.self_attn.k_proj.register_forward_hook(lambda m, a, out: outputs.append(out.detach()))
             for layer in model.model.layers]
    with torch.no_grad():
        model(ids[:1])
    for hook in hooks:
        hook.remove()
    keys = as_key_array(outputs, n_heads=2)  # what nnsight's .save() of k_proj.output holds
    np.testing.assert_allclose(keys.values, capture_keys(model, ids[:1]).arrays["keys_pre_rope"], atol=1e-6)
    with pytest.raises(InputError, match="`n_heads` = 3 must divide"):
        as_key_array(outputs, n_heads=3)


def test_real_nnsight_saved_outputs(tmp_path):
    pytest.importorskip("nnsight")
    import transformers
    from nnsight import LanguageModel

    model, ids = _tiny_llama(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = LanguageModel(model, tokenizer=transformers.AutoTokenizer.from_pretrained(tmp_path))
        with lm.trace(ids):
            first = lm.model.layers[0].self_attn.k_proj.output.save()
            second = lm.model.layers[1].self_attn.k_proj.output.save()
    keys = as_key_array([first, second], n_heads=2)
    assert keys.shape == (2, 2, 14, 4) and keys.seq_offsets.tolist() == [0, 7, 14]


# ---- duplicates ------------------------------------------------------------------------------------------------
def test_mostly_duplicate_unselectable_keys_are_flagged():
    square = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], dtype=float)
    keys = KeyArray.from_array(np.vstack([square, square, [[1.0, 1.0]]]), axes="token,dim")
    report = analyze_keys(keys)
    assert report.rows[0]["n_unselectable"] == 9 and report.rows[0]["n_unselectable_duplicates"] == 8
    assert report.meta["unselectable_duplicates"] == {"n": 8, "share": 8 / 9, "mostly_duplicates": True}
    assert "exact copies of another key" in report.to_table()
    assert not analyze_keys(np.vstack([square, [[1.0, 1.0]]])).meta["unselectable_duplicates"]["mostly_duplicates"]


def test_library_exports():
    assert geomln.as_key_array is as_key_array
