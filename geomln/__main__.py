"""Allow ``python -m geomln``."""

from .cli._main import main

raise SystemExit(main())
