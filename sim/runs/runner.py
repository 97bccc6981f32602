"""The Monte Carlo runner: every policy × release class × replication, on any backend (DESIGN §6).

Seeds are laid out so that numbers never depend on how the work is split: replication ``i`` of
release class ``c`` (its index in ``world.releases``) gets ``SeedSequence(seed, spawn_key=(c, i))``
under every policy — common random numbers, so paired comparisons are sharp — and the user
population is drawn once per run from ``SeedSequence(seed, spawn_key=(2**32 - 1,))``. Work is cut
into chunks of one (policy, class) and consecutive indices; every backend runs the same pure
function ``run_chunk`` on plain JSON-like arguments and the results are sorted by (policy, class,
index), so the in-process loop, the process pool and Dask give identical frames.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.base import validate_model
from policies.errors import PolicyError, RolloutsimError, one_line
from policies.loading import parse_policy
from sim.engine.outcome import OUTCOME_FIELDS, Outcome
from sim.engine.replication import Replication
from sim.engine.seeds import replication_key, shared_parts, world_seed
from sim.runs import pool
from sim.runs.budget import Budget, check, estimate, few_replications
from sim.runs.budget import counts as plan_counts
from sim.runs.budget import whole as _whole
from sim.runs.checkpoint import TYPES, Checkpoint
from sim.runs.files import atomic_write
from sim.runs.options import BACKENDS, DEFAULTS, ProgressLines, live_bar
from sim.runs.pool import shutdown
from sim.runs.provenance import package_version
from sim.world.model import World
from sim.world.plugins import check_step_plugins

__all__ = [
    "BACKENDS",
    "DEFAULT_CHUNK_SIZE",
    "Chunk",
    "RunResult",
    "compiled",
    "run",
    "run_chunk",
    "shutdown",
]

DEFAULT_CHUNK_SIZE = 50
"""Replications per task: enough to amortise pickling and scheduling, small enough to balance."""

_WORLDS = 1
"""Compiled worlds a process keeps: this run's only (user cells are ~40 B a user, and a warm
worker would hold them idle between runs; each tune stage and sweep cell is a new world)."""
_POLICY_CACHE = 64
_FIELD_TYPES = tuple(TYPES.items())
"""Each outcome field and its type, in field order (``Outcome.to_dict``'s, without the dict)."""
_FORMAT = 1


@dataclass(frozen=True, order=True)
class Chunk:
    """One task: replications ``start``..``stop - 1`` of one class under one policy."""

    policy_index: int
    class_index: int
    index: int
    start: int
    stop: int
    policy: str = field(compare=False)
    release_class: str = field(compare=False)

    def __len__(self) -> int:
        return self.stop - self.start


# ---------------------------------------------------------------------------- the worker side

_PREPARED: OrderedDict[str, tuple] = OrderedDict()
_POLICIES: OrderedDict[str, Any] = OrderedDict()
_LOCK = threading.Lock()


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _remember(cache: OrderedDict, key: str, build: Callable[[], Any], size: int) -> Any:
    with _LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = cache[key] = build()
        while len(cache) > size:
            cache.popitem(last=False)
        return value


def _prepared(world: dict, seed: int, shared: dict | None = None) -> tuple:
    """This process's compiled world and user cells for (world, seed): built once, then reused.
    ``shared``: the population already drawn in shared memory (``sim.runs.pool``), mapped."""

    def build() -> tuple:
        model = World.model_validate(world)
        if shared is not None:
            users = pool.users_of(shared)
        else:
            users = pool.shared_users(pool.users_key(world.get("users"), seed))
        cw, cells = shared_parts(model, seed, users)
        return cw, cells, tuple(model.releases)

    return _remember(_PREPARED, _digest({"world": world, "seed": seed}), build, _WORLDS)


def compiled(world: dict, seed: int) -> tuple:
    """The compiled world and user cells of run ``seed`` on ``world`` (a ``World.to_dict()``),
    as the runner built them: reused from this process's last runs (the report's reruns)."""
    cw, cells, _ = _prepared(world, seed)
    return cw, cells


def _share(world: World, world_json: dict, seed: int) -> dict:
    """The run's user population in shared memory, drawn here once (``sim.runs.pool``)."""
    key = pool.users_key(world_json.get("users"), seed)
    return pool.share_users(key, lambda: world.compile(world_seed(seed)).users)


def run_chunk(
    world: dict,
    seed: int,
    policy: dict,
    name: str,
    class_index: int,
    start: int,
    stop: int,
    shared: dict | None = None,
) -> list[dict]:
    """Replications ``start..stop-1`` of one class under one policy, as plain records.

    Pure: the same arguments give the same records in any process. A replication that raises
    becomes a record carrying its error; the others still run. ``shared``: the population in
    shared memory (the process backend: ``sim.runs.pool``), else drawn here.
    """
    cw, cells, releases = _prepared(world, seed, shared)
    pol = _remember(_POLICIES, _digest(policy), lambda: parse_policy(policy), _POLICY_CACHE)
    release = releases[class_index]
    records = []
    for i in range(start, stop):
        ss = replication_key(seed, class_index, i)  # (replication_seed's streams)
        try:
            rep = Replication(cw, cells, pol, release, ss, index=i, run_seed=seed, policy_name=name)
            out = rep.run()
        except Exception as exc:  # recorded, not raised: one bad draw must not sink the run
            out = Outcome(
                name, i, seed, release.name, release.is_bad, outcome="error", error=one_line(exc)
            )
        records.append({k: cast(getattr(out, k)) for k, cast in _FIELD_TYPES})
    return records


# ---------------------------------------------------------------------------- inputs


def _named_policies(policies) -> list[tuple[str, Any]]:
    items = policies.items() if isinstance(policies, Mapping) else [(None, p) for p in policies]
    named = []
    for i, (name, p) in enumerate(items):
        p = parse_policy(dict(p), path=f"policies[{i}]") if isinstance(p, Mapping) else p
        named.append((str(name or p.name), p))
    if not named:
        raise PolicyError("give at least one policy", path="policies")
    names = [n for n, _ in named]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PolicyError(
            f"policy names must be unique: {', '.join(dupes)} repeated", path="policies"
        )
    return named


def _plan(policies: Sequence[str], classes: Sequence[str], counts, size: int) -> list[Chunk]:
    return [
        Chunk(p, c, k, start, min(start + size, counts[cname]), pname, cname)
        for p, pname in enumerate(policies)
        for c, cname in enumerate(classes)
        for k, start in enumerate(range(0, counts[cname], size))
    ]


# ---------------------------------------------------------------------------- backends


def _n_workers(workers: int | None, n_tasks: int) -> int:
    if workers is None:  # the cores this process may use (cgroups, taskset), else all
        has = hasattr(os, "sched_getaffinity")
        workers = len(os.sched_getaffinity(0)) if has else (os.cpu_count() or 1)
    return max(1, min(workers, n_tasks))


def _inprocess(tasks, finished, *_) -> None:
    for chunk, args in tasks:
        finished(chunk, run_chunk(*args))


def _process(tasks, finished, workers, _scheduler, world, seed, _digest) -> None:
    from concurrent.futures import as_completed

    shared = _share(World.model_validate(world), world, seed)
    executor = pool.executor(_n_workers(workers, sys.maxsize))  # warm: reused run after run
    futures = {}
    call: Callable[..., list[dict]] = run_chunk  # typed loosely: submit takes *args
    try:
        for chunk, args in tasks:
            futures[executor.submit(call, *args, shared)] = chunk
        for future in as_completed(futures):
            finished(futures[future], future.result())
    except Exception:
        for future in futures:
            future.cancel()  # the chunks in hand finish; the pool stays warm
        raise
    except BaseException:  # an interruption (Ctrl-C, SIGTERM): stop the workers too
        pool.shutdown()
        raise


def _dask(tasks, finished, workers, scheduler, _world, _seed, digest) -> None:
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if isinstance(scheduler, Client):
        client = scheduler
    elif scheduler is not None:
        client = connect_scheduler(scheduler)
    else:
        options = {"dashboard_address": None, "silence_logs": logging.ERROR}
        n = _n_workers(workers, len(tasks))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **options)
        client = Client(cluster)
    futures = []
    try:
        by_key = {}
        for chunk, args in tasks:
            key = f"rolloutsim-{digest[:12]}-{chunk.policy_index}-{chunk.class_index}-{chunk.index}"
            future = client.submit(run_chunk, *args, key=key, pure=True)
            futures.append(future)
            by_key[future.key] = chunk
        for future in as_completed(futures):
            finished(by_key[future.key], future.result())
    finally:
        if futures:
            client.cancel(futures)
        if client is not scheduler:
            client.close()
        if cluster is not None:
            cluster.close()


_BACKENDS = {"inprocess": _inprocess, "process": _process, "dask": _dask}

SCHEDULER_TIMEOUT_S = 5.0
"""How long to try a Dask scheduler's address before giving up (distributed's default: 30 s)."""


def connect_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT_S):
    """A ``distributed.Client`` on ``address``, after saying on stderr what that trusts: Dask
    sends pickles both ways, so the scheduler and its workers can run code in this process. An
    address that does not answer within ``timeout`` is a one-line ``RolloutsimError``."""
    from distributed import Client  # heavy, and needed only when a scheduler is named

    print(
        f"rolloutsim: note: connecting to the Dask scheduler {address}: Dask exchanges pickles,"
        " so it and its workers can run code here; use only a scheduler you trust",
        file=sys.stderr,
    )
    try:
        return Client(address, timeout=timeout)
    except (ValueError, TypeError) as exc:  # an address distributed cannot parse
        raise PolicyError(
            f"{address!r} is not a scheduler address ({exc})", path="scheduler"
        ) from None
    except (OSError, TimeoutError):
        raise RolloutsimError(f"scheduler: no answer from {address} within {timeout:g} s") from None


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, done: int):
    """``advance(n)`` for the replications finished: a rich bar on stderr when it can be drawn
    live, plain lines otherwise (``sim.runs.options.ProgressLines``), nothing when disabled."""
    if not enabled:
        yield lambda n: None
        return
    if not live_bar():
        lines = ProgressLines(total, done)
        yield lines.advance
        lines.finish()  # not after an interruption: the exception leaves at the yield
        return
    import rich.progress as rp
    from rich.console import Console

    columns = (rp.TextColumn("replications"), rp.BarColumn(), rp.MofNCompleteColumn())
    console = Console(stderr=True)  # stdout is the verdict's
    bar = rp.Progress(*columns, rp.TimeElapsedColumn(), rp.TimeRemainingColumn(), console=console)
    with bar:
        task = bar.add_task("run", total=total, completed=done)
        yield lambda n: bar.advance(task, n)


# ---------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class RunResult:
    """One row per replication (``frame``) and the provenance to reproduce it."""

    frame: Any = field(repr=False)  # DataFrame: OUTCOME_FIELDS + weight (π_c / n_c)
    policies: tuple[str, ...]
    classes: tuple[str, ...]
    failed: int
    seed: int
    replications: dict[str, int]
    world: dict = field(repr=False)
    policy_specs: dict[str, dict] = field(repr=False)
    backend: str = "inprocess"
    wall_time_s: float = math.nan
    version: str = ""
    notes: tuple[str, ...] = ()  # for the report, like LoadedScenario.notes

    def summary(self, metrics=None, confidence: float = 0.95):
        """Per policy and class, plus the probability-weighted mixture (sim.runs.summary)."""
        from sim.runs.summary import DEFAULT_METRICS, summarize

        return summarize(self.frame, metrics or DEFAULT_METRICS, confidence)

    def compare(self, a: str, b: str, metric: str = "excess_bad_requests", confidence=0.95):
        """Paired differences b − a on common random numbers (sim.runs.summary.compare)."""
        from sim.runs.summary import compare

        return compare(self.frame, a, b, metric, confidence)

    def pareto(self, x: str = "rollout_duration", y: str = "excess_bad_requests"):
        from sim.runs.summary import pareto

        return pareto(self.frame, x, y)

    def provenance(self) -> dict:
        """What a report needs to say how these numbers were made (and to remake them)."""
        keys = ("world", "policy_specs", "seed", "replications", "backend", "wall_time_s")
        return {k: getattr(self, k) for k in (*keys, "version", "failed")}

    def to_parquet(self, path) -> None:
        """Write the frame atomically, with the provenance in the file's metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"rolloutsim"] = json.dumps(self.provenance()).encode()
        table = table.replace_schema_metadata(meta)
        atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))


# ---------------------------------------------------------------------------- run


def run(
    world,
    policies,
    *,
    replications: int | Mapping[str, int] = DEFAULTS.replications,
    seed: int = DEFAULTS.seed,
    backend: str = DEFAULTS.backend,
    workers: int | None = DEFAULTS.workers,
    scheduler=DEFAULTS.scheduler,
    progress: bool = DEFAULTS.progress,
    checkpoint: str | os.PathLike | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_chunk: Callable[[Chunk], Any] | None = None,
    budget: Budget | None = None,
) -> RunResult:
    """Run every policy on every release class, ``replications`` each, and collect outcomes.

    ``world``: a ``World`` (or its dict); ``policies``: policy objects (named by ``.name``) or a
    mapping name -> policy; ``replications``: per class, an int or {class: int}. ``backend``:
    "inprocess", "process" (this process's warm spawn pool of ``workers``, default all cores,
    reused by the next run: ``sim.runs.pool``; the users are drawn here once and shared) or "dask"
    (``scheduler``: an address or a ``Client``; default a LocalCluster of ``workers``). With
    ``checkpoint`` (a directory) finished chunks are kept and a rerun does only the rest.
    ``on_chunk(chunk)`` is called after each chunk is finished and saved. Before anything is
    planned or built the work and memory are estimated and a plan beyond ``budget`` (None:
    ``sim.runs.budget.DEFAULT_BUDGET``; ``Budget.unlimited()`` lifts it) is refused with a
    ``BudgetError``. The defaults are ``sim.runs.options.DEFAULTS``;
    ``RunOptions.run_kwargs()`` gives these keywords.
    """
    started = time.perf_counter()
    if backend not in BACKENDS:
        raise PolicyError(f"{backend!r} is not a backend ({', '.join(BACKENDS)})", path="backend")
    seed = _whole(seed, "seed", 0, 2**63)
    chunk_size = _whole(chunk_size, "chunk_size", 1)
    workers = workers if workers is None else _whole(workers, "workers", 1)
    model = world if isinstance(world, World) else validate_model(World, world, path="world")
    world_json = model.to_dict()
    named = _named_policies(policies)
    specs = {name: p.to_dict() for name, p in named}
    # every backend rebuilds from these dicts: they must rebuild the very same objects
    if World.model_validate(world_json) != model:
        raise RolloutsimError("the world does not survive its own to_dict(); cannot distribute it")
    for i, (name, p) in enumerate(named):
        if parse_policy(specs[name]) != p:
            raise RolloutsimError(f"policy {name!r} does not survive its own to_dict()")
        check_step_plugins(model.step_plugins, p, where=f"policies[{i}]")
    classes = model.releases.names
    counts = plan_counts(replications, classes)
    # priced before anything is planned or built: an absurd plan is refused in milliseconds (the
    # users are built once, whatever the workers)
    check(estimate(model, named, counts), budget)
    names = tuple(specs)
    version = package_version()
    inputs = {"format": _FORMAT, "rolloutsim": version, "world": world_json, "seed": seed}
    inputs |= {"policies": [[n, specs[n]] for n in names], "replications": counts}
    inputs["chunk_size"] = chunk_size
    digest = _digest(inputs)
    chunks = _plan(names, classes, counts, chunk_size)
    store = Checkpoint(checkpoint, {"digest": digest, **inputs}) if checkpoint else None
    loaded = {c: store.load(c) for c in chunks} if store is not None else {}
    done = {c: records for c, records in loaded.items() if records is not None}
    todo = [
        (c, (world_json, seed, specs[c.policy], c.policy, c.class_index, c.start, c.stop))
        for c in chunks
        if c not in done
    ]
    total = sum(len(c) for c in chunks)
    with _progress_bar(progress, total, sum(len(c) for c in done)) as advance:

        def finished(chunk: Chunk, records: list[dict]) -> None:
            done[chunk] = records
            if store is not None:
                store.save(chunk, records)
            advance(len(chunk))
            if on_chunk is not None:
                on_chunk(chunk)

        if todo:
            run_backend = _BACKENDS[backend]
            run_backend(todo, finished, workers, scheduler, world_json, seed, digest)
    frame = _frame([r for c in chunks for r in done[c]], model, counts)
    failed, wall = int((frame["error"] != "").sum()), time.perf_counter() - started
    args = (frame, names, classes, failed, seed, counts, world_json, specs, backend, wall)
    return RunResult(*args, version=version, notes=tuple(few_replications(counts)))


def _frame(records: list[dict], world: World, counts: dict[str, int]):
    import pandas as pd

    frame = pd.DataFrame.from_records(records, columns=list(OUTCOME_FIELDS))
    weight = {c.name: c.probability / counts[c.name] for c in world.releases}
    frame["weight"] = frame["release_class"].map(weight).astype(float)
    return frame
