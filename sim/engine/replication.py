"""The engine: simpy runs the control plane, the tape draws the data plane (DESIGN §5).

simpy carries only control events — controller timers, pods becoming ready, router changes
landing after their propagation delay, measurements, alerts, humans. Requests are never simpy
events: between two world changes the tape draws them in bulk (sim/engine/tape.py). The
controller is the very one the exporters and the live executor use; this module only carries out
its actions in simulated time and reports back what the world did.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import simpy

from policies.controller import (
    GROUP_VERSION,
    Approved,
    CancelTimer,
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
from sim.engine.flows import RoutingState, UserCells, flow_set
from sim.engine.outcome import Outcome
from sim.engine.seeds import replication_seed, shared_parts, streams
from sim.engine.tape import FaultState, Tape
from sim.engine.trace import Trace

__all__ = ["Replication", "router_kind", "simulate"]

CHUNK_S = 600.0  # how far ahead traffic is drafted when no event is nearer
_LATE = 2  # simpy priority after NORMAL events at the same time (drafting runs last)
_GATE_REASONS = ("Analysis", "FailedCheck")


def router_kind(policy) -> str:
    """Which router's propagation delay a policy's weight and route changes suffer."""
    if policy.kind == "Canary":
        return policy.traffic_routing.router if policy.traffic_routing else "pods"
    if policy.kind in ("Progressive", "ABTest"):
        if policy.provider == "kubernetes":
            return "serviceSelector"
        return policy.provider if policy.provider in ("nginx", "istio", "smi") else "istio"
    return "serviceSelector" if policy.kind == "BlueGreen" else "pods"


@dataclass(slots=True, eq=False)  # a pod is itself: equal only to itself
class _Pod:
    started: float
    ready: float  # when its readiness probe passes (inf: never)
    serve: float  # when it joins the endpoints and gets requests (ready + the pods delay)
    onset: float  # when its fault begins (inf: never)


class Replication:
    """One release under one policy in one world: ``run()`` returns its ``Outcome``."""

    def __init__(
        self,
        cw,
        cells: UserCells,
        policy,
        release,
        seed: np.random.SeedSequence,
        *,
        index: int = 0,
        run_seed: int = 0,
        policy_name: str | None = None,
        trace: bool = False,
    ) -> None:
        world = cw.world
        self.cw, self.world, self.policy, self.release = cw, world, policy, release
        self.fault = release.fault
        fault_ss, data_ss, pods_ss, ops_ss, gate_ss, user_ss = streams(seed, 6)
        self.pods_rng = np.random.default_rng(pods_ss)
        self.ops_rng = np.random.default_rng(ops_ss)
        fault_rng = np.random.default_rng(fault_ss)
        self.n = world.platform.resolve_replicas(getattr(policy, "replicas", None))
        self.horizon = world.horizon
        self.env = simpy.Environment()
        self.ctl = RolloutController(policy, self.n, rng=np.random.default_rng(gate_ss))
        self.cells = cells
        self.slot = world.platform.scrape_interval
        self.tape = Tape(
            cw,
            self.fault,
            self.slot,
            self.horizon,
            cells,
            np.random.default_rng(data_ss),
            np.random.default_rng(user_ss),
        )
        self.router_delay = world.platform.router_delay_for(router_kind(policy))
        self.selector_delay = world.platform.router_delay_for("serviceSelector")
        self.min_ready = float(getattr(policy, "min_ready_seconds", 0.0))
        self.sticky = cw.users.routing == "sticky"
        self.global_onset = self.fault.onset_time(fault_rng) if self.fault else None
        ops = world.operators
        self.human_delay = (
            float(ops.human_detection.sample(self.ops_rng))
            if self.fault is not None and ops.human_detection is not None
            else None
        )
        self.alert = ops.burn_rate_alert(
            world.platform,
            pre_release_rate=float(world.traffic.rate_at(0.0)),
            baseline_error_ratio=cw.baseline_bad,
        )
        self.alert_peak = cw.baseline_bad  # the history before the release is at baseline
        self.alert_floor = self.alert.lowest_threshold * (1 - 1e-6) if self.alert else math.inf
        self.outcome = Outcome(
            policy_name or policy.name, index, run_seed, release.name, release.is_bad
        )
        self.pods: dict[str, list[_Pod]] = {"stable": [], "canary": [], "primary": []}
        for _ in range(self.n):
            self.pods["stable"].append(_Pod(-math.inf, -math.inf, -math.inf, math.inf))
        self.endpoint_delay = world.platform.router_delay_for("pods")
        self.routing = RoutingState()
        self.match_routes: dict[str, tuple] = {}
        self.timers: dict[str, object] = {}
        self.queue: list = []
        self.draft_pending = False
        self.alert_token: object | None = None
        self.human_token: object | None = None
        self.approval_token: object | None = None
        self.promoted_at: float | None = None
        self.pod_time = 0.0
        self.done = False
        self.events: list[dict] | None = [] if trace else None
        self.trace: Trace | None = None

    # ------------------------------------------------------------------ running

    def run(self) -> Outcome:
        self._call(self.horizon, self._end)
        self._deliver_all([_Start()])
        self._schedule_draft()
        with contextlib.suppress(_Stop):
            self.env.run(until=self.horizon + 1.0)
        return self._finish()

    def _call(self, at: float, fn, *args, priority: int = 1) -> object:
        """Run fn(*args) at absolute time ``at``; returns a token (cancel by forgetting it)."""
        event = simpy.Event(self.env)
        event._ok, event._value = True, None
        event.callbacks.append(lambda _e: self._step(fn, args))
        self.env.schedule(event, priority, max(0.0, at - self.env.now))
        return event

    def _step(self, fn, args) -> None:
        """Run one callback, then keep the invariant: traffic is drafted at least up to the
        next scheduled event, so an alert firing before it is found in time."""
        fn(*args)
        if not self.done and fn != self._draft_ahead:
            self._check_mitigated()  # pods, routes and DNS all change what reaches the candidate
            self._check_fully_rolled_out()
            if self._settled():
                self._sync()
                raise _Stop
            if self.tape.drafted_until < min(self.env.peek(), self.horizon):
                self._schedule_draft()  # (a world change has scheduled one already)

    def _deliver_all(self, events) -> None:
        """Feed events to the controller and carry out its actions (measurements answer at once)."""
        self.queue.extend(events)
        while self.queue:
            event = self.queue.pop(0)
            if isinstance(event, _Start):
                actions = self.ctl.start()
                self._apply(actions, initial=True)
            else:
                self._apply(self.ctl.handle(event))

    def _apply(self, actions, initial: bool = False) -> None:
        now = self.env.now
        for action in actions:
            if isinstance(action, StartTimer):
                token = object()
                self.timers[action.key] = token
                self._call(now + action.delay, self._timer, action.key, token)
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.key, None)
            elif isinstance(action, Scale):
                self._scale(action.group, action.replicas)
            elif isinstance(action, SetWeight):
                self._route(self.router_delay, "weight", action.weight)
            elif isinstance(action, SetSelectors):
                delay = 0.0 if initial else self.selector_delay
                self._route(delay, "selectors", action)
            elif isinstance(action, SetMatchRoute):
                self._route(self.router_delay, "match", action)
            elif isinstance(action, Measure):
                self._measure(action)
            elif isinstance(action, StatusChanged):
                self._status(action)

    def _timer(self, key: str, token: object) -> None:
        if self.done or self.timers.get(key) is not token:
            return  # cancelled, or restarted since
        del self.timers[key]
        self._sync()
        self._deliver_all([TimerFired(key)])

    # ------------------------------------------------------------------ the world

    def _sync(self) -> None:
        """Bring the tape to now: draft under the unchanged world if needed, then commit."""
        now = self.env.now
        if self.tape.drafted_until < now:
            self._draft(now)
        self.tape.commit(now)

    def _change(self) -> None:
        """The world is about to change now: commit up to now and drop the draft after it."""
        now = self.env.now
        self._sync()
        if self.tape.drafted_until > now:
            self.tape.cut(now)
            if self.alert is not None:
                self.alert.truncate(int(now // self.slot))
                if self.alert.firing is None:  # it was decided on slots the cut discarded
                    self.alert_token = None
        self._schedule_draft()

    def _schedule_draft(self) -> None:
        if not self.draft_pending:
            self.draft_pending = True
            self._call(self.env.now, self._draft_ahead, priority=_LATE)

    def _draft_ahead(self) -> None:
        self.draft_pending = False
        if self.done:
            return
        now = self.env.now
        peek = self.env.peek()
        if self.tape.drafted_until >= min(peek, self.horizon):
            return
        target = min(self.horizon, max(now + CHUNK_S, peek if peek < math.inf else now))
        self._draft(target)

    def _draft(self, target: float) -> None:
        tape = self.tape
        t0 = tape.drafted_until
        serving = self._serving()
        by_service = {
            "canary": sum(serving[g] for g in self.routing.canary),
            "stable": sum(serving[g] for g in self.routing.stable),
        }
        fault_state = self._fault_state()
        segment = self.fault.segment if self.fault is not None else None
        dns_end = self.routing.dns_start + self.routing.dns_ttl
        if self.routing.dns_from is not None and t0 < dns_end:
            t = t0
            while t < min(target, dns_end):  # client by client: one slot at a time
                t1 = min(target, dns_end, (math.floor(t / self.slot) + 1) * self.slot)
                moved = self.routing.dns_moved(0.5 * (t + t1))
                flows = flow_set(self.routing, serving, self.cells, segment, self.sticky, moved)
                tape.draft(t, t1, flows, fault_state, by_service)
                t = t1
        routing = self.routing  # past the TTL every client has moved (``_dns_settled`` will say so)
        if routing.dns_from is not None and tape.drafted_until >= dns_end:
            routing = _replace(routing, dns_from=None)
        if tape.drafted_until < target:
            flows = flow_set(routing, serving, self.cells, segment, self.sticky)
            tape.draft(tape.drafted_until, target, flows, fault_state, by_service)
        self._check_alert()
        self._check_fault_start()

    def _serving(self) -> dict[str, int]:
        now = self.env.now
        return {g: sum(1 for p in pods if p.serve <= now) for g, pods in self.pods.items()}

    def _available(self) -> dict[str, int]:
        now = self.env.now
        return {
            g: sum(1 for p in pods if p.ready + self.min_ready <= now)
            for g, pods in self.pods.items()
        }

    def _fault_state(self) -> FaultState:
        now = self.env.now
        onsets = [
            p.onset
            for g, pods in self.pods.items()
            if GROUP_VERSION[g] == "canary"
            for p in pods
            if p.serve <= now
        ]
        return FaultState(np.array(onsets, dtype=float), len(onsets))

    def _scale(self, group: str, replicas: int) -> None:
        pods = self.pods[group]
        now = self.env.now
        self._count_pods()
        if replicas > len(pods):
            candidate = GROUP_VERSION[group] == "canary"
            never = candidate and self.fault is not None and self.fault.crash_loop
            for _ in range(replicas - len(pods)):
                startup = (
                    math.inf
                    if never
                    else float(self.world.platform.pod_startup.sample(self.pods_rng))
                )
                ready = now + startup
                serve = ready + self.endpoint_delay
                onset = math.inf
                if candidate and self.fault is not None and math.isfinite(ready):
                    onset = float(self.fault.onset_at(self.global_onset, now, serve))
                pod = _Pod(now, ready, serve, onset)
                pods.append(pod)
                if math.isfinite(ready):
                    self._call(serve, self._pod_serving, group, pod)
                    self._call(ready + self.min_ready, self._pods_changed)
        elif replicas < len(pods):
            # Kubernetes removes not-ready pods first, then the newest ready ones
            pods.sort(key=lambda p: (p.ready <= now, -p.ready))
            removed, self.pods[group] = pods[: len(pods) - replicas], pods[len(pods) - replicas :]
            gone = sum(1 for p in removed if p.serve <= now)
            if gone and (gone > 1 or self._pods_matter(group, joined=False)):
                self._change()

    def _count_pods(self) -> None:
        """Accumulate pod-seconds above the steady state up to now."""
        now = self.env.now
        total = sum(len(p) for p in self.pods.values())
        self.outcome.extra_pod_seconds += max(0, total - self.n) * (now - self.pod_time)
        self.pod_time = now

    def _pod_serving(self, group: str, pod: _Pod) -> None:
        """A ready pod joins its Services' endpoints: traffic spreads over one more pod."""
        if pod in self.pods[group] and not self.done and self._pods_matter(group, joined=True):
            self._change()

    def _pods_matter(self, group: str, *, joined: bool) -> bool:
        """Whether one more (or one fewer) serving pod of ``group`` changes what the traffic
        model draws from; if not, the draft stays valid and no cut is needed. It does when a
        Service mixes versions (traffic follows pods), when capacity is finite, when the group
        starts or stops serving, or when the candidate's pods differ in their fault state."""
        serving = sum(1 for p in self.pods[group] if p.serve <= self.env.now)
        before = serving - 1 if joined else serving + 1
        if (before == 0) != (serving == 0) or self.world.platform.capacity_per_pod is not None:
            return True
        selectors = [self.routing.stable, self.routing.canary]
        if self.routing.dns_from is not None:
            selectors.append(self.routing.dns_from)
        selecting = [svc for svc in selectors if group in svc]
        if any(len({GROUP_VERSION[g] for g in svc}) > 1 for svc in selecting):
            return True
        fault = self.fault
        uniform = fault is None or (fault.onset is None and fault.growth is None)
        return GROUP_VERSION[group] == "canary" and bool(selecting) and not uniform

    def _pods_changed(self) -> None:
        if self.done:
            return
        self._sync()
        self._deliver_all([PodsChanged(self._available())])

    def _route(self, delay: float, what: str, value) -> None:
        if delay <= 0:
            self._apply_route(what, value)
        else:
            self._call(self.env.now + delay, self._apply_route, what, value)

    def _apply_route(self, what: str, value) -> None:
        if self.done:
            return
        self._change()
        self._mark(what, value if what == "weight" else _describe(value))
        state = self.routing
        if what == "weight":
            state = _replace(state, weight=float(value))
        elif what == "selectors":
            if value.transition_s > 0:
                state = _replace(
                    state, dns_from=state.stable, dns_start=self.env.now, dns_ttl=value.transition_s
                )
                self._call(self.env.now + value.transition_s, self._dns_settled, self.env.now)
            state = _replace(state, stable=value.stable, canary=value.canary)
        else:
            if value.match:
                self.match_routes[value.name] = value.match
            else:
                self.match_routes.pop(value.name, None)
            matches = [m for ms in self.match_routes.values() for m in ms]
            matched = frozenset(self.cw.world.users.segments_matched_by(matches))
            state = _replace(state, matched=matched)
        self.routing = state
        self._check_mitigated()

    def _dns_settled(self, started: float) -> None:
        """The TTL of the DNS switch begun at ``started`` has passed (unless another began).
        No cut: ``_draft`` already draws past the TTL's end with every client moved."""
        if (
            not self.done
            and self.routing.dns_from is not None
            and self.routing.dns_start == started
        ):
            self._sync()
            self.routing = _replace(self.routing, dns_from=None)

    # ------------------------------------------------------------------ gates and operators

    def _measure(self, action: Measure) -> None:
        platform = self.world.platform
        end = math.floor((self.env.now - platform.scrape_delay) / self.slot + 1e-9) * self.slot
        self._sync()
        obs = self.tape.observation(
            end, action.window, action.quantiles, action.series_step, self.tape.rng
        )
        self.queue.append(MeasurementTaken(action.run, action.metric, obs))

    def _check_alert(self) -> None:
        if self.alert is None or self.outcome.detected_by == "alert" or self.alert_token:
            return
        have = self.alert.n_slots
        complete = int(self.tape.drafted_until // self.slot + 1e-9)
        if complete <= have:
            return
        ends = (np.arange(have, complete) + 1) * self.slot
        req, bad = self.tape.svc_req[have:complete], self.tape.svc_bad[have:complete]
        ratio = np.divide(bad, req, out=np.zeros_like(bad), where=req > 0)
        self.alert_peak = max(self.alert_peak, float(ratio.max()))
        may_fire = self.alert_peak >= self.alert_floor  # else no window can reach a threshold
        fired = self.alert.extend(ends, req, bad, may_fire=may_fire, check=False)
        if fired is not None:
            when = max(fired, self.env.now)
            token = self.alert_token = object()
            self._call(when, self._alert_fired, when, token)

    def _alert_fired(self, when: float, token: object) -> None:
        if self.done or token is not self.alert_token:
            return
        self._sync()
        self._detected(when, "alert")
        ops = self.world.operators
        delay = float(ops.acknowledgement.sample(self.ops_rng)) + float(
            ops.abort_latency.sample(self.ops_rng)
        )
        self._call(self.env.now + delay, self._rollback_request, "alert")

    def _fault_start(self) -> float | None:
        """When the fault began: committed, or in the draft (whose past no cut can change)."""
        if self.tape.totals.t_fault is not None:
            return self.tape.totals.t_fault
        firsts = [b.onset_in[np.isfinite(b.onset_in)] for b in self.tape.blocks]
        firsts = [float(x[0]) for x in firsts if x.size]
        return min(firsts) if firsts else None

    def _check_fault_start(self) -> None:
        """Schedule the human who notices the fault ``human_delay`` after it began."""
        if self.human_delay is None or self.human_token is not None:
            return
        began = self._fault_start()
        if began is not None:
            token = self.human_token = object()
            self._call(began + self.human_delay, self._human, token)

    def _human(self, token: object) -> None:
        if self.done or token is not self.human_token:
            return
        self._sync()
        began = self._fault_start()
        if began is None:  # the draft that showed the fault was discarded: wait for a new one
            self.human_token = None
            return
        due = began + self.human_delay
        if due > self.env.now + 1e-9:  # the fault began later than that draft said
            token = self.human_token = object()
            self._call(due, self._human, token)
            return
        self._detected(self.env.now, "human")
        delay = float(self.world.operators.abort_latency.sample(self.ops_rng))
        self._call(self.env.now + delay, self._rollback_request, "human")

    def _rollback_request(self, source: str) -> None:
        if self.done:
            return
        self._sync()
        self._deliver_all([RollbackRequested(source)])

    def _detected(self, when: float, by: str) -> None:
        if self.outcome.detected_by == "":
            self.outcome.t_detect = when
            self.outcome.detected_by = by
            self._mark("detect", by, when)

    def _mark(self, kind: str, value, when: float | None = None) -> None:
        if self.events is not None:
            at = self.env.now if when is None else when
            self.events.append({"time": at, "kind": kind, "value": value})

    def _status(self, action: StatusChanged) -> None:
        now = self.env.now
        out = self.outcome
        self._mark("status", f"{action.status}: {action.reason}")
        if action.status == "Paused" and action.detail.get("manual"):
            delay = float(self.world.operators.approval_delay.sample(self.ops_rng))
            token = object()
            self.approval_token = token
            self._call(now + delay, self._approve, token)
        elif action.status == "Promoted" and self.promoted_at is None:
            self.promoted_at = now  # rollout_duration: once no request reaches the old version
        elif action.status == "Aborted" or action.reason.startswith("Undo:"):
            if math.isnan(out.t_rollback_start):
                out.t_rollback_start = now
            if action.reason.startswith("ProgressDeadline"):
                self._detected(now, "deadline")
            elif any(word in action.reason for word in _GATE_REASONS):
                self._detected(now, "gate")
            self._check_mitigated()

    def _approve(self, token: object) -> None:
        if self.done or token is not self.approval_token:
            return
        self._sync()
        self._deliver_all([Approved()])

    def _check_mitigated(self) -> None:
        """The rollback is done for users once no request can reach the candidate."""
        out = self.outcome
        if math.isnan(out.t_rollback_start) or not math.isnan(out.t_mitigated):
            return
        segment = self.fault.segment if self.fault is not None else None
        flows = flow_set(self.routing, self._serving(), self.cells, segment, self.sticky)
        if self.routing.dns_from is None and not flows.canary.any():
            out.t_mitigated = self.env.now
            self._mark("mitigated", "")

    def _settled(self) -> bool:
        """Rolled back, no request reaches the candidate, the controller has nothing left to
        do and the candidate's pods are gone: nothing later can change any outcome field."""
        if math.isnan(self.outcome.t_mitigated) or not self.ctl.finished:
            return False
        if self.routing.dns_from is not None:
            return False
        return not any(self.pods[g] for g in ("canary", "primary"))

    def _check_fully_rolled_out(self) -> None:
        """Full rollout, as users see it: promoted, and no request can reach the old version
        (a DNS switch is complete only when the last client's TTL has run out)."""
        out = self.outcome
        if self.promoted_at is None or not math.isnan(out.rollout_duration):
            return
        if not math.isnan(out.t_rollback_start):
            return
        segment = self.fault.segment if self.fault is not None else None
        flows = flow_set(self.routing, self._serving(), self.cells, segment, self.sticky)
        if self.routing.dns_from is None and flows.canary.all():
            out.rollout_duration = self.env.now

    def _end(self) -> None:
        self._sync()
        raise _Stop

    # ------------------------------------------------------------------ the record

    def _finish(self) -> Outcome:
        self.done = True
        self._count_pods()
        tape, out = self.tape, self.outcome
        totals = tape.settle()
        out.failed_requests, out.slow_requests = totals.failed, totals.slow
        out.bad_requests, out.candidate_requests = totals.bad, totals.requests
        out.excess_bad_requests = totals.excess
        out.users_hurt = tape.users_hurt()
        out.users_exposed = tape.users_exposed(tape.user_rng)
        if totals.t_fault is not None:
            out.t_fault = totals.t_fault
        slo = self.world.operators.slo
        expected = float(self.world.traffic.integral(0.0, slo.period))
        out.error_budget_used = totals.excess / slo.budget(expected) if expected else 0.0
        rolled_back = not math.isnan(out.t_rollback_start)
        if rolled_back:
            out.outcome = "rolled_back"
        elif self.promoted_at is not None:
            out.outcome = "promoted"
        out.false_rollback = rolled_back and not self.release.is_bad
        out.escaped = self.release.is_bad and self.promoted_at is not None
        if self.events is not None:
            self.trace = self._make_trace()
        return out

    def _make_trace(self) -> Trace:
        tape = self.tape
        n = max(1, math.ceil(min(self.env.now, self.horizon) / self.slot))
        return Trace(
            self.outcome.policy,
            self.release.name,
            self.outcome.replication,
            self.slot,
            np.arange(n) * self.slot,
            tape.c_req[:n].copy(),
            tape.c_err[:n].copy(),
            tape.s_req[:n].copy(),
            tape.s_err[:n].copy(),
            list(self.events),
        )


class _Start:
    """Internal marker: start the controller."""


class _Stop(Exception):
    """Internal: the horizon was reached."""


def _describe(action) -> str:
    if isinstance(action, SetSelectors):
        return f"stable={sorted(action.stable)} canary={sorted(action.canary)}"
    return f"{action.name}: {'on' if action.match else 'off'}"


def _replace(state: RoutingState, **changes) -> RoutingState:
    from dataclasses import replace

    return replace(state, **changes)


def simulate(world, policy, release, seed: int, *, index: int = 0, trace: bool = False):
    """Replication ``index`` of ``release`` in run ``seed``: exactly the runner's row for it
    (``release`` is a class of ``world.releases``, or its name). With ``trace``, returns
    (outcome, trace)."""
    classes = list(world.releases)
    release = world.releases[release] if isinstance(release, str) else release
    class_index = next(i for i, c in enumerate(classes) if c.name == release.name)
    cw, cells = shared_parts(world, seed)
    replication = Replication(
        cw,
        cells,
        policy,
        release,
        replication_seed(seed, class_index, index),
        index=index,
        run_seed=seed,
        trace=trace,
    )
    outcome = replication.run()
    return (outcome, replication.trace) if trace else outcome
