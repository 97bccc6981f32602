"""Kubernetes Deployment rolling update (reference/executors.md §C) and CCE batch release.

The ``canary`` group is the new ReplicaSet, ``stable`` the old one; one Service selects both,
so traffic follows available pods. Pods become available ``startup`` seconds after they are
asked for.
"""

from __future__ import annotations

import pytest
from harness import Driver, failing, healthy

from policies import policy_from_yaml
from policies.controller import Scale, StartAnalysis

ROLLING = "kind: RollingUpdate\nname: r\n"


def rolling(surge: str | int = "25%", unavailable: str | int = "25%"):
    return policy_from_yaml(f"{ROLLING}maxSurge: {surge!r}\nmaxUnavailable: {unavailable!r}\n")


def scales(d: Driver) -> list[tuple[float, str, int]]:
    return [(t, a.group, a.replicas) for t, a in d.actions(Scale)]


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


# --------------------------------------------------------------------------- rolling update


def test_rolling_update_d10_stays_within_13_pods_and_8_available():
    d = Driver(rolling(), 10, startup=20)
    states = record_states(d)
    d.start().run(3000)
    assert scales(d)[:3] == [(0.0, "canary", 3), (0.0, "stable", 8), (0.0, "canary", 5)]
    assert max(total for _, total, _ in states) == 13  # D + ceil(25 % of 10)
    assert min(avail for _, _, avail in states) == 8  # D − floor(25 % of 10)
    assert d.statuses[-1] == (40.0, "Promoted", "NewReplicaSetAvailable")
    assert d.desired == {"stable": 0, "canary": 10, "primary": 0}
    assert d.available["canary"] == 10


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "most", "fewest"),
    [
        (4, "25%", "25%", 5, 3),
        (3, "25%", "25%", 4, 3),  # surge 1, unavailable 0
        (1, "25%", "25%", 2, 1),
        (10, 0, 1, 10, 9),
        (10, "50%", 0, 15, 10),
        (5, "0%", "10%", 5, 4),  # both resolve to 0 -> unavailable 1
    ],
)
def test_fences(replicas, surge, unavailable, most, fewest):
    d = Driver(rolling(surge, unavailable), replicas, startup=20)
    states = record_states(d)
    d.start().run(10_000)
    assert max(total for _, total, _ in states) == most
    assert min(avail for _, _, avail in states) == fewest
    assert d.status() == "Promoted"
    assert d.available["canary"] == replicas and d.desired["stable"] == 0


def test_rollback_midway_rolls_back():
    """kubectl rollout undo: a rolling update back to the old ReplicaSet (§C.6); the new
    ReplicaSet's pods that are not available yet are removed first (cleanupUnhealthyReplicas)."""
    d = Driver(rolling(), 10, startup=20)
    states = record_states(d)
    d.start()
    d.rollback_at(30)
    d.run(3000)
    assert [s for s in scales(d) if s[0] >= 30][:2] == [(30, "canary", 5), (30, "stable", 8)]
    assert (30, "Aborted", "Abort:human") in d.statuses
    assert d.statuses[-1] == (70.0, "RolledBack", "RollbackCompleted")
    assert d.desired == {"stable": 10, "canary": 0, "primary": 0}
    assert max(total for _, total, _ in states) <= 13
    assert min(avail for _, _, avail in states) >= 8


def test_undo_after_completion_is_a_rolling_update_back():
    d = Driver(rolling(), 10, startup=20)
    states = record_states(d)
    d.start()
    d.rollback_at(100)
    d.run(3000)
    assert d.status_at("NewReplicaSetAvailable") == 40.0
    assert d.statuses[-1] == (140.0, "RolledBack", "RollbackCompleted")
    assert next(s for s in scales(d) if s[0] >= 100) == (100, "stable", 3)
    assert max(total for _, total, _ in states) <= 13
    assert min(avail for _, _, avail in states) >= 8


def test_progress_deadline_only_reports():
    d = Driver(rolling(), 10, startup=20, never_ready=frozenset({"canary"})).start().run(5000)
    assert d.statuses[-1] == (600.0, "Progressing", "ProgressDeadlineExceeded")
    assert d.status() == "Progressing"
    assert d.desired == {"stable": 8, "canary": 5, "primary": 0}  # no rollback


def test_rolling_update_traffic_follows_the_pods():
    d = Driver(rolling(), 10, startup=20).start().run(3000)
    assert d.canary_share() == 1.0


# --------------------------------------------------------------------------- batch release

BATCHES = """kind: BatchRelease
name: b
analysisTemplates:
  - name: err
    metrics:
      - name: err
        interval: 60s
        count: 2
        successCondition: result < 0.05
        provider: {query: {measure: errorRate}}
batches:
"""
PAUSED = (
    BATCHES
    + """  - {replicas: "20%", pause: {duration: 300}}
  - {replicas: "50%", pause: {}}
  - {replicas: "100%"}
"""
)
ANALYSED = (
    BATCHES
    + """  - {replicas: "20%", analysis: {templates: [{templateName: err}]}}
  - {replicas: "50%", pause: {}}
  - {replicas: "100%"}
"""
)


def batch(text: str):
    return policy_from_yaml(text)


def test_batch_pods_are_cumulative_and_round_up():
    policy = policy_from_yaml(PAUSED)
    assert policy.batch_pods(10) == [2, 5, 10]
    assert policy.batch_pods(3) == [1, 2, 3]


def test_batch_release_starts():
    Driver(policy_from_yaml(PAUSED), 10, startup=20).start().run(100)


def test_batches_with_pause_duration_and_manual_approval():
    d = Driver(batch(PAUSED), 10, startup=20)
    states = record_states(d)
    d.start()
    d.approve_at(1000)
    d.run(5000)
    assert scales(d)[:2] == [(0.0, "canary", 2), (0.0, "stable", 8)]
    assert d.statuses == [
        (0.0, "Progressing", "RolloutStarted"),
        (20.0, "Paused", "Batch0Pause"),
        (320.0, "Progressing", "Batch1"),
        (340.0, "Paused", "Batch1Pause"),  # 5 new and 5 old pods; waits for a human
        (1000, "Progressing", "Batch2"),
        (1020.0, "Promoted", "AllBatchesReleased"),
    ]
    assert max(total for _, total, _ in states) <= 13
    assert min(avail for _, _, avail in states) >= 8


def test_batch_analysis_failure_rolls_back():
    bad_after_50 = lambda t, m: failing(t, m) if t > 50 else healthy(t, m)  # noqa: E731
    d = Driver(batch(ANALYSED), 10, startup=20, observe=bad_after_50).start().run(5000)
    assert [t for t, _ in d.actions(StartAnalysis)] == [20.0]
    assert [t for t, _ in d.measures] == [20.0, 80.0]
    assert (80.0, "Aborted", "Abort:Batch0AnalysisFailed") in d.statuses
    assert d.statuses[-1] == (100.0, "RolledBack", "RollbackCompleted")
    assert d.desired == {"stable": 10, "canary": 0, "primary": 0}
