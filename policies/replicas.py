"""Replica arithmetic of the executors: what Argo Rollouts and Kubernetes actually scale to.

Blast radius is decided by pod counts, not by the weight a user writes: a basic canary at
``setWeight: 5`` with 3 replicas serves 25% of traffic. These pure integer functions port the
controllers' own arithmetic so the simulator reproduces those counts exactly, one reconcile (or
one Deployment sync) at a time.

Sources (ported logic, no code copied), argoproj/argo-rollouts @01240d81b18c:
``utils/replicaset/canary.go`` (``approximateWeightedCanaryStableReplicaCounts``,
``CalculateReplicaCountsForBasicCanary``, ``adjustReplicaWithinLimits``,
``CalculateReplicaCountsForTrafficRoutedCanary``, ``GetDesiredCanaryWeight``),
``utils/replicaset/replicaset.go`` (``resolveFenceposts``, ``MaxSurge``, ``MaxUnavailable``),
``rollout/canary.go`` @737ca89b42e4 (``reconcileCanaryReplicaSets``,
``scaleDownOldReplicaSetsForCanary``), ``rollout/replicaset.go`` (``cleanupUnhealthyReplicas``);
kubernetes/kubernetes ``pkg/controller/deployment/rolling.go`` (``rolloutRolling``) and
``deployment/util`` (``ResolveFenceposts``, ``NewRSNewReplicas``). Where Go uses float64 (ties,
weight deltas) the same IEEE operations are used here, so results match bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from policies.base import resolve_int_or_percent

__all__ = [
    "abort_desired_weight",
    "basic_canary_counts",
    "basic_canary_scale",
    "basic_canary_targets",
    "basic_canary_trajectory",
    "resolve_fenceposts",
    "rolling_update_sync",
    "rolling_update_trajectory",
    "traffic_routed_counts",
    "traffic_weight_to_replicas",
]

_MAX_RECONCILES = 10_000  # a trajectory longer than this means a bug, not a slow rollout


def resolve_fenceposts(
    max_surge: int | str, max_unavailable: int | str, replicas: int
) -> tuple[int, int]:
    """(surge, unavailable) pods: surge rounds up, unavailable down; both 0 -> unavailable 1.

    Argo's ``resolveFenceposts`` + ``MaxSurge``/``MaxUnavailable`` and Kubernetes'
    ``ResolveFenceposts`` + ``MaxUnavailable`` agree: unavailable is capped at ``replicas`` (0 when
    there are no replicas), surge is not capped.
    """
    if replicas < 0:
        raise ValueError(f"replicas {replicas} is negative")
    surge = resolve_int_or_percent(max_surge, replicas, round_up=True)
    unavailable = resolve_int_or_percent(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # percentages may both round to 0; the controllers then allow 1
    return surge, min(unavailable, replicas)


def _tied(weight: int, max_weight: int, total: int) -> bool:
    """Go ``floorCeilingTied``: total·w/M has fractional part exactly .5 (float64, as upstream)."""
    return math.modf(float(total) * (float(weight) / float(max_weight)))[0] == 0.5


def _delta(weight: int, max_weight: int, canary: int, total: int) -> float:
    """Go ``weightDelta``: how far canary/total of the traffic is from the wanted weight."""
    return abs(float(canary * max_weight) / float(total) - float(weight))


def basic_canary_targets(
    replicas: int, weight: int, surge: int, max_weight: int = 100
) -> tuple[int, int]:
    """(canary, stable) target pods for a basic canary: closest share with N or N+1 pods.

    Argo ``approximateWeightedCanaryStableReplicaCounts``: candidates are ceil/floor of N·w/M at a
    total of N, and (if surge > 0) at N+1; a floor of 0 is excluded unless w is 0 or M (or N=1 with
    no surge); a floor whose total has an exact .5 share is excluded (ties round the canary up); the
    earliest candidate wins equal deltas. No candidate at all (surge 0, N·w/M = N − 0.5) falls back
    to (0, N), as upstream does.
    """
    if replicas == 0:
        return 0, 0
    share = float(replicas * weight) / float(max_weight)
    ceil_canary, floor_canary = math.ceil(share), math.floor(share)
    zero_allowed = weight in (0, max_weight) or (replicas == 1 and surge == 0)
    floor_ok = floor_canary != 0 or zero_allowed

    options: list[tuple[int, int]] = []
    if ceil_canary < replicas or zero_allowed:
        options.append((ceil_canary, replicas))
    if floor_ok and not _tied(weight, max_weight, replicas):
        options.append((floor_canary, replicas))
    if surge > 0:
        options.append((ceil_canary, replicas + 1))
        if floor_ok and not _tied(weight, max_weight, replicas + 1):
            options.append((floor_canary, replicas + 1))
    if not options:
        return 0, replicas  # upstream "should not get here" fallback

    best = options[0]
    best_delta = _delta(weight, max_weight, *best)
    for option in options[1:]:
        delta = _delta(weight, max_weight, *option)
        if delta < best_delta:  # strict: on a tie the earlier candidate stays
            best, best_delta = option, delta
    return best[0], best[1] - best[0]


def _for_scale_down(spec: int, available: int, ignore_availability: bool) -> int:
    """Go ``GetReplicasForScaleDown``: pods a scale-down may count on."""
    if spec < available:  # extra pods are leaving anyway; never count on them
        return spec
    return spec if ignore_availability else available


def _adjust_within_limits(
    drain_count: int,
    drain_available: int,
    adjust_count: int,
    adjust_available: int,
    max_total: int,
    min_available: int,
) -> tuple[int, int]:
    """Go ``adjustReplicaWithinLimits``: trim so Σspec ≤ N+surge, give back pods below minAvailable.

    Returns (drain_count, adjust_count).
    """
    over = max(0, adjust_count + drain_count - max_total)
    adjust_count -= over
    total_available = min(drain_available, drain_count) + min(adjust_available, adjust_count)
    lost_available = max(0, adjust_available - adjust_count)
    missing = max(0, min_available - total_available)
    adjust_count += min(lost_available, missing)
    drain_count -= max(0, adjust_count + drain_count - max_total)
    return drain_count, adjust_count


def basic_canary_counts(
    replicas: int,
    weight: int,
    surge: int,
    unavailable: int,
    canary_spec: int,
    canary_available: int,
    stable_spec: int,
    stable_available: int,
    old_spec: int = 0,
    max_weight: int = 100,
) -> tuple[int, int]:
    """(canary, stable) counts Argo wants this reconcile (``CalculateReplicaCountsForBasicCanary``).

    Both values at once, before the one-stage-per-reconcile rule (``basic_canary_scale``) applies.
    ``surge``/``unavailable`` are resolved pod counts (``resolve_fenceposts``). Full promotion,
    end of steps and ``promoteFull`` all mean ``weight == max_weight``; abort means weight 0.
    """
    want_canary, want_stable = basic_canary_targets(replicas, weight, surge, max_weight)
    canary, stable = canary_spec, stable_spec
    max_total = replicas + surge

    # Scale up within the surge budget, stable first.
    budget = max_total - (old_spec + canary_spec + stable_spec)
    if stable_spec < want_stable and budget > 0:
        stable = min(want_stable, stable_spec + budget)
        budget -= stable - stable_spec
    if canary_spec < want_canary and budget > 0:
        canary = min(want_canary, canary_spec + budget)

    if old_spec > 0:
        return canary, stable  # older ReplicaSets drain first (scaleDownOldReplicaSetsForCanary)

    # Scale down the RS that is shrinking, counting only pods that may be relied on.
    min_available = replicas - unavailable
    increasing = want_canary >= canary_spec
    countable = _for_scale_down(canary_spec, canary_available, not increasing) + _for_scale_down(
        stable_spec, stable_available, increasing
    )
    if countable <= min_available:
        return canary, stable
    scale_down = countable - min_available
    if not increasing:
        if canary_spec > want_canary:
            canary = max(want_canary, canary_spec - scale_down)
        canary, stable = _adjust_within_limits(
            canary, canary_available, stable, stable_available, max_total, min_available
        )
    else:
        if stable_spec > want_stable:
            stable = max(want_stable, stable_spec - scale_down)
        stable, canary = _adjust_within_limits(
            stable, stable_available, canary, canary_available, max_total, min_available
        )
    return canary, stable


def basic_canary_scale(
    replicas: int,
    weight: int,
    surge: int,
    unavailable: int,
    canary_spec: int,
    canary_available: int,
    stable_spec: int,
    stable_available: int,
    old_spec: int = 0,
    old_available: int = 0,
    max_weight: int = 100,
) -> tuple[int, int, int]:
    """New (canary_spec, stable_spec, old_spec) after ONE basic-canary reconcile.

    ``reconcileCanaryReplicaSets`` scales at most one stage per reconcile: the stable RS, else the
    canary RS, else the older RS (unhealthy pods removed first, then down to what availability
    above N − unavailable allows). That ordering is why the stable shrinks before the canary grows.
    """
    canary, stable = basic_canary_counts(
        replicas,
        weight,
        surge,
        unavailable,
        canary_spec,
        canary_available,
        stable_spec,
        stable_available,
        old_spec,
        max_weight,
    )
    if stable != stable_spec:
        return canary_spec, stable, old_spec
    if canary != canary_spec:
        return canary, stable_spec, old_spec
    if old_spec == 0:
        return canary_spec, stable_spec, old_spec
    if old_available > old_spec:
        return canary_spec, stable_spec, old_spec  # upstream cleanup errors out and does nothing
    old = old_available  # cleanupUnhealthyReplicas: not capped for Argo canary
    max_scale_down = canary_available + stable_available + old_available - (replicas - unavailable)
    if max_scale_down > 0:
        old = max(0, old - max_scale_down)
    return canary_spec, stable_spec, old


def basic_canary_trajectory(
    replicas: int,
    weights: Sequence[int],
    max_surge: int | str = "25%",
    max_unavailable: int | str = "25%",
    *,
    max_weight: int = 100,
    promote: bool = True,
) -> list[tuple[int, int]]:
    """Every (canary_spec, stable_spec) a basic canary passes through, from (0, N).

    Each ``setWeight`` is reconciled until nothing changes, every pod being available before the
    next reconcile (the fastest the controller can go). With ``promote`` the end of the steps
    (weight = max_weight) follows, as in Argo, unless the last weight already is max_weight.
    """
    surge, unavailable = resolve_fenceposts(max_surge, max_unavailable, replicas)
    plan = list(weights)
    if promote and (not plan or plan[-1] != max_weight):
        plan.append(max_weight)
    canary, stable = 0, replicas
    states = [(canary, stable)]
    for weight in plan:
        for _ in range(_MAX_RECONCILES):
            new_canary, new_stable, _old = basic_canary_scale(
                replicas,
                weight,
                surge,
                unavailable,
                canary,
                canary,
                stable,
                stable,
                0,
                0,
                max_weight,
            )
            if (new_canary, new_stable) == (canary, stable):
                break
            canary, stable = new_canary, new_stable
            states.append((canary, stable))
        else:  # pragma: no cover - would be a porting bug
            raise RuntimeError(f"no fixed point for N={replicas} w={weight}")
    return states


def traffic_weight_to_replicas(replicas: int, weight: int, max_weight: int = 100) -> int:
    """Pods for a traffic weight under traffic routing; rounds up (``trafficWeightToReplicas``)."""
    return math.ceil(float(weight) * float(replicas) / float(max_weight))


def _min_pods(count: int, replicas: int, min_pods: int | None) -> int:
    """``CheckMinPodsPerReplicaSet``: a non-zero count is raised to min(minPods, N)."""
    if count == 0 or min_pods is None:
        return count
    return max(count, min(min_pods, replicas))


def traffic_routed_counts(
    replicas: int,
    weight: int,
    max_weight: int = 100,
    *,
    canary_scale_replicas: int | None = None,
    canary_scale_weight: int | None = None,
    dynamic_stable_scale: bool = False,
    actual_stable_weight: int | None = None,
    actual_canary_weight: int | None = None,
    aborted: bool = False,
    canary_spec: int | None = None,
    min_pods_per_replica_set: int | None = None,
) -> tuple[int, int]:
    """(canary, stable) pods under a router (``CalculateReplicaCountsForTrafficRoutedCanary``).

    The canary is ceil(w·N/M) raised by minPodsPerReplicaSet, or the setCanaryScale in effect:
    ``canary_scale_replicas`` is used as-is (no minPods), ``canary_scale_weight`` goes through
    ceil + minPods. The stable stays at N unless ``dynamic_stable_scale``; then it is the larger of
    the desired stable share and ``actual_stable_weight`` (the weights recorded last reconcile), so
    it only shrinks after traffic moved. When ``aborted`` with dynamic scaling, the canary keeps
    the pods its ``actual_canary_weight`` still needs, capped at what it already had
    (``canary_spec``, if known). Choosing the weight (abort → 0, promoteFull → M, see
    ``abort_desired_weight``) and which setCanaryScale applies is the caller's job.
    """
    if canary_scale_replicas is not None:
        canary = canary_scale_replicas
    else:
        scale_weight = weight if canary_scale_weight is None else canary_scale_weight
        canary = _min_pods(
            traffic_weight_to_replicas(replicas, scale_weight, max_weight),
            replicas,
            min_pods_per_replica_set,
        )
    if not dynamic_stable_scale:
        return canary, replicas

    stable = traffic_weight_to_replicas(replicas, max_weight - weight, max_weight)
    if actual_stable_weight is not None:
        stable = max(stable, traffic_weight_to_replicas(replicas, actual_stable_weight, max_weight))
    if aborted and actual_canary_weight is not None:
        still_needed = traffic_weight_to_replicas(replicas, actual_canary_weight, max_weight)
        canary = max(still_needed, canary)
        uses_scale = canary_scale_replicas is not None or canary_scale_weight is not None
        if canary_spec is not None and not uses_scale:
            canary = min(canary, max(still_needed, canary_spec))  # never re-grow a drained canary
    return (
        _min_pods(canary, replicas, min_pods_per_replica_set),
        _min_pods(stable, replicas, min_pods_per_replica_set),
    )


def abort_desired_weight(
    replicas: int,
    step_weights: Sequence[int],
    stable_available: int,
    canary_available: int,
    max_weight: int = 100,
    *,
    explicit_abort_delay: bool = False,
) -> int:
    """Canary weight while aborting with dynamicStableScale (``GetDesiredCanaryWeight``).

    Walks the setWeight steps backwards and returns the first whose pods are fewer than the canary
    still holds (N − stable available, or the canary's available pods if more), else 0, so the
    stable grows back step by step. An explicit abortScaleDownDelaySeconds keeps the canary at full
    size, so only stable availability counts then (avoids the deadlock fixed upstream in PR #4900).
    """
    held = replicas - stable_available
    if not explicit_abort_delay:
        held = max(held, canary_available)
    for weight in reversed(step_weights):
        if traffic_weight_to_replicas(replicas, weight, max_weight) < held:
            return weight
    return 0


def rolling_update_sync(
    replicas: int,
    surge: int,
    unavailable: int,
    new_spec: int,
    new_available: int,
    old_spec: int,
    old_available: int,
    partition: int | None = None,
) -> tuple[int, int]:
    """New (new_spec, old_spec) after ONE Kubernetes Deployment ``rolloutRolling`` sync.

    Scale the new RS up within N + surge and end the sync if it changed; otherwise scale the old
    RS down: unhealthy pods first (bounded by what the fences allow), then available pods above
    N − unavailable. ``surge``/``unavailable`` come from ``resolve_fenceposts``.
    ``partition`` stops the update at that many new pods (a batch release paused after a
    batch): the new RS aims for it and the old RS keeps N − partition.
    """
    target = replicas if partition is None else min(partition, replicas)
    floor = replicas - target
    if new_spec != target:
        if new_spec > target:
            return target, old_spec
        total = new_spec + old_spec
        if total < replicas + surge:
            wanted = new_spec + min(replicas + surge - total, target - new_spec)
            if wanted != new_spec:
                return wanted, old_spec
    if old_spec <= floor:
        return new_spec, old_spec
    min_available = replicas - unavailable
    max_scaled_down = new_spec + old_spec - min_available - (new_spec - new_available)
    if max_scaled_down <= 0:
        return new_spec, old_spec
    old = old_spec
    if old_spec != old_available:
        if old_available > old_spec:
            return new_spec, old_spec  # upstream cleanup errors out and does nothing
        old -= min(max_scaled_down, old_spec - old_available)
    excess = new_available + old_available - min_available
    if excess > 0:
        old -= min(old, excess)
    return new_spec, max(old, floor)


def rolling_update_trajectory(
    replicas: int, max_surge: int | str = "25%", max_unavailable: int | str = "25%"
) -> list[tuple[int, int]]:
    """Every (new_spec, old_spec) of a Deployment rolling update from (0, N), pods ready at once."""
    surge, unavailable = resolve_fenceposts(max_surge, max_unavailable, replicas)
    new, old = 0, replicas
    states = [(new, old)]
    for _ in range(_MAX_RECONCILES):
        step = rolling_update_sync(replicas, surge, unavailable, new, new, old, old)
        if step == (new, old):
            return states
        new, old = step
        states.append(step)
    raise RuntimeError(f"no fixed point for D={replicas}")  # pragma: no cover
