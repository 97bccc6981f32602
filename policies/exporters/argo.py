"""Argo Rollouts: a ``Rollout`` (canary, traffic-routed or basic, or blueGreen) and the
``AnalysisTemplate`` objects its gates use, checked against the Argo CRDs before they leave.

What is exported:

* Canary -> ``strategy.canary`` field for field. Every router of ``trafficRouting`` with the
  fields its CRD requires, objects named ``<svc>``: nginx (``stableIngress``), istio
  (VirtualService route ``primary``, DestinationRule subsets ``stable``/``canary``), smi
  (``trafficSplitName``), alb (Ingress), ambassador (Mapping), apisix (ApisixRoute), appMesh
  (VirtualService route ``primary``, VirtualNodes ``<svc>-canary``/``<svc>-stable``), traefik
  (TraefikService); plugins by name (Gateway API: HTTPRoute ``<svc>``; Contour: HTTPProxy
  ``<svc>``; any other plugin's configuration is its own: left empty, said in NOTES.md).
* BlueGreen -> ``strategy.blueGreen`` (active Service ``<svc>``, preview ``<svc>-preview``).
* BatchRelease -> a basic canary: ``setWeight`` = the batch's share, then its analysis step and
  its pause. Argo's N / N+1 rule gives other pod counts than the batches unless the shares fall
  on whole pods; ``files["NOTES.md"]`` lists them.

Queries become Prometheus queries (``promql``) over ingress-nginx metrics with an nginx router,
else over Istio's, with the service, namespace and ReplicaSet hashes passed as template args.
Refused, naming the field: sequential-test and Kayenta providers, a DNS blue-green switch,
fractional seconds, and the Flagger and Deployment kinds (ABTest, Progressive, RollingUpdate).
"""

from __future__ import annotations

import re
from typing import Any, assert_never, cast

from pydantic.alias_generators import to_camel

from policies.analysis import AnalysisTemplate, Metric
from policies.batch import BatchRelease
from policies.bluegreen import BlueGreen
from policies.canary import (
    STEP_ACTIONS,
    Canary,
    CanaryStep,
    Experiment,
    Pause,
    PluginStep,
    SetCanaryScale,
    SetHeaderRoute,
    SetMirrorRoute,
    StepOperation,
    TrafficRouting,
)
from policies.common import RolloutAnalysis
from policies.errors import NotExpressibleError
from policies.exporters import Export, Target, crds, promql
from policies.exporters.sequences import plugin_notes, router_config
from policies.measures import Query
from policies.replicas import basic_canary_targets, resolve_fenceposts
from policies.vocabulary import ROUTERS, Executor, MetricSource

__all__ = [
    "API_VERSION",
    "DEFAULT_WINDOW_S",
    "EXECUTOR",
    "analysis_template",
    "condition",
    "export",
    "go_duration",
    "metric_source",
    "template_name",
]

EXECUTOR: Executor = "argo"
API_VERSION = "argoproj.io/v1alpha1"
DEFAULT_WINDOW_S = 60.0
"""The simulator's query window for a metric with neither window nor interval."""

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _refuse(field: str, reason: str) -> NotExpressibleError:
    return NotExpressibleError(EXECUTOR, field, reason)


def whole(field: str, seconds: float) -> int:
    """An Argo ``*Seconds`` field (int32): refuse what it would truncate."""
    if seconds != int(seconds):
        raise _refuse(field, f"{seconds} s is not a whole number of seconds (Argo truncates)")
    return int(seconds)


def go_duration(field: str, seconds: float, *, millis: bool = False) -> str:
    """A Go duration string ("10m", "36h": Go has no "d"); ``millis`` allows "1500ms"."""
    if seconds != int(seconds):
        ms = seconds * 1000
        if millis and ms == int(ms):
            return f"{int(ms)}ms"
        raise _refuse(field, f"{seconds} s is not a whole number of seconds (Argo truncates)")
    whole_s = int(seconds)
    for unit, size in (("h", 3600), ("m", 60)):
        if whole_s and whole_s % size == 0:
            return f"{whole_s // size}{unit}"
    return f"{whole_s}s"


def condition(text: str) -> str:
    """An Argo condition: the query returns a one-element vector, so a bare ``result`` compared
    is ``result[0]``; the vector itself stays where a function takes it (``len(result)``)."""
    return re.sub(
        r"(?<!len\()(?<!isNil\()(?<!default\()(?<!all\()(?<!any\()(?<!none\()"
        r"\bresult\b(?!\s*\[)",
        "result[0]",
        text,
    )


def template_name(service: str, name: str, field: str) -> str:
    """``<service>-<template>``, refused if it is not a valid object name."""
    full = f"{service}-{name}"
    if len(full) > 253 or not _NAME.fullmatch(full):
        raise _refuse(field, f"{full!r} is not a valid Kubernetes object name")
    return full


def metric_source(policy) -> MetricSource:
    """The router's own metrics where ``promql`` writes them in Argo's layout, else Istio's."""
    routing = getattr(policy, "traffic_routing", None)
    own = ROUTERS[routing.kinds[0]].metrics if routing is not None else None
    return own if own in promql.ARGO_SOURCES else "istio"


def _args(source: str, target: Target) -> list[dict[str, Any]]:
    args: list[dict[str, Any]] = [
        {"name": promql.ARG_SERVICE, "value": target.service},
        {"name": promql.ARG_NAMESPACE, "value": target.namespace},
    ]
    if source in promql.HASHED_SOURCES:
        args += [
            {"name": promql.ARG_CANARY_HASH, "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": promql.ARG_STABLE_HASH, "valueFrom": {"podTemplateHashValue": "Stable"}},
        ]
    return args


def _metric(metric: Metric, where: str, source: str, target: Target) -> dict[str, Any]:
    provider = metric.provider
    if provider.sequential is not None:
        raise _refuse(
            f"{where}.provider.sequential",
            "Argo has no sequential test (SPRT/mSPRT): its analysis judges each measurement"
            " alone against fixed conditions; in Argo, give the metric a provider query with a"
            " successCondition and a failureLimit",
        )
    if provider.kayenta is not None:
        raise _refuse(
            f"{where}.provider.kayenta",
            "Argo's kayenta provider judges a fixed [start, end] scope passed as run args and"
            " reads direction, criticality and effect sizes from a canary config stored in"
            " Kayenta, not in the manifest: the simulated judge's window ending at each"
            " measurement and its per-metric settings cannot be written; in Argo, give each"
            " metric a provider query with a successCondition",
        )
    out: dict[str, Any] = {"name": metric.name}
    if metric.interval is not None:
        out["interval"] = go_duration(f"{where}.interval", metric.interval, millis=True)
    if metric.initial_delay:
        out["initialDelay"] = go_duration(
            f"{where}.initialDelay", metric.initial_delay, millis=True
        )
    if metric.count is not None:
        out["count"] = metric.count
    if metric.success_condition is not None:
        out["successCondition"] = condition(metric.success_condition)
    if metric.failure_condition is not None:
        out["failureCondition"] = condition(metric.failure_condition)
    for name, default in (
        ("failure_limit", 0),
        ("inconclusive_limit", 0),
        ("consecutive_error_limit", 4),
        ("consecutive_success_limit", 0),
    ):
        value = getattr(metric, name)
        if value != default:
            out[re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)] = value
    query = cast(Query, provider.query)  # one source per provider: not sequential or kayenta
    window = query.window or metric.interval or DEFAULT_WINDOW_S
    try:
        text = promql.query_for(query, source, window=window, nan_filter=query.nan_filter)
    except ValueError as exc:
        raise _refuse(f"{where}.provider.query", str(exc)) from None
    out["provider"] = {"prometheus": {"address": target.prometheus, "query": text}}
    return out


def analysis_template(
    template: AnalysisTemplate, where: str, source: str, target: Target
) -> dict[str, Any]:
    """An ``AnalysisTemplate`` named ``<service>-<template>`` taking the query args."""
    spec: dict[str, Any] = {
        "args": [{"name": a["name"]} for a in _args(source, target)],
        "metrics": [
            _metric(m, f"{where}.metrics[{j}]", source, target)
            for j, m in enumerate(template.metrics)
        ],
    }
    if template.dry_run:
        spec["dryRun"] = [{"metricName": d.metric_name} for d in template.dry_run]
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {
            "name": template_name(target.service, template.name, f"{where}.name"),
            "namespace": target.namespace,
        },
        "spec": spec,
    }


def _analysis_ref(analysis: RolloutAnalysis, source: str, target: Target) -> dict[str, Any]:
    return {
        "templates": [
            {"templateName": f"{target.service}-{ref.template_name}"} for ref in analysis.templates
        ],
        "args": _args(source, target),
    }


def _action(op: StepOperation, i: int, source: str, target: Target) -> tuple[str, Any]:
    match op:
        case int() as weight:
            return "setWeight", weight
        case Pause(duration=None):
            return "pause", {}
        case Pause() as pause:
            duration = cast(float, pause.duration)  # None was the case above
            return "pause", {"duration": go_duration(f"steps[{i}].pause.duration", duration)}
        case RolloutAnalysis() as analysis:
            return "analysis", _analysis_ref(analysis, source, target)
        case SetCanaryScale(replicas=int() as replicas):
            return "setCanaryScale", {"replicas": replicas}
        case SetCanaryScale(weight=int() as weight):
            return "setCanaryScale", {"weight": weight}
        case SetCanaryScale():
            return "setCanaryScale", {"matchTrafficWeight": True}
        case SetHeaderRoute() as route:
            out: dict[str, Any] = {"name": route.name}
            if route.match:
                out["match"] = [
                    {"headerName": m.header_name, "headerValue": m.header_value.to_dict()}
                    for m in route.match
                ]
            return "setHeaderRoute", out
        case SetMirrorRoute() as mirror:
            return "setMirrorRoute", mirror.to_dict()
        case Experiment() as experiment:
            return "experiment", _experiment(experiment, i, source, target)
        case PluginStep() as plugin:  # its config as imported: only the plugin reads it
            return "plugin", plugin.to_dict()
        case never:
            assert_never(never)


def _experiment(experiment: Experiment, i: int, source: str, target: Target) -> dict[str, Any]:
    """An experiment step; a template that leaves the Rollout's Service gets a label of its
    own (``app: <svc>-<template>``), as Argo's canary-preview example does."""
    where, out = f"steps[{i}].experiment", experiment.to_dict()
    if experiment.duration is not None:
        out["duration"] = go_duration(f"{where}.duration", experiment.duration)
    if (delay := experiment.scale_down_delay_seconds) is not None:
        out["scaleDownDelaySeconds"] = whole(f"{where}.scaleDownDelaySeconds", delay)
    for entry in out["templates"]:
        if entry.pop("sharesService", True) is False:
            own = f"{target.service}-{entry['name']}"
            entry |= {
                "selector": {"matchLabels": {"app": own}},
                "metadata": {"labels": {"app": own}},
            }
    for ref in out.get("analyses", []):
        ref |= {"templateName": f"{target.service}-{ref['templateName']}"}
        ref["args"] = _args(source, target)
    return out


_STEP_KEYS = tuple(to_camel(action) for action in STEP_ACTIONS)  # the manifest's keys, in order


def _step(step: CanaryStep, i: int, source: str, target: Target) -> dict[str, Any]:
    """Every action of the step, in the order Argo's documentation writes them."""
    actions = dict(_action(op, i, source, target) for op in step.operations)
    return {key: actions[key] for key in _STEP_KEYS if key in actions}


def _router(policy: Canary, target: Target) -> dict[str, Any]:
    routing = cast(TrafficRouting, policy.traffic_routing)  # called for a routed canary only
    out: dict[str, Any] = {r: router_config(r, routing, target) for r in routing.routers}
    if routing.max_traffic_weight != 100:
        out["maxTrafficWeight"] = routing.max_traffic_weight
    routes = [
        route.name
        for s in policy.steps
        for route in (s.set_header_route, s.set_mirror_route)
        if route is not None
    ]
    if routes:
        out["managedRoutes"] = [{"name": n} for n in dict.fromkeys(routes)]
    return out


def _rollout(policy, target: Target, strategy: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": target.replicas_for(policy),
        "selector": {"matchLabels": {"app": target.service}},
        "template": {
            "metadata": {"labels": {"app": target.service}},
            "spec": {
                "containers": [
                    {
                        "name": target.service,
                        "image": target.image,
                        "ports": [{"containerPort": target.port}],
                    }
                ]
            },
        },
    }
    if policy.min_ready_seconds:
        spec["minReadySeconds"] = whole("minReadySeconds", policy.min_ready_seconds)
    spec["progressDeadlineSeconds"] = whole(
        "progressDeadlineSeconds", policy.progress_deadline_seconds
    )
    if getattr(policy, "progress_deadline_abort", False):
        spec["progressDeadlineAbort"] = True
    if getattr(policy, "rollback_window", None) is not None:
        spec["rollbackWindow"] = {"revisions": policy.rollback_window.revisions}
    spec["strategy"] = strategy
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": {"name": target.service, "namespace": target.namespace},
        "spec": spec,
    }


def _templates(policy, source: str, target: Target) -> list[dict[str, Any]]:
    return [
        analysis_template(t, f"analysisTemplates[{i}]", source, target)
        for i, t in enumerate(policy.analysis_templates)
    ]


def _canary(policy: Canary, target: Target) -> Export:
    source = metric_source(policy)
    templates = _templates(policy, source, target)
    canary: dict[str, Any] = {}
    if policy.traffic_routing is not None:
        canary["canaryService"] = f"{target.service}-canary"
        canary["stableService"] = f"{target.service}-stable"
        canary["trafficRouting"] = _router(policy, target)
    canary["maxSurge"] = policy.max_surge
    canary["maxUnavailable"] = policy.max_unavailable
    if policy.dynamic_stable_scale:
        canary["dynamicStableScale"] = True
    if policy.min_pods_per_replica_set is not None:
        canary["minPodsPerReplicaSet"] = policy.min_pods_per_replica_set
    for name, camel in (
        ("scale_down_delay_seconds", "scaleDownDelaySeconds"),
        ("abort_scale_down_delay_seconds", "abortScaleDownDelaySeconds"),
    ):
        if getattr(policy, name) is not None:
            canary[camel] = whole(camel, getattr(policy, name))
    if policy.analysis is not None:
        canary["analysis"] = _analysis_ref(policy.analysis, source, target)
        if policy.analysis.starting_step:
            canary["analysis"]["startingStep"] = policy.analysis.starting_step
    canary["steps"] = [_step(s, i, source, target) for i, s in enumerate(policy.steps)]
    manifests = [*templates, _rollout(policy, target, {"canary": canary})]
    return _finish(manifests, plugin_notes(policy))


def _bluegreen(policy: BlueGreen, target: Target) -> Export:
    if policy.switch == "dns":
        raise _refuse(
            "switch",
            "Argo flips the active Service's selector at once; a DNS switch moving each client"
            " within the record's TTL is not an Argo strategy: give switch: serviceSelector (no"
            " dnsTtl)",
        )
    source = metric_source(policy)
    templates = _templates(policy, source, target)
    bg: dict[str, Any] = {
        "activeService": target.service,
        "previewService": f"{target.service}-preview",
    }
    if not policy.auto_promotion_enabled:
        bg["autoPromotionEnabled"] = False
    if policy.auto_promotion_seconds:
        bg["autoPromotionSeconds"] = whole("autoPromotionSeconds", policy.auto_promotion_seconds)
    if policy.preview_replica_count is not None:
        bg["previewReplicaCount"] = policy.preview_replica_count
    bg["scaleDownDelaySeconds"] = whole("scaleDownDelaySeconds", policy.scale_down_delay_seconds)
    bg["abortScaleDownDelaySeconds"] = whole(
        "abortScaleDownDelaySeconds", policy.abort_scale_down_delay_seconds
    )
    for name, camel in (
        ("pre_promotion_analysis", "prePromotionAnalysis"),
        ("post_promotion_analysis", "postPromotionAnalysis"),
    ):
        if getattr(policy, name) is not None:
            bg[camel] = _analysis_ref(getattr(policy, name), source, target)
    return _finish([*templates, _rollout(policy, target, {"blueGreen": bg})])


def _batch_weight(policy: BatchRelease, i: int, replicas: int) -> int:
    value = policy.batches[i].replicas
    share = float(value.rstrip("%")) if isinstance(value, str) else 100.0 * value / replicas
    if share != int(share):
        raise _refuse(
            f"batches[{i}].replicas",
            f"{value!r} of {replicas} pods is {share:g} %: setWeight takes whole percent",
        )
    return int(share)


def _batch(policy: BatchRelease, target: Target) -> Export:
    source = metric_source(policy)
    replicas = target.replicas_for(policy)
    surge, _ = resolve_fenceposts(policy.max_surge, policy.max_unavailable, replicas)
    steps: list[dict[str, Any]] = []
    notes = [
        f"# {policy.name}: Argo basic canary from a batch release ({replicas} replicas)",
        "",
        "| batch | batch pods (new/old) | Argo basic canary pods (canary/stable) |",
        "| --- | --- | --- |",
    ]
    pods = policy.batch_pods(replicas)
    for i, batch in enumerate(policy.batches[:-1]):
        weight = _batch_weight(policy, i, replicas)
        steps.append({"setWeight": weight})
        canary_n, stable_n = basic_canary_targets(replicas, weight, surge)
        notes.append(
            f"| {i + 1} ({weight} %) | {pods[i]}/{replicas - pods[i]} | {canary_n}/{stable_n} |"
        )
        if batch.analysis is not None:
            steps.append({"analysis": _analysis_ref(batch.analysis, source, target)})
        if batch.pause is not None:
            step = CanaryStep(pause=batch.pause)
            steps.append(_step(step, i, source, target))
    notes += [
        "",
        "Argo's N / N+1 rule picks the pod counts closest to each weight, with up to N+1 pods;"
        " the batch release keeps N. Simulate the Argo policy (import this export) to see its"
        " exact trajectory.",
    ]
    last = policy.batches[-1]
    if last.pause is not None or last.analysis is not None:
        notes.append(
            "The last batch's pause/analysis is not exported: the release completes with it,"
            " as the simulator has it."
        )
    canary: dict[str, Any] = {
        "maxSurge": policy.max_surge,
        "maxUnavailable": policy.max_unavailable,
    }
    canary["steps"] = steps
    manifests = [*_templates(policy, source, target), _rollout(policy, target, {"canary": canary})]
    return _finish(manifests, {"NOTES.md": "\n".join(notes) + "\n"})


def _finish(manifests: list[dict[str, Any]], files: dict[str, str] | None = None) -> Export:
    crds.check(manifests)
    return Export(EXECUTOR, manifests, files or {})


def export(policy, target: Target) -> Export:
    """Argo Rollouts manifests for ``policy`` (templates first, then the Rollout)."""
    if isinstance(policy, Canary):
        return _canary(policy, target)
    if isinstance(policy, BlueGreen):
        return _bluegreen(policy, target)
    if isinstance(policy, BatchRelease):
        return _batch(policy, target)
    reasons = {
        "ABTest": "an A/B test is Flagger's: iterations of uniform analysis ticks with a"
        " cumulative failed-check threshold, which Argo's steps and failure limits do not"
        " reproduce; in Argo, write a Canary whose setHeaderRoute step sends the matched"
        " requests to the canary, gated by an analysis step (the flagger exporter takes this"
        " A/B test as written)",
        "Progressive": "Flagger advances one stepWeight per healthy analysis tick and rolls"
        " back on a cumulative failed-check threshold; Argo has no such loop: in Argo, write a"
        " Canary with setWeight/pause steps at the stepWeights and a background analysis with"
        " a failureLimit (the flagger exporter takes this policy as written)",
        "RollingUpdate": "a Deployment rolling update; in Argo, write a Canary without steps and"
        " without trafficRouting: it rolls out the same way, by maxSurge and maxUnavailable (the"
        " kubernetes exporter writes this Deployment as it is)",
    }
    kind = getattr(policy, "kind", type(policy).__name__)
    raise _refuse("kind", reasons.get(kind, f"{kind} is not an Argo strategy"))
