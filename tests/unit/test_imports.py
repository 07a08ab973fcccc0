"""The import rules of the layout: features never see the whole Settings, and no cycles."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ocigate

ROOT = Path(ocigate.__file__).parent
# Parts that receive their own sub-model or plain values, never the whole Settings.
NO_SETTINGS = ("store", "layers", "events", "api", "auth", "server", "client", "ui")
# Parts the API and the CLI are built on: they must not reach back up to them.
NO_API_OR_CLI = ("store", "layers", "events")


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _runtime(node: ast.AST) -> Iterator[ast.AST]:
    """Every node, at any depth, except under ``if TYPE_CHECKING:`` (only a type checker runs
    those imports)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING"):
            continue
        yield from _runtime(child)


def _imports(module: str, *, runtime_only: bool) -> set[tuple[str, str]]:
    """``(module, name)`` pairs of ocigate this module imports (name "" for a whole module)."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = _runtime(tree) if runtime_only else ast.walk(tree)
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[tuple[str, str]] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {(alias.name, "") for alias in node.names if alias.name.startswith("ocigate")}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("ocigate"):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add((submodule, "") if submodule in MODULES else (target, alias.name))
    return found


def _in(module: str, parts: tuple[str, ...]) -> bool:
    return any(module == f"ocigate.{p}" or module.startswith(f"ocigate.{p}.") for p in parts)


def test_features_do_not_import_the_whole_settings_nor_the_api_or_cli() -> None:
    wrong = []
    for module in MODULES:
        for target, name in _imports(module, runtime_only=False):
            if _in(module, NO_SETTINGS) and (target, name) == ("ocigate.config", "Settings"):
                wrong.append(f"{module} imports Settings")
            if _in(module, NO_API_OR_CLI) and (_in(target, ("api",)) or target == "ocigate.cli"):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(groups)


def test_no_import_cycle() -> None:
    """Function-local imports count: one placed to dodge a cycle is still the cycle."""
    graph = {m: {t for t, _ in _imports(m, runtime_only=True) if t in MODULES} for m in MODULES}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_store_package_imports_no_backend() -> None:
    """Every backend's import starts with ``ocigate.store``: it must not load the others (the
    embedded store alone took ~150 ms)."""
    assert _imports("ocigate.store", runtime_only=False) == set()
