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
* ``traefik`` — ``traefik_service_requests_total{service, code}`` and
  ``traefik_service_request_duration_seconds_bucket``, by the Traefik service of each version's
  Kubernetes Service (``<namespace>-<Service>-<port>@kubernetescrd``, as Flagger's traefik
  built-ins): Flagger's ``<svc>-canary`` and ``<svc>-primary``, Argo's ``canaryService`` and
  ``stableService`` as its exporter names them (``<svc>-canary``, ``<svc>-stable``).
* ``apisix`` — ``apisix_http_status{route, code}`` and ``apisix_http_latency_bucket{type=
  "request"}`` (ms), by the route Flagger's apisix built-ins select the canary by
  (``<namespace>_{{ route }}-<svc>-canary_...``). APISIX labels its metrics by route only, and
  neither executor gives the primary a route of its own (Flagger's canary route and Argo's route
  hold both backends), so only the canary is written, and only in Flagger's layout.
* ``osm`` — Open Service Mesh's ``osm_request_total{destination_namespace, destination_kind,
  destination_name, destination_pod, response_code}`` and ``osm_request_duration_ms_bucket``
  (ms): Flagger layout, the Deployment ``<svc>`` or ``<svc>-primary`` (its osm built-ins); Argo
  layout, the destination pod by ReplicaSet hash.

Skipper (route names with every non-word character made ``_``, which Flagger's template
variables cannot write) and Kuma (whose ``service`` label names the proxy that reports) are
recognised, not written.

Errors are 5xx; a query's value is in its ``unit`` (fractions and seconds unless the query says
percent or milliseconds; Argo: ``result[0] >= 0.99``); ``scale`` overrides it (Flagger's
built-in units: percent, truncated milliseconds).
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast

from policies.exporters.promql_forms import (
    ARG_CANARY_HASH,
    ARG_NAMESPACE,
    ARG_SERVICE,
    ARG_STABLE_HASH,
    METRICS,
    Recognised,
    Scale,
    argo_arg,
    form_notes,
    parse_window,
    recognise,
    recognise_form,
)
from policies.exporters.promql_parse import parse
from policies.measures import Query
from policies.vocabulary import METRIC_SOURCES, MetricSource

__all__ = [
    "ARGO_SOURCES",
    "ARG_CANARY_HASH",
    "ARG_NAMESPACE",
    "ARG_SERVICE",
    "ARG_STABLE_HASH",
    "FLAGGER_INTERVAL",
    "FLAGGER_ROUTE",
    "HASHED_SOURCES",
    "METRICS",
    "SOURCES",
    "Recognised",
    "Scale",
    "argo_arg",
    "form_notes",
    "format_window",
    "parse_window",
    "query_for",
    "recognise",
    "recognise_form",
    "why_unrecognised",
]

Source = MetricSource
Layout = Literal["argo", "flagger"]
SOURCES: tuple[MetricSource, ...] = METRIC_SOURCES

FLAGGER_INTERVAL = "{{ interval }}"
"""Flagger's template variable for the metric's interval (the query window)."""

FLAGGER_ROUTE = "{{ route }}"
"""Flagger's template variable for the name of the canary's route (``routeRef``: APISIX)."""

HASHED_SOURCES: frozenset[MetricSource] = frozenset({"istio", "linkerd", "envoy", "osm"})
"""Sources whose Argo layout tells the versions apart by ReplicaSet hash: their templates take
the ``canary-hash`` and ``stable-hash`` arguments (``valueFrom.podTemplateHashValue``)."""
ARGO_SOURCES: tuple[MetricSource, ...] = tuple(s for s in METRIC_SOURCES if s != "apisix")
"""Sources ``query_for`` writes in Argo's layout: APISIX's route label cannot tell Argo's
versions apart (both are backends of one route)."""

_REQUESTS: dict[MetricSource, str] = {
    "nginx": "nginx_ingress_controller_requests",
    "istio": "istio_requests_total",
    "haproxy": "haproxy_server_http_responses_total",
    "linkerd": "response_total",
    "envoy": "envoy_cluster_upstream_rq",
    "traefik": "traefik_service_requests_total",
    "apisix": "apisix_http_status",
    "osm": "osm_request_total",
}
_BUCKETS: dict[MetricSource, str] = {
    "nginx": "nginx_ingress_controller_request_duration_seconds_bucket",
    "istio": "istio_request_duration_milliseconds_bucket",
    "linkerd": "response_latency_ms_bucket",
    "envoy": "envoy_cluster_upstream_rq_time_bucket",
    "traefik": "traefik_service_request_duration_seconds_bucket",
    "apisix": "apisix_http_latency_bucket",
    "osm": "osm_request_duration_ms_bucket",
}
_BUCKET_LABELS: dict[MetricSource, str] = {"apisix": ', type="request"'}
"""Matchers a histogram needs beyond the requests' selector: APISIX's latency histogram holds
the request's, the upstream's and APISIX's own times (``type``)."""
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
    """The labels of one version's series, or (``all``) both versions' together."""
    canary, both = version == "canary", version == "all"
    pod = f"{service}-.+" if both else f"{service}-{hashes[0 if canary else 1]}-.+"
    if both:
        primary = f'~"{service}|{service}-primary"'
    else:
        primary = f'"{service}"' if canary else f'"{service}-primary"'
    if source == "nginx":
        label = "" if both else ', canary!=""' if canary else ', canary=""'
        return f'namespace="{namespace}", ingress="{service}"{label}'
    if source == "istio":
        head = f'reporter="destination", destination_workload_namespace="{namespace}", '
        if layout == "flagger":
            return head + f"destination_workload={primary}"
        return head + f'pod=~"{pod}"'
    if source == "haproxy":
        return f'proxy="{service}"' + ("" if both else f', server="{version}"')
    if source == "linkerd":
        head = f'namespace="{namespace}", direction="inbound", '
        if layout == "flagger":
            return head + f"deployment={primary}"
        return head + f'pod=~"{pod}"'
    if source == "envoy":
        head = f'kubernetes_namespace="{namespace}", kubernetes_pod_name=~'
        if layout == "flagger" and not both:
            return head + f'"{service}{"" if canary else "-primary"}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
        return head + f'"{pod}"'
    if source == "traefik":  # Traefik's name of a Kubernetes Service: <ns>-<name>-<port>@...
        names = ("canary", "primary" if layout == "flagger" else "stable")
        picked = names if both else (names[0 if canary else 1],)
        alts = "|".join(f"{namespace}-{service}-{n}-[0-9a-zA-Z-]+@kubernetescrd" for n in picked)
        return f'service=~"{alts}"'
    if source == "apisix":
        if layout != "flagger":
            raise ValueError(
                "APISIX labels its metrics by route, and Argo's canary and stable are backends"
                " of one route: no label tells the versions apart"
            )
        if not canary:
            raise ValueError(
                "APISIX labels its metrics by route, and Flagger routes the primary through"
                " no route of its own: only the canary's metrics can be selected"
            )
        return f'route=~"{namespace}_{FLAGGER_ROUTE}-{service}-canary_.+"'
    if source == "osm":
        head = f'destination_namespace="{namespace}", '
        if layout == "flagger":
            return head + f'destination_kind="Deployment", destination_name={primary}'
        return head + f'destination_pod=~"{pod}"'
    raise ValueError(f"unknown metric source {source!r} (choose from {', '.join(SOURCES)})")


_CLASS_MATCHERS: dict[str, tuple[str, str]] = {  # (errors, the rest) by the errors counted
    "5xx": ('=~"5.."', '!~"5.."'),
    "4xx": ('=~"4.."', '!~"4.."'),
    "404": ('="404"', '!="404"'),
    "4xx+5xx": ('=~"[45].."', '!~"[45].."'),
}


def _matchers(source: str, errors: str) -> tuple[str, str]:
    """The status matchers keeping the errors and the rest, for the responses counted."""
    if errors == "5xx" and source in _ERRORS:
        return _ERRORS[source]
    if source == "linkerd":
        raise ValueError("Linkerd classifies responses as success or failure: no 4xx class")
    if source == "haproxy":  # its code label holds classes
        if errors == "404":
            raise ValueError("HAProxy counts responses by class (4xx): no 404")
        return ('=~"[45]xx"', '!~"[45]xx"') if errors == "4xx+5xx" else ('="4xx"', '!="4xx"')
    return _CLASS_MATCHERS[errors]


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
    if query.irate is not None:  # irate's range: the window is its last scrape interval
        window = query.irate
    if window is None:
        raise ValueError("the query has no window: pass the metric's interval")
    w = window if isinstance(window, str) else format_window(window)
    sel = _selector(source, layout, query.version, service, namespace, hashes)
    source = cast(MetricSource, source)  # _selector raised ValueError for any other source
    metric = _REQUESTS[source]
    status = cast(str, METRICS[metric].status)  # every requests metric has a status label
    rate = "irate" if query.irate is not None else "rate"
    if query.measure in ("errorRate", "successRate"):
        bad, good = _matchers(source, query.errors)
        total = f"sum({rate}({metric}{{{sel}}}[{w}]))"
        if query.min_rate:  # clamp_min: 1 - errors / total, no NaN without traffic
            errors = f"(sum({rate}({metric}{{{sel}, {status}{bad}}}[{w}])) or vector(0))"
            text = f"{errors} / clamp_min({total}, {query.min_rate!r})"
            if query.measure == "successRate":
                text = f"1 - ({text})"
        else:
            matcher = bad if query.measure == "errorRate" else good
            text = f"sum({rate}({metric}{{{sel}, {status}{matcher}}}[{w}])) / {total}"
        natural: Scale = "fraction"
    elif query.measure == "requestCount":
        text, natural = f"sum(increase({metric}{{{sel}}}[{w}]))", "count"
    else:
        if source not in _BUCKETS:
            raise ValueError(f"{source} exports no latency histogram: no latency quantile")
        labels = sel + _BUCKET_LABELS.get(source, "")
        text = (
            f"histogram_quantile({query.quantile!r},"
            f" sum by (le) ({rate}({_BUCKETS[source]}{{{labels}}}[{w}])))"
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


def _nodes(node: Any) -> list[Any]:
    """Every node of a parsed query, depth first."""
    out = [node]
    for child in node[2] if node[0] == "call" else node[2:] if node[0] == "bin" else ():
        out += _nodes(child)
    return out


def why_unrecognised(promql: str) -> str:
    """Why ``promql`` is no recognised form, in words, for the importer's refusal."""
    try:
        nodes = _nodes(parse(promql))
    except (ValueError, IndexError) as exc:
        return f"its query is outside the PromQL the importer reads ({exc})"
    selectors = [n for n in nodes if n[0] == "sel"]
    calls = {n[1] for n in nodes if n[0] == "call"}
    if not selectors:
        return "its query reads no metric (a constant): no simulated measure"
    if not calls & {"rate", "irate", "increase"}:
        return (
            "its query reads a raw counter (no rate or increase over a window): a total since"
            " the process started, no simulated measure"
        )
    if "histogram_quantile" in calls and any(("le", "=", "+Inf") in s[2] for s in selectors):
        return 'its quantile is of one bucket (le="+Inf"), which Prometheus answers with NaN'
    return "its query is not a recognised form"
