"""A scenario run into its report folder, and a sweep: that run on every cell of a grid (DESIGN §6).

A cell is the scenario file with some dotted paths set (``world.traffic.startAt: 2h``,
``policies[1].steps[0].setWeight: 10``) and is loaded like the file itself
(``load_scenario(path, cell)``), so a cell is validated as strictly as a file and a typo in a
path is a one-line error. The grid is the scenario's ``sweep:`` section and the caller's
``params`` (which win on a path both give), crossed in that order.

Every cell is one ``sim.runs.runner.run`` with the options ``RunOptions.resolve`` gives for
that cell (a cell may set ``seed`` or ``replications`` itself). With an output folder each run
keeps a checkpoint beside its report folder (``<folder>.checkpoint``): ``resume`` continues an
interrupted run without redoing its finished chunks, the report folder is only ever written
whole (sim/report/write.py), and the checkpoint is removed once it is. The folder is checked
before the run (``sim.runs.files.check_output``) and locked while the run writes it and its
checkpoint (``<folder>.lock``), so a second run on it is refused instead of deleting the
first one's checkpoint. Each cell's folder has a unique readable name (``cell_names``).

A sweep's ``resume`` redoes no finished cell (DESIGN §6): a cell whose folder holds a whole
report made from this very cell (the digest of its world, policies and seed, its replications
and the rolloutsim version, as written in its results.parquet and scenario.resolved.yaml) is
read back from its results.parquet instead of simulated (``finished_cell``). Every cell runs
with the same seed unless it sets one, so cells share their random numbers: replication ``i``
of a release class meets the same draws in every cell (common random numbers across cells).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.errors import PolicyError
from sim.runs.files import atomic_write, check_name, check_output, inside, output_lock
from sim.runs.options import RunOptions, checkpoint_beside
from sim.runs.provenance import package_version, run_digest
from sim.runs.scenario import as_loaded

__all__ = [
    "SweptCell",
    "cell_names",
    "cells",
    "check_names",
    "finished_cell",
    "parse_params",
    "read_result",
    "run_scenario",
    "sweep",
    "sweep_grid",
]


def run_scenario(scenario, options: RunOptions | None = None, out=None, *, traces=None):
    """Run every policy of a scenario (its path or a ``LoadedScenario``) and return the
    ``RunResult``; with ``out`` also write its report folder there (``traces`` as in
    ``sim.report.write.write_report``: None reruns example timelines, [] leaves them out).

    The results are written before the report is drawn; a report with a part that could not be
    drawn raises ``sim.report.write.ReportIncomplete`` after everything else is written."""
    from sim.runs.runner import run

    loaded = as_loaded(scenario)
    opts = (options or RunOptions()).resolve(loaded)
    if out is None:
        return _run_in_file(run, loaded, opts)
    check_output(out, "report")  # before any work: a bad target is refused, not found at the end
    with output_lock(out):
        checkpoint = checkpoint_beside(out, opts.resume)
        result = _run_in_file(run, loaded, opts, checkpoint=checkpoint)
        from sim.report.write import ReportIncomplete, write_report

        try:
            write_report(result, loaded, out, traces=traces)
        except ReportIncomplete as exc:  # the results are on disk: the checkpoint is done
            shutil.rmtree(checkpoint, ignore_errors=True)
            exc.result = result
            raise
        shutil.rmtree(checkpoint, ignore_errors=True)
    return result


def _run_in_file(run, loaded, opts, **more):
    """``run`` on a loaded scenario; a plan over budget names the scenario's file."""
    from sim.runs.budget import BudgetError

    try:
        return run(loaded.world, loaded.policies, **opts.run_kwargs(), **more)
    except BudgetError as exc:
        raise exc.with_file(str(loaded.path)) if loaded.path else exc from None


def check_names(loaded):
    """``loaded`` (a ``LoadedScenario``) if its name and its policies' names are Kubernetes
    names (``sim.runs.files.check_name``: they become folders and manifests), else one line."""
    where = str(loaded.path) if loaded.path is not None else None
    check_name(loaded.scenario.name, "name", file=where)
    for i, name in enumerate(loaded.policies):
        check_name(name, f"policies[{i}].name", file=where)
    return loaded


def parse_params(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["world.traffic.startAt=2h,14h", ...]`` -> {path: [values]} (YAML scalars)."""
    from policies.base import load_yaml

    grid: dict[str, list[Any]] = {}
    for item in items:
        path, sep, values = item.partition("=")
        if not sep or not path or not values:
            raise PolicyError(f"--param {item!r}: use PATH=VALUE[,VALUE...]")
        grid[path.strip()] = [load_yaml(v.strip()) for v in values.split(",")]
    return grid


def sweep_grid(scenario, params=None) -> dict[str, list[Any]]:
    """The grid of a ``LoadedScenario``: its ``sweep:`` section, then ``params`` (a mapping
    path -> values, or ``"PATH=V1,V2"`` strings), which win on a path both give."""
    if params is None:
        given = {}
    elif isinstance(params, Mapping):
        given = {k: list(v) if isinstance(v, list | tuple) else [v] for k, v in params.items()}
    else:
        given = parse_params([params] if isinstance(params, str) else params)
    grid = dict(scenario.scenario.sweep) | given
    where = str(scenario.path) if scenario.path is not None else None
    if not grid:
        raise PolicyError("nothing to sweep: add a `sweep:` section or --param", file=where)
    for path, values in grid.items():
        if not values:
            raise PolicyError("no values to sweep", path=f"sweep: {path}", file=where)
    return grid


def cells(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, {path: value}, the last path varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def sweep(
    scenario,
    params=None,
    options: RunOptions | None = None,
    out=None,
    *,
    on_cell=None,
    by_class: bool = False,
):
    """Run a scenario (its path or a ``LoadedScenario``) on every cell of its grid and return a
    DataFrame with one row per cell and policy: the swept values (a column per dotted path),
    ``policy``, then the mixture's summary (sim.runs.summary: mean, CI, quantiles per metric).
    ``by_class``: a row per cell, policy and release class instead, the mixture among them
    (a ``release_class`` column after ``policy``), as ``RunResult.summary()`` gives them;
    ``sweep.csv`` keeps the mixture's rows.

    ``params``: paths and values added to the scenario's ``sweep:`` section (``sweep_grid``);
    ``options``: ``RunOptions`` over each cell's own (``RunOptions.resolve``). With ``out`` (a
    folder) also write ``sweep.csv`` (this table, values as text), ``results.parquet`` (every
    replication, with its cell's values as text columns), each cell's report under ``cells/``
    (each run with its checkpoint) and the sweep's own report (sim/report/sweep_report.py:
    report.html, report.md, figures/). ``options.resume`` reads back every finished cell
    (``finished_cell``) and continues an interrupted one from its checkpoint. ``on_cell(i, n,
    name, reused)`` is called as each cell is done. A cell or sweep report that could not be
    drawn whole does not stop the sweep: once every file is written, ``ReportIncomplete`` names
    what is missing (its ``result`` is this table).
    """
    import pandas as pd

    from sim.report.write import ReportIncomplete

    base = as_loaded(scenario)
    if base.path is None:
        raise PolicyError("a sweep needs a scenario loaded from a file (its cells are reloaded)")
    grid = sweep_grid(base, params)
    if out is None:
        return _sweep(base, grid, options, None, on_cell, by_class)[0]
    out_dir = check_output(out, "sweep")
    with output_lock(out_dir):
        if not (options or RunOptions()).resume:  # a fresh sweep: no cell of an earlier grid
            shutil.rmtree(out_dir / "cells", ignore_errors=True)
        table, done, texts, incomplete = _sweep(base, grid, options, out_dir, on_cell, by_class)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = pd.DataFrame(texts)
        atomic_write(out_dir / "sweep.csv", lambda tmp: written.to_csv(tmp, index=False))
        combined = pd.concat(
            [c.result.frame.assign(**_swept_columns(c.result.frame, c.values)) for c in done],
            ignore_index=True,
        )
        atomic_write(out_dir / "results.parquet", lambda tmp: combined.to_parquet(tmp, index=False))
        problems = [(f"cells/{exc.folder.name}", str(exc)) for exc in incomplete]
        from sim.report.sweep_report import write_sweep_report

        problems += write_sweep_report(base, grid, done, out_dir)
    if problems:
        raise ReportIncomplete(out_dir, problems, result=table)
    return table


def _sweep(base, grid, options, out_dir: Path | None, on_cell=None, by_class: bool = False):
    """Run (or read back) every cell: (table, the cells as ``SweptCell``, text rows (the
    mixture's, for sweep.csv), ``ReportIncomplete`` of the cells whose report could not be
    drawn whole)."""
    import pandas as pd

    from sim.report.write import ReportIncomplete
    from sim.runs.scenario import load_scenario

    done, rows, texts = [], [], []
    incomplete: list = []
    all_cells = cells(grid)
    names = cell_names(all_cells)
    loads = [load_scenario(base.path, cell) for cell in all_cells]
    if out_dir is not None and (options or RunOptions()).resume:
        _refuse_other_inputs(loads, names, options, out_dir)
    for i, (cell, name, loaded) in enumerate(zip(all_cells, names, loads)):
        text = {k: str(v) for k, v in cell.items()}
        cell_dir = None if out_dir is None else inside(out_dir, "cells", name)
        opts = (options or RunOptions()).resolve(loaded)
        result = None
        if cell_dir is not None and opts.resume:
            try:
                result = finished_cell(loaded, opts, cell_dir)
            except ReportIncomplete as exc:  # read back, but its report is still not whole
                incomplete.append(exc)
                result = exc.result
        reused = result is not None
        if result is None:
            try:
                result = run_scenario(loaded, options, cell_dir, traces=[])
            except ReportIncomplete as exc:  # its results are written: go on with the others
                incomplete.append(exc)
                result = exc.result
        done.append(SweptCell(dict(cell), name, result, reused))
        if on_cell is not None:
            on_cell(i, len(all_cells), name, reused)
        summary = result.summary()
        for policy, row in summary.xs("mixture", level="release_class").iterrows():
            texts.append({**text, "policy": policy, **row.to_dict()})
            if not by_class:
                rows.append({**cell, "policy": policy, **row.to_dict()})
        for (policy, release_class), row in summary.iterrows() if by_class else ():
            rows.append({**cell, "policy": policy, "release_class": release_class, **row.to_dict()})
    return pd.DataFrame(rows), done, texts, incomplete


def _swept_columns(frame, values: dict[str, Any]) -> dict[str, str]:
    """A cell's values as text columns beside its replications; a path that names one of their
    columns (``seed``) is written as ``swept:seed`` so the replication's own is kept."""
    return {(f"swept:{k}" if k in frame.columns else k): str(v) for k, v in values.items()}


@dataclass(frozen=True)
class SweptCell:
    """One cell of a sweep: its values {path: value}, its folder name under ``cells/``, its
    ``RunResult``, and whether it was read back from an earlier run instead of simulated."""

    values: dict[str, Any]
    name: str
    result: Any = field(repr=False)
    reused: bool = False


# ---------------------------------------------------------------------------- resume


def _refuse_other_inputs(loads, names, options, out_dir: Path) -> None:
    """Before any cell runs: a resumed sweep whose finished cell was made from other inputs
    (another seed, replications, world) is refused, as ``run --resume`` refuses such a report,
    instead of replacing it cell by cell."""
    from sim.runs.files import OutputRefused

    for loaded, name in zip(loads, names):
        folder = out_dir / "cells" / name
        if checkpoint_beside(folder, True).exists():
            continue  # an interrupted cell: its checkpoint continues it (or says it differs)
        differ = differences(loaded, (options or RunOptions()).resolve(loaded), folder)
        if differ:
            raise OutputRefused(
                f"cells/{name} holds a finished cell of other inputs ({', '.join(differ)}"
                " differ): --resume continues only the same sweep; give --overwrite instead to"
                " start over",
                file=str(out_dir),
            )


def differences(loaded, opts, folder: Path) -> list[str]:
    """What differs between the run whose results.parquet is in ``folder`` and this one (a
    ``LoadedScenario`` with resolved options): world, policies, seed, replications."""
    from sim.runs.budget import counts

    try:
        earlier = read_result(folder / "results.parquet")
    except Exception:  # none, or unreadable: nothing to protect
        return []
    now = {
        "world": loaded.world.to_dict(),
        "policies": {name: p.to_dict() for name, p in loaded.policies.items()},
        "seed": int(opts.seed),
        "replications": counts(opts.replications, loaded.world.releases.names),
    }
    then = {
        "world": earlier.world,
        "policies": earlier.policy_specs,
        "seed": earlier.seed,
        "replications": earlier.replications,
    }
    same = json.loads(json.dumps(now, default=str))
    return [k for k in now if same[k] != json.loads(json.dumps(then[k], default=str))]


def finished_cell(loaded, opts, cell_dir: Path):
    """The ``RunResult`` of a cell's earlier run, read back from its folder, or None to run it.

    Read back only when the folder holds every report file (``REPORT_FILES``) and its
    results.parquet and scenario.resolved.yaml were made from this very cell: the same digest of
    world, policies and seed (``opts.seed``), the same replications per class and the same
    rolloutsim version. Anything else (a missing, unreadable or other run's file) runs the cell
    again. A cell whose results are whole but whose report is not (it says so at its top) gets
    its report written again from them, and ``ReportIncomplete`` if it still cannot be drawn."""
    from sim.report.write import REPORT_FILES, write_report
    from sim.runs.budget import counts as plan_counts

    if not all((cell_dir / f).is_file() for f in REPORT_FILES):
        return None
    try:
        result = read_result(cell_dir / "results.parquet")
        resolved = (cell_dir / "scenario.resolved.yaml").read_text(encoding="utf-8")
        counts = plan_counts(opts.replications, loaded.world.releases.names)
    except Exception:  # unreadable or not ours: the cell is simply run again
        return None
    world = loaded.world.to_dict()
    specs = {name: p.to_dict() for name, p in loaded.policies.items()}
    expected = run_digest(world, specs, int(opts.seed))
    found = run_digest(result.world, result.policy_specs, result.seed)
    if (
        found != expected
        or f"\n# digest: {expected}\n" not in resolved
        or result.replications != counts
        or result.version != package_version()
    ):
        return None
    report = (cell_dir / "report.md").read_text(encoding="utf-8", errors="replace")
    if "**This report is incomplete.**" in report or "**This report could not be built**" in report:
        from sim.report.write import ReportIncomplete

        try:
            write_report(result, loaded, cell_dir, traces=[])
        except ReportIncomplete as exc:
            exc.result = result
            raise
    return result


def read_result(path: Path):
    """A ``RunResult`` from a results.parquet written by ``RunResult.to_parquet``: its frame and
    the provenance in the file's metadata (world, policies, seed, replications, version)."""
    import pyarrow.parquet as pq

    from sim.runs.budget import few_replications
    from sim.runs.runner import RunResult

    table = pq.read_table(path)
    prov = json.loads((table.schema.metadata or {})[b"rolloutsim"])
    frame = table.to_pandas()
    world = prov["world"]
    replications = {str(k): int(v) for k, v in prov["replications"].items()}
    return RunResult(
        frame,
        tuple(prov["policy_specs"]),
        tuple(r["name"] for r in world["releases"]),
        int(prov["failed"]),
        int(prov["seed"]),
        replications,
        world,
        prov["policy_specs"],
        backend=str(prov.get("backend", "")),
        wall_time_s=float(prov.get("wall_time_s", math.nan)),
        version=str(prov.get("version", "")),
        notes=tuple(few_replications(replications)),
    )


_CELL_NAME = 60
"""Longest readable part of a cell folder's name (then ``-`` and an 8-digit hash)."""


def cell_names(grid_cells: list[dict[str, Any]]) -> list[str]:
    """A unique, readable folder name per cell: ``rate=100,weight=5`` as it is when that is safe
    (only ``[A-Za-z0-9_.=,-]``, short) and unique; otherwise the readable part cut short, then
    ``-`` and a hash of the cell's full paths and values, so two cells never share a folder."""
    labels = [",".join(f"{k.split('.')[-1]}={v}" for k, v in cell.items()) for cell in grid_cells]
    slugs = [_slug(label) for label in labels]
    names = []
    for cell, label, slug in zip(grid_cells, labels, slugs):
        clean = slug == label and len(slug) <= _CELL_NAME and slugs.count(slug) == 1
        if not clean or slug.startswith("."):
            blob = json.dumps(cell, sort_keys=True, default=repr).encode()
            slug = f"{slug[:_CELL_NAME].strip('.')}-{hashlib.sha256(blob).hexdigest()[:8]}"
        names.append(slug)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):  # the same cell twice (--param x=1,1): number the repeats
        seen[name] = seen.get(name, 0) + 1
        if names.count(name) > 1:
            names[i] = f"{name}-{seen[name]}"
    return names


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,-]+", "_", text)
