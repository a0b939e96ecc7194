"""CLI subcommands: one module each, with ``add_args(parser)`` and ``run(args) -> int``."""
