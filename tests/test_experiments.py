"""Tests of geomln.experiments and `geomln experiment`; torch parts are marked and skip without torch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import geomln
from geomln.cli._main import main
from geomln.errors import InputError
from geomln.experiments.majority import (
    class_counts,
    majority_partitions,
    make_majority_data,
    steps_to_reach,
    stratified_split,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL_CORPUS = ROOT / "data" / "kjv_excerpt.txt"


@pytest.fixture
def rng():
    return np.random.default_rng(20230611)


def _need_selectable_keys():
    if not hasattr(geomln, "selectable_keys"):
        pytest.skip("geomln.selectable_keys is not available yet (lands in geomln/engine/selectability.py)")


# ---------------------------------------------------------------- numpy-only parts (no torch needed)
def test_core_import_does_not_import_torch():
    code = ("import sys, geomln, geomln.cli._main as cli\n"
            "for name in cli.SUBCOMMANDS: cli._build_parser([name])\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("seq_len, n_classes, margin", [(50, 20, 6), (10, 3, 2), (7, 2, 7), (5, 5, 1)])
def test_majority_data_labels_and_margins(seq_len, n_classes, margin):
    tokens, labels = make_majority_data(300, seq_len=seq_len, n_classes=n_classes, min_margin=margin, rng=1)
    assert tokens.shape == (300, seq_len) and tokens.dtype == np.int64 and labels.shape == (300,)
    assert tokens.min() >= 0 and tokens.max() < n_classes
    for row, label in zip(tokens, labels, strict=True):  # independent recount, one row at a time
        counts = sorted(((list(row).count(c), c) for c in range(n_classes)), reverse=True)
        assert counts[0][1] == label
        assert counts[0][0] - counts[1][0] >= margin


@pytest.mark.parametrize("seq_len, n_classes, margin", [(12, 4, 2), (9, 5, 1), (8, 3, 8), (10, 5, 3)])
def test_majority_partitions_match_brute_force(seq_len, n_classes, margin):
    import itertools

    expected = set()
    for counts in itertools.product(range(seq_len + 1), repeat=n_classes):
        top = sorted(counts, reverse=True)
        if sum(counts) == seq_len and top[0] - top[1] >= margin:
            expected.add(tuple(top))
    got = majority_partitions(seq_len, n_classes, margin)
    assert got.shape == (len(expected), n_classes) and {tuple(row) for row in got} == expected
    assert [tuple(row) for row in got] == sorted(expected, reverse=True)


def test_majority_partitions_at_the_papers_sizes():
    assert majority_partitions(50, 20, 6).shape == (69414, 20)
    assert majority_partitions(30, 10, 6).shape == (1204, 10)


@pytest.mark.parametrize("n_samples, per_partition", [(120, 10), (500, 10), (37, 4)])
def test_majority_data_draws_per_partition_blocks(n_samples, per_partition):
    tokens, labels = make_majority_data(n_samples, seq_len=12, n_classes=4, min_margin=2,
                                        per_partition=per_partition, rng=3)
    profiles = np.sort(class_counts(tokens, 4), axis=1)[:, ::-1]
    blocks = [profiles[i : i + per_partition] for i in range(0, n_samples, per_partition)]
    assert all((block == block[0]).all() for block in blocks)  # one partition per block
    n_partitions = majority_partitions(12, 4, 2).shape[0]  # 22: 120 samples use 12 distinct ones
    distinct = {tuple(block[0]) for block in blocks}
    assert len(distinct) == min(len(blocks), n_partitions)


def test_majority_data_class_balance():
    labels = make_majority_data(20_000, seq_len=30, n_classes=10, rng=0)[1]
    shares = np.bincount(labels, minlength=10) / labels.size
    assert np.abs(shares - 0.1).max() < 0.012  # ~4 standard errors of a binomial share


def test_class_counts():
    tokens = np.array([[0, 2, 2, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(class_counts(tokens, 3), [[1, 1, 2], [0, 4, 0]])


def test_majority_data_is_deterministic_and_shuffled():
    a = make_majority_data(200, rng=5)
    b = make_majority_data(200, rng=5)
    c = make_majority_data(200, rng=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    # tokens are shuffled within rows, not left in sorted blocks
    assert np.mean([np.all(np.diff(row) >= 0) for row in a[0]]) < 0.05
    # every class can be the label
    assert set(make_majority_data(2000, n_classes=4, seq_len=20, min_margin=3, rng=0)[1]) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_margin": 51}, "min_margin"),
        ({"n_classes": 1}, "n_classes"),
        ({"seq_len": 0}, "seq_len"),
        ({"min_margin": 0}, "min_margin"),
    ],
)
def test_majority_data_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        make_majority_data(10, **kwargs)


def test_stratified_split(rng):
    labels = rng.integers(0, 5, size=1003)
    train, test = stratified_split(labels, test_fraction=0.2, rng=0)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    for c in range(5):
        members = np.sum(labels == c)
        assert np.sum(labels[test] == c) == int(round(members * 0.2))
    again = stratified_split(labels, test_fraction=0.2, rng=0)
    assert np.array_equal(again[1], test)


@pytest.mark.parametrize("labels, fraction, match", [([], 0.2, "labels"), ([0, 1], 1.0, "test_fraction")])
def test_stratified_split_errors(labels, fraction, match):
    with pytest.raises(InputError, match=match):
        stratified_split(labels, test_fraction=fraction)


def test_steps_to_reach():
    assert steps_to_reach([1.0, 0.5, 0.2, 0.1], 0.2) == 3
    assert steps_to_reach([0.1], 0.2) == 1
    assert steps_to_reach([1.0, np.nan, 0.3], 0.2) is None


# ---------------------------------------------------------------- torch parts
@pytest.mark.torch
@pytest.mark.parametrize("projection", [True, False])
@pytest.mark.parametrize("scaling", [True, False])
@pytest.mark.parametrize("eps", [0.0, 1e-5])
@pytest.mark.parametrize("affine", [True, False])
def test_factorized_layer_norm_matches_numpy_twin(rng, projection, scaling, eps, affine):
    torch = pytest.importorskip("torch")
    from geomln.experiments._models import FactorizedLayerNorm

    x = rng.normal(size=(3, 5, 7)) * rng.uniform(0.1, 10, size=(3, 5, 1)) + rng.normal(size=(3, 5, 1))
    module = FactorizedLayerNorm(7, projection=projection, scaling=scaling, elementwise_affine=affine,
                                 eps=eps)
    module = module.double()
    weight = bias = None
    if affine:
        weight, bias = rng.normal(size=7), rng.normal(size=7)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(weight))
            module.bias.copy_(torch.from_numpy(bias))
    got = module(torch.from_numpy(x)).detach().numpy()
    expected = geomln.factorized_layer_norm(
        x, projection=projection, scaling=scaling, weight=weight, bias=bias, eps=eps
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.torch
def test_factorized_layer_norm_agrees_with_torch_layer_norm(rng):
    torch = pytest.importorskip("torch")
    from geomln.experiments._models import FactorizedLayerNorm

    x = torch.from_numpy(rng.normal(size=(4, 8)))
    got = FactorizedLayerNorm(8, eps=1e-5).double()(x)
    expected = torch.nn.functional.layer_norm(x, (8,), eps=1e-5)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    on_sphere = FactorizedLayerNorm(8, projection=False).double()(x)  # eps = 0: exactly norm sqrt(d)
    np.testing.assert_allclose(on_sphere.norm(dim=-1).numpy(), np.sqrt(8), rtol=1e-14)
    zero = FactorizedLayerNorm(8).double()(torch.zeros(1, 8))
    assert torch.all(zero == 0)


@pytest.mark.torch
@pytest.mark.parametrize(
    "variant, norm, key_norm",
    [("projection", "paper", np.sqrt(5)), ("projection", "sqrt-d", np.sqrt(5)),
     ("no-projection", "paper", 1 / np.sqrt(5)), ("no-projection", "sqrt-d", np.sqrt(5)), ("none", "paper", None)],
)
def test_majority_model_keys_and_effective_queries(variant, norm, key_norm):
    torch = pytest.importorskip("torch")
    from geomln.experiments._models import MajorityModel

    torch.manual_seed(0)
    model = MajorityModel(6, hidden=5, ff=7, variant=variant, no_projection_norm=norm).double()
    keys, queries = model.keys_and_queries()
    emb = model.embedding.weight.detach()
    if variant == "none":
        torch.testing.assert_close(keys, emb)
    else:  # norms at initialisation: the paper's no-projection keys are 5x shorter than LayerNorm's
        np.testing.assert_allclose(keys.norm(dim=1).numpy(), key_norm, rtol=1e-13)
        sums = keys.sum(dim=1).abs().max().item()
        assert (sums < 1e-12) if variant == "projection" else (sums > 1e-3)
    # the effective query's dot product with a key is the raw attention score
    with torch.no_grad():
        scores = model.w_q(keys) @ model.w_k(keys).T
    torch.testing.assert_close(queries @ keys.T, scores, rtol=1e-12, atol=1e-12)
    logits = model(torch.tensor([[0, 1, 2, 1]]))
    assert logits.shape == (1, 4, 6)
    # no positions: permuting the sequence permutes the outputs
    permuted = model(torch.tensor([[1, 2, 1, 0]]))
    torch.testing.assert_close(permuted[0, [3, 0, 1, 2]], logits[0], rtol=1e-12, atol=1e-12)


@pytest.mark.torch
def test_majority_model_initialisation_follows_transformer_encoder_layer():
    torch = pytest.importorskip("torch")
    from geomln.experiments._models import MajorityModel

    torch.manual_seed(0)
    model = MajorityModel(20, hidden=8, ff=8)
    stacked = torch.cat([model.w_q.weight, model.w_k.weight, model.w_v.weight]).detach()
    bound = np.sqrt(6 / (8 + 24))  # Xavier-uniform of the (24, 8) in_proj_weight
    assert stacked.abs().max() <= bound and stacked.abs().max() > 0.9 * bound
    assert torch.all(model.out.bias == 0) and model.norm2.eps == 0.0 and model.norm1.eps == 0.0
    assert model.w_q.bias is None and model.w_k.bias is None and model.w_v.bias is None
    assert abs(float(model.embedding.weight.detach().std()) - 1) < 0.2  # nn.Embedding: standard normal


@pytest.mark.torch
@pytest.mark.parametrize("variant, norm", [("projection", "paper"), ("no-projection", "paper"),
                                           ("no-projection", "sqrt-d"), ("none", "paper")])
def test_majority_forward_counts_equals_token_forward(variant, norm):
    torch = pytest.importorskip("torch")
    from geomln.experiments._models import MajorityModel

    tokens, _ = make_majority_data(30, seq_len=12, n_classes=5, min_margin=2, rng=4)
    torch.manual_seed(1)
    model = MajorityModel(5, hidden=4, ff=3, variant=variant, no_projection_norm=norm).double()
    by_token = model(torch.from_numpy(tokens))
    by_count = model.forward_counts(torch.from_numpy(class_counts(tokens, 5)))
    torch.testing.assert_close(by_count[torch.arange(30)[:, None], torch.from_numpy(tokens)], by_token,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.torch
def test_train_majority_smoke_is_deterministic():
    pytest.importorskip("torch")
    from geomln.experiments.majority import summarize_majority, train_majority

    kwargs = dict(seed=3, steps=4, n_samples=400, seq_len=12, n_classes=5, min_margin=2, batch_size=64,
                  eval_every=2, progress=False)
    a = train_majority(variant="projection", **kwargs)
    b = train_majority(variant="projection", **kwargs)
    c = train_majority(variant="no-projection", **kwargs)
    assert np.array_equal(a.loss, b.loss) and np.array_equal(a.angle, b.angle)
    assert a.loss.shape == a.angle.shape == a.test_accuracy.shape == (4,)
    assert np.all(np.isfinite(a.loss)) and np.all((a.angle >= 0) & (a.angle <= 90))
    assert np.isnan(a.test_accuracy[[0, 2]]).all() and np.all(a.test_accuracy[[1, 3]] >= 0)
    assert a.keys.shape == a.queries.shape == (5, 8)
    # final angle log equals geomln.angle_to_ones of the final queries, weighted by the last batch only
    final = geomln.angle_to_ones(a.queries, folded=True)
    assert final.min() - 1 <= a.angle[-1] <= final.max() + 1
    summary = summarize_majority([a, c], threshold=100.0)
    assert summary["projection"]["steps_to_loss"] == [1] and summary["no-projection (paper norm)"]["seeds"] == [3]
    assert summary["projection"]["steps_to_loss_mean_std"] == {"mean": 1.0, "std": 0.0}
    assert summary["projection"]["loss_at_step"] == {}  # no checkpoint within 4 steps
    with pytest.raises(InputError, match="no_projection_norm"):
        train_majority(variant="no-projection", no_projection_norm="unit", **kwargs)


@pytest.mark.torch
def test_tiny_gpt_records_keys_and_is_causal():
    torch = pytest.importorskip("torch")
    from geomln.experiments._models import TinyGPT

    for scaling in (True, False):
        torch.manual_seed(1)
        model = TinyGPT(30, n_positions=16, scaling=scaling).double().eval()
        tokens = torch.tensor([[1, 5, 7, 2, 9, 9, 3]])
        record = []
        logits = model(tokens, record)
        assert logits.shape == (1, 7, 30) and len(record) == 4
        for before, after in record:
            expected = geomln.factorized_layer_norm(before.detach().numpy(), scaling=scaling, eps=0.0)
            np.testing.assert_allclose(after.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model(tokens, offset=0), logits)
        assert not torch.allclose(model(tokens, offset=5), logits)
        changed = model(torch.tensor([[1, 5, 7, 2, 9, 9, 4]]))
        torch.testing.assert_close(changed[0, :6], logits[0, :6])
        assert not torch.allclose(changed[0, 6], logits[0, 6])


@pytest.mark.torch
def test_tokenizers_round_trip():
    pytest.importorskip("tokenizers")
    from geomln.experiments.lm import load_corpus, train_tokenizer

    text = load_corpus(SMALL_CORPUS)
    bpe = train_tokenizer(text, kind="bpe", vocab_size=300)
    ids = bpe.encode(text)
    assert ids.dtype == np.int64 and ids.max() < bpe.vocab_size <= 300 and ids.size < len(text)
    assert bpe.tokenizer.decode(ids.tolist()) == text
    raw = train_tokenizer(text, kind="bytes")
    assert raw.vocab_size == 256 and bytes(raw.encode(text).astype(np.uint8)) == text.encode()
    with pytest.raises(InputError, match="tokenizer"):
        train_tokenizer(text, kind="words")


def test_load_corpus_errors(tmp_path):
    from geomln.errors import DataFileError
    from geomln.experiments.lm import load_corpus

    with pytest.raises(DataFileError, match="corpus.*missing.txt"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataFileError, match="empty"):
        load_corpus(tmp_path / "empty.txt")


def test_eval_windows():
    from geomln.experiments.lm import eval_windows

    windows = eval_windows(np.arange(100), n_sequences=3, length=30)
    assert windows.shape == (3, 30) and windows[0, 0] == 0 and windows[-1, -1] == 99
    assert np.all(np.diff(windows, axis=1) == 1) and windows[1, 0] >= 30
    with pytest.raises(InputError, match="eval_sequences"):
        eval_windows(np.arange(100), n_sequences=4, length=30)


@pytest.mark.torch
def test_collect_keys_and_training_smoke():
    pytest.importorskip("torch")
    from geomln.experiments.lm import collect_keys, eval_windows, train_lm

    tokens = np.frombuffer(SMALL_CORPUS.read_bytes(), dtype=np.uint8).astype(np.int64)
    train, test = tokens[:1100], tokens[1100:]
    run = train_lm(train, test, 256, scaling=True, steps=3, block_size=32, batch_size=2, eval_every=2,
                   eval_batches=1, n_positions=64, progress=False)
    again = train_lm(train, test, 256, scaling=True, steps=3, block_size=32, batch_size=2, eval_every=2,
                     eval_batches=1, n_positions=64, progress=False)
    assert np.array_equal(run.train_loss, again.train_loss)
    assert np.isfinite(run.test_loss[[1, 2]]).all() and np.isnan(run.test_loss[0])
    before, after = collect_keys(run.model, eval_windows(test, n_sequences=2, length=50))
    assert before.shape == after.shape == (4, 2, 50, 8) and after.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(after, axis=-1), np.sqrt(8), rtol=1e-13)
    np.testing.assert_allclose(after.sum(axis=-1), 0.0, atol=1e-12)
    with pytest.raises(InputError, match="train_tokens"):
        train_lm(train[:20], test, 256, steps=1, block_size=32, progress=False)


def test_unselectable_fractions_on_known_configurations(rng):
    _need_selectable_keys()
    from geomln.experiments.lm import unselectable_fractions

    square = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0], [0.0, 0.0], [0.2, -0.3]])
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    circle = np.stack([np.cos(angles), np.sin(angles)], 1)
    sphere = geomln.scale(geomln.project(rng.normal(size=(200, 8))))
    keys = np.zeros((2, 1, 6, 2))
    keys[0, 0], keys[1, 0] = square, circle
    np.testing.assert_allclose(unselectable_fractions(keys), [[2 / 6], [0.0]])
    assert unselectable_fractions(sphere[None, None])[0, 0] == 0.0
    with pytest.raises(InputError, match="keys"):
        unselectable_fractions(square)


def test_save_keys_npz_layout(tmp_path, rng):
    from geomln.experiments.lm import save_keys_npz

    keys = rng.normal(size=(4, 2, 5, 8))
    path = tmp_path / "keys.npz"
    save_keys_npz(path, {"keys": keys, "ln_input": keys + 1}, {"model": "test"})
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(archive["__geomln_meta__"].item())
        np.testing.assert_array_equal(archive["keys"], keys)
    assert meta["axes"] == ["layer", "seq", "token", "dim"] and meta["model"] == "test"
    assert meta["arrays"]["ln_input"]["axes"] == meta["axes"] and meta["default"] == "keys"
    assert [p.name for p in tmp_path.iterdir()] == ["keys.npz"]
    if hasattr(geomln, "load_keys"):
        loaded = geomln.load_keys(path)
        assert tuple(loaded.axes) == ("layer", "seq", "token", "dim")
        np.testing.assert_array_equal(np.asarray(loaded), keys)


# ---------------------------------------------------------------- command line
@pytest.mark.torch
def test_cli_majority_smoke(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "maj"
    argv = ["experiment", "majority", "--out", str(out), "--seeds", "2", "--steps", "3", "--samples", "300",
            "--batch-size", "50", "--eval-every", "2", "--hidden", "3", "--no-progress", "--seq-len", "12",
            "--classes", "5", "--margin", "2", "--ffn", "4", "--no-projection-norm", "paper", "sqrt-d"]
    assert main(argv) == 0
    assert "no-projection (sqrt-d norm)" in capsys.readouterr().out
    rows = (out / "runs.csv").read_text().splitlines()
    assert rows[0] == "variant,seed,step,loss,angle_deg,test_accuracy" and len(rows) == 1 + 2 * 3 * 3
    report = json.loads((out / "summary.json").read_text())
    assert list(report["summary"]) == ["projection", "no-projection (paper norm)", "no-projection (sqrt-d norm)"]
    assert report["summary"]["projection"]["seeds"] == [0, 1]
    arguments = report["provenance"]["arguments"]
    assert (arguments["seq_len"], arguments["classes"], arguments["ffn"]) == (12, 5, 4)
    assert report["provenance"]["arguments"]["steps"] == 3 and "torch" in report["provenance"]["versions"]
    assert (out / "curves.png").stat().st_size > 0 and (out / "keys_queries_3d.png").stat().st_size > 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.torch
def test_cli_lm_smoke(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "lm"
    argv = ["experiment", "lm", "--corpus", str(SMALL_CORPUS), "--out", str(out), "--steps", "2",
            "--tokenizer", "bytes", "--block-size", "32", "--batch-size", "2", "--eval-every", "1",
            "--eval-sequences", "2", "--eval-length", "40", "--no-progress"]
    code = main(argv)
    captured = capsys.readouterr()
    training = json.loads((out / "training.json").read_text())
    assert training["tokens"]["tokenizer"] == "bytes" and training["provenance"]["arguments"]["steps"] == 2
    with np.load(out / "keys_no_scaling.npz") as archive:
        assert archive["keys"].shape == archive["ln_input"].shape == (4, 2, 40, 8)
    assert len((out / "losses.csv").read_text().splitlines()) == 1 + 2 * 2
    if not hasattr(geomln, "selectable_keys"):  # training works; the tables stage says what is missing
        assert code == 1 and "selectable_keys" in captured.err and not (out / "tables.json").exists()
        return
    assert code == 0 and "Table 1" in captured.out
    report = json.loads((out / "tables.json").read_text())
    assert report["table1_percent_unselectable_keys"]["w/ scaling"] == [0.0] * 4
    assert report["table2_percent_unselectable_w_scaling_model"]["after LayerNorm"] == [0.0] * 4
    assert len(report["table1_percent_unselectable_keys"]["w/o scaling"]) == 4
    # the tables can be recomputed from the saved keys alone
    (out / "tables.json").unlink()
    assert main(["experiment", "lm", "--out", str(out), "--tables-only", "--no-progress"]) == 0
    assert json.loads((out / "tables.json").read_text())["table1_percent_unselectable_keys"] == (
        report["table1_percent_unselectable_keys"]
    )


@pytest.mark.parametrize(
    "extra, match",
    [
        (["lm", "--corpus", "no/such/file.txt"], "corpus"),
        (["majority", "--threads", "0"], "threads"),
        (["lm"], "--corpus"),
        (["lm", "--tables-only"], "keys_no_scaling.npz"),
    ],
)
def test_cli_errors(tmp_path, capsys, extra, match):
    pytest.importorskip("torch")
    out = tmp_path / "o"
    assert main(["experiment", *extra, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geomln: error:") and match in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_cli_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["experiment"])
    assert info.value.code == 2
