"""A small BERT trained with every LayerNorm removed (Table 4 of Brody et al. 2023).

The paper trains Hugging Face's ``BertForSequenceClassification`` from scratch (hidden size 8, 4 layers,
4 heads, feed-forward 3,072) on SST-2 after replacing the embedding LayerNorm and both LayerNorms of every
layer by the identity, and counts the unselectable vectors among those entering each layer's attention, on
sentences of at most 128 tokens. SST-2 is not available offline, so the task here is built from the King
James Bible as Debian's ``bible -f`` prints it (one verse a line, ``Ge1:1 In the beginning ...``):

**testament classification** -- is a verse from the Old (label 0) or the New Testament (label 1)? Whole
chapters are held out (a seeded 10 % of each testament's chapters), so neighbouring verses never straddle
the split, and each split is balanced by drawing as many Old Testament verses as there are New Testament
ones. Like SST-2 it is a binary single-sentence task on short inputs.

The same BERT with its LayerNorms kept trains beside it. Its attention inputs are LayerNorm outputs
``gamma * (x - mean) / std + beta``: an affine image of a sphere, on which every point is a vertex, so its
fraction is 0 by construction (up to the tolerance).
"""

import re
import time
from dataclasses import dataclass

import numpy as np

from .._validation import as_positive_int, as_rng
from ..errors import DataFileError, InputError
from ._models import require_torch
from ._training import is_eval_step, optimizer_step, progress_bar

__all__ = [
    "OLD_TESTAMENT_BOOKS",
    "NEW_TESTAMENT_BOOKS",
    "parse_verses",
    "testament_task",
    "train_wordpiece",
    "make_bert",
    "train_bert",
    "BertRun",
    "bert_forward",
    "attention_input_modules",
]

#: book abbreviations in the order Debian's ``bible -f "Gen1:1-Rev22:21"`` prints them
OLD_TESTAMENT_BOOKS = (
    "Ge Exo Lev Num Deu Josh Jdgs Ruth 1Sm 2Sm 1Ki 2Ki 1Chr 2Chr Ezra Neh Est Job Psa Prv Eccl SSol Isa Jer Lam "
    "Eze Dan Hos Joel Amos Obad Jonah Mic Nahum Hab Zep Hag Zec Mal"
).split()
NEW_TESTAMENT_BOOKS = (
    "Mat Mark Luke John Acts Rom 1Cor 2Cor Gal Eph Phi Col 1Th 2Th 1Tim 2Tim Titus Phmn Heb Jas 1Pet 2Pet 1Jn "
    "2Jn 3Jn Jude Rev"
).split()
_TESTAMENT = {**dict.fromkeys(OLD_TESTAMENT_BOOKS, 0), **dict.fromkeys(NEW_TESTAMENT_BOOKS, 1)}
_VERSE = re.compile(r"([1-3]?[A-Za-z]+)(\d+):(\d+) (.+)")
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def parse_verses(text, *, name="corpus"):
    """Parse ``bible -f`` output: one verse a line, ``<book><chapter>:<verse> <text>``.

    Returns
    -------
    books : list of str
    chapters : ndarray of int64
    texts : list of str

    Raises
    ------
    DataFileError
        If a non-empty line does not have that form or names a book outside the 66 of the KJV.
    """
    books, chapters, texts = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _VERSE.fullmatch(line.strip())
        if match is None or match.group(1) not in _TESTAMENT:
            raise DataFileError(
                f"`{name}`: line {number} is not a verse as `bible -f` prints it ('Ge1:1 In the beginning ...'); "
                f"got {line[:60]!r}. Make the file with: bible -f \"Gen1:1-Rev22:21\" > kjv_verses.txt"
            )
        books.append(match.group(1))
        chapters.append(int(match.group(2)))
        texts.append(match.group(4))
    if not texts:
        raise DataFileError(f"`{name}` holds no verses")
    return books, np.array(chapters, dtype=np.int64), texts


def testament_task(books, chapters, texts, *, test_fraction=0.1, rng=0):
    """Old vs New Testament classification: whole chapters held out, each split balanced.

    Parameters
    ----------
    books, chapters, texts
        From :func:`parse_verses`.
    test_fraction : float
        Share of each testament's chapters held out (at least one chapter each).
    rng : int, Generator or None
        Seeds the chapter split and the balancing draw.

    Returns
    -------
    dict
        ``train`` and ``test``: each ``(texts, labels)`` with labels 0 (Old) / 1 (New Testament), in corpus
        order; ``chapters``: the number of chapters per split and testament.
    """
    if not 0 < test_fraction < 1:
        raise InputError(f"`test_fraction` must lie in (0, 1); got {test_fraction}")
    generator = as_rng(rng)
    labels = np.array([_TESTAMENT[b] for b in books], dtype=np.int64)
    chapter_ids = np.unique([f"{b} {c}" for b, c in zip(books, chapters, strict=True)], return_inverse=True)[1]
    held_out = np.zeros(chapter_ids.max() + 1, dtype=bool)
    counts = {}
    for testament in (0, 1):
        ids = np.unique(chapter_ids[labels == testament])
        if ids.size < 2:
            raise InputError(
                f"`texts` need at least 2 chapters of each testament to hold some out; the "
                f"{('Old', 'New')[testament]} Testament has {ids.size}"
            )
        n_test = max(1, int(round(test_fraction * ids.size)))
        held_out[generator.choice(ids, size=n_test, replace=False)] = True
        counts[("old", "new")[testament]] = {"train": int(ids.size - n_test), "test": n_test}
    result = {"chapters": counts}
    for split, mask in (("train", ~held_out[chapter_ids]), ("test", held_out[chapter_ids])):
        rows = [np.flatnonzero(mask & (labels == t)) for t in (0, 1)]
        size = min(r.size for r in rows)
        keep = np.sort(np.concatenate([generator.choice(r, size=size, replace=False) for r in rows]))
        result[split] = ([texts[i] for i in keep], labels[keep])
    return result


class _WordPiece:
    """A WordPiece tokenizer with BERT's ``[CLS] ... [SEP]`` template; ``encode(text) -> int64 ids``."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.pad_id = tokenizer.token_to_id("[PAD]")

    def encode(self, text):
        return np.array(self.tokenizer.encode(text).ids, dtype=np.int64)

    def to_json(self):
        return self.tokenizer.to_str()


def train_wordpiece(texts, *, vocab_size=4096):
    """Train a cased WordPiece tokenizer on `texts` (the paper uses ``bert-base-cased``'s, 28,996 entries).

    ``encode`` adds ``[CLS]`` and ``[SEP]``; ``[PAD]`` is id 0.
    """
    vocab_size = as_positive_int(vocab_size, "vocab_size", minimum=len(_SPECIAL) + 1)
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(_SPECIAL), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return _WordPiece(tokenizer)


def make_bert(vocab_size, *, layer_norm, hidden=8, n_layers=4, n_heads=4, intermediate=3072, max_positions=512,
              dropout=0.1, n_labels=2):
    """Hugging Face ``BertForSequenceClassification`` built from a config (nothing is downloaded).

    With ``layer_norm=False`` the embedding LayerNorm and both LayerNorms of every layer are replaced by
    ``torch.nn.Identity``, as in the paper's ``train_BERT_no_LN.py``. The defaults are the paper's
    ``bert_small_dim_config.json`` (GELU, dropout 0.1, initializer range 0.02, 512 positions).
    """
    torch = require_torch()
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=int(vocab_size), hidden_size=hidden, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        intermediate_size=intermediate, max_position_embeddings=max_positions, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, num_labels=n_labels, pad_token_id=0,
    )
    model = BertForSequenceClassification(config)
    if not layer_norm:
        model.bert.embeddings.LayerNorm = torch.nn.Identity()
        for layer in model.bert.encoder.layer:
            layer.attention.output.LayerNorm = torch.nn.Identity()
            layer.output.LayerNorm = torch.nn.Identity()
    return model


def attention_input_modules(model):
    """Return the modules whose outputs enter encoder layers 1, 2, ... (one per layer).

    The embedding (Layer)Norm, then each layer's output (Layer)Norm but the last; ``Identity`` modules
    without LayerNorm.
    """
    layers = model.bert.encoder.layer
    return [model.bert.embeddings.LayerNorm] + [layer.output.LayerNorm for layer in layers[:-1]]


@dataclass(frozen=True)
class BertRun:
    """A trained BERT classifier and its curves.

    Attributes
    ----------
    layer_norm : bool
    seed : int
    model : torch.nn.Module
        Float32, eval mode.
    step : ndarray of int, shape (steps,)
    train_loss : ndarray, shape (steps,)
    test_accuracy : ndarray, shape (steps,)
        Accuracy on the held-out split after the step, NaN where not evaluated.
    wall_time : float
    """

    layer_norm: bool
    seed: int
    model: object
    step: np.ndarray
    train_loss: np.ndarray
    test_accuracy: np.ndarray
    wall_time: float


def _pad(sequences, pad_id):
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, s in enumerate(sequences):
        ids[row, : len(s)], mask[row, : len(s)] = s, 1
    return ids, mask


def train_bert(train_ids, train_labels, test_ids, test_labels, vocab_size, *, layer_norm, seed=0, steps=300,
               batch_size=32, lr=1e-3, eval_every=50, eval_size=1000, intermediate=3072, dropout=0.1,
               pad_id=0, progress=True):
    """Train :func:`make_bert` with AdamW (no weight decay), linear warm-up over 5 % of the steps then decay.

    Parameters
    ----------
    train_ids, test_ids : list of ndarray of int
        Token ids of each sentence (``[CLS] ... [SEP]``, already truncated).
    train_labels, test_labels : ndarray of int
    layer_norm : bool
        Keep the LayerNorms (False: every one replaced by the identity).
    seed : int
        Seeds initial weights, dropout and batches (the same for both variants).
    eval_every, eval_size : int
        Accuracy on `eval_size` test sentences spread evenly over the test split (all of them if fewer)
        after every `eval_every`-th step and the last.

    Returns
    -------
    BertRun
    """
    torch = require_torch()
    steps = as_positive_int(steps, "steps")
    batch_size = as_positive_int(batch_size, "batch_size")
    if len(train_ids) < 2 or len(test_ids) < 1:
        raise InputError(f"`train_ids` / `test_ids` hold {len(train_ids)} / {len(test_ids)} sentences; need 2 / 1")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = make_bert(vocab_size, layer_norm=layer_norm, intermediate=intermediate, dropout=dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)),
    )
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    n_eval = min(eval_size, len(test_ids))
    picked = np.unique(np.linspace(0, len(test_ids) - 1, n_eval).round().astype(np.intp))  # spread over the split
    n_eval = picked.size
    eval_batches = [
        (*_pad([test_ids[j] for j in picked[i : i + 64]], pad_id), test_labels[picked[i : i + 64]])
        for i in range(0, n_eval, 64)
    ]
    train_log, accuracy = np.empty(steps), np.full(steps, np.nan)
    start = time.perf_counter()
    bar = progress_bar(range(steps), f"bert {'w/' if layer_norm else 'w/o'} LayerNorm", progress=progress)
    for i in bar:
        model.train()
        rows = rng.choice(len(train_ids), size=min(batch_size, len(train_ids)), replace=False)
        ids, mask = _pad([train_ids[r] for r in rows], pad_id)
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    labels=torch.from_numpy(train_labels[rows]))
        train_log[i] = optimizer_step(out.loss, optimizer, schedule)
        if is_eval_step(i, steps, eval_every):
            model.eval()
            correct = 0
            with torch.no_grad():
                for ids, mask, y in eval_batches:
                    logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
                    correct += int((logits.argmax(-1).numpy() == y).sum())
            accuracy[i] = correct / n_eval
            bar.set_postfix(loss=f"{train_log[i]:.3f}", acc=f"{accuracy[i]:.3f}")
    model.eval()
    return BertRun(layer_norm=bool(layer_norm), seed=int(seed), model=model, step=np.arange(1, steps + 1),
                   train_loss=train_log, test_accuracy=accuracy, wall_time=time.perf_counter() - start)


def bert_forward(model):
    """Return ``forward(ids) -> [(LayerNorm input, LayerNorm output) per layer]`` for one sentence, in float64.

    The output of pair ``l`` is the hidden state entering layer ``l + 1``'s attention (its queries, keys
    and values are linear maps of it); the input is the same vector before that (Layer)Norm, equal to the
    output when the LayerNorms are removed. A float64 copy of `model` is made once.
    """
    torch = require_torch()
    import copy

    double = copy.deepcopy(model).double().eval()
    modules = attention_input_modules(double)

    def forward(ids):
        record = [None] * len(modules)
        hooks = [
            module.register_forward_hook(lambda _m, x, y, slot=slot: record.__setitem__(slot, (x[0], y)))
            for slot, module in enumerate(modules)
        ]
        try:
            with torch.no_grad():
                double(input_ids=torch.from_numpy(np.asarray(ids, dtype=np.int64))[None])
        finally:
            for hook in hooks:
                hook.remove()
        return [(x[0].numpy().copy(), y[0].numpy().copy()) for x, y in record]

    return forward
