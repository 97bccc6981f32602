"""The engine: simpy runs the control plane, the tape draws the data plane (DESIGN §5).

simpy carries only control events — controller timers, pods becoming ready, router changes
landing after their propagation delay, measurements, alerts, humans. Requests are never simpy
events: between two world changes the tape draws them in bulk (sim/engine/tape.py). The
controller is the very one the exporters and the live executor use; this module only carries out
its actions in simulated time and reports back what the world did.

It is the glue of the engine's parts, one job each: the clock (sim/engine/clock.py), the pods
(pods.py), the router (routing.py), when traffic is drawn (drafting.py), who notices a bad
release (detectors.py) and the outcome record (recorder.py). After every event ``_step`` keeps
the invariants: the record is up to date, the run stops once nothing can change it, and
traffic is drafted at least up to the next event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from policies.controller import (
    Approved,
    AwaitingApproval,
    CancelTimer,
    FlaggerController,
    Measure,
    PodsChanged,
    RollbackRequested,
    RolloutController,
    Scale,
    SetLoad,
    SetMatchRoute,
    SetMirror,
    SetSelectors,
    SetSessionAffinity,
    SetWeight,
    StartTimer,
    StatusChanged,
    TimerFired,
)
from policies.controller.protocol import PluginFinished, RunPlugin
from policies.kept import kept_for_the_last
from policies.vocabulary import routers_of
from sim.engine.affinity import Cookies
from sim.engine.cells import UserCells
from sim.engine.clock import Clock
from sim.engine.detectors import Detectors
from sim.engine.drafting import Drafter
from sim.engine.outcome import Outcome
from sim.engine.pods import Pods
from sim.engine.recorder import Recorder
from sim.engine.routing import Router
from sim.engine.seeds import Generators, SeedKey, replication_key, shared_parts
from sim.engine.tape import Tape
from sim.engine.trace import Trace
from sim.world.plugins import check_step_plugins

__all__ = ["Replication", "simulate"]


@kept_for_the_last
def _plan_of(world, policy) -> tuple[int, float, float, float]:
    """What ``policy`` in ``world`` sets up in every replication: its replicas, router and
    selector delays and minReadySeconds, once its step plugins are checked."""
    check_step_plugins(world.step_plugins, policy)  # (the runner refuses it before a run)
    platform = world.platform
    return (
        platform.resolve_replicas(getattr(policy, "replicas", None)),
        max(platform.router_delay_for(k) for k in routers_of(policy)),
        platform.router_delay_for("serviceSelector"),
        float(getattr(policy, "min_ready_seconds", 0.0)),
    )


class Replication:
    """One release under one policy in one world: ``run()`` returns its ``Outcome``."""

    def __init__(
        self,
        cw,
        cells: UserCells,
        policy,
        release,
        seed: np.random.SeedSequence | SeedKey,
        *,
        index: int = 0,
        run_seed: int = 0,
        policy_name: str | None = None,
        trace: bool = False,
    ) -> None:
        world = cw.world
        platform = world.platform
        self.cw, self.world, self.policy, self.release = cw, world, policy, release
        fault = release.fault
        n, router_delay, selector_delay, min_ready = _plan_of(world, policy)
        # (a stream added later goes last: the earlier ones, and their numbers, stay)
        # streams 0-12: fault, data, pods, ops, gate, user, cause, tick, cookie, plugin, the
        # first faulted request, a DNS switch's clients, the old version's pieces thinned; each
        # made only when used (a stream is its seed and index alone: the others' numbers stay)
        self.streams = streams = Generators(seed)
        self.horizon = horizon = world.horizon
        self.clock = clock = Clock(self._step)
        self.env = clock.env
        self.ctl = RolloutController(policy, n, rng=streams.lazy(4))  # (Kayenta's ties draw)
        if isinstance(self.ctl, FlaggerController):  # its ticker's phase: one draw per replication
            u = float(streams(7).random())
            self.ctl.first_tick_s = platform.flagger_first_tick(
                policy.analysis.effective_interval_s, u
            )
        slot = platform.scrape_interval
        sticky = cw.users.routing == "sticky"
        self.tape = tape = Tape(
            cw,
            fault,
            slot,
            horizon,
            cells,
            streams(1),
            streams(5),
            replicas=n,
            make_cause_rng=partial(streams, 6),
            fault_rng=streams.lazy(10),
            make_thin_rng=partial(streams, 12),
        )
        global_onset = fault.onset_time(streams.lazy(0)) if fault else None  # (a hazard draws)
        self.pods = pods = Pods(clock, platform, fault, global_onset, n, min_ready, streams(2))
        cookies = Cookies(world.traffic, cells, partial(streams, 8), sticky)

        owner = object()  # this replication, to the cells (its DNS switches' orders stay)

        def dns_order() -> tuple:  # each switch's clients move in an order of their own
            return cells.dns_order(streams(11).random(cells.n) * 100.0, owner)

        self.router = router = Router(
            clock, world.users, router_delay, selector_delay, cookies, dns_order
        )
        outcome = Outcome(policy_name or policy.name, index, run_seed, release.name, release.is_bad)
        self.recorder = recorder = Recorder(
            clock,
            outcome,
            cw,
            release,
            tape,
            pods,
            router,
            cells,
            sticky=sticky,
            slot=slot,
            horizon=horizon,
            trace=trace,
        )
        self.drafter = drafter = Drafter(
            clock, tape, pods, router, cells, fault, sticky=sticky, slot=slot, horizon=horizon
        )
        self.detectors = detectors = Detectors(
            clock,
            cw,
            fault,
            tape,
            outcome,
            partial(streams, 3),
            slot=slot,
            sync=drafter.sync,
            mark=recorder.mark,
            request_rollback=self._rollback_request,
        )
        pods.connect(changing=drafter.change, available_changed=self._pods_changed, router=router)
        router.connect(
            changing=drafter.change,
            sync=drafter.sync,
            mark=recorder.mark,
            landed=recorder.check_mitigated,
        )
        drafter.connect(detectors=detectors)
        self.outcome, self.alert = outcome, detectors.alert
        self.timers: dict[str, tuple[float]] = {}  # key -> (deadline,), the current start
        self.fired: dict[str, TimerFired] = {}  # key -> its TimerFired, made once
        self.calls: dict[str, list[float]] = {}  # key -> when its pending calls come
        self.queue: list = []
        self.approval_token: object | None = None
        self.trace: Trace | None = None

    def __repr__(self) -> str:
        return (
            f"Replication(policy={self.outcome.policy!r}, release={self.release.name!r}, "
            f"index={self.outcome.replication})"
        )

    # ------------------------------------------------------------------ running

    def run(self) -> Outcome:
        self.clock.call(self.horizon, self._end)
        self._apply(self.ctl.start(), initial=True)
        self._deliver()
        self.drafter.schedule()
        self.drafter.after_event()
        with contextlib.suppress(_Stop):
            self.env.run(until=self.horizon + 1.0)
        outcome = self.recorder.finish()
        self.trace = self.recorder.trace
        return outcome

    def _step(self, event) -> None:
        """Run one event's callback (its value: the function and its arguments, clock.py), then
        keep the invariants: the record is current, a run that nothing can change any more
        stops, and traffic is drafted at least up to the next scheduled event, so an alert
        firing before it is found in time."""
        fn, args = event.value
        fn(*args)
        recorder = self.recorder
        if recorder.noting and recorder.after_event(self.ctl.finished):  # (noting: its own
            # first test, here without a call: most events note nothing)
            self.drafter.sync()
            raise _Stop
        self.drafter.after_event()

    def _end(self) -> None:
        self.drafter.sync()
        raise _Stop

    # ------------------------------------------------------------------ the controller

    def _deliver(self, event=None) -> None:
        """Feed an event (None: only those queued) to the controller and carry out its actions
        (measurements answer at once: their results are queued and delivered in turn)."""
        queue, handle, apply = self.queue, self.ctl.handle, self._apply
        if event is not None:
            if queue:  # (delivered during another's actions: after the results queued)
                queue.append(event)
            else:  # (the usual case: first in an empty queue, so handled at once)
                apply(handle(event))
        while queue:
            apply(handle(queue.pop(0)))

    def _apply(self, actions, initial: bool = False) -> None:
        get = _HANDLERS.get
        for action in actions:
            handler = get(type(action))
            if handler is None:  # a subclass: found once by isinstance, then by its type
                found = (h for t, h in _HANDLERS.items() if isinstance(action, t))
                handler = _HANDLERS[type(action)] = next(found, _nothing_to_do)
            handler(self, action, initial)

    def _start_timer(self, action: StartTimer, _initial: bool = False) -> None:
        """Arm timer ``key`` for now + delay. A timer restarted before an earlier call of it
        comes keeps that call, which then calls again at the new deadline: a progress deadline
        restarts at every pod change, one event per burst instead of one per pod. (So among
        events at the very same time, a carried timer runs after those scheduled before it was
        carried.) Each start is a new tuple (deadline,): its identity tells the current one."""
        key = action.key
        at = self.env.now + action.delay
        armed = self.timers[key] = (at,)
        calls = self.calls.get(key)
        if calls is None:
            calls = self.calls[key] = []
        if not calls or min(calls) >= at:  # (no earlier call will carry it)
            self._call_timer(key, armed)

    def _call_timer(self, key: str, armed: tuple[float]) -> None:
        """Call ``_timer`` at ``armed``'s deadline (a call's time is always its deadline)."""
        at = armed[0]
        self.calls[key].append(at)
        self.clock.call(at, self._timer, key, armed)

    def _timer(self, key: str, armed: tuple[float]) -> None:
        calls = self.calls[key]
        calls.remove(armed[0])
        current = self.timers.get(key)
        if current is not armed:  # cancelled (None), or restarted since: carry it to its
            # deadline, unless a later call still comes by then
            if current is not None and (not calls or min(calls) > current[0]):
                self._call_timer(key, current)
            return
        del self.timers[key]
        self.drafter.sync()
        fired = self.fired.get(key)
        if fired is None:  # (one event per key: the controller only reads it)
            fired = self.fired[key] = TimerFired(key)
        self._deliver(fired)

    def _status(self, action: StatusChanged) -> None:
        """The controller's phase changed: a person is asked to approve a manual pause, the
        promotion or the rollback is recorded (with the detector its typed cause names)."""
        self.recorder.mark("status", f"{action.status}: {action.reason}")
        cause = action.cause
        if isinstance(cause, AwaitingApproval):
            delay = float(self.world.operators.approval_delay.sample(self.streams(3)))
            token = self.approval_token = object()
            self.clock.call(self.env.now + delay, self._approve, token)
        elif action.status == "Promoted":
            self.recorder.promoted()
        elif action.rolls_back:
            self.recorder.rollback_began(cause)
            self.detectors.rollback_began(cause)
            self.recorder.check_mitigated()

    def _run_plugin(self, action: RunPlugin) -> None:
        """The step plugin runs in the world: its end is read after its drawn duration."""
        plugin = self.world.step_plugins[action.name]
        seconds, phase = plugin.draw(self.streams(9), self.release.is_bad)
        finished = PluginFinished(action.step, phase)
        self.clock.call(self.env.now + seconds, self._plugin_finished, finished)

    def _plugin_finished(self, event: PluginFinished) -> None:
        self.recorder.mark("plugin", f"steps[{event.step}]: {event.phase}")
        self.drafter.sync()
        self._deliver(event)

    def _approve(self, token: object) -> None:
        if token is self.approval_token:
            self.drafter.sync()
            self._deliver(Approved())

    def _pods_changed(self) -> None:
        self.drafter.sync()
        self._deliver(PodsChanged(self.pods.available()))

    def _rollback_request(self, source: str) -> None:
        self.drafter.sync()
        self._deliver(RollbackRequested(source))


def _nothing_to_do(_replication: Replication, _action: Any, _initial: bool) -> None:
    """An action the world has no part in (e.g. an analysis starting: its measurements come
    as Measure actions)."""


_HANDLERS: dict[type, Callable[[Replication, Any, bool], object]] = {
    StartTimer: Replication._start_timer,
    CancelTimer: lambda r, a, _i: r.timers.pop(a.key, None),
    Scale: lambda r, a, _i: r.pods.scale(a.group, a.replicas),
    SetWeight: lambda r, a, _i: r.router.set_weight(a.weight),
    SetSelectors: lambda r, a, i: r.router.set_selectors(a, initial=i),
    SetMatchRoute: lambda r, a, _i: r.router.set_match_route(a),
    SetMirror: lambda r, a, _i: r.router.set_mirror(a),
    SetLoad: lambda r, a, _i: r.router.set_load(a),
    SetSessionAffinity: lambda r, a, _i: r.router.set_session_affinity(a),
    Measure: lambda r, a, _i: r.queue.append(r.detectors.measure(a)),
    RunPlugin: lambda r, a, _i: r._run_plugin(a),
    StatusChanged: lambda r, a, _i: r._status(a),
}
"""What each controller action does in the world, by action type: handler(replication, action,
initial). One table for every replication (an action's subclass is added once found, and a
type with no handler too, as ``_nothing_to_do``)."""


class _Stop(Exception):
    """Internal: the horizon was reached, or nothing can change the outcome any more."""


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
        replication_key(seed, class_index, index),
        index=index,
        run_seed=seed,
        trace=trace,
    )
    outcome = replication.run()
    return (outcome, replication.trace) if trace else outcome
