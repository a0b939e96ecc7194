"""The "majority" task of Brody et al. (2023): LayerNorm's projection helps attend to all keys equally.

Sequences of `seq_len` tokens over `n_classes` classes; the label of every position is the most
frequent class. One pre-LN encoder layer learns it faster when the LayerNorm before attention
projects onto the hyperplane orthogonal to ``1``: the queries can then align with ``1`` and give
every key the same score (paper: loss 0.2 reached ~3x sooner; folded query angle to ``1`` ~10 deg
with projection vs ~80 deg without). Data generation and summaries need only NumPy; training needs torch.
"""

import time
from dataclasses import dataclass

import numpy as np

from .._validation import as_choice, as_positive_int, as_rng
from ..errors import InputError
from ..geometry.angles import angle_to_ones
from ._models import MAJORITY_VARIANTS, MajorityModel, require_torch
from ._training import is_eval_step, optimizer_step, progress_bar

__all__ = [
    "make_majority_data",
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


def make_majority_data(n_samples, *, seq_len=50, n_classes=20, min_margin=6, rng=None):
    """Draw majority-task sequences whose most frequent class leads the runner-up by `min_margin` or more.

    Parameters
    ----------
    n_samples : int
        Number of sequences.
    seq_len, n_classes : int, default 50, 20
        Sequence length and vocabulary size.
    min_margin : int, default 6
        Required lead of the majority class over the second most frequent one (>= 1: no ties).
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
    Class counts are drawn from a Dirichlet(1)-multinomial and rejected until the margin holds,
    then the tokens of each row are shuffled. The paper instead enumerates integer partitions of
    `seq_len` (10 sequences each); both give every class the same chance of being the label.

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
    if min_margin > seq_len:
        raise InputError(f"`min_margin` must be <= `seq_len` ({seq_len}); got {min_margin}")
    rng = as_rng(rng)
    parts, total = [], 0
    while total < n_samples:
        p = rng.dirichlet(np.ones(n_classes), size=max(1024, 2 * (n_samples - total)))
        counts = rng.multinomial(seq_len, p)
        top2 = np.sort(counts, axis=1)[:, -2:]
        counts = counts[top2[:, 1] - top2[:, 0] >= min_margin]
        parts.append(counts)
        total += counts.shape[0]
    counts = np.concatenate(parts)[:n_samples]
    labels = counts.argmax(axis=1).astype(np.int64)
    tokens = np.repeat(np.tile(np.arange(n_classes, dtype=np.int64), n_samples), counts.ravel())
    tokens = tokens.reshape(n_samples, seq_len)
    order = np.argsort(rng.random((n_samples, seq_len)), axis=1)
    return np.take_along_axis(tokens, order, axis=1), labels


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
    seed: int
    step: np.ndarray
    loss: np.ndarray
    angle: np.ndarray
    test_accuracy: np.ndarray
    keys: np.ndarray
    queries: np.ndarray
    wall_time: float


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
    seed : int
        Seeds the data, the split, the batches and the initial weights (the same for every
        variant, so variants are compared on identical data and initialisation).
    steps : int
        Optimizer steps (Adam).
    n_samples, seq_len, n_classes, min_margin : int
        Data, see :func:`make_majority_data`; split 80/20 by :func:`stratified_split`.
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
    steps = as_positive_int(steps, "steps")
    eval_every = as_positive_int(eval_every, "eval_every")
    decay_steps = 10 * steps if decay_steps is None else as_positive_int(decay_steps, "decay_steps")
    rng = np.random.default_rng(seed)
    tokens, labels = make_majority_data(
        n_samples, seq_len=seq_len, n_classes=n_classes, min_margin=min_margin, rng=rng
    )
    train_idx, test_idx = stratified_split(labels, rng=rng)
    x_train, y_train = torch.from_numpy(tokens[train_idx]), torch.from_numpy(labels[train_idx])
    x_test, y_test = torch.from_numpy(tokens[test_idx]), torch.from_numpy(labels[test_idx])
    batch_size = min(as_positive_int(batch_size, "batch_size"), x_train.shape[0])

    torch.manual_seed(seed)
    model = MajorityModel(n_classes, hidden=hidden, ff=ff, variant=variant)
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
        frequency = np.bincount(xb.numpy().ravel(), minlength=n_classes)
        angle_log[i] = float(frequency @ angles / frequency.sum())
        logits = model(xb)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, n_classes), yb.repeat_interleave(seq_len))
        loss_log[i] = optimizer_step(loss, optimizer, schedule)
        if is_eval_step(i, steps, eval_every):
            with torch.no_grad():
                predicted = model(x_test).argmax(dim=-1)
            accuracy_log[i] = float((predicted == y_test[:, None]).double().mean())
            bar.set_postfix(
                loss=f"{loss_log[i]:.3f}", acc=f"{accuracy_log[i]:.3f}", angle=f"{angle_log[i]:.1f}"
            )
    wall_time = time.perf_counter() - start
    _, keys, queries = _query_angles(model)
    return MajorityRun(
        variant=variant,
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


def summarize_majority(runs, *, threshold=0.2):
    """Per variant: seeds, steps to reach `threshold` loss, final angle and test accuracy, wall time.

    Returns
    -------
    dict
        ``variant -> {"seeds", "steps_to_loss" (list, None = never), "median_steps_to_loss",
        "final_angle_mean", "final_angle_std", "final_test_accuracy_mean", "final_test_accuracy_std",
        "final_loss_mean", "wall_time_s"}``.
    """
    summary = {}
    for variant in dict.fromkeys(run.variant for run in runs):
        group = [run for run in runs if run.variant == variant]
        reached = [steps_to_reach(run.loss, threshold) for run in group]
        finite = [s for s in reached if s is not None]
        angles = np.array([run.angle[-1] for run in group])
        accuracies = np.array([run.test_accuracy[-1] for run in group])
        summary[variant] = {
            "seeds": [run.seed for run in group],
            "steps_to_loss": reached,
            "runs_reaching_loss": len(finite),
            "median_steps_to_loss": float(np.median(finite)) if len(finite) == len(group) else None,
            "final_angle_mean": float(angles.mean()),
            "final_angle_std": float(angles.std()),
            "final_test_accuracy_mean": float(accuracies.mean()),
            "final_test_accuracy_std": float(accuracies.std()),
            "final_loss_mean": float(np.mean([run.loss[-1] for run in group])),
            "wall_time_s": float(sum(run.wall_time for run in group)),
        }
    return summary


def runs_to_rows(runs):
    """Long-format rows ``(variant, seed, step, loss, angle, test_accuracy)`` of every run, for a CSV."""
    rows = []
    for run in runs:
        for s, loss, angle, accuracy in zip(run.step, run.loss, run.angle, run.test_accuracy, strict=True):
            rows.append((run.variant, run.seed, int(s), float(loss), float(angle), float(accuracy)))
    return rows


def plot_majority_curves(runs, path):
    """Figures 2 and 3: training loss, query angle to ``1`` and test accuracy, mean +/- std over seeds.

    Writes a PNG to `path` atomically and returns the figure's data
    ``{variant: {metric: (mean, std)}}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from .._files import atomic_output

    data = {}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for variant in dict.fromkeys(run.variant for run in runs):
        group = [run for run in runs if run.variant == variant]
        data[variant] = {}
        for ax, metric in zip(axes, ("loss", "angle", "test_accuracy"), strict=True):
            values = np.array([getattr(run, metric) for run in group])
            step = group[0].step
            keep = ~np.isnan(values[0])
            mean, std = values[:, keep].mean(axis=0), values[:, keep].std(axis=0)
            data[variant][metric] = (mean, std)
            ax.plot(step[keep], mean, label=variant)
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
                f"3-D plots need hidden size 3; run {run.variant}/{run.seed} has {run.keys.shape[1]}"
            )
        ax = fig.add_subplot(1, len(runs), i + 1, projection="3d")
        queries = run.queries / np.linalg.norm(run.queries, axis=1, keepdims=True) * np.sqrt(3)
        ax.scatter(*run.keys.T, color="tab:blue", label="keys")
        ax.scatter(*queries.T, color="tab:red", marker="^", label="queries (scaled to norm sqrt 3)")
        ax.quiver(0, 0, 0, 1, 1, 1, color="black", label="1")
        ax.set_title(f"{run.variant}, seed {run.seed}")
        ax.legend(loc="upper left", fontsize=7)
    with atomic_output(path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=110)
    plt.close(fig)
