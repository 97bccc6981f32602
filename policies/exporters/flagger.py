"""Flagger: a ``Canary`` (progressive weights or A/B test), the ``MetricTemplate`` objects its
custom metrics need and its target (a ``Deployment``, or a Knative ``Service``), checked against
Flagger's CRD.

What is exported:

* Progressive -> a Flagger canary (stepWeight or stepWeights, maxWeight, stepWeightPromotion),
  or with ``iterations`` Flagger's blue/green (the kubernetes provider included); ``mirror``,
  ``mirrorWeight`` and ``sessionAffinity`` as written; ``loadTest`` as the load tester's
  webhook running ``hey -z <duration> -q <rate / concurrency> -c <concurrency>`` on
  ``http://<service>-canary.<namespace>:<port>/``.
* ABTest -> a Flagger A/B test (iterations + match). Istio, App Mesh, Contour, Gloo and the
  Gateway API take the match as is (a cookie becomes Istio's ``cookie`` header regex);
  ingress-nginx honours one header (``canary-by-header`` with ``-value`` for an exact value or
  ``-pattern`` for a regex, as Flagger's ingress router writes them) and one cookie
  (``canary-by-cookie``), so anything more is refused. Providers without A/B routing
  (``ROUTERS``' ``flagger_match``) are refused.
* Canary (Argo policy) -> stepWeights when Flagger's uniform tick can hold it
  (``flagger_argo``).

``spec.provider`` is written as Flagger's CRD spells it (``gatewayapi:v1``, ``smi:v1alpha3``,
or the imported version). Each provider gets the reference its router reads (Flagger's
tutorials): ``ingressRef`` for nginx and skipper, ``routeRef`` (an ApisixRoute) for apisix,
``service.gatewayRefs`` for the Gateway API (a Gateway named ``gateway`` in the target's
namespace: a placeholder, the team's own Gateway goes there), a Knative ``Service`` as the
target for knative. Approval gates become ``confirm-*`` webhooks with their own URL, else the
Flagger load tester's manual gate (``/gate/check``, closed until someone opens it). Metrics:
``flagger_metrics``. Refused, naming the field: BlueGreen and RollingUpdate (see ``_REFUSED``),
Argo-only steps, uneven pauses, intervals that are not whole seconds,
sequential and Kayenta gates.
"""

from __future__ import annotations

import re
from typing import Any

from policies.canary import Canary
from policies.common import RouteMatch
from policies.exporters import Export, Target, crds
from policies.exporters.flagger_argo import canary_analysis
from policies.exporters.flagger_metrics import (
    API_VERSION,
    EXECUTOR,
    flagger_interval,
    metric_entry,
    refuse,
    threshold_range,
)
from policies.flagger import (
    DEFAULT_PROVIDER_VERSION,
    GATE_URL,
    LOAD_TESTER,
    ABTest,
    FlaggerAnalysis,
    LoadTest,
    Progressive,
)
from policies.vocabulary import FlaggerProvider as Provider
from policies.vocabulary import provider_router, routers_where

__all__ = [
    "API_VERSION",
    "EXECUTOR",
    "PROVIDERS",
    "cookie_regex",
    "export",
    "flagger_interval",
    "threshold_range",
]

PROVIDERS = {p: f"{p}:{v}" for p, v in DEFAULT_PROVIDER_VERSION.items()}
"""Policy provider -> Flagger ``spec.provider`` where the names differ (no version given)."""
_HEADER_ROUTERS = routers_where("flagger_match")
_KNATIVE = "serving.knative.dev/v1"
_REFUSED = {
    "BlueGreen": (
        "switch",
        "Flagger's blue/green never flips a Service selector: with the kubernetes provider the"
        " apex Service always selects the primary and promotion is a rolling update of it,"
        " with a mesh it is N analysis ticks, a route switch, one more tick and a route back;"
        " neither is the instant switch with a scaleDownDelaySeconds hold-back simulated here;"
        " in Flagger, write a Progressive with analysis.iterations (its blue/green)",
    ),
    "RollingUpdate": (
        "kind",
        "a Deployment rolling update; in Flagger, write a Progressive with provider:"
        " kubernetes: it analyses the new version, then promotes it by a rolling update of the"
        " primary (the kubernetes exporter writes this Deployment as it is)",
    ),
    "BatchRelease": (
        "batches",
        "Flagger shifts traffic by router weight on uniform ticks; batches of pods behind one"
        " Service with their own pauses are not a Flagger strategy: in Flagger, write a"
        " Progressive with analysis.stepWeights at the batches' shares (the argo and kubernetes"
        " exporters take the batches as written)",
    ),
}


def cookie_regex(name: str) -> str:
    """Istio header match for ``cookie: <name>=always`` anywhere in the Cookie header."""
    return f"^(.*?;)?({re.escape(name)}=always)(;.*)?$"


def _refs(provider: str, target: Target, spec: dict[str, Any]) -> None:
    """The object references the provider's router reads (Flagger's tutorials)."""
    if provider in ("nginx", "skipper"):
        spec["ingressRef"] = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "name": target.service,
        }
    elif provider == "apisix":
        spec["routeRef"] = {
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "name": target.service,
        }


def _base(policy, target: Target, flagger_provider: str, analysis: dict, deadline: float):
    provider = flagger_provider.partition(":")[0]
    kind = ("Service", _KNATIVE) if provider == "knative" else ("Deployment", "apps/v1")
    spec: dict[str, Any] = {
        "provider": flagger_provider,
        "targetRef": {"apiVersion": kind[1], "kind": kind[0], "name": target.service},
    }
    _refs(provider, target, spec)
    spec["service"] = {"port": target.port}
    if provider == "gatewayapi":
        spec["service"]["gatewayRefs"] = [{"name": "gateway", "namespace": target.namespace}]
    if deadline != int(deadline):
        raise refuse("progressDeadlineSeconds", f"{deadline} s is not a whole number of seconds")
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


def _target(policy, target: Target, provider: str, min_ready: float = 0.0) -> dict[str, Any]:
    """The target workload: it carries the replica count (a Flagger Canary has none). For
    knative a Knative Service whose scale is pinned to it (min-scale = max-scale)."""
    replicas = target.replicas_for(policy)
    container: dict[str, Any] = {"name": target.service, "image": target.image}
    container["ports"] = [{"containerPort": target.port}]
    meta = {"name": target.service, "namespace": target.namespace}
    if provider == "knative":
        scale = {f"autoscaling.knative.dev/{k}-scale": str(replicas) for k in ("min", "max")}
        body = {"metadata": {"annotations": scale}, "spec": {"containers": [container]}}
        return {
            "apiVersion": _KNATIVE,
            "kind": "Service",
            "metadata": meta,
            "spec": {"template": body},
        }
    spec: dict[str, Any] = {"replicas": replicas}
    if min_ready:
        if min_ready != int(min_ready):
            raise refuse("minReadySeconds", f"{min_ready} s is not a whole number of seconds")
        spec["minReadySeconds"] = int(min_ready)
    spec["selector"] = {"matchLabels": {"app": target.service}}
    pod = {"metadata": {"labels": {"app": target.service}}, "spec": {"containers": [container]}}
    spec["template"] = pod
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def _match(matches: tuple[RouteMatch, ...], provider: Provider) -> list[dict[str, Any]]:
    if provider_router(provider) not in _HEADER_ROUTERS:
        raise refuse(
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
                raise refuse(f"{where}.cookie", "only an exact cookie name can be matched")
            if provider == "nginx":
                headers["cookie"] = {"exact": match.cookie.exact}
            elif provider == "istio":
                headers["cookie"] = {"regex": cookie_regex(match.cookie.exact)}
            else:
                raise refuse(f"{where}.cookie", f"no cookie match with provider {provider}")
        if provider == "nginx":
            plain = [n for n in headers if n != "cookie"]
            headers_seen += len(plain)
            cookies_seen += "cookie" in headers
            if len(headers) > 1:
                raise refuse(
                    where,
                    "ingress-nginx ORs its header and cookie rules: conditions ANDed in one"
                    " match entry cannot be expressed",
                )
            for name in plain:  # canary-by-header-value (exact) or -pattern (regex)
                if headers[name].get("prefix") is not None:
                    raise refuse(
                        f"{where}.headers.{name}",
                        "Flagger's ingress-nginx router matches a header by exact value or"
                        " regex (canary-by-header-value, -pattern), not by prefix",
                    )
            if headers_seen > 1 or cookies_seen > 1:
                raise refuse(where, "ingress-nginx takes one canary header and one canary cookie")
            for name in plain:  # ingress-nginx searches its pattern: anchor the whole value
                if headers[name].get("regex") is not None:
                    headers[name] = {"regex": f"^(?:{headers[name]['regex']})$"}
        out.append({"headers": headers})
    return out


def _webhooks(a: FlaggerAnalysis, target: Target) -> list[dict[str, Any]]:
    """The approval gates as confirm-* webhooks (the load tester's manual gate by default),
    then the load test."""
    default = GATE_URL.format(namespace=target.namespace)
    out = [{"name": g.name or g.type, "type": g.type, "url": g.url or default} for g in a.gates]
    if a.load_test is not None:
        out.append(_load_test(a.load_test, target))
    return out


def _go_duration(field: str, seconds: float) -> str:
    """hey's ``-z`` (a Go duration): whole minutes or seconds, else milliseconds."""
    ms = round(seconds * 1000)
    if abs(ms - seconds * 1000) > 1e-6 or ms <= 0:
        raise refuse(field, f"{seconds} s is not a whole number of milliseconds")
    if ms % 1000:
        return f"{ms}ms"
    return f"{ms // 60000}m" if ms % 60000 == 0 else f"{ms // 1000}s"


def _load_test(test: LoadTest, target: Target) -> dict[str, Any]:
    """The load tester's webhook: hey against the canary's own Service."""
    per_worker = test.rate / test.concurrency
    url = f"http://{target.service}-canary.{target.namespace}:{target.port}/"
    duration = _go_duration("analysis.loadTest.duration", test.duration)
    cmd = f"hey -z {duration} -q {per_worker:g} -c {test.concurrency} {url}"
    if float(f"{per_worker:g}") * test.concurrency != test.rate:
        raise refuse(
            "analysis.loadTest.rate",
            f"{test.rate:g}/s is not {test.concurrency} workers at a rate hey's -q can write",
        )
    return {
        "name": test.name or "load-test",
        "type": test.type,
        "url": test.url or LOAD_TESTER.format(namespace=target.namespace),
        "metadata": {"cmd": cmd},
    }


def _traffic(a: FlaggerAnalysis, out: dict[str, Any]) -> None:
    """``mirror``, ``mirrorWeight``, ``sessionAffinity`` (the policy checked the provider)."""
    if a.mirror:
        out["mirror"] = True
    if a.mirror_weight is not None:
        whole = a.mirror_weight == int(a.mirror_weight)
        out["mirrorWeight"] = int(a.mirror_weight) if whole else a.mirror_weight
    if a.session_affinity is not None:
        sticky: dict[str, Any] = {"cookieName": a.session_affinity.cookie_name}
        age = a.session_affinity.max_age
        if age != 86400.0:
            if age != int(age):
                raise refuse("analysis.sessionAffinity.maxAge", f"{age} s: whole seconds only")
            sticky["maxAge"] = int(age)
        out["sessionAffinity"] = sticky


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
    out["metrics"] = [
        metric_entry(m, i, provider, target, templates) for i, m in enumerate(a.metrics)
    ]
    _traffic(a, out)
    if a.gates or a.load_test is not None:
        out["webhooks"] = _webhooks(a, target)
    return out


def _flagger_policy(policy: Progressive | ABTest, target: Target) -> Export:
    templates: list[dict[str, Any]] = []
    analysis = _analysis(policy.analysis, policy.provider, target, templates)
    deadline = policy.progress_deadline_seconds
    canary = _base(policy, target, policy.flagger_provider, analysis, deadline)
    return _finish([*templates, _target(policy, target, policy.provider), canary])


def _canary(policy: Canary, target: Target) -> Export:
    provider, analysis, templates = canary_analysis(policy, target)
    flagger_provider = PROVIDERS.get(provider, provider)
    canary = _base(policy, target, flagger_provider, analysis, policy.progress_deadline_seconds)
    workload = _target(policy, target, provider, policy.min_ready_seconds)
    return _finish([*templates, workload, canary])


def _finish(manifests: list[dict[str, Any]]) -> Export:
    crds.check(m for m in manifests if m["apiVersion"] == API_VERSION)
    return Export(EXECUTOR, manifests)


def export(policy, target: Target) -> Export:
    """Flagger manifests for ``policy``: MetricTemplates, the target, then the Canary."""
    if isinstance(policy, Progressive | ABTest):
        return _flagger_policy(policy, target)
    if isinstance(policy, Canary):
        return _canary(policy, target)
    kind = getattr(policy, "kind", type(policy).__name__)
    field, reason = _REFUSED.get(kind, ("kind", f"{kind} is not a Flagger strategy"))
    if kind == "BlueGreen" and policy.switch == "dns":
        reason = "a DNS switch with a TTL is not a Flagger strategy: " + reason
    raise refuse(field, reason)
