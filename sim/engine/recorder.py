"""The outcome record of one replication, and its optional trace (DESIGN §5 "Outcomes").

While the clock runs it notes when the rollout was fully rolled out (as users see it: promoted,
and no request can reach the old version), when the rollback began and when it was done for
users (no request can reach the candidate), and whether anything could still change the record;
at the end it settles the tape's blast radius into the ``Outcome`` and builds the ``Trace``.
The detection record (``t_detect``, ``detected_by``) is written by the detectors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math

import numpy as np

from policies.controller import Cause
from policies.kept import kept_for_the_last
from sim.engine.cells import UserCells
from sim.engine.flows import flow_set
from sim.engine.outcome import Outcome, gate_fields
from sim.engine.tape import Tape
from sim.engine.trace import Trace
from sim.world.users import CHUNK

__all__ = ["Recorder"]


class Recorder:
    """Writes one replication's ``outcome`` (and, with ``trace``, its ``Trace``)."""

    def __init__(
        self,
        clock,
        outcome: Outcome,
        cw,
        release,
        tape: Tape,
        pods,
        router,
        cells: UserCells,
        *,
        sticky: bool,
        slot: float,
        horizon: float,
        trace: bool = False,
    ) -> None:
        self.env = clock.env
        self.outcome, self.world, self.release = outcome, cw.world, release
        self.tape, self.pods, self.router, self.cells = tape, pods, router, cells
        fault = release.fault
        self.segment = fault.segment if fault is not None else None
        self.sticky, self.slot, self.horizon = sticky, slot, horizon
        self.promoted_at: float | None = None
        self.noting = False  # promoted or rolling back: after_event has something to note
        self.events: list[dict] | None = [] if trace else None
        self.trace: Trace | None = None

    def __repr__(self) -> str:
        return f"Recorder({self.outcome.policy!r}, replication={self.outcome.replication})"

    def mark(self, kind: str, value, when: float | None = None) -> None:
        """A trace event (only when tracing)."""
        if self.events is not None:
            at = self.env.now if when is None else when
            self.events.append({"time": at, "kind": kind, "value": value})

    # ------------------------------------------------------------------ during the run

    def promoted(self) -> None:
        if self.promoted_at is None:  # rollout_duration: once no request reaches the old version
            self.promoted_at = self.env.now
        self.noting = True

    def rollback_began(self, cause: Cause) -> None:
        """The first abort or undo: when, and which gate (if any) caused it."""
        out = self.outcome
        if math.isnan(out.t_rollback_start):
            out.t_rollback_start = self.env.now
            out.gate_run, out.gate_metrics, out.gate_step = gate_fields(cause)
        self.noting = True

    def after_event(self, controller_finished: bool) -> bool:
        """After each event: note mitigation and full rollout; whether the outcome is settled.
        Until the release is promoted or its rollback begins there is nothing to note (most
        events: one test instead of three calls)."""
        if not self.noting:
            return False
        self.check_mitigated()  # pods, routes and DNS all change what reaches the candidate
        self.check_fully_rolled_out()
        return self.settled(controller_finished)

    def check_mitigated(self) -> None:
        """The rollback is done for users once no request can reach the candidate."""
        out = self.outcome
        if math.isnan(out.t_rollback_start) or not math.isnan(out.t_mitigated):
            return
        if not self._reaches("canary_idx"):  # users' requests only
            out.t_mitigated = self.env.now
            self.mark("mitigated", "")

    def check_fully_rolled_out(self) -> None:
        """Full rollout, as users see it: promoted, and no request can reach the old version
        (a DNS switch is complete only when the last client's TTL has run out)."""
        out = self.outcome
        if self.promoted_at is None or not math.isnan(out.rollout_duration):
            return
        if not math.isnan(out.t_rollback_start):
            return
        if not self._reaches("stable_idx"):  # users' requests only
            out.rollout_duration = self.env.now

    def _reaches(self, rows: str) -> bool:
        """Whether users' requests can reach the candidate (``rows`` "canary_idx") or the old
        version ("stable_idx") now. During a DNS switch, until its TTL has run out, at either
        address, whichever clients have moved so far: one that has not yet may still, and a
        switch back sends every client to the address it leaves (the reference's rule, as
        few clients as there may be)."""
        routing, serving = self.router.now_state(), self.pods.serving()
        moving = routing.dns_from is not None and self.env.now < routing.dns_start + routing.dns_ttl
        return any(
            getattr(flow_set(routing, serving, self.cells, self.segment, self.sticky, m), rows).size
            for m in ((0.0, 1.0) if moving else (1.0,))
        )

    def _now(self):
        """The routing state, the serving pods and the flows that requests meet now (during
        a DNS switch, from the clients at either address)."""
        routing, serving = self.router.now_state(), self.pods.serving()
        moved = routing.dns_moved(self.env.now)
        flows = flow_set(routing, serving, self.cells, self.segment, self.sticky, moved)
        return routing, serving, flows

    def settled(self, controller_finished: bool) -> bool:
        """Rolled back, no request reaches the candidate, the controller has nothing left to
        do, the candidate's pods are gone, and the old version serves as before the release:
        no routing change still on its way, every request served, by all its pods where
        capacity is finite. Then nothing later can change any outcome field. (Until then the
        old version's bad requests beyond its full-capacity self still count: a blue-green's
        switch back still in flight, old pods not yet in the endpoints.)"""
        if math.isnan(self.outcome.t_mitigated) or not controller_finished:
            return False
        router = self.router
        if router.state.dns_from is not None or router.in_flight:
            return False
        if not self.pods.candidate_gone():
            return False
        routing, serving, flows = self._now()
        if flows.any_unserved:
            return False
        return self.tape.capacity is None or (
            sum(serving.get(group, 0) for group in routing.stable) >= self.pods.n
        )

    # ------------------------------------------------------------------ the record

    def finish(self) -> Outcome:
        self.pods.count()
        tape, out = self.tape, self.outcome
        out.extra_pod_seconds = self.pods.extra_pod_seconds
        totals = tape.settle()
        out.failed_requests, out.slow_requests = totals.failed, totals.slow
        out.bad_requests, out.candidate_requests = totals.bad, totals.requests
        out.bad_requests_new, out.bad_requests_old = totals.bad_new, totals.bad_old
        out.excess_bad_requests = totals.excess
        blast = tape.blast
        out.users_hurt, out.users_with_bad = blast.users_hurt(), blast.users_with_bad()
        out.users_exposed = blast.users_exposed()
        blast.forget()
        if self.cells.n > CHUNK:  # a large population's temporaries: give their pages back
            _trim_heap()
        out.caused_bad_requests = totals.caused  # complete once the users are drawn
        if totals.t_fault is not None:
            out.t_fault = totals.t_fault
        expected, budget = _error_budget(self.world)
        out.error_budget_used = totals.excess / budget if expected else 0.0
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
        tape, slot, events = self.tape, self.slot, self.events
        assert events is not None  # only called when tracing
        n = max(1, math.ceil(min(self.env.now, self.horizon) / slot))
        return Trace(
            self.outcome.policy,
            self.release.name,
            self.outcome.replication,
            slot,
            np.arange(n) * slot,
            tape.c_req[:n].copy(),
            tape.c_err[:n].copy(),
            tape.s_req[:n].copy(),
            tape.s_err[:n].copy(),
            list(events),
        )


@kept_for_the_last
def _error_budget(world) -> tuple[float, float]:
    """The expected requests in the SLO period and the bad requests they allow (0 when none
    are expected): the same for every replication of a world."""
    slo = world.operators.slo
    expected = float(world.traffic.integral(0.0, slo.period))
    return expected, (slo.budget(expected) if expected else 0.0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _trim_heap() -> None:
    """Return the free pages of the heap to the system. Why: glibc raises its mmap threshold
    to the largest array freed (up to 32 MB), so a large population's per-user temporaries of
    a few MB land on the heap and stay there, fragmented, between replications: ~80 MB per
    worker at 10 M users. A millisecond, once per replication, only for large populations."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
