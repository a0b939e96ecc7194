"""Every supported architecture: the captured keys and queries reproduce the model's own attention probabilities.

Tiny random-weight models built from configs (nothing is downloaded), eager attention, weights drawn wider
than the default so that attention is far from uniform.
"""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from geomln import InputError, load_keys  # noqa: E402
from geomln.cli._main import main  # noqa: E402
from geomln.models.capture import capture_keys  # noqa: E402

IDS = [3, 7, 1, 9, 4, 4, 12, 5, 2]
_SMALL = {"vocab_size": 40, "initializer_range": 0.3, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
_DECODER = {**_SMALL, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 48, "max_position_embeddings": 32}
CONFIGS = {
    "bert": lambda: transformers.BertConfig(**_DECODER),
    "gpt2": lambda: transformers.GPT2Config(**_SMALL, n_embd=24, n_layer=2, n_head=6, n_positions=32),
    "llama-gqa": lambda: transformers.LlamaConfig(**_DECODER, num_key_value_heads=2),
    "mistral": lambda: transformers.MistralConfig(**_DECODER, num_key_value_heads=2),
    "qwen2": lambda: transformers.Qwen2Config(**_DECODER, num_key_value_heads=1),
    "gpt-neox-partial-rotary": lambda: transformers.GPTNeoXConfig(**_DECODER, rotary_pct=0.5),
    "falcon-new-decoder": lambda: transformers.FalconConfig(**_DECODER, new_decoder_architecture=True,
                                                            num_kv_heads=2),
    "falcon-multi-query": lambda: transformers.FalconConfig(**_DECODER, multi_query=True),
    "falcon-per-head": lambda: transformers.FalconConfig(**_DECODER, multi_query=False),
    "gptj": lambda: transformers.GPTJConfig(**_SMALL, n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
                                            n_positions=32),
}


def _build(name):
    config = CONFIGS[name]()
    torch.manual_seed(len(name))
    return transformers.AutoModel.from_config(config, attn_implementation="eager").eval()


def _attention_from_capture(captured, causal):
    """softmax(q k^T / sqrt(d_head) + mask) per layer and query head, key head h // group (repeat_kv)."""
    q = captured.arrays["queries"].astype(np.float64)
    k = captured.arrays["keys"].astype(np.float64)
    group = q.shape[1] // k.shape[1]
    scores = np.einsum("lhtd,lhsd->lhts", q, np.repeat(k, group, axis=1)) / np.sqrt(q.shape[-1])
    if causal:
        scores = np.where(np.tril(np.ones(scores.shape[-2:], bool)), scores, -np.inf)
    scores -= scores.max(-1, keepdims=True)
    weights = np.exp(scores)
    return weights / weights.sum(-1, keepdims=True)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_captured_keys_reproduce_the_models_attention(name):
    model = _build(name)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([IDS]), output_attentions=True, output_hidden_states=True)
    expected = np.stack([a[0].double().numpy() for a in out.attentions])
    captured = capture_keys(model, [IDS])
    if name != "bert":  # pre-LN: the normalisation's input is the residual stream entering the block
        residual = np.stack([h[0].numpy() for h in out.hidden_states[:-1]])
        np.testing.assert_allclose(captured.arrays["hidden_before_ln"], residual, rtol=1e-5, atol=1e-6)
    meta = captured.metadata["model"]
    assert captured.arrays["queries"].shape[1] == meta["n_heads"]
    assert captured.arrays["keys"].shape[1] == meta["n_kv_heads"]
    assert meta["query_groups"]["kv_head_of_query"] == [
        h // (meta["n_heads"] // meta["n_kv_heads"]) for h in range(meta["n_heads"])]
    got = _attention_from_capture(captured, causal=name != "bert")
    assert expected.std() > 0.05  # attention far from uniform: the comparison has teeth
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-4)
    arrays = captured.metadata["arrays"]
    assert arrays["keys"]["scored"] and arrays["queries"]["scored"]
    if meta["rotary"] is None:
        assert arrays["keys"]["rope"] == "none" and "keys_pre_rope" not in arrays
    else:
        assert arrays["keys"]["rope"] == "post-rotary"
        assert arrays["keys_pre_rope"]["rope"] == "pre-rotary" and not arrays["keys_pre_rope"]["scored"]
        assert "do not use these vectors" in arrays["keys_pre_rope"]["description"]


def test_partial_rotary_leaves_the_other_dims_alone():
    neox = capture_keys(_build("gpt-neox-partial-rotary"), [IDS])
    gptj = capture_keys(_build("gptj"), [IDS])
    for captured in (neox, gptj):
        rope = captured.metadata["model"]["rotary"]
        assert rope["rotary_dims"] == 4 and rope["d_head"] == 8 and rope["partial"]
        arrays = captured.arrays
        np.testing.assert_array_equal(arrays["keys"][..., 4:], arrays["keys_pre_rope"][..., 4:])
        assert not np.allclose(arrays["keys"][..., 1:, :4], arrays["keys_pre_rope"][..., 1:, :4])
    pre = neox.key_array("keys_pre_rope").metadata  # model facts and the array's label side by side
    assert pre["rope"] == "pre-rotary" and pre["rotary"]["rotary_dims"] == 4 and pre["n_heads"] == 4
    assert neox.metadata["model"]["rotary"]["style"] == "rotate-half"
    assert gptj.metadata["model"]["rotary"]["style"] == "interleaved"


def test_padded_batch_rows_reproduce_the_padded_models_attention():
    model = _build("llama-gqa")
    ids = torch.tensor([IDS, IDS[:5] + [0] * 4])
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    captured = capture_keys(model, {"input_ids": ids, "attention_mask": mask})
    assert captured.seq_offsets.tolist() == [0, 9, 14]
    short = capture_keys(model, [IDS[:5]])
    got = _attention_from_capture(short, causal=True)
    expected = np.stack([a[1, :, :5, :5].double().numpy() for a in out.attentions])
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-4)
    np.testing.assert_array_equal(captured.arrays["keys"][:, :, 9:], short.arrays["keys"])


def test_generic_modules_api():
    model = _build("llama-gqa")
    layers = model.layers
    captured = capture_keys(model, [IDS], key_modules=[b.self_attn.k_proj for b in layers],
                            query_modules=[b.self_attn.q_proj for b in layers])
    reference = capture_keys(model, [IDS])
    np.testing.assert_array_equal(captured.arrays["keys"], reference.arrays["keys_pre_rope"])
    np.testing.assert_array_equal(captured.arrays["queries"], reference.arrays["queries_pre_rope"])
    assert set(captured.arrays) == {"keys", "queries"}
    assert captured.metadata["arrays"]["keys"]["rope"] == "unknown"
    assert captured.metadata["arrays"]["keys"]["hook_points"] == ["layers.0.self_attn.k_proj:output",
                                                                  "layers.1.self_attn.k_proj:output"]

    class Split(torch.nn.Module):  # already split output (batch, seq, heads, d_head)
        def forward(self, x):
            return x.reshape(*x.shape[:-1], 2, -1)

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(40, 6)
            self.k = Split()

        def forward(self, input_ids):
            return self.k(self.embed(input_ids))

    toy = Toy()
    keys = capture_keys(toy, [IDS, IDS[:3]], key_modules=[toy.k]).arrays["keys"]
    assert keys.shape == (1, 2, 12, 3)
    np.testing.assert_allclose(keys[0, 1, :9], toy.embed.weight.detach().numpy()[IDS, 3:])
    with pytest.raises(InputError, match="pass d_head="):
        capture_keys(toy, [IDS], key_modules=[toy.embed])
    with pytest.raises(InputError, match="`query_modules` must hold one module per layer"):
        capture_keys(model, [IDS], key_modules=[layers[0].self_attn.k_proj], query_modules=[])
    with pytest.raises(TypeError, match=r"`key_modules\[0\]` must be a torch.nn.Module"):
        capture_keys(model, [IDS], key_modules=["k_proj"])


def test_unsupported_layout_names_the_generic_api():
    model = torch.nn.Sequential(torch.nn.Embedding(40, 4))
    with pytest.raises(TypeError, match=r"unsupported layout: .*key_modules=.*query_modules="):
        capture_keys(model, [IDS])


def test_falcon_with_alibi_is_refused():
    config = transformers.FalconConfig(**_DECODER, alibi=True)
    with pytest.raises(InputError, match="alibi=True"):
        capture_keys(transformers.FalconModel(config), [IDS])


def test_cli_analyze_pairs_grouped_queries_with_their_key_heads(tmp_path, capsys):
    path = tmp_path / "llama.npz"
    capture_keys(_build("llama-gqa"), [IDS, IDS[:6]]).save(path)
    meta = load_keys(path).metadata
    assert meta["model"]["n_heads"] == 4 and meta["model"]["n_kv_heads"] == 2
    assert load_keys(path, name="keys_pre_rope").metadata["rope"] == "pre-rotary"
    out = tmp_path / "report.json"
    assert main(["analyze", str(path), "--queries", "queries", "--causal", "--format", "json",
                 "--out", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "query heads" in table[1] and table[2].split()[:3] == ["0", "0", "2"]  # layer, head, sequences
    report = json.loads(out.read_text())
    assert report["meta"]["query_groups"]["group_size"] == 2
    assert [r["query_heads"] for r in report["rows"] if r["labels"]["layer"] == 0] == [[0, 1], [0, 1], [2, 3],
                                                                                          [2, 3]]
    assert all(r["n_queries"] == 2 * r["n"] for r in report["rows"])
