"""Reproduce the paper's experiments on CPU (needs the torch extra: pip install 'geomln[torch]').

``majority``: LayerNorm's projection on the majority task (Figures 1-3). ``lm``: a tiny language model
with and without scaling, and its unselectable keys (Tables 1-2, Figure 4). ``table3``: the w/o scaling
model on short sentences. ``table4``: a small BERT without LayerNorm on a verse classification task.
"""

import time

import numpy as np

from .._files import atomic_output, ensure_directory
from ..errors import GeomlnError
from . import _experiment_tables
from ._experiment_common import _common, _loop_options, _now, _provenance, _torch, _write_csv
from ._output import dumps_json

#: library parameters that are not named like a flag (see geomln.cli._main.speak_cli)
PARAMETERS = {"variant": "--variants", "n_samples": "--samples", "n_sequences": "--eval-sequences",
              "length": "--eval-length", "n_classes": "--classes", "ff": "--ffn",
              "min_margin": "--margin", "n_sentences": "--sentences", "max_tokens": "--max-tokens"}


def add_args(parser):
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)

    m = experiments.add_parser(
        "majority",
        help="majority task (Figures 1a/1b, 2, 3)",
        description="Train one pre-LN encoder layer on the majority task per variant and seed.",
    )
    m.add_argument("--out", required=True, help="output directory (created if needed)")
    m.add_argument("--seeds", type=int, default=10, help="number of seeds, 0..N-1 (default 10)")
    m.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    m.add_argument("--steps", type=int, default=1000, help="optimizer steps per run (default 1000)")
    m.add_argument(
        "--variants",
        nargs="+",
        default=["projection", "no-projection"],
        choices=["projection", "no-projection", "none"],
        help="LayerNorm variants to train",
    )
    m.add_argument(
        "--no-projection-norm",
        nargs="+",
        default=["paper"],
        choices=["paper", "sqrt-d"],
        help="norm of the no-projection keys: 1/sqrt(d) as in the paper's code, and/or sqrt(d) as "
        "LayerNorm's; one no-projection run per choice (default paper)",
    )
    m.add_argument(
        "--samples", type=int, default=100_000, help="sequences, 10 per partition, split 80/20 (default 100000)"
    )
    m.add_argument("--seq-len", type=int, default=50, help="tokens per sequence (default 50)")
    m.add_argument("--classes", type=int, default=20, help="vocabulary size (default 20)")
    m.add_argument(
        "--margin", type=int, default=6, help="lead of the majority class over the runner-up (default 6)"
    )
    m.add_argument(
        "--hidden", type=int, default=8, help="model width (default 8; 3 also draws Figures 1a/1b)"
    )
    m.add_argument("--ffn", type=int, default=8, help="feed-forward width (default 8)")
    m.add_argument("--batch-size", type=int, default=6000, help="sequences per step (default 6000)")
    m.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    m.add_argument("--eval-every", type=int, default=10, help="test accuracy every N steps (default 10)")
    m.add_argument(
        "--threshold", type=float, default=0.2, help="loss threshold for 'steps to reach' (default 0.2)"
    )
    _common(m)
    m.set_defaults(experiment_run=_run_majority)

    lm = experiments.add_parser(
        "lm",
        help="tiny GPT-2-style LM with/without scaling (Tables 1, 2, Figure 4)",
        description="Train both LMs on a text corpus, then measure unselectable keys.",
    )
    lm.add_argument(
        "--corpus", help="plain UTF-8 text file, last 10%% held out (required unless --tables-only)"
    )
    lm.add_argument("--out", required=True, help="output directory (created if needed)")
    lm.add_argument("--steps", type=int, default=1000, help="optimizer steps per model (default 1000)")
    lm.add_argument("--seed", type=int, default=0)
    lm.add_argument(
        "--tokenizer",
        choices=["bpe", "bytes"],
        default="bpe",
        help="byte-level BPE trained on the training split, or raw bytes (default bpe)",
    )
    lm.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary size (default 2048)")
    lm.add_argument("--block-size", type=int, default=256, help="training window in tokens (default 256)")
    lm.add_argument("--batch-size", type=int, default=16, help="windows per step (default 16)")
    lm.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default 3e-3)")
    lm.add_argument("--dropout", type=float, default=0.1, help="dropout (default 0.1, as GPT-2)")
    lm.add_argument("--eval-every", type=int, default=50, help="test loss every N steps (default 50)")
    lm.add_argument(
        "--eval-sequences", type=int, default=8, help="held-out sequences for the tables (default 8)"
    )
    lm.add_argument(
        "--eval-length", type=int, default=1024, help="tokens per held-out sequence (default 1024)"
    )
    lm.add_argument(
        "--fixed-positions",
        action="store_true",
        help="train every window at positions 0..block-1 (default: a random offset per batch, so that all "
        "positions up to the held-out length are trained)",
    )
    lm.add_argument(
        "--tables-only",
        action="store_true",
        help="skip training; recompute the tables from the keys_*.npz files already in --out",
    )
    lm.add_argument("--tol", type=float, default=None, help="tolerance passed to geomln.selectable_keys")
    _common(lm)
    lm.set_defaults(experiment_run=_run_lm)
    _experiment_tables.add_args(experiments)


def _run_majority(args):
    torch = _torch(args.threads)
    from ..experiments import majority

    out = ensure_directory(args.out)
    started, start = _now(), time.perf_counter()
    runs = []
    configurations = [
        (variant, norm)
        for variant in args.variants
        for norm in (args.no_projection_norm if variant == "no-projection" else args.no_projection_norm[:1])
    ]
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for variant, norm in configurations:
            runs.append(
                majority.train_majority(
                    variant=variant,
                    no_projection_norm=norm,
                    seed=seed,
                    n_samples=args.samples,
                    seq_len=args.seq_len,
                    n_classes=args.classes,
                    min_margin=args.margin,
                    hidden=args.hidden,
                    ff=args.ffn,
                    **_loop_options(args),
                )
            )
    _write_csv(
        out / "runs.csv",
        ("variant", "seed", "step", "loss", "angle_deg", "test_accuracy"),
        majority.runs_to_rows(runs),
    )
    majority.plot_majority_curves(runs, out / "curves.png")
    if args.hidden == 3:
        majority.plot_keys_queries_3d(runs[: len(configurations)], out / "keys_queries_3d.png")
    summary = majority.summarize_majority(runs, threshold=args.threshold)
    report = {
        "summary": summary,
        "loss_threshold": args.threshold,
        "provenance": _provenance(args, torch, started, time.perf_counter() - start),
    }
    with atomic_output(out / "summary.json") as stream:
        stream.write(dumps_json(report))
    for label, s in summary.items():
        angle, accuracy, loss = s["final_angle"], s["final_test_accuracy"], s["final_loss"]
        print(
            f"{label}: loss<={args.threshold} at steps {s['steps_to_loss']}; final loss "
            f"{loss['mean']:.3f}+/-{loss['std']:.3f}; final angle {angle['mean']:.1f}+/-{angle['std']:.1f} deg; "
            f"final test accuracy {accuracy['mean']:.4f}+/-{accuracy['std']:.4f}"
        )
    return 0


def _run_lm(args):
    torch = _torch(args.threads)
    from ..experiments import lm

    out = ensure_directory(args.out)
    if not args.tables_only:
        if args.corpus is None:
            raise GeomlnError("`--corpus` is required unless --tables-only is given")
        _train_lms(args, torch, lm, out)
    return _lm_tables(args, torch, lm, out)


def _train_lms(args, torch, lm, out):
    started, start = _now(), time.perf_counter()
    text = lm.load_corpus(args.corpus)
    split = int(len(text) * 0.9)
    tokenizer = lm.train_tokenizer(text[:split], kind=args.tokenizer, vocab_size=args.vocab_size)
    train_tokens, test_tokens = tokenizer.encode(text[:split]), tokenizer.encode(text[split:])
    with atomic_output(out / "tokenizer.json") as stream:
        stream.write(tokenizer.to_json())
    sequences = lm.eval_windows(test_tokens, n_sequences=args.eval_sequences, length=args.eval_length)
    runs = []
    for scaling in (False, True):
        run = lm.train_lm(
            train_tokens,
            test_tokens,
            tokenizer.vocab_size,
            scaling=scaling,
            seed=args.seed,
            block_size=args.block_size,
            dropout=args.dropout,
            n_positions=max(1024, args.eval_length),
            random_offsets=not args.fixed_positions,
            **_loop_options(args),
        )
        runs.append(run)
        before, after = lm.collect_keys(run.model, sequences)
        lm.save_keys_npz(
            out / f"keys_{'scaling' if scaling else 'no_scaling'}.npz",
            {"keys": after, "ln_input": before},
            {
                "model": f"TinyGPT d=8 L=4 H=4 ln_1 {'projection+scaling' if scaling else 'projection only'}",
                "description": {
                    "keys": "ln_1 output = keys right before attention",
                    "ln_input": "ln_1 input (residual stream)",
                },
                "corpus": str(args.corpus),
                "tokenizer": tokenizer.kind,
                "seed": args.seed,
                "steps": args.steps,
            },
        )
    rows = [
        ("w/ scaling" if r.scaling else "w/o scaling", int(s), float(a), float(b))
        for r in runs
        for s, a, b in zip(r.step, r.train_loss, r.test_loss, strict=True)
    ]
    _write_csv(out / "losses.csv", ("model", "step", "train_loss", "test_loss"), rows)
    lm.plot_lm_losses(runs, out / "losses.png")
    report = {
        "final_test_loss": {
            ("w/ scaling" if r.scaling else "w/o scaling"): float(r.test_loss[-1]) for r in runs
        },
        "training_wall_time_s": {
            ("w/ scaling" if r.scaling else "w/o scaling"): round(r.wall_time, 1) for r in runs
        },
        "tokens": {
            "train": int(train_tokens.size),
            "test": int(test_tokens.size),
            "vocab_size": int(tokenizer.vocab_size),
            "tokenizer": tokenizer.kind,
        },
        "eval": {"sequences": args.eval_sequences, "length": args.eval_length},
        "provenance": _provenance(args, torch, started, time.perf_counter() - start),
    }
    with atomic_output(out / "training.json") as stream:
        stream.write(dumps_json(report))
    for name, value in report["final_test_loss"].items():
        print(f"{name}: final test loss {value:.4f} nats/token")


def _lm_tables(args, torch, lm, out):
    started, start = _now(), time.perf_counter()
    tables = {}
    for name in ("no_scaling", "scaling"):
        path = out / f"keys_{name}.npz"
        try:
            with np.load(path, allow_pickle=False) as archive:
                after, before = archive["keys"], archive["ln_input"]
        except (OSError, KeyError, ValueError) as exc:
            raise GeomlnError(
                f"`--out`: cannot read {str(path)!r} ({exc}); train first (without --tables-only)"
            ) from None
        tables[name] = {
            "after_ln": lm.unselectable_fractions(after, tol=args.tol, progress=not args.no_progress),
            "before_ln": lm.unselectable_fractions(before, tol=args.tol, progress=not args.no_progress),
        }
    percent = {
        name: {part: (100 * f.mean(axis=1)).round(2).tolist() for part, f in t.items()}
        for name, t in tables.items()
    }
    report = {
        "table1_percent_unselectable_keys": {
            "w/o scaling": percent["no_scaling"]["after_ln"],
            "w/ scaling": percent["scaling"]["after_ln"],
            "paper w/o scaling": [51.0, 32.2, 34.7, 36.8],
            "paper w/ scaling": [0, 0, 0, 0],
        },
        "table2_percent_unselectable_w_scaling_model": {
            "before LayerNorm": percent["scaling"]["before_ln"],
            "after LayerNorm": percent["scaling"]["after_ln"],
            "paper before": [44.8, 28.5, 22.3, 26.1],
            "paper after": [0, 0, 0, 0],
        },
        "w/o scaling model, before its ln_1 (%)": percent["no_scaling"]["before_ln"],
        "per_sequence_fraction": {n: {p: f.tolist() for p, f in t.items()} for n, t in tables.items()},
        "tol": args.tol,
        "provenance": _provenance(args, torch, started, time.perf_counter() - start),
    }
    with atomic_output(out / "tables.json") as stream:
        stream.write(dumps_json(report))
    t1, t2 = report["table1_percent_unselectable_keys"], report["table2_percent_unselectable_w_scaling_model"]
    print(f"Table 1 (% unselectable, layers 1-4): w/o scaling {t1['w/o scaling']}, w/ {t1['w/ scaling']}")
    print(f"Table 2 (w/ scaling model): before LN {t2['before LayerNorm']}  after LN {t2['after LayerNorm']}")
    return 0


def run(args):
    return args.experiment_run(args)
