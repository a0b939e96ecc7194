"""Allow ``python -m geomln``."""

from .cli import main

raise SystemExit(main())
