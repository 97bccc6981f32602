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
import multiprocessing
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from policies.base import validate_model
from policies.errors import PolicyError, RolloutsimError
from policies.loading import parse_policy
from sim.engine.outcome import OUTCOME_FIELDS, Outcome
from sim.engine.replication import Replication
from sim.engine.seeds import WORLD_KEY, replication_seed, shared_parts
from sim.runs.files import atomic_write
from sim.runs.options import BACKENDS, DEFAULTS
from sim.world.model import World

__all__ = ["BACKENDS", "DEFAULT_CHUNK_SIZE", "WORLD_KEY", "Chunk", "RunResult", "run", "run_chunk"]

DEFAULT_CHUNK_SIZE = 50
"""Replications per task: enough to amortise pickling and scheduling, small enough to balance."""

_CACHE_SIZE = 4
_FORMAT = 1
_CASTS = {"int": int, "float": float, "bool": bool, "str": str}
_TYPES = {f.name: _CASTS[str(f.type)] for f in fields(Outcome)}


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


def _remember(cache: OrderedDict, key: str, build: Callable[[], Any]) -> Any:
    with _LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = cache[key] = build()
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
        return value


def _prepared(world: dict, seed: int) -> tuple:
    """This process's compiled world and user cells for (world, seed): built once, then reused."""

    def build() -> tuple:
        model = World.model_validate(world)
        cw, cells = shared_parts(model, seed)
        return cw, cells, tuple(model.releases)

    return _remember(_PREPARED, _digest({"world": world, "seed": seed}), build)


def _warm(world: dict, seed: int) -> None:
    """Process-pool initializer: compile the world while the other workers start."""
    _prepared(world, seed)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_chunk(
    world: dict, seed: int, policy: dict, name: str, class_index: int, start: int, stop: int
) -> list[dict]:
    """Replications ``start..stop-1`` of one class under one policy, as plain records.

    Pure: the same arguments give the same records in any process. A replication that raises
    becomes a record carrying its error; the others still run.
    """
    cw, cells, releases = _prepared(world, seed)
    pol = _remember(_POLICIES, _digest(policy), lambda: parse_policy(policy))
    release = releases[class_index]
    records = []
    for i in range(start, stop):
        ss = replication_seed(seed, class_index, i)
        try:
            rep = Replication(cw, cells, pol, release, ss, index=i, run_seed=seed, policy_name=name)
            out = rep.run()
        except Exception as exc:  # recorded, not raised: one bad draw must not sink the run
            out = Outcome(
                name, i, seed, release.name, release.is_bad, outcome="error", error=_one_line(exc)
            )
        records.append({k: _TYPES[k](v) for k, v in out.to_dict().items()})
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


def _whole(value, path: str, low: int, high: float = math.inf) -> int:
    whole = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not (whole and low <= value < high):
        bounds = f"[{low}, {high})" if math.isfinite(high) else f">= {low}"
        raise PolicyError(f"{value!r} is not a whole number {bounds}", path=path)
    return int(value)


def _counts(replications, classes: Sequence[str]) -> dict[str, int]:
    if isinstance(replications, Mapping):
        unknown = sorted(set(replications) - set(classes))
        missing = [c for c in classes if c not in replications]
        if unknown or missing:
            what = f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
            raise PolicyError(
                f"replications must name every release class ({', '.join(classes)}): {what}",
                path="replications",
            )
        counts = {c: replications[c] for c in classes}
    else:
        counts = dict.fromkeys(classes, replications)
    return {c: _whole(n, f"replications.{c}", 1) for c, n in counts.items()}


def _plan(policies: Sequence[str], classes: Sequence[str], counts, size: int) -> list[Chunk]:
    return [
        Chunk(p, c, k, start, min(start + size, counts[cname]), pname, cname)
        for p, pname in enumerate(policies)
        for c, cname in enumerate(classes)
        for k, start in enumerate(range(0, counts[cname], size))
    ]


# ---------------------------------------------------------------------------- checkpoints


class _Checkpoint:
    """A directory of finished chunks (one parquet file each, written atomically) + manifest."""

    def __init__(self, directory, manifest: dict) -> None:
        self.dir = Path(directory)
        self.chunks = self.dir / "chunks"
        path = self.dir / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("digest") != manifest["digest"]:
                diff = [k for k in manifest if k != "digest" and old.get(k) != manifest[k]]
                raise PolicyError(
                    f"this checkpoint was made for different inputs ({', '.join(diff) or 'format'}"
                    " differ); resume with the same world, policies, seed, replications and chunk"
                    " size, or use a new directory",
                    file=str(path),
                )
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
        self.chunks.mkdir(parents=True, exist_ok=True)

    def path(self, chunk: Chunk) -> Path:
        p, c = _slug(chunk.policy), _slug(chunk.release_class)
        name = f"{chunk.policy_index:03d}-{p}__{chunk.class_index:03d}-{c}__{chunk.index:05d}"
        return self.chunks / f"{name}.parquet"

    def load(self, chunk: Chunk) -> list[dict] | None:
        """The chunk's records if finished and intact, else None (it is run again)."""
        import pyarrow.parquet as pq

        path = self.path(chunk)
        if not path.exists():
            return None
        try:
            records = pq.read_table(path).to_pylist()
        except Exception:  # a damaged file is a missing chunk
            return None
        if [r.get("replication") for r in records] != list(range(chunk.start, chunk.stop)):
            return None
        if any(k not in records[0] for k in OUTCOME_FIELDS):
            return None  # written by a version with other outcome fields: run it again
        return [{k: _TYPES[k](r[k]) for k in OUTCOME_FIELDS} for r in records]

    def save(self, chunk: Chunk, records: list[dict]) -> None:
        if any(r["error"] for r in records):
            return  # not finished: a resume retries it
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(records, schema=_arrow_schema())
        atomic_write(self.path(chunk), lambda tmp: pq.write_table(table, tmp))


def _arrow_schema():
    import pyarrow as pa

    kinds = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
    return pa.schema([(name, kinds[_TYPES[name]]) for name in OUTCOME_FIELDS])


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40]


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
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # a spawn context for this pool only: no fork of a threaded parent, no process-wide change
    pool = ProcessPoolExecutor(
        max_workers=_n_workers(workers, len(tasks)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_warm,
        initargs=(world, seed),
    )
    try:
        futures = {pool.submit(run_chunk, *args): chunk for chunk, args in tasks}
        for future in as_completed(futures):
            finished(futures[future], future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dask(tasks, finished, workers, scheduler, _world, _seed, digest) -> None:
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if isinstance(scheduler, Client):
        client = scheduler
    elif scheduler is not None:
        client = Client(scheduler)
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


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, done: int):
    if not enabled:
        yield lambda n: None
        return
    import rich.progress as rp

    columns = (rp.TextColumn("replications"), rp.BarColumn(), rp.MofNCompleteColumn())
    with rp.Progress(*columns, rp.TimeElapsedColumn(), rp.TimeRemainingColumn()) as bar:
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    with contextlib.suppress(PackageNotFoundError):
        return version("rolloutsim")
    return "unknown"


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
) -> RunResult:
    """Run every policy on every release class, ``replications`` each, and collect outcomes.

    ``world``: a ``World`` (or its dict); ``policies``: policy objects (named by ``.name``) or a
    mapping name -> policy; ``replications``: per class, an int or {class: int}. ``backend``:
    "inprocess", "process" (a spawn pool of ``workers``, default all cores) or "dask"
    (``scheduler``: an address or a ``Client``; default a LocalCluster of ``workers``). With
    ``checkpoint`` (a directory) finished chunks are kept and a rerun does only the rest.
    ``on_chunk(chunk)`` is called after each chunk is finished and saved. The defaults are
    ``sim.runs.options.DEFAULTS``; ``RunOptions.run_kwargs()`` gives these keywords.
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
    for name, p in named:
        if parse_policy(specs[name]) != p:
            raise RolloutsimError(f"policy {name!r} does not survive its own to_dict()")
    classes = model.releases.names
    counts = _counts(replications, classes)
    names = tuple(specs)
    version = _version()
    inputs = {"format": _FORMAT, "rolloutsim": version, "world": world_json, "seed": seed}
    inputs |= {"policies": [[n, specs[n]] for n in names], "replications": counts}
    inputs["chunk_size"] = chunk_size
    digest = _digest(inputs)
    chunks = _plan(names, classes, counts, chunk_size)
    store = _Checkpoint(checkpoint, {"digest": digest, **inputs}) if checkpoint else None
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
    return RunResult(*args, version=version)


def _frame(records: list[dict], world: World, counts: dict[str, int]):
    import pandas as pd

    frame = pd.DataFrame.from_records(records, columns=list(OUTCOME_FIELDS))
    weight = {c.name: c.probability / counts[c.name] for c in world.releases}
    frame["weight"] = frame["release_class"].map(weight).astype(float)
    return frame
