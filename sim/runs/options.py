"""How a run is run: the options shared by ``run``, ``sweep`` and ``tune`` (DESIGN §6).

How many replications, which seed, which backend on how many workers, whether to show progress
and whether to resume: one frozen ``RunOptions``, and one rule for where each option comes from,
``RunOptions.resolve``: what the caller gave (the command line, or keyword arguments) over what
the scenario file says over ``DEFAULTS``. Every field is None for "not given here", so a layer
only speaks for the options it names.

Light on purpose (no numpy, no pandas): the command line builds one before anything heavy loads.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, Protocol, cast, get_args

__all__ = [
    "BACKENDS",
    "DEFAULTS",
    "PROGRESS_SECONDS",
    "PROGRESS_STEP",
    "Backend",
    "ProgressLines",
    "ResolvedOptions",
    "RunOptions",
    "checkpoint_beside",
    "die_with_parent",
    "live_bar",
]

Backend = Literal["inprocess", "process", "dask"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)


@dataclass(frozen=True)
class RunOptions:
    """The options of a Monte Carlo run; None means "not given" (a lower layer decides).

        ``replications``: per release class, an int or {class: int}. ``seed``: the run's seed (the
        same seed gives the same numbers on every backend). ``backend``: "inprocess", "process" (a
        spawn pool of ``workers``, default every core this process may use, kept warm for the
        next run: ``sim.runs.pool.shutdown`` ends it) or "dask"
        (``scheduler``: an address or a ``distributed.Client``; default a LocalCluster of
        ``workers``). ``progress``: show progress on stderr (a bar on a terminal or in a notebook,
    else plain lines: ``ProgressLines``). ``resume``: keep a checkpoint left by an
        interrupted run and continue it (``checkpoint_beside``). ``budget``: the work and memory a
        run may take (``sim.runs.budget``; None: its default, ``Budget.unlimited()`` lifts it).
    """

    replications: int | Mapping[str, int] | None = None
    seed: int | None = None
    backend: str | None = None
    workers: int | None = None
    scheduler: Any = None
    progress: bool | None = None
    resume: bool | None = None
    budget: Any = None

    @classmethod
    def of(cls, scenario) -> RunOptions:
        """The options a scenario file sets: a ``Scenario`` or a ``LoadedScenario``."""
        scenario = getattr(scenario, "scenario", scenario)
        return cls(
            replications=scenario.replications,
            seed=scenario.seed,
            backend=scenario.backend,
            workers=scenario.workers,
            scheduler=scenario.scheduler,
        )

    def over(self, *lower: RunOptions | ResolvedOptions | None) -> RunOptions:
        """Each option from the first of ``self, *lower`` that gives it (is not None)."""
        layers = [self, *(layer for layer in lower if layer is not None)]
        return replace(
            self,
            **{
                f.name: next(
                    (getattr(x, f.name) for x in layers if getattr(x, f.name) is not None), None
                )
                for f in fields(self)
            },
        )

    def resolve(self, scenario=None) -> ResolvedOptions:
        """The options a run uses: these over the scenario file's (a ``Scenario``, a
        ``LoadedScenario`` or their ``RunOptions``) over ``DEFAULTS``. The one place that
        decides where an option comes from."""
        if scenario is not None and not isinstance(scenario, RunOptions):
            scenario = RunOptions.of(scenario)
        # DEFAULTS gives every option that must not be None, so the result gives it too
        return cast(ResolvedOptions, self.over(scenario, DEFAULTS))

    def __repr__(self) -> str:  # only what this layer gives: RunOptions(seed=3)
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return f"RunOptions({', '.join(f'{k}={v!r}' for k, v in given.items() if v is not None)})"

    def run_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``sim.run`` (resolve first: None is passed as None)."""
        keys = ("replications", "seed", "backend", "workers", "scheduler", "progress", "budget")
        return {k: getattr(self, k) for k in keys}


class ResolvedOptions(Protocol):
    """A ``RunOptions`` as ``resolve`` gives it: every option set (``DEFAULTS`` has each), but
    ``workers`` (None: every core) and ``scheduler`` (None: a LocalCluster)."""

    @property
    def replications(self) -> int | Mapping[str, int]: ...
    @property
    def seed(self) -> int: ...
    @property
    def backend(self) -> str: ...
    @property
    def workers(self) -> int | None: ...
    @property
    def scheduler(self) -> Any: ...
    @property
    def progress(self) -> bool: ...
    @property
    def resume(self) -> bool: ...
    @property
    def budget(self) -> Any: ...
    def run_kwargs(self) -> dict[str, Any]: ...


class _Defaults(ResolvedOptions, Protocol):
    """``DEFAULTS`` as the types see it: one replication count for every class, a backend of
    ``BACKENDS`` (``Scenario``'s defaults are these)."""

    @property
    def replications(self) -> int: ...
    @property
    def backend(self) -> Backend: ...


DEFAULTS = cast(  # a RunOptions: _Defaults says what its values are
    _Defaults,
    RunOptions(
        replications=200, seed=0, backend="process", workers=None, progress=False, resume=False
    ),
)
"""What a run uses when neither the caller nor the scenario file says (``workers`` None: every
core this process may use; ``scheduler`` None: a LocalCluster)."""


def checkpoint_beside(out: str | Path, resume: bool | None) -> Path:
    """The checkpoint directory of the output folder ``out`` (``<out>.checkpoint``). Without
    ``resume`` an old one is removed first: a fresh run, where resume would have continued."""
    out = Path(out)
    path = out.with_name(out.name + ".checkpoint")
    if path.exists() and not resume:
        shutil.rmtree(path)
    return path


def die_with_parent(parent: int, every: float = 0.5) -> None:
    """In a ``process`` backend worker: exit as soon as ``parent`` (the run's process) is gone,
    even when it was killed with SIGKILL and could not shut its pool down, so no worker lives on
    as an orphan. A daemon thread polls the parent PID (a dead parent's children are given to
    another process); portable, and blind to which of the parent's threads started the pool."""
    if os.getppid() != parent:  # already gone before the worker started
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)  # no cleanup to do: the chunk in hand is lost with its parent anyway

    threading.Thread(target=watch, name="rolloutsim-parent-watch", daemon=True).start()


# ---------------------------------------------------------------------------- progress

PROGRESS_STEP = 0.05
"""Plain progress lines come every 5 % of the work ..."""
PROGRESS_SECONDS = 5.0
"""... and at most one every 5 s, so a log of a long job stays short and a fast one is quiet."""


def live_bar() -> bool:
    """Whether stderr can show a live bar (a terminal, or a notebook); else progress is lines."""
    from rich.console import Console  # rich decides as it would draw (FORCE_TERMINAL, TERM)

    console = Console(stderr=True)
    return console.is_terminal or console.is_jupyter


def _clock(seconds: float) -> str:
    """A duration for a log line: '0.4 s', '33 s', '4 min 10 s', '2 h 05 min'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class ProgressLines:
    """Progress as plain lines on stderr where no bar can be drawn (a pipe, a log file, CI): a
    line every ``PROGRESS_STEP`` of the work, at most one every ``PROGRESS_SECONDS``, with
    done/total, the rate and the time left, then one line when the work is done. ``start``
    begins another piece of work (a tune's next stage) on the same clock."""

    def __init__(
        self,
        total: int = 0,
        done: int = 0,
        *,
        label: str = "",
        stream=None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream, self.clock = stream, clock
        self.last = clock()
        self.label = label
        self.start(total, done)

    def start(self, total: int, done: int = 0, *, label: str | None = None) -> None:
        self.total, self.done, self.before = total, done, done
        self.label = self.label if label is None else label
        self.began = self.clock()
        self.mark = self._next_mark()
        if done:
            self.say(f"resuming: {done:,}/{total:,} replications were finished before")

    def _next_mark(self) -> float:
        step = max(PROGRESS_STEP * self.total, 1)
        return (self.done // step + 1) * step

    def advance(self, n: int) -> None:
        self.done += n
        if self.done >= self.total or self.done < self.mark:
            return
        now = self.clock()
        if now - self.last >= PROGRESS_SECONDS:
            rate = (self.done - self.before) / max(now - self.began, 1e-9)
            left = _clock((self.total - self.done) / rate) if rate > 0 else "unknown"
            self.say(f"{self._count()}, {rate:,.0f}/s, about {left} left")
            self.mark = self._next_mark()

    def finish(self, more: str = "") -> None:
        """The last line: how long the work took and at what rate."""
        elapsed = self.clock() - self.began
        new = self.done - self.before
        how = f" in {_clock(elapsed)}, {new / max(elapsed, 1e-9):,.0f}/s" if new else ""
        self.say(f"{self._count()}{how or ': all finished before'}{more}")

    def summary(self, new: int, elapsed: float, more: str = "", *, label: str = "") -> None:
        """The last line of work done in pieces (a tune's stages): ``new`` replications
        simulated in ``elapsed`` seconds."""
        self.label = label
        rate = f", {new / max(elapsed, 1e-9):,.0f}/s" if new else ""
        self.say(f"done: {new:,} replications simulated in {_clock(elapsed)}{rate}{more}")

    def _count(self) -> str:
        share = 100 * self.done / self.total if self.total else 100.0
        return f"{self.done:,}/{self.total:,} replications ({share:.0f} %)"

    def say(self, text: str) -> None:
        where = f"{self.label}: " if self.label else ""
        print(f"rolloutsim: progress: {where}{text}", file=self.stream or sys.stderr, flush=True)
        self.last = self.clock()
