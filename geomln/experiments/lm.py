"""A tiny GPT-2-style language model with and without LayerNorm's scaling (Brody et al. 2023).

Tables 1 and 2 and Figure 4 of the paper. Both models project the input of attention onto the
hyperplane orthogonal to ``1``; only the
"w/ scaling" model also scales it to the sphere of radius ``sqrt(d)``. After training, the keys
right before attention (the ``ln_1`` outputs) of held-out sequences are tested for selectability:
a key on a sphere is always selectable, so the "w/ scaling" column is 0 by construction, while
unscaled keys can sit inside the convex hull of the others (paper: 51.0/32.2/34.7/36.8 %).
"""

import json
import time
from dataclasses import dataclass

import numpy as np

from .._validation import as_choice, as_positive_int
from ..errors import DataFileError, GeomlnError, InputError
from ._models import TinyGPT, require_torch
from ._training import is_eval_step, optimizer_step, progress_bar

__all__ = [
    "load_corpus",
    "train_tokenizer",
    "train_lm",
    "LMRun",
    "collect_keys",
    "sentence_forward",
    "unselectable_fractions",
    "eval_windows",
    "save_keys_npz",
    "plot_lm_losses",
    "TOKENIZERS",
]

TOKENIZERS = ("bpe", "bytes")


def load_corpus(path):
    """Read a UTF-8 text corpus; :class:`DataFileError` if it is missing, unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"`corpus`: cannot read {str(path)!r} as UTF-8 text: {exc}") from None
    if not text.strip():
        raise DataFileError(f"`corpus`: {str(path)!r} is empty")
    return text


class _ByteTokenizer:
    vocab_size = 256
    kind = "bytes"

    def encode(self, text):
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def to_json(self):
        return json.dumps({"kind": "bytes", "vocab_size": 256})


class _BPETokenizer:
    kind = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    def encode(self, text):
        lines = text.splitlines(keepends=True)
        return np.fromiter((i for enc in self.tokenizer.encode_batch(lines) for i in enc.ids), dtype=np.int64)

    def to_json(self):
        return self.tokenizer.to_str()


def train_tokenizer(text, *, kind="bpe", vocab_size=2048):
    """Make a byte-level tokenizer: raw UTF-8 bytes, or a byte-level BPE trained on `text` with `tokenizers`.

    Returns an object with ``encode(text) -> int64 array``, ``vocab_size``, ``kind`` and ``to_json()``.
    """
    as_choice(kind, "tokenizer", TOKENIZERS)
    if kind == "bytes":
        return _ByteTokenizer()
    vocab_size = as_positive_int(vocab_size, "vocab_size", minimum=257)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer)
    return _BPETokenizer(tokenizer)


@dataclass(frozen=True)
class LMRun:
    """A trained language model and its loss curves.

    Attributes
    ----------
    scaling : bool
        Whether ``ln_1`` scales (the "w/ scaling" model).
    model : torch.nn.Module
        The trained :class:`~geomln.experiments._models.TinyGPT` (float32, eval mode).
    step : ndarray of int, shape (steps,)
    train_loss : ndarray, shape (steps,)
        Cross-entropy (nats/token) of each step's batch.
    test_loss : ndarray, shape (steps,)
        Held-out cross-entropy after the step, NaN where not evaluated.
    wall_time : float
        Seconds of training.
    """

    scaling: bool
    model: object
    step: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    wall_time: float


def _windows(tokens, starts, length):
    return np.stack([tokens[s : s + length] for s in starts])


def train_lm(
    train_tokens,
    test_tokens,
    vocab_size,
    *,
    scaling=True,
    seed=0,
    steps=1000,
    block_size=256,
    batch_size=16,
    lr=3e-3,
    dropout=0.1,
    eval_every=50,
    eval_batches=4,
    n_positions=1024,
    random_offsets=True,
    progress=True,
):
    """Train :class:`~geomln.experiments._models.TinyGPT` (width 8, 4 layers, 4 heads) on token windows.

    Parameters
    ----------
    train_tokens, test_tokens : ndarray of int, shape (n,)
        Token streams; training windows are drawn at random offsets, test windows are fixed.
    vocab_size : int
    scaling : bool
        The "w/ scaling" model (LayerNorm before attention) or "w/o scaling" (projection only).
    seed : int
        Seeds initial weights, dropout and batch offsets (identical for both variants).
    steps, block_size, batch_size : int
        Optimizer steps (AdamW, no weight decay), tokens per window, windows per step.
    lr : float
        Peak learning rate: linear warm-up over 5% of the steps, then linear decay to 0.
    dropout : float
        Dropout (GPT-2 config: 0.1).
    eval_every, eval_batches : int
        Test loss after every `eval_every`-th step (and the last) over `eval_batches` fixed batches.
    n_positions : int
        Learned positions (the key analysis uses sequences up to this length).
    random_offsets : bool
        Give each training batch positions ``o, ..., o + block_size - 1`` with a random offset
        ``o`` in ``[0, n_positions - block_size]``, so every position embedding is trained even when
        `block_size` is shorter than the held-out sequences (attention cost grows with the square
        of the window). Test windows always start at position 0.

    Returns
    -------
    LMRun
    """
    torch = require_torch()
    steps = as_positive_int(steps, "steps")
    block_size = as_positive_int(block_size, "block_size", minimum=2)
    for name, tokens in (("train_tokens", train_tokens), ("test_tokens", test_tokens)):
        if len(tokens) < block_size + 2:
            raise InputError(
                f"`{name}` must hold more than block_size + 1 = {block_size + 1} tokens; "
                f"got {len(tokens)}. Use a longer corpus or a smaller --block-size"
            )
    if block_size > n_positions:
        raise InputError(f"`block_size` must be <= n_positions ({n_positions}); got {block_size}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = TinyGPT(vocab_size, n_positions=n_positions, scaling=scaling, dropout=dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)),
    )
    n_test = len(test_tokens) - block_size - 1
    test_starts = np.linspace(0, n_test, eval_batches * batch_size).astype(np.int64)
    test_batches = torch.from_numpy(_windows(test_tokens, test_starts, block_size + 1)).split(batch_size)

    def loss_of(window, offset=0):
        logits = model(window[:, :-1], offset=offset)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), window[:, 1:].reshape(-1))

    train_log = np.empty(steps)
    test_log = np.full(steps, np.nan)
    start = time.perf_counter()
    bar = progress_bar(range(steps), f"lm {'w/' if scaling else 'w/o'} scaling", progress=progress)
    for i in bar:
        model.train()
        starts = rng.integers(0, len(train_tokens) - block_size - 1, size=batch_size)
        offset = int(rng.integers(0, n_positions - block_size + 1)) if random_offsets else 0
        loss = loss_of(torch.from_numpy(_windows(train_tokens, starts, block_size + 1)), offset)
        train_log[i] = optimizer_step(loss, optimizer, schedule)
        if is_eval_step(i, steps, eval_every):
            model.eval()
            with torch.no_grad():
                test_log[i] = float(np.mean([loss_of(b).item() for b in test_batches]))
            bar.set_postfix(train=f"{train_log[i]:.3f}", test=f"{test_log[i]:.3f}")
    model.eval()
    return LMRun(
        scaling=bool(scaling),
        model=model,
        step=np.arange(1, steps + 1),
        train_loss=train_log,
        test_loss=test_log,
        wall_time=time.perf_counter() - start,
    )


def eval_windows(tokens, *, n_sequences, length):
    """Return `n_sequences` non-overlapping windows of `length` tokens spread evenly over `tokens`.

    Returns
    -------
    ndarray of int64, shape (n_sequences, length)
    """
    n_sequences = as_positive_int(n_sequences, "n_sequences")
    length = as_positive_int(length, "length")
    if n_sequences * length > len(tokens):
        raise InputError(
            f"`eval_sequences` x `eval_length` = {n_sequences} x {length} tokens do not fit in the "
            f"held-out split ({len(tokens)} tokens); lower them or use a longer corpus"
        )
    starts = np.linspace(0, len(tokens) - length, n_sequences).astype(np.int64)
    return _windows(tokens, starts, length)


def sentence_forward(model):
    """Return ``forward(ids) -> [(ln_1 input, ln_1 output) per layer]`` for one sequence, in float64.

    The forward pass runs on a float64 copy of `model` (made once), so scaled keys lie on the sphere of
    radius ``sqrt(d)`` to within float64 rounding. ``ids`` is a 1-D integer array; each array returned
    has shape ``(len(ids), d)``.
    """
    torch = require_torch()
    import copy

    double = copy.deepcopy(model).double().eval()

    def forward(ids):
        record = []
        with torch.no_grad():
            double(torch.from_numpy(np.asarray(ids, dtype=np.int64))[None], record)
        return [(x[0].numpy(), h[0].numpy()) for x, h in record]

    return forward


def collect_keys(model, sequences):
    """Return the inputs and outputs of every layer's ``ln_1`` on `sequences`, computed in float64.

    Parameters
    ----------
    model : TinyGPT
    sequences : ndarray of int, shape (seq, token)

    Returns
    -------
    before, after : ndarray, shape (layer, seq, token, d)
        ``after`` are the key vectors right before attention (the paper's "keys").

    Notes
    -----
    The forward pass runs on a float64 copy of the model (see :func:`sentence_forward`), so scaled keys
    lie on the sphere of radius ``sqrt(d)`` to within float64 rounding, not float32's.
    """
    forward = sentence_forward(model)
    pairs = [forward(sequence) for sequence in np.asarray(sequences)]
    before = [[b for b, _ in p] for p in pairs]
    after = [[a for _, a in p] for p in pairs]
    return np.ascontiguousarray(np.swapaxes(np.array(before), 0, 1)), np.ascontiguousarray(
        np.swapaxes(np.array(after), 0, 1)
    )


def unselectable_fractions(keys, *, tol=None, progress=False):
    """Fraction of unselectable keys per layer and sequence, with :func:`geomln.selectable_keys`.

    Parameters
    ----------
    keys : ndarray, shape (layer, seq, token, d)
    tol : float, optional
        Passed to :func:`geomln.selectable_keys`.

    Returns
    -------
    ndarray, shape (layer, seq)
    """
    import geomln

    if not hasattr(geomln, "selectable_keys"):
        raise GeomlnError(
            "geomln.selectable_keys is not available in this version of geomln; "
            "the unselectable-key tables cannot be computed"
        )
    keys = np.asarray(keys, dtype=np.float64)
    if keys.ndim != 4:
        raise InputError(f"`keys` must have shape (layer, seq, token, d); got shape {keys.shape}")
    out = np.empty(keys.shape[:2])
    cells = [(layer, s) for layer in range(keys.shape[0]) for s in range(keys.shape[1])]
    for layer, s in progress_bar(cells, "selectable keys", progress=progress):
        out[layer, s] = geomln.selectable_keys(keys[layer, s], tol=tol).fraction_unselectable
    return out


def save_keys_npz(path, arrays, meta, *, axes=("layer", "seq", "token", "dim")):
    """Write `arrays` (each with `axes`) and a JSON ``__geomln_meta__`` string atomically.

    The metadata follows the key-file format of :mod:`geomln.models.keyfile` (``format``, ``version``,
    ``default`` = the first array, per-array ``axes``) and also carries the axes at top level, so
    ``geomln.load_keys`` and ``geomln analyze`` open the file with its axes named.
    """
    from .._files import atomic_output

    axes = list(axes)
    meta = {
        "format": "geomln.keys",
        "version": 1,
        "default": next(iter(arrays)),
        "axes": axes,
        **meta,
        "arrays": {name: {"axes": axes} for name in arrays},
    }
    with atomic_output(path, "wb") as stream:
        np.savez(stream, __geomln_meta__=np.array(json.dumps(meta)), **arrays)


def plot_lm_losses(runs, path):
    """Figure 4: training (thin) and test (markers) loss of each model; PNG written atomically to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from .._files import atomic_output

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, color in zip(runs, ("tab:blue", "tab:orange"), strict=False):
        label = "w/ scaling" if run.scaling else "w/o scaling"
        ax.plot(run.step, run.train_loss, color=color, alpha=0.35, lw=0.8, label=f"{label}: train")
        keep = ~np.isnan(run.test_loss)
        ax.plot(run.step[keep], run.test_loss[keep], "o-", color=color, ms=3, label=f"{label}: test")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.legend()
    fig.tight_layout()
    with atomic_output(path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=110)
    plt.close(fig)
