"""The notebooks in notebooks/ run, and the committed copies are the executed ones.

Each notebook is executed top to bottom in a fresh kernel (nbclient), in a temporary working
directory, with small values injected after its ``parameters`` cell (the papermill convention), so
a notebook that breaks fails CI. The committed notebooks carry their outputs (notebooks/README.md
says why); a second, cheap test checks those outputs belong to the code beside them: every code
cell was run, in order, without an error, and the code has not changed since (a digest of the
code cells is stamped into the notebook's metadata when it is executed).

Refresh the committed outputs after editing a notebook (full parameters, under a minute each)::

    .venv/bin/python tests/test_notebooks.py            # all of them
    .venv/bin/python tests/test_notebooks.py 02         # those whose name contains "02"
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")  # quiet jupyter_core's path migration notice

import nbformat  # the dev extra: nbformat, nbclient, ipykernel
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STAMP = "rolloutsim"  # notebook metadata key of the code digest
KERNEL = "python3"  # ipykernel's own kernel: the interpreter running this file

# Small values for CI: each notebook in well under half a minute on two cores.
SMALL: dict[str, dict] = {
    "01-quickstart.ipynb": {"replications": 20},
    "02-canary-vs-blue-green.ipynb": {"replications": 8, "severities": [0.01, 0.05]},
    "03-tuning-a-canary.ipynb": {
        "steps": [2],
        "first_weights": [5],
        "pauses": ["5m", "10m"],
        "first_stage": 10,
        "max_observations": 160,  # fewer cannot show the budget constraint met at 95 %
        "replications": 8,
    },
    "04-from-manifest-to-verdict.ipynb": {"replications": 12},
    "05-where-the-answer-changes.ipynb": {"replications": 6, "error_rates": [0.002, 0.05]},
    "06-from-telemetry-to-verdict.ipynb": {"replications": 8},
}

# What each run must show, whatever its parameters: text in its outputs, and figures.
EXPECT: dict[str, tuple[list[str], int]] = {
    "01-quickstart.ipynb": (["excess bad requests", "What we learned"], 3),
    "02-canary-vs-blue-green.ipynb": (["rollback tail", "What we learned"], 4),
    "03-tuning-a-canary.ipynb": (["kind: Rollout", "What we learned"], 2),
    "04-from-manifest-to-verdict.ipynb": (
        ["setWeight 10 really sends 33.3 % of traffic", "kind: Rollout", "What we learned"],
        2,
    ),
    "05-where-the-answer-changes.ipynb": (
        ["is the safest", "key difference", "What we learned"],
        2,
    ),
    "06-from-telemetry-to-verdict.ipynb": (["excess bad requests", "What we learned"], 2),
}


def notebook_names() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def code_digest(nb) -> str:
    """A digest of the code cells' sources (injected parameters excluded)."""
    sources = [
        c.source
        for c in nb.cells
        if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
    ]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def inject(nb, parameters: dict):
    """A copy of ``nb`` with ``parameters`` set in a cell right after the ``parameters`` cell."""
    nb = copy.deepcopy(nb)
    where = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(where) == 1, "a notebook has exactly one cell tagged 'parameters'"
    lines = ["# Parameters injected for this run"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(where[0] + 1, cell)
    return nb


def execute(nb, cwd: Path, timeout: int = 300):
    """Run every cell in a fresh kernel with ``cwd`` as working directory; raise on an error."""
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def outputs(nb) -> tuple[str, int, list[str]]:
    """All text the notebook showed, the number of figures, and any stderr text."""
    text, images, stderr = [], 0, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                (stderr if out.name == "stderr" else text).append(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                data = out.get("data", {})
                images += "image/png" in data
                text.append(data.get("text/plain", "") + data.get("text/markdown", ""))
                text.append(data.get("text/html", ""))
            elif out.output_type == "error":
                stderr.append("\n".join(out.traceback))
    return "\n".join(text), images, stderr


def refresh(path: Path) -> None:
    """Execute ``path`` with its own parameters from notebooks/ and save it with its outputs."""
    nb = nbformat.read(path, as_version=4)
    execute(nb, path.parent, timeout=600)
    nb.metadata[STAMP] = {"code_sha256": code_digest(nb)}
    nbformat.validate(nb)
    nbformat.write(nb, path)


# ---------------------------------------------------------------------------------------- tests


def test_every_notebook_is_tested_and_linked_from_the_readme():
    names = notebook_names()
    assert names == sorted(SMALL)
    readme = (NOTEBOOKS / "README.md").read_text()
    for name in names:
        assert f"]({name})" in readme, f"notebooks/README.md does not link {name}"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs(name, tmp_path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    uses_project = "project =" in tagged.source  # the repository root, for the data files
    params = ({"project": str(ROOT)} if uses_project else {}) | SMALL[name]
    ran = execute(inject(nb, params), tmp_path)
    text, images, stderr = outputs(ran)
    must, figures = EXPECT[name]
    for needle in must:
        assert needle in text, f"{name}: {needle!r} missing from its outputs"
    assert images >= figures, f"{name}: {images} figures, expected at least {figures}"
    assert not stderr, f"{name} wrote to stderr:\n" + "\n".join(stderr)[:2000]
    assert not list(tmp_path.iterdir()), f"{name} left files in its working directory"
    if name.startswith("04"):  # the simulated traffic agrees with explain's third
        share = re.search(r"setWeight 10: simulated canary share .* (\d+\.\d) % of requests", text)
        assert share and 30.0 <= float(share[1]) <= 37.0, share


@pytest.mark.parametrize("name", sorted(SMALL))
def test_committed_outputs_are_current(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    hint = f"re-execute it: .venv/bin/python tests/test_notebooks.py {name[:2]}"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        f"{name}: not executed top to bottom in one run; {hint}"
    )
    assert nb.metadata.get(STAMP, {}).get("code_sha256") == code_digest(nb), (
        f"{name}: its code changed since its outputs were made; {hint}"
    )
    text, images, stderr = outputs(nb)
    assert not stderr, f"{name}: committed with an error or stderr output; {hint}"
    must, figures = EXPECT[name]
    assert images >= figures and all(n in text for n in must), f"{name}: outputs missing; {hint}"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"


if __name__ == "__main__":
    picked = [n for n in notebook_names() if not sys.argv[1:] or any(a in n for a in sys.argv[1:])]
    for name in picked:
        import time

        started = time.perf_counter()
        refresh(NOTEBOOKS / name)
        print(f"{name}: executed in {time.perf_counter() - started:.1f} s")
