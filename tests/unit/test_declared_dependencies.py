"""Every third-party module ocigate imports when it runs is a declared dependency; the
alternative servers are extras, imported only when chosen."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "ocigate"


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _names(requirements: object) -> set[str]:
    assert isinstance(requirements, list)
    names = (re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in requirements)
    return {name.lower().replace("_", "-") for name in names}


def _module_level_imports(path: Path) -> set[str]:
    """Top-level packages imported when the module loads (not inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_runtime_imports_are_declared_dependencies() -> None:
    declared = _names(_project()["dependencies"])
    distributions = packages_distributions()
    undeclared = {}
    for path in SOURCE.rglob("*.py"):
        for module in _module_level_imports(path):
            if module in sys.stdlib_module_names or module == "ocigate":
                continue
            dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
            if not dists & declared:
                undeclared[module] = str(path.relative_to(ROOT))
    assert undeclared == {}


def test_alternative_servers_are_extras_and_tests_get_both() -> None:
    project = _project()
    declared = _names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    for server in ("granian", "uvicorn"):
        assert server not in declared
        assert server in _names(extras[server])
    assert "ocigate[granian,uvicorn]" in extras["test"]
