"""Who notices a bad release, and when: gates, burn-rate alerts, humans (DESIGN §5).

* A gate's measurement sees what a real query sees: whole scrape slots of its window, ending at
  the last scrape at or before now − scrapeDelay, from the tape's per-slot counts.
* The SLO burn-rate alert (sim/world/operators.py) is fed each draft's per-slot counts as the
  draft is drawn (from the first slot over its lowest threshold on: none can fire before), so
  it fires at its exact evaluation time; a cut withdraws what it had seen. It pages a person,
  who aborts after the acknowledgement and abort latencies.
* A human notices ``humanDetection`` after the fault began (first seen in a draft; a cut before
  that request withdraws the human, and the new draft's first faulted request schedules it
  again) and aborts after the abort latency.
* The detection record (``t_detect``, ``detected_by``) keeps the first detector: an alert or a
  human as it fires, the controller's own (a gate, the progress deadline) as the rollback it
  causes begins — read from the status's typed cause, never from its text.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from policies.controller import Cause, Measure, MeasurementTaken, detector
from policies.kept import kept_for_the_last
from sim.world.operators import BurnRateAlert

__all__ = ["Detectors"]

_NOTICED = object()  # the human's token once it has noticed (no cut schedules another)


class Detectors:
    """The gates' measurements, the alert, the human and the detection record of one
    replication. ``make_ops_rng()`` gives the operators' stream (made at its first draw);
    ``sync()`` brings the tape to now; ``mark(kind, value, when)`` records for the trace;
    ``request_rollback(source)`` hands an abort or undo to the controller."""

    def __init__(
        self,
        clock,
        cw,
        fault,
        tape,
        outcome,
        make_ops_rng: Callable[[], np.random.Generator],
        *,
        slot: float,
        sync: Callable[[], None],
        mark: Callable[..., None],
        request_rollback: Callable[[str], None],
    ) -> None:
        world = cw.world
        ops = self.operators = world.operators
        self.env, self.call = clock.env, clock.call
        self.tape, self.slot = tape, slot
        self.scrape_delay = world.platform.scrape_delay
        self.outcome, self.make_ops_rng = outcome, make_ops_rng
        self.sync, self.mark, self.request_rollback = sync, mark, request_rollback
        self.human_delay = (
            float(ops.human_detection.sample(make_ops_rng()))
            if fault is not None and ops.human_detection is not None
            else None
        )
        self.alert, self.alert_floor = _alert_of(cw)
        self.alert_may_fire = cw.baseline_bad >= self.alert_floor
        self.alert_scanned = 0  # slots scanned for one over the floor, while none is
        self.alert_token: object | None = None
        self.human_token: object | None = None

    def __repr__(self) -> str:
        return f"Detectors(alert={self.alert!r}, human_delay={self.human_delay})"

    # ------------------------------------------------------------------ gates

    def measure(self, action: Measure) -> MeasurementTaken:
        """The gate's observation of ``action.metric`` over its window, as of now."""
        slot = self.slot
        end = math.floor((self.env.now - self.scrape_delay) / slot + 1e-9) * slot
        self.sync()
        tape = self.tape
        obs = tape.observation(end, action.window, action.quantiles, action.series_step, tape.rng)
        return MeasurementTaken(action.run, action.metric, obs)

    # ------------------------------------------------------------------ the draft's news

    def drafted(self) -> None:
        """A draft was drawn: does the alert fire in it, has the fault begun?"""
        self._check_alert()
        self._check_fault_start()

    def cut(self, now: float) -> None:
        """The draft after ``now`` was discarded: the alert forgets the slots it saw there, and
        a human scheduled from a first faulted request in it waits for the new draft's."""
        token = self.human_token
        if token is not None and token is not _NOTICED and self.tape.totals.t_fault is None:
            self.human_token = None  # (the cut committed up to now: the fault began after it)
        if self.alert is not None:
            kept = int(now // self.slot)
            self.alert.truncate(kept)
            self.alert_scanned = min(self.alert_scanned, kept)
            if self.alert.firing is None:  # it was decided on slots the cut discarded
                self.alert_token = None

    # ------------------------------------------------------------------ the alert

    def _check_alert(self) -> None:
        alert = self.alert
        if alert is None or self.outcome.detected_by == "alert" or self.alert_token:
            return
        tape, slot = self.tape, self.slot
        complete = int(tape.drafted_until // slot + 1e-9)
        if not self.alert_may_fire:
            # no window can fire yet: the new slots are only scanned, and given to the alert
            # once one exceeds the floor (all at once: running sums add in order either way,
            # and no evaluation before could fire)
            scanned = self.alert_scanned
            if complete <= scanned:
                return
            req, bad = tape.svc_req[scanned:complete], tape.svc_bad[scanned:complete]
            self.alert_scanned = complete
            if not np.count_nonzero(bad > self.alert_floor * req):  # (strictly over: an
                return  # empty slot, 0 of 0, never is)
            self.alert_may_fire = True
        have = alert.n_slots
        if complete <= have:
            return
        req, bad = tape.svc_req[have:complete], tape.svc_bad[have:complete]
        fired = alert.append((have + 1) * slot, req, bad)
        if fired is not None:
            when = max(fired, self.env.now)
            token = self.alert_token = object()
            self.call(when, self._alert_fired, when, token)

    def _alert_fired(self, when: float, token: object) -> None:
        if token is not self.alert_token:
            return
        self.sync()
        self.detected(when, "alert")
        ops = self.operators
        ops_rng = self.make_ops_rng()
        delay = float(ops.acknowledgement.sample(ops_rng)) + float(
            ops.abort_latency.sample(ops_rng)
        )
        self.call(self.env.now + delay, self.request_rollback, "alert")

    # ------------------------------------------------------------------ the human

    def fault_start(self) -> float | None:
        """When the fault began: committed, or in the draft (a cut before it may move it)."""
        if self.tape.totals.t_fault is not None:
            return self.tape.totals.t_fault
        return self.tape.arrival.peek(self.tape.blocks)

    def _check_fault_start(self) -> None:
        """Schedule the human who notices the fault ``human_delay`` after it began."""
        if self.human_delay is None or self.human_token is not None:
            return
        began = self.fault_start()
        if began is not None:
            token = self.human_token = object()
            self.call(began + self.human_delay, self._human, token)

    def _human(self, token: object) -> None:
        if token is not self.human_token:
            return
        self.sync()
        began = self.fault_start()
        if began is None:  # the draft that showed the fault was discarded: wait for a new one
            self.human_token = None
            return
        now = self.env.now
        assert self.human_delay is not None  # scheduled by _check_fault_start only when set
        due = began + self.human_delay
        if due > now + 1e-9:  # the fault began later than that draft said
            token = self.human_token = object()
            self.call(due, self._human, token)
            return
        self.human_token = _NOTICED
        self.detected(now, "human")
        delay = float(self.operators.abort_latency.sample(self.make_ops_rng()))
        self.call(now + delay, self.request_rollback, "human")

    # ------------------------------------------------------------------ the record

    def detected(self, when: float, by: str) -> None:
        out = self.outcome
        if out.detected_by == "":
            out.t_detect = when
            out.detected_by = by
            self.mark("detect", by, when)

    def rollback_began(self, cause: Cause) -> None:
        """The controller began an abort or undo for ``cause``: its own detectors count now."""
        by = detector(cause)
        if by:
            self.detected(self.env.now, by)


def _alert_of(cw) -> tuple[BurnRateAlert | None, float]:
    """A new burn-rate alert (no slots seen) of ``cw``'s world and baseline (None: alerting
    off), and its floor: a window's bad ratio never exceeds its worst slot's, so until a slot
    (the history before the release at baseline included) exceeds the lowest threshold, with
    some slack, no rule can fire and the alert need not evaluate. (Its rules' parameters are
    worked out once per world: a copy of the alert costs less.)"""
    alert, floor = _alert_and_floor(cw)
    return (None if alert is None else alert.fresh()), floor


@kept_for_the_last
def _alert_and_floor(cw) -> tuple[BurnRateAlert | None, float]:
    world = cw.world
    alert = world.operators.burn_rate_alert(
        world.platform,
        pre_release_rate=float(world.traffic.rate_at(0.0)),
        baseline_error_ratio=cw.baseline_bad,
    )
    return alert, (alert.lowest_threshold * (1 - 1e-6) if alert else math.inf)
