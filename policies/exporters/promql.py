"""PromQL for the simulator's queries, both ways: ``query_for`` writes, ``recognise`` reads.

A simulated ``Query(measure, version, quantile, window, unit)`` (``policies.measures``) becomes
PromQL over one metric source; a hand-written query is mapped back when it has a recognised form
(``policies.exporters.promql_forms``, re-exported here). The exporters, importers and the live
executor share these forms: what is written is read back, in the unit it was written in.

Sources (``MetricSource``), and how canary and stable are told apart (``layout``):

* ``nginx`` — ingress-nginx ``nginx_ingress_controller_requests{namespace, ingress, status,
  canary}`` and ``..._request_duration_seconds_bucket``. The ``canary`` label names the canary
  backend when the canary Ingress served the request and is empty otherwise, for Argo and
  Flagger alike.
* ``istio`` — ``istio_requests_total{reporter, response_code, ...}`` and
  ``istio_request_duration_milliseconds_bucket`` (ms). Flagger layout: the workloads ``<svc>``
  (canary) and ``<svc>-primary`` (``destination_workload``, as Flagger's own built-in metrics).
  Argo layout: Istio names both versions' workload after the Rollout, so the destination pod is
  matched by the ReplicaSet hash Argo passes as an argument (``pod=~"<svc>-{{args.canary-hash}}
  -.+"``, ``valueFrom.podTemplateHashValue``).
* ``haproxy`` — ``haproxy_server_http_responses_total{proxy, server, code}`` with servers
  ``canary`` and ``stable`` (reference/live-bench.md). HAProxy has no latency histogram.
* ``linkerd`` — ``response_total{namespace, deployment, direction="inbound", classification}``
  and ``response_latency_ms_bucket`` (ms), as Flagger's linkerd built-ins; an error is
  ``classification="failure"`` (a 5xx, or a gRPC error). Argo layout: the pod by ReplicaSet hash.
* ``envoy`` — a sidecar Envoy's ``envoy_cluster_upstream_rq{kubernetes_namespace,
  kubernetes_pod_name, envoy_response_code}`` and ``envoy_cluster_upstream_rq_time_bucket`` (ms),
  as Flagger's appmesh built-ins: Flagger layout, its canary pod pattern
  ``<svc>-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)`` (the primary's pods are ``<svc>-primary-...``); Argo
  layout, the pod by ReplicaSet hash.

Errors are 5xx; a query's value is in its ``unit`` (fractions and seconds unless the query says
percent or milliseconds; Argo: ``result[0] >= 0.99``); ``scale`` overrides it (Flagger's
built-in units: percent, truncated milliseconds).
"""

from __future__ import annotations

import math
from typing import Literal, cast

from policies.exporters.promql_forms import (
    ARG_CANARY_HASH,
    ARG_NAMESPACE,
    ARG_SERVICE,
    ARG_STABLE_HASH,
    METRICS,
    Recognised,
    Scale,
    argo_arg,
    parse_window,
    recognise,
    recognise_form,
)
from policies.measures import Query
from policies.vocabulary import METRIC_SOURCES, MetricSource

__all__ = [
    "ARG_CANARY_HASH",
    "ARG_NAMESPACE",
    "ARG_SERVICE",
    "ARG_STABLE_HASH",
    "FLAGGER_INTERVAL",
    "HASHED_SOURCES",
    "METRICS",
    "SOURCES",
    "Recognised",
    "Scale",
    "argo_arg",
    "format_window",
    "parse_window",
    "query_for",
    "recognise",
    "recognise_form",
]

Source = MetricSource
Layout = Literal["argo", "flagger"]
SOURCES: tuple[MetricSource, ...] = METRIC_SOURCES

FLAGGER_INTERVAL = "{{ interval }}"
"""Flagger's template variable for the metric's interval (the query window)."""

HASHED_SOURCES: frozenset[MetricSource] = frozenset({"istio", "linkerd", "envoy"})
"""Sources whose Argo layout tells the versions apart by ReplicaSet hash: their templates take
the ``canary-hash`` and ``stable-hash`` arguments (``valueFrom.podTemplateHashValue``)."""

_REQUESTS: dict[MetricSource, str] = {
    "nginx": "nginx_ingress_controller_requests",
    "istio": "istio_requests_total",
    "haproxy": "haproxy_server_http_responses_total",
    "linkerd": "response_total",
    "envoy": "envoy_cluster_upstream_rq",
}
_BUCKETS: dict[MetricSource, str] = {
    "nginx": "nginx_ingress_controller_request_duration_seconds_bucket",
    "istio": "istio_request_duration_milliseconds_bucket",
    "linkerd": "response_latency_ms_bucket",
    "envoy": "envoy_cluster_upstream_rq_time_bucket",
}
_ERRORS: dict[MetricSource, tuple[str, str]] = {  # (error matcher, its complement)
    "haproxy": ('="5xx"', '!="5xx"'),
    "linkerd": ('="failure"', '!="failure"'),
}


def format_window(seconds: float) -> str:
    """A Prometheus duration: the largest exact unit ("1m", "90s", "1500ms")."""
    if seconds <= 0 or math.isinf(seconds) or math.isnan(seconds):
        raise ValueError(f"window {seconds} s must be a positive duration")
    ms = round(seconds * 1000)
    if abs(ms - seconds * 1000) > 1e-6:
        raise ValueError(f"window {seconds} s is not a whole number of milliseconds")
    if ms % 1000:
        return f"{ms}ms"
    whole = ms // 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _selector(source: str, layout: str, version: str, service: str, namespace: str, hashes):
    canary = version == "canary"
    pod = f"{service}-{hashes[0 if canary else 1]}-.+"
    if source == "nginx":
        label = 'canary!=""' if canary else 'canary=""'
        return f'namespace="{namespace}", ingress="{service}", {label}'
    if source == "istio":
        head = f'reporter="destination", destination_workload_namespace="{namespace}", '
        if layout == "flagger":
            suffix = "" if canary else "-primary"
            return head + f'destination_workload="{service}{suffix}"'
        return head + f'pod=~"{pod}"'
    if source == "haproxy":
        return f'proxy="{service}", server="{version}"'
    if source == "linkerd":
        head = f'namespace="{namespace}", direction="inbound", '
        if layout == "flagger":
            return head + f'deployment="{service}{"" if canary else "-primary"}"'
        return head + f'pod=~"{pod}"'
    if source == "envoy":
        head = f'kubernetes_namespace="{namespace}", kubernetes_pod_name=~'
        if layout == "flagger":
            return head + f'"{service}{"" if canary else "-primary"}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
        return head + f'"{pod}"'
    raise ValueError(f"unknown metric source {source!r} (choose from {', '.join(SOURCES)})")


def query_for(
    query: Query,
    source: str,
    service: str = argo_arg(ARG_SERVICE),
    namespace: str = argo_arg(ARG_NAMESPACE),
    window: float | str | None = None,
    *,
    layout: Layout = "argo",
    scale: Scale | None = None,
    nan_filter: bool = False,
    hashes: tuple[str, str] = (argo_arg(ARG_CANARY_HASH), argo_arg(ARG_STABLE_HASH)),
) -> str:
    """The PromQL of ``query`` over ``source`` for ``service`` in ``namespace``.

    ``window``: seconds or a template such as ``{{ interval }}`` (None: ``query.window``).
    ``scale``: the unit to write the value in (None: ``query.unit``, else fractions and
    seconds); ``ms_floor`` is truncated ms, Flagger's built-in duration. ``nan_filter`` appends
    ``>= 0``: a NaN (0/0, no traffic) is dropped, so Argo sees an empty result and reports
    Error, as the simulator does. ``ValueError``: the source cannot measure it.
    """
    if window is None:
        window = query.window
    if window is None:
        raise ValueError("the query has no window: pass the metric's interval")
    w = window if isinstance(window, str) else format_window(window)
    sel = _selector(source, layout, query.version, service, namespace, hashes)
    source = cast(MetricSource, source)  # _selector raised ValueError for any other source
    metric = _REQUESTS[source]
    status = cast(str, METRICS[metric].status)  # every requests metric has a status label
    if query.measure in ("errorRate", "successRate"):
        bad, good = _ERRORS.get(source, ('=~"5.."', '!~"5.."'))
        matcher = bad if query.measure == "errorRate" else good
        text = (
            f"sum(rate({metric}{{{sel}, {status}{matcher}}}[{w}]))"
            f" / sum(rate({metric}{{{sel}}}[{w}]))"
        )
        natural: Scale = "fraction"
    elif query.measure == "requestCount":
        text, natural = f"sum(increase({metric}{{{sel}}}[{w}]))", "count"
    else:
        if source not in _BUCKETS:
            raise ValueError(f"{source} exports no latency histogram: no latency quantile")
        text = (
            f"histogram_quantile({query.quantile!r},"
            f" sum by (le) (rate({_BUCKETS[source]}{{{sel}}}[{w}])))"
        )
        natural = METRICS[_BUCKETS[source]].unit
    scale = scale or query.unit or ("seconds" if natural == "milliseconds" else natural)
    text = _rescale(text, natural, scale)
    return f"({text}) >= 0" if nan_filter else text


_UNITS = {
    ("fraction", "percent"): "100 * ({})",
    ("seconds", "milliseconds"): "1000 * {}",
    ("seconds", "ms_floor"): "floor(1000 * {})",
    ("milliseconds", "seconds"): "{} / 1000",
    ("milliseconds", "ms_floor"): "floor({})",
}


def _rescale(text: str, natural: str, scale: str) -> str:
    if scale == natural:
        return text
    if (natural, scale) not in _UNITS:
        raise ValueError(f"a {natural} query cannot be written in {scale}")
    return _UNITS[natural, scale].format(text)
