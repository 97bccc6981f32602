"""What every kind's controller shares: pod groups, timers, analysis runs, status, the loop.

A controller is level-triggered like the executors' reconcile loops: each event updates what
it knows, then ``_reconcile`` runs until nothing more changes. Reconciles are back-to-back in
the executors (milliseconds), so the controller treats them as taking no time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, assert_never, cast

from policies.analysis import AnalysisRun, AnalysisTemplate, KayentaProvider, Metric, Phase
from policies.controller.protocol import (
    Action,
    Approved,
    CancelTimer,
    Cause,
    DeadlineExceeded,
    GateVerdict,
    Intervention,
    Measure,
    MeasurementTaken,
    PluginFinished,
    PodsChanged,
    Progress,
    RollbackRequested,
    Scale,
    SetMatchRoute,
    SetMirror,
    SetSelectors,
    SetWeight,
    StartAnalysis,
    Started,
    StartTimer,
    Status,
    StatusChanged,
    StopAnalysis,
    TimerFired,
    Verdict,
)
from policies.measures import Query
from policies.sequential import SequentialTest

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEADLINE_TIMER", "ArgoControllerBase", "ControllerBase"]

_MAX_LOOPS = 1000
DEFAULT_WINDOW_S = 60.0
DEADLINE_TIMER = "progressDeadline"


def _attribute_reader(fields: tuple[str, ...]) -> Callable[[Any], tuple]:
    """A method returning these attributes' values as one tuple, compiled as plain attribute
    reads (as dataclasses makes its methods): the interpreter's specialised reads, twice per
    reconcile, cost less than ``operator.attrgetter``'s lookups or a ``super()`` chain."""
    assert all(field.isidentifier() for field in fields), fields
    namespace: dict[str, Any] = {}
    reads = "".join(f"self.{field}, " for field in fields)
    exec(f"def _loop_key(self):\n    return ({reads})", namespace)
    return namespace["_loop_key"]


class ControllerBase:
    """Shared state and plumbing; subclasses implement ``_reconcile`` and the reactions."""

    kind = ""
    quiet_measurements = True
    """A measurement that leaves its run's phase as it was changes nothing ``_reconcile`` reads
    (it reads runs only through their phases), so no reconcile follows it; a controller whose
    reconcile reads measurements themselves (Flagger's checks) sets this False."""
    LOOP_FIELDS: tuple[str, ...] = ("status", "reason", "promoted", "finished")
    """State whose change means another reconcile is due (a step completed silently); a
    subclass adds its own to these, and ``_loop_key`` returns their values."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._loop_key = _attribute_reader(cls.LOOP_FIELDS)  # type: ignore[assignment]

    def __init__(self, policy: Any, replicas: int, rng: np.random.Generator | None = None) -> None:
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.policy = policy
        self.replicas = replicas
        self.rng = rng  # only for gates that draw (Kayenta tie noise); the controller never does
        self.status: Status | None = None
        self.reason = ""
        self.cause: Cause | None = None
        self.desired: dict[str, int] = {"stable": replicas, "canary": 0}
        self.available: dict[str, int] = {"stable": replicas, "canary": 0}
        self.weight = 0.0
        self.selectors = (frozenset({"stable"}), frozenset({"canary"}))
        self.match_routes: dict[str, tuple] = {}
        self.mirrors: dict[str, tuple[float, tuple]] = {}  # name -> (percent, match)
        self.runs: dict[str, AnalysisRun] = {}
        self._requests: dict[str, Measure] = {}  # by measure timer: what it asks, while running
        self.timers: set[str] = set()
        self._timer_actions: dict[tuple[str, float], StartTimer] = {}  # see _start_timer
        self._cancel_actions: dict[str, CancelTimer] = {}
        self.promoted = False  # all traffic on the new version and it is the stable one
        self.finished = False  # nothing more will happen without an outside event
        self._out: list[Action] = []
        self._last_progress: tuple = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(policy={self.policy.name!r}, replicas={self.replicas})"

    # ------------------------------------------------------------------ the public loop

    def handle(self, event: Any) -> list[Action]:
        """Feed one event; returns the actions to carry out, in order."""
        self._out = []
        if isinstance(event, TimerFired):  # (the most frequent events first)
            self.timers.discard(event.key)
            if event.key.startswith("measure/"):
                # only asks for a measurement: no state a reconcile reads has changed, and a
                # reconcile at its fixed point does nothing, so the loop below is skipped
                self._measure_due(event.key)
                return self._out
            self._timer(event.key)
        elif isinstance(event, MeasurementTaken):
            if not self._measured(event) and self.quiet_measurements:
                return self._out  # nothing a reconcile reads has changed (see above)
        elif isinstance(event, PodsChanged):
            self.available.update(event.available)
        elif isinstance(event, Started):
            self._started()
        elif isinstance(event, Approved):
            self._approved()
        elif isinstance(event, RollbackRequested):
            self._rollback_requested(event.source)
        elif isinstance(event, PluginFinished):
            self._plugin_finished(event)
        else:
            raise TypeError(f"not a controller event: {event!r}")
        out, loop_key, reconcile = self._out, self._loop_key, self._reconcile
        settled_count, settled_key = len(out), loop_key()
        for _ in range(_MAX_LOOPS):
            reconcile()
            count, key = len(out), loop_key()
            if count == settled_count and key == settled_key:
                break
            settled_count, settled_key = count, key
        else:  # pragma: no cover - a controller bug, never a user error
            raise RuntimeError(f"{self!r} did not settle: {self._out[-5:]}")
        self._track_progress()
        return self._out

    def start(self) -> list[Action]:
        return self.handle(Started())

    # ------------------------------------------------------------------ for subclasses

    def _started(self) -> None:
        self._set_status("Progressing", "RolloutStarted", Progress("Started"))

    def _timer(self, key: str) -> None:
        """A timer of the subclass fired (pause, scale-down delay...)."""
        if key == DEADLINE_TIMER:
            self._deadline_exceeded()

    def _deadline_exceeded(self) -> None:
        """No progress for progressDeadlineSeconds (only reported, unless the kind aborts)."""
        self._set_status(
            self.status or "Progressing", "ProgressDeadlineExceeded", self._deadline_cause()
        )

    def _deadline_cause(self) -> DeadlineExceeded:
        return DeadlineExceeded(self.policy.progress_deadline_seconds, self._step_now())

    def _deadline_applies(self) -> bool:
        """Whether the progress deadline is being evaluated now (not while paused or analysing)."""
        return False

    def _progress_signature(self) -> tuple:
        """The desired and available pod counts, copied (dicts compare by their counts);
        CanaryController's repeats them after its step, flat: a change here goes there too."""
        return (self.desired.copy(), self.available.copy())

    def _track_progress(self) -> None:
        """Restart the progress-deadline timer on any progress; stop it where it does not apply.
        Where it is stopped the signature is not needed: only this method starts the timer, so
        the next call where it applies restarts it whatever the signature was."""
        if not self._deadline_applies():
            if DEADLINE_TIMER in self.timers:  # (_cancel_timer's test first: a call less)
                self._cancel_timer(DEADLINE_TIMER)
            return
        signature = self._progress_signature()
        if signature != self._last_progress or DEADLINE_TIMER not in self.timers:
            self._cancel_timer(DEADLINE_TIMER)
            self._start_timer(DEADLINE_TIMER, self.policy.progress_deadline_seconds)
        self._last_progress = signature

    def _approved(self) -> None:
        """A manual promote."""

    def _rollback_requested(self, source: str) -> None:
        raise NotImplementedError

    def _plugin_finished(self, event: PluginFinished) -> None:
        """A step plugin ended (only Argo's canary runs them: elsewhere it changes nothing)."""

    def _reconcile(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ actions

    def _emit(self, action: Action) -> None:
        """(The frequent actions, a timer, a scale, a weight, a measurement's request, are
        appended to ``_out`` where they are made: a call less each.)"""
        self._out.append(action)

    def _scale(self, group: str, replicas: int) -> None:
        if self.desired.get(group) != replicas:
            self.desired[group] = replicas
            if self.available.get(group, 0) > replicas:  # terminating pods leave endpoints at once
                self.available[group] = replicas
            self._out.append(Scale(group, replicas))

    def _set_weight(self, weight: float) -> None:
        if self.weight != weight:
            self.weight = weight
            self._out.append(SetWeight(weight))

    def _set_selectors(self, stable: set[str], canary: set[str], transition_s: float = 0.0) -> None:
        wanted = (frozenset(stable), frozenset(canary))
        if self.selectors != wanted:
            self.selectors = wanted
            self._emit(SetSelectors(wanted[0], wanted[1], transition_s))

    def _set_match_route(self, name: str, match: tuple) -> None:
        if self.match_routes.get(name, ()) != match:
            if match:
                self.match_routes[name] = match
            else:
                self.match_routes.pop(name, None)
            self._emit(SetMatchRoute(name, match))

    def _set_mirror(self, name: str, percent: float, match: tuple) -> None:
        """Add, change or (``percent`` 0) remove the mirror route ``name``."""
        wanted = (percent, match) if percent > 0 else None
        if self.mirrors.get(name) != wanted:
            if wanted is None:
                self.mirrors.pop(name, None)
                self._emit(SetMirror(name, 0.0, ()))
            else:
                self.mirrors[name] = wanted
                self._emit(SetMirror(name, percent, match))

    def _clear_match_routes(self) -> None:
        """Remove every managed route, header and mirror (Argo's ``RemoveManagedRoutes``)."""
        for name in list(self.match_routes):
            self._set_match_route(name, ())
        for name in list(self.mirrors):
            self._set_mirror(name, 0.0, ())

    def _start_timer(self, key: str, delay: float) -> None:
        """Arm timer ``key``. A controller arms the same few timers again and again (a
        measurement's every interval, the deadline at every progress), and a frozen action is
        slow to build: each (key, delay) is built once, equal actions being interchangeable."""
        self.timers.add(key)
        action = self._timer_actions.get((key, delay))
        if action is None:
            action = self._timer_actions[key, delay] = StartTimer(key, max(0.0, delay))
        self._out.append(action)

    def _cancel_timer(self, key: str) -> None:
        if key in self.timers:
            self.timers.discard(key)
            action = self._cancel_actions.get(key)
            if action is None:
                action = self._cancel_actions[key] = CancelTimer(key)
            self._out.append(action)

    def _set_status(self, status: Status, reason: str, cause: Cause) -> None:
        """Report a new phase (or a new reason for it) with its typed ``cause``; the same status
        and reason again is no change."""
        if self.status != status or self.reason != reason:
            self.status, self.reason, self.cause = status, reason, cause
            self._emit(StatusChanged(status, cause, reason, self._step_now()))

    def _step_now(self) -> int | None:
        """The step (or batch, or Flagger tick) the rollout is at, for kinds that have one."""
        return getattr(self, "step_index", None)

    def position(self, status: StatusChanged) -> str | None:
        """Where a status change found the rollout, in its executor's words (the live log)."""
        return None if status.step is None else f"step {status.step}"

    # ------------------------------------------------------------------ pods

    def _loop_key(self) -> tuple:
        """The values of ``LOOP_FIELDS``: every controller is a subclass, whose own is made
        from its fields (``__init_subclass__``)."""
        raise NotImplementedError

    def _ready(self, group: str) -> bool:
        """The group has all its desired pods available (and no more)."""
        return self.available.get(group, 0) == self.desired.get(group, 0)

    # ------------------------------------------------------------------ analysis runs

    def _start_run(self, key: str, templates: tuple[AnalysisTemplate, ...]) -> AnalysisRun:
        run = AnalysisRun(templates)
        self.runs[key] = run
        self._emit(StartAnalysis(key, tuple(run.metrics)))
        for name, state in run.metrics.items():
            timer = _measure_timer(key, name)
            self._requests[timer] = self._measure_request(key, name, state.metric)
            self._start_timer(timer, run.first_delay(name))
        return run

    def _stop_run(self, key: str) -> Phase | None:
        run = self.runs.pop(key, None)
        if run is None:
            return None
        for name in run.metrics:
            timer = _measure_timer(key, name)
            self._cancel_timer(timer)
            del self._requests[timer]
        phase = run.phase if run.completed else run.terminate()
        self._emit(StopAnalysis(key, phase.value))
        return phase

    @staticmethod
    def _measure_request(run: str, name: str, metric: Metric) -> Measure:
        """What a measurement of ``metric`` asks the world for (the same every time in a run)."""
        provider = metric.provider
        quantiles: tuple[float, ...] = ()
        series_step = None
        window = metric.interval or DEFAULT_WINDOW_S
        match provider.source:
            case Query() as query:
                window = query.window or window
                if query.measure == "latency":
                    quantiles = (query.quantile,)
            case KayentaProvider() as kayenta:
                series_step = kayenta.step
                quantiles = tuple(
                    sorted({m.quantile for m in kayenta.metrics if m.measure == "latency"})
                )
            case SequentialTest():
                pass  # error counts over the metric's interval
            case never:
                assert_never(never)
        return Measure(run, name, window, quantiles, series_step)

    def _measure_due(self, key: str) -> None:
        request = self._requests.get(key)
        if request is not None:  # None: its run was stopped
            self._out.append(request)

    def _measured(self, event: MeasurementTaken) -> bool:
        """Judge a measurement; whether its run's phase changed (else, with
        ``quiet_measurements``, nothing a reconcile reads has)."""
        run = self.runs.get(event.run)
        metric = event.metric
        if run is None or metric not in run.metrics:
            return False  # the run was stopped while the measurement was in flight
        before = run.phase
        run.measure(metric, event.observation, self.rng)
        delay = run.next_delay(metric)
        if delay is not None and not math.isinf(delay):
            self._start_timer(_measure_timer(event.run, metric), delay)
        phase = run.phase
        if run.terminating or phase.completed:
            for name in run.metrics:
                self._cancel_timer(_measure_timer(event.run, name))
        return phase != before

    def _verdict(self, key: str, phase: Phase, step: int | None) -> GateVerdict:
        """Which run ended badly, with the deciding metrics that went bad (read before
        ``_stop_run`` drops the run)."""
        run = self.runs.get(key)
        metrics: tuple[str, ...] = ()
        if run is not None:
            metrics = tuple(
                name for name, s in run.metrics.items() if not s.dry_run and s.phase.bad
            )
        # callers pass a completed phase and keep the verdict only when it is a bad one (a
        # Successful run's verdict is built before the check and dropped)
        return GateVerdict(key, metrics, step, cast(Verdict, phase.value))

    def _run_phase(self, key: str) -> Phase | None:
        run = self.runs.get(key)
        return None if run is None else run.phase

    def _stop_all_runs(self) -> None:
        for key in list(self.runs):
            self._stop_run(key)


class ArgoControllerBase(ControllerBase):
    """What Argo's canary and blue-green share: a rollback request aborts a rollout in flight
    and undoes a promoted one; a progress-deadline timeout aborts only with
    ``progressDeadlineAbort`` (reference/argo-rollouts.md §3). Subclasses define ``_abort``
    and keep ``aborted``, ``undoing`` and ``rolled_back``."""

    aborted: bool
    undoing: bool
    rolled_back: bool

    def _abort(self, reason: str, cause: Cause) -> None:
        raise NotImplementedError

    def _rollback_requested(self, source: str) -> None:
        if self.promoted:
            if not self.undoing and not self.rolled_back:
                self.undoing = True
                self._set_status("Progressing", f"Undo:{source}", Intervention(source, undo=True))
        elif not self.aborted:
            self._abort(f"RollbackRequested:{source}", Intervention(source))

    def _deadline_exceeded(self) -> None:
        if self.policy.progress_deadline_abort and not self.promoted and not self.aborted:
            self._abort("ProgressDeadlineExceeded", self._deadline_cause())
        else:
            super()._deadline_exceeded()


def _measure_timer(run: str, metric: str) -> str:
    """The timer of a run's metric's next measurement (``handle`` knows them by the prefix)."""
    return f"measure/{run}/{metric}"
