"""The exporters' shape: executor modules are thin adapters over shared machinery, with no import
cycles, no formatter switched off, and function-level imports only to defer a heavy library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPORTERS = ROOT / "policies" / "exporters"
MODULES = sorted(EXPORTERS.glob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """Every module of ours ``path`` imports, at module level or inside a function (a cycle
    hidden by a function-level import is still a cycle)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "policies"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("policies"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in out if _is_module(name)}


def _graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "policies").rglob("*.py"))
    return {_name(f): _imports(f) - {_name(f)} for f in files}


def test_policies_import_graph_has_no_cycle():
    graph, state, path = _graph(), {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_executor_modules_import_no_other_executor():
    """nginx and Istio share sequences, flagger_loop and checks, not each other."""
    from policies.exporters import EXECUTORS

    executors = {f"policies.exporters.{e}" for e in EXECUTORS}
    graph = _graph()
    for name in executors:
        assert not graph[name] & (executors - {name}), name


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_formatter_switched_off_and_modules_stay_small(path):
    text = path.read_text()
    assert not any(f"fmt: {switch}" in text for switch in ("skip", "off"))
    assert len(text.splitlines()) <= 500


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_function_level_imports_say_why(path):
    """A deferred import is on purpose (a heavy library), and its line says so."""
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import | ast.ImportFrom):
                line = lines[inner.lineno - 1]
                assert "#" in line, f"{path.name}:{inner.lineno}: {line.strip()}"
