"""The per-request reference engine: the fast engine's world, one request at a time (DESIGN §5).

Why: the fast engine (sim/engine/replication.py) never simulates a request; it draws Poisson counts
per scrape slot, thins them when the world changes mid-slot, takes latency quantiles from Beta order
statistics and splits bad requests over users by activity — exact in distribution only if its
bookkeeping is right. Here every request arrives, picks a user ∝ activity, a Service, a pod, fails
or not and takes a latency, with no code shared with the fast data plane (sim/engine/tape.py,
flows.py, cells.py), so the two can be compared statistically (DESIGN §7, tests/test_reference.py).
Shared are the world *definitions*, the controller and ``router_of``: they are the spec. What
Prometheus would scrape — the per-slot series, the gates' windows and the burn-rate rules — is in
sim/engine/reference_metrics.py.

Semantics (the engine's promises, DESIGN §5): router changes land after the router kind's delay
(selectors: the Service-selector delay; the controller's first actions at once); a pod joins the
endpoints the ``pods`` delay after its start-up sample; Kubernetes deletes unready pods first, then
the newest; a DNS switch moves each client at its own uniform time within the TTL; a gate sees whole
scrape slots [end − window, end), end = last scrape ≤ now − scrapeDelay (none before 0), its
q-quantile the k-th order statistic (k = ⌈q·n⌉), its mean their mean; the burn-rate rules run every
ruleEvaluationInterval on per-slot counts with baseline history before t = 0; a human notices
humanDetection after the fault's first request.

The blast radius (sim/engine/outcome.py) is counted here by its plain meaning, request by request,
on a coupled counterfactual: each request also meets *the old version alone at full capacity* with
its own random numbers (the same failure draw against p₀, the same overload draw against full
capacity's overload, its latency before the fault's change). It is release-caused when it is bad and
its counterfactual is not; the fast engine's thinning of the bad requests per way they go bad
(sim/engine/blast.py, ``_caused_means``) has the same law. Counted: every request of the new
version, and the old version's while the release leaves it worse off than full capacity.

Cost: 1–1.5 µs of CPU per request (tests/test_reference.py): for ≲ 100 req/s and ≲ 2 h only."""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np
import simpy

import policies.controller as pc
from policies.errors import RolloutsimError
from policies.vocabulary import routers_of
from sim.engine.outcome import Outcome, gate_fields
from sim.engine.pods import REACHED_TOL
from sim.engine.reference_metrics import Scrapes
from sim.engine.reference_plugins import Plugins
from sim.engine.reference_records import RequestRecords
from sim.engine.reference_shadow import Shadow
from sim.world.rates import Constant

__all__ = ["ReferenceReplication", "simulate_reference"]

_BUF = 8192  # random numbers are drawn in blocks and consumed one at a time
_CHUNK_S = 600.0  # thinning: the rate bound is taken over chunks this long


class _Pod:
    __slots__ = ("candidate", "group", "onset", "ready", "serves")

    def __init__(self, group: str, ready: float, serves: float, onset: float) -> None:
        self.group, self.ready, self.serves, self.onset = group, ready, serves, onset
        self.candidate = pc.GROUP_VERSION[group] == "canary"


class ReferenceReplication:
    """One release under one policy, request by request: ``run()`` returns its ``Outcome``."""

    def __init__(self, cw, policy, release, seed, *, index=0, run_seed=0, policy_name=None) -> None:
        world = self.world = cw.world
        self.cw, self.policy, self.release, self.fault = cw, policy, release, release.fault
        key = seed.spawn_key  # children made without advancing the seed: it may serve again
        children = [np.random.SeedSequence(seed.entropy, spawn_key=(*key, k)) for k in range(7)]
        rngs = [np.random.default_rng(child) for child in children]
        self.data, self.pods_rng, self.ops_rng, fault_rng, gate_rng, self.dns_rng, tick = rngs
        platform, ops, fault = world.platform, world.operators, self.fault
        self.n = platform.resolve_replicas(getattr(policy, "replicas", None))
        self.horizon, self.slot = world.horizon, platform.scrape_interval
        self.env = simpy.Environment()
        if getattr(policy, "experiment_groups", set)():  # not modelled: refused at the start
            raise RolloutsimError("the reference engine does not simulate experiment steps")
        self.ctl = pc.RolloutController(policy, self.n, rng=gate_rng)
        if isinstance(self.ctl, pc.FlaggerController):  # its ticker's phase
            interval = policy.analysis.effective_interval_s
            self.ctl.first_tick_s = platform.flagger_first_tick(interval, float(tick.random()))
        self.router_delay = max(platform.router_delay_for(k) for k in routers_of(policy))
        self.join_delay = platform.router_delay_for("pods")  # a ready pod joins the endpoints
        self.selector_delay = platform.router_delay_for("serviceSelector")
        self.min_ready = float(getattr(policy, "min_ready_seconds", 0.0))
        self.global_onset = fault.onset_time(fault_rng) if fault else None
        self.human_delay = None
        if fault is not None and ops.human_detection is not None:
            self.human_delay = float(ops.human_detection.sample(self.ops_rng))
        users = cw.users  # as plain lists: one lookup per request must be cheap
        self.cum, self.bucket = np.cumsum(users.activity).tolist(), users.bucket.tolist()
        self.sticky = users.routing == "sticky"
        segment = fault.segment if fault is not None else None
        self.in_segment = users.masks[segment].tolist() if segment else None
        self.p0, self.b0 = cw.baseline_failure, cw.baseline_bad
        self.objective, self.p1 = world.latency_objective, None
        if fault is not None and fault.changes_errors:
            self.p1 = float(fault.target_error_rate(self.p0))
        self.growth = fault.growth.duration if fault is not None and fault.growth else None
        self.lat_m = getattr(fault, "latency_multiplier", None) or 1.0  # L' = m·L + shift
        self.lat_s = getattr(fault, "latency_shift", None) or 0.0
        stable = [_Pod("stable", -math.inf, -math.inf, math.inf) for _ in range(self.n)]
        self.pods: dict[str, list[_Pod]] = {"stable": stable, "canary": [], "primary": []}
        self.capacity, self.weight = platform.capacity_per_pod, 0.0
        self.matched: list[bool] | None = None  # per user: a match route sends them to canary
        self.routes: dict[str, tuple] = {}
        self.stable_groups, self.canary_groups = frozenset({"stable"}), frozenset({"canary"})
        self.dns_from: frozenset[str] | None = None  # old stable groups
        self.dns_switch: list[float] = []  # per-client switch times
        self.timers: dict[str, object] = {}
        self.queue: list[pc.Event | None] = []  # None: the start
        self.approval_token: object | None = None
        self.promoted_at: float | None = None
        self.t_fault: float | None = None
        self.pod_count_t, self.extra_pod_seconds = 0.0, 0.0
        self.scrapes = Scrapes(world, self.horizon)  # what Prometheus would scrape
        self.requests = RequestRecords()  # every new one (``new`` 1), old ones while short (0)
        name = policy_name or policy.name
        self.outcome = Outcome(name, index, run_seed, release.name, release.is_bad)
        shadow_seed = np.random.SeedSequence(seed.entropy, spawn_key=(*key, 7))
        self.shadow = Shadow(self, np.random.default_rng(shadow_seed))  # copies, load, cookies
        self.plugins = Plugins(self, seed)  # the step plugins, on the seed's child 8
        self._refresh()

    def run(self) -> Outcome:
        self._deliver([None])
        self.env.process(self._arrivals())
        if self.world.operators.alerts:
            self.env.process(self.scrapes.alert_rules(self.env, self.b0, self._alert_fired))
        self.env.run(until=self.horizon)
        return self._finish()

    def _call(self, at: float, fn, *args) -> None:
        event = self.env.timeout(max(0.0, at - self.env.now))
        event.callbacks.append(lambda _e: fn(*args))

    def _deliver(self, events) -> None:
        """Feed events to the controller and carry out its actions (measurements at once)."""
        self.queue.extend(events)
        while self.queue:
            event = self.queue.pop(0)
            if event is None:
                self._apply(self.ctl.start(), initial=True)
            else:
                self._apply(self.ctl.handle(event))

    def _apply(self, actions, initial: bool = False) -> None:
        now = self.env.now
        for action in actions:
            if isinstance(action, pc.StartTimer):
                token = self.timers[action.key] = object()
                self._call(now + action.delay, self._timer, action.key, token)
            elif isinstance(action, pc.CancelTimer):
                self.timers.pop(action.key, None)
            elif isinstance(action, pc.Scale):
                self._scale(action.group, action.replicas)
            elif isinstance(action, pc.SetWeight):
                self._later(self.router_delay, self._set_weight, action.weight)
            elif isinstance(action, pc.SetSelectors):
                self._later(0.0 if initial else self.selector_delay, self._set_selectors, action)
            elif isinstance(action, pc.SetMatchRoute):
                self._later(self.router_delay, self._set_route, action)
            elif isinstance(action, pc.SetMirror):
                self._later(self.router_delay, self.shadow.set_mirror, action)
            elif isinstance(action, pc.SetLoad):
                self.shadow.set_load(action)  # the load tester calls the canary Service directly
            elif isinstance(action, pc.SetSessionAffinity):
                self._later(self.router_delay, self.shadow.set_affinity, action)
            elif isinstance(action, pc.Measure):
                obs = self.scrapes.observe(now, action.window, action.quantiles, action.series_step)
                self.queue.append(pc.MeasurementTaken(action.run, action.metric, obs))
            elif isinstance(action, pc.RunPlugin):
                self.plugins.run(action)
            elif isinstance(action, pc.StatusChanged):
                self._status(action)

    def _later(self, delay: float, fn, value) -> None:
        if delay <= 0:
            fn(value)
        else:
            self._call(self.env.now + delay, fn, value)

    def _timer(self, key: str, token: object) -> None:
        if self.timers.get(key) is token:
            del self.timers[key]
            self._deliver([pc.TimerFired(key)])

    def _scale(self, group: str, replicas: int) -> None:
        now, pods, fault = self.env.now, self.pods[group], self.fault
        self._count_pods()
        candidate = pc.GROUP_VERSION[group] == "canary" and fault is not None
        for _ in range(replicas - len(pods)):
            ready = math.inf
            if not (candidate and fault.crash_loop):
                ready = now + float(self.world.platform.pod_startup.sample(self.pods_rng))
            serves, onset = ready + self.join_delay, math.inf
            if candidate and math.isfinite(ready):
                onset = float(fault.onset_at(self.global_onset, now, serves))
            pod = _Pod(group, ready, serves, onset)
            pods.append(pod)
            if math.isfinite(ready):
                self._call(pod.serves, self._if_alive, pod, self._world_changed)
                self._call(ready + self.min_ready, self._if_alive, pod, self._pods_changed)
        if replicas < len(pods):  # Kubernetes deletes unready pods first, then the newest
            ranked = sorted(pods, key=lambda p: (p.ready <= now, -p.ready))
            self.pods[group] = ranked[len(pods) - replicas :]
            self._world_changed()

    def _count_pods(self) -> None:
        now = self.env.now
        total = sum(len(p) for p in self.pods.values())
        self.extra_pod_seconds += max(0, total - self.n) * (now - self.pod_count_t)
        self.pod_count_t = now

    def _if_alive(self, pod: _Pod, fn) -> None:
        if pod in self.pods[pod.group]:  # else deleted before it got there
            fn()

    def _pods_changed(self) -> None:
        ready_by = self.env.now - self.min_ready + REACHED_TOL  # the call lands within rounding
        available = {g: sum(p.ready <= ready_by for p in pods) for g, pods in self.pods.items()}
        self._deliver([pc.PodsChanged(available)])

    def _set_weight(self, weight: float) -> None:
        self.weight = float(weight)
        self._world_changed()
        if self.shadow.cookie is not None:  # the cookies given until now expire by then
            self._call(self.env.now + self.shadow.max_age, self._world_changed)

    def _set_selectors(self, action) -> None:
        now = self.env.now
        if action.transition_s > 0:  # DNS: each client moves at its own uniform time
            self.dns_from, ttl = self.stable_groups, action.transition_s
            self.dns_switch = (now + ttl * self.dns_rng.random(self.cw.users.n)).tolist()
            self._call(now + ttl, self._dns_settled, self.dns_switch)
        self.stable_groups, self.canary_groups = action.stable, action.canary
        self._world_changed()

    def _dns_settled(self, switch: list) -> None:
        if self.dns_switch is switch:
            self.dns_from = None
            self._world_changed()

    def _set_route(self, action) -> None:
        self.routes[action.name] = action.match
        names = self.world.users.segments_matched_by(m for ms in self.routes.values() for m in ms)
        masks = self.cw.users.masks
        self.matched = np.logical_or.reduce([masks[s] for s in names]).tolist() if names else None
        self._world_changed()

    def _world_changed(self) -> None:
        self._refresh()
        self._check_reach()

    def _refresh(self) -> None:
        """Cache what each request reads: the serving pods behind each Service."""
        now = self.env.now
        serving = {g: [p for p in pods if p.serves <= now] for g, pods in self.pods.items()}
        self.canary_pods = [p for g in sorted(self.canary_groups) for p in serving[g]]
        self.stable_pods = [p for g in sorted(self.stable_groups) for p in serving[g]]
        old = self.dns_from
        self.old_pods: list[_Pod] = [p for g in sorted(old) for p in serving[g]] if old else []
        self.share_c = self._canary_share()
        w = self.weight
        self.state = (self.matched, w, w / 100.0, self.canary_pods, self.stable_pods)
        self.overs: tuple[float, float] | None = None  # per Service, while the rate is constant
        if self.capacity is not None and isinstance(self.world.traffic.rate, Constant):
            self.overs = (self._overload(now, False), self._overload(now, True))

    def _canary_share(self) -> float:
        """Expected share of requests the canary Service gets (activity; cookie holders now)."""
        act = self.cw.users.activity
        matched = np.asarray(self.matched, bool) if self.matched else np.zeros(act.size, bool)
        holders = self.shadow.refresh(self.weight, self.matched, self.sticky)
        matched = matched if holders is None else matched | holders  # a cookie: like a match
        if self.sticky:
            return float(act[matched | (self.cw.users.bucket < self.weight)].sum())
        m = float(act[matched].sum())
        return m + (1.0 - m) * self.weight / 100.0

    def _reaches(self, new: bool) -> bool:
        """Whether a request can reach the new (or the old) version: a Service with traffic has a
        serving pod of it, or has no pod at all and is for it (its requests then fail there)."""
        share, old = self.share_c, self.dns_from
        services = [
            (share > 0, self.canary_pods, True),
            (share < 1, self.stable_pods, False),
            (share < 1 and old, self.old_pods, False),
        ]
        return any(
            used and (any(p.candidate == new for p in pods) or (not pods and own == new))
            for used, pods, own in services
        )

    def _check_reach(self) -> None:
        """t_mitigated: after the rollback began, no request can reach the candidate any more;
        rollout_duration: promoted and no request can reach the old version (DNS: the TTL)."""
        out, now = self.outcome, self.env.now
        if math.isnan(out.t_rollback_start):
            if self.promoted_at is not None and math.isnan(out.rollout_duration):
                out.rollout_duration = math.nan if self._reaches(False) else now
        elif math.isnan(out.t_mitigated) and not self._reaches(True):
            out.t_mitigated = now

    def _arrivals(self):
        """The requests: one Poisson arrival process (Lewis–Shedler thinning under a rate bound
        per chunk), each request handled on its own at its own time. Between two requests the
        process yields to simpy only when a control event comes first: the same order as one
        timeout per request, without its cost. One loop over locals keeps it near 1 µs."""
        env, traffic, horizon, slot = self.env, self.world.traffic, self.horizon, self.slot
        constant = isinstance(traffic.rate, Constant)
        cum, bucket, sticky, segment = self.cum, self.bucket, self.sticky, self.in_segment
        n_users, total = len(cum) - 1, cum[-1]
        p0, fault, objective, fault_p = self.p0, self.fault, self.objective, self._fault_p
        lat_m, lat_s, capacity = self.lat_m, self.lat_s, self.capacity
        latency = self.world.baseline.latency
        scrapes, shadow = self.scrapes, self.shadow
        svc_req, svc_bad, req, err = scrapes.svc_req, scrapes.svc_bad, scrapes.req, scrapes.err
        lats = scrapes.lat
        rec, rec_caused, rec_ref = self.requests.columns, self.requests.caused, self.requests.ref
        no_objective = math.inf if objective is None else objective
        full_const = self._full_overload(0.0) if constant and capacity is not None else None
        ubuf, ebuf, lbuf = [], [], []
        t = chunk_end = bound = 0.0
        while True:
            if t >= chunk_end:
                if t >= horizon:
                    return
                chunk_end = min(horizon, t + _CHUNK_S)
                bound = float(traffic.max_rate(t, chunk_end))
            if bound <= 0:
                t = chunk_end
                continue
            if len(ubuf) < 8:
                ubuf.extend(self.data.random(_BUF).tolist())
            if not ebuf:
                ebuf.extend(self.data.standard_exponential(_BUF).tolist())
            nxt = t + ebuf.pop() / bound
            if nxt >= chunk_end:
                t = chunk_end  # memoryless: restart the clock under the next bound
                continue
            t = nxt
            if not constant and ubuf.pop() * bound > float(traffic.rate_at(t)):
                continue
            if env.peek() <= t:
                yield env.timeout(t - env.now)
            # --- one request at time t: its user, Service, pod, failure and latency
            matched, weight, w, canary_pods, stable_pods = self.state
            u = min(bisect_right(cum, ubuf.pop() * total), n_users)
            cookie = shadow.cookie  # a cookie route: a valid cookie goes to canary
            if (matched is not None and matched[u]) or (cookie is not None and cookie[u] > t):
                to_canary = True
            else:
                to_canary = bucket[u] < weight if sticky else ubuf.pop() < w
                if to_canary and cookie is not None:  # sent by weight: it gets a cookie
                    cookie[u] = t + shadow.max_age
            if not to_canary and shadow.percent is not None and shadow.copied(u):
                shadow.serve(t, segment is None or segment[u])  # a mirror's copy
            pods = canary_pods if to_canary else stable_pods
            if not to_canary and self.dns_from is not None and self.dns_switch[u] > t:
                pods = self.old_pods  # this client still resolves the old address
            active, over = False, 0.0
            if pods:
                pod = pods[int(ubuf.pop() * len(pods))]
                candidate, p = pod.candidate, p0
                if candidate and fault is not None and (segment is None or segment[u]):
                    since = t - pod.onset
                    active = since >= 0
                    p = fault_p(since)
                if capacity is not None:
                    overs = self.overs
                    over = self._overload(t, to_canary) if overs is None else overs[to_canary]
            else:  # nobody serves this Service: the request fails on the version it is for
                candidate, p, over = to_canary, 1.0, 1.0
            # The counterfactual, on the same random numbers: the old version at full capacity
            # (its failure draw, overload draw and latency are this request's own).
            x = ubuf.pop()
            failed, base_failed = x < p, x < p0
            if capacity is not None:
                y = ubuf.pop()
                full = self._full_overload(t) if full_const is None else full_const
                failed, base_failed = failed or y < over, base_failed or y < full
                short = abs(over - full) > 1e-12
            else:
                short = over > 0.0
            if not lbuf:
                lbuf.extend(np.asarray(latency.sample(self.data, _BUF)).tolist())
            lat = base_lat = lbuf.pop()
            if active:
                lat = lat_m * lat + lat_s
                if self.t_fault is None:
                    self._fault_began(t)
            slow = not failed and lat > no_objective
            j = int(t // slot)
            svc_req[j] += 1
            svc_bad[j] += failed or slow
            req[candidate][j] += 1
            err[candidate][j] += failed
            lats[candidate][j].append(lat)
            if candidate or short:  # the blast radius: the new version, and a short old one
                for column, value in zip(rec, (t, u, candidate, failed, slow)):
                    column.append(value)
                rec_caused.append((failed or slow) and not (base_failed or base_lat > no_objective))
                if capacity is not None:
                    rec_ref.append(full + (1.0 - full) * self.b0)

    def _overload(self, t: float, to_canary: bool) -> float:
        """Fraction of a Service's requests beyond what its serving pods can take (they fail)."""
        share = self.share_c if to_canary else 1.0 - self.share_c
        pods = len(self.canary_pods if to_canary else self.stable_pods)
        load = float(self.world.traffic.rate_at(t)) * share
        if to_canary and (self.shadow.copy_share or self.shadow.load):  # copies, load tests
            load += float(self.world.traffic.rate_at(t)) * self.shadow.copy_share
            load += self.shadow.load
        return min(1.0, max(0.0, 1.0 - pods * self.capacity / load)) if load > 0 else 0.0

    def _full_overload(self, t: float) -> float:
        """The same for the counterfactual: every request on ``replicas`` old pods."""
        load = float(self.world.traffic.rate_at(t))
        return min(1.0, max(0.0, 1.0 - self.n * self.capacity / load)) if load > 0 else 0.0

    def _fault_p(self, since: float) -> float:
        """The fault's failure probability ``since`` seconds after its onset on the pod."""
        if self.p1 is None or since < 0:
            return self.p0
        if self.growth is None:
            return self.p1
        return self.p0 + (self.p1 - self.p0) * min(1.0, since / self.growth)

    def _fault_began(self, t: float) -> None:
        self.t_fault = t
        if self.human_delay is not None:
            self._call(t + self.human_delay, self._human)

    def _alert_fired(self, t: float) -> None:
        """The burn-rate alert fired at ``t``: a person acknowledges it, then aborts."""
        self._detected(t, "alert")
        ops = self.world.operators
        delay = ops.acknowledgement.sample(self.ops_rng)
        delay = float(delay) + float(ops.abort_latency.sample(self.ops_rng))
        self._call(t + delay, self._deliver, [pc.RollbackRequested("alert")])

    def _human(self) -> None:
        self._detected(self.env.now, "human")
        delay = float(self.world.operators.abort_latency.sample(self.ops_rng))
        self._call(self.env.now + delay, self._deliver, [pc.RollbackRequested("human")])

    def _detected(self, when: float, by: str) -> None:
        if self.outcome.detected_by == "":
            self.outcome.t_detect, self.outcome.detected_by = when, by

    def _status(self, action) -> None:
        now, out = self.env.now, self.outcome
        cause = action.cause
        if isinstance(cause, pc.AwaitingApproval):
            token = self.approval_token = object()
            delay = float(self.world.operators.approval_delay.sample(self.ops_rng))
            self._call(now + delay, self._approve, token)
        elif action.status == "Promoted":
            if self.promoted_at is None:
                self.promoted_at = now
                self._check_reach()
        elif action.rolls_back:
            if math.isnan(out.t_rollback_start):
                out.t_rollback_start = now
                out.gate_run, out.gate_metrics, out.gate_step = gate_fields(cause)
            by = pc.detector(cause)  # alerts and humans record themselves when they fire
            if by:
                self._detected(now, by)
            self._check_reach()

    def _approve(self, token: object) -> None:
        if token is self.approval_token:
            self._deliver([pc.Approved()])

    def _finish(self) -> Outcome:
        self._count_pods()
        out = self.outcome
        finite = self.capacity is not None
        self.requests.fill(out, b0=self.b0, finite_capacity=finite, t_fault=self.t_fault)
        slo = self.world.operators.slo
        expected = float(self.world.traffic.integral(0.0, slo.period))
        out.error_budget_used = out.excess_bad_requests / slo.budget(expected) if expected else 0.0
        out.extra_pod_seconds = self.extra_pod_seconds
        rolled_back, promoted = not math.isnan(out.t_rollback_start), self.promoted_at is not None
        out.outcome = "rolled_back" if rolled_back else "promoted" if promoted else "stalled"
        out.false_rollback = rolled_back and not self.release.is_bad
        out.escaped = self.release.is_bad and promoted
        return out


def simulate_reference(
    cw, policy, release, seed_sequence, *, index: int = 0, run_seed: int = 0, policy_name=None
) -> Outcome:
    """One replication, request by request (small scenarios: the cost is linear in requests)."""
    kwargs = {"index": index, "run_seed": run_seed, "policy_name": policy_name}
    return ReferenceReplication(cw, policy, release, seed_sequence, **kwargs).run()
