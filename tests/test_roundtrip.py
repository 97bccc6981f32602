"""policy -> export -> import == policy, over generated policies (hypothesis).

Conventions that make the round trip exact (policies.importers): the target's service is the
policy's name and the policy carries its replica count; a query window equal to the metric's
interval is written as None; conditions use ``result[0]``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from policies import parse_policy
from policies.errors import PolicyError
from policies.exporters import Target, crds, export
from policies.importers import import_manifests
from policies.vocabulary import ARGO_ROUTERS, FLAGGER_PROVIDERS

NAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True)
SECONDS = st.sampled_from([1, 5, 30, 45, 60, 90, 120, 300, 600, 3600, 7200])
FENCE = st.one_of(st.integers(0, 5), st.sampled_from(["0%", "10%", "25%", "50%", "100%"]))
MEASURES = ["successRate", "errorRate", "latency", "requestCount"]

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@st.composite
def queries(draw, interval: float | None) -> dict[str, Any]:
    query: dict[str, Any] = {"measure": draw(st.sampled_from(MEASURES))}
    query["version"] = draw(st.sampled_from(["canary", "stable"]))
    if query["measure"] == "latency":
        query["quantile"] = draw(st.sampled_from([0.5, 0.9, 0.95, 0.99]))
    window = draw(st.one_of(st.none(), SECONDS))
    if window is not None and window != (interval or 60):
        query["window"] = window
    return query


@st.composite
def conditions(draw) -> dict[str, str]:
    number = draw(st.sampled_from(["0.01", "0.5", "0.95", "0.99", "1.5", "100"]))
    op = draw(st.sampled_from([">=", "<=", ">", "<"]))
    text = f"result[0] {op} {number}"
    if draw(st.booleans()):
        text = draw(st.sampled_from([f"{text} || isNaN(result[0])", f"({text}) && result[0] >= 0"]))
    which = draw(st.sampled_from(["successCondition", "failureCondition", "both", "none"]))
    if which == "both":
        return {"successCondition": text, "failureCondition": "result[0] < 0"}
    return {} if which == "none" else {which: text}


@st.composite
def argo_metrics(draw, name: str) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": name}
    interval = draw(st.one_of(st.none(), SECONDS))
    if interval is not None:
        metric["interval"] = interval
        metric["count"] = draw(st.one_of(st.none(), st.integers(0, 10)))
        if metric["count"] is None:
            del metric["count"]
    if draw(st.booleans()):
        metric["initialDelay"] = draw(SECONDS)
    metric |= draw(conditions())
    for key, low, high in (
        ("failureLimit", -1, 3),
        ("inconclusiveLimit", 0, 2),
        ("consecutiveErrorLimit", 0, 6),
        ("consecutiveSuccessLimit", 0, 2),
    ):
        if draw(st.booleans()):
            metric[key] = draw(st.integers(low, high))
    metric["provider"] = {"query": draw(queries(interval))}
    return metric


@st.composite
def templates(draw) -> list[dict[str, Any]]:
    names = draw(st.lists(NAMES, min_size=0, max_size=2, unique=True))
    out = []
    for name in names:
        metric_names = draw(st.lists(NAMES, min_size=1, max_size=2, unique=True))
        template = {"name": name, "metrics": [draw(argo_metrics(m)) for m in metric_names]}
        if draw(st.booleans()) and len(metric_names) > 1:
            template["dryRun"] = [{"metricName": metric_names[0]}]
        out.append(template)
    return out


def refs(names: list[str], draw) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    return {"templates": [{"templateName": n} for n in chosen]}


@st.composite
def canaries(draw) -> dict[str, Any]:
    routers = draw(st.sampled_from([(), (), *((r,) for r in ARGO_ROUTERS), ("nginx", "istio")]))
    router = routers[0] if routers else None
    top = draw(st.sampled_from([100, 100, 200])) if router in ("nginx", "plugins") else 100
    tmpl = draw(templates())
    names = [t["name"] for t in tmpl]
    steps: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 8))):
        kinds = ["setWeight", "pause", "pause"] + (["analysis"] if names else [])
        if router is not None:
            kinds.append("setCanaryScale")
        if {"istio", "alb", "apisix", "plugins"} & set(routers):  # Argo's setHeaderRoute
            kinds.append("setHeaderRoute")
        kind = draw(st.sampled_from(kinds))
        if kind == "setWeight":
            steps.append({"setWeight": draw(st.integers(0, top))})
        elif kind == "pause":
            duration = draw(st.one_of(st.none(), st.sampled_from([0, 30, 600, 86400])))
            steps.append({"pause": {} if duration is None else {"duration": duration}})
        elif kind == "analysis":
            steps.append({"analysis": refs(names, draw)})
        elif kind == "setCanaryScale":
            form = draw(st.sampled_from(["replicas", "weight", "matchTrafficWeight"]))
            value = {"replicas": 2, "weight": 30, "matchTrafficWeight": True}[form]
            steps.append({"setCanaryScale": {form: value}})
        else:
            match = [{"headerName": "x-beta", "headerValue": {"prefix": "yes"}}]
            route = {"name": "beta", "match": draw(st.sampled_from([[], match]))}
            if steps and draw(st.booleans()):  # beside the step before (Argo accepts it)
                steps[-1] = steps[-1] | {"setHeaderRoute": route}
            else:
                steps.append({"setHeaderRoute": route})
    policy: dict[str, Any] = {
        "kind": "Canary",
        "name": draw(NAMES),
        "replicas": draw(st.integers(1, 30)),
        "steps": steps,
        "analysisTemplates": tmpl,
        "maxSurge": draw(FENCE),
        "maxUnavailable": draw(FENCE),
        "progressDeadlineSeconds": draw(st.sampled_from([60, 600, 3600])),
        "progressDeadlineAbort": draw(st.booleans()),
        "minReadySeconds": draw(st.sampled_from([0, 10])),
    }
    if names and draw(st.booleans()):
        policy["analysis"] = refs(names, draw) | {"startingStep": draw(st.integers(0, len(steps)))}
    if draw(st.booleans()):
        policy["rollbackWindow"] = {"revisions": draw(st.integers(0, 3))}
    if router is not None:
        plugins = {"argoproj-labs/gatewayAPI": {}, "acme/mesh": {}}
        given = {r: plugins if r == "plugins" else {} for r in routers}
        policy["trafficRouting"] = given | ({"maxTrafficWeight": top} if top != 100 else {})
        if draw(st.booleans()):
            policy["dynamicStableScale"] = True
        else:
            policy["scaleDownDelaySeconds"] = draw(st.sampled_from([0, 30, 3600]))
        policy["abortScaleDownDelaySeconds"] = draw(st.sampled_from([0, 30, 600]))
        policy["minPodsPerReplicaSet"] = draw(st.integers(1, 3))
        for key in ("scaleDownDelaySeconds", "abortScaleDownDelaySeconds", "minPodsPerReplicaSet"):
            if key in policy and draw(st.booleans()):
                del policy[key]
    elif draw(st.booleans()):  # accepted without a router, and ignored, as Argo does
        policy["abortScaleDownDelaySeconds"] = draw(st.sampled_from([0, 30]))
        policy["minPodsPerReplicaSet"] = draw(st.integers(1, 3))
    return policy


@st.composite
def flagger_metrics(draw, provider: str) -> dict[str, Any]:
    custom = provider in ("istio", "nginx") and draw(st.booleans())
    name = (
        draw(NAMES)
        if custom
        else draw(st.sampled_from(["request-success-rate", "request-duration"]))
    )
    metric: dict[str, Any] = {"name": name, "interval": draw(SECONDS)}
    bounds = draw(st.sampled_from([{"min": 99.0}, {"max": 500.0}, {"min": 0.5, "max": 2.0}]))
    if not custom and provider != "nginx" and draw(st.booleans()):
        metric["threshold"] = draw(st.sampled_from([1.0, 99.0]))
    else:
        metric["thresholdRange"] = bounds
    if custom:
        metric["query"] = draw(queries(metric["interval"]))
    return metric


TESTED_ELSEWHERE = ("kubernetes", "knative")


@st.composite
def progressives(draw) -> dict[str, Any]:
    # kubernetes is blue/green only; knative's target (a Knative Service) has no CRD here:
    # both are tested in test_import_flagger_providers.py
    provider = draw(st.sampled_from([p for p in FLAGGER_PROVIDERS if p not in TESTED_ELSEWHERE]))
    analysis: dict[str, Any] = {
        "interval": draw(SECONDS),
        "threshold": draw(st.integers(1, 5)),
    }
    if draw(st.booleans()):
        analysis["stepWeight"] = draw(st.integers(1, 100))
        if draw(st.booleans()):
            analysis["maxWeight"] = draw(st.integers(1, 100))
    else:
        weights = draw(st.lists(st.integers(1, 100), min_size=1, max_size=6, unique=True))
        analysis["stepWeights"] = sorted(weights)
    if draw(st.booleans()):
        analysis["stepWeightPromotion"] = draw(st.integers(0, 100))
    metrics = draw(st.lists(flagger_metrics(provider), max_size=3))
    assume(len({m["name"] for m in metrics}) == len(metrics))
    analysis["metrics"] = metrics
    gates = ("confirm-rollout", "confirm-traffic-increase", "confirm-promotion")
    analysis["gates"] = draw(st.lists(st.sampled_from(gates), max_size=2, unique=True))
    return {
        "kind": "Progressive",
        "name": draw(NAMES),
        "replicas": draw(st.integers(1, 30)),
        "provider": provider,
        "skipAnalysis": draw(st.booleans()),
        "progressDeadlineSeconds": draw(st.sampled_from([60, 600])),
        "analysis": analysis,
    }


def build(data: dict[str, Any]):
    try:
        return parse_policy(data)
    except PolicyError:  # an invalid combination (Argo's own validation): nothing to export
        assume(False)


def _referenced(policy):
    """The policy as an Argo import gives it back: only the templates its analyses use."""
    if policy.kind == "Canary":
        analyses = [policy.analysis, *(s.analysis for s in policy.steps)]
    elif policy.kind == "BlueGreen":
        analyses = [policy.pre_promotion_analysis, policy.post_promotion_analysis]
    else:
        return policy
    used = {r.template_name for a in analyses if a is not None for r in a.templates}
    kept = tuple(t for t in policy.analysis_templates if t.name in used)
    return policy.model_copy(update={"analysis_templates": kept})


def round_trip(policy, executor: str):
    out = export(policy, executor, Target(service=policy.name))
    assert crds.validate_all(m for m in out.manifests if m["apiVersion"] != "apps/v1") == []
    back = import_manifests(out.to_yaml())
    policy = _referenced(policy)
    assert back.policy == policy, (policy, back.policy)
    again = import_manifests(export(back.policy, executor, Target(service=policy.name)).to_yaml())
    assert again.policy == back.policy  # import -> export -> import is a fixed point
    return back


@SETTINGS
@given(canaries())
def test_canary_round_trips_through_argo(data):
    round_trip(build(data), "argo")


@SETTINGS
@given(progressives())
def test_progressive_round_trips_through_flagger(data):
    round_trip(build(data), "flagger")


@SETTINGS
@given(
    st.sampled_from(["nginx", "istio", "smi"]),
    st.lists(st.integers(1, 100), min_size=1, max_size=5, unique=True),
    SECONDS,
)
def test_canary_to_flagger_gives_the_same_weights_and_ticks(router, weights, tick):
    steps = [s for w in sorted(weights) for s in ({"setWeight": w}, {"pause": {"duration": tick}})]
    policy = build(
        {
            "kind": "Canary",
            "name": "web",
            "replicas": 3,
            "trafficRouting": {router: {}},
            "steps": steps,
        }
    )
    back = import_manifests(export(policy, "flagger", Target(service="web")).to_yaml()).policy
    assert back.kind == "Progressive" and back.provider == router
    assert back.analysis.step_weights == tuple(sorted(weights))
    assert back.analysis.interval == tick and back.replicas == 3
