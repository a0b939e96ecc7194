"""Monte Carlo of unselectable keys over a grid of (n, d): the paper's Figure 1c/1d by default.

Draws --trials key sets per cell, normalizes them and decides every key exactly. Writes
results.csv and results.json (the tidy table; the JSON also holds the provenance) and one heatmap
PNG per metric (y = n, x = d, one panel per normalization) into --out. results.json is rewritten
as cells finish (every 2 s, and on Ctrl-C), so an interrupted run can continue with --resume. A
folder that holds a previous run's files is refused unless --resume continues that run or
--overwrite replaces it.
"""

import shlex
import sys
from pathlib import Path

from .._files import atomic_output, ensure_directory
from .._validation import as_choice
from ..errors import GeomlnError, InputError
from ..executors import EXECUTORS, ClusterError
from ..montecarlo.estimate import DISTRIBUTIONS, NORMALIZATIONS, MonteCarloResult, estimate_unselectable
from .theory import parse_int_list

__all__ = ["PARAMETERS", "OUTPUTS", "add_args", "run"]

_METRICS = ("any_unselectable", "fraction")
_HEATMAPS = tuple(f"heatmap_{metric}.png" for metric in _METRICS)
_CURVES = "fraction_vs_n.png"
#: every file a run writes into --out; --overwrite removes these and nothing else
OUTPUTS = ("results.csv", "results.json", *_HEATMAPS, _CURVES)
#: library parameters that are not named like a flag (see geomln.cli._main.speak_cli)
PARAMETERS = {"checkpoint": "--out", "resume=False": "--overwrite"}


def add_args(parser):
    parser.add_argument(
        "--n", default="3:60", help="numbers of keys: '3:60', '3:60:2' or '5,8,13' (default 3:60)"
    )
    parser.add_argument("--d", default="3:15", help="dimensions, same syntax (default 3:15)")
    parser.add_argument("--trials", type=int, default=100, help="key sets per cell (default 100)")
    parser.add_argument(
        "--distribution",
        default="gaussian",
        help=f"comma-separated, from {', '.join(DISTRIBUTIONS)} (default gaussian)",
    )
    parser.add_argument(
        "--normalization",
        default="none,layernorm",
        help=f"comma-separated, from {', '.join(NORMALIZATIONS)} (default none,layernorm)",
    )
    parser.add_argument("--keys", help="key matrix for --distribution from_keys (any file geomln reads)")
    parser.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    parser.add_argument("--workers", type=int, help="worker processes (default: all cores; 1 = no pool)")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: this machine (default); dask: the Dask cluster at --scheduler, else a local Dask "
        "cluster of --workers processes (needs the dask extra)",
    )
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="reuse the finished cells of DIR/results.json")
    again.add_argument("--overwrite", action="store_true",
                       help=f"first remove a previous run's files from --out ({', '.join(OUTPUTS)}); "
                            "other files are kept")
    parser.add_argument("--no-plots", action="store_true", help="skip the heatmap and theory-curve PNGs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _names(text, option, choices):
    names = [item.strip() for item in text.split(",")]
    if not all(names):
        raise InputError(f"`{option}`: cannot parse {text!r}; expected comma-separated names")
    for name in names:
        as_choice(name, option, choices)
    return names


def _previous_run(out, args):
    """Refuse a folder holding a previous run's files unless --resume or --overwrite says what to do with them."""
    found = [name for name in OUTPUTS if (out / name).exists()]
    if found and args.overwrite:
        for name in found:
            (out / name).unlink()
    elif found and not args.resume:
        raise InputError(f"`--out` {str(out)!r} holds a previous run ({', '.join(found)}); add --resume to "
                         f"continue it or --overwrite to replace it")


def _resume_command(argv_like):
    return "geomln montecarlo " + " ".join(shlex.quote(part) for part in argv_like) + " --resume"


def _arguments(args):
    parts = [
        "--n",
        args.n,
        "--d",
        args.d,
        "--trials",
        str(args.trials),
        "--distribution",
        args.distribution,
        "--normalization",
        args.normalization,
        "--seed",
        str(args.seed),
        "--out",
        str(args.out),
    ]
    if args.keys:
        parts += ["--keys", args.keys]
    if args.workers:
        parts += ["--workers", str(args.workers)]
    if args.executor != "local":
        parts += ["--executor", args.executor]
    if args.scheduler:
        parts += ["--scheduler", args.scheduler]
    return parts


def save_heatmaps(result, out):
    """Write ``heatmap_<metric>.png`` with one panel per (distribution, normalization); return the paths."""
    from matplotlib.figure import Figure

    from ..plotting import plot_unselectable_heatmap

    distributions = result.labels("distribution")
    normalizations = result.labels("normalization")
    paths = []
    for metric, name in zip(_METRICS, _HEATMAPS, strict=True):
        figure = Figure(figsize=(5.0 * len(normalizations), 3.8 * len(distributions)), layout="constrained")
        figure.get_layout_engine().set(w_pad=0.15, wspace=0.08)  # colour bar labels clear of the next panel
        axes = figure.subplots(len(distributions), len(normalizations), squeeze=False)
        for i, distribution in enumerate(distributions):
            for j, normalization in enumerate(normalizations):
                plot_unselectable_heatmap(
                    result,
                    metric=metric,
                    distribution=distribution,
                    normalization=normalization,
                    ax=axes[i, j],
                )
        path = Path(out) / name
        with atomic_output(path, "wb") as stream:
            figure.savefig(stream, format="png", dpi=120)
        paths.append(path)
    return paths


def save_theory_curves(result, out, *, max_curves=5, max_columns=3):
    """Write ``fraction_vs_n.png``: Monte Carlo fraction against n with the exact theory dashed.

    Up to `max_curves` evenly spaced d are drawn, one panel per (distribution, normalization), at most
    `max_columns` panels per row.
    """
    from matplotlib.figure import Figure

    from ..plotting import plot_fraction_vs_n

    ds = sorted({row.d for row in result})
    shown = [ds[i] for i in sorted({round(k * (len(ds) - 1) / max(max_curves - 1, 1)) for k in range(max_curves)})]
    panels = [(dist, norm) for dist in result.labels("distribution") for norm in result.labels("normalization")]
    columns = min(len(panels), max_columns)
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(5.0 * columns, 4.0 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in grid[len(panels):]:
        ax.set_visible(False)
    for ax, (distribution, normalization) in zip(grid, panels, strict=False):
        plot_fraction_vs_n(result, d=shown, distribution=distribution, normalization=normalization, ax=ax)
        ax.set_title(f"{distribution}, {normalization}")
    path = Path(out) / _CURVES
    with atomic_output(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=120)
    return path


def theory_agreement(result):
    """One line comparing the Monte Carlo means with the exact theory, for the cells where it is known."""
    known = [row for row in result if row.theory_fraction == row.theory_fraction]  # not NaN
    if not known:
        return "exact theory: not known for these cells"
    inside = sum(row.fraction_low - 1e-12 <= row.theory_fraction <= row.fraction_high + 1e-12 for row in known)
    worst = max(abs(row.fraction - row.theory_fraction) for row in known)
    return (f"exact theory: {inside} of {len(known)} cells have it inside the 95% interval of the Monte Carlo "
            f"mean; largest |mean - theory| = {worst:.4f}")


def _interrupted(args, out, checkpoint, created, ns, ds, distributions, normalizations):
    """Say in one line what an interrupted run saved (writing its partial CSV) and how to go on."""
    total = len(ns) * len(ds) * len(distributions) * len(normalizations)
    if not checkpoint.exists():
        if created and not any(out.iterdir()):
            out.rmdir()
        command = _resume_command(_arguments(args)).removesuffix(" --resume")
        return f"interrupted before any of the {total} cells finished; nothing was saved. Start again with: {command}"
    partial = MonteCarloResult.from_json(checkpoint)
    partial.to_csv(out / "results.csv")
    return (
        f"interrupted after {len(partial)} of {total} cells, saved in {str(out / 'results.csv')!r} and "
        f"{str(checkpoint)!r}; continue with: {_resume_command(_arguments(args))}"
    )


def run(args):
    ns = parse_int_list(args.n, "--n")
    ds = parse_int_list(args.d, "--d")
    if args.trials < 1:
        raise InputError(f"`--trials` must be >= 1; got {args.trials}")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"`--workers` must be >= 1; got {args.workers}")
    distributions = _names(args.distribution, "--distribution", DISTRIBUTIONS)
    normalizations = _names(args.normalization, "--normalization", NORMALIZATIONS)
    created = not Path(args.out).exists()
    out = ensure_directory(args.out, "--out")
    _previous_run(out, args)
    checkpoint = out / "results.json"
    if args.resume and not checkpoint.exists():
        print(f"geomln: note: nothing to resume in {str(out)!r}; starting afresh", file=sys.stderr)
    try:
        result = estimate_unselectable(
            ns,
            ds,
            trials=args.trials,
            distribution=distributions if len(distributions) > 1 else distributions[0],
            normalization=normalizations,
            seed=args.seed,
            workers=args.workers,
            progress=not args.no_progress,
            keys=args.keys,
            checkpoint=checkpoint,
            resume=args.resume,
            executor=args.executor,
            scheduler=args.scheduler,
        )
    except ClusterError as exc:
        if checkpoint.exists():
            raise ClusterError(f"{exc}: {_resume_command(_arguments(args))}") from None
        raise
    except (GeomlnError, TypeError):
        if created and not any(out.iterdir()):
            out.rmdir()  # leave nothing behind for a run that failed on its input
        raise
    except KeyboardInterrupt:
        print(f"geomln: {_interrupted(args, out, checkpoint, created, ns, ds, distributions, normalizations)}",
              file=sys.stderr)
        return 130
    result.to_csv(out / "results.csv")
    written = ["results.csv", "results.json"]
    timings = result.provenance["timings"]
    if not args.no_plots:
        written += [path.name for path in save_heatmaps(result, out)]
        written.append(save_theory_curves(result, out).name)
    elif timings["cells_computed"]:  # a resumed run grew the table: the plots of the old one are stale
        for name in (*_HEATMAPS, _CURVES):
            (out / name).unlink(missing_ok=True)
    print(
        f"{len(result)} cells ({timings['cells_computed']} computed, {timings['cells_resumed']} resumed) in "
        f"{timings['total_seconds']:.1f} s with {timings['workers_used']} worker(s); wrote "
        f"{', '.join(written)} to {str(out)!r}"
    )
    print(theory_agreement(result))
    return 0
