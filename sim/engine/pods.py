"""The pods of each group: start-up, readiness, endpoints, and the capacity they hold (DESIGN §5).

A pod asked for starts up in a sample of the platform's start-up time (never, in a crash loop),
is *available* to the controller ``minReadySeconds`` after its readiness probe passes, and
*serves* — joins its Services' endpoints — the ``pods`` router delay after the probe. A scale-down
takes effect at once: Kubernetes removes pods that are not ready first, then the newest ready
ones. A candidate pod's fault begins at its own onset (by pod age, or from the release start).
Pods above the steady state are counted in pod-seconds, an Argo experiment's among them (its
``experiment-*`` groups: ``GROUP_VERSION``); an idle group's pods serve no Service.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np

from policies.controller import GROUP_VERSION
from sim.engine.fault_arrival import NO_FAULT, FaultState

if TYPE_CHECKING:
    from sim.engine.flows import RoutingState
    from sim.engine.routing import Router

__all__ = ["Pod", "Pods"]


@dataclass(slots=True, eq=False)  # a pod is itself: equal only to itself
class Pod:
    started: float
    ready: float  # when its readiness probe passes (inf: never)
    serve: float  # when it joins the endpoints and gets requests (ready + the pods delay)
    onset: float  # when its fault begins (inf: never)


_STEADY = Pod(-math.inf, -math.inf, -math.inf, math.inf)
"""A pod of the steady state (serving since before the release, no fault). They are all alike
and never changed, so one object stands for each: only the pods a scale makes are told apart."""


class Pods:
    """The groups' pods (``stable``, ``canary``, ``primary``) of one replication.

    ``changing()`` is called when the pods a request can meet are about to change in a way the
    traffic model sees (sim/engine/drafting.py); ``available_changed()`` once more pods may be
    available to the controller; ``router`` says which Services select which groups."""

    def __init__(
        self,
        clock,
        platform,
        fault,
        global_onset: float | None,
        replicas: int,
        min_ready: float,
        rng: np.random.Generator,
    ) -> None:
        self.env, self.call = clock.env, clock.call
        self.fault, self.global_onset, self.rng = fault, global_onset, rng
        self.startup = platform.pod_startup
        self.capacity_bound = platform.capacity_per_pod is not None
        self.endpoint_delay = platform.router_delay_for("pods")
        self.n, self.min_ready = replicas, min_ready
        self.groups: dict[str, list[Pod]] = {g: [] for g in GROUP_VERSION}
        self.groups["stable"] = [_STEADY] * replicas
        self.extra_pod_seconds = 0.0
        self._serving = _Counts(attrgetter("serve"), self.groups)  # told of every scale
        self._available = _Counts(lambda pod: pod.ready + min_ready, self.groups)
        self.counted_until = 0.0
        self.changing: Callable[[], None] = _unconnected
        self.available_changed: Callable[[], None] = _unconnected
        self.router: Router | None = None  # set by connect()
        self._selected_by: RoutingState | None = None  # the routing state _selected_groups is of
        self._selected_groups: frozenset[str] = frozenset()
        self._mix_matters: dict[str, bool] = {}  # group -> _mix_matters_now, for _selected_by

    def __repr__(self) -> str:
        return f"Pods({ {g: len(p) for g, p in self.groups.items()} })"

    def connect(self, *, changing, available_changed, router: Router) -> None:
        self.changing, self.available_changed, self.router = changing, available_changed, router

    # ------------------------------------------------------------------ what the world sees

    def serving(self) -> dict[str, int]:
        """Serving pods per group (a copy: callers may keep it)."""
        return self._serving.at(self.env.now, self.groups)

    def available(self) -> dict[str, int]:
        """Available pods per group: those ready ``minReadySeconds`` ago."""
        return self._available.at(self.env.now, self.groups)

    def fault_state(self) -> FaultState:
        """The candidate's serving pods that a Service selects (an idle experiment's get no
        requests, so they do not dilute a per-pod fault). Without a fault: none to build."""
        if self.fault is None:
            return NO_FAULT
        now = self.env.now
        selected = self._selected()
        serving = [
            (p.onset, g)
            for g, pods in self.groups.items()
            if GROUP_VERSION[g] == "canary" and g in selected
            for p in pods
            if p.serve <= now
        ]
        onsets = np.array([onset for onset, _ in serving], dtype=float)
        return FaultState(onsets, len(serving), tuple(g for _, g in serving))

    def candidate_gone(self) -> bool:
        """No pod of the new version is left (running or starting), an experiment's included."""
        return not any(pods for g, pods in self.groups.items() if GROUP_VERSION[g] == "canary")

    def _selected(self) -> frozenset[str]:
        """The groups some Service selects now (the canary, the stable, a DNS switch's old);
        kept until the routing state, which is immutable and replaced at every change, is."""
        if self.router is None:
            return frozenset(self.groups)
        routing = self.router.state
        if routing is not self._selected_by:
            old = routing.dns_from or frozenset()
            self._selected_groups = frozenset((*routing.stable, *routing.canary, *old))
            self._selected_by = routing
            self._mix_matters.clear()
        return self._selected_groups

    # ------------------------------------------------------------------ scaling

    def scale(self, group: str, replicas: int) -> None:
        self._serving.stale.add(group)
        self._available.stale.add(group)
        pods = self.groups[group]
        now = self.env.now
        self.count()
        if replicas > len(pods):
            candidate = GROUP_VERSION[group] == "canary"
            fault = self.fault
            faulty = candidate and fault is not None
            count = replicas - len(pods)
            # one draw of ``count`` values: numpy gives them in the order, and with the state
            # after, of ``count`` scalar draws (uniform, exponential, lognormal, gamma, integers)
            if faulty and fault.crash_loop:
                startups = [math.inf] * count
            else:
                startups = self.startup.sample(self.rng, count).tolist()
            call, endpoint_delay, min_ready = self.call, self.endpoint_delay, self.min_ready
            for startup in startups:
                ready = now + startup
                serve = ready + endpoint_delay
                onset = math.inf
                if faulty and math.isfinite(ready):
                    onset = float(fault.onset_at(self.global_onset, now, serve))
                pod = Pod(now, ready, serve, onset)
                pods.append(pod)
                if math.isfinite(ready):
                    call(serve, self._joined, group, pod)
                    call(ready + min_ready, self.available_changed)
        elif replicas < len(pods):
            # Kubernetes removes not-ready pods first, then the newest ready ones
            pods.sort(key=lambda p: (p.ready <= now, -p.ready))
            removed = pods[: len(pods) - replicas]
            self.groups[group] = pods[len(pods) - replicas :]
            gone = sum(1 for p in removed if p.serve <= now)
            if gone and (gone > 1 or self._matters(group, joined=False)):
                self.changing()

    def count(self) -> None:
        """Accumulate pod-seconds above the steady state up to now."""
        now = self.env.now
        total = sum(map(len, self.groups.values()))
        self.extra_pod_seconds += max(0, total - self.n) * (now - self.counted_until)
        self.counted_until = now

    def _joined(self, group: str, pod: Pod) -> None:
        """A ready pod joins its Services' endpoints: traffic spreads over one more pod."""
        if pod in self.groups[group] and self._matters(group, joined=True):
            self.changing()

    def _matters(self, group: str, *, joined: bool) -> bool:
        """Whether one more (or one fewer) serving pod of ``group`` changes what the traffic
        model draws from; if not, the draft stays valid and no cut is needed. It does when a
        Service mixes versions (traffic follows pods), when capacity is finite, when the group
        starts or stops serving, or when the candidate's pods differ in their fault state."""
        if group not in self._selected():
            return False  # no Service selects it (an idle experiment's pods): no request meets it
        if self.capacity_bound:
            return True
        now, pods = self.env.now, self.groups[group]
        # whether the group starts or stops serving. Pods joining at one instant are all
        # serving by the first one's call: before it, the group served if a pod served strictly
        # earlier (two joining an empty group cut too); before one left, the group served. (A
        # group that served serves: only "did not serve, serves" and "served, does not" differ.)
        if joined:
            if not any(p.serve < now for p in pods) and any(p.serve <= now for p in pods):
                return True
        elif not any(p.serve <= now for p in pods):
            return True
        matters = self._mix_matters.get(group)  # (cleared by _selected when the routing changes)
        if matters is None:
            matters = self._mix_matters[group] = self._mix_matters_now(group)
        return matters

    def _mix_matters_now(self, group: str) -> bool:
        """The rest of ``_matters``, which depends on the routing state and the group only:
        whether a Service that selects ``group`` mixes versions, or the group's pods differ
        in their fault state."""
        assert self.router is not None  # connected before the clock runs
        routing = self.router.state
        selectors = [routing.stable, routing.canary]
        if routing.dns_from is not None:
            selectors.append(routing.dns_from)
        selecting = [svc for svc in selectors if group in svc]
        if any(len({GROUP_VERSION[g] for g in svc}) > 1 for svc in selecting):
            return True
        fault = self.fault
        uniform = fault is None or (fault.onset is None and fault.growth is None)
        return GROUP_VERSION[group] == "canary" and bool(selecting) and not uniform


REACHED_TOL = 1e-9
"""Seconds by which a pod's time counts as reached early: rounding, never a model time."""


class _Counts:
    """How many pods of each group have reached a time of theirs (``time_of``: serve, or
    available) by now. A group's pods change only by scaling it (``stale``): its times are
    sorted again then. The counts are kept until the clock reaches the next such time (the
    clock only moves forward, so before it no count can change), and only the groups with a
    finite time still ahead (a scaling one: usually one) are searched again."""

    __slots__ = ("counts", "pending", "stale", "time_of", "times", "until")

    def __init__(self, time_of: Callable[[Pod], float], groups: dict[str, list[Pod]]) -> None:
        self.time_of = time_of
        self.times: dict[str, list[float]] = {}  # group -> its pods' times, sorted
        self.stale = set(groups)  # the groups scaled since their times were sorted
        self.counts: dict[str, int] = {}
        self.pending: list[tuple[str, list[float]]] = []  # (group, times): one finite ahead
        self.until = math.inf  # the next time a count changes

    def at(self, now: float, groups: dict[str, list[Pod]]) -> dict[str, int]:
        """The counts at ``now`` (a copy: callers may keep it); a time within rounding of now
        is reached (a call made for it lands at now + (at − now), an ulp either side)."""
        now += REACHED_TOL
        if self.stale:
            self._sort(now, groups)
        elif now >= self.until:
            self._search(now)
        return self.counts.copy()

    def _sort(self, now: float, groups: dict[str, list[Pod]]) -> None:
        times, time_of, inf = self.times, self.time_of, math.inf
        for g in self.stale:
            times[g] = sorted(map(time_of, groups[g]))
        self.stale.clear()
        counts, pending, until = {}, [], inf
        for g in groups:
            at = times[g]
            n = counts[g] = bisect_right(at, now)
            if n < len(at) and at[n] < inf:  # (a pod never ready never counts)
                pending.append((g, at))
                until = min(until, at[n])
        self.counts, self.pending, self.until = counts, pending, until

    def _search(self, now: float) -> None:
        counts, until = self.counts, math.inf
        for g, at in self.pending:
            n = counts[g] = bisect_right(at, now)
            if n < len(at) and at[n] < until:
                until = at[n]
        self.until = until


def _unconnected(*_args):  # pragma: no cover - a wiring bug, never a user error
    raise RuntimeError("Pods used before connect()")
