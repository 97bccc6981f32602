"""The recognised forms of hand-written PromQL: which metrics say what, read back into a ``Query``.

A query is recognised when its shape is one the simulator computes (a 5xx ratio, a latency
quantile, a request count; see ``recognise_form``) over a metric of a known family, and its
labels pick out one version. Each form tells the measure, the version, the quantile, the window
and the scale (fraction or percent, seconds or milliseconds), so a condition is compared in the
query's own unit. The families (``METRICS``), from the executors' and meshes' own queries:

* ingress-nginx ``nginx_ingress_controller_requests{status, canary}`` and
  ``..._request_duration_seconds_bucket`` (the ``canary`` label: non-empty on the canary);
* Istio ``istio_requests_total{response_code}``, ``istio_request_duration_milliseconds_bucket``
  (and the seconds histogram of Istio before 1.8);
* Linkerd ``response_total{classification}`` (``failure``: a 5xx or gRPC error) and
  ``response_latency_ms_bucket`` (Flagger's linkerd built-ins);
* Envoy ``envoy_cluster_upstream_rq{envoy_response_code}``, ``..._rq_xx{envoy_response_code_class}``
  over ``..._rq_total``, and ``envoy_cluster_upstream_rq_time_bucket`` in ms (Flagger's appmesh,
  contour, gloo and kuma built-ins, and istio's Gateway API default);
* HAProxy ``haproxy_server_http_responses_total`` / ``haproxy_backend_http_responses_total``
  ``{code="5xx"}`` (no latency histogram);
* Traefik ``traefik_service_requests_total{code}`` and ``traefik_service_request_duration_seconds
  _bucket`` (Flagger counts requests as its ``le="+Inf"`` bucket); APISIX ``apisix_http_status``
  and ``apisix_http_latency_bucket`` (ms); Skipper ``skipper_response_duration_seconds_bucket``
  and ``skipper_serve_route_duration_seconds_bucket``; OSM ``osm_request_total`` and
  ``osm_request_duration_ms_bucket``; the ``kubernetes`` provider's application metrics
  ``http_request_duration_seconds_count``/``_bucket``.

A version is read from the label that names it: Flagger's ``-canary``/``-primary`` names (a
Service, cluster, route or workload), its canary pod pattern
``<target>-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)``, Argo's ReplicaSet-hash arguments, ingress-nginx's
``canary`` label, HAProxy's server names.
Not recognised: means of a latency (Flagger's nginx and skipper request-duration, a
``_sum / _count`` ratio: no quantile), ``irate`` (two samples, not the window), and Knative's
revision clusters (a revision name does not say which version it is).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from policies.exporters.promql_parse import number, parse
from policies.measures import Query

__all__ = [
    "ARG_CANARY_HASH",
    "ARG_NAMESPACE",
    "ARG_SERVICE",
    "ARG_STABLE_HASH",
    "METRICS",
    "MetricFacts",
    "Recognised",
    "Scale",
    "argo_arg",
    "parse_window",
    "recognise",
    "recognise_form",
]

Scale = Literal["fraction", "percent", "seconds", "milliseconds", "ms_floor", "count"]

ARG_SERVICE, ARG_NAMESPACE = "service-name", "namespace"
ARG_CANARY_HASH, ARG_STABLE_HASH = "canary-hash", "stable-hash"


def argo_arg(name: str) -> str:
    """``{{args.name}}``: an Argo AnalysisTemplate argument, resolved when the run starts."""
    return "{{args." + name + "}}"


@dataclass(frozen=True)
class MetricFacts:
    """One Prometheus metric: its family, whether it counts responses (``status`` names the
    label with the response status), counts requests without a status (``total``) or is a
    latency histogram (``buckets``, in ``unit``; at ``le="+Inf"`` also a request counter)."""

    family: str
    kind: Literal["requests", "total", "buckets"]
    status: str | None = None
    unit: Scale = "seconds"


def _buckets(family: str, unit: Scale = "seconds", status: str | None = None) -> MetricFacts:
    return MetricFacts(family, "buckets", status, unit)


METRICS: MappingProxyType[str, MetricFacts] = MappingProxyType(
    {
        "nginx_ingress_controller_requests": MetricFacts("nginx", "requests", "status"),
        "nginx_ingress_controller_request_duration_seconds_bucket": _buckets("nginx"),
        "nginx_ingress_controller_response_duration_seconds_bucket": _buckets("nginx"),
        "istio_requests_total": MetricFacts("istio", "requests", "response_code"),
        "istio_request_duration_milliseconds_bucket": _buckets("istio", "milliseconds"),
        "istio_request_duration_seconds_bucket": _buckets("istio"),
        "haproxy_server_http_responses_total": MetricFacts("haproxy", "requests", "code"),
        "haproxy_backend_http_responses_total": MetricFacts("haproxy", "requests", "code"),
        "response_total": MetricFacts("linkerd", "requests", "classification"),
        "response_latency_ms_bucket": _buckets("linkerd", "milliseconds"),
        "envoy_cluster_upstream_rq": MetricFacts("envoy", "requests", "envoy_response_code"),
        "envoy_cluster_upstream_rq_xx": MetricFacts(
            "envoy", "requests", "envoy_response_code_class"
        ),
        "envoy_cluster_upstream_rq_total": MetricFacts("envoy", "total"),
        "envoy_cluster_upstream_rq_time_bucket": _buckets("envoy", "milliseconds"),
        "traefik_service_requests_total": MetricFacts("traefik", "requests", "code"),
        "traefik_service_request_duration_seconds_bucket": _buckets("traefik", status="code"),
        "apisix_http_status": MetricFacts("apisix", "requests", "code"),
        "apisix_http_latency_bucket": _buckets("apisix", "milliseconds"),
        "skipper_response_duration_seconds_bucket": _buckets("skipper", status="code"),
        "skipper_serve_route_duration_seconds_bucket": _buckets("skipper"),
        "osm_request_total": MetricFacts("osm", "requests", "response_code"),
        "osm_request_duration_ms_bucket": _buckets("osm", "milliseconds"),
        "http_request_duration_seconds_count": MetricFacts("http", "requests", "status"),
        "http_request_duration_seconds_bucket": _buckets("http", status="status"),
    }
)
"""Every metric a recognised form reads, by name."""

_FIVE_XX = {"5..", "5.*", "5.+", "^5.*", "^5..$", "^5.*$", r"5\d\d", "5[0-9][0-9]", "5xx"}
_INF = ("le", "=", "+Inf")

# ----------------------------------------------------------------------------- windows

_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DUR_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_window(text: str) -> float | None:
    """Seconds of a Prometheus/Go duration ("1m30s"); None if it is not one."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DUR_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DUR_UNIT[match.group(2)]
        pos = match.end()
    return total if text and pos == len(text) else None


# ----------------------------------------------------------------------------- versions

_FLAGGER_POD = "-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
"""Flagger's canary pod pattern: one ReplicaSet hash and one pod suffix after the target's name
(the primary's pods carry ``-primary-`` before them, so the anchored regex leaves them out)."""
_END = r"(?=$|[-_.@/(\[\\*+])"
_CANARY = re.compile(r"[-_]canary" + _END)
_STABLE = re.compile(r"[-_](stable|primary)" + _END)


def _tag(value: str) -> str | None:
    """canary/stable from a name: a ReplicaSet-hash argument, a -canary/-stable/-primary part
    (``_`` too: Envoy clusters and Skipper routes), or Flagger's canary pod pattern."""
    if argo_arg(ARG_CANARY_HASH) in value or _CANARY.search(value):
        return "canary"
    if argo_arg(ARG_STABLE_HASH) in value or _STABLE.search(value):
        return "stable"
    return "canary" if value.endswith(_FLAGGER_POD) else None


_NAME_LABELS = {
    "pod",
    "destination_service_name",
    "destination_pod",
    "envoy_cluster_name",
    "kubernetes_pod_name",
    "service",
    "exported_service",
    "route",
    "proxy",
}
"""Labels whose value names one version's pods, Service, cluster or route."""
_WORKLOAD_LABELS = {"destination_workload", "deployment", "dst_deployment", "destination_name"}
"""Labels naming a workload: Flagger's primary is ``<target>-primary``, the canary ``<target>``."""
_VERSION_LABELS = {"destination_canonical_revision", "destination_version", "server"}


def _version(matchers: tuple) -> str | None:
    """Which version a selector's labels pick out (None: both, or unknown)."""
    found = set()
    for label, op, value in matchers:
        if label == "canary" and op in ("=", "=~", "!="):  # ingress-nginx's canary label
            if (op, value) in (("!=", ""), ("=~", ".+")) or (op == "=" and value):
                found.add("canary")
            elif (op, value) == ("=", ""):
                found.add("stable")
        elif op not in ("=", "=~"):
            continue
        elif label in _NAME_LABELS:
            found.add(_tag(value) or "")
        elif label == "destination_service":
            found.add(_tag(value.split(".")[0]) or "")  # a host name: its first label
        elif label in _WORKLOAD_LABELS:
            found.add("stable" if value.endswith("-primary") else "canary")
        elif label in _VERSION_LABELS and op == "=":
            found.add(value if value in ("canary", "stable") else "")
    found.discard("")
    return found.pop() if len(found) == 1 else None


# ----------------------------------------------------------------------------- forms


def _rate_sum(node: Any, funcs=("rate",), group=()) -> tuple[str, tuple, str] | None:
    """``sum(rate(m{...}[w]))`` (grouped only by ``group`` or labels the matchers fix)."""
    if node[0] != "call" or node[1] != "sum" or len(node[2]) != 1:
        return None
    inner = node[2][0]
    if inner[0] != "call" or inner[1] not in funcs or len(inner[2]) != 1 or inner[3]:
        return None
    sel = inner[2][0]
    if sel[0] != "sel" or sel[3] is None or sel[1] not in METRICS:
        return None
    if node[3] is not None:
        kind, labels = node[3]
        fixed = {label for label, op, _ in sel[2] if op == "="} | set(group)
        if kind != "by" or not set(labels) <= fixed:
            return None
    return sel[1], sel[2], sel[3]


def _counts(metric: str, matchers: tuple) -> bool:
    """Whether the series count requests: a counter, or a histogram's ``le="+Inf"`` bucket."""
    kind = METRICS[metric].kind
    return kind != "buckets" or (_INF in matchers and METRICS[metric].status is not None)


def _is_error(facts: MetricFacts, label: str, op: str, value: str) -> bool | None:
    """True for a matcher that keeps the errors, False for one that keeps the rest."""
    if label != facts.status:
        return None
    if label == "classification":  # Linkerd: failure (5xx, gRPC error) or success
        kept = {("=", "failure"): True, ("!=", "success"): True}
        kept |= {("!=", "failure"): False, ("=", "success"): False}
        return kept.get((op, value))
    if label == "envoy_response_code_class":
        return op in ("=", "=~") if value == "5" else None
    ops = ("=~", "!~", "=", "!=") if facts.family == "haproxy" else ("=~", "!~")
    return op in ("=~", "=") if value in _FIVE_XX and op in ops else None


Found = tuple[str, str, Scale, str, tuple, tuple]
"""(measure, family, scale, window text, matchers, (quantile,) or ())."""


def _ratio(node: Any) -> Found | None:
    top, bottom = _rate_sum(node[2]), _rate_sum(node[3])
    if not top or not bottom or top[2] != bottom[2]:
        return None
    facts, under = METRICS[top[0]], METRICS[bottom[0]]
    same = top[0] == bottom[0] or (under.kind == "total" and facts.family == under.family)
    if not same or not _counts(top[0], top[1]) or not _counts(bottom[0], bottom[1]):
        return None
    extra = [m for m in top[1] if m not in bottom[1]]
    if len(extra) != 1 or set(bottom[1]) - set(top[1]):
        return None
    bad = _is_error(facts, *extra[0])
    if bad is None:
        return None
    measure = "errorRate" if bad else "successRate"
    return measure, facts.family, "fraction", top[2], bottom[1], ()


def _base(node: Any) -> Found | None:
    """A base form in its natural scale."""
    if node[0] == "bin" and node[1] == "/":
        return _ratio(node)
    if node[0] == "call" and node[1] == "sum":
        counted = _rate_sum(node, funcs=("increase",))
        if counted and _counts(counted[0], counted[1]):
            return "requestCount", METRICS[counted[0]].family, "count", counted[2], counted[1], ()
        return None
    if node[0] == "call" and node[1] == "histogram_quantile" and len(node[2]) == 2:
        q, inner = number(node[2][0]), node[2][1]
        grouped = inner[0] == "call" and inner[3] == ("by", ("le",))
        summed = _rate_sum(inner, group=("le",)) if grouped else None
        if q is None or not 0 < q < 1 or not summed or METRICS[summed[0]].kind != "buckets":
            return None
        facts = METRICS[summed[0]]
        return "latency", facts.family, facts.unit, summed[2], summed[1], (q,)
    return None


_SCALED: dict[tuple[str, float | None, Scale], Scale] = {
    ("*", 100, "fraction"): "percent",
    ("*", 1000, "seconds"): "milliseconds",
    ("/", 1000, "milliseconds"): "seconds",
}


def _match(node: Any) -> Found | None:
    """Base forms under the unit changes and complements the exporters and users write."""
    base = _base(node)
    if base:
        return base
    if node[0] == "call" and node[1] == "floor" and len(node[2]) == 1 and not node[3]:
        inner = _match(node[2][0])
        if inner and inner[2] == "milliseconds":
            return (inner[0], inner[1], "ms_floor", *inner[3:])
        return None
    if node[0] != "bin":
        return None
    op, left, right = node[1], node[2], node[3]
    if op == "/" and left[0] == "bin" and left[1] == "*":  # 100 * a / b is 100 * (a / b)
        factor, top = (left[2], left[3]) if number(left[2]) is not None else (left[3], left[2])
        if number(factor) is not None:
            return _match(("bin", "*", factor, ("bin", "/", top, right)))
    pairs = [(number(right), left)] + ([(number(left), right)] if op == "*" else [])
    for factor, other in pairs if op in ("*", "/") else ():
        inner = _match(other) if factor is not None else None
        scale = _SCALED.get((op, factor, inner[2])) if inner else None
        if scale and inner:
            return (inner[0], inner[1], scale, *inner[3:])
    if op == "-" and number(left) in (1, 100):
        inner = _match(right)
        want = "fraction" if number(left) == 1 else "percent"
        if inner and inner[2] == want and inner[0] in ("errorRate", "successRate"):
            flipped = "successRate" if inner[0] == "errorRate" else "errorRate"
            return (flipped, *inner[1:])
    return None


@dataclass(frozen=True)
class Recognised:
    """A query read back: the ``Query`` (its ``unit`` the scale written; window None: a
    template variable, the metric's interval), the scale (``ms_floor``: truncated ms, which no
    ``Query`` computes), the metric family, and the fixed labels."""

    query: Query
    source: str
    scale: Scale
    nan_filter: bool = False
    labels: dict[str, str] = field(default_factory=dict)


def recognise_form(promql: str) -> Recognised | None:
    """The recognised form of ``promql`` with its unit, or None.

    Forms (any whitespace; ``sum by (le) (...)`` or ``sum(...) by (le)``; ``rate`` only):
    ``sum(rate(R{5xx}[w])) / sum(rate(R[w]))`` (error rate; the denominator may be the family's
    status-less total), the same with the complement matcher (success rate), ``1 - `` either,
    ``100 *`` or ``* 100`` either (percent), ``histogram_quantile(q, sum by (le) (rate(B[w])))``
    (latency in the histogram's unit; ``/ 1000`` gives seconds, ``1000 *`` ms, ``floor(...)``
    truncated ms), ``sum(increase(R[w]))`` (request count), each optionally ``>= 0`` (a NaN
    filter). The selector must pick out one version (see the module docs).
    """
    try:
        node = parse(promql)
    except (ValueError, IndexError):
        return None
    nan_filter = False
    if node[0] == "bin" and node[1] == ">=" and number(node[3]) == 0:
        node, nan_filter = node[2], True
    found = _match(node)
    if not found:
        return None
    measure, family, scale, window_text, matchers, extra = found
    version = _version(matchers)
    templated = "{{" in window_text  # a template variable: the metric's interval
    window = None if templated else parse_window(window_text)
    if version is None or not (templated or ((window or 0) > 0 and math.isfinite(window or 0))):
        return None
    fields: dict[str, Any] = {"measure": measure, "version": version, "window": window}
    if extra:
        fields["quantile"] = extra[0]
    if scale in ("percent", "milliseconds", "ms_floor"):
        fields["unit"] = "milliseconds" if scale == "ms_floor" else scale
    labels = {label: value for label, op, value in matchers if op == "="}
    return Recognised(Query(**fields), family, scale, nan_filter, labels)


def recognise(promql: str) -> Query | None:
    """The simulated query ``promql`` computes, in the unit it is written in, if it is a
    recognised form; else None (the caller then needs an explicit mapping). Truncated
    milliseconds are no ``Query``: None."""
    found = recognise_form(promql)
    return found.query if found and found.scale != "ms_floor" else None
