"""The canary controller's walk over a policy's steps, once per policy object.

Argo walks back from the current step on every reconcile (``GetCurrentSetWeight``,
``UseSetCanaryScale``); the walk depends on the policy alone, so it is made once per policy
and shared by the replications of a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policies.canary import Canary

__all__ = ["walk_back"]

_WALKED: list = [(None, ())]  # (the policy last walked, its walk): a run's replications share it


def walk_back(policy: Canary) -> tuple:
    """Per step, the setWeight and setCanaryScale in effect there, the step's deciding action
    and whether it waits indefinitely, and a cache of the routed pod counts that its controllers
    fill (``_reconcile_replicas``); once per policy object (immutable, one per run)."""
    last, walk = _WALKED[0]  # one read: a pair of one policy, whatever another thread does
    if last is policy:
        return walk
    steps, weights, scales, weight, scale = policy.steps, [], [], 0, None
    for step in steps:
        weight = step.set_weight if step.set_weight is not None else weight
        if (set_scale := step.set_canary_scale) is not None:
            scale = None if set_scale.match_traffic_weight else set_scale
        weights.append(weight)
        scales.append(scale)
    waits = [(s.pause, s.analysis, s.experiment) for s in steps]  # Argo's isIndefiniteStep
    indefinite = tuple(any(action is not None for action in w) for w in waits)
    walk = (steps, tuple(weights), tuple(scales), indefinite, tuple(s.operation for s in steps), {})
    _WALKED[0] = (policy, walk)
    return walk
