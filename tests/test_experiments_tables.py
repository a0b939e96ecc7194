"""Tests of Tables 3 and 4: geomln.experiments.short, geomln.experiments.bert, `geomln experiment table3/table4`."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import geomln
from geomln.cli._main import main
from geomln.errors import DataFileError, InputError
from geomln.experiments import short

ROOT = Path(__file__).resolve().parents[1]
VERSES = ROOT / "data" / "kjv_verses_excerpt.txt"


@pytest.fixture
def rng():
    return np.random.default_rng(20230611)


@pytest.fixture
def plain_corpus(tmp_path):
    """The verse excerpt without references, one verse a line, as the LM corpus is made."""
    text = re.sub(r"(?m)^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ ", "", VERSES.read_text())
    path = tmp_path / "plain.txt"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- short sentences (numpy only)
def test_heldout_lines_drops_the_cut_line():
    text = "alpha one\nbeta two\ngamma three\ndelta four\n"
    split = int(len(text) * 0.5)  # inside "gamma three"
    assert text[split - 1] != "\n"
    assert short.heldout_lines(text, train_fraction=0.5) == ["delta four"]
    cut_at_newline = "ab\ncd\n"  # int(6 * 0.5) = 3: the split starts a line
    assert short.heldout_lines(cut_at_newline, train_fraction=0.5) == ["cd"]


def test_sample_sentences_draws_truncates_and_is_seeded():
    lines = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]
    encode = lambda s: np.arange(len(s))  # noqa: E731 - one token per character
    sentences, indices, n_truncated = short.sample_sentences(lines, encode, max_tokens=4, n_sentences=3, rng=1)
    again = short.sample_sentences(lines, encode, max_tokens=4, n_sentences=3, rng=1)
    assert np.array_equal(indices, again[1]) and len(sentences) == 3
    assert np.all(np.diff(indices) > 0) and 0 not in indices  # corpus order; "a" has 1 token: unusable
    assert all(len(s) == min(len(lines[i]), 4) for s, i in zip(sentences, indices, strict=True))
    assert n_truncated == sum(len(lines[i]) > 4 for i in indices)
    everything = short.sample_sentences(lines, encode, max_tokens=4, n_sentences=100, rng=1)
    assert everything[1].tolist() == [1, 2, 3, 4, 5] and everything[2] == 2
    with pytest.raises(InputError, match="lines"):
        short.sample_sentences(["a"], encode)
    with pytest.raises(InputError, match="max_tokens"):
        short.sample_sentences(lines, encode, max_tokens=1)


def test_sentence_keys_and_fractions_on_known_configurations(rng):
    square = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0], [0.0, 0.0], [0.2, -0.3]])
    circle = np.stack([np.cos(np.arange(5) * 2 * np.pi / 5), np.sin(np.arange(5) * 2 * np.pi / 5)], 1)
    table = {6: square, 5: circle}

    def forward(ids):  # two "layers": the configuration itself, then shifted and doubled
        points = table[len(ids)]
        return [(points, points), (points, 2 * points + 3)]

    before, after, offsets = short.collect_sentence_keys(forward, [np.zeros(6), np.zeros(5)])
    assert before.shape == after.shape == (2, 11, 2) and offsets.tolist() == [0, 6, 11]
    fractions = short.sentence_fractions(after, offsets)
    np.testing.assert_allclose(fractions, [[2 / 6, 0.0], [2 / 6, 0.0]])  # translation and scaling invariant
    summary = short.summarize_fractions(fractions, offsets)
    assert summary["percent_mean_over_sentences"] == [16.67, 16.67]
    assert summary["percent_of_all_keys"] == [18.18, 18.18]  # 2 of 11 keys
    assert summary["share_of_sentences_with_any_unselectable"] == [0.5, 0.5]
    assert (summary["n_sentences"], summary["tokens"], summary["length_min"], summary["length_max"]) == (2, 11, 5, 6)
    sphere = geomln.scale(geomln.project(rng.normal(size=(40, 8))))
    assert short.sentence_fractions(sphere[None], [0, 20, 40]).tolist() == [[0.0, 0.0]]
    with pytest.raises(InputError, match="seq_offsets"):
        short.sentence_fractions(after, [0, 6, 6, 11])
    with pytest.raises(InputError, match="keys"):
        short.sentence_fractions(square, [0, 6])
    with pytest.raises(InputError, match="sentences"):
        short.collect_sentence_keys(forward, [])


# ---------------------------------------------------------------- the verse task (numpy only)
def test_parse_verses_and_errors(tmp_path):
    from geomln.experiments.bert import NEW_TESTAMENT_BOOKS, OLD_TESTAMENT_BOOKS, parse_verses

    books, chapters, texts = parse_verses(VERSES.read_text())
    assert len(books) == len(chapters) == len(texts) == len(VERSES.read_text().splitlines())
    assert books[0] == "Ge" and chapters[0] == 1 and texts[0].startswith("In the beginning")
    assert set(books) <= set(OLD_TESTAMENT_BOOKS) | set(NEW_TESTAMENT_BOOKS)
    assert len(OLD_TESTAMENT_BOOKS) == 39 and len(NEW_TESTAMENT_BOOKS) == 27
    with pytest.raises(DataFileError, match="corpus.*line 2"):
        parse_verses("Ge1:1 In the beginning\nIn the beginning God\n")
    with pytest.raises(DataFileError, match="line 1"):
        parse_verses("Foo1:1 not a book\n")
    with pytest.raises(DataFileError, match="no verses"):
        parse_verses("\n\n")


def test_testament_task_holds_out_whole_chapters_and_balances():
    from geomln.experiments.bert import parse_verses, testament_task

    books, chapters, texts = parse_verses(VERSES.read_text())
    task = testament_task(books, chapters, texts, rng=3)
    again = testament_task(books, chapters, texts, rng=3)
    assert task["train"][0] == again["train"][0] and np.array_equal(task["test"][1], again["test"][1])
    chapter_of = {t: f"{b} {c}" for b, c, t in zip(books, chapters, texts, strict=True)}
    train_chapters = {chapter_of[t] for t in task["train"][0]}
    test_chapters = {chapter_of[t] for t in task["test"][0]}
    assert train_chapters.isdisjoint(test_chapters) and test_chapters
    for split in ("train", "test"):
        labels = task[split][1]
        assert labels.sum() * 2 == labels.size  # balanced
    assert task["chapters"]["old"]["test"] >= 1 and task["chapters"]["new"]["test"] >= 1
    nt = [i for i, b in enumerate(books) if b in ("Mat", "John", "Rom", "Rev")]
    one_chapter = [i for i in nt if books[i] == "Rev" and chapters[i] == 21] + list(range(5))
    with pytest.raises(InputError, match="2 chapters"):
        testament_task([books[i] for i in one_chapter], chapters[one_chapter], [texts[i] for i in one_chapter])
    with pytest.raises(InputError, match="test_fraction"):
        testament_task(books, chapters, texts, test_fraction=1.0)


# ---------------------------------------------------------------- BERT (torch, transformers)
@pytest.fixture(scope="module")
def verse_data():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from geomln.experiments.bert import parse_verses, testament_task, train_wordpiece

    task = testament_task(*parse_verses(VERSES.read_text()), rng=0)
    tokenizer = train_wordpiece(task["train"][0], vocab_size=300)
    train = [tokenizer.encode(t)[:48] for t in task["train"][0]]
    test = [tokenizer.encode(t)[:48] for t in task["test"][0]]
    return task, tokenizer, train, test


@pytest.mark.torch
def test_wordpiece_adds_cls_and_sep(verse_data):
    _, tokenizer, train, _ = verse_data
    ids = tokenizer.encode("In the beginning God created the heaven")
    tokens = tokenizer.tokenizer.encode("In the beginning").tokens
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokenizer.pad_id == 0
    assert ids.dtype == np.int64 and 0 < ids.max() < tokenizer.vocab_size <= 300
    assert all(len(s) <= 48 and 0 not in s for s in train)


@pytest.mark.torch
@pytest.mark.parametrize("layer_norm", [False, True])
def test_bert_without_layer_norm_and_its_attention_inputs(verse_data, layer_norm):
    import torch

    from geomln.experiments.bert import bert_forward, make_bert

    _, tokenizer, train, _ = verse_data
    torch.manual_seed(0)
    model = make_bert(tokenizer.vocab_size, layer_norm=layer_norm, intermediate=16).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == (1 + 2 * 4 if layer_norm else 0)
    pairs = bert_forward(model)(train[0])
    assert len(pairs) == 4 and all(b.shape == a.shape == (len(train[0]), 8) for b, a in pairs)
    with torch.no_grad():  # the attention inputs are the hidden states entering layers 1-4
        states = model.double()(input_ids=torch.from_numpy(train[0])[None], output_hidden_states=True).hidden_states
    for layer, (before, after) in enumerate(pairs):
        np.testing.assert_allclose(after, states[layer][0].numpy(), rtol=1e-12, atol=1e-12)
        if not layer_norm:
            np.testing.assert_array_equal(before, after)
        else:  # LayerNorm output: the affine image of the sphere of radius sqrt(d) in the hyperplane
            norm = norms[0] if layer == 0 else model.bert.encoder.layer[layer - 1].output.LayerNorm
            unit = (after - norm.bias.detach().numpy()) / norm.weight.detach().numpy()
            np.testing.assert_allclose(unit.sum(axis=1), 0.0, atol=1e-9)
            # eps = 1e-12 in the variance shortens a row by eps / (2 var): 1.2e-9 relative seen at var ~ 4e-4
            np.testing.assert_allclose(np.linalg.norm(unit, axis=1), np.sqrt(8), rtol=1e-6)
            assert geomln.selectable_keys(after).fraction_unselectable == 0.0


@pytest.mark.torch
def test_train_bert_smoke_is_deterministic(verse_data):
    from geomln.experiments.bert import train_bert

    task, tokenizer, train, test = verse_data
    kwargs = dict(layer_norm=False, seed=2, steps=3, batch_size=4, eval_every=2, eval_size=5, intermediate=16,
                  progress=False)
    a = train_bert(train, task["train"][1], test, task["test"][1], tokenizer.vocab_size, **kwargs)
    b = train_bert(train, task["train"][1], test, task["test"][1], tokenizer.vocab_size, **kwargs)
    assert np.array_equal(a.train_loss, b.train_loss) and a.train_loss.shape == (3,)
    assert np.isnan(a.test_accuracy[[0, 2]]).sum() == 1 and np.isnan(a.test_accuracy[0])
    assert 0 <= a.test_accuracy[1] <= 1 and 0 <= a.test_accuracy[2] <= 1
    assert not a.model.training
    with pytest.raises(InputError, match="train_ids"):
        train_bert(train[:1], task["train"][1][:1], test, task["test"][1], tokenizer.vocab_size, **kwargs)


# ---------------------------------------------------------------- command line
@pytest.mark.torch
def test_cli_table3_smoke(tmp_path, plain_corpus, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "t3"
    argv = ["experiment", "table3", "--corpus", str(plain_corpus), "--out", str(out), "--steps", "2",
            "--tokenizer", "bytes", "--block-size", "32", "--batch-size", "2", "--eval-every", "1",
            "--eval-sequences", "2", "--eval-length", "40", "--sentences", "4", "--max-tokens", "60",
            "--no-progress"]
    assert main(argv) == 0
    assert "Table 3" in capsys.readouterr().out
    report = json.loads((out / "tables.json").read_text())
    summary = report["short_sentences"]
    assert summary["n_sentences"] == 4 and 2 <= summary["length_min"] <= summary["length_max"] <= 60
    row = report["table3_percent_unselectable_keys_short_sentences"]["w/o scaling"]
    assert len(row) == 4 and all(0 <= v <= 100 for v in row)
    assert np.array(report["per_sentence_fraction"]).shape == (4, 4)
    assert report["same_model_long_windows_percent"]["windows x tokens"] == [2, 40]
    loaded = geomln.load_keys(out / "keys_short.npz")
    assert tuple(loaded.axes) == ("layer", "token", "dim") and loaded.seq_offsets[-1] == summary["tokens"]
    training = json.loads((out / "training.json").read_text())
    assert training["sentences"]["drawn"] == 4 and training["provenance"]["arguments"]["steps"] == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    (out / "tables.json").unlink()
    assert main(["experiment", "table3", "--out", str(out), "--tables-only", "--no-progress"]) == 0
    again = json.loads((out / "tables.json").read_text())
    assert again["per_sentence_fraction"] == report["per_sentence_fraction"]


@pytest.mark.torch
def test_cli_table4_smoke(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path / "t4"
    argv = ["experiment", "table4", "--corpus", str(VERSES), "--out", str(out), "--steps", "2", "--batch-size",
            "4", "--eval-every", "1", "--intermediate", "16", "--vocab-size", "300", "--sentences", "4",
            "--max-tokens", "40", "--seeds", "2", "--no-progress"]
    assert main(argv) == 0
    assert "Table 4" in capsys.readouterr().out
    report = json.loads((out / "tables.json").read_text())
    table = report["table4_percent_unselectable_attention_inputs"]
    assert list(table) == ["no-ln", "ln"] and table["ln"]["mean"] == [0.0] * 4 and table["no-ln"]["seeds"] == 2
    assert all(0 <= v <= 100 for v in table["no-ln"]["mean"])
    runs = report["per_run"]
    assert sorted(runs) == ["ln seed 0", "ln seed 1", "no-ln seed 0", "no-ln seed 1"]
    assert runs["no-ln seed 0"]["attention_input"] == runs["no-ln seed 0"]["before_layer_norm"]
    assert runs["ln seed 1"]["attention_input"]["length_max"] <= 40
    rows = (out / "runs.csv").read_text().splitlines()
    assert rows[0] == "variant,seed,step,train_loss,test_accuracy" and len(rows) == 1 + 2 * 2 * 2
    training = json.loads((out / "training.json").read_text())
    assert training["sizes"]["measured_sentences"] == 4 and "transformers" in training["provenance"]["versions"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    (out / "tables.json").unlink()
    assert main(["experiment", "table4", "--out", str(out), "--tables-only", "--no-progress"]) == 0
    assert json.loads((out / "tables.json").read_text())["per_run"] == runs


@pytest.mark.parametrize(
    "extra, match",
    [
        (["table3"], "--corpus"),
        (["table3", "--tables-only"], "keys_short.npz"),
        (["table4"], "--corpus"),
        (["table4", "--tables-only"], "keys_<variant>_seed<k>.npz"),
        (["table4", "--corpus", "no/such/file.txt"], "corpus"),
        (["table4", "--corpus", str(ROOT / "data" / "kjv_excerpt.txt")], "line 1"),
        (["table3", "--threads", "0"], "threads"),
    ],
)
def test_cli_table_errors(tmp_path, capsys, extra, match):
    pytest.importorskip("torch")
    out = tmp_path / "o"
    assert main(["experiment", *extra, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geomln: error:") and match in err[0]
    assert not out.exists() or not any(out.iterdir())
