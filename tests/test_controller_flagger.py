"""Flagger's control loop against reference/executors.md §A.3–§A.9 (ticks every ``interval``).

The new revision is detected at t = 0 (the canary is scaled up, nothing else); ticks follow
every interval. Four replicas; the primary's own rolling update uses 25 %/25 % (1 surge, 1
unavailable).
"""

from __future__ import annotations

import pytest
from harness import Driver, empty, failing, healthy

from policies import policy_from_yaml
from policies.common import RouteMatch, StringMatch
from policies.controller import (
    AwaitingApproval,
    Scale,
    SetMatchRoute,
    SetSelectors,
    SetWeight,
    StatusChanged,
)

METRICS = """  metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
"""


def flagger(analysis: str, *extra: str, kind: str = "Progressive"):
    head = "\n".join((f"kind: {kind}", "name: f", *extra, "analysis:"))
    return policy_from_yaml(head + "\n" + analysis + METRICS)


def canary(steps: str = "stepWeight: 20\n  maxWeight: 50", interval: str = "60s", *extra: str):
    return flagger(f"  interval: {interval}\n  {steps}\n", *extra)


def weights(d: Driver) -> list[tuple[float, float]]:
    return [(t, a.weight) for t, a in d.actions(SetWeight)]


def measured(d: Driver) -> list[float]:
    return sorted({t for t, _ in d.measures})


def scales(d: Driver, group: str) -> list[tuple[float, int]]:
    return [(t, a.replicas) for t, a in d.actions(Scale) if a.group == group]


def at_ticks(*times: float):
    """Healthy except at the listed tick times."""
    bad = set(times)
    return lambda t, m: failing(t, m) if t in bad else healthy(t, m)


# --------------------------------------------------------------------------- progressive weights


def test_step_weight_20_max_weight_50_goes_20_40_60_then_promotes():
    d = Driver(canary(), 4, startup=15).start().run(3000)
    assert scales(d, "canary") == [(0.0, 4), (360.0, 0)]
    assert weights(d) == [(60.0, 20.0), (120.0, 40.0), (180.0, 60.0), (300.0, 0.0)]
    assert measured(d) == [120.0, 180.0, 240.0]  # the first tick (60) runs no analysis
    assert (240.0, "Progressing", "Promoting") in d.statuses  # analysis at 60 % -> promote
    assert d.statuses[-1] == (300.0, "Promoted", "Succeeded")  # 100 % back to the primary
    assert d.ctl.phase == "Succeeded"


def test_step_weights_list():
    d = Driver(canary("stepWeights: [1, 2, 10, 80]", "30s"), 4, startup=5).start().run(3000)
    assert weights(d) == [(30.0, 1.0), (60.0, 2.0), (90.0, 10.0), (120.0, 80.0), (180.0, 0.0)]
    assert measured(d) == [60.0, 90.0, 120.0, 150.0]
    assert (150.0, "Progressing", "Promoting") in d.statuses


def test_readiness_waits_consume_ticks_without_counting():
    d = Driver(canary(), 4, startup=100).start().run(3000)
    assert weights(d)[0] == (120.0, 20.0)  # tick 60: canary not ready, nothing happens
    assert d.ctl.failed_checks == 0


# --------------------------------------------------------------------------- failed checks


def test_threshold_2_rolls_back_on_the_tick_after_the_second_failed_check():
    d = Driver(
        flagger("  interval: 60s\n  threshold: 2\n  stepWeight: 20\n  maxWeight: 50\n"),
        4,
        startup=15,
        observe=failing,
    ).start()
    d.run(3000)
    assert measured(d) == [120.0, 180.0]  # failed checks 1 and 2; no analysis at 240
    assert (120.0, "Progressing", "FailedCheck") in d.statuses
    assert d.statuses[-1] == (240.0, "Aborted", "FailedChecksThreshold")
    assert weights(d) == [(60.0, 20.0), (240.0, 0.0)]  # a failing tick does not advance
    assert scales(d, "canary") == [(0.0, 4), (240.0, 0)]
    assert d.ctl.failed_checks == 2


def test_failed_checks_are_cumulative():
    policy = flagger("  interval: 60s\n  threshold: 2\n  stepWeight: 20\n  maxWeight: 50\n")
    d = Driver(policy, 4, startup=15, observe=at_ticks(120.0, 240.0)).start().run(3000)
    assert weights(d) == [(60.0, 20.0), (180.0, 40.0), (300.0, 0.0)]
    assert measured(d) == [120.0, 180.0, 240.0]
    assert d.statuses[-1] == (300.0, "Aborted", "FailedChecksThreshold")


def test_default_threshold_1_rolls_back_on_the_next_tick():
    d = Driver(canary(), 4, startup=15, observe=at_ticks(180.0)).start().run(3000)
    assert weights(d) == [(60.0, 20.0), (120.0, 40.0), (240.0, 0.0)]
    assert d.statuses[-1] == (240.0, "Aborted", "FailedChecksThreshold")


def test_no_data_is_a_failed_check():
    d = Driver(canary(), 4, startup=15, observe=empty).start().run(3000)
    assert (120.0, "Progressing", "FailedCheck") in d.statuses
    assert d.statuses[-1] == (180.0, "Aborted", "FailedChecksThreshold")


def test_interval_below_10_seconds_is_clamped_to_10():
    d = Driver(canary(interval="5s"), 4, startup=5).start().run(3000)
    assert weights(d)[:3] == [(10.0, 20.0), (20.0, 40.0), (30.0, 60.0)]
    assert measured(d) == [20.0, 30.0, 40.0]


# --------------------------------------------------------------------------- A/B testing

AB = "  interval: 60s\n  iterations: 3\n  match: [{headers: {x-canary: {exact: insider}}}]\n"
INSIDERS = (RouteMatch(headers={"x-canary": StringMatch(exact="insider")}),)


def test_ab_iterations_n_gives_n_analyses_then_promotion():
    d = Driver(flagger(AB, kind="ABTest"), 4, startup=15).start().run(3000)
    routes = [(t, a.name, a.match) for t, a in d.actions(SetMatchRoute)]
    assert routes == [(60.0, "ab-test", INSIDERS), (300.0, "ab-test", ())]
    assert measured(d) == [120.0, 180.0, 240.0]
    assert (240.0, "Progressing", "Promoting") in d.statuses
    assert d.statuses[-1] == (300.0, "Promoted", "Succeeded")
    assert all(w == 0.0 for _, w in weights(d))  # unmatched users never see the canary


def test_ab_rollback_removes_the_match_route():
    d = Driver(flagger(AB, kind="ABTest"), 4, startup=15, observe=failing).start().run(3000)
    assert d.statuses[-1] == (180.0, "Aborted", "FailedChecksThreshold")
    assert [(t, a.match) for t, a in d.actions(SetMatchRoute)][-1] == (180.0, ())


# --------------------------------------------------------------------------- promotion


def test_promotion_rolls_the_primary_then_routes_all_traffic_to_it():
    d = Driver(canary(), 4, startup=100).start()
    states: list[tuple[int, int]] = []
    handle = d.ctl.handle

    def spy(event):
        out = handle(event)
        pods = ("stable", "primary")
        states.append((sum(d.ctl.desired[g] for g in pods), sum(d.ctl.available[g] for g in pods)))
        return out

    d.ctl.handle = spy
    d.run(3000)
    assert (300.0, "Progressing", "Promoting") in d.statuses
    primary = scales(d, "primary")
    assert primary[0] == (300.0, 1) and primary[-1] == (400.0, 4)
    assert scales(d, "stable")[-1] == (500.0, 0)  # the last old primary pod goes at 500
    assert weights(d)[-2:] == [(240.0, 60.0), (540.0, 0.0)]  # first tick after the rollout
    assert d.statuses[-1] == (540.0, "Promoted", "Succeeded")
    assert scales(d, "canary")[-1] == (600.0, 0)  # Finalising tick
    promoting = states[1:]
    assert max(total for total, _ in promoting) <= 5  # primary rolling update: 4 + 1 surge
    assert min(avail for _, avail in promoting) >= 3  # 4 − 1 unavailable
    assert [a.stable for _, a in d.actions(SetSelectors)][-1] == {"stable", "primary"}


def test_step_weight_promotion_shifts_back_gradually():
    policy = flagger("  interval: 60s\n  stepWeight: 50\n  stepWeightPromotion: 30\n")
    d = Driver(policy, 4, startup=15).start().run(3000)
    assert weights(d) == [
        (60.0, 50.0),
        (120.0, 100.0),
        (240.0, 70.0),
        (300.0, 40.0),
        (360.0, 10.0),
        (420.0, 0.0),
    ]
    assert d.statuses[-1] == (420.0, "Promoted", "Succeeded")


def test_skip_analysis_never_measures():
    policy = canary("stepWeight: 20", "60s", "skipAnalysis: true")
    d = Driver(policy, 4, startup=15, observe=failing).start().run(3000)
    assert d.measures == []
    assert d.status() == "Promoted"
    assert all(w == 0.0 for _, w in weights(d))


def test_skip_analysis_succeeds_on_the_first_ready_tick():
    policy = canary("stepWeight: 20", "60s", "skipAnalysis: true")
    d = Driver(policy, 4, startup=15).start().run(3000)
    assert d.statuses[-1] == (60.0, "Promoted", "Succeeded")
    assert scales(d, "canary") == [(0.0, 4), (60.0, 0)]


# --------------------------------------------------------------------------- progress deadline


def test_never_ready_canary_rolls_back():
    d = Driver(canary(), 4, startup=15, never_ready=frozenset({"canary"})).start().run(3000)
    assert d.statuses[-1][1:] == ("Aborted", "ProgressDeadlineExceeded")
    assert weights(d) == [] and d.measures == []
    assert scales(d, "canary")[-1][1] == 0


@pytest.mark.parametrize(
    ("interval", "deadline", "rolled_back_at"),
    [("70s", (), 630.0), ("60s", ("progressDeadlineSeconds: 100",), 120.0)],  # no ties
)
def test_never_ready_canary_rolls_back_on_a_tick(interval, deadline, rolled_back_at):
    policy = canary("stepWeight: 20\n  maxWeight: 50", interval, *deadline)
    d = Driver(policy, 4, startup=15, never_ready=frozenset({"canary"})).start().run(3000)
    assert d.statuses[-1] == (rolled_back_at, "Aborted", "ProgressDeadlineExceeded")


# --------------------------------------------------------------------------- the ticker's phase
# Flagger's ticker belongs to the Canary object, not to the release (scheduler.go
# ``scheduleCanaries``: ``time.NewTicker(analysisInterval)`` per Canary; job.go runs it): a new
# revision is noticed on the next tick, at a uniformly random phase of the interval.


def test_the_first_tick_comes_at_the_drawn_phase_and_the_schedule_follows_it():
    d = Driver(canary(), 4, startup=15, first_tick_s=37.5).start().run(3000)
    assert scales(d, "canary") == [(37.5, 4), (397.5, 0)]  # nothing before Flagger notices
    assert weights(d) == [(97.5, 20.0), (157.5, 40.0), (217.5, 60.0), (337.5, 0.0)]
    assert measured(d) == [157.5, 217.5, 277.5]
    assert d.statuses[0] == (0.0, "Progressing", "RolloutStarted")
    assert d.statuses[-1] == (337.5, "Promoted", "Succeeded")


@pytest.mark.parametrize("first", [None, 0.0])
def test_no_phase_is_a_tick_at_the_release_start(first):
    """None (or 0) keeps the older schedule: the revision is noticed at t = 0."""
    d = Driver(canary(), 4, startup=15, first_tick_s=first).start().run(3000)
    assert scales(d, "canary") == [(0.0, 4), (360.0, 0)]
    assert weights(d)[0] == (60.0, 20.0) and measured(d) == [120.0, 180.0, 240.0]


def test_the_phase_shifts_a_rollback_by_the_same_amount():
    policy = flagger("  interval: 60s\n  threshold: 2\n  stepWeight: 20\n  maxWeight: 50\n")
    d = Driver(policy, 4, startup=15, observe=failing, first_tick_s=12.0).start().run(3000)
    assert measured(d) == [132.0, 192.0]
    assert d.statuses[-1] == (252.0, "Aborted", "FailedChecksThreshold")


def test_a_rollback_before_the_first_tick_ends_the_release_at_once():
    d = Driver(canary(), 4, startup=15, first_tick_s=50.0).start()
    d.rollback_at(20.0)
    d.run(3000)
    assert d.statuses[-1] == (20.0, "Aborted", "RollbackRequested:human")
    assert scales(d, "canary") == [] and weights(d) == [] and d.measures == []  # nothing ran
    assert d.ctl.finished and "tick" not in d.ctl.timers


@pytest.mark.parametrize("first", [-1.0, 60.0, 61.0])
def test_the_phase_is_within_one_interval(first):
    with pytest.raises(ValueError, match="first_tick_s"):
        Driver(canary(), 4, first_tick_s=first).start()


def test_the_phase_is_a_constructor_setting_too():
    from policies.controller import FlaggerController

    ctl = FlaggerController(canary(), 4, first_tick_s=5.0)
    timers = [a for a in ctl.start() if type(a).__name__ == "StartTimer" and a.key == "tick"]
    assert [t.delay for t in timers] == [5.0]
    assert ctl.phase == "Initializing"


# --------------------------------------------------------------------------- confirm-* gates
# Flagger's manual gating (scheduler.go, scheduler_hooks.go; executors.md §A.3): each gate
# waits without counting until someone approves; Flagger sees the approval on its next tick.


def gated(gates: str, analysis: str = "  interval: 60s\n  stepWeight: 20\n  maxWeight: 50\n"):
    kind = "ABTest" if "match" in analysis else "Progressive"
    return flagger(analysis + f"  gates: [{gates}]\n", kind=kind)


def approving(d: Driver, delay: float) -> Driver:
    """A person who approves every gate ``delay`` seconds after the release reaches it."""
    handle = d.ctl.handle

    def spy(event):
        out = handle(event)
        for action in out:
            if isinstance(action, StatusChanged) and isinstance(action.cause, AwaitingApproval):
                d.approve_at(d.now + delay)
        return out

    d.ctl.handle = spy
    return d


def waits(d: Driver) -> list[tuple[float, str | None]]:
    return [(t, c.gate) for t, _, c in d.causes if isinstance(c, AwaitingApproval)]


def test_confirm_rollout_holds_the_canary_at_zero_until_approved():
    d = Driver(gated("confirm-rollout"), 4, startup=15).start()
    d.approve_at(100.0)
    d.run(3000)
    assert waits(d) == [(0.0, "confirm-rollout")]
    assert d.statuses[1] == (0.0, "Paused", "Waiting:confirm-rollout")
    assert scales(d, "canary") == [(120.0, 4), (480.0, 0)]  # the tick after the approval
    assert weights(d) == [(180.0, 20.0), (240.0, 40.0), (300.0, 60.0), (420.0, 0.0)]
    assert d.statuses[-1] == (420.0, "Promoted", "Succeeded")


def test_a_rollback_while_waiting_to_roll_out_ends_the_release_untouched():
    d = Driver(gated("confirm-rollout"), 4, startup=15).start()
    d.rollback_at(30.0)
    d.run(3000)
    assert d.statuses[-1] == (30.0, "Aborted", "RollbackRequested:human")
    assert scales(d, "canary") == [] and d.measures == [] and d.ctl.finished


def test_confirm_traffic_increase_asks_before_every_step_and_before_promotion():
    d = approving(Driver(gated("confirm-traffic-increase"), 4, startup=15), 10.0).start()
    d.run(3000)
    # asked at every healthy tick that would step; at maxWeight too (Flagger runs the hook
    # whenever nextStepWeight > 0, before runCanary decides to promote)
    assert [t for t, _ in waits(d)] == [60.0, 180.0, 300.0, 420.0]
    assert weights(d) == [(120.0, 20.0), (240.0, 40.0), (360.0, 60.0), (540.0, 0.0)]
    assert measured(d) == [180.0, 240.0, 300.0, 360.0, 420.0, 480.0]  # analysis goes on
    assert (480.0, "Progressing", "Promoting") in d.statuses
    assert d.ctl.failed_checks == 0


def test_failed_checks_count_while_a_traffic_increase_waits():
    policy = gated("confirm-traffic-increase")
    d = Driver(policy, 4, startup=15, observe=at_ticks(180.0)).start()
    d.approve_at(70.0)
    d.run(3000)
    assert weights(d) == [(120.0, 20.0), (240.0, 0.0)]
    assert d.statuses[-1] == (240.0, "Aborted", "FailedChecksThreshold")


def test_confirm_promotion_waits_at_max_weight_and_failures_still_count():
    d = Driver(gated("confirm-promotion"), 4, startup=15, observe=at_ticks(300.0)).start()
    d.run(3000)
    assert waits(d) == [(240.0, "confirm-promotion")]  # asked once, reported once
    assert weights(d) == [(60.0, 20.0), (120.0, 40.0), (180.0, 60.0), (360.0, 0.0)]
    assert d.statuses[-1] == (360.0, "Aborted", "FailedChecksThreshold")


def test_an_approved_promotion_goes_on_the_next_healthy_tick():
    d = Driver(gated("confirm-promotion"), 4, startup=15).start()
    d.approve_at(250.0)
    d.run(3000)
    assert (240.0, "Paused", "Waiting:confirm-promotion") in d.statuses
    assert (300.0, "Progressing", "Confirmed:confirm-promotion") in d.statuses
    assert (300.0, "Progressing", "Promoting") in d.statuses
    assert d.statuses[-1] == (360.0, "Promoted", "Succeeded")


@pytest.mark.parametrize(("approved", "promoting"), [(250.0, 300.0), (310.0, 420.0)])
def test_an_ab_test_waiting_for_promotion_steps_its_iterations_back(approved, promoting):
    """runConfirmPromotionHooks sets iterations to N-1 on a second refusal, so the next tick
    re-runs one iteration and only the one after asks again (scheduler_hooks.go)."""
    d = Driver(gated("confirm-promotion", AB), 4, startup=15).start()
    d.approve_at(approved)
    d.run(3000)
    assert waits(d) == [(240.0, "confirm-promotion")]
    assert d.status_at("Promoting") == promoting
    assert measured(d) == [t for t in (120.0, 180.0, 240.0, 300.0, 360.0, 420.0) if t <= promoting]


def test_an_ab_test_never_asks_confirm_traffic_increase():
    plain = Driver(flagger(AB, kind="ABTest"), 4, startup=15).start().run(3000)
    d = Driver(gated("confirm-traffic-increase", AB), 4, startup=15).start().run(3000)
    assert waits(d) == [] and d.statuses == plain.statuses
