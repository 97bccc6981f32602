"""The canary controller's walk over a policy's steps, once per policy object.

Argo walks back from the current step on every reconcile (``GetCurrentSetWeight``,
``UseSetCanaryScale``); the walk depends on the policy alone, so it is made once per policy
and shared by the replications of a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.kept import kept_for_the_last

if TYPE_CHECKING:
    from policies.canary import Canary

__all__ = ["walk_back"]


@kept_for_the_last
def walk_back(policy: Canary) -> tuple:
    """Per step, the setWeight and setCanaryScale in effect there, the step's deciding action
    and whether it waits indefinitely, and a cache of the routed pod counts that its controllers
    fill (``_reconcile_replicas``)."""
    steps, weights, scales, weight, scale = policy.steps, [], [], 0, None
    for step in steps:
        weight = step.set_weight if step.set_weight is not None else weight
        if (set_scale := step.set_canary_scale) is not None:
            scale = None if set_scale.match_traffic_weight else set_scale
        weights.append(weight)
        scales.append(scale)
    waits = [(s.pause, s.analysis, s.experiment) for s in steps]  # Argo's isIndefiniteStep
    indefinite = tuple(any(action is not None for action in w) for w in waits)
    return (steps, tuple(weights), tuple(scales), indefinite, tuple(s.operation for s in steps), {})
