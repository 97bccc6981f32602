"""Replica arithmetic against the executors' own numbers.

Upstream vectors are transcribed as data from argoproj/argo-rollouts
``utils/replicaset/canary_test.go`` @01240d81b18c57f09453b36d8441e401c771bef5
(TestApproximateWeightedNewStableReplicaCounts, TestCalculateReplicaCountsForCanary,
TestCalculateReplicaCountsForCanaryTrafficRouting[DynamicScale], TestTrafficWeightToReplicas).
Tables, worked trajectories, fence examples: shared/reference/argo-rollouts.md §2, executors.md §C.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.replicas import (
    abort_desired_weight,
    basic_canary_counts,
    basic_canary_scale,
    basic_canary_targets,
    basic_canary_trajectory,
    resolve_fenceposts,
    rolling_update_sync,
    rolling_update_trajectory,
    traffic_routed_counts,
    traffic_weight_to_replicas,
)

# --------------------------------------------------------------------------- fenceposts


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        ("25%", "25%", 10, (3, 2)),
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 1, (1, 0)),
        ("25%", "25%", 3, (1, 0)),
        ("25", "25", 10, (3, 2)),  # Argo's legacy parser: a bare string is a percentage
        ("0%", "0%", 10, (0, 1)),  # both round to 0 -> unavailable 1
        (0, "10%", 5, (0, 1)),  # floor(0.5) = 0 -> unavailable 1
        ("20%", 0, 10, (2, 0)),
        (2, 5, 3, (2, 3)),  # unavailable capped at replicas, surge is not
        ("25%", "25%", 0, (0, 0)),
        (2, 1, 0, (2, 0)),  # no replicas: none may be unavailable
    ],
)
def test_resolve_fenceposts(surge, unavailable, replicas, expected):
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


# --------------------------------------------------------------------------- step A: targets

_TABLE_WEIGHTS = (1, 5, 10, 20, 25, 33, 50, 75, 90, 99)
# reference §2.2 "Targets with the default surge (25%)": N -> canary/stable per weight column
_TARGET_TABLE = {
    1: ["1/1", "1/1", "1/1", "1/1", "1/1", "1/1", "1/1", "1/1", "1/1", "1/1"],
    2: ["1/2", "1/2", "1/2", "1/2", "1/2", "1/2", "1/1", "2/1", "2/1", "2/1"],
    3: ["1/3", "1/3", "1/3", "1/3", "1/3", "1/2", "2/2", "3/1", "3/1", "3/1"],
    4: ["1/4", "1/4", "1/4", "1/4", "1/3", "2/3", "2/2", "3/1", "4/1", "4/1"],
    5: ["1/5", "1/5", "1/5", "1/4", "1/4", "2/4", "3/3", "4/1", "5/1", "5/1"],
    10: ["1/10", "1/10", "1/9", "2/8", "3/8", "3/7", "5/5", "8/3", "9/1", "10/1"],
    20: ["1/20", "1/19", "2/18", "4/16", "5/15", "7/14", "10/10", "15/5", "18/2", "20/1"],
}


@pytest.mark.parametrize(
    ("replicas", "weight", "expected"),
    [
        (n, w, tuple(int(x) for x in cell.split("/")))
        for n, row in _TARGET_TABLE.items()
        for w, cell in zip(_TABLE_WEIGHTS, row)
    ],
)
def test_reference_target_table(replicas, weight, expected):
    surge, _ = resolve_fenceposts("25%", "25%", replicas)
    assert basic_canary_targets(replicas, weight, surge) == expected


# (replicas, weight, maxWeight, maxSurge, expCanary, expStable): all 57 upstream vectors
_APPROXIMATE_VECTORS = [
    (0, 0, 100, 0, 0, 0),
    (0, 50, 100, 0, 0, 0),
    (0, 100, 100, 0, 0, 0),
    (0, 0, 100, 1, 0, 0),
    (0, 50, 100, 1, 0, 0),
    (0, 100, 100, 1, 0, 0),
    (1, 0, 100, 0, 0, 1),
    (1, 1, 100, 0, 0, 1),
    (1, 49, 100, 0, 0, 1),
    (1, 50, 100, 0, 1, 0),
    (1, 99, 100, 0, 1, 0),
    (1, 100, 100, 0, 1, 0),
    (1, 0, 100, 1, 0, 1),
    (1, 1, 100, 1, 1, 1),
    (1, 49, 100, 1, 1, 1),
    (1, 50, 100, 1, 1, 1),
    (1, 99, 100, 1, 1, 1),
    (1, 100, 100, 1, 1, 0),
    (2, 0, 100, 0, 0, 2),
    (2, 1, 100, 0, 1, 1),
    (2, 50, 100, 0, 1, 1),
    (2, 99, 100, 0, 1, 1),
    (2, 100, 100, 0, 2, 0),
    (2, 0, 100, 1, 0, 2),
    (2, 1, 100, 1, 1, 2),
    (2, 50, 100, 1, 1, 1),
    (2, 99, 100, 1, 2, 1),
    (2, 100, 100, 1, 2, 0),
    (3, 10, 100, 0, 1, 2),
    (3, 25, 100, 0, 1, 2),
    (3, 33, 100, 0, 1, 2),
    (3, 34, 100, 0, 1, 2),
    (3, 49, 100, 0, 1, 2),
    (3, 50, 100, 0, 2, 1),
    (3, 10, 100, 1, 1, 3),
    (3, 25, 100, 1, 1, 3),
    (3, 33, 100, 1, 1, 2),
    (3, 34, 100, 1, 1, 2),
    (3, 49, 100, 1, 2, 2),
    (3, 50, 100, 1, 2, 2),
    (10, 0, 100, 1, 0, 10),
    (10, 1, 100, 0, 1, 9),
    (10, 14, 100, 0, 1, 9),
    (10, 15, 100, 0, 2, 8),
    (10, 16, 100, 0, 2, 8),
    (10, 99, 100, 0, 9, 1),
    (10, 100, 100, 1, 10, 0),
    (10, 0, 100, 1, 0, 10),
    (10, 1, 100, 1, 1, 10),
    (10, 18, 100, 1, 2, 9),
    (10, 19, 100, 1, 2, 9),
    (10, 20, 100, 1, 2, 8),
    (10, 23, 100, 1, 2, 8),
    (10, 24, 100, 1, 3, 8),
    (10, 25, 100, 1, 3, 8),
    (10, 99, 100, 1, 10, 1),
    (10, 100, 100, 1, 10, 0),
]


@pytest.mark.parametrize(
    ("replicas", "weight", "max_weight", "surge", "canary", "stable"), _APPROXIMATE_VECTORS
)
def test_upstream_approximate_vectors(replicas, weight, max_weight, surge, canary, stable):
    assert basic_canary_targets(replicas, weight, surge, max_weight) == (canary, stable)


@pytest.mark.parametrize("weight", range(1, 100))
def test_single_replica_without_surge_flips_at_half(weight):
    assert basic_canary_targets(1, weight, 0) == ((0, 1) if weight < 50 else (1, 0))


@pytest.mark.parametrize("weight", range(1, 100))
def test_single_replica_default_surge_always_half_the_traffic(weight):
    surge, _ = resolve_fenceposts("25%", "25%", 1)
    assert basic_canary_targets(1, weight, surge) == (1, 1)  # 50% of traffic at any weight


def test_small_weights_expose_far_more_than_asked():
    assert basic_canary_targets(3, 5, 1) == (1, 3)  # 1 of 4 pods: 25% of traffic at setWeight 5
    assert basic_canary_targets(5, 5, 2) == (1, 5)  # 1 of 6 pods: ~17%
    assert basic_canary_targets(2, 1, 1) == (1, 2)  # 33% at setWeight 1


def test_surge_zero_fallback_drops_canary_to_zero():
    # Derived (reference §2.2): N·w/100 = N − 0.5 with surge 0 leaves no candidate -> (0, N).
    assert basic_canary_targets(2, 75, 0) == (0, 2)
    hits = [
        (n, w)
        for n in range(1, 30)
        for w in range(1, 100)
        if basic_canary_targets(n, w, 0) == (0, n)
        and not (n == 1 and w < 50)  # N=1 without surge legitimately rounds to 0 below 50%
    ]
    assert hits == [(2, 75), (5, 90), (10, 95), (25, 98)]
    assert basic_canary_targets(2, 75, 1) == (2, 1)  # any surge avoids it


def test_ties_round_canary_up_and_earlier_candidate_wins():
    assert basic_canary_targets(3, 50, 0) == (2, 1)  # 1.5 pods: tie -> ceil
    assert basic_canary_targets(10, 5, 0) == (1, 9)  # 0.5 pods: tie, floor 0 excluded anyway
    # N=10 w=25 surge 1: 2.5 is a tie (floor 2/10 excluded), 3/10 is 5 off, 3/11 = 27.3% wins
    assert basic_canary_targets(10, 25, 1) == (3, 8)
    assert basic_canary_targets(4, 50, 1) == (2, 2)  # exact share at N, listed first, stays


def test_max_traffic_weight_other_than_100():
    assert basic_canary_targets(10, 500, 3, max_weight=1000) == (5, 5)
    assert basic_canary_targets(4, 1000, 1, max_weight=1000) == (4, 0)
    assert basic_canary_targets(3, 5, 1, max_weight=1000) == (1, 3)


# --------------------------------------------------------------------------- step B: one reconcile

# TestCalculateReplicaCountsForCanary, every case that runs CalculateReplicaCountsForBasicCanary:
# (name, N, setWeight, maxSurge, maxUnavailable, stable spec/avail, canary spec/avail,
#  older RS spec/avail or None, expected canary, expected stable).
# promoteFull cases: GetCanaryReplicasOrWeight returns maxWeight, so the weight column holds 100.
_BASIC_CASES = [
    ("extra avail not counted when spec<avail", 10, 100, 3, 0, (7, 8), (6, 3), None, 6, 7),
    ("max surge int scales up canary", 10, 20, 2, 0, (10, 10), (0, 0), None, 2, 10),
    ("max surge percent scales up canary", 10, 20, "20%", 0, (10, 10), (0, 0), None, 2, 10),
    ("scale down extra stable", 10, 20, "20%", 0, (10, 10), (2, 2), None, 2, 8),
    ("do not go past max surge", 10, 30, 2, 0, (10, 10), (0, 0), None, 2, 10),
    ("max unavailable int scales down stable", 10, 20, 0, 2, (10, 10), (0, 0), None, 0, 8),
    ("max unavailable percent scales down stable", 10, 20, 0, "20%", (10, 10), (0, 0), None, 0, 8),
    ("do not go past max unavailable", 10, 30, 0, 2, (10, 10), (0, 0), None, 0, 8),
    ("max surge and max unavailable", 10, 50, 2, 1, (10, 10), (0, 0), None, 2, 9),
    ("canary to zero at weight 0", 10, 0, 1, 1, (10, 10), (1, 1), None, 0, 10),
    ("stable to zero at weight 100", 10, 100, 1, 1, (1, 1), (10, 10), None, 10, 0),
    ("canary not zero at non-zero weight", 1, 20, 1, 0, (1, 1), (0, 0), None, 1, 1),
    ("canary not zero at non-100 weight", 1, 90, 1, 0, (1, 1), (0, 0), None, 1, 1),
    ("canary zero below 50 without surge", 1, 49, 0, 1, (1, 1), (0, 0), None, 0, 1),
    ("stable to zero at >=50 without surge", 1, 51, 0, 1, (1, 1), (0, 0), None, 0, 0),
    ("canary to one at >=50 without surge", 1, 51, 0, 1, (0, 0), (0, 0), None, 1, 0),
    ("scale up stable before canary", 10, 30, 1, 0, (1, 1), (0, 0), (3, 3), 1, 7),
    ("scale down canary and stable", 10, 30, 0, 3, (8, 5), (4, 4), None, 3, 7),
    ("scale down stable and canary available", 10, 100, 1, 0, (10, 2), (10, 8), None, 9, 2),
    ("older RS blocks scale down", 10, 30, 0, 1, (8, 6), (4, 2), (3, 3), 4, 8),
    ("no rounding past surge, uneven weight", 10, 5, 0, 1, (10, 10), (0, 0), None, 0, 9),
    ("no rounding past surge, part 2", 10, 5, 0, 1, (9, 9), (0, 0), None, 1, 9),
    ("0%/0% resolves unavailable 1", 10, 10, "0%", "0%", (10, 10), (0, 0), None, 0, 9),
    ("setCanaryScale ignored without TR", 10, 20, "20%", 0, (10, 10), (0, 0), None, 2, 10),
    ("honor surge, stable unavailable", 4, 100, 1, 0, (4, 1), (0, 0), None, 1, 4),
    ("to maxUnavailable within surge", 3, 99, 0, 2, (3, 3), (0, 0), None, 0, 1),
    ("to maxUnavailable within surge 2", 3, 99, 0, 2, (1, 1), (0, 0), None, 2, 1),
    ("honor maxUnavailable, stable unavailable", 4, 100, 1, 0, (4, 1), (1, 1), None, 1, 3),
    ("abort part 1: surge stable first", 4, 0, 1, 0, (0, 0), (4, 4), None, 4, 1),
    ("abort part 2: stable not available", 4, 0, 1, 0, (1, 0), (4, 4), None, 4, 1),
    ("abort part 3: shrink canary by 1", 4, 0, 1, 0, (1, 1), (4, 4), None, 3, 1),
    ("promoteFull ignores weight", 4, 100, 4, 4, (4, 4), (0, 0), None, 4, 0),
    ("promoteFull honors fences", 4, 100, 3, 0, (4, 4), (0, 0), None, 3, 4),
]


def test_upstream_vector_counts():
    assert len(_APPROXIMATE_VECTORS) == 57
    assert len(_BASIC_CASES) == 33  # + 7 traffic-routed cases below = all 40 upstream cases


@pytest.mark.parametrize(
    ("replicas", "weight", "max_surge", "max_unav", "stable", "canary", "older", "exp_c", "exp_s"),
    [case[1:] for case in _BASIC_CASES],
    ids=[case[0] for case in _BASIC_CASES],
)
def test_upstream_basic_canary_counts(
    replicas, weight, max_surge, max_unav, stable, canary, older, exp_c, exp_s
):
    surge, unavailable = resolve_fenceposts(max_surge, max_unav, replicas)
    old_spec = older[0] if older else 0
    got = basic_canary_counts(replicas, weight, surge, unavailable, *canary, *stable, old_spec)
    assert got == (exp_c, exp_s)


def test_one_scaling_stage_per_reconcile():
    # counts want canary 0->2 and stable 10->9 at once; the stable goes first, alone
    assert basic_canary_counts(10, 50, 2, 1, 0, 0, 10, 10) == (2, 9)
    assert basic_canary_scale(10, 50, 2, 1, 0, 0, 10, 10) == (0, 9, 0)
    assert basic_canary_scale(10, 50, 2, 1, 0, 0, 9, 9) == (3, 9, 0)  # then the canary
    # only the canary moves when the stable is already right
    assert basic_canary_scale(10, 20, 2, 0, 0, 0, 10, 10) == (2, 10, 0)


def test_older_replica_set_drains_first():
    # stable/canary already at what this reconcile allows -> the older RS shrinks
    assert basic_canary_scale(10, 30, 1, 0, 1, 1, 7, 7, 3, 3) == (1, 7, 2)
    # next reconcile: one pod of surge budget is free again -> the canary grows
    assert basic_canary_scale(10, 30, 1, 0, 1, 1, 7, 7, 2, 2) == (2, 7, 2)
    # unhealthy old pods go regardless of availability (Argo's cleanup is not capped)
    assert basic_canary_scale(10, 30, 1, 0, 1, 1, 7, 7, 3, 1) == (1, 7, 1)
    # nothing older left -> nothing to do
    assert basic_canary_scale(10, 30, 1, 0, 3, 3, 7, 7) == (3, 7, 0)


def test_worked_trajectory_default_fences():
    states = basic_canary_trajectory(10, [20, 50])
    assert states == [
        (0, 10),
        (0, 8),  # w=20: stable 10 -> 8 first (availability dips to N − unavailable)
        (2, 8),  # then canary 0 -> 2
        (2, 6),  # w=50: stable 8 -> 6
        (5, 6),  # canary 2 -> 5
        (5, 5),  # stable 6 -> 5
        (5, 3),  # end: stable 5 -> 3
        (10, 3),  # canary 5 -> 10
        (10, 0),  # stable 3 -> 0
    ]
    assert basic_canary_trajectory(10, [20, 50], promote=False)[-1] == (5, 5)
    assert basic_canary_trajectory(10, [20, 50, 100]) == states


def test_worked_trajectory_surge_one_unavailable_zero_alternates():
    states = basic_canary_trajectory(10, [20, 50], 1, 0)
    assert states[0] == (0, 10) and states[-1] == (10, 0)
    steps = [(c1 - c0, s1 - s0) for (c0, s0), (c1, s1) in itertools.pairwise(states)]
    assert steps == [(1, 0), (0, -1)] * 10  # never below 10 available, never above 11 pods


def test_trajectory_single_replica_and_surge_zero_edge():
    assert basic_canary_trajectory(1, [5]) == [(0, 1), (1, 1), (1, 0)]  # 50% at setWeight 5
    # derived edge case: N=2, maxSurge 0, maxUnavailable 1: canary drops to 0 at w=75
    path = basic_canary_trajectory(2, [50, 75], 0, 1, promote=False)
    assert path == [(0, 2), (0, 1), (1, 1), (0, 1), (0, 2)]


# --------------------------------------------------------------------------- traffic routing


@pytest.mark.parametrize(
    ("replicas", "weight", "max_weight", "expected"),
    [
        (10, 0, 100, 0),
        (10, 20, 100, 2),
        (10, 25, 100, 3),
        (10, 33, 100, 4),
        (10, 99, 100, 10),
        (10, 100, 100, 10),
        (23, 100_000_000, 100_000_000, 23),
    ],
)
def test_upstream_traffic_weight_to_replicas(replicas, weight, max_weight, expected):
    assert traffic_weight_to_replicas(replicas, weight, max_weight) == expected


# TestCalculateReplicaCountsForCanary cases with trafficRouting, after resolving which weight and
# setCanaryScale GetCanaryReplicasOrWeight picks: (name, N, weight, scs replicas, scs weight,
# minPodsPerReplicaSet, expected canary, expected stable).
_TR_CASES = [
    ("setCanaryScale.replicas ignores setWeight", 1, 100, 9, None, None, 9, 1),
    ("setCanaryScale.weight ignores setWeight", 4, 100, None, 200, None, 8, 4),
    ("matchTrafficWeight cancels setCanaryScale", 10, 20, None, None, None, 2, 10),
    ("aborted, abortScaleDownDelay 0 keeps scale", 1, 0, 1, None, None, 1, 1),
    ("aborted, abortScaleDownDelay>0 drops scale", 1, 0, None, None, None, 0, 1),
    ("minPodsPerReplicaSet raises canary", 10, 5, None, None, 2, 2, 10),
    ("minPodsPerReplicaSet capped at N (promoteFull)", 1, 100, None, None, 2, 1, 1),
]


@pytest.mark.parametrize(
    ("replicas", "weight", "scs_replicas", "scs_weight", "min_pods", "exp_c", "exp_s"),
    [case[1:] for case in _TR_CASES],
    ids=[case[0] for case in _TR_CASES],
)
def test_upstream_traffic_routed_cases(
    replicas, weight, scs_replicas, scs_weight, min_pods, exp_c, exp_s
):
    got = traffic_routed_counts(
        replicas,
        weight,
        canary_scale_replicas=scs_replicas,
        canary_scale_weight=scs_weight,
        min_pods_per_replica_set=min_pods,
    )
    assert got == (exp_c, exp_s)


def test_traffic_routed_ceil_and_stable_fully_scaled():
    assert traffic_routed_counts(10, 10) == (1, 10)  # TestCalculateReplicaCountsForCanaryTR
    assert traffic_routed_counts(10, 1) == (1, 10)  # ceil: 0.1 pod -> 1
    assert traffic_routed_counts(3, 34) == (2, 3)
    assert traffic_routed_counts(1, 1) == (1, 1)
    assert traffic_routed_counts(10, 0) == (0, 10)
    assert traffic_routed_counts(10, 50, 1000) == (1, 10)  # maxTrafficWeight 1000


def test_set_canary_scale_replicas_skip_min_pods_weight_does_not():
    floor3 = {"min_pods_per_replica_set": 3}
    assert traffic_routed_counts(10, 0, canary_scale_replicas=1, **floor3) == (1, 10)
    assert traffic_routed_counts(10, 0, canary_scale_weight=10, **floor3) == (3, 10)
    assert traffic_routed_counts(10, 50, canary_scale_replicas=0) == (0, 10)


# TestCalculateReplicaCountsForCanaryTrafficRoutingDynamicScale (N=10, dynamicStableScale):
# (name, aborted, setWeight steps, canary RS spec (= available) or None, stable RS
#  (spec, available) or None, recorded canary weight, recorded stable weight, expected).
_DYNAMIC_CASES = [
    ("abort: stable up to next step down", True, [20, 60], 6, (4, 4), 60, 40, (6, 8)),
    ("abort: fewer canaries than expected", True, [20, 60], 1, (4, 4), 60, 40, (6, 8)),
    ("abort: by available stable", True, [20, 60], 2, (8, 4), 60, 40, (6, 8)),
    ("abort: no RSs passed", True, [20, 60], None, None, 60, 40, (6, 10)),
    ("scale down stable", False, [10], None, None, 10, 90, (1, 9)),
    ("desired canary 20 > actual 10", False, [20], None, None, 10, 90, (2, 9)),
    ("abort: canary kept while it has traffic", True, [20], None, None, 20, 80, (2, 10)),
    ("abort: canary reduced with its traffic", True, [20], None, None, 10, 90, (1, 10)),
]


@pytest.mark.parametrize(
    ("aborted", "steps", "canary_rs", "stable_rs", "canary_w", "stable_w", "expected"),
    [case[1:] for case in _DYNAMIC_CASES],
    ids=[case[0] for case in _DYNAMIC_CASES],
)
def test_upstream_dynamic_stable_scale(
    aborted, steps, canary_rs, stable_rs, canary_w, stable_w, expected
):
    # GetDesiredCanaryWeight: abort + dynamic + both RSs -> walk steps back; abort alone -> 0;
    # otherwise the current step (index 0).
    if aborted and canary_rs is not None and stable_rs is not None:
        weight = abort_desired_weight(10, steps, stable_rs[1], canary_rs)
        assert weight == 20
    else:
        weight = 0 if aborted else steps[0]
    got = traffic_routed_counts(
        10,
        weight,
        dynamic_stable_scale=True,
        actual_stable_weight=stable_w,
        actual_canary_weight=canary_w,
        aborted=aborted,
        canary_spec=canary_rs,
    )
    assert got == expected


def test_dynamic_stable_scale_rules():
    dynamic = {"dynamic_stable_scale": True}
    # stable only shrinks once traffic has moved: desired 50/50 but router still at 90 stable
    assert traffic_routed_counts(10, 50, actual_stable_weight=90, **dynamic) == (5, 9)
    assert traffic_routed_counts(10, 50, actual_stable_weight=50, **dynamic) == (5, 5)
    # minPods applies to both sides under dynamic scaling
    got = traffic_routed_counts(
        10, 95, dynamic_stable_scale=True, actual_stable_weight=5, min_pods_per_replica_set=3
    )
    assert got == (10, 3)
    # aborting: the canary keeps the pods its remaining traffic needs ...
    aborted = {"dynamic_stable_scale": True, "aborted": True, "canary_spec": 2}
    got = traffic_routed_counts(10, 0, actual_stable_weight=40, actual_canary_weight=60, **aborted)
    assert got == (6, 10)
    # ... but a canary already drained to 2 is not re-grown when the abort weight rises to 40
    got = traffic_routed_counts(10, 40, actual_stable_weight=90, actual_canary_weight=10, **aborted)
    assert got == (2, 9)


def test_abort_desired_weight_walks_steps_backwards():
    steps = [10, 30, 60]
    assert abort_desired_weight(10, steps, 4, 6) == 30  # holds 6: first step below is 30 (3)
    assert abort_desired_weight(10, steps, 7, 3) == 10  # holds 3 -> 10% (1 pod)
    assert abort_desired_weight(10, steps, 9, 1) == 0  # nothing below 1 pod
    assert abort_desired_weight(10, steps, 10, 6) == 30  # canary pods still hold traffic
    # explicit abortScaleDownDelaySeconds: only stable availability counts (PR #4900)
    assert abort_desired_weight(10, steps, 10, 6, explicit_abort_delay=True) == 0


# --------------------------------------------------------------------------- Kubernetes Deployment


def _check_fences(states, replicas, surge, unavailable):
    for new, old in states:
        assert new + old <= replicas + surge
        assert new + old >= replicas - unavailable


def test_rolling_update_ten_replicas_default():
    states = rolling_update_trajectory(10)
    assert states == [(0, 10), (3, 10), (3, 5), (8, 5), (8, 0), (10, 0)]
    _check_fences(states, 10, 3, 2)  # <= 13 pods, >= 8 available at every step


def test_rolling_update_three_replicas_surge_one():
    states = rolling_update_trajectory(3, 1, 0)
    assert states == [(0, 3), (1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]
    _check_fences(states, 3, 1, 0)
    assert rolling_update_trajectory(3) == states  # 25%/25% of 3 resolves to the same fences


def test_rolling_update_one_replica():
    assert rolling_update_trajectory(1) == [(0, 1), (1, 1), (1, 0)]
    assert rolling_update_trajectory(1, 0, 1) == [(0, 1), (0, 0), (1, 0)]


def test_rolling_update_sync_details():
    # new pods not ready yet: old may only go down to what is available (13 - 8 - 3 = 2)
    assert rolling_update_sync(10, 3, 2, 3, 0, 10, 10) == (3, 8)
    # upstream comment, case 1: new RS crashlooping, an old pod lost -> 13 - 8 - 5 = 0: no move
    assert rolling_update_sync(10, 3, 2, 5, 0, 8, 7) == (5, 8)
    # unhealthy old pods first (capped by maxScaledDown), then availability above minAvailable
    assert rolling_update_sync(10, 3, 2, 3, 3, 10, 7) == (3, 5)
    # new RS above desired (scale-in) is cut back before anything else
    assert rolling_update_sync(10, 3, 2, 12, 12, 0, 0) == (10, 0)
    # 5 unhealthy old pods: all removed (maxScaledDown 5), no available pod lost
    assert rolling_update_sync(10, 3, 2, 3, 3, 10, 5) == (3, 5)
    # cleanup is capped: 13 - 8 - 3 unready new = 2 of the 2 unhealthy, none available to spare
    assert rolling_update_sync(10, 3, 2, 3, 0, 10, 8) == (3, 8)


# --------------------------------------------------------------------------- properties

_percent = st.integers(0, 100).map(lambda p: f"{p}%")
_fence = st.one_of(st.integers(0, 12), _percent)


@given(st.integers(0, 300), st.integers(0, 100), st.integers(0, 10))
def test_targets_total_n_or_n_plus_one(replicas, weight, surge):
    canary, stable = basic_canary_targets(replicas, weight, surge)
    assert canary >= 0 and stable >= 0
    if replicas == 0:
        assert (canary, stable) == (0, 0)
    elif surge == 0:
        assert canary + stable == replicas
    else:
        assert canary + stable in (replicas, replicas + 1)
    if weight in (0, 100):
        assert (canary, stable) == ((0, replicas) if weight == 0 else (replicas, 0))


@given(st.integers(2, 300), st.integers(1, 99), st.integers(1, 10))
def test_targets_keep_both_sides_with_surge(replicas, weight, surge):
    canary, stable = basic_canary_targets(replicas, weight, surge)
    assert canary >= 1 and stable >= 1


@given(st.integers(1, 40), st.lists(st.integers(0, 100), max_size=4), _fence, _fence)
def test_trajectory_respects_fences_and_reaches_targets(replicas, weights, max_surge, max_unav):
    surge, unavailable = resolve_fenceposts(max_surge, max_unav, replicas)
    states = basic_canary_trajectory(replicas, weights, max_surge, max_unav)
    assert states[0] == (0, replicas)
    assert states[-1] == (replicas, 0)
    for canary, stable in states:  # pods ready at once: availability == Σ spec
        assert canary + stable <= replicas + surge
        assert canary + stable >= replicas - unavailable
    for (c0, s0), (c1, s1) in itertools.pairwise(states):
        assert (c0 == c1) != (s0 == s1)  # exactly one ReplicaSet scaled per reconcile
    for i, weight in enumerate(weights):  # each setWeight settles exactly on its targets
        path = basic_canary_trajectory(
            replicas, weights[: i + 1], max_surge, max_unav, promote=False
        )
        assert path[-1] == basic_canary_targets(replicas, weight, surge)


@given(st.integers(0, 60), _fence, _fence)
def test_rolling_update_respects_fences(replicas, max_surge, max_unav):
    surge, unavailable = resolve_fenceposts(max_surge, max_unav, replicas)
    states = rolling_update_trajectory(replicas, max_surge, max_unav)
    assert states[-1] == (replicas, 0)
    _check_fences(states, replicas, surge, unavailable)


@given(st.integers(0, 200), st.integers(0, 100))
def test_traffic_routed_canary_is_ceil_and_stable_full(replicas, weight):
    canary, stable = traffic_routed_counts(replicas, weight)
    assert stable == replicas
    assert canary * 100 >= replicas * weight > (canary - 1) * 100
