"""An Argo canary as a Flagger canary, where Flagger's uniform tick can hold it.

Steps must be ``setWeight``/``pause`` pairs with one pause duration (the interval), through one
router Flagger has a provider for, and background metrics measured once per tick whose failure
limits a single cumulative threshold reproduces (reference/executors.md §A.3-A.4). Everything
else is refused naming the step or field.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic.alias_generators import to_camel

from policies.canary import Canary, Pause
from policies.exporters import Target
from policies.exporters.flagger_metrics import canary_metric, flagger_interval, refuse
from policies.vocabulary import FLAGGER_PROVIDERS, provider_router
from policies.vocabulary import FlaggerProvider as Provider

__all__ = ["canary_analysis"]

_BY_ROUTER = {provider_router(p): p for p in FLAGGER_PROVIDERS if p != "kubernetes"}


def _provider(policy: Canary) -> Provider:
    routing = policy.traffic_routing
    if routing is None:
        raise refuse(
            "trafficRouting",
            "Flagger shifts weight with a router; a replica-ratio canary behind one Service has"
            f" no Flagger form: give trafficRouting one of {', '.join(sorted(_BY_ROUTER))}",
        )
    if len(routing.kinds) > 1:
        raise refuse(
            "trafficRouting",
            "Flagger drives one provider; Argo sets the weight on several: keep one router",
        )
    provider = _BY_ROUTER.get(routing.kinds[0])
    if provider is None:
        raise refuse(
            "trafficRouting",
            f"Flagger has no {routing.kinds[0]} provider: give trafficRouting one of"
            f" {', '.join(sorted(_BY_ROUTER))}",
        )
    if routing.max_traffic_weight != 100:
        raise refuse(
            "trafficRouting.maxTrafficWeight",
            "Flagger's total weight is fixed at 100: drop maxTrafficWeight and give setWeight"
            " in percent",
        )
    return provider


def canary_analysis(policy: Canary, target: Target) -> tuple[Provider, dict[str, Any], list]:
    """(provider, ``spec.analysis``, MetricTemplates) of an Argo canary."""
    provider = _provider(policy)
    for name, camel in (
        ("dynamic_stable_scale", "dynamicStableScale"),
        ("min_pods_per_replica_set", "minPodsPerReplicaSet"),
        ("scale_down_delay_seconds", "scaleDownDelaySeconds"),
        ("abort_scale_down_delay_seconds", "abortScaleDownDelaySeconds"),
        ("rollback_window", "rollbackWindow"),
    ):
        if getattr(policy, name) not in (None, False):
            raise refuse(
                camel, "an Argo-only setting: Flagger's primary/canary pair has none: drop it"
            )
    weights, tick = _pairs(policy)
    templates: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    limits: list[int] = []
    if policy.analysis is not None:
        for ref in policy.analysis.templates:
            i = next(
                k for k, t in enumerate(policy.analysis_templates) if t.name == ref.template_name
            )
            found = policy.analysis_templates[i]
            if found.dry_run:
                raise refuse(
                    f"analysisTemplates[{i}].dryRun",
                    "Flagger has no dry-run metric: drop dryRun to let it gate, or drop it",
                )
            for j, m in enumerate(found.metrics):
                where = f"analysisTemplates[{i}].metrics[{j}]"
                entry, made, limit = canary_metric(m, where, tick, provider, target)
                metrics.append(entry)
                templates.append(made)
                limits.append(limit)
    if policy.analysis is not None and policy.analysis.starting_step:
        raise refuse(
            "analysis.startingStep", "Flagger analyses from the first tick: drop startingStep"
        )
    if any(limit < 0 for limit in limits) or (len(limits) > 1 and any(limits)):
        raise refuse(
            "analysisTemplates.metrics.failureLimit",
            "Flagger counts failed ticks across all metrics (one per tick) against one"
            " threshold: only a single metric, or failureLimit 0 everywhere, is the same",
        )
    analysis = {
        "interval": flagger_interval("steps.pause.duration", tick),
        "threshold": (limits[0] + 1) if limits else 1,
        "stepWeights": weights,
        "metrics": metrics,
    }
    return provider, analysis, templates


_ARGO_ONLY = ("set_canary_scale", "set_header_route", "set_mirror_route", "experiment", "plugin")
"""Step actions Flagger has no counterpart of, by their Argo names."""


def _pairs(policy: Canary) -> tuple[list[int], float]:
    """The stepWeights and the tick of setWeight/pause pairs with one pause duration."""
    steps = policy.steps
    if not steps:
        raise refuse(
            "steps",
            "without steps Argo rolls out at once; Flagger needs weights: give setWeight/pause"
            " pairs",
        )
    weights: list[int] = []
    tick: float | None = None
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        action = step.action
        argo_only = [a for a in step.actions if a in _ARGO_ONLY]
        if argo_only:
            camel = to_camel(argo_only[0])
            raise refuse(
                f"{where}.{camel}",
                "an Argo-only step: Flagger has no such action; its steps are setWeight/pause"
                " pairs",
            )
        if action == "analysis":
            raise refuse(
                f"{where}.analysis",
                "Flagger analyses on every tick; a one-off analysis step has no Flagger form:"
                " move its templates to the background analysis",
            )
        want = "set_weight" if i % 2 == 0 else "pause"
        if action != want:
            raise refuse(
                where,
                "Flagger holds each weight for one tick: steps must be setWeight/pause pairs",
            )
        if step.set_weight is not None:  # action == "set_weight" (the first of a step's actions)
            if step.set_weight == 0 or (weights and step.set_weight <= weights[-1]):
                raise refuse(
                    f"{where}.setWeight",
                    "Flagger's stepWeights rise from 1 to 100: give rising weights",
                )
            weights.append(step.set_weight)
            continue
        duration = cast(Pause, step.pause).duration  # the action is pause
        if duration is None:
            raise refuse(
                f"{where}.pause",
                "a manual pause: Flagger ticks on its own; give it a duration (a person's"
                " approval is Flagger's confirm-traffic-increase webhook)",
            )
        if tick is None:
            tick = duration
        elif duration != tick:
            raise refuse(
                f"{where}.pause.duration",
                "Flagger ticks are uniform: every weight is held one analysis interval, which"
                f" the first pause sets (steps[1].pause.duration: {tick:g} s); this pause is"
                f" {duration:g} s: give every pause {tick:g} s",
            )
    if len(steps) % 2:
        raise refuse(
            f"steps[{len(steps) - 1}]",
            "Argo promotes right after a final setWeight; Flagger holds it one more tick: end"
            " the steps with a pause",
        )
    return weights, cast(float, tick)  # pairs (steps > 0, even): a pause has set the tick
