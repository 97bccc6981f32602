"""Argo Rollouts blueGreen controller against reference/argo-rollouts.md §5 and §4.5.

Four replicas; pods become available ``startup`` seconds after they are asked for. The
``canary`` group is the new (preview/green) ReplicaSet, ``stable`` the old (active/blue) one.
"""

from __future__ import annotations

import pytest
from harness import Driver, failing, healthy

from policies import policy_from_yaml
from policies.controller import Scale, SetSelectors, StartAnalysis
from policies.controller import StopAnalysis as Stop
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
"""
PRE = "prePromotionAnalysis: {templates: [{templateName: err}]}"
POST = "postPromotionAnalysis: {templates: [{templateName: err}]}"
NEW, OLD = frozenset({"canary"}), frozenset({"stable"})


def bluegreen(*extra: str):
    return policy_from_yaml("\n".join(("kind: BlueGreen", "name: b", *extra)) + TEMPLATES)


def switch(at: float, before=healthy, after=failing):
    return lambda t, m: after(t, m) if t > at else before(t, m)


def inconclusive(t: float, measure) -> Observation:
    return Observation(t - measure.window, t, WindowStats(1000, 70), WindowStats(1000, 0))


def scales(d: Driver, group: str) -> list[tuple[float, int]]:
    return [(t, a.replicas) for t, a in d.actions(Scale) if a.group == group]


def active(d: Driver) -> list[tuple[float, frozenset, float]]:
    """Every change of the active (stable) Service's selector: (time, groups, transition)."""
    return [(t, a.stable, a.transition_s) for t, a in d.actions(SetSelectors)]


def to_new(d: Driver) -> list[float]:
    return [t for t, groups, _ in active(d) if groups == NEW]


# --------------------------------------------------------------------------- pre-promotion


def test_preview_is_scaled_first_and_pre_promotion_analysis_runs_on_the_saturated_preview():
    d = Driver(bluegreen(PRE), 4, startup=30).start().run(2000)
    assert scales(d, "canary") == [(0.0, 4)]
    assert d.selectors[1] == NEW  # the preview Service selects the new pods from the start
    assert [t for t, _ in d.actions(StartAnalysis)] == [30.0]  # once all 4 are available
    assert [t for t, _ in d.measures] == [30.0, 90.0]
    assert to_new(d) == [90.0]
    assert d.status_at("RolloutCompleted") == 90.0
    assert scales(d, "stable") == [(120.0, 0)]  # scaleDownDelaySeconds 30


def test_pre_promotion_failure_aborts_without_ever_switching():
    d = Driver(bluegreen(PRE), 4, startup=30, observe=failing).start().run(2000)
    assert d.statuses[-1] == (30.0, "Aborted", "prePromotionAnalysisFailed")
    assert to_new(d) == []
    assert all(share == 0.0 for _, share in d.shares)
    assert scales(d, "canary") == [(0.0, 4), (60.0, 0)]  # abortScaleDownDelaySeconds 30
    assert scales(d, "stable") == []


def test_inconclusive_pre_promotion_pauses_without_switching():
    d = Driver(bluegreen(PRE), 4, startup=30, observe=inconclusive).start().run(2000)
    assert d.statuses[-1] == (30.0, "Paused", "InconclusiveAnalysisRun")
    assert to_new(d) == []


# --------------------------------------------------------------------------- the pause


def test_auto_promotion_disabled_waits_for_approval():
    d = Driver(bluegreen("autoPromotionEnabled: false"), 4, startup=30).start()
    d.approve_at(500)
    d.run(5000)
    assert d.statuses == [
        (0.0, "Progressing", "RolloutStarted"),
        (30.0, "Paused", "BlueGreenPause"),
        (500, "Progressing", "PauseEnded"),
        (500, "Promoted", "RolloutCompleted"),
    ]
    assert to_new(d) == [500]
    assert scales(d, "stable") == [(530.0, 0)]


def test_auto_promotion_disabled_without_approval_never_switches():
    d = Driver(bluegreen("autoPromotionEnabled: false"), 4, startup=30).start().run(50_000)
    assert d.status() == "Paused" and to_new(d) == []


def test_auto_promotion_seconds_counts_from_the_pause():
    d = Driver(bluegreen("autoPromotionSeconds: 120"), 4, startup=30).start().run(5000)
    assert (30.0, "Paused", "BlueGreenPause") in d.statuses
    assert to_new(d) == [150.0]


def test_pause_starts_after_pre_promotion_analysis_succeeded():
    d = Driver(bluegreen(PRE, "autoPromotionSeconds: 120"), 4, startup=30).start().run(5000)
    assert (90.0, "Paused", "BlueGreenPause") in d.statuses
    assert to_new(d) == [210.0]


@pytest.mark.parametrize(
    ("extra", "full_at", "switch_at"),
    [
        (("autoPromotionSeconds: 120",), 150.0, 180.0),  # after the pause
        ((), 30.0, 60.0),  # no pause: straight after the preview is ready
    ],
)
def test_preview_replica_count_scales_to_n_before_the_switch(extra, full_at, switch_at):
    d = Driver(bluegreen("previewReplicaCount: 1", *extra), 4, startup=30).start().run(5000)
    assert scales(d, "canary") == [(0.0, 1), (full_at, 4)]
    assert to_new(d) == [switch_at]


def test_pre_promotion_analysis_runs_on_the_preview_replica_count():
    d = Driver(bluegreen(PRE, "previewReplicaCount: 2"), 4, startup=30).start().run(5000)
    assert [t for t, _ in d.actions(StartAnalysis)] == [30.0]
    assert scales(d, "canary") == [(0.0, 2), (90.0, 4)]
    assert to_new(d) == [120.0]


# --------------------------------------------------------------------------- post-promotion


def test_post_promotion_failure_flips_the_active_service_back():
    d = Driver(bluegreen(POST), 4, startup=30, observe=switch(60)).start().run(2000)
    assert active(d) == [(30.0, NEW, 0.0), (90.0, OLD, 0.0)]
    assert d.statuses[-1] == (90.0, "Aborted", "postPromotionAnalysisFailed")
    assert scales(d, "stable") == []  # the old pods were kept at N throughout
    assert scales(d, "canary") == [(0.0, 4), (120.0, 0)]
    assert d.canary_share() == 0.0


def test_post_promotion_success_marks_the_new_version_stable():
    d = Driver(bluegreen(POST), 4, startup=30).start().run(2000)
    assert to_new(d) == [30.0]
    assert [(t, a.phase) for t, a in d.actions(Stop)] == [(90.0, "Successful")]
    assert d.status_at("RolloutCompleted") == 90.0
    assert scales(d, "stable") == [(120.0, 0)]


def test_dns_switch_passes_the_ttl_both_ways():
    policy = bluegreen(POST, "switch: dns", "dnsTtl: 300s")
    d = Driver(policy, 4, startup=30, observe=switch(60)).start().run(2000)
    assert active(d) == [(30.0, NEW, 300.0), (90.0, OLD, 300.0)]


# --------------------------------------------------------------------------- undo and abort


@pytest.mark.parametrize(
    ("after", "restart", "back_at"),
    [(20.0, [], 50.0), (45.0, [(75.0, 4)], 105.0)],
)
def test_undo_after_promotion(after, restart, back_at):
    """Promoted at 30; the old pods go at 60 (scaleDownDelaySeconds 30)."""
    d = Driver(bluegreen(), 4, startup=30).start()
    d.rollback_at(30 + after)
    d.run(5000)
    assert d.status_at("RolloutCompleted") == 30.0
    assert [(t, n) for t, n in scales(d, "stable") if n > 0] == restart
    assert active(d)[-1] == (back_at, OLD, 0.0)
    assert d.status_at("UndoCompleted") == back_at
    assert d.canary_share() == 0.0


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        ((), [(0.0, 4), (130.0, 0)]),  # 30 s by default
        (("abortScaleDownDelaySeconds: 90",), [(0.0, 4), (190.0, 0)]),
        (("abortScaleDownDelaySeconds: 0",), [(0.0, 4)]),  # 0 = keep the preview
    ],
)
def test_abort_scale_down_delay(delay, expected):
    d = Driver(bluegreen("autoPromotionEnabled: false", *delay), 4, startup=30).start()
    d.rollback_at(100)
    d.run(5000)
    assert d.statuses[-1] == (100, "Aborted", "RollbackRequested:human")
    assert scales(d, "canary") == expected
    assert to_new(d) == []


def test_progress_deadline_abort_with_a_never_ready_preview():
    policy = bluegreen("progressDeadlineAbort: true")
    d = Driver(policy, 4, startup=30, never_ready=frozenset({"canary"})).start().run(5000)
    assert d.statuses[-1] == (600.0, "Aborted", "ProgressDeadlineExceeded")
    assert to_new(d) == []
    assert scales(d, "canary") == [(0.0, 4), (630.0, 0)]


def test_progress_deadline_without_abort_only_reports():
    d = Driver(bluegreen(), 4, startup=30, never_ready=frozenset({"canary"})).start().run(5000)
    assert d.statuses[-1] == (600.0, "Progressing", "ProgressDeadlineExceeded")
    assert to_new(d) == [] and d.desired["canary"] == 4
