"""Flagger: a ``Canary`` (progressive weights or A/B test), the ``MetricTemplate`` objects its
custom metrics need and the target ``Deployment``, checked against Flagger's CRD.

What is exported:

* Progressive -> a Flagger canary (stepWeight or stepWeights, maxWeight, stepWeightPromotion).
* ABTest -> a Flagger A/B test (iterations + match). Istio, Contour and Gloo take the match as
  is (a cookie becomes Istio's ``cookie`` header regex); ingress-nginx honours one header
  (exact value) and one cookie (``canary-by-cookie``), so anything more is refused.
* Canary (Argo policy) -> stepWeights when Flagger's uniform tick can hold it: steps that are
  ``setWeight``/``pause`` pairs with one pause duration (the interval), a router Flagger has
  (nginx, istio, smi), and background metrics measured once per tick whose failure limits a
  single cumulative threshold reproduces.

Built-in metrics stay built in, except with ingress-nginx: Flagger's nginx observer counts the
whole Ingress (primary + canary) and averages the duration, while the simulator measures the
canary alone (P99). There they become MetricTemplates computing exactly the simulated value
(percent; truncated milliseconds), named ``<builtin>-canary``. Refused, naming the field:
BlueGreen and RollingUpdate (see ``_REFUSED``), Argo-only steps, uneven pauses, intervals
that are not whole seconds, sequential and Kayenta gates.
"""

from __future__ import annotations

import re
from typing import Any, cast

from policies.analysis import Metric
from policies.canary import Canary, Pause
from policies.common import RouteMatch
from policies.errors import NotExpressibleError
from policies.exporters import Export, Target, crds, promql
from policies.flagger import ABTest, FlaggerAnalysis, FlaggerMetric, Progressive
from policies.measures import Query
from policies.vocabulary import (
    FLAGGER_PROVIDERS,
    ROUTERS,
    Executor,
    MetricSource,
    provider_router,
    routers_where,
)
from policies.vocabulary import FlaggerProvider as Provider

__all__ = [
    "API_VERSION",
    "BUILTIN_SUFFIX",
    "EXECUTOR",
    "PROVIDERS",
    "cookie_regex",
    "export",
    "flagger_interval",
    "threshold_range",
]

EXECUTOR: Executor = "flagger"
API_VERSION = "flagger.app/v1beta1"
BUILTIN_SUFFIX = "-canary"
"""Name suffix of a built-in metric rewritten as a canary-only MetricTemplate (nginx)."""
PROVIDERS = {"smi": "smi:v1alpha3"}
"""Policy provider -> Flagger ``spec.provider`` where the names differ."""
_BUILTIN = ("request-success-rate", "request-duration")
_HEADER_ROUTERS = routers_where("flagger_match")
_REFUSED = {
    "BlueGreen": (
        "switch",
        "Flagger's blue/green never flips a Service selector: with the kubernetes provider the"
        " apex Service always selects the primary and promotion is a rolling update of it,"
        " with a mesh it is N analysis ticks, a route switch, one more tick and a route back;"
        " neither is the instant switch with a scaleDownDelaySeconds hold-back simulated here",
    ),
    "RollingUpdate": ("kind", "a Deployment rolling update is the kubernetes exporter's"),
    "BatchRelease": (
        "batches",
        "Flagger shifts traffic by router weight on uniform ticks; batches of pods behind one"
        " Service with their own pauses are not a Flagger strategy",
    ),
}


def _refuse(field: str, reason: str) -> NotExpressibleError:
    return NotExpressibleError(EXECUTOR, field, reason)


def flagger_interval(field: str, seconds: float) -> str:
    """Flagger's ``^[0-9]+(m|s)``: whole minutes as "Nm", else whole seconds ("1h" -> "60m")."""
    if seconds != int(seconds) or seconds < 1:
        raise _refuse(field, f"{seconds} s: Flagger intervals are whole seconds or minutes")
    whole = int(seconds)
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"


def cookie_regex(name: str) -> str:
    """Istio header match for ``cookie: <name>=always`` anywhere in the Cookie header."""
    return f"^(.*?;)?({re.escape(name)}=always)(;.*)?$"


def _provider(provider: str) -> str:
    return PROVIDERS.get(provider, provider)


def _base(policy, target: Target, provider: str, analysis: dict[str, Any], deadline: float):
    spec: dict[str, Any] = {
        "provider": _provider(provider),
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.service},
    }
    if provider == "nginx":
        spec["ingressRef"] = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "name": target.service,
        }
    spec["service"] = {"port": target.port}
    if deadline != int(deadline):
        raise _refuse("progressDeadlineSeconds", f"{deadline} s is not a whole number of seconds")
    spec["progressDeadlineSeconds"] = int(deadline)
    if getattr(policy, "skip_analysis", False):
        spec["skipAnalysis"] = True
    spec["analysis"] = analysis
    return {
        "apiVersion": API_VERSION,
        "kind": "Canary",
        "metadata": {"name": target.service, "namespace": target.namespace},
        "spec": spec,
    }


def _deployment(policy, target: Target, min_ready: float = 0.0) -> dict[str, Any]:
    """The target Deployment: it carries the replica count (a Flagger Canary has none)."""
    spec: dict[str, Any] = {"replicas": target.replicas_for(policy)}
    if min_ready:
        if min_ready != int(min_ready):
            raise _refuse("minReadySeconds", f"{min_ready} s is not a whole number of seconds")
        spec["minReadySeconds"] = int(min_ready)
    spec["selector"] = {"matchLabels": {"app": target.service}}
    spec["template"] = {
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
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": target.service, "namespace": target.namespace},
        "spec": spec,
    }


def _template(name: str, query: str, target: Target, field: str) -> dict[str, Any]:
    full = f"{target.service}-{name}"
    if len(full) > 253 or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", full):
        raise _refuse(field, f"MetricTemplate name {full!r} is not a valid object name")
    return {
        "apiVersion": API_VERSION,
        "kind": "MetricTemplate",
        "metadata": {"name": full, "namespace": target.namespace},
        "spec": {"provider": {"type": "prometheus", "address": target.prometheus}, "query": query},
    }


def _source(provider: Provider, field: str) -> MetricSource:
    source = ROUTERS[provider_router(provider)].metrics
    if source is not None:
        return source
    raise _refuse(
        field,
        f"custom queries are written for ingress-nginx or Istio metrics; provider {provider}"
        " has neither",
    )


def _query(query: Query, source: str, field: str, scale=None) -> str:
    window = promql.FLAGGER_INTERVAL if query.window is None else query.window
    name = "{{ ingress }}" if source == "nginx" else "{{ target }}"  # Flagger's variables
    try:
        return promql.query_for(
            query, source, name, "{{ namespace }}", window, layout="flagger", scale=scale
        )
    except ValueError as exc:
        raise _refuse(field, str(exc)) from None


def _metric(metric: FlaggerMetric, i: int, provider: Provider, target: Target, templates: list):
    where = f"analysis.metrics[{i}]"
    entry: dict[str, Any] = {"name": metric.name}
    range_ = metric.threshold_range.to_dict() if metric.threshold_range else None
    threshold = metric.threshold
    if metric.query is None and provider == "nginx":
        if metric.name == "request-success-rate":
            builtin = Query(measure="successRate")
            scale = "percent"
            if range_ is None:  # the deprecated threshold is a minimum for this built-in only
                range_, threshold = {"min": threshold}, None
        else:
            builtin, scale = Query(measure="latency", quantile=0.99), "ms_floor"
        name = metric.name + BUILTIN_SUFFIX
        text = _query(builtin, "nginx", f"{where}.name", scale)
        templates.append(_template(name, text, target, f"{where}.name"))
        entry = {"name": name, "templateRef": {"name": f"{target.service}-{name}"}}
    elif metric.query is not None:
        if metric.name in _BUILTIN:
            raise _refuse(
                f"{where}.name",
                f"Flagger runs its built-in check for any metric named {metric.name}: rename it",
            )
        text = _query(metric.query, _source(provider, f"{where}.query"), f"{where}.query")
        templates.append(_template(metric.name, text, target, f"{where}.name"))
        entry["templateRef"] = {"name": f"{target.service}-{metric.name}"}
    entry["interval"] = flagger_interval(f"{where}.interval", metric.interval)
    if range_ is not None:
        entry["thresholdRange"] = range_
    if threshold is not None:
        entry["threshold"] = threshold
    return entry


def _match(matches: tuple[RouteMatch, ...], provider: str) -> list[dict[str, Any]]:
    if provider not in _HEADER_ROUTERS:
        raise _refuse(
            "provider",
            f"Flagger routes A/B matches with {', '.join(_HEADER_ROUTERS)}, not {provider}",
        )
    out = []
    headers_seen = cookies_seen = 0
    for i, match in enumerate(matches):
        where = f"analysis.match[{i}]"
        headers = {name: m.to_dict() for name, m in match.headers.items()}
        if match.cookie is not None:
            if match.cookie.exact is None or "cookie" in headers:
                raise _refuse(f"{where}.cookie", "only an exact cookie name can be matched")
            if provider == "nginx":
                headers["cookie"] = {"exact": match.cookie.exact}
            elif provider == "istio":
                headers["cookie"] = {"regex": cookie_regex(match.cookie.exact)}
            else:
                raise _refuse(f"{where}.cookie", f"no cookie match with provider {provider}")
        if provider == "nginx":
            plain = [n for n in headers if n != "cookie"]
            headers_seen += len(plain)
            cookies_seen += "cookie" in headers
            if len(headers) > 1:
                raise _refuse(
                    where,
                    "ingress-nginx ORs its header and cookie rules: conditions ANDed in one"
                    " match entry cannot be expressed",
                )
            for name in plain:
                if headers[name].get("exact") is None:
                    raise _refuse(
                        f"{where}.headers.{name}",
                        "Flagger's ingress-nginx router matches a header by exact value only",
                    )
            if headers_seen > 1 or cookies_seen > 1:
                raise _refuse(where, "ingress-nginx takes one canary header and one canary cookie")
        out.append({"headers": headers})
    return out


def _analysis(a: FlaggerAnalysis, provider: Provider, target: Target, templates: list):
    out: dict[str, Any] = {"interval": flagger_interval("analysis.interval", a.interval)}
    out["threshold"] = a.threshold
    for name, camel in (
        ("iterations", "iterations"),
        ("max_weight", "maxWeight"),
        ("step_weight", "stepWeight"),
        ("step_weight_promotion", "stepWeightPromotion"),
    ):
        if getattr(a, name) is not None:
            out[camel] = getattr(a, name)
    if a.step_weights is not None:
        out["stepWeights"] = list(a.step_weights)
    if a.match:
        out["match"] = _match(a.match, provider)
    out["metrics"] = [_metric(m, i, provider, target, templates) for i, m in enumerate(a.metrics)]
    return out


def _flagger_policy(policy, target: Target) -> Export:
    if policy.provider == "kubernetes":
        raise _refuse(
            "provider",
            "Flagger's kubernetes provider runs blue/green only (it drops match and forces"
            " iterations): no weights",
        )
    templates: list[dict[str, Any]] = []
    analysis = _analysis(policy.analysis, policy.provider, target, templates)
    canary = _base(policy, target, policy.provider, analysis, policy.progress_deadline_seconds)
    return _finish([*templates, _deployment(policy, target), canary])


# ----------------------------------------------------------------------------- Argo Canary


def threshold_range(text: str, success: bool) -> dict[str, float] | None:
    """Flagger's ``thresholdRange`` equal to an Argo condition, or None.

    A success condition passes inside [min, max] (``result >= a && result <= b``); a failure
    condition fails outside it (``result < a || result > b``).
    """
    joiner = r"\s*(?:&&|\band\b)\s*" if success else r"\s*(?:\|\||\bor\b)\s*"
    out: dict[str, float] = {}
    term = re.compile(r"^(result(?:\[0\])?)\s*(>=|<=|>|<)\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)$")
    flip = {">=": "<=", "<=": ">=", ">": "<", "<": ">"}
    for part in re.split(joiner, text.strip()):
        part = part.strip()
        m = term.match(part)
        if not m:
            rev = re.match(
                r"^([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*(>=|<=|>|<)\s*(result(?:\[0\])?)$", part
            )
            if not rev:
                return None
            op, number = flip[rev.group(2)], rev.group(1)
        else:
            op, number = m.group(2), m.group(3)
        wanted = {">=": "min", "<=": "max"} if success else {"<": "min", ">": "max"}
        if op not in wanted or wanted[op] in out:
            return None
        out[wanted[op]] = float(number)
    if "min" in out and "max" in out and out["min"] > out["max"]:
        return None
    return out or None


def _canary_metric(metric: Metric, where: str, tick: float, provider: Provider, target: Target):
    if metric.provider.query is None:
        kind = "sequential" if metric.provider.sequential is not None else "kayenta"
        raise _refuse(
            f"{where}.provider.{kind}", "Flagger gates on thresholds of a query per tick only"
        )
    if metric.interval != tick:
        raise _refuse(
            f"{where}.interval",
            f"Flagger measures every metric once per tick ({tick:g} s), not every"
            f" {metric.interval} s",
        )
    for name, camel, default in (
        ("initial_delay", "initialDelay", 0.0),
        ("count", "count", None),
        ("consecutive_success_limit", "consecutiveSuccessLimit", 0),
    ):
        if getattr(metric, name) != default:
            raise _refuse(f"{where}.{camel}", "Flagger measures every tick until promotion")
    if (metric.success_condition is None) == (metric.failure_condition is None):
        raise _refuse(
            f"{where}.successCondition",
            "Flagger has one pass range per metric: give exactly one of successCondition and"
            " failureCondition (both can be Inconclusive, which Flagger has not)",
        )
    text = cast(str, metric.success_condition or metric.failure_condition)  # one is given
    range_ = threshold_range(text, metric.success_condition is not None)
    if range_ is None:
        raise _refuse(
            f"{where}.{'successCondition' if metric.success_condition else 'failureCondition'}",
            f"{text!r} is not an inclusive range Flagger's thresholdRange can hold",
        )
    if metric.name in _BUILTIN:
        raise _refuse(f"{where}.name", f"Flagger runs its built-in {metric.name} check by name")
    query = metric.provider.query
    window = None if query.window in (None, tick) else query.window
    text = _query(query.model_copy(update={"window": window}), _source(provider, where), where)
    template = _template(metric.name, text, target, f"{where}.name")
    entry = {
        "name": metric.name,
        "templateRef": {"name": template["metadata"]["name"]},
        "interval": flagger_interval(f"{where}.interval", tick),
        "thresholdRange": range_,
    }
    return entry, template, metric.failure_limit


def _canary(policy: Canary, target: Target) -> Export:
    routing = policy.traffic_routing
    if routing is None:
        raise _refuse(
            "trafficRouting",
            "Flagger shifts weight with a router; a replica-ratio canary behind one Service has"
            " no Flagger form",
        )
    if routing.router not in FLAGGER_PROVIDERS:
        raise _refuse("trafficRouting", f"Flagger has no {routing.router} router")
    if routing.max_traffic_weight != 100:
        raise _refuse("trafficRouting.maxTrafficWeight", "Flagger's total weight is fixed at 100")
    for name, camel in (
        ("dynamic_stable_scale", "dynamicStableScale"),
        ("min_pods_per_replica_set", "minPodsPerReplicaSet"),
        ("scale_down_delay_seconds", "scaleDownDelaySeconds"),
        ("abort_scale_down_delay_seconds", "abortScaleDownDelaySeconds"),
        ("rollback_window", "rollbackWindow"),
    ):
        if getattr(policy, name) not in (None, False):
            raise _refuse(camel, "an Argo-only setting: Flagger's primary/canary pair has none")
    weights, tick = _pairs(policy)
    templates: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    limits: list[int] = []
    if policy.analysis is not None:
        for ref in policy.analysis.templates:
            i = next(
                k for k, t in enumerate(policy.analysis_templates) if t.name == ref.template_name
            )
            template = policy.analysis_templates[i]
            if template.dry_run:
                raise _refuse(f"analysisTemplates[{i}].dryRun", "Flagger has no dry-run metric")
            for j, m in enumerate(template.metrics):
                where = f"analysisTemplates[{i}].metrics[{j}]"
                entry, tmpl, limit = _canary_metric(m, where, tick, routing.router, target)
                metrics.append(entry)
                templates.append(tmpl)
                limits.append(limit)
    if policy.analysis is not None and policy.analysis.starting_step:
        raise _refuse("analysis.startingStep", "Flagger analyses from the first tick")
    if any(limit < 0 for limit in limits) or (len(limits) > 1 and any(limits)):
        raise _refuse(
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
    canary = _base(policy, target, routing.router, analysis, policy.progress_deadline_seconds)
    deployment = _deployment(policy, target, policy.min_ready_seconds)
    return _finish([*templates, deployment, canary])


def _pairs(policy: Canary) -> tuple[list[int], float]:
    """The stepWeights and the tick of setWeight/pause pairs with one pause duration."""
    steps = policy.steps
    if not steps:
        raise _refuse("steps", "without steps Argo rolls out at once; Flagger needs weights")
    weights: list[int] = []
    tick: float | None = None
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        action = step.action
        if action in ("set_canary_scale", "set_header_route"):
            camel = "setCanaryScale" if action == "set_canary_scale" else "setHeaderRoute"
            raise _refuse(f"{where}.{camel}", "an Argo-only step: Flagger has no such action")
        if action == "analysis":
            raise _refuse(
                f"{where}.analysis",
                "Flagger analyses on every tick; a one-off analysis step has no Flagger form",
            )
        want = "set_weight" if i % 2 == 0 else "pause"
        if action != want:
            raise _refuse(
                where,
                "Flagger holds each weight for one tick: steps must be setWeight/pause pairs",
            )
        if step.set_weight is not None:  # action == "set_weight" (the first of a step's actions)
            if step.set_weight == 0 or (weights and step.set_weight <= weights[-1]):
                raise _refuse(f"{where}.setWeight", "Flagger's stepWeights rise from 1 to 100")
            weights.append(step.set_weight)
            continue
        duration = cast(Pause, step.pause).duration  # the action is pause
        if duration is None:
            raise _refuse(f"{where}.pause", "a manual pause: Flagger ticks on its own")
        if tick is None:
            tick = duration
        elif duration != tick:
            raise _refuse(
                f"{where}.pause.duration",
                f"Flagger ticks are uniform: every weight is held one interval ({tick:g} s),"
                f" this pause is {duration:g} s",
            )
    if len(steps) % 2:
        raise _refuse(
            f"steps[{len(steps) - 1}]",
            "Argo promotes right after a final setWeight; Flagger holds it one more tick",
        )
    return weights, cast(float, tick)  # pairs (steps > 0, even): a pause has set the tick


def _finish(manifests: list[dict[str, Any]]) -> Export:
    crds.check(m for m in manifests if m["apiVersion"] == API_VERSION)
    return Export(EXECUTOR, manifests)


def export(policy, target: Target) -> Export:
    """Flagger manifests for ``policy``: MetricTemplates, the Deployment, then the Canary."""
    if isinstance(policy, Progressive | ABTest):
        return _flagger_policy(policy, target)
    if isinstance(policy, Canary):
        return _canary(policy, target)
    kind = getattr(policy, "kind", type(policy).__name__)
    field, reason = _REFUSED.get(kind, ("kind", f"{kind} is not a Flagger strategy"))
    if kind == "BlueGreen" and policy.switch == "dns":
        reason = "a DNS switch with a TTL is not a Flagger strategy: " + reason
    raise _refuse(field, reason)
