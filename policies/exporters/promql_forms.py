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

Any other counter (``_total``, ``_count``) with a status label (``code``, ``status``,
``status_code``, ``response_code``, ``nginx_status_range``...) is an application's, and any
histogram in seconds or ms by its name's suffix. Which version a selector measures is read by
``promql_versions``: one, or both together (``all``). ``irate`` is the rate over the last scrape
interval (``Query.irate``); 4xx, 404 and 4xx+5xx matchers are kept as ``Query.errors``.
Not recognised: means of a latency (Flagger's nginx and skipper request-duration, a
``_sum / _count`` ratio: no quantile), a quantile of one bucket (``le="+Inf"``: NaN), a latency
of both versions together, and Knative's revision clusters (a revision name does not say which
version it is).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from policies.exporters.promql_parse import number, parse
from policies.exporters.promql_versions import (
    ARG_CANARY_HASH,
    ARG_NAMESPACE,
    ARG_SERVICE,
    ARG_STABLE_HASH,
    GENERIC_FAMILIES,
    STATUS_LABELS,
    argo_arg,
    version_of,
)
from policies.measures import ErrorClass, Query

__all__ = [
    "ARG_CANARY_HASH",
    "ARG_NAMESPACE",
    "ARG_SERVICE",
    "ARG_STABLE_HASH",
    "METRICS",
    "STATUS_LABELS",
    "MetricFacts",
    "Recognised",
    "Scale",
    "argo_arg",
    "form_notes",
    "parse_window",
    "recognise",
    "recognise_form",
]

Scale = Literal["fraction", "percent", "seconds", "milliseconds", "ms_floor", "count"]


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


# ----------------------------------------------------------------------------- forms


def _facts(metric: str) -> MetricFacts | None:
    """A known metric's facts, else an application's by Prometheus's naming conventions: a
    ``_total`` or ``_count`` counter, or a ``_bucket`` histogram in its name's unit."""
    if metric in METRICS:
        return METRICS[metric]
    if metric.endswith(("_total", "_count")):
        return MetricFacts("application", "requests")
    unit = re.search(r"_(seconds|milliseconds|ms)_bucket$", metric)
    if unit:
        return _buckets("application", "seconds" if unit.group(1) == "seconds" else "milliseconds")
    return None


@dataclass(frozen=True)
class _Sum:
    """``sum(f(metric{matchers}[window]))``, grouped ``by``."""

    metric: str
    matchers: tuple
    window: str
    func: str
    by: tuple = ()


def _rate_sum(node: Any, funcs=("rate", "irate"), group=()) -> _Sum | None:
    """``sum(rate(m{...}[w]))`` (or irate), grouped only by ``group`` or labels the selector
    constrains (``=`` or ``=~``: the version's series)."""
    if node[0] != "call" or node[1] != "sum" or len(node[2]) != 1:
        return None
    inner = node[2][0]
    if inner[0] != "call" or inner[1] not in funcs or len(inner[2]) != 1 or inner[3]:
        return None
    sel = inner[2][0]
    if sel[0] != "sel" or sel[3] is None or _facts(sel[1]) is None:
        return None
    labels: tuple = ()
    if node[3] is not None:
        kind, labels = node[3]
        fixed = {label for label, op, _ in sel[2] if op in ("=", "=~")} | set(group)
        if kind != "by" or not set(labels) <= fixed:
            return None
    return _Sum(sel[1], sel[2], sel[3], inner[1], tuple(labels))


def _counts(metric: str, matchers: tuple) -> bool:
    """Whether the series count requests: a counter, or a histogram's ``le="+Inf"`` bucket."""
    facts = _facts(metric)
    return facts is not None and (facts.kind != "buckets" or _INF in matchers)


_CLASSES: dict[str, ErrorClass] = {
    **dict.fromkeys(_FIVE_XX, "5xx"),
    **dict.fromkeys(("4..", "4.*", "4.+", "^4.*", r"4\d\d", "4[0-9][0-9]", "4xx"), "4xx"),
    "404": "404",
    **dict.fromkeys(
        ("[45]..", "[45].*", "[4-5]..", "[4-5].*", "[45]xx", "4..|5..", "5..|4..", "4xx|5xx"),
        "4xx+5xx",
    ),
}
"""Status matcher values and the responses they keep."""
_CLASS_LABELS = {"nginx_status_range", "status_class"}
"""Labels holding a class ("5xx") rather than a code: ``=`` matches a class there."""


def _is_error(facts: MetricFacts, label: str, op: str, value: str) -> tuple[bool, str] | None:
    """(True for a matcher that keeps the errors, False for one that keeps the rest; the
    class of responses counted as errors), or None for no status matcher."""
    if label != facts.status and not (facts.family in GENERIC_FAMILIES and label in STATUS_LABELS):
        return None
    if label == "classification":  # Linkerd: failure (5xx, gRPC error) or success
        kept = {("=", "failure"): True, ("!=", "success"): True}
        kept |= {("!=", "failure"): False, ("=", "success"): False}
        bad = kept.get((op, value))
        return None if bad is None else (bad, "5xx")
    if label == "envoy_response_code_class":
        klass = {"5": "5xx", "4": "4xx"}.get(value)
        return None if klass is None or op not in ("=", "=~") else (True, klass)
    klass = _CLASSES.get(value)
    literal = facts.family == "haproxy" or label in _CLASS_LABELS or value == "404"
    if klass is None or (op in ("=", "!=") and not literal):
        return None
    return op in ("=~", "="), klass


@dataclass(frozen=True)
class _Found:
    """A form matched: its measure, family, scale, window text, matchers and the rest."""

    measure: str
    family: str
    scale: Scale
    window: str
    matchers: tuple
    quantile: float | None = None
    irate: bool = False
    errors: str = "5xx"
    min_rate: float | None = None
    nan_filter: bool = False


_ZERO = ("call", "vector", (("num", 0.0),), None)


def _ratio(node: Any) -> _Found | None:
    top, bottom, min_rate = node[2], node[3], None
    if top[0] == "bin" and top[1] == "or" and top[3] == _ZERO:  # no error series yet: 0
        top = top[2]
    if bottom[0] == "call" and bottom[1] == "clamp_min" and len(bottom[2]) == 2:
        bottom, min_rate = bottom[2][0], number(bottom[2][1])
        if not min_rate or min_rate <= 0:
            return None
    t, b = _rate_sum(top), _rate_sum(bottom)
    if not t or not b or (t.window, t.func, t.by) != (b.window, b.func, b.by):
        return None
    facts, under = _facts(t.metric), _facts(b.metric)
    if facts is None or under is None:
        return None
    same = t.metric == b.metric or (under.kind == "total" and facts.family == under.family)
    extra = [m for m in t.matchers if m not in b.matchers]
    if not same or len(extra) != 1 or set(b.matchers) - set(t.matchers):
        return None
    found = _is_error(facts, *extra[0])
    if found is None or (min_rate and not found[0]):
        return None
    # summed buckets weigh each request by its buckets: exact only for responses the world
    # never gives (its 4xx: 0 of any weighting)
    if found[1] not in ("4xx", "404") and not (
        _counts(t.metric, t.matchers) and _counts(b.metric, b.matchers)
    ):
        return None
    measure = "errorRate" if found[0] else "successRate"
    return _Found(
        measure,
        facts.family,
        "fraction",
        t.window,
        b.matchers,
        irate=t.func == "irate",
        errors=found[1],
        min_rate=min_rate,
    )


def _base(node: Any) -> _Found | None:
    """A base form in its natural scale."""
    if node[0] == "bin" and node[1] == "/":
        return _ratio(node)
    if node[0] == "call" and node[1] == "sum":
        counted = _rate_sum(node, funcs=("increase",))
        if counted and _counts(counted.metric, counted.matchers):
            family = METRICS[counted.metric].family if counted.metric in METRICS else "application"
            return _Found("requestCount", family, "count", counted.window, counted.matchers)
        return None
    if node[0] == "call" and node[1] == "histogram_quantile" and len(node[2]) == 2:
        q, inner = number(node[2][0]), node[2][1]
        grouped = inner[0] == "call" and inner[3] == ("by", ("le",))
        summed = _rate_sum(inner, group=("le",)) if grouped else None
        facts = _facts(summed.metric) if summed else None
        if q is None or not 0 < q < 1 or not summed or not facts or facts.kind != "buckets":
            return None
        if _INF in summed.matchers:  # one bucket: Prometheus gives NaN
            return None
        return _Found(
            "latency",
            facts.family,
            facts.unit,
            summed.window,
            summed.matchers,
            q,
            irate=summed.func == "irate",
        )
    return None


_SCALED: dict[tuple[str, float | None, Scale], Scale] = {
    ("*", 100, "fraction"): "percent",
    ("*", 1000, "seconds"): "milliseconds",
    ("/", 1000, "milliseconds"): "seconds",
}


def _guarded(node: Any) -> _Found | None:
    """``X and on() (sum(rate(R[w])) > 0)`` or ``X unless sum(rate(R[w])) == 0``: X only
    while there is traffic, else an empty vector, which is what a NaN filter does to a window
    without requests."""
    right, want = node[3], ">" if node[1].startswith("and") else "=="
    if right[0] != "bin" or right[1] != want or number(right[3]) != 0:
        return None
    inner = _match(node[2])
    if inner is None or _rate_sum(right[2]) is None:
        return None
    return replace(inner, nan_filter=True)


def _match(node: Any) -> _Found | None:
    """Base forms under the unit changes and complements the exporters and users write."""
    base = _base(node)
    if base:
        return base
    if node[0] == "call" and node[1] == "floor" and len(node[2]) == 1 and not node[3]:
        inner = _match(node[2][0])
        if inner and inner.scale == "milliseconds":
            return replace(inner, scale="ms_floor")
        return None
    if node[0] != "bin":
        return None
    op, left, right = node[1], node[2], node[3]
    if op in ("and", "and on()", "unless", "unless on()"):
        return _guarded(node)
    if op == "/" and left[0] == "bin" and left[1] == "*":  # 100 * a / b is 100 * (a / b)
        factor, top = (left[2], left[3]) if number(left[2]) is not None else (left[3], left[2])
        if number(factor) is not None:
            return _match(("bin", "*", factor, ("bin", "/", top, right)))
    pairs = [(number(right), left)] + ([(number(left), right)] if op == "*" else [])
    for factor, other in pairs if op in ("*", "/") else ():
        inner = _match(other) if factor is not None else None
        scale = _SCALED.get((op, factor, inner.scale)) if inner else None
        if scale and inner:
            return replace(inner, scale=scale)
    if op == "-" and number(left) in (1, 100):
        inner = _match(right)
        want = "fraction" if number(left) == 1 else "percent"
        if inner and inner.scale == want and inner.measure in ("errorRate", "successRate"):
            if inner.min_rate and inner.measure == "successRate":
                return None  # 1 - ok/clamp_min(total) is no rate the simulator computes
            flipped = "successRate" if inner.measure == "errorRate" else "errorRate"
            return replace(inner, measure=flipped)
    return None


@dataclass(frozen=True)
class Recognised:
    """A query read back: the ``Query`` (its ``unit`` the scale written; window None: a
    template variable, the metric's interval), the scale (``ms_floor``: truncated ms, which no
    ``Query`` computes), the metric family, the fixed labels, and the labels that say which
    version it measures (``version_from``)."""

    query: Query
    source: str
    scale: Scale
    nan_filter: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    version_from: str = ""


def recognise_form(promql: str) -> Recognised | None:
    """The recognised form of ``promql`` with its unit, or None.

    Forms (any whitespace; ``sum by (le) (...)`` or ``sum(...) by (le)``; ``rate`` or
    ``irate``): ``sum(rate(R{5xx}[w])) / sum(rate(R[w]))`` (error rate; the denominator may be
    the family's status-less total, ``clamp_min(..., r)``, the numerator ``... or vector(0)``;
    both sides may be grouped ``by`` the labels that pick the series), the same with the
    complement matcher (success rate), 4xx, 404 or 4xx+5xx in place of 5xx, ``1 - `` either,
    ``100 *`` or ``* 100`` either (percent), ``histogram_quantile(q, sum by (le) (rate(B[w])))``
    (latency in the histogram's unit; ``/ 1000`` gives seconds, ``1000 *`` ms, ``floor(...)``
    truncated ms; ``and on() (sum(rate(R[w])) > 0)``: no value without traffic),
    ``sum(increase(R[w]))`` (request count), each optionally ``>= 0`` (a NaN filter). R is a
    known family's counter or any application's (``_total``, ``_count``, with a status label),
    B any histogram in seconds or ms by its name. The selector must name what it measures:
    one version, or both (``all``; see the module docs).
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
    picked = version_of(found.matchers, found.family)
    templated = "{{" in found.window  # a template variable: the metric's interval
    window = None if templated else parse_window(found.window)
    if picked is None or not (templated or ((window or 0) > 0 and math.isfinite(window or 0))):
        return None
    if picked[0] == "all" and found.measure == "latency":
        return None  # no quantile of both versions together (``Query``)
    fields: dict[str, Any] = {"measure": found.measure, "version": picked[0], "window": window}
    if found.irate:  # the range read as irate's lookback, the window its last scrape interval
        fields["irate"], fields["window"] = window, None
        if templated:
            return None
    if found.quantile is not None:
        fields["quantile"] = found.quantile
    if found.scale in ("percent", "milliseconds", "ms_floor"):
        fields["unit"] = "milliseconds" if found.scale == "ms_floor" else found.scale
    if found.errors != "5xx":
        fields["errors"] = found.errors
    if found.min_rate:
        fields["min_rate"] = found.min_rate
    labels = {label: value for label, op, value in found.matchers if op == "="}
    nan_filter = nan_filter or found.nan_filter
    query = Query(**fields)
    return Recognised(query, found.family, found.scale, nan_filter, labels, picked[1])


def recognise(promql: str) -> Query | None:
    """The simulated query ``promql`` computes, in the unit it is written in, if it is a
    recognised form; else None (the caller then needs an explicit mapping). Truncated
    milliseconds are no ``Query``: None."""
    found = recognise_form(promql)
    return found.query if found and found.scale != "ms_floor" else None


def form_notes(found: Recognised) -> list[str]:
    """What an importer should say about a recognised query beyond its measure: the version
    read from its labels when they name both or an application's, how irate, 4xx and
    clamp_min are modelled."""
    query, notes = found.query, []
    if query.version == "all" or found.source in GENERIC_FAMILIES:
        what = (
            "both versions together (the whole Service)"
            if query.version == "all"
            else (f"the {query.version}")
        )
        notes.append(f"its selector ({found.version_from}) measures {what}")
    if query.irate is not None:
        notes.append(
            "irate reads the last two samples of its range: simulated as the rate over the last"
            " scrape interval (the world's scrapeInterval), not over the range"
        )
    if query.errors in ("4xx", "404"):
        full = "100 %" if query.unit == "percent" else "1"
        notes.append(
            f"it counts {query.errors} responses, which the simulated world never gives (its"
            f" failures are 5xx): its value is {full if query.measure == 'successRate' else 0}"
            " whenever there is traffic"
        )
    elif query.errors == "4xx+5xx":
        notes.append(
            "it counts 4xx responses as failures too; the simulated world gives none, so it"
            " counts its 5xx"
        )
    if query.min_rate:
        notes.append(
            f"clamp_min(..., {query.min_rate:g}): below {query.min_rate:g} request/s the rate's"
            " denominator is that minimum, so a window without traffic gives 0, not NaN"
        )
    return notes
