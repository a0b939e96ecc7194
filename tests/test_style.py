"""The code base passes ruff (pyflakes, pycodestyle, numpydoc docstring rules) as configured in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.prefix) / "bin" / "ruff").exists(),
                    reason="ruff is not installed (it comes with the [test] extra)")
def test_ruff_check_passes():
    ruff = shutil.which("ruff") or str(Path(sys.prefix) / "bin" / "ruff")
    result = subprocess.run([ruff, "check", "geomln", "tests", "benchmarks"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


#: what each part of the package may import (besides itself and the ground floor)
ALLOWED = {
    "geometry": set(),
    "hull": set(),
    "engine": {"hull"},
    "models": {"engine", "geometry"},
    "montecarlo": {"models", "engine", "geometry"},
    "experiments": {"__init__", "geometry", "engine", "models"},
    "plotting": {"engine", "hull", "montecarlo", "models", "geometry"},
    "cli": {"__init__", "plotting", "experiments", "models", "montecarlo", "engine", "geometry", "hull"},
    "__main__": {"cli"},
}
GROUND = {"errors", "_validation", "_jit", "_loops", "_blas", "_files", "_version", "_aliases", "executors"}


def _part(module):
    """The part of the package a dotted module under geomln belongs to ('__init__' for the top level)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path, module, package):
    """Every geomln module that `path` imports, at module level or inside functions."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            if node.module:
                yield ".".join([*base, node.module])
            else:
                yield from (".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "geomln":
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "geomln")


def test_imports_flow_one_way():
    wrong = []
    for path in sorted((ROOT / "geomln").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        source = _part(module)
        if source == "__init__":
            continue  # the top level re-exports every part (lazily)
        for target in _imports(path, module, package):
            goal = _part(target)
            if goal == source or goal in GROUND:
                continue
            if source in GROUND or goal not in ALLOWED[source]:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not wrong, "\n".join(wrong)
