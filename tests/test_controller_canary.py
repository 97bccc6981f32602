"""Argo Rollouts canary controller against reference/argo-rollouts.md §1–§4 (times in seconds).

Pods become available ``startup`` seconds after they are asked for; the world answers each
measurement with ``observe``. Error-rate conditions: < 5 % succeeds, > 10 % fails, between is
Inconclusive.
"""

from __future__ import annotations

import pytest
from harness import Driver, empty, failing, healthy

from policies import policy_from_yaml
from policies.common import RouteMatch, StringMatch
from policies.controller import Scale, SetMatchRoute, SetSelectors, SetWeight, StartAnalysis
from policies.controller import StopAnalysis as Stop
from policies.measures import Observation, WindowStats

TEMPLATES = """
analysisTemplates:
  - name: err
    metrics:
      - name: err
        interval: 60s
        count: 3
        successCondition: result < 0.05
        failureCondition: result > 0.10
        provider: {query: {measure: errorRate}}
  - name: slow
    metrics:
      - name: slow
        initialDelay: 45s
        successCondition: result < 0.05
        provider: {query: {measure: errorRate}}
  - name: bg
    metrics:
      - name: bg
        interval: 60s
        successCondition: result < 0.05
        failureCondition: result > 0.10
        provider: {query: {measure: errorRate}}
"""
ISTIO = "trafficRouting: {istio: {}}"
BETA_ROUTE = (
    "  - setHeaderRoute:\n"
    "      name: beta\n"
    "      match: [{headerName: x-beta, headerValue: {exact: 'true'}}]\n"
)


def canary(steps: str, *extra: str):
    head = "\n".join(("kind: Canary", "name: c", *extra, "steps:"))
    return policy_from_yaml(head + "\n" + steps + TEMPLATES)


def inconclusive(t: float, measure) -> Observation:
    """7 % errors: neither < 5 % nor > 10 %."""
    return Observation(t - measure.window, t, WindowStats(1000, 70), WindowStats(1000, 0))


def switch(at: float, before=healthy, after=failing):
    """Answer with ``before`` up to time ``at`` and with ``after`` later."""
    return lambda t, m: after(t, m) if t > at else before(t, m)


def scales(d: Driver, group: str | None = None) -> list[tuple[float, str, int]]:
    return [
        (t, a.group, a.replicas) for t, a in d.actions(Scale) if group is None or a.group == group
    ]


def set_weights(d: Driver) -> list[tuple[float, float]]:
    return [(t, a.weight) for t, a in d.actions(SetWeight)]


def record_states(d: Driver) -> list[tuple[float, int, int]]:
    """(time, Σ desired pods, Σ available pods) after every event the controller handles."""
    states: list[tuple[float, int, int]] = []
    handle = d.ctl.handle

    def wrapped(event):
        out = handle(event)
        states.append((d.now, sum(d.ctl.desired.values()), sum(d.ctl.available.values())))
        return out

    d.ctl.handle = wrapped
    return states


# --------------------------------------------------------------------------- step analysis

STEP_ANALYSIS = """
  - setWeight: 20
  - analysis: {templates: [{templateName: err}]}
  - setWeight: 50
"""


def test_one_failed_measurement_aborts_with_argo_defaults():
    """failureLimit 0: the first failed measurement fails the run and aborts (§4.3, §4.5)."""
    d = Driver(canary(STEP_ANALYSIS, ISTIO), 10, startup=30, observe=failing).start().run(1000)
    assert [t for t, _ in d.measures] == [30.0]
    assert d.statuses[-1] == (30.0, "Aborted", "StepAnalysisFailed")
    assert set_weights(d) == [(30.0, 20.0), (30.0, 0.0)]
    assert scales(d, "canary") == [(0.0, "canary", 2), (60.0, "canary", 0)]


def test_successful_step_analysis_completes_after_count_measurements():
    d = Driver(canary(STEP_ANALYSIS, ISTIO), 10, startup=30).start().run(1000)
    assert [t for t, _ in d.measures] == [30.0, 90.0, 150.0]
    assert [(t, a.phase) for t, a in d.actions(Stop)] == [(150.0, "Successful")]
    assert scales(d, "canary")[1] == (150.0, "canary", 5)
    assert d.status_at("RolloutCompleted") == 210.0


def test_five_errors_ten_seconds_apart_abort():
    """An empty window is an Error, retried after 10 s; five in a row are an Error (§4.1, §4.3)."""
    d = Driver(canary(STEP_ANALYSIS, ISTIO), 10, startup=30, observe=empty).start().run(1000)
    assert [t for t, _ in d.measures] == [30.0, 40.0, 50.0, 60.0, 70.0]
    assert d.statuses[-1] == (70.0, "Aborted", "StepAnalysisError")


def test_initial_delay_postpones_the_first_measurement():
    steps = "  - setWeight: 20\n  - analysis: {templates: [{templateName: slow}]}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=30).start().run(1000)
    assert [t for t, _ in d.measures] == [75.0]
    assert scales(d, "canary")[1] == (75.0, "canary", 10)


def test_inconclusive_step_analysis_pauses_and_promote_skips_the_step():
    d = Driver(canary(STEP_ANALYSIS, ISTIO), 10, startup=30, observe=inconclusive).start()
    d.approve_at(200)
    d.run(1000)
    assert (30.0, "Paused", "InconclusiveAnalysisRun") in d.statuses
    assert len(d.measures) == 1  # the run is not measured again
    assert scales(d, "canary")[1] == (200.0, "canary", 5)  # the next setWeight starts at once
    assert set_weights(d)[:2] == [(30.0, 20.0), (230.0, 50.0)]
    assert d.status_at("RolloutCompleted") == 260.0


def test_promote_during_a_running_step_analysis_skips_the_step():
    d = Driver(canary(STEP_ANALYSIS, ISTIO), 10, startup=30).start()
    d.approve_at(60)
    d.run(1000)
    assert [(t, a.phase) for t, a in d.actions(Stop)] == [(60.0, "Successful")]
    assert scales(d, "canary")[1] == (60.0, "canary", 5)
    assert d.status_at("RolloutCompleted") == 120.0


# --------------------------------------------------------------------------- background analysis

RAMP = """
  - setWeight: 20
  - pause: {duration: 100}
  - setWeight: 50
  - pause: {duration: 100}
"""
BACKGROUND = "analysis: {templates: [{templateName: bg}]}"


def background(starting_step: int) -> str:
    return f"analysis: {{templates: [{{templateName: bg}}], startingStep: {starting_step}}}"


def test_background_analysis_never_blocks_promotion():
    d = Driver(canary(RAMP, ISTIO, BACKGROUND), 10, startup=30).start().run(2000)
    assert [t for t, _ in d.measures] == [0.0, 60.0, 120.0, 180.0, 240.0]
    assert d.status_at("RolloutCompleted") == 290.0  # 30 + 100 + 30 + 100 + 30
    assert [(t, a.run, a.phase) for t, a in d.actions(Stop)] == [
        (290.0, "background", "Successful")  # a terminated unbounded run is Successful
    ]


def test_background_failure_aborts():
    d = Driver(canary(RAMP, ISTIO, BACKGROUND), 10, startup=30, observe=switch(100)).start()
    d.run(2000)
    assert d.statuses[-1] == (120.0, "Aborted", "BackgroundAnalysisFailed")
    assert set_weights(d)[-1] == (120.0, 0.0)


def test_background_analysis_starts_at_starting_step():
    d = Driver(canary(RAMP, ISTIO, background(2)), 10, startup=30)
    d.start().run(2000)
    assert [t for t, a in d.actions(StartAnalysis)] == [130.0]  # step 2 begins when the pause ends


def test_inconclusive_background_run_pauses_and_resume_creates_a_new_run():
    steps = "  - setWeight: 20\n  - setWeight: 40\n  - setWeight: 60\n"
    policy = canary(steps, ISTIO, background(1))
    d = Driver(policy, 10, startup=30, observe=switch(40, inconclusive, healthy)).start()
    d.approve_at(100)
    d.run(2000)
    assert (30.0, "Paused", "InconclusiveAnalysisRun") in d.statuses
    assert [(t, a.run) for t, a in d.actions(StartAnalysis)] == [
        (30.0, "background"),
        (100.0, "background"),
    ]
    assert d.status_at("RolloutCompleted") == 160.0


def test_promote_clears_a_pause_step_and_an_inconclusive_background_pause():
    policy = canary(RAMP, ISTIO, background(1))
    d = Driver(policy, 10, startup=30, observe=switch(40, inconclusive, healthy)).start()
    d.approve_at(50)
    d.run(5000)
    assert d.status() == "Promoted"


# --------------------------------------------------------------------------- pauses and weights


@pytest.mark.parametrize("startup", [0.0, 30.0, 45.0])
def test_pause_timer_starts_when_the_set_weight_pods_are_available(startup):
    steps = "  - setWeight: 20\n  - pause: {duration: 60}\n  - setWeight: 50\n  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=startup).start().run(10_000)
    assert d.status_at("CanaryPauseStep") == startup
    assert d.status_at("PauseEnded") == startup + 60
    assert d.statuses[-1] == (2 * startup + 60, "Paused", "CanaryPauseStep")
    assert d.status() == "Paused"  # pause {} waits; no progress deadline while paused


def test_pause_without_duration_waits_for_approval():
    d = Driver(canary("  - setWeight: 20\n  - pause: {}\n", ISTIO), 10, startup=30).start()
    d.approve_at(1000)
    d.run(5000)
    assert d.statuses[1:] == [
        (30.0, "Paused", "CanaryPauseStep"),
        (1000, "Progressing", "PauseEnded"),
        (1030.0, "Promoted", "RolloutCompleted"),
    ]


def test_router_weight_moves_only_once_canary_pods_are_available():
    d = Driver(canary("  - setWeight: 20\n  - setWeight: 50\n", ISTIO), 10, startup=30)
    d.start().run(1000)
    assert scales(d, "canary") == [(0.0, "canary", 2), (30.0, "canary", 5), (60.0, "canary", 10)]
    assert set_weights(d) == [(30.0, 20.0), (60.0, 50.0), (90.0, 100.0), (90.0, 0.0)]
    assert scales(d, "stable") == [(120.0, "stable", 0)]  # scaleDownDelaySeconds 30


def test_first_step_pause_runs_with_zero_canary_pods():
    d = Driver(canary("  - pause: {duration: 50}\n  - setWeight: 50\n", ISTIO), 10, startup=30)
    d.start().run(1000)
    assert scales(d, "canary")[0] == (50.0, "canary", 5)


# --------------------------------------------------------------------------- basic canary


def test_basic_canary_three_replicas_at_weight_5_is_a_quarter_of_the_pods():
    d = Driver(canary("  - setWeight: 5\n  - pause: {}\n"), 3, startup=10).start().run(100)
    assert scales(d) == [(0.0, "canary", 1)]  # N+1 total: 1 canary beside 3 stable
    assert d.available["canary"] / (d.available["canary"] + d.available["stable"]) == 0.25


def test_basic_canary_share_is_the_pod_share():
    d = Driver(canary("  - setWeight: 5\n  - pause: {}\n"), 3, startup=10).start().run(100)
    assert d.actions(SetSelectors)
    assert d.canary_share() == 0.25


def test_basic_canary_n10_scales_the_stable_down_before_the_canary_up():
    """§2.2 worked trajectory (pods here become ready one at a time)."""
    d = Driver(canary("  - setWeight: 20\n  - setWeight: 50\n"), 10, startup=10)
    states = record_states(d)
    d.start().run(5000)
    assert scales(d)[:2] == [(0.0, "stable", 8), (0.0, "canary", 2)]
    assert [(g, n) for _, g, n in scales(d)] == [
        ("stable", 8),
        ("canary", 2),  # w=20
        ("stable", 6),
        ("canary", 5),
        ("stable", 5),  # w=50
        ("stable", 3),
        ("canary", 10),
        ("stable", 2),
        ("stable", 1),
        ("stable", 0),  # end
    ]
    assert d.status() == "Promoted"
    assert max(total for _, total, _ in states) <= 13  # N + surge
    assert min(avail for _, _, avail in states) >= 8  # N − maxUnavailable


def test_basic_canary_next_step_starts_as_soon_as_the_pods_are_ready():
    d = Driver(canary("  - setWeight: 20\n  - setWeight: 50\n"), 10, startup=10)
    d.start().run(5000)
    assert scales(d)[2:5] == [(10.0, "stable", 6), (10.0, "canary", 5), (20.0, "stable", 5)]
    assert d.status_at("RolloutCompleted") == 30.0


def test_basic_canary_pause_timer_starts_when_the_pods_are_available():
    steps = "  - setWeight: 20\n  - pause: {duration: 60}\n  - setWeight: 50\n"
    d = Driver(canary(steps), 10, startup=30).start().run(5000)
    assert (30.0, "Paused", "CanaryPauseStep") in d.statuses
    assert (90.0, "Progressing", "PauseEnded") in d.statuses


def test_basic_abort_walks_back_within_the_fences():
    steps = "  - setWeight: 20\n  - pause: {}\n  - setWeight: 60\n  - pause: {}\n"
    d = Driver(canary(steps), 10, startup=30)
    states = record_states(d)
    d.start()
    d.approve_at(40)  # two approvals reach w=60 whether or not the pause step starts late
    d.approve_at(50)
    d.rollback_at(200)
    d.run(5000)
    before = [(g, n) for t, g, n in scales(d) if t < 200]
    assert before[-2:] == [("stable", 5), ("stable", 4)]  # w=60: canary 6, stable 4
    assert ("canary", 6) in before
    after = [(t, g, n) for t, g, n in scales(d) if t >= 200]
    assert after[:3] == [(200, "stable", 7), (200, "canary", 4), (200, "stable", 9)]
    assert after[-1] == (230.0, "canary", 0)  # not instant: the stable pods start first
    assert (200, "Aborted", "RollbackRequested:human") in d.statuses
    aborting = [s for s in states if s[0] >= 200]
    assert max(total for _, total, _ in aborting) <= 13
    assert min(avail for _, _, avail in aborting) >= 8


# --------------------------------------------------------------------------- abort under TR


@pytest.mark.parametrize(
    ("delay", "canary_gone_at"),
    [(None, 130.0), ("0", 100.0), ("45", 145.0)],  # 30 s default; 0 without setCanaryScale
)
def test_abort_under_traffic_routing(delay, canary_gone_at):
    extra = [ISTIO] + ([f"abortScaleDownDelaySeconds: {delay}"] if delay else [])
    d = Driver(canary("  - setWeight: 20\n  - pause: {}\n", *extra), 10, startup=30).start()
    d.rollback_at(100)
    d.run(1000)
    assert set_weights(d) == [(30.0, 20.0), (100, 0.0)]  # one router write, at once
    assert d.statuses[-1] == (100, "Aborted", "RollbackRequested:human")
    assert scales(d, "canary")[-1] == (canary_gone_at, "canary", 0)
    assert scales(d, "stable") == []  # the stable stayed at N throughout


def test_abort_with_set_canary_scale_and_zero_delay_keeps_the_canary():
    steps = "  - setCanaryScale: {replicas: 3}\n  - setWeight: 10\n  - pause: {}\n"
    d = Driver(canary(steps, ISTIO, "abortScaleDownDelaySeconds: 0"), 10, startup=20).start()
    d.rollback_at(100)
    d.run(5000)
    assert d.ctl.status == "Aborted"
    assert d.desired["canary"] == 3 and d.weight == 0.0


def test_abort_removes_managed_routes():
    steps = "  - setWeight: 10\n" + BETA_ROUTE + "  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=10).start()
    d.rollback_at(100)
    d.run(1000)
    assert [(t, a.match) for t, a in d.actions(SetMatchRoute)][-1] == (100, ())


def test_progress_deadline_abort_aborts_a_never_ready_canary():
    policy = canary("  - setWeight: 20\n  - pause: {}\n", ISTIO, "progressDeadlineAbort: true")
    d = Driver(policy, 10, startup=30, never_ready=frozenset({"canary"})).start().run(5000)
    assert d.statuses[-1] == (600.0, "Aborted", "ProgressDeadlineExceeded")
    assert scales(d, "canary") == [(0.0, "canary", 2), (630.0, "canary", 0)]


def test_without_progress_deadline_abort_the_rollout_only_reports():
    policy = canary("  - setWeight: 20\n  - pause: {}\n", ISTIO)
    d = Driver(policy, 10, startup=30, never_ready=frozenset({"canary"})).start().run(5000)
    assert d.statuses[-1] == (600.0, "Progressing", "ProgressDeadlineExceeded")
    assert d.status() == "Progressing" and d.desired["canary"] == 2


# --------------------------------------------------------------------------- undo after promotion


@pytest.mark.parametrize(
    ("after", "startup", "back_at"),
    [(20.0, 25.0, 70.0), (40.0, 25.0, 115.0), (40.0, 60.0, 220.0)],
)
def test_undo_after_promotion(after, startup, back_at):
    """Promoted at 2·startup; the old pods are scaled down 30 s later (scaleDownDelaySeconds)."""
    d = Driver(canary("  - setWeight: 50\n", ISTIO), 4, startup=startup).start()
    promoted = 2 * startup
    d.rollback_at(promoted + after)
    d.run(5000)
    assert d.status_at("RolloutCompleted") == promoted
    assert d.status_at("UndoCompleted") == back_at  # within the delay at once, else +startup
    back = [t for t, a in d.actions(SetSelectors) if a.stable == frozenset({"stable"})]
    assert back == [back_at]
    restarted = [t for t, g, n in scales(d, "stable") if n == 4]
    assert restarted == ([] if after < 30 else [promoted + after])
    assert d.canary_share() == 0.0


# --------------------------------------------------------------------------- routes and scale


def test_set_header_route_emits_a_match_route():
    steps = (
        "  - setWeight: 10\n"
        + BETA_ROUTE
        + "  - pause: {}\n  - setHeaderRoute: {name: beta}\n  - pause: {}\n"
    )
    d = Driver(canary(steps, ISTIO), 10, startup=10).start()
    d.approve_at(100)
    d.run(1000)
    beta = (RouteMatch(headers={"x-beta": StringMatch(exact="true")}),)
    assert [(t, a.name, a.match) for t, a in d.actions(SetMatchRoute)] == [
        (10.0, "beta", beta),
        (100, "beta", ()),
    ]


def test_set_canary_scale_sets_replicas_without_changing_the_weight():
    steps = "  - setWeight: 10\n  - setCanaryScale: {replicas: 3}\n  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=20).start().run(1000)
    assert scales(d, "canary") == [(0.0, "canary", 1), (20.0, "canary", 3)]
    assert set_weights(d) == [(20.0, 10.0)]


def test_step_after_set_canary_scale_starts_when_its_pods_are_available():
    steps = "  - setWeight: 10\n  - setCanaryScale: {replicas: 3}\n  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=20).start().run(1000)
    assert (40.0, "Paused", "CanaryPauseStep") in d.statuses


def test_dynamic_stable_scale_abort_walks_the_weights_back():
    steps = (
        "  - setWeight: 20\n  - pause: {duration: 10}\n  - setWeight: 50\n"
        "  - pause: {duration: 10}\n  - setWeight: 80\n  - pause: {}\n"
    )
    d = Driver(canary(steps, ISTIO, "dynamicStableScale: true"), 10, startup=20)
    seen: list[tuple[int, float]] = []
    handle = d.ctl.handle

    def spy(event):
        out = handle(event)
        seen.extend((d.available["stable"], a.weight) for a in out if isinstance(a, SetWeight))
        return out

    d.ctl.handle = spy
    d.start()
    d.rollback_at(300)
    d.run(5000)
    ramp = [(t, g, n) for t, g, n in scales(d, "stable") if t < 300]
    assert ramp == [(20.0, "stable", 8), (50.0, "stable", 5), (80.0, "stable", 2)]
    # back down the setWeight steps, each once the stable can carry the rest
    assert seen[-3:] == [(5, 50.0), (8, 20.0), (10, 0.0)]
    assert [n for t, _, n in scales(d, "canary") if t >= 300] == [5, 2, 0]
    assert d.statuses[-1] == (300, "Aborted", "RollbackRequested:human")


# ------------------------------------------------------------- steps with several actions
# Argo's validation refuses only two of setWeight, pause, experiment and analysis in one step
# (hasMultipleStepsType); every action present takes effect when the step is reached, and the
# first of pause, setCanaryScale, setWeight, analysis, setHeaderRoute decides when it is done
# (completedCurrentCanaryStep's switch).

BETA = RouteMatch(headers={"x-beta": StringMatch(exact="true")})
BETA_MATCH = "      match: [{headerName: x-beta, headerValue: {exact: 'true'}}]\n"


def test_set_weight_with_a_header_route_sets_both_and_ends_on_the_weight():
    steps = "  - setWeight: 20\n    setHeaderRoute:\n      name: beta\n" + BETA_MATCH
    steps += "  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=10).start().run(1000)
    assert [(t, a.name, a.match) for t, a in d.actions(SetMatchRoute)] == [(0.0, "beta", (BETA,))]
    assert set_weights(d) == [(10.0, 20.0)]
    assert (10.0, "Paused", "CanaryPauseStep") in d.statuses  # the next step, once at 20 %


def test_set_canary_scale_with_a_header_route_ends_when_the_pods_are_available():
    steps = "  - setCanaryScale: {replicas: 3}\n    setHeaderRoute:\n      name: beta\n"
    steps += BETA_MATCH + "  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=25).start().run(1000)
    assert [(t, a.name) for t, a in d.actions(SetMatchRoute)] == [(0.0, "beta")]
    assert scales(d, "canary") == [(0.0, "canary", 3)]
    assert set_weights(d) == []  # setCanaryScale moves no traffic
    assert (25.0, "Paused", "CanaryPauseStep") in d.statuses


def test_analysis_with_a_header_route_waits_for_the_analysis():
    steps = "  - setWeight: 10\n  - analysis: {templates: [{templateName: err}]}\n"
    steps += "    setHeaderRoute:\n      name: beta\n" + BETA_MATCH + "  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=10).start().run(1000)
    assert [(t, a.name) for t, a in d.actions(SetMatchRoute)] == [(10.0, "beta")]
    assert [(t, a.run) for t, a in d.actions(StartAnalysis)] == [(10.0, "step-1")]
    assert (130.0, "Paused", "CanaryPauseStep") in d.statuses  # three measurements, 60 s apart


def test_a_failing_analysis_with_a_header_route_aborts_and_removes_the_route():
    steps = "  - setWeight: 10\n  - analysis: {templates: [{templateName: err}]}\n"
    steps += "    setHeaderRoute:\n      name: beta\n" + BETA_MATCH + "  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=10, observe=failing).start().run(1000)
    assert d.status() == "Aborted"
    assert [(t, a.match) for t, a in d.actions(SetMatchRoute)] == [(10.0, (BETA,)), (10.0, ())]


def test_pause_with_set_canary_scale_scales_at_once_and_waits_for_the_pause():
    steps = "  - setWeight: 10\n  - pause: {duration: 60}\n    setCanaryScale: {replicas: 4}\n"
    steps += "  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=20).start().run(1000)
    assert scales(d, "canary") == [(0.0, "canary", 1), (20.0, "canary", 4)]
    assert (20.0, "Paused", "CanaryPauseStep") in d.statuses
    assert (80.0, "Paused", "CanaryPauseStep") in d.statuses  # the pause, not the pods, decides


def test_set_canary_scale_decides_over_analysis_and_the_run_is_cancelled():
    """Argo's switch tests setCanaryScale before analysis: the step ends with its pods; the
    step's run is then cancelled, as Argo cancels runs of steps left behind."""
    steps = "  - setCanaryScale: {replicas: 2}\n    analysis: {templates: [{templateName: err}]}\n"
    steps += "  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=30).start().run(1000)
    assert [(t, a.run) for t, a in d.actions(StartAnalysis)] == [(0.0, "step-0")]
    assert [(t, a.run) for t, a in d.actions(Stop)] == [(30.0, "step-0")]
    assert (30.0, "Paused", "CanaryPauseStep") in d.statuses
