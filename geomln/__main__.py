"""Allow ``python -m geomln``."""

from .cli._main import forget_handled_interrupt, main

code = main()
if code == 130:
    forget_handled_interrupt()
raise SystemExit(code)
