"""The module paths of geomln's flat layout (``geomln.capture``, ``geomln.selectability``, ...) as aliases.

The modules live in subpackages (``geomln.models.capture``, ``geomln.engine.selectability``); importing an
old path gives the very same module object (no copy), so ``import geomln.capture`` and
``from geomln.selectability import selectable_keys`` keep working.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED"]

#: old module name -> the module it now is
MOVED = {
    "geomln.layernorm": "geomln.geometry.layernorm",
    "geomln.angles": "geomln.geometry.angles",
    "geomln.selectability": "geomln.engine.selectability",
    "geomln.membership": "geomln.engine.membership",
    "geomln.theory": "geomln.montecarlo.theory",
    "geomln.keyfile": "geomln.models.keyfile",
    "geomln.io": "geomln.models.io",
    "geomln.capture": "geomln.models.capture",
    "geomln.analysis": "geomln.models.analysis",
    "geomln.causal": "geomln.models.causal",
    "geomln.attention": "geomln.models.attention",
}


class _Alias(importlib.abc.Loader):
    """Load an old name as the module it moved to, keeping that module's own spec."""

    def __init__(self, target):
        self.target = target
        self.spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the import system set the alias's spec; the module stays what it is


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Finder())  # before any path-based finder: an old name is always the alias
