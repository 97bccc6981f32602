"""Why the status changed: the typed ``cause`` every controller kind reports (DESIGN §2).

Drivers (the engine, the reference engine, the live executor) classify detection by matching on
these types and fields, never on the ``reason`` text, so each kind's causes are pinned here once:
which gate (run, metrics, step, phase), Flagger's failed checks, who asked for an abort or undo,
the progress deadline, a pause awaiting approval, and plain progress.
"""

from __future__ import annotations

from harness import Driver, empty, failing, healthy
from test_controller_rolling import BATCHES

from policies import policy_from_yaml
from policies.controller import (
    AwaitingApproval,
    DeadlineExceeded,
    FailedChecks,
    GateVerdict,
    Intervention,
    Progress,
    StatusChanged,
    detector,
)
from policies.measures import Observation, WindowStats

TEMPLATES = """
analysisTemplates:
  - name: err
    metrics:
      - name: err
        interval: 60s
        count: 2
        successCondition: result < 0.05
        failureCondition: result > 0.10
        provider: {query: {measure: errorRate}}
  - name: p99
    metrics:
      - name: p99
        interval: 60s
        count: 2
        successCondition: result < 5
        provider: {query: {measure: latency, quantile: 0.99}}
  - name: bg
    metrics:
      - name: bg
        interval: 60s
        successCondition: result < 0.05
        provider: {query: {measure: errorRate}}
"""
ISTIO = "trafficRouting: {istio: {}}"
STEP_ANALYSIS = """
  - setWeight: 20
  - analysis: {templates: [{templateName: err}, {templateName: p99}]}
  - setWeight: 50
"""


def canary(steps: str, *extra: str):
    head = "\n".join(("kind: Canary", "name: c", *extra, "steps:"))
    return policy_from_yaml(head + "\n" + steps + TEMPLATES)


def bluegreen(*extra: str):
    return policy_from_yaml("\n".join(("kind: BlueGreen", "name: b", *extra)) + TEMPLATES)


def inconclusive(t: float, measure) -> Observation:
    """7 % errors: neither < 5 % nor > 10 %."""
    return Observation(t - measure.window, t, WindowStats(1000, 70), WindowStats(1000, 0))


def after(at: float, then=failing):
    """Healthy up to ``at``, then ``then``."""
    return lambda t, m: then(t, m) if t > at else healthy(t, m)


def last(d: Driver):
    return d.causes[-1]


# --------------------------------------------------------------------------- Argo canary


def test_canary_step_analysis_failure_names_run_metric_step_and_phase():
    d = Driver(canary(STEP_ANALYSIS, ISTIO), 10, startup=30, observe=failing).start().run(1000)
    assert last(d) == (30.0, "Aborted", GateVerdict("step-1", ("err",), 1, "Failed"))
    assert d.statuses[-1][2] == "StepAnalysisFailed"  # the executor's reason, for people


def test_canary_step_analysis_error_is_a_gate_with_phase_error():
    d = Driver(canary(STEP_ANALYSIS, ISTIO), 10, startup=30, observe=empty).start().run(1000)
    # five errors in a row end the run while p99 (measured after err each time) has four
    assert last(d)[1:] == ("Aborted", GateVerdict("step-1", ("err",), 1, "Error"))


def test_canary_background_analysis_failure():
    bg = "analysis: {templates: [{templateName: bg}], startingStep: 1}"
    steps = "  - setWeight: 20\n  - pause: {duration: 60}\n  - setWeight: 40\n  - pause: {}\n"
    d = Driver(canary(steps, ISTIO, bg), 10, startup=30, observe=after(100)).start().run(3000)
    assert last(d) == (150.0, "Aborted", GateVerdict("background", ("bg",), 3, "Failed"))


def test_canary_inconclusive_analysis_awaits_approval_with_its_verdict():
    d = Driver(canary(STEP_ANALYSIS, ISTIO), 10, startup=30, observe=inconclusive).start()
    d.run(1000)
    verdict = GateVerdict("step-1", ("err",), 1, "Inconclusive")
    assert (30.0, "Paused", AwaitingApproval(1, verdict)) in d.causes


def test_canary_manual_and_timed_pauses_and_progress():
    steps = "  - setWeight: 20\n  - pause: {duration: 60}\n  - pause: {}\n"
    d = Driver(canary(steps, ISTIO), 10, startup=30).start()
    d.approve_at(500)
    d.run(3000)
    assert d.causes == [
        (0.0, "Progressing", Progress("Started")),
        (30.0, "Paused", Progress("Paused", 1)),
        (90.0, "Progressing", Progress("StepCompleted", 1)),
        (90.0, "Paused", AwaitingApproval(2)),
        (500, "Progressing", Progress("StepCompleted", 2)),
        (530, "Promoted", Progress("Promoted")),  # the canary's new pods start in 30 s
    ]


def test_canary_abort_by_alert_and_undo_by_human():
    paused = canary("  - setWeight: 20\n  - pause: {}\n", ISTIO)
    d = Driver(paused, 10, startup=30).start()
    d.rollback_at(100, "alert")
    d.run(3000)
    assert (100, "Aborted", Intervention("alert")) in d.causes

    d = Driver(canary("  - setWeight: 20\n", ISTIO), 10, startup=30).start()
    d.rollback_at(500, "human")
    d.run(3000)
    assert (500, "Progressing", Intervention("human", undo=True)) in d.causes
    assert last(d) == (530, "RolledBack", Progress("RolledBack"))  # the old pods restart


def test_canary_progress_deadline_aborts_or_only_reports():
    steps = "  - setWeight: 20\n  - pause: {}\n"
    never = frozenset({"canary"})
    d = Driver(canary(steps, ISTIO, "progressDeadlineAbort: true"), 10, never_ready=never)
    d.start().run(5000)
    assert last(d) == (600.0, "Aborted", DeadlineExceeded(600.0, 0))
    d = Driver(canary(steps, ISTIO), 10, never_ready=never).start().run(5000)
    assert last(d) == (600.0, "Progressing", DeadlineExceeded(600.0, 0))


# --------------------------------------------------------------------------- Argo blue-green


def test_bluegreen_pre_and_post_promotion_analysis_failures():
    pre = "prePromotionAnalysis: {templates: [{templateName: err}]}"
    d = Driver(bluegreen(pre), 4, startup=30, observe=failing).start().run(3000)
    assert last(d) == (30.0, "Aborted", GateVerdict("prePromotion", ("err",), None, "Failed"))
    post = "postPromotionAnalysis: {templates: [{templateName: err}]}"
    d = Driver(bluegreen(post), 4, startup=30, observe=after(60)).start().run(3000)
    assert last(d)[1:] == ("Aborted", GateVerdict("postPromotion", ("err",), None, "Failed"))


def test_bluegreen_manual_pause_awaits_approval():
    d = Driver(bluegreen("autoPromotionEnabled: false"), 4, startup=30).start()
    d.approve_at(100)
    d.run(3000)
    assert (30.0, "Paused", AwaitingApproval()) in d.causes
    assert (100, "Progressing", Progress("PauseEnded")) in d.causes
    assert last(d)[1:] == ("Promoted", Progress("Promoted"))


# --------------------------------------------------------------------------- Flagger

FLAGGER = """kind: Progressive
name: f
analysis:
  interval: 60s
  threshold: 2
  stepWeight: 20
  maxWeight: 50
  metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
"""


def test_flagger_failed_checks_then_the_threshold_with_metric_and_count():
    d = Driver(policy_from_yaml(FLAGGER), 4, startup=15, observe=failing).start().run(3000)
    metric = "request-success-rate"
    # held at tick 1 (weight 20, explain's row) while its checks fail: both name that tick
    assert (120.0, "Progressing", FailedChecks(metric, 1, 2, 1)) in d.causes
    assert last(d) == (240.0, "Aborted", FailedChecks(metric, 2, 2, 1))
    assert d.statuses[-1][2] == "FailedChecksThreshold"


def test_flagger_progress_deadline_and_human_abort():
    never = frozenset({"canary"})
    d = Driver(policy_from_yaml(FLAGGER), 4, startup=15, never_ready=never).start().run(3000)
    assert last(d) == (600.0, "Aborted", DeadlineExceeded(600.0, 10))  # noticed on tick 10
    d = Driver(policy_from_yaml(FLAGGER), 4, startup=15).start()
    d.rollback_at(90)
    d.run(3000)
    assert last(d) == (90, "Aborted", Intervention("human"))


# --------------------------------------------------------------------------- rolling and batches


def test_rolling_update_progress_abort_and_undo():
    rolling = policy_from_yaml("kind: RollingUpdate\nname: r\n")
    d = Driver(rolling, 10, startup=20).start()
    d.rollback_at(500, "alert")
    d.run(3000)
    assert [c for _, _, c in d.causes] == [
        Progress("Started"),
        Progress("Promoted"),
        Intervention("alert", undo=True),
        Progress("RolledBack"),
    ]
    d = Driver(rolling, 10, startup=20).start()
    d.rollback_at(10)
    d.run(3000)
    assert (10, "Aborted", Intervention("human")) in d.causes


def test_batch_pauses_and_analysis_failure():
    paused = BATCHES + (
        '  - {replicas: "20%", pause: {duration: 300}}\n'
        '  - {replicas: "50%", pause: {}}\n'
        '  - {replicas: "100%"}\n'
    )
    d = Driver(policy_from_yaml(paused), 10, startup=20).start()
    d.approve_at(1000)
    d.run(5000)
    assert [(t, c) for t, _, c in d.causes] == [
        (0.0, Progress("Started")),
        (20.0, Progress("Paused", 0)),
        (320.0, Progress("StepCompleted", 0)),
        (340.0, AwaitingApproval(1)),
        (1000, Progress("StepCompleted", 1)),
        (1020.0, Progress("Promoted")),
    ]
    analysed = BATCHES + (
        '  - {replicas: "20%", analysis: {templates: [{templateName: err}]}}\n'
        '  - {replicas: "100%"}\n'
    )
    d = Driver(policy_from_yaml(analysed), 10, startup=20, observe=after(50)).start().run(5000)
    assert (80.0, "Aborted", GateVerdict("batch-0", ("err",), 0, "Failed")) in d.causes
    assert last(d)[1:] == ("RolledBack", Progress("RolledBack"))


def test_rolls_back_is_an_abort_or_an_undo():
    """What the drivers start a rollback on: status Aborted, or an undo after promotion."""
    d = Driver(policy_from_yaml(FLAGGER), 4, startup=15, observe=failing).start().run(3000)
    rolls = [(a.reason, a.rolls_back) for _, a in d.log if isinstance(a, StatusChanged)]
    assert rolls == [
        ("RolloutStarted", False),
        ("FailedCheck", False),
        ("FailedChecksThreshold", True),
    ]
    d = Driver(policy_from_yaml("kind: RollingUpdate\nname: r\n"), 10, startup=20).start()
    d.rollback_at(500)
    d.run(3000)
    undo = [a for _, a in d.log if isinstance(a, StatusChanged) and a.reason == "Undo:human"]
    assert undo[0].status == "Progressing" and undo[0].rolls_back


def test_detector_names_the_controllers_own_detectors_only():
    """The one classification every driver reads: gates and the deadline are the controller's
    own detectors; alerts, humans and guards record themselves when they fire."""
    assert detector(GateVerdict("step-1", ("err",), 1, "Failed")) == "gate"
    assert detector(FailedChecks("err", 5, 5)) == "gate"
    assert detector(DeadlineExceeded(600.0)) == "deadline"
    for cause in (
        Intervention("alert"),
        Intervention("human", undo=True),
        AwaitingApproval(2),
        Progress("Promoted"),
    ):
        assert detector(cause) == ""
