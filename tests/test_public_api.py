"""The public surface and the layers of the house (DESIGN §2, STYLE "Shape").

Each public package lists its names in ``__all__``, pinned here, and every listed name resolves;
the README and the notebooks use public names only; and module-level imports never run back up
the layers: ``policies`` imports nothing of ours, ``sim`` imports ``policies``, ``live`` both,
the command line everything — and inside ``sim`` the jobs stack world → engine → runs → report →
tune. (Imports inside a function are how a lower layer defers a heavy library or an optional
upper one on purpose; they are left out.)
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PUBLIC: dict[str, list[str]] = {
    "sim": [
        "OUTCOME_FIELDS",
        "CompiledWorld",
        "Outcome",
        "Replication",
        "RunOptions",
        "RunResult",
        "UserCells",
        "World",
        "compare",
        "load_scenario",
        "pareto",
        "run",
        "run_scenario",
        "sensitivity",
        "shutdown",
        "simulate",
        "summarize",
        "sweep",
        "to_frame",
    ],
    "sim.fit": [
        "FitInputs",
        "Fitted",
        "Prometheus",
        "fit_error_rate",
        "fit_latency",
        "fit_releases",
        "fit_traffic",
        "fit_world",
        "load_input",
        "query_range",
        "read_matrix",
        "regular",
        "world_data",
        "world_yaml",
        "write_fit",
        "write_fit_report",
    ],
    "sim.report": [
        "REPORT_FILES",
        "example_traces",
        "figures",
        "place_labels",
        "sensitivity_words",
        "tornado",
        "write_report",
    ],
    "sim.tune": [
        "TuneResult",
        "TuneSpec",
        "load_tune_scenario",
        "parse_tune_spec",
        "tune",
        "write_tune_report",
    ],
    "policies.explain": ["ExplainRow", "Explanation", "explain"],
}
# Packages whose __all__ is pinned elsewhere (tests/test_policies.py, tests/test_live_cli.py) or
# that are public as a whole: documentation may import any name of their __all__.
ALSO_PUBLIC = ("policies", "policies.controller", "policies.exporters", "policies.importers")


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned_and_resolve(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_importing_sim_does_no_work() -> None:
    code = (
        "import sys, sim, sim.report, sim.tune, sim.world, sim.engine, sim.runs;"
        "print(','.join(m for m in ('pandas', 'scipy', 'matplotlib', 'simpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _imports(source: str) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in a piece of Python."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _documented_code() -> dict[str, str]:
    """The README's Python blocks and the notebooks' code cells, by where they are."""
    code = {}
    readme = (ROOT / "README.md").read_text()
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", readme, re.S)):
        code[f"README.md block {i + 1}"] = block
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                code[f"{path.name} cell {i}"] = "".join(cell["source"])
    return code


def test_readme_and_notebooks_use_public_names_only() -> None:
    ours = ("sim", "policies", "live", "rolloutsim")
    public = {**PUBLIC, **{p: importlib.import_module(p).__all__ for p in ALSO_PUBLIC}}
    wrong = []
    for where, source in _documented_code().items():
        for module, names in _imports(source):
            if module.split(".")[0] not in ours:
                continue
            if module not in public:
                wrong.append(f"{where}: {module} is not a public module")
                continue
            wrong += [
                f"{where}: {module}.{n} is not public" for n in names if n not in public[module]
            ]
    assert not wrong, "\n".join(wrong)


# Lower layers first; a module may import its own layer and those before it.
LAYERS = [
    ("policies",),
    ("sim.lazy", "sim.world"),
    ("sim.engine",),
    ("sim.runs", "sim.fit"),
    ("sim.report",),
    ("sim.tune",),
    ("sim",),
    ("live",),
    ("rolloutsim",),
]


def _layer(module: str) -> int | None:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def _module_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in tree.body:  # top-level statements only (and their if/try blocks)
        nodes = [node]
        if isinstance(node, ast.If | ast.Try):
            nodes = list(ast.walk(node))
        for n in nodes:
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                found.append(n.module)
            elif isinstance(n, ast.Import):
                found.extend(a.name for a in n.names)
    return found


def test_no_import_runs_back_up_the_layers() -> None:
    wrong = []
    for top in ("policies", "sim", "live", "rolloutsim"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            own = _layer(name)
            for module in _module_level_imports(path):
                theirs = _layer(module)
                if own is not None and theirs is not None and theirs > own:
                    wrong.append(f"{name} imports {module}")
    assert not wrong, "\n".join(wrong)
