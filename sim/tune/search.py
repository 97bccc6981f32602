"""``tune``: run the selection procedure (sim/tune/selection.py) on a search space
(sim/tune/space.py) through the Monte Carlo runner, and gather the evidence a report needs.

Observation = one replication of every release class (``perClass`` of each, ``batch`` of those
for quantile objectives), reduced to the stratified value Σ π_c·mean_c — an unbiased, i.i.d.
observation of the mixture a random release meets. Each block of observations is one
``sim.runs.runner.run`` call with the block's own seed (``_block_seed``): every candidate that draws
block r, whenever it does, meets the same releases, so paired differences keep their common
random numbers and the procedure's statements hold whatever order the racing chose. With a
checkpoint directory each call gets its own sub-directory, so an interrupted tune resumes: the
procedure is deterministic, replays the finished calls from disk and simulates only the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies.base import validate_model
from policies.errors import PolicyError, RolloutsimError
from sim.runs.files import atomic_write
from sim.runs.options import ProgressLines, RunOptions, live_bar
from sim.runs.summary import weighted_quantile
from sim.tune.objectives import stratum_weights
from sim.tune.selection import Observations, Selection, select
from sim.tune.space import Candidate, TuneSpec, candidates, expressible, parse_tune_spec
from sim.world.model import World

__all__ = ["TuneResult", "TuneScenario", "load_tune_scenario", "tune", "tune_inputs"]


@dataclass(frozen=True)
class TuneScenario:
    """A scenario file with a ``tune:`` section: the world, its policies (incumbents that
    compete too) and the tuning spec, plus the run options of the file."""

    name: str
    world: World
    spec: TuneSpec
    policies: dict[str, Any] = field(default_factory=dict)
    options: RunOptions = field(default_factory=RunOptions)  # seed, backend, workers, scheduler
    path: Path | None = None
    description: str = ""


def load_tune_scenario(path: str | Path, overrides: Mapping[str, Any] | None = None):
    """Read a scenario and validate its ``tune:`` section (one-line errors, as everywhere)."""
    from sim.runs.scenario import load_scenario

    path = Path(path)
    loaded = load_scenario(path, dict(overrides or {}))
    sc = loaded.scenario
    if not sc.tune:
        raise PolicyError("has no tune: section (the search space and the goal)", file=str(path))
    spec = parse_tune_spec(sc.tune, file=str(path))
    options = RunOptions.of(sc)
    return TuneScenario(
        sc.name, sc.world, spec, dict(loaded.policies), options, path, sc.description
    )


@dataclass(frozen=True, eq=False)
class TuneResult:
    """The recommendation, the evidence for it, and every replication that was simulated."""

    name: str
    spec: TuneSpec
    candidates: tuple[Candidate, ...]
    excluded: dict[str, str]  # name -> why it was not considered (not exportable)
    selection: Selection
    table: Any = field(repr=False)  # DataFrame, one row per candidate
    front: tuple[str, ...]
    frame: Any = field(repr=False)  # every replication, with phase, block and stage columns
    rows_per_observation: int
    replications_new: int
    seed: int
    backend: str
    world: dict = field(repr=False)
    wall_time_s: float = math.nan
    inputs: str = ""  # the digest of what determines the numbers (``tune_inputs``)

    @property
    def recommended(self) -> Candidate | None:
        chosen = self.selection.selected
        return next((c for c in self.candidates if c.name == chosen), None)

    @property
    def replications(self) -> int:
        """Simulated releases (replications) the tuner drew, over all candidates."""
        return len(self.frame)

    @property
    def exhaustive_replications(self) -> int:
        """An exhaustive grid at the recommendation's resolution (its screening + final n)."""
        return self.selection.exhaustive * self.rows_per_observation

    @property
    def one_shot_replications(self) -> int:
        """Procedure B on the whole grid at once (the same guarantee without screening)."""
        return self.selection.one_shot * self.rows_per_observation

    @property
    def exhaustive_final_replications(self) -> int:
        """Every candidate given the final stage's N (the grid at the finalists' resolution)."""
        return self.selection.exhaustive_final * self.rows_per_observation

    def fingerprint(self) -> str:
        """A hash of everything the seed determines (not the backend, not the wall time)."""
        h = hashlib.sha256()
        h.update(self.table.to_csv(index=False, float_format="%.12g").encode())
        h.update(self.frame.to_csv(index=False, float_format="%.12g").encode())
        h.update(json.dumps([s.__dict__ for s in self.selection.stages], default=list).encode())
        h.update(str(self.selection.selected).encode())
        return h.hexdigest()


# ---------------------------------------------------------------------------- tune


def _block_seed(seed: int, phase: str, block: int) -> int:
    digest = hashlib.sha256(f"rolloutsim-tune:{seed}:{phase}:{block}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


_KWARGS = {
    "objective": "objective",
    "constraints": "constraints",
    "confidence": "confidence",
    "indifference": "indifference",
    "first_stage": "firstStage",
    "max_observations": "maxObservations",
    "exportable_to": "exportableTo",
}


def _source(source) -> tuple[TuneScenario | None, World, Any, dict]:
    if isinstance(source, str | Path):
        source = load_tune_scenario(source)
    if isinstance(source, TuneScenario):
        return source, source.world, source.spec, source.policies
    world, space, *rest = source
    world = world if isinstance(world, World) else validate_model(World, world, path="world")
    return None, world, space, dict(rest[0]) if rest else {}


def tune(
    source,
    *,
    objective=None,
    constraints=None,
    indifference: float | None = None,
    confidence: float | None = None,
    backend: str | None = None,
    workers: int | None = None,
    scheduler=None,
    seed: int | None = None,
    checkpoint: str | Path | None = None,
    exportable_to: str | None = None,
    progress: bool | None = None,
    first_stage: int | None = None,
    max_observations: int | None = None,
    on_chunk: Callable[[Any], Any] | None = None,
    inprocess_below: int = 2000,
    options: RunOptions | None = None,
) -> TuneResult:
    """Find the best feasible candidate of a search space, with the guarantee of
    ``sim.tune.selection`` (P(meets every constraint and within ``indifference`` of the best that
    meets them with margin) ≥ ``confidence``).

    ``source``: a ``TuneScenario`` or its path (``tune:`` gives every default), or
    ``(world, spec_or_spaces[, incumbent policies])``. Keyword arguments override the spec;
    ``exportable_to`` keeps only candidates that executor can express. ``seed``, ``backend``,
    ``workers``, ``scheduler`` and ``progress`` are run options (sim/runs/options.py): a keyword
    given here over ``options`` over the scenario file over ``DEFAULTS`` (``replications`` and
    ``resume`` do not apply: the procedure sizes its stages, and ``checkpoint`` is a directory
    that makes an interrupted tune resume where it stopped). ``on_chunk`` goes to
    ``sim.runs.runner.run``. With the process backend, a stage of fewer than
    ``inprocess_below`` replications runs in this process while no pool is warm (a spawn pool
    costs seconds to start, once: every later stage takes the warm one, ``sim.runs.pool``; the
    runner gives the same numbers either way).
    """
    started = time.perf_counter()
    scenario, world, spec, incumbents = _source(source)
    spec = _spec(spec, {k: v for k, v in locals().items() if k in _KWARGS and v is not None})
    given = {"seed": seed, "backend": backend, "workers": workers, "scheduler": scheduler}
    layer = RunOptions(**given, progress=progress).over(options)
    opts = layer.resolve(scenario.options if scenario else None)
    seed, backend, workers, scheduler = opts.seed, opts.backend, opts.workers, opts.scheduler
    pool, excluded = _pool(spec, incumbents)
    sampler = _Sampler(world, spec, {c.name: c for c in pool}, seed, checkpoint, on_chunk)
    sampler.run_args = {"backend": backend, "workers": workers, "progress": opts.progress}
    sampler.inline = inprocess_below if backend == "process" else 0
    if opts.progress and not live_bar():  # a log: one stream of lines for the whole search
        sampler.run_args["progress"], sampler.lines = False, ProgressLines(label="tune")
    data, digest = _inputs(world, spec, pool, seed)
    if checkpoint is not None:
        _manifest(Path(checkpoint), data, digest)
    with _dask_client(backend, scheduler, workers) as client:
        sampler.run_args["scheduler"] = client
        selection = select(
            [c.name for c in pool],
            sampler,
            delta=spec.indifference,
            confidence=spec.confidence,
            constraints=sampler.checks,
            n0=spec.first_stage,
            max_observations=spec.max_observations,
        )
    import pandas as pd

    frame = pd.concat(sampler.frames, ignore_index=True) if sampler.frames else pd.DataFrame()
    table, front = _table(pool, selection, sampler, world, frame)
    name = scenario.name if scenario else "tune"
    wall = time.perf_counter() - started
    parts = (name, spec, tuple(pool), excluded, selection, table, front, frame, sampler.rows)
    if sampler.lines is not None:
        stages = f" over {len(selection.stages)} stages"
        sampler.lines.summary(sampler.fresh, wall, stages, label="tune")
    return TuneResult(*parts, sampler.fresh, seed, backend, world.to_dict(), wall, digest)


def _pool(spec: TuneSpec, incumbents) -> tuple[list[Candidate], dict[str, str]]:
    """The candidates of the space (and the incumbents), and those the executor of
    ``exportableTo`` cannot express (name -> why)."""
    pool = list(candidates(spec, incumbents))
    excluded = {}
    if spec.exportable_to:
        for c in pool:
            why = expressible(c.policy, spec.exportable_to)
            if why is not None:
                excluded[c.name] = why
        pool = [c for c in pool if c.name not in excluded]
        if not pool:
            raise PolicyError(f"no candidate of the space is expressible by {spec.exportable_to}")
    return pool, excluded


def tune_inputs(source, *, seed: int | None = None, exportable_to: str | None = None) -> str:
    """The digest of everything that determines a tune's numbers (``TuneResult.inputs``, the
    checkpoint's manifest), without tuning: ``source``, ``seed`` and ``exportable_to`` as in
    ``tune``."""
    scenario, world, spec, incumbents = _source(source)
    spec = _spec(spec, {"exportable_to": exportable_to} if exportable_to else {})
    seed = RunOptions(seed=seed).resolve(scenario.options if scenario else None).seed
    return _inputs(world, spec, _pool(spec, incumbents)[0], seed)[1]


def _spec(spec, overrides: dict) -> TuneSpec:
    if not isinstance(spec, TuneSpec):
        if isinstance(spec, Mapping):
            spec = dict(spec)
        else:  # a sequence of spaces: the rest must come as keyword arguments
            spec = {"space": list(spec), "indifference": overrides.get("indifference", 1.0)}
        spec = parse_tune_spec(spec)
    if not overrides:
        return spec
    data = spec.model_dump(by_alias=True, exclude_defaults=True)
    for key, value in overrides.items():
        data.pop(key, None)
        data[_KWARGS[key]] = value
    return parse_tune_spec(data)


@contextlib.contextmanager
def _dask_client(backend: str, scheduler, workers):
    """One Dask client for the whole tune (the runner would start a cluster per call)."""
    if backend != "dask":
        yield scheduler
        return
    import logging

    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None:
        from sim.runs.runner import connect_scheduler  # says what a scheduler is trusted with

        with connect_scheduler(scheduler) as client:
            yield client
        return
    import os

    n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    options = {"dashboard_address": None, "silence_logs": logging.ERROR}
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **options)
    with cluster, Client(cluster) as client:
        yield client


def _inputs(world: World, spec: TuneSpec, pool, seed: int) -> tuple[dict, str]:
    data: dict[str, Any] = {"world": world.to_dict()}
    data |= {"tune": spec.model_dump(mode="json", by_alias=True)}
    data |= {"candidates": [c.name for c in pool], "seed": seed}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return data, digest


def _manifest(root: Path, data: dict, digest: str) -> None:
    """Refuse to resume a tune with other inputs (each stage's run checks its own, too)."""
    path = root / "tune-manifest.json"
    if path.exists():
        if json.loads(path.read_text()).get("digest") != digest:
            raise PolicyError(
                "this checkpoint was made for another tune (world, space, goal or seed differ);"
                " resume with the same inputs or use a new directory",
                file=str(path),
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps({"digest": digest, **data})))


class _Sampler:
    """The procedure's sampler: one ``run`` per (block, candidates) asked."""

    def __init__(self, world, spec: TuneSpec, pool: dict[str, Candidate], seed, ckpt, hook):
        self.world, self.spec, self.pool, self.seed, self.hook = world, spec, pool, seed, hook
        self.ckpt = Path(ckpt) if ckpt is not None else None
        classes = world.releases.names
        per = spec.per_class or {}
        unknown = sorted(set(per) - set(classes))
        if unknown:
            raise PolicyError(f"names unknown release class {unknown[0]!r}", path="tune.perClass")
        self.rows_of = {c: spec.objective.units * int(per.get(c, 1)) for c in classes}
        self.rows = sum(self.rows_of.values())
        self.obj_w = stratum_weights(world, spec.objective.releases)
        replicas = world.platform.replicas or 10
        self.checks = [c.check(world, replicas, i) for i, c in enumerate(spec.constraints)]
        self.con_w = [stratum_weights(world, c.releases) for c in spec.constraints]
        self.frames: list = []
        self.obs: dict[str, list[np.ndarray]] = {n: [] for n in pool}
        self.fresh, self.inline = 0, 0
        self.run_args: dict[str, Any] = {}
        self.lines: ProgressLines | None = None  # progress as lines: see tune()

    def _counted(self, chunk) -> None:
        self.fresh += len(chunk)
        if self.lines is not None:
            self.lines.advance(len(chunk))
        if self.hook is not None:
            self.hook(chunk)

    def __call__(self, phase: str, block: int, names: Sequence[str], size: int):
        from sim.runs import pool
        from sim.runs.runner import run

        stage = len(self.frames)
        where = None
        if self.ckpt is not None:
            where = self.ckpt / f"stage-{stage:03d}-{phase}-{block}"
        args = dict(self.run_args)
        if self.lines is not None:
            label = f"tune stage {stage + 1} ({phase} block {block}, {len(names)} candidates)"
            self.lines.start(size * self.rows * len(names), label=label)
        if size * self.rows * len(names) < self.inline and not pool.is_warm():
            args["backend"] = "inprocess"
        result = run(
            self.world,
            {n: self.pool[n].policy for n in names},
            replications={c: size * k for c, k in self.rows_of.items()},
            seed=_block_seed(self.seed, phase, block),
            checkpoint=where,
            on_chunk=self._counted,
            **args,
        )
        if result.failed:
            bad = result.frame[result.frame["error"] != ""].iloc[0]
            raise RolloutsimError(
                f"{bad['policy']}: replication {bad['replication']} of {bad['release_class']}"
                f" failed: {bad['error']}"
            )
        frame = result.frame.assign(phase=phase, block=block, stage=stage)
        self.frames.append(frame)
        out = {}
        for name, rows in frame.groupby("policy", sort=False):
            o = self._observe(rows, size)
            self.obs[name].append(o.objective)
            out[name] = o
        return out

    def _observe(self, rows, size: int) -> Observations:
        by_class = {c: rows[rows["release_class"] == c] for c in self.rows_of}
        obj = self.spec.objective
        if obj.statistic == "mean":
            y = np.zeros(size)
            for c, w in self.obj_w.items():
                y += w * by_class[c][obj.metric].to_numpy(float).reshape(size, -1).mean(axis=1)
        else:  # the quantile of each observation's batch, rows weighted π_c / rows of c
            q = float(obj.statistic[1:]) / 100
            parts = [by_class[c][obj.metric].to_numpy(float).reshape(size, -1) for c in self.obj_w]
            weights = np.concatenate(
                [np.full(x.shape[1], w / x.shape[1]) for x, w in zip(parts, self.obj_w.values())]
            )
            batches = (np.concatenate([x[o] for x in parts]) for o in range(size))
            y = np.array([weighted_quantile(batch, weights, q) for batch in batches])
        cons = np.zeros((size, len(self.checks)))
        for j, (con, check) in enumerate(zip(self.spec.constraints, self.checks)):
            for c, w in self.con_w[j].items():
                v = con.values(by_class[c], check.upper).reshape(size, -1).mean(axis=1)
                cons[:, j] += w * v
        return Observations(y, cons)


def _table(pool, selection: Selection, sampler: _Sampler, world: World, frame):
    """One row per candidate: knobs, verdict, estimates; and the Pareto front of rollout time
    (good releases, mean when promoted) against the objective's estimate."""
    import pandas as pd
    from scipy import stats

    good = {c.name: c.probability for c in world.releases if not c.is_bad}
    rows = []
    for cand in pool:
        rec = selection.records[cand.name]
        y = np.concatenate(sampler.obs[cand.name]) if sampler.obs[cand.name] else np.empty(0)
        half = math.nan
        if y.size > 1:
            half = float(stats.t.ppf(0.975, y.size - 1) * y.std(ddof=1) / math.sqrt(y.size))
        row = {"candidate": cand.name, "family": cand.family, **cand.params}
        row |= {"status": rec.status, "reason": rec.reason, "n_screen": rec.n_screen}
        row |= {"n_select": rec.n_select, "objective": float(y.mean()) if y.size else math.nan}
        row["objective_ci"] = half
        row |= _rollout(frame, cand.name, good)
        for check in sampler.checks:
            lo, hi = rec.bounds.get(check.name, (math.nan, math.nan))
            row[f"{check.name} [low]"], row[f"{check.name} [high]"] = lo, hi
        rows.append(row)
    table = pd.DataFrame(rows)
    pts = table.dropna(subset=["rollout_time", "objective"])
    front = []
    for _, r in pts.iterrows():
        better = (pts["rollout_time"] <= r.rollout_time) & (pts["objective"] <= r.objective)
        strictly = (pts["rollout_time"] < r.rollout_time) | (pts["objective"] < r.objective)
        if not (better & strictly).any():
            front.append(r.candidate)
    table["on_front"] = table["candidate"].isin(front)
    order = pts[pts["candidate"].isin(front)].sort_values(["rollout_time", "objective"])
    return table, tuple(order["candidate"])


def _rollout(frame, name: str, good: dict[str, float]) -> dict[str, float]:
    if frame.empty or not good:
        return {"rollout_time": math.nan, "rollout_p95": math.nan}
    rows = frame[(frame["policy"] == name) & frame["release_class"].isin(list(good))]
    means, weights, values, w_rows = [], [], [], []
    for cls, part in rows.groupby("release_class"):
        x = part["rollout_duration"].to_numpy(float)
        done = x[~np.isnan(x)]
        if done.size:
            means.append(done.mean())
            weights.append(good[cls])
        values.append(np.where(np.isnan(x), np.inf, x))
        w_rows.append(np.full(x.size, good[cls] / max(x.size, 1)))
    mean = float(np.average(means, weights=weights)) if means else math.nan
    p95 = math.nan
    if values:
        p95 = weighted_quantile(np.concatenate(values), np.concatenate(w_rows), 0.95)
    return {"rollout_time": mean, "rollout_p95": p95}
