"""Flagger's blue/green, traffic mirroring, load tests and session affinity, driven tick by tick
against reference/executors.md §A.3-§A.6 and fluxcd/flagger ``pkg/controller/scheduler.go``
(``runCanary``, ``runBlueGreen``) and ``pkg/router/istio.go`` (``SetRoutes``).

The new revision is detected at t = 0; ticks every 60 s; four replicas that start in 15 s. The
gate sees what Flagger sees: ``traffic_only`` answers a measurement with no canary requests
unless something sent the canary traffic before the tick (a weight, a mirror or a load test),
as Flagger's built-in queries return no value for a canary nobody called.
"""

from __future__ import annotations

import pytest
from harness import Driver, empty, healthy

from policies import policy_from_yaml
from policies.controller import (
    Measure,
    Scale,
    SetLoad,
    SetMirror,
    SetSessionAffinity,
    SetWeight,
)
from policies.errors import PolicyError

METRICS = """  metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
"""


def flagger(analysis: str, *extra: str):
    head = "\n".join(("kind: Progressive", "name: f", *extra, "analysis:"))
    return policy_from_yaml(head + "\n  interval: 60s\n" + analysis + METRICS)


def at(d: Driver, kind) -> list[tuple[float, object]]:
    return [(t, a) for t, a in d.actions(kind)]


def weights(d: Driver) -> list[tuple[float, float]]:
    return [(t, a.weight) for t, a in d.actions(SetWeight)]


def mirrors(d: Driver) -> list[tuple[float, float]]:
    return [(t, a.percent) for t, a in d.actions(SetMirror)]


def loads(d: Driver) -> list[tuple[float, float]]:
    return [(t, a.rate) for t, a in d.actions(SetLoad)]


def measured(d: Driver) -> list[float]:
    return sorted({t for t, _ in d.measures})


def traffic_only(holder: list[Driver]):
    """Healthy data if the canary got requests before ``t`` (weight, mirror or load), else none."""

    def observe(t: float, m: Measure):
        d = holder[0]
        state = {SetWeight: 0.0, SetMirror: 0.0, SetLoad: 0.0}
        for when, action in d.log:
            if when < t and type(action) in state:
                state[type(action)] = getattr(
                    action,
                    ("weight", "percent", "rate")[
                        [SetWeight, SetMirror, SetLoad].index(type(action))
                    ],
                )
        return healthy(t, m) if any(v > 0 for v in state.values()) else empty(t, m)

    return observe


def drive(policy, observe=None, until: float = 5000.0) -> Driver:
    holder: list[Driver] = []
    d = Driver(policy, 4, startup=15, observe=observe or traffic_only(holder))
    holder.append(d)
    return d.start().run(until)


# --------------------------------------------------------------------------- mirror in a canary


def test_mirrored_canary_mirrors_one_step_then_shifts_weight_with_the_mirror_off():
    policy = flagger("  stepWeight: 20\n  maxWeight: 40\n  mirror: true\n  mirrorWeight: 50\n")
    d = drive(policy)
    assert mirrors(d) == [(60.0, 50.0), (120.0, 0.0)]  # tick 1 mirrors; tick 2 shifts
    assert weights(d) == [(120.0, 20.0), (180.0, 40.0), (300.0, 0.0)]
    assert measured(d) == [120.0, 180.0, 240.0]  # mirrored at weight 0: analysed at tick 2
    assert (240.0, "Progressing", "Promoting") in d.statuses
    assert d.ctl.phase == "Succeeded"


def test_mirror_without_weight_percent_copies_every_request():
    d = drive(flagger("  stepWeight: 50\n  mirror: true\n"))
    assert mirrors(d)[0] == (60.0, 100.0)


def test_mirrored_canary_skips_confirm_traffic_increase_while_mirrored():
    policy = flagger(
        "  stepWeight: 20\n  maxWeight: 20\n  mirror: true\n  gates: [confirm-traffic-increase]\n"
    )
    holder: list[Driver] = []
    d = Driver(policy, 4, startup=15, observe=traffic_only(holder))
    holder.append(d)
    d.start().run(100)  # tick 1 asks (not mirrored yet): closed
    assert mirrors(d) == [] and d.statuses[-1][1] == "Paused"
    d.approve_at(110)
    d.run(5000)
    assert mirrors(d) == [(120.0, 100.0), (180.0, 0.0)]  # no second approval while mirrored
    assert weights(d)[0] == (180.0, 20.0)


# --------------------------------------------------------------------------- blue/green


def test_blue_green_without_traffic_fails_its_checks_as_flagger_does():
    d = drive(flagger("  iterations: 3\n"))
    assert measured(d) == [120.0]  # weight 0, no mirror, no load test: no value
    assert d.statuses[-1] == (180.0, "Aborted", "FailedChecksThreshold")
    assert weights(d) == []  # never switched


def test_blue_green_with_load_test_runs_n_plus_1_analyses_switch_then_promotes():
    policy = flagger("  iterations: 3\n  threshold: 2\n  loadTest: {rate: 20, concurrency: 2}\n")
    d = drive(policy)
    assert loads(d) == [(120.0, 20.0), (360.0, 0.0)]  # from the first analysis to promotion
    # tick 120: hey only just started, the window holds no canary request: one failed check
    assert d.ctl.failed_checks == 1
    assert measured(d) == [120.0, 180.0, 240.0, 300.0, 360.0]
    assert weights(d) == [(300.0, 100.0), (420.0, 0.0)]  # switch, then back to the primary
    assert (360.0, "Progressing", "Promoting") in d.statuses
    assert [(t, a.replicas) for t, a in d.actions(Scale) if a.group == "canary"] == [
        (0.0, 4),
        (480.0, 0),
    ]
    assert d.ctl.phase == "Succeeded"


def test_blue_green_mirror_runs_for_the_iterations_and_stops_at_the_switch():
    d = drive(flagger("  iterations: 2\n  mirror: true\n"))
    assert mirrors(d) == [(60.0, 100.0), (180.0, 0.0)]
    assert weights(d) == [(180.0, 100.0), (300.0, 0.0)]
    assert measured(d) == [120.0, 180.0, 240.0]  # N + 1 analyses, all with canary traffic
    assert d.ctl.failed_checks == 0


def test_blue_green_confirm_promotion_waits_before_the_switch():
    policy = flagger(
        "  iterations: 2\n  mirror: true\n  gates: [confirm-promotion]\n", "provider: istio"
    )
    holder: list[Driver] = []
    d = Driver(policy, 4, startup=15, observe=traffic_only(holder))
    holder.append(d)
    d.start().run(400)
    assert weights(d) == []  # waiting at the gate: still mirrored, no live traffic
    assert d.ctl.waiting_promotion
    d.approve_at(410)
    d.run(5000)
    # WaitingPromotion drops one iteration on every other tick (runConfirmPromotionHooks), so
    # the gate is asked at 180, 240, 360, 480: the approval at 410 is seen at 480
    assert weights(d)[0] == (480.0, 100.0)
    assert d.ctl.phase == "Succeeded"


def test_kubernetes_provider_forces_ten_iterations_and_never_routes():
    policy = flagger("  threshold: 2\n  loadTest: {rate: 10}\n", "provider: kubernetes")
    assert policy.blue_green and policy.effective_iterations == 10
    d = drive(policy)
    assert weights(d) == [] and mirrors(d) == []  # no router
    # 120 fails (hey just started), then N + 1 = 11 healthy analyses
    assert measured(d) == [60.0 * k for k in range(2, 14)]
    assert d.ctl.failed_checks == 1
    assert (780.0, "Progressing", "Promoting") in d.statuses
    assert d.statuses[-1] == (840.0, "Promoted", "Succeeded")  # primary rolled: Finalising
    assert d.ctl.phase == "Succeeded"


# --------------------------------------------------------------------------- load tests


def test_pre_rollout_load_test_runs_for_its_duration_from_the_pre_rollout_tick():
    policy = flagger("  stepWeight: 50\n  loadTest: {rate: 30, duration: 90s, type: pre-rollout}\n")
    d = drive(policy, observe=healthy)
    assert loads(d) == [(60.0, 30.0), (150.0, 0.0)]


def test_load_test_stops_at_rollback():
    policy = flagger("  iterations: 5\n  loadTest: {rate: 20}\n")
    d = drive(policy)  # the first analysis has no data: threshold 1 rolls back next tick
    assert loads(d) == [(120.0, 20.0), (180.0, 0.0)]
    assert d.statuses[-1] == (180.0, "Aborted", "FailedChecksThreshold")


# --------------------------------------------------------------------------- session affinity


def test_session_affinity_follows_the_weight_until_promotion():
    policy = flagger(
        "  stepWeight: 20\n  maxWeight: 40\n  sessionAffinity: {cookieName: c, maxAge: 3600}\n"
    )
    d = drive(policy, observe=healthy)
    sticky = [(t, a.max_age_s) for t, a in d.actions(SetSessionAffinity)]
    assert sticky == [(60.0, 3600.0), (240.0, 0.0)]  # with weight 20; expired at the route back
    assert weights(d)[-1] == (240.0, 0.0)


def test_session_affinity_cookie_expires_at_rollback_and_defaults_to_a_day():
    policy = flagger("  stepWeight: 20\n  sessionAffinity: {cookieName: c}\n")
    d = drive(policy, observe=empty)
    sticky = [(t, a.max_age_s) for t, a in d.actions(SetSessionAffinity)]
    assert sticky == [(60.0, 86400.0), (180.0, 0.0)]
    assert d.statuses[-1] == (180.0, "Aborted", "FailedChecksThreshold")


# --------------------------------------------------------------------------- what Flagger refuses


@pytest.mark.parametrize(
    ("analysis", "extra", "words"),
    [
        ("  stepWeight: 10\n  mirror: true\n", "provider: nginx", "does not mirror"),
        ("  stepWeight: 10\n  mirror: true\n", "provider: gatewayapi", "blue/green only"),
        ("  iterations: 2\n  mirror: true\n  mirrorWeight: 10\n", "provider: gatewayapi", "%"),
        ("  stepWeight: 10\n  sessionAffinity: {cookieName: c}\n", "provider: nginx", "cookie"),
        ("  stepWeight: 10\n  mirrorWeight: 10\n", "provider: istio", "mirror: true"),
    ],
)
def test_policy_refuses_what_flagger_cannot_do(analysis, extra, words):
    with pytest.raises(PolicyError) as info:
        flagger(analysis, extra)
    message = str(info.value)
    assert (words in message) if words != "%" else ("percentage" in message)


def test_kubernetes_weights_are_ignored_as_flagger_ignores_them():
    policy = flagger("  stepWeight: 10\n  maxWeight: 50\n", "provider: kubernetes")
    assert policy.blue_green and policy.effective_iterations == 10
    assert policy.weight_schedule() == []
    d = drive(policy, observe=healthy)
    assert weights(d) == [] and len(measured(d)) == 11


def test_gateway_api_blue_green_mirror_is_accepted():
    policy = flagger("  iterations: 2\n  mirror: true\n", "provider: gatewayapi")
    assert policy.blue_green and policy.analysis.mirror_percent == 100.0
