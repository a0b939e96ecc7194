"""The "majority" task of Brody et al. (2023): LayerNorm's projection helps attend to all keys equally.

Sequences of `seq_len` tokens over `n_classes` classes; the label of every position is the most
frequent class. One pre-LN encoder layer learns it faster when the LayerNorm before attention
projects onto the hyperplane orthogonal to ``1``: the queries can then align with ``1`` and give
every key the same score (paper: loss 0.2 reached ~3x sooner; folded query angle to ``1`` ~10 deg
with projection vs ~80 deg without). The paper's model without projection also scales its keys to norm
``1 / sqrt(d)`` instead of LayerNorm's ``sqrt(d)``; ``no_projection_norm`` chooses between the two.
Data generation and summaries need only NumPy; training needs torch.
"""

import time
from dataclasses import dataclass

import numpy as np

from .._validation import as_choice, as_positive_int, as_rng
from ..errors import InputError
from ..geometry.angles import angle_to_ones
from ._models import MAJORITY_VARIANTS, NO_PROJECTION_NORMS, MajorityModel, require_torch
from ._training import is_eval_step, optimizer_step, progress_bar

__all__ = [
    "majority_partitions",
    "make_majority_data",
    "class_counts",
    "stratified_split",
    "train_majority",
    "MajorityRun",
    "steps_to_reach",
    "summarize_majority",
    "runs_to_rows",
    "plot_majority_curves",
    "plot_keys_queries_3d",
    "VARIANTS",
]

VARIANTS = tuple(MAJORITY_VARIANTS)


def majority_partitions(seq_len, n_classes, min_margin):
    """Every class-count profile of the majority task: partitions of `seq_len` with a clear winner.

    Parameters
    ----------
    seq_len, n_classes : int
        Sequence length and vocabulary size: the partitions have at most `n_classes` parts.
    min_margin : int
        Required lead of the largest part over the second largest (a single part always qualifies).

    Returns
    -------
    ndarray of int64, shape (n_partitions, n_classes)
        One partition per row, parts in non-increasing order, padded with zeros; rows in
        lexicographically decreasing order.

    Examples
    --------
    >>> from geomln.experiments.majority import majority_partitions
    >>> majority_partitions(5, 3, 2).tolist()
    [[5, 0, 0], [4, 1, 0], [3, 1, 1]]
    """
    rows = []

    def extend(prefix, remaining, largest):
        if remaining == 0:
            rows.append(prefix + [0] * (n_classes - len(prefix)))
        elif len(prefix) < n_classes:
            for part in range(min(remaining, largest), 0, -1):
                extend(prefix + [part], remaining - part, part)

    for top in range(seq_len, 0, -1):
        extend([top], seq_len - top, top - min_margin)
    return np.array(rows, dtype=np.int64).reshape(-1, n_classes)


def make_majority_data(n_samples, *, seq_len=50, n_classes=20, min_margin=6, per_partition=10, rng=None):
    """Sequences of the majority task, built as the paper builds them: from enumerated partitions.

    Parameters
    ----------
    n_samples : int
        Number of sequences.
    seq_len, n_classes : int, default 50, 20
        Sequence length and vocabulary size.
    min_margin : int, default 6
        Required lead of the majority class over the second most frequent one (>= 1: no ties).
    per_partition : int, default 10
        Sequences drawn from each chosen partition (the paper's 10).
    rng : int, Generator or None
        Seed or generator.

    Returns
    -------
    tokens : ndarray of int64, shape (n_samples, seq_len)
    labels : ndarray of int64, shape (n_samples,)
        The majority class of each row.

    Raises
    ------
    InputError
        If a size is < 1 (``n_classes < 2``), or `min_margin` exceeds `seq_len`.

    Notes
    -----
    :func:`majority_partitions` lists every admissible count profile. ``ceil(n_samples /
    per_partition)`` of them are chosen uniformly without replacement (all of them, repeated in
    random order, if there are fewer), and each yields `per_partition` sequences: its parts go to
    a random permutation of the classes and the tokens are shuffled. By symmetry every class is
    the label equally often in expectation. At the paper's sizes (50 tokens, 20 classes, margin 6)
    there are 69,414 partitions, so 100,000 samples use a seeded subset of 10,000 of them.

    Examples
    --------
    >>> import numpy as np
    >>> from geomln.experiments.majority import make_majority_data
    >>> tokens, labels = make_majority_data(4, seq_len=10, n_classes=3, min_margin=2, rng=0)
    >>> tokens.shape, bool((np.bincount(tokens[0], minlength=3).argmax() == labels[0]))
    ((4, 10), True)
    """
    n_samples = as_positive_int(n_samples, "n_samples")
    seq_len = as_positive_int(seq_len, "seq_len")
    n_classes = as_positive_int(n_classes, "n_classes", minimum=2)
    min_margin = as_positive_int(min_margin, "min_margin")
    per_partition = as_positive_int(per_partition, "per_partition")
    if min_margin > seq_len:
        raise InputError(f"`min_margin` must be <= `seq_len` ({seq_len}); got {min_margin}")
    rng = as_rng(rng)
    partitions = majority_partitions(seq_len, n_classes, min_margin)
    n_chosen = -(-n_samples // per_partition)
    rounds = -(-n_chosen // partitions.shape[0])
    chosen = np.concatenate([rng.permutation(partitions.shape[0]) for _ in range(rounds)])[:n_chosen]
    profiles = np.repeat(partitions[chosen], per_partition, axis=0)[:n_samples]
    classes = np.argsort(rng.random((n_samples, n_classes)), axis=1)
    counts = np.zeros_like(profiles)
    np.put_along_axis(counts, classes, profiles, axis=1)
    labels = classes[:, 0].astype(np.int64)
    tokens = np.repeat(np.tile(np.arange(n_classes, dtype=np.int64), n_samples), counts.ravel())
    tokens = tokens.reshape(n_samples, seq_len)
    order = np.argsort(rng.random((n_samples, seq_len)), axis=1)
    return np.take_along_axis(tokens, order, axis=1), labels


def class_counts(tokens, n_classes):
    """Per-row class counts of integer `tokens` of shape ``(n, seq_len)``: int64, shape ``(n, n_classes)``.

    Examples
    --------
    >>> from geomln.experiments.majority import class_counts
    >>> class_counts([[0, 2, 2], [1, 1, 1]], 3).tolist()
    [[1, 0, 2], [0, 3, 0]]
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    rows = np.repeat(np.arange(tokens.shape[0]), tokens.shape[1])
    flat = np.bincount(rows * n_classes + tokens.ravel(), minlength=tokens.shape[0] * n_classes)
    return flat.reshape(tokens.shape[0], n_classes)


def stratified_split(labels, *, test_fraction=0.2, rng=None):
    """Split indices into train and test so that every label keeps its share in both.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
    test_fraction : float, default 0.2
        Share of each label's indices (rounded) that goes to the test set; in (0, 1).
    rng : int, Generator or None

    Returns
    -------
    train_indices, test_indices : ndarray of intp
        Sorted, disjoint, together ``range(n)``.

    Examples
    --------
    >>> from geomln.experiments.majority import stratified_split
    >>> train, test = stratified_split([0] * 5 + [1] * 10, rng=0)
    >>> len(train), len(test)
    (12, 3)
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise InputError(f"`labels` must be a non-empty 1-D array; got shape {labels.shape}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise InputError(f"`test_fraction` must be in (0, 1); got {test_fraction}")
    rng = as_rng(rng)
    test = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test.append(members[: int(round(members.size * float(test_fraction)))])
    test_mask = np.zeros(labels.size, dtype=bool)
    test_mask[np.concatenate(test)] = True
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


@dataclass(frozen=True)
class MajorityRun:
    """One training run of the majority task.

    Attributes
    ----------
    variant : str
        ``"projection"``, ``"no-projection"`` or ``"none"``.
    no_projection_norm : str
        ``"paper"`` or ``"sqrt-d"``: the norm of the ``no-projection`` keys (see
        :class:`~geomln.experiments._models.MajorityModel`); recorded for every variant.
    seed : int
    step : ndarray of int, shape (steps,)
        1-based optimizer step.
    loss : ndarray, shape (steps,)
        Training cross-entropy of that step's batch (before the update).
    angle : ndarray, shape (steps,)
        Mean folded angle (degrees) between the effective queries of the batch's tokens and ``1``.
    test_accuracy : ndarray, shape (steps,)
        Per-token test accuracy after the step; NaN at steps without evaluation.
    keys, queries : ndarray, shape (n_classes, hidden)
        Final keys ``norm1(E)`` and effective queries of every class.
    wall_time : float
        Seconds spent in training.
    """

    variant: str
    no_projection_norm: str
    seed: int
    step: np.ndarray
    loss: np.ndarray
    angle: np.ndarray
    test_accuracy: np.ndarray
    keys: np.ndarray
    queries: np.ndarray
    wall_time: float

    @property
    def label(self):
        """The variant's name in tables and figures; ``no-projection`` runs also name their norm."""
        if self.variant == "no-projection":
            return f"no-projection ({self.no_projection_norm} norm)"
        return self.variant


def _query_angles(model):
    keys, queries = model.keys_and_queries()
    return (
        angle_to_ones(queries.double().numpy(), folded=True),
        keys.double().numpy(),
        queries.double().numpy(),
    )


def train_majority(
    *,
    variant="projection",
    no_projection_norm="paper",
    seed=0,
    steps=1000,
    n_samples=100_000,
    seq_len=50,
    n_classes=20,
    min_margin=6,
    hidden=8,
    ff=8,
    batch_size=6000,
    lr=1e-3,
    decay_steps=None,
    eval_every=10,
    progress=True,
):
    """Train the majority model once and log loss, query angle to ``1`` and test accuracy per step.

    Parameters
    ----------
    variant : {"projection", "no-projection", "none"}
        LayerNorm before attention: projection + scaling, scaling only, or nothing.
    no_projection_norm : {"paper", "sqrt-d"}
        Norm of the ``no-projection`` keys: the paper's ``1 / sqrt(hidden)`` or LayerNorm's
        ``sqrt(hidden)``.
    seed : int
        Seeds the data, the split, the batches and the initial weights (the same for every
        variant, so variants are compared on identical data and initialisation).
    steps : int
        Optimizer steps (Adam).
    n_samples, seq_len, n_classes, min_margin : int
        Data, see :func:`make_majority_data` (10 sequences per partition); split 80/20 by
        :func:`stratified_split`.
    hidden, ff : int
        Model width and feed-forward width.
    batch_size : int
        Training sequences per step, drawn without replacement within each epoch.
    lr : float
        Initial learning rate, decayed linearly to 0 over `decay_steps`.
    decay_steps : int, optional
        Default ``10 * steps`` (the paper's schedule decays over 10x its training length).
    eval_every : int
        Test accuracy is computed after every `eval_every`-th step and after the last.
    progress : bool
        Show a tqdm bar on stderr.

    Returns
    -------
    MajorityRun
    """
    torch = require_torch()
    as_choice(variant, "variant", VARIANTS)
    as_choice(no_projection_norm, "no_projection_norm", NO_PROJECTION_NORMS)
    steps = as_positive_int(steps, "steps")
    eval_every = as_positive_int(eval_every, "eval_every")
    decay_steps = 10 * steps if decay_steps is None else as_positive_int(decay_steps, "decay_steps")
    rng = np.random.default_rng(seed)
    tokens, labels = make_majority_data(
        n_samples, seq_len=seq_len, n_classes=n_classes, min_margin=min_margin, rng=rng
    )
    train_idx, test_idx = stratified_split(labels, rng=rng)
    counts = class_counts(tokens, n_classes)
    x_train, y_train = torch.from_numpy(counts[train_idx]), torch.from_numpy(labels[train_idx])
    x_test, y_test = torch.from_numpy(counts[test_idx]), torch.from_numpy(labels[test_idx])
    batch_size = min(as_positive_int(batch_size, "batch_size"), x_train.shape[0])

    torch.manual_seed(seed)
    model = MajorityModel(
        n_classes, hidden=hidden, ff=ff, variant=variant, no_projection_norm=no_projection_norm
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / decay_steps))
    loss_log, angle_log = np.empty(steps), np.empty(steps)
    accuracy_log = np.full(steps, np.nan)
    order, cursor = rng.permutation(x_train.shape[0]), 0
    start = time.perf_counter()
    bar = progress_bar(range(steps), f"majority {variant} seed {seed}", progress=progress)
    for i in bar:
        if cursor + batch_size > order.size:
            order, cursor = rng.permutation(x_train.shape[0]), 0
        batch = torch.from_numpy(order[cursor : cursor + batch_size])
        cursor += batch_size
        xb, yb = x_train[batch], y_train[batch]
        angles = _query_angles(model)[0]
        frequency = xb.sum(dim=0).numpy()
        angle_log[i] = float(frequency @ angles / frequency.sum())
        logits = model.forward_counts(xb)  # (batch, class of the token, output class)
        per_class = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), yb[:, None].expand(-1, n_classes), reduction="none"
        )
        loss = (per_class * xb).sum() / (xb.shape[0] * seq_len)  # mean over all tokens
        loss_log[i] = optimizer_step(loss, optimizer, schedule)
        if is_eval_step(i, steps, eval_every):
            with torch.no_grad():
                correct = model.forward_counts(x_test).argmax(dim=-1) == y_test[:, None]
            accuracy_log[i] = float((correct * x_test).sum() / (x_test.shape[0] * seq_len))
            bar.set_postfix(
                loss=f"{loss_log[i]:.3f}", acc=f"{accuracy_log[i]:.3f}", angle=f"{angle_log[i]:.1f}"
            )
    wall_time = time.perf_counter() - start
    _, keys, queries = _query_angles(model)
    return MajorityRun(
        variant=variant,
        no_projection_norm=no_projection_norm,
        seed=int(seed),
        step=np.arange(1, steps + 1),
        loss=loss_log,
        angle=angle_log,
        test_accuracy=accuracy_log,
        keys=keys,
        queries=queries,
        wall_time=wall_time,
    )


def steps_to_reach(values, threshold):
    """First 1-based step at which `values` is <= `threshold`, or None if it never is.

    Examples
    --------
    >>> from geomln.experiments.majority import steps_to_reach
    >>> steps_to_reach([3.0, 1.0, 0.1, 0.3], 0.2), steps_to_reach([3.0, 1.0], 0.2)
    (3, None)
    """
    hits = np.flatnonzero(np.asarray(values, dtype=float) <= threshold)
    return int(hits[0]) + 1 if hits.size else None


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std())}


def summarize_majority(runs, *, threshold=0.2, checkpoints=(100, 200, 300, 400, 500)):
    """Per variant label: steps to `threshold` loss, loss at `checkpoints`, final angle and accuracy.

    Parameters
    ----------
    runs : list of MajorityRun
        Grouped by :attr:`MajorityRun.label`; the runs of a group must have the same length.
    threshold : float
        Training loss for "steps to reach".
    checkpoints : sequence of int
        1-based steps at which the training loss is reported (those beyond the runs are skipped).

    Returns
    -------
    dict
        ``label -> {"seeds", "steps_to_loss" (list, None = never), "runs_reaching_loss",
        "steps_to_loss_mean_std" (None unless every run reached it), "loss_at_step"
        ({step: {"mean", "std"}}), "final_angle", "final_test_accuracy", "final_loss"
        ({"mean", "std"}), "steps", "wall_time_s"}``. Standard deviations are population
        (``ddof = 0``) over seeds.
    """
    summary = {}
    for label in dict.fromkeys(run.label for run in runs):
        group = [run for run in runs if run.label == label]
        reached = [steps_to_reach(run.loss, threshold) for run in group]
        finite = [s for s in reached if s is not None]
        steps = group[0].step.size
        summary[label] = {
            "seeds": [run.seed for run in group],
            "steps": steps,
            "steps_to_loss": reached,
            "runs_reaching_loss": len(finite),
            "steps_to_loss_mean_std": _mean_std(finite) if len(finite) == len(group) else None,
            "loss_at_step": {
                int(c): _mean_std([run.loss[c - 1] for run in group]) for c in checkpoints if c <= steps
            },
            "final_angle": _mean_std([run.angle[-1] for run in group]),
            "final_test_accuracy": _mean_std([run.test_accuracy[-1] for run in group]),
            "final_loss": _mean_std([run.loss[-1] for run in group]),
            "wall_time_s": float(sum(run.wall_time for run in group)),
        }
    return summary


def runs_to_rows(runs):
    """Long-format rows ``(label, seed, step, loss, angle, test_accuracy)`` of every run, for a CSV."""
    rows = []
    for run in runs:
        for s, loss, angle, accuracy in zip(run.step, run.loss, run.angle, run.test_accuracy, strict=True):
            rows.append((run.label, run.seed, int(s), float(loss), float(angle), float(accuracy)))
    return rows


def plot_majority_curves(runs, path):
    """Figures 2 and 3: training loss, query angle to ``1`` and test accuracy, mean +/- std over seeds.

    Writes a PNG to `path` atomically and returns the figure's data
    ``{label: {metric: (mean, std)}}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from .._files import atomic_output

    data = {}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for label in dict.fromkeys(run.label for run in runs):
        group = [run for run in runs if run.label == label]
        data[label] = {}
        for ax, metric in zip(axes, ("loss", "angle", "test_accuracy"), strict=True):
            values = np.array([getattr(run, metric) for run in group])
            step = group[0].step
            keep = ~np.isnan(values[0])
            mean, std = values[:, keep].mean(axis=0), values[:, keep].std(axis=0)
            data[label][metric] = (mean, std)
            ax.plot(step[keep], mean, label=label)
            ax.fill_between(step[keep], mean - std, mean + std, alpha=0.25)
            ax.set_xlabel("step")
            ax.set_title(
                {
                    "loss": "training loss",
                    "angle": "folded angle of queries to 1 (deg)",
                    "test_accuracy": "test accuracy",
                }[metric]
            )
    axes[0].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    with atomic_output(path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=110)
    plt.close(fig)
    return data


def plot_keys_queries_3d(runs, path):
    """Figures 1a/1b: keys and effective queries of hidden-size-3 runs, one 3-D panel per run, with ``1``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from .._files import atomic_output

    fig = plt.figure(figsize=(5 * len(runs), 5))
    for i, run in enumerate(runs):
        if run.keys.shape[1] != 3:
            raise InputError(
                f"3-D plots need hidden size 3; run {run.label}/{run.seed} has {run.keys.shape[1]}"
            )
        ax = fig.add_subplot(1, len(runs), i + 1, projection="3d")
        queries = run.queries / np.linalg.norm(run.queries, axis=1, keepdims=True) * np.sqrt(3)
        ax.scatter(*run.keys.T, color="tab:blue", label="keys")
        ax.scatter(*queries.T, color="tab:red", marker="^", label="queries (scaled to norm sqrt 3)")
        ax.quiver(0, 0, 0, 1, 1, 1, color="black", label="1")
        ax.set_title(f"{run.label}, seed {run.seed}")
        ax.legend(loc="upper left", fontsize=7)
    with atomic_output(path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=110)
    plt.close(fig)
