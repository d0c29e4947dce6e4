"""Imports go one way (ARCHITECTURE.md): cli, then service, then sources and sinks (never each other),
then journal, then the base modules, then drivers, which import nothing of the relay. Every import counts,
also one inside a function or under ``TYPE_CHECKING``: a loop hidden there is still a loop."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: A package's rank: it may import lower ranks and itself, nothing else.
RANKS = {"drivers": 0, "base": 1, "journal": 2, "sources": 3, "sinks": 3, "service": 4, "cli": 5, "main": 6}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> set[str]:
    """The project modules ``path`` imports (relative imports resolved), wherever the import stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {module for module in found if module.split(".")[0] in ("relay", "drivers")}


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "drivers":
        return "drivers"
    if len(parts) == 1:
        return "base"
    if parts[1] == "__main__":
        return "main"
    return parts[1] if parts[1] in RANKS else "base"


def project_modules() -> dict[str, Path]:
    paths = [*sorted((ROOT / "relay").rglob("*.py")), *sorted((ROOT / "drivers").rglob("*.py"))]
    return {module_name(path): path for path in paths}


def test_every_import_goes_down_the_layers() -> None:
    wrong = []
    modules = project_modules()
    for name, path in modules.items():
        mine = layer(name)
        for target in imported(path):
            if target not in modules and target.rpartition(".")[0] in modules:
                target = target.rpartition(".")[0]  # "from .x import name": the module is x
            theirs = layer(target)
            if theirs == mine or RANKS[theirs] < RANKS[mine]:
                continue
            wrong.append(f"{name} ({mine}) imports {target} ({theirs})")
    assert wrong == []


def test_there_is_no_import_loop() -> None:
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in imported(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                edges.add(target)  # a module importing its own package's __init__ is not a loop
        graph[name] = edges
    loops = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loops.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert loops == []


def test_each_package_says_what_it_exports() -> None:
    for package in ("journal", "sources", "sinks", "service", "cli"):
        text = (ROOT / "relay" / package / "__init__.py").read_text()
        assert "__all__" in text, package
