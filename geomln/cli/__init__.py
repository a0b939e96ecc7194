"""The ``geomln`` command line: :func:`main` and one module per subcommand (``add_args`` + ``run``)."""

from ._main import main

__all__ = ["main"]
