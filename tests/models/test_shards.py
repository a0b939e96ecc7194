import json
import re

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import geomln  # noqa: E402
from geomln import DataFileError, analyze_keys, load_keys  # noqa: E402
from geomln.cli._main import main  # noqa: E402
from geomln.models import shards as shards_module  # noqa: E402
from geomln.models.capture import capture_keys  # noqa: E402
from geomln.models.shards import capture_to_shards, open_shards  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "in", "the", "beginning", "god", "created", "light", ".",
         ","]
NAMES = ("keys", "queries", "hidden_before_ln", "hidden_after_ln")


def _paragraphs():
    """30 paragraphs of 1 to 23 words; with [CLS]/[SEP] the longest exceed the model's 20 positions."""
    rng = np.random.default_rng(3)
    return [" ".join(rng.choice(WORDS[5:], size=int(rng.integers(1, 24)))) for _ in range(30)]


def _without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-weight BERT (2 layers, 2 heads of 4, 20 positions), its tokenizer and their saved directory."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=16, max_position_embeddings=20)
    model = transformers.BertModel(config).eval()
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(WORDS)})
    directory = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer, directory


@pytest.fixture(scope="module")
def single(tiny, tmp_path_factory):
    """One in-memory capture of all paragraphs, saved as one key file."""
    model, tokenizer, _ = tiny
    captured = capture_keys(model, _paragraphs(), tokenizer=tokenizer)
    path = tmp_path_factory.mktemp("single") / "keys.npz"
    captured.save(path)
    return captured, path


@pytest.fixture(scope="module")
def sharded(tiny, tmp_path_factory):
    model, tokenizer, _ = tiny
    out = tmp_path_factory.mktemp("shards") / "out"
    return capture_to_shards(model, _paragraphs(), out, shard_size=7, tokenizer=tokenizer)


def test_union_of_the_shards_equals_one_capture(single, sharded):
    captured, _ = single
    manifest = sharded.manifest
    assert [f.name for f in manifest["files"]] == [f"shard-0000{i}.npz" for i in range(5)]
    assert manifest["complete"] and [s["inputs"] for s in manifest["shards"]] == [
        [0, 7], [7, 14], [14, 21], [21, 28], [28, 30]]
    assert captured.metadata["capture"]["windows"]["n_split"] > 0  # some paragraphs were cut into windows
    assert manifest["metadata"]["capture"]["windows"] == captured.metadata["capture"]["windows"]
    for name in NAMES:
        union = load_keys(sharded.path.parent, name=name)
        assert np.array_equal(union.values, captured.arrays[name].astype(np.float64)), name
        assert union.tokens == captured.tokens
        assert union.seq_offsets.tolist() == captured.seq_offsets.tolist()
        assert list(sharded.shape if name == "keys" else manifest["arrays"][name]["shape"]) == list(
            captured.arrays[name].shape)
    shard = load_keys(manifest["files"][1])  # every shard is a key file of its own
    windows = shard.metadata["capture"]["windows"]
    first, stop = manifest["shards"][1]["sequences"]
    assert windows["input_index"] == captured.metadata["capture"]["windows"]["input_index"][first:stop]
    assert shard.metadata["shard"]["inputs"] == [7, 14]
    assert np.array_equal(sharded.seq_offsets, captured.seq_offsets)


def test_analyze_over_the_shards_equals_analyze_of_one_file(single, sharded):
    _, path = single
    one = analyze_keys(path, causal=True, queries="queries")
    pooled = analyze_keys(sharded.path.parent, causal=True, queries="queries")
    assert _without_seconds(pooled.rows) == _without_seconds(one.rows)
    for field in ("tokens", "seq_offsets", "shape", "axes", "n_slices", "model", "hook_points"):
        assert pooled.meta[field] == one.meta[field], field
    assert pooled.meta["source"] == str(sharded.path)
    strip = re.compile(r"\s+[\d.]+$")  # the seconds column
    one_table, pooled_table = (r.to_table().splitlines()[1:-1] for r in (one, pooled))
    assert [strip.sub("", line) for line in pooled_table] == [strip.sub("", line) for line in one_table]
    named = analyze_keys(open_shards(sharded.path, name="hidden_after_ln"))
    alone = analyze_keys(load_keys(path, name="hidden_after_ln"))
    assert named.meta["name"] == "hidden_after_ln" and _without_seconds(named.rows) == _without_seconds(alone.rows)


def test_progress_bars_on_stderr_when_asked(tiny, tmp_path, capsys):
    model, tokenizer, _ = tiny
    texts = _paragraphs()[:4]
    capture_to_shards(model, texts, tmp_path / "quiet", shard_size=2, tokenizer=tokenizer)
    assert capsys.readouterr().err == ""
    capture_to_shards(model, texts, tmp_path / "loud", shard_size=2, tokenizer=tokenizer, progress=True)
    assert "geomln capture" in capsys.readouterr().err
    calls = []
    analyze_keys(tmp_path / "loud", progress=lambda done, total: calls.append((done, total)))
    n_slices = open_shards(tmp_path / "loud").n_slices
    assert calls == [(i, n_slices) for i in range(1, n_slices + 1)]  # one count over all shards


def test_an_interrupted_run_leaves_complete_shards_and_resumes(tiny, single, tmp_path, monkeypatch):
    model, tokenizer, _ = tiny
    out = tmp_path / "out"
    real_save = np.savez_compressed
    calls = []

    def save_then_fail(stream, **arrays):
        calls.append(1)
        if len(calls) == 3:  # die in the middle of writing the third shard
            stream.write(b"PK half an archive")
            raise KeyboardInterrupt
        real_save(stream, **arrays)

    monkeypatch.setattr(np, "savez_compressed", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        capture_to_shards(model, _paragraphs(), out, shard_size=7, tokenizer=tokenizer)
    monkeypatch.setattr(np, "savez_compressed", real_save)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.npz", "shard-00001.npz"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) == 2
    with pytest.raises(DataFileError, match=r"interrupted capture \(2 of 5 shards\).*--resume"):
        analyze_keys(out)
    with pytest.raises(DataFileError, match="`out`.*already holds a capture.*resume=True"):
        capture_to_shards(model, _paragraphs(), out, shard_size=7, tokenizer=tokenizer)
    with pytest.raises(DataFileError, match="`resume`: the capture in .* other inputs"):
        capture_to_shards(model, _paragraphs(), out, shard_size=6, tokenizer=tokenizer, resume=True)
    ran = []
    monkeypatch.setattr(shards_module, "capture_windows",
                        lambda *a, **k: ran.append(a[2]) or geomln.models.capture.capture_windows(*a, **k))
    resumed = capture_to_shards(model, _paragraphs(), out, shard_size=7, tokenizer=tokenizer, resume=True)
    assert len(ran) == 3 and resumed.manifest["complete"]  # only the missing shards were captured
    captured, _ = single
    assert np.array_equal(load_keys(out).values, captured.arrays["keys"].astype(np.float64))


def test_library_errors_name_the_argument(tiny, tmp_path):
    model, tokenizer, _ = tiny
    with pytest.raises(geomln.InputError, match="`shard_size`"):
        capture_to_shards(model, ["god"], tmp_path / "a", shard_size=0, tokenizer=tokenizer)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "shard-00000.npz").write_bytes(b"")
    with pytest.raises(DataFileError, match="`out` .* already holds shard files"):
        capture_to_shards(model, ["god"], tmp_path / "b", shard_size=1, tokenizer=tokenizer)
    shards = capture_to_shards(model, ["god", "light"], tmp_path / "c", shard_size=1, tokenizer=tokenizer)
    with pytest.raises(DataFileError, match="`name` must be one of the arrays"):
        open_shards(shards.path, name="values")
    with pytest.raises(geomln.InputError, match="`axes` cannot be given with a shard directory"):
        analyze_keys(tmp_path / "c", axes="layer,head,token,dim")
    (tmp_path / "c" / "shard-00001.npz").unlink()
    with pytest.raises(DataFileError, match="missing shard file.*shard-00001.npz"):
        load_keys(tmp_path / "c" / "manifest.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataFileError, match="is not a shard manifest"):
        load_keys(tmp_path / "bad.json")


# ---- command line --------------------------------------------------------------------------------
def test_cli_capture_shards_and_analyze_them(tiny, single, tmp_path, capsys):
    _, _, directory = tiny
    text = tmp_path / "text.txt"
    text.write_text("\n\n".join(_paragraphs()) + "\n")
    out = tmp_path / "out"
    base = ["capture", "--model", str(directory), "--text", str(text), "--out", str(out)]
    assert main([*base, "--shard-size", "7", "--arrays", "keys,queries"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 5 shard(s)" in printed and "split into windows" in printed
    _, path = single
    assert main(["analyze", str(path), "--format", "json", "--causal"]) == 0
    one = json.loads(capsys.readouterr().out)
    for source in (out, out / "manifest.json"):
        assert main(["analyze", str(source), "--format", "json", "--causal"]) == 0
        pooled = json.loads(capsys.readouterr().out)
        assert _without_seconds(pooled["rows"]) == _without_seconds(one["rows"])
    assert main(["analyze", str(out), "--queries", "queries"]) == 0
    assert "never picked" in capsys.readouterr().out
    assert load_keys(out).metadata["capture"]["command"].endswith("--shard-size 7 --arrays keys,queries")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["capture", "--shard-size", "0"], r"`--shard-size` must be >= 1"),
        (["capture", "--shard-size", "3", "--out", "keys.npz"], r"`--out` must be a directory with --shard-size"),
        (["capture", "--out", "new.npz", "--resume"], r"`--resume` needs --shard-size"),
        (["capture", "--shard-size", "3", "--out", "done"], r"`--out` .* already holds a capture .*--resume"),
        (["capture", "--shard-size", "2", "--out", "done", "--resume"], r"`--resume`: the capture in"),
        (["analyze", "done", "--axes", "layer,token,dim"], r"`--axes` cannot be given with a shard directory"),
        (["analyze", "done", "--name", "values"], r"`--name` must be one of the arrays"),
        (["analyze", "half/manifest.json"], r"interrupted capture \(1 of 2 shards\); .*--resume"),
    ],
)
def test_cli_shard_errors_are_one_line(tiny, tmp_path, capsys, monkeypatch, args, match):
    model, tokenizer, directory = tiny
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("god created light\n\nin the beginning\n\nlight\n")
    capture_to_shards(model, ["god created light", "in the beginning", "light"], tmp_path / "done", shard_size=3,
                      tokenizer=tokenizer)
    half = capture_to_shards(model, ["god", "light", "the"], tmp_path / "half", shard_size=2, tokenizer=tokenizer)
    manifest = json.loads(half.path.read_text())
    manifest.update(complete=False, shards=manifest["shards"][:1])
    half.path.write_text(json.dumps(manifest))
    before = sorted(tmp_path.rglob("*"))
    if args[0] == "capture":
        defaults = {"--model": str(directory), "--text": "text.txt", "--out": "new"}
        args = [*args, *[x for flag, value in defaults.items() if flag not in args for x in (flag, value)]]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("geomln: error:"), err
    assert re.search(match, err), err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a temporary file
