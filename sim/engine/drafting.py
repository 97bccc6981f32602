"""When the tape draws traffic: ahead of the clock, cut when the world changes (DESIGN §5).

The tape (sim/engine/tape.py) draws requests in bulk under a constant world. This module says
under which world and how far: a *draft* runs from where the tape stands up to the next
scheduled event or a chunk ahead, whichever is later, so a burn-rate alert or a fault start
inside it is found at its exact time; the clock *commits* the draft as it passes; a world change
at t cuts the draft at t (the rest is drawn again under the new world). During a DNS switch
clients move one scrape slot at a time.

Drafting runs last at a moment: once every event due at that time has run (``after_event``),
so a world that changes several times at one instant is drawn once, as it ends up.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sim.engine.cells import UserCells
from sim.engine.flows import flow_set
from sim.engine.tape import Tape

if TYPE_CHECKING:
    from sim.engine.detectors import Detectors

__all__ = ["CHUNK_S", "Drafter"]

CHUNK_S = 1200.0  # how far ahead traffic is drafted when no event is nearer (measured:
# a draft costs about as much as 300 slots drawn and discarded by a cut; 600 s cost ~8 % more
# on the reference scenario, 3,600 s ~5 % more)


class Drafter:
    """Keeps one replication's tape drafted ahead of its clock. ``detectors`` are told of every
    draft (alerts and the fault's start are found in it) and of every cut."""

    def __init__(
        self,
        clock,
        tape: Tape,
        pods,
        router,
        cells: UserCells,
        fault,
        *,
        sticky: bool,
        slot: float,
        horizon: float,
    ) -> None:
        self.env = clock.env
        self.tape, self.pods, self.router, self.cells = tape, pods, router, cells
        self.segment = fault.segment if fault is not None else None
        self.sticky, self.slot, self.horizon = sticky, slot, horizon
        self.pending = False  # a draft is due once the events of this moment have run
        self.detectors: Detectors | None = None  # set by connect()

    def __repr__(self) -> str:
        return f"Drafter(drafted_until={self.tape.drafted_until}, pending={self.pending})"

    def connect(self, *, detectors: Detectors) -> None:
        self.detectors = detectors

    # ------------------------------------------------------------------ the clock's side

    def sync(self) -> None:
        """Bring the tape to now: draft under the unchanged world if needed, then commit."""
        now, tape = self.env.now, self.tape
        if tape.drafted_until < now:
            self.draft(now)
        tape.commit(now)

    def change(self) -> None:
        """The world is about to change now: commit up to now and drop the draft after it."""
        now = self.env.now
        self.sync()
        if self.tape.drafted_until > now:
            assert self.detectors is not None  # connected before the clock runs
            self.tape.cut(now)
            self.detectors.cut(now)
        self.schedule()

    def schedule(self) -> None:
        """A draft is due now, after the other events of this moment (``after_event``)."""
        self.pending = True

    def after_event(self) -> None:
        """After each event: keep the draft at least up to the next scheduled event (so an
        alert before it is found in time), drawing once no other event is due now."""
        env, horizon = self.env, self.horizon
        peek, now = env.peek(), env.now
        behind = self.tape.drafted_until < (peek if peek < horizon else horizon)  # min(...)
        if peek <= now:  # more events this moment: draw once they have run
            if behind:
                self.pending = True
        else:  # the last event of this moment: draw if behind, due or not
            self.pending = False
            if behind:
                self.draft(min(horizon, max(now + CHUNK_S, peek if peek < math.inf else now)))

    # ------------------------------------------------------------------ drawing

    def draft(self, target: float) -> None:
        tape, routing, cells, slot = self.tape, self.router.state, self.cells, self.slot
        detectors = self.detectors
        assert detectors is not None  # connected before the clock runs
        segment, sticky = self.segment, self.sticky
        t0 = tape.drafted_until
        serving = self.pods.serving()
        by_service = {
            "canary": sum(serving[g] for g in routing.canary),
            "stable": sum(serving[g] for g in routing.stable),
        }
        fault_state = self.pods.fault_state()
        dns_end = routing.dns_start + routing.dns_ttl
        if routing.dns_from is not None and t0 < dns_end:
            t = t0
            while t < min(target, dns_end):  # client by client: a slot or TTL / DNS_STEPS at a
                # time, ending at the next event (a cut there would keep the front of a piece
                # whose moved share rises inside it at the piece's mean share, as a cookie's)
                peek = self.env.peek()
                if t >= peek:
                    break
                step = min((math.floor(t / slot) + 1) * slot, t + routing.dns_ttl / DNS_STEPS)
                t1 = min(target, dns_end, step, peek)
                moved = _moved(tape.traffic, routing, t, t1)
                flows = flow_set(routing, serving, cells, segment, sticky, moved)
                dns = (routing.dns_start, routing.dns_ttl, moved)
                tape.draft(t, t1, flows, fault_state, by_service, dns)
                t = t1
            if tape.drafted_until < min(target, dns_end):  # drafted on after the next event
                detectors.drafted()
                return
        if routing.dns_from is not None and tape.drafted_until >= dns_end:
            routing = routing._replace(dns_from=None)  # past the TTL every client has moved
        if routing.cookie is not None:  # session affinity: the cookie holders, slot by slot
            cookies = self.router.cookies
            t = tape.drafted_until
            while t < target:
                t1 = min(target, cookies.steady_until(t))
                if t1 <= t:  # the range moves: one slot at a time, ending at the next event
                    # (a cut there would keep the front of a piece whose share rises inside it
                    # at the piece's mean share, and discard the rest)
                    peek = self.env.peek()
                    if t >= peek:
                        break
                    t1 = min(target, (math.floor(t / slot) + 1) * slot, peek)
                piece = routing._replace(cookie=cookies.piece(t, t1))
                flows = flow_set(piece, serving, cells, segment, sticky)
                tape.draft(t, t1, flows, fault_state, by_service)
                t = t1
        elif tape.drafted_until < target:
            flows = flow_set(routing, serving, cells, segment, sticky)
            tape.draft(tape.drafted_until, target, flows, fault_state, by_service)
        detectors.drafted()


DNS_STEPS = 8
"""A DNS switch is drafted in pieces of at most TTL / DNS_STEPS (and a slot): within a piece
the moved clients are one set, so a client's time on either address is its uniform switch
time rounded to a piece; 8 steps leave 1/64 of a whole-TTL piece's error in users_exposed
(session 17: 893.5 ± 1.6 against the closed form's 894.8, where one piece gave 879.7)."""


def _moved(traffic, routing, t0: float, t1: float) -> float:
    """The share of [t0, t1)'s requests sent by clients that have moved: (t − start)/TTL
    averaged over the requests (over time when none come)."""
    requests = float(traffic.integral(t0, t1))
    if requests <= 0:
        return routing.dns_moved(0.5 * (t0 + t1))
    mean = float(traffic.moment(t0, t1, routing.dns_start)) / (routing.dns_ttl * requests)
    return min(max(mean, 0.0), 1.0)
