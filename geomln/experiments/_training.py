"""Training-loop pieces shared by the experiments: progress bar, one optimizer step, evaluation cadence.

Nothing here imports torch; tqdm is imported only when a bar is made.
"""

import sys

__all__ = ["progress_bar", "optimizer_step", "is_eval_step"]


def progress_bar(iterable, desc, *, progress):
    """Wrap `iterable` in a tqdm bar on stderr, hidden unless `progress` and cleared when it ends."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, file=sys.stderr, disable=not progress, leave=False)


def optimizer_step(loss, optimizer, schedule):
    """Back-propagate `loss`, step `optimizer` and the learning-rate `schedule`; return the loss as a float."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.item()


def is_eval_step(i, steps, every):
    """Whether the 0-based step `i` of `steps` is evaluated: every `every`-th step, and the last one."""
    return (i + 1) % every == 0 or i + 1 == steps
