"""The live executor: the simulator's own controller, on the wall clock, against a real router.

The ``RolloutController`` (policies/controller) is the very object the simulator drives in
simulated time; here its actions are carried out for real:

* ``SetWeight``/``SetSelectors``/``Scale`` → the canary *version's* share of requests, computed
  from the router weight and which pods each Service selects (``canary_share``), written to
  HAProxy as stable = 100 − w, canary = w and read back;
* ``Scale`` → acknowledged with ``PodsChanged`` at the same instant, after whatever else was
  already due then (the bench's backends are fixed processes: there are no pods to start; the
  simulator's pods with ``podStartup: 0`` are ready at that instant in that order too);
* ``StartTimer`` → a wall-clock deadline, ``delay × time_scale``;
* ``Measure`` → a Prometheus window (live/prometheus.py) → ``MeasurementTaken``; problems become
  empty windows, which the controller's own rules judge (Error / failed check);
* ``StatusChanged`` → printed and logged.

Time is the controller's, as in the simulator: a timer's event happens at its *deadline*, not
when the executor got round to it, so a timer the controller starts while handling it counts
from the deadline, and a measurement reads the window ending one scrape delay before the
deadline. Without that, every measurement's query time (~10 ms) pushed the next one later, and
a gate lost its last window before a promotion due at the same instant (issue #20:
live/experiment.py's hold experiment and the calibration runs show it). Timers due at the same
instant fire in the order they were started, as simpy fires simultaneous events.

Safety, beyond the controller's rules: a promotion is *held* while the metrics are missing
(the last measurement or a fresh probe had no data) and turned into an abort if they stay
missing, so the executor never promotes on missing data whatever the gate; a router that
cannot be reached or reads back other weights aborts to the stable, and if even that fails the
executor exits 3 naming who holds traffic, as read back. Ctrl-C, SIGTERM and SIGHUP move traffic
to the stable unless ``leave_as_is``, always before anything is printed or logged
(live/stopping.py); the log lets a restarted executor resume (live/journal.py). SIGUSR1
approves (promote), SIGUSR2 aborts.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from live.haproxy import RouterError
from live.inbox import Inbox
from live.journal import StateDir, decode_event, describe_action, encode_action, encode_event
from live.realise import canary_share, check_supported, has_gates
from live.stopping import EXIT, TERMINAL, ExecutorResult, Stopping
from policies.controller import (
    Approved,
    AwaitingApproval,
    CancelTimer,
    Measure,
    MeasurementTaken,
    PodsChanged,
    RollbackRequested,
    RolloutController,
    Scale,
    Started,
    StartTimer,
    StatusChanged,
    TimerFired,
    detector,
)
from policies.measures import Observation

__all__ = ["EXIT", "ExecutorResult", "LiveExecutor", "LiveSettings"]

_APPROVE = "__approve"
_PODS = "__pods"  # the fixed backends' PodsChanged, due at the instant of the Scale
CATCH_UP_S = 1.0
"""A timer later than this (a resumed executor, a suspended machine) happens *now*: what it
starts counts from now, so a pause is never skipped by firing a chain of past deadlines."""


@dataclass(frozen=True)
class LiveSettings:
    """How the executor runs; every duration here is wall-clock seconds."""

    replicas: int = 10
    time_scale: float = 1.0  # controller delays and windows are multiplied by this
    scrape_delay: float = 1.0  # a window ends at the last scrape at or before now − this
    check_interval: float = 5.0  # how often the router's weights are read back
    missing_data_timeout: float = 60.0  # how long a promotion may wait for metrics
    approve_after: float | None = None  # approve a manual pause after this long (demos)
    leave_as_is: bool = False  # on Ctrl-C keep the weights instead of moving to the stable
    seed: int = 0  # the controller's generator (Kayenta's tie noise only)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class _Interrupted(Exception):
    pass


class LiveExecutor(Stopping):
    """Run ``policy`` live: ``LiveExecutor(...).run()`` returns an ``ExecutorResult``."""

    def __init__(
        self,
        policy,
        router,
        metrics,
        state: StateDir,
        settings: LiveSettings = LiveSettings(),
        out: Callable[[str], None] | None = None,
    ) -> None:
        check_supported(policy)
        self.policy, self.router, self.metrics, self.state = policy, router, metrics, state
        self.settings = settings
        self.scale = settings.time_scale
        self._out = out or (lambda line: print(line, flush=True))
        import numpy as np

        self.ctl = RolloutController(
            policy, settings.replicas, rng=np.random.default_rng(settings.seed)
        )
        self.gated = has_gates(policy)
        self.pods: dict[str, int] = dict(self.ctl.desired)
        self.timers: dict[str, tuple[float, int]] = {}  # key -> (epoch deadline, order started)
        self._started_timers = 0
        self.t0: float | None = None  # epoch of Started
        self.share: float | None = None  # last share written and confirmed
        self.data_ok = True
        self.last_window: float | None = None
        self.held: list = []  # promoting events waiting for metrics, in arrival order
        self.held_since = 0.0
        self.inbox = Inbox()
        self.result = ExecutorResult(EXIT["aborted"], None, "")

    # ------------------------------------------------------------------ running

    def run(self, until: float | None = None) -> ExecutorResult:
        """Start (or resume from the state folder), then run until a terminal status — or
        until epoch ``until``, if given (a manual pause would otherwise wait for ever)."""
        self._cleanup = False
        self.inbox.install()
        try:
            self.state.write_pid()
        except BaseException:
            self.inbox.close()
            raise
        try:
            self._begin()
            next_check = time.time() + self.settings.check_interval
            while self.ctl.status not in TERMINAL:
                if until is not None and time.time() >= until:
                    self.inbox.stop("deadline")
                self._wait(min(next_check, until or math.inf))
                if self.inbox.stop_reason is not None:
                    raise _Interrupted
                self._fire_due_timers()  # before requests: their time is now, the timers' earlier
                self._handle_flags()
                if self.held:
                    self._retry_held()
                if time.time() >= next_check:
                    next_check = time.time() + self.settings.check_interval
                    self._verify_router()
            self._finish_normally()
        except _Interrupted:
            self._interrupted()
        except RouterError as exc:
            self._router_failed(exc)
        except BaseException:  # a bug or an unexpected error: stop as Ctrl-C would, then raise
            self.inbox.stop("crash")
            self._interrupted()
            raise
        finally:
            self.inbox.close()
            self._cleanup = True  # the exit record must not hide the error being raised
            self._quietly(self.state.clear_pid)
            self._log(self._record("exit", code=self.result.exit_code))
        return self.result

    def _begin(self) -> None:
        records = self.state.records()
        if not any(r.get("kind") == "event" for r in records):
            self.t0 = time.time()
            self._log(self._record("start", settings=self.settings.to_dict()))
            self._say(f"start {self.policy.kind} {self.policy.name!r} on {self._target()}")
            self._deliver(Started(), self.t0)
        else:
            self._replay(records)
            self._sync_router(force=True)  # whatever HAProxy has now, make it the controller's

    def _target(self) -> str:
        api = getattr(self.router, "api", None)
        backend = getattr(self.router, "backend", "")
        return f"{api!r} backend {backend!r}, {self.metrics!r}" if api else repr(self.router)

    def _where(self) -> str:
        describe = getattr(self.router, "describe", None)
        return describe() if describe else repr(self.router)

    # ------------------------------------------------------------------ events

    def _deliver(self, first, at: float | None = None) -> None:
        """Deliver an event that happens at epoch ``at`` (now if None) and everything it leads
        to (measurements), in order."""
        at = time.time() if at is None else at
        queue = [first]
        while queue:
            event = queue.pop(0)
            if self._should_hold(event):
                if not self.held:
                    self.held_since = time.time()
                    self._say("promotion held: no metrics data; waiting for a good window")
                self.held.append(event)
                self._log(self._record("held", event=encode_event(event)))
                continue
            self._log(self._record("event", event=encode_event(event), at=at), durable=True)
            actions = self.ctl.handle(event)
            queue.extend(self._apply(actions, at, live=True))
            self._sync_router()

    def _apply(self, actions, at: float, live: bool) -> list:
        """Carry out actions issued at epoch ``at``; returns follow-up events (live only)."""
        follow: list = []
        grown = False
        for action in actions:
            if live:
                self._log(self._record("action", action=encode_action(action)))
                if not isinstance(action, Measure | StatusChanged):  # those print their own
                    self._say(describe_action(action, self.scale))
            if isinstance(action, StartTimer):
                self._start_timer(action.key, at + action.delay * self.scale)
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.key, None)
            elif isinstance(action, Scale):
                grown |= action.replicas > self.pods.get(action.group, 0)
                self.pods[action.group] = action.replicas
            elif isinstance(action, Measure):
                self.last_window = action.window * self.scale
                if live:
                    follow.append(self._measure(action, at))
            elif isinstance(action, StatusChanged):
                self._status(action, at, live)
        if grown and live:  # pods of fixed backends are there at once, after what is due now
            self._start_timer(_PODS, at)
        return follow

    def _start_timer(self, key: str, deadline: float) -> None:
        self._started_timers += 1
        self.timers[key] = (deadline, self._started_timers)

    def _status(self, action: StatusChanged, at: float, live: bool) -> None:
        rel = at - (self.t0 or at)
        cause = action.cause
        if action.rolls_back:
            self.result.rollback_at = self.result.rollback_at or rel
            gate = detector(cause) == "gate"  # not a person, alert, guard or the deadline
            if gate and self.result.detected_at is None:
                self.result.detected_at = rel
        if action.status == "Promoted":
            self.result.promoted_at = rel
        manual = isinstance(cause, AwaitingApproval)
        if manual and self.settings.approve_after is not None:
            self._start_timer(_APPROVE, at + self.settings.approve_after)
        elif not manual:
            self.timers.pop(_APPROVE, None)
        if live:
            where = self.ctl.position(action)
            self._say(f"status {action.status}: {action.reason}" + (f" ({where})" * bool(where)))
            if manual:
                self._say(f"paused for approval: rolloutsim live promote --state {self.state.path}")

    def _measure(self, action: Measure, at: float) -> MeasurementTaken:
        window = action.window * self.scale
        end = at - self.settings.scrape_delay
        reading = self.metrics.observe(window, end)
        good = reading.ok and reading.canary.requests > 0
        self.data_ok = good
        t0 = self.t0 or end
        start = reading.start - t0 if math.isfinite(reading.start) else end - window - t0
        obs = Observation(start, reading.end - t0, reading.canary, reading.stable)
        c, s = reading.canary, reading.stable
        detail = f"canary {c.errors}/{c.requests} 5xx, stable {s.errors}/{s.requests} 5xx"
        if reading.problem:
            detail = f"NO DATA ({reading.problem})"
        elif not c.requests:
            detail += " (no canary traffic: no data)"
        self._say(f"measure {action.run}/{action.metric} over {window:g} s: {detail}")
        extra = self._witness(action, window, end)
        self._log(
            self._record(
                "measure",
                run=action.run,
                metric=action.metric,
                window=window,
                canary=[c.requests, c.errors],
                stable=[s.requests, s.errors],
                problem=reading.problem,
                **extra,
            )
        )
        return MeasurementTaken(action.run, action.metric, obs)

    def _witness(self, action: Measure, window: float, end: float) -> dict:
        """The Argo exporter's query for this metric, evaluated at the same instant (logged)."""
        witness = getattr(self.metrics, "witness", None)
        run = getattr(self.ctl, "runs", {}).get(action.run)
        if witness is None or run is None or action.metric not in run.metrics:
            return {}
        query = run.metrics[action.metric].metric.provider.query
        return witness(query, window, end) if query is not None else {}

    # ------------------------------------------------------------------ never promote blind

    def _should_hold(self, event) -> bool:
        """A promotion waits while metrics are missing (only gated policies measure)."""
        if not self.gated or isinstance(event, RollbackRequested):
            return False
        probe = copy.deepcopy(self.ctl)
        promotes = any(
            isinstance(a, StatusChanged) and a.status == "Promoted" for a in probe.handle(event)
        )
        return promotes and not (self.data_ok and self._probe())

    def _probe(self) -> bool:
        window = self.last_window or 10.0 * self.scale
        reading = self.metrics.observe(window, time.time() - self.settings.scrape_delay)
        return reading.ok and reading.canary.requests > 0

    def _retry_held(self) -> None:
        if self.data_ok and self._probe():
            held, self.held = self.held, []
            self._say("metrics are back: promotion released")
            for event in held:
                self._deliver(event)
        elif time.time() - self.held_since >= self.settings.missing_data_timeout:
            self.held = []
            self._say(f"no metrics for {self.settings.missing_data_timeout:g} s: aborting")
            self._deliver(RollbackRequested("missing-data"))

    # ------------------------------------------------------------------ timers and flags

    def _fire_due_timers(self) -> None:
        """Fire every timer due by now, earliest first (ties: the one started first), each at
        its deadline; timers started meanwhile that are due by now fire in the same pass."""
        now = time.time()
        while self.ctl.status not in TERMINAL:
            due = [(when, key) for key, when in self.timers.items() if when[0] <= now]
            if not due:
                return
            (deadline, _), key = min(due)
            del self.timers[key]
            if now - deadline > CATCH_UP_S:  # resumed, or the machine stalled: from now on
                deadline = now
            if key == _APPROVE:
                self._say("approved (approve-after)")
                self._deliver(Approved(), deadline)
            elif key == _PODS:
                self._deliver(PodsChanged(dict(self.pods)), deadline)
            else:
                self._deliver(TimerFired(key), deadline)

    def _handle_flags(self) -> None:
        inbox = self.inbox
        if inbox.stop_reason is not None:
            raise _Interrupted
        while inbox.approvals:
            inbox.approvals -= 1
            self._say("approved (promote requested)")
            self._deliver(Approved())
        if inbox.aborts:
            inbox.aborts = 0
            self._say("abort requested")
            self._deliver(RollbackRequested("human"))

    def _wait(self, next_check: float) -> None:
        """Sleep until the next deadline or check, waking at once on a request."""
        deadlines = [next_check, *(deadline for deadline, _ in self.timers.values())]
        if self.held:
            deadlines.append(time.time() + min(1.0, self.settings.check_interval))
        self.inbox.wait(min(deadlines) - time.time())

    # ------------------------------------------------------------------ the router

    def _sync_router(self, force: bool = False) -> None:
        share = canary_share(self.ctl, self.pods)
        if not force and self.share is not None and abs(share - self.share) < 1e-9:
            return
        weights = self.router.apply(share)
        self.share = share
        self._log(self._record("router", share=share, weights=list(weights)))
        self._say(f"router: canary {share:g} % -> {self._where()} (read back)")

    def _verify_router(self) -> None:
        verify = getattr(self.router, "verify", None)
        if verify is not None:
            verify()

    def _finish_normally(self) -> None:
        promoted = self.ctl.status == "Promoted"
        self.result.exit_code = EXIT["promoted"] if promoted else EXIT["aborted"]
        self.result.status, self.result.reason = self.ctl.status, self.ctl.reason
        self.result.message = f"{self.ctl.status}: {self.ctl.reason} ({self._where()})"
        self._say(f"done: {self.result.message}")

    # ------------------------------------------------------------------ resume

    def _replay(self, records: list[dict]) -> None:
        """Rebuild the controller by feeding it the logged events again (it is pure)."""
        pending: dict[tuple[str, str], Measure] = {}
        count = 0
        for record in records:
            if record.get("kind") != "event":
                continue
            event = decode_event(record["event"])
            at = float(record.get("at", record["t"]))
            if isinstance(event, Started):
                self.t0 = at
            if isinstance(event, MeasurementTaken):
                pending.pop((event.run, event.metric), None)
            if isinstance(event, TimerFired):  # fired before the stop: not to fire again
                self.timers.pop(event.key, None)
            actions = self.ctl.handle(event)
            self._apply(actions, at, live=False)
            for action in actions:
                if isinstance(action, Measure):
                    pending[(action.run, action.metric)] = (action, at)
            count += 1
        self._log(self._record("resume", replayed=count, status=self.ctl.status))
        self._say(
            f"resumed {self.policy.name!r} from {self.state.path}: {count} events replayed, "
            f"status {self.ctl.status}: {self.ctl.reason}"
        )
        for action, at in pending.values():  # asked for but never answered before the stop
            self._deliver(self._measure(action, at), at)
        if any(self.ctl.available.get(g, 0) < n for g, n in self.pods.items()):
            self._start_timer(_PODS, time.time())

    # ------------------------------------------------------------------ output

    def _record(self, kind: str, **fields) -> dict:
        now = time.time()
        rel = now - self.t0 if self.t0 is not None else 0.0
        return {"t": round(now, 6), "rel": round(rel, 6), "kind": kind, **fields}
