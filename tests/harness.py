"""A deterministic driver for controller tests: a timer heap, pods that become available a
fixed time after they are asked for, and measurements answered by a script.

It is deliberately tiny and independent of sim/: the controller is tested against the
executors' documented behaviour, not against the simulator.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from policies.controller import (
    Approved,
    CancelTimer,
    Cause,
    Measure,
    MeasurementTaken,
    PodsChanged,
    RollbackRequested,
    RolloutController,
    Scale,
    SetMatchRoute,
    SetSelectors,
    SetWeight,
    StartTimer,
    StatusChanged,
    TimerFired,
)
from policies.measures import Observation, WindowStats

HEALTHY = WindowStats(requests=1000, errors=0, latency={0.99: 0.1})


def healthy(_t: float, _measure: Measure) -> Observation:
    return Observation(_t - _measure.window, _t, HEALTHY, HEALTHY)


def failing(_t: float, _measure: Measure) -> Observation:
    bad = WindowStats(requests=1000, errors=500, latency={0.99: 2.0})
    return Observation(_t - _measure.window, _t, bad, HEALTHY)


def empty(_t: float, _measure: Measure) -> Observation:
    return Observation(_t - _measure.window, _t, WindowStats(), HEALTHY)


@dataclass
class Driver:
    policy: object
    replicas: int
    startup: float = 0.0
    observe: Callable[[float, Measure], Observation] = healthy
    never_ready: frozenset[str] = frozenset()
    first_tick_s: float | None = None  # Flagger: its ticker's phase at the release start
    now: float = 0.0
    log: list[tuple[float, object]] = field(default_factory=list)
    statuses: list[tuple[float, str, str]] = field(default_factory=list)
    causes: list[tuple[float, str, Cause]] = field(default_factory=list)
    measures: list[tuple[float, Measure]] = field(default_factory=list)
    shares: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ctl = RolloutController(self.policy, self.replicas)
        if self.first_tick_s is not None:
            self.ctl.first_tick_s = self.first_tick_s  # FlaggerController's setting, read at start
        self.heap: list = []
        self.seq = itertools.count()
        self.timers: dict[str, int] = {}
        self.available = {"stable": self.replicas, "canary": 0, "primary": 0}
        self.pending_pods: dict[str, list[float]] = {}
        self.desired = dict(self.available)
        self.weight = 0.0
        self.selectors = (frozenset({"stable"}), frozenset({"canary"}))
        self.routes: dict[str, tuple] = {}

    # -- scheduling
    def at(self, t: float, event) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), event))

    def approve_at(self, t: float) -> None:
        self.at(t, Approved())

    def rollback_at(self, t: float, source: str = "human") -> None:
        self.at(t, RollbackRequested(source))

    def start(self) -> Driver:
        self._apply(self.ctl.start())
        return self

    def run(self, until: float = 86400.0) -> Driver:
        while self.heap and self.heap[0][0] <= until:
            t, _, event = heapq.heappop(self.heap)
            if isinstance(event, TimerFired):
                if self.timers.get(event.key) != id(event):
                    continue  # cancelled or restarted
                del self.timers[event.key]
            self.now = t
            if isinstance(event, _PodReady):
                if self.desired[event.group] > self.available[event.group]:
                    self.available[event.group] += 1
                    self._apply(self.ctl.handle(PodsChanged(dict(self.available))))
                continue
            self._apply(self.ctl.handle(event))
        self.now = max(self.now, until) if not self.heap else self.now
        return self

    # -- applying actions
    def _apply(self, actions) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            self.log.append((self.now, action))
            if isinstance(action, StartTimer):
                event = TimerFired(action.key)
                self.timers[action.key] = id(event)
                self.at(self.now + action.delay, event)
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.key, None)
            elif isinstance(action, Scale):
                self.desired[action.group] = action.replicas
                have = self.available[action.group]
                if action.replicas < have:
                    self.available[action.group] = action.replicas
                    queue.extend(self.ctl.handle(PodsChanged(dict(self.available))))
                elif action.group not in self.never_ready:
                    for _ in range(action.replicas - have - self._in_flight(action.group)):
                        self.at(self.now + self.startup, _PodReady(action.group))
            elif isinstance(action, SetWeight):
                self.weight = action.weight
            elif isinstance(action, SetSelectors):
                self.selectors = (action.stable, action.canary)
            elif isinstance(action, SetMatchRoute):
                self.routes[action.name] = action.match
            elif isinstance(action, Measure):
                self.measures.append((self.now, action))
                obs = self.observe(self.now, action)
                queue.extend(self.ctl.handle(MeasurementTaken(action.run, action.metric, obs)))
            elif isinstance(action, StatusChanged):
                self.statuses.append((self.now, action.status, action.reason))
                self.causes.append((self.now, action.status, action.cause))
        self.shares.append((self.now, self.canary_share()))

    def _in_flight(self, group: str) -> int:
        return sum(1 for _, _, e in self.heap if isinstance(e, _PodReady) and e.group == group)

    # -- what users see
    def canary_share(self) -> float:
        """Fraction of requests served by the new version (canary or primary-new pods)."""

        def version_share(groups) -> float:
            total = sum(self.available[g] for g in groups)
            if not total:
                return 0.0
            return sum(self.available[g] for g in groups if g != "stable") / total

        w = self.weight / 100.0
        return w * version_share(self.selectors[1]) + (1 - w) * version_share(self.selectors[0])

    def actions(self, kind) -> list[tuple[float, object]]:
        return [(t, a) for t, a in self.log if isinstance(a, kind)]

    def weights(self) -> list[float]:
        return [a.weight for _, a in self.actions(SetWeight)]

    def status(self) -> str:
        return self.ctl.status

    def status_at(self, reason: str) -> float:
        return next(t for t, _, r in self.statuses if r == reason)


@dataclass(frozen=True)
class _PodReady:
    group: str
