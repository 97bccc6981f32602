"""Flagger's metric checks out: built-ins by name, custom queries as ``MetricTemplate`` objects.

A built-in stays built in: the simulator judges what each provider's observer measures
(``policies.flagger.duration_read``: request-duration is the canary's mean on ingress-nginx and
skipper, its P99 elsewhere; on ingress-nginx, since Flagger 1.15, the success rate selects the
canary's requests only, ``canary!=""``, fluxcd/flagger#1023). A custom metric's query is written
for the router's own metrics (ingress-nginx's, Istio's, Linkerd's, App Mesh's Envoy, Traefik's,
APISIX's, Open Service Mesh's, with the selectors of Flagger's own built-ins); with the
Gateway API, whose metrics are its implementation's, for the Gateway's Envoy upstream clusters
as Flagger's Gateway API tutorial and end-to-end tests write them
(``envoy_cluster_name=~"<namespace>_<service>-canary_..."``: Contour, Istio and Envoy Gateway
are Envoy-based). An Argo metric becomes a Flagger one when its condition is an inclusive range
Flagger's ``thresholdRange`` can hold.
"""

from __future__ import annotations

import re
from typing import Any, cast

from policies.analysis import Metric
from policies.errors import NotExpressibleError
from policies.exporters import Target, promql
from policies.flagger import FlaggerMetric
from policies.measures import Query
from policies.vocabulary import FLAGGER_PROVIDERS, ROUTERS, Executor, provider_router
from policies.vocabulary import FlaggerProvider as Provider

__all__ = [
    "API_VERSION",
    "EXECUTOR",
    "canary_metric",
    "flagger_interval",
    "metric_entry",
    "refuse",
    "template",
    "threshold_range",
]

EXECUTOR: Executor = "flagger"
API_VERSION = "flagger.app/v1beta1"
_BUILTIN = ("request-success-rate", "request-duration")


def refuse(field: str, reason: str) -> NotExpressibleError:
    return NotExpressibleError(EXECUTOR, field, reason)


def flagger_interval(field: str, seconds: float) -> str:
    """Flagger's ``^[0-9]+(m|s)``: whole minutes as "Nm", else whole seconds ("1h" -> "60m")."""
    if seconds != int(seconds) or seconds < 1:
        raise refuse(field, f"{seconds} s: Flagger intervals are whole seconds or minutes")
    whole = int(seconds)
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"


def template(name: str, query: str, target: Target, field: str) -> dict[str, Any]:
    """A Prometheus ``MetricTemplate`` named ``<service>-<name>``, the metric's name spelt as
    an object name (Flagger's metric names are free text: ``404s percentage``)."""
    spelt = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    full = f"{target.service}-{spelt}"
    if not spelt or len(full) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", full):
        raise refuse(field, f"MetricTemplate name {full!r} is not a valid object name")
    return {
        "apiVersion": API_VERSION,
        "kind": "MetricTemplate",
        "metadata": {"name": full, "namespace": target.namespace},
        "spec": {"provider": {"type": "prometheus", "address": target.prometheus}, "query": query},
    }


_GATEWAY = "gatewayapi"
"""The ``_source`` of the Gateway API: the Gateway's Envoy clusters (see the module docstring)."""


_UNWRITTEN = {
    "skipper": "Skipper's route names spell the namespace, Ingress and Service with every"
    " non-word character as _, which Flagger's template variables cannot write",
    "knative": "Knative's revision clusters do not say which version they serve",
    "kubernetes": "it has no router: the application's own metrics are the team's to name",
}
"""Why a provider's own metrics are not written, where there is more to say than that."""


def _source(provider: Provider, field: str) -> str:
    """Whose metrics a custom query over ``provider``'s router is written for (``ROUTERS``)."""
    if provider == "gatewayapi":
        return _GATEWAY
    source = ROUTERS[provider_router(provider)].metrics
    if source is not None:
        return source
    written = [
        p for p in FLAGGER_PROVIDERS if p == "gatewayapi" or ROUTERS[provider_router(p)].metrics
    ]
    why = _UNWRITTEN.get(provider, "rolloutsim writes no query over its metrics")
    raise refuse(
        field,
        f"custom queries are written for the provider's own metrics ({', '.join(written)});"
        f" provider {provider}'s are not: {why}",
    )


def _query(query: Query, source: str, field: str, scale=None) -> str:
    window = promql.FLAGGER_INTERVAL if query.window is None else query.window
    name = "{{ ingress }}" if source == "nginx" else "{{ target }}"  # Flagger's variables
    envoy = "envoy" if source == _GATEWAY else source
    try:
        text = promql.query_for(
            query, envoy, name, "{{ namespace }}", window, layout="flagger", scale=scale
        )
    except ValueError as exc:
        raise refuse(field, str(exc)) from None
    if source == _GATEWAY:  # the same Envoy metrics, selected by the Gateway's cluster names
        for suffix in ("", "-primary"):
            sidecar = (
                'kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~'
                f'"{name}{suffix}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
            )
            service = name + (suffix or "-canary")
            cluster = f'envoy_cluster_name=~"{{{{ namespace }}}}_{service}_[0-9a-zA-Z-]+"'
            text = text.replace(sidecar, cluster)
    return text


def metric_entry(
    metric: FlaggerMetric, i: int, provider: Provider, target: Target, templates: list
) -> dict[str, Any]:
    """``analysis.metrics[i]``; a MetricTemplate it needs is appended to ``templates``."""
    where = f"analysis.metrics[{i}]"
    entry: dict[str, Any] = {"name": metric.name}
    if metric.query is not None:
        if metric.name in _BUILTIN:
            raise refuse(
                f"{where}.name",
                f"Flagger runs its built-in check for any metric named {metric.name}: rename it",
            )
        text = _query(metric.query, _source(provider, f"{where}.query"), f"{where}.query")
        made = template(metric.name, text, target, f"{where}.name")
        name = made["metadata"]["name"]
        if any(t["metadata"]["name"] == name for t in templates):
            raise refuse(f"{where}.name", f"another metric's MetricTemplate is named {name} too")
        templates.append(made)
        entry["templateRef"] = {"name": name}
    entry["interval"] = flagger_interval(f"{where}.interval", metric.interval)
    if metric.threshold_range is not None:
        entry["thresholdRange"] = metric.threshold_range.to_dict()
    if metric.threshold is not None:
        entry["threshold"] = metric.threshold
    return entry


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


def canary_metric(metric: Metric, where: str, tick: float, provider: Provider, target: Target):
    """An Argo background metric as a Flagger metric: (entry, MetricTemplate, failureLimit)."""
    if metric.provider.query is None:
        kind = "sequential" if metric.provider.sequential is not None else "kayenta"
        raise refuse(
            f"{where}.provider.{kind}",
            "Flagger gates on thresholds of a query per tick only: give the metric a provider"
            " query with a successCondition",
        )
    if metric.interval != tick:
        given = "once" if metric.interval is None else f"every {metric.interval:g} s"
        raise refuse(
            f"{where}.interval",
            "Flagger measures every metric once per analysis interval, which the steps' pauses"
            f" set (steps[1].pause.duration: {tick:g} s), not {given}: give the metric"
            f" interval: {tick:g}s",
        )
    for name, camel, default in (
        ("initial_delay", "initialDelay", 0.0),
        ("count", "count", None),
        ("consecutive_success_limit", "consecutiveSuccessLimit", 0),
    ):
        if getattr(metric, name) != default:
            raise refuse(
                f"{where}.{camel}", f"Flagger measures every tick until promotion: drop {camel}"
            )
    if (metric.success_condition is None) == (metric.failure_condition is None):
        raise refuse(
            f"{where}.successCondition",
            "Flagger has one pass range per metric: give exactly one of successCondition and"
            " failureCondition (both can be Inconclusive, which Flagger has not)",
        )
    text = cast(str, metric.success_condition or metric.failure_condition)  # one is given
    range_ = threshold_range(text, metric.success_condition is not None)
    if range_ is None:
        raise refuse(
            f"{where}.{'successCondition' if metric.success_condition else 'failureCondition'}",
            f"{text!r} is not an inclusive range Flagger's thresholdRange can hold",
        )
    if metric.name in _BUILTIN:
        raise refuse(f"{where}.name", f"Flagger runs its built-in {metric.name} check by name")
    query = metric.provider.query
    window = None if query.window in (None, tick) else query.window
    text = _query(query.model_copy(update={"window": window}), _source(provider, where), where)
    made = template(metric.name, text, target, f"{where}.name")
    entry = {
        "name": metric.name,
        "templateRef": {"name": made["metadata"]["name"]},
        "interval": flagger_interval(f"{where}.interval", tick),
        "thresholdRange": range_,
    }
    return entry, made, metric.failure_limit
