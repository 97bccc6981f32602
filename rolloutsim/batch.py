"""``rolloutsim run`` and ``rolloutsim sweep``: scenario in, report folder out.

This is the one place that knows scenarios, the Monte Carlo runner and reports. Long runs keep
a checkpoint beside the output folder (``<out>.checkpoint``): ``--resume`` continues an
interrupted run without redoing finished chunks; the report folder itself is only ever written
whole (sim/report/write.py), and the checkpoint is removed once it is.
"""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path
from typing import Any

from policies.errors import PolicyError

__all__ = ["parse_params", "run_scenario", "sweep_scenario"]


def _checkpoint(out: Path, resume: bool) -> Path:
    path = out.with_name(out.name + ".checkpoint")
    if path.exists() and not resume:
        shutil.rmtree(path)  # a fresh run; --resume would have continued it
    return path


def _run(loaded, *, replications, seed, backend, workers, scheduler, progress, checkpoint):
    from sim.runs.runner import run

    scenario = loaded.scenario
    return run(
        loaded.world,
        loaded.policies,
        replications=scenario.replications if replications is None else replications,
        seed=scenario.seed if seed is None else seed,
        backend=backend or scenario.backend,
        workers=workers if workers is not None else scenario.workers,
        scheduler=scheduler or scenario.scheduler,
        progress=progress,
        checkpoint=checkpoint,
    )


def run_scenario(
    path: str,
    out: str | None = None,
    *,
    replications: int | None = None,
    seed: int | None = None,
    backend: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
) -> Path:
    """Run every policy of the scenario and write its report folder; returns the folder."""
    from sim.report.write import write_report
    from sim.runs.scenario import load_scenario

    loaded = load_scenario(path)
    out_dir = Path(out or Path("reports") / loaded.scenario.name)
    checkpoint = _checkpoint(out_dir, resume)
    progress = sys.stderr.isatty() if progress is None else progress
    result = _run(
        loaded,
        replications=replications,
        seed=seed,
        backend=backend,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        checkpoint=checkpoint,
    )
    folder = write_report(result, loaded, out_dir)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return folder


def parse_params(items: list[str]) -> dict[str, list[Any]]:
    """``["world.traffic.startAt=2h,14h", ...]`` -> {path: [values]} (YAML scalars)."""
    from policies.base import load_yaml

    grid: dict[str, list[Any]] = {}
    for item in items:
        path, sep, values = item.partition("=")
        if not sep or not path or not values:
            raise PolicyError(f"--param {item!r}: use PATH=VALUE[,VALUE...]")
        grid[path.strip()] = [load_yaml(v.strip()) for v in values.split(",")]
    return grid


def sweep_scenario(
    path: str,
    params: list[str],
    out: str | None = None,
    *,
    replications: int | None = None,
    seed: int | None = None,
    backend: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
) -> Path:
    """Run the scenario on every cell of a grid (its ``sweep:`` section and ``--param``s) and
    write one folder: ``sweep.csv`` (a row per cell and policy), ``results.parquet`` (every
    replication with its cell) and a report per cell under ``cells/``."""
    import pandas as pd

    from sim.report.write import write_report
    from sim.runs.files import atomic_write
    from sim.runs.scenario import load_scenario

    base = load_scenario(path)
    grid = dict(base.scenario.sweep) | parse_params(params)
    if not grid:
        raise PolicyError(f"{path}: nothing to sweep: add a `sweep:` section or --param")
    out_dir = Path(out or Path("reports") / f"{base.scenario.name}-sweep")
    progress = sys.stderr.isatty() if progress is None else progress
    frames, rows = [], []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        cell = dict(zip(keys, values))
        label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in cell.items())
        loaded = load_scenario(path, cell)
        cell_dir = out_dir / "cells" / _slug(label)
        result = _run(
            loaded,
            replications=replications,
            seed=seed,
            backend=backend,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            checkpoint=_checkpoint(cell_dir, resume),
        )
        write_report(result, loaded, cell_dir, traces=[])
        shutil.rmtree(cell_dir.with_name(cell_dir.name + ".checkpoint"), ignore_errors=True)
        frame = result.frame.assign(**{k: str(v) for k, v in cell.items()})
        frames.append(frame)
        mixture = result.summary().xs("mixture", level="release_class")
        for policy, row in mixture.iterrows():
            rows.append({**{k: str(v) for k, v in cell.items()}, "policy": policy, **row.to_dict()})
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    atomic_write(out_dir / "sweep.csv", lambda tmp: table.to_csv(tmp, index=False))
    combined = pd.concat(frames, ignore_index=True)
    atomic_write(out_dir / "results.parquet", lambda tmp: combined.to_parquet(tmp, index=False))
    return out_dir


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:80]
