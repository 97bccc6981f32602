"""The engine's controller timers (sim/engine/replication.py): a timer fires once, at its last
deadline, whatever restarts and cancels came before; a restart before an earlier call comes
adds no event of its own (a progress deadline restarts at every pod change)."""

from __future__ import annotations

import numpy as np
import pytest
from test_oracles import Bench, pause_canary, world

from policies import policy_from_yaml
from policies.controller import CancelTimer, StartTimer
from sim.engine.replication import Replication


@pytest.fixture(scope="module")
def bench() -> Bench:
    return Bench(world(None, horizon=3600, users={"count": 200}))


def _fired(bench: Bench, plan: list[tuple[float, object]]) -> tuple[list, int]:
    """Carry out ``plan`` (time, StartTimer or CancelTimer of key "k") on a replication whose
    controller is left out: (when "k" fired, how many timer events the clock ran)."""
    rep = Replication(
        bench.cw,
        bench.cells,
        policy_from_yaml(pause_canary(10)),
        bench.cw.world.releases["good"],
        np.random.SeedSequence(0),
    )
    fired: list = []
    rep._deliver = lambda event: fired.append((rep.env.now, event.key))  # type: ignore[method-assign]
    events = 0
    timer = rep._timer

    def counted(*args) -> None:
        nonlocal events
        events += 1
        timer(*args)

    rep._timer = counted  # type: ignore[method-assign]
    for at, action in plan:
        rep.clock.call(at, rep._apply, [action])
    rep.env.run(until=1000.0)
    return fired, events


def test_restarts_fire_once_at_the_last_deadline_with_one_carried_call(bench):
    plan = [(t, StartTimer("k", 100.0)) for t in (0.0, 10.0, 20.0, 30.0)]
    fired, events = _fired(bench, plan)
    assert fired == [(130.0, "k")]
    assert events == 2  # the first call (at 100) carries it to 130; the restarts add none


def test_a_cancelled_timer_never_fires(bench):
    fired, events = _fired(bench, [(0.0, StartTimer("k", 100.0)), (50.0, CancelTimer("k"))])
    assert fired == [] and events == 1


def test_a_restart_to_an_earlier_deadline_fires_then_and_only_then(bench):
    fired, _ = _fired(bench, [(0.0, StartTimer("k", 100.0)), (10.0, StartTimer("k", 20.0))])
    assert fired == [(30.0, "k")]


def test_cancel_then_restart_at_the_same_deadline_fires_once(bench):
    plan = [(0.0, StartTimer("k", 100.0)), (50.0, CancelTimer("k")), (60.0, StartTimer("k", 40.0))]
    fired, _ = _fired(bench, plan)
    assert fired == [(100.0, "k")]


def test_a_timer_fired_can_be_started_again(bench):
    plan = [(t, StartTimer("k", d)) for t, d in ((0.0, 10.0), (5.0, 10.0), (20.0, 5.0))]
    fired, _ = _fired(bench, plan)
    assert fired == [(15.0, "k"), (25.0, "k")]


def test_a_carried_timer_runs_after_events_scheduled_before_it_was_carried(bench):
    """Simultaneous events run in the order they were scheduled (clock.py); a restarted timer
    is scheduled when its earlier call carries it (at 100 here), after "j" (at 20)."""
    plan = [(0.0, StartTimer("k", 100.0)), (10.0, StartTimer("k", 100.0))]
    fired, _ = _fired(bench, [*plan, (20.0, StartTimer("j", 90.0))])
    assert fired == [(110.0, "j"), (110.0, "k")]
