"""PromQL for the simulator's queries, both ways: ``query_for`` writes, ``recognise`` reads.

A simulated ``Query(measure, version, quantile, window)`` (``policies.measures``) becomes PromQL
over one metric source; a hand-written query is mapped back when it has a recognised form. The
exporters, importers and the live executor share these forms: what is written is read back.

Sources, and how canary and stable are told apart (``layout``):

* ``nginx`` — ingress-nginx ``nginx_ingress_controller_requests{namespace, ingress, status,
  canary}`` and ``..._request_duration_seconds_bucket``. The ``canary`` label names the canary
  backend when the canary Ingress served the request and is empty otherwise, for Argo and
  Flagger alike.
* ``istio`` — ``istio_requests_total{reporter, response_code, ...}`` and
  ``istio_request_duration_milliseconds_bucket`` (ms, divided by 1000). Flagger layout: the
  workloads ``<svc>`` (canary) and ``<svc>-primary`` (``destination_workload``, as Flagger's
  own built-in metrics). Argo layout: Istio names both versions' workload after the Rollout, so
  the destination pod is matched by the ReplicaSet hash Argo passes as an argument
  (``pod=~"<svc>-{{args.canary-hash}}-.+"``, ``valueFrom.podTemplateHashValue``).
* ``haproxy`` — ``haproxy_server_http_responses_total{proxy, server, code}`` with servers
  ``canary`` and ``stable`` (reference/live-bench.md). HAProxy has no latency histogram.

Errors are 5xx; rates are fractions and latencies seconds (Argo: ``result[0] >= 0.99``) unless
``scale`` asks for Flagger's built-in units (percent, truncated milliseconds).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from policies.measures import Query
from policies.vocabulary import METRIC_SOURCES, MetricSource

__all__ = [
    "ARG_CANARY_HASH",
    "ARG_NAMESPACE",
    "ARG_SERVICE",
    "ARG_STABLE_HASH",
    "FLAGGER_INTERVAL",
    "SOURCES",
    "Recognised",
    "argo_arg",
    "query_for",
    "recognise",
    "recognise_form",
]

Source = MetricSource
Layout = Literal["argo", "flagger"]
Scale = Literal["fraction", "percent", "seconds", "milliseconds", "ms_floor", "count"]
SOURCES: tuple[MetricSource, ...] = METRIC_SOURCES

ARG_SERVICE, ARG_NAMESPACE = "service-name", "namespace"
ARG_CANARY_HASH, ARG_STABLE_HASH = "canary-hash", "stable-hash"
FLAGGER_INTERVAL = "{{ interval }}"
"""Flagger's template variable for the metric's interval (the query window)."""

_REQUESTS: dict[MetricSource, str] = {
    "nginx": "nginx_ingress_controller_requests",
    "istio": "istio_requests_total",
    "haproxy": "haproxy_server_http_responses_total",
}
_BUCKETS: dict[MetricSource, str] = {
    "nginx": "nginx_ingress_controller_request_duration_seconds_bucket",
    "istio": "istio_request_duration_milliseconds_bucket",
}
_STATUS: dict[MetricSource, str] = {"nginx": "status", "istio": "response_code", "haproxy": "code"}
_SOURCE_OF = {name: src for table in (_REQUESTS, _BUCKETS) for src, name in table.items()}
_FIVE_XX = {"5..", "5.*", "5.+", "^5.*", "^5..$", "^5.*$", r"5\d\d", "5[0-9][0-9]", "5xx"}


def argo_arg(name: str) -> str:
    """``{{args.name}}``: an Argo AnalysisTemplate argument, resolved when the run starts."""
    return "{{args." + name + "}}"


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


# ----------------------------------------------------------------------------- writing


def _selector(source: str, layout: str, version: str, service: str, namespace: str, hashes):
    if source == "nginx":
        canary = 'canary!=""' if version == "canary" else 'canary=""'
        return f'namespace="{namespace}", ingress="{service}", {canary}'
    if source == "istio":
        head = f'reporter="destination", destination_workload_namespace="{namespace}", '
        if layout == "flagger":
            suffix = "" if version == "canary" else "-primary"
            return head + f'destination_workload="{service}{suffix}"'
        return head + f'pod=~"{service}-{hashes[0 if version == "canary" else 1]}-.+"'
    if source == "haproxy":
        return f'proxy="{service}", server="{version}"'
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
    ``scale``: percent, milliseconds or ``ms_floor`` (truncated ms) instead of the natural unit.
    ``nan_filter`` appends ``>= 0``: a NaN (0/0, no traffic) is dropped, so Argo sees an empty
    result and reports Error, as the simulator does. ``ValueError``: the source cannot measure it.
    """
    if window is None:
        window = query.window
    if window is None:
        raise ValueError("the query has no window: pass the metric's interval")
    w = window if isinstance(window, str) else format_window(window)
    sel = _selector(source, layout, query.version, service, namespace, hashes)
    source = cast(MetricSource, source)  # _selector raised ValueError for any other source
    status = _STATUS[source]
    if query.measure in ("errorRate", "successRate"):
        op = "=" if source == "haproxy" else "=~"
        bad = "5xx" if source == "haproxy" else "5.."
        if query.measure == "successRate":
            op = "!=" if op == "=" else "!~"
        metric = _REQUESTS[source]
        text = (
            f'sum(rate({metric}{{{sel}, {status}{op}"{bad}"}}[{w}]))'
            f" / sum(rate({metric}{{{sel}}}[{w}]))"
        )
        natural: Scale = "fraction"
    elif query.measure == "requestCount":
        text, natural = f"sum(increase({_REQUESTS[source]}{{{sel}}}[{w}]))", "count"
    else:
        if source not in _BUCKETS:
            raise ValueError(f"{source} exports no latency histogram: no latency quantile")
        text = (
            f"histogram_quantile({query.quantile!r},"
            f" sum by (le) (rate({_BUCKETS[source]}{{{sel}}}[{w}])))"
        )
        natural = "milliseconds" if source == "istio" else "seconds"
    scale = scale or ("seconds" if natural == "milliseconds" else natural)
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


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Recognised:
    """A query read back: the ``Query`` (window None: a template variable, the metric's
    interval), the unit it was written in, and its fixed labels."""

    query: Query
    source: str
    scale: Scale
    nan_filter: bool = False
    labels: dict[str, str] = field(default_factory=dict)


_TOKEN = re.compile(
    r"\s*(?:(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')|(?P<range>\[[^\]]*\])"
    r"|(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)|(?P<op>=~|!~|==|!=|>=|<=|[-+*/<>=(){},])"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*))"
)


_LEVELS = (("==", "!=", ">=", "<=", ">", "<"), ("+", "-"), ("*", "/"))


class _Parser:
    """A PromQL subset: selectors, ranges, calls, aggregations with by, + - * /, comparisons."""

    def __init__(self, text: str) -> None:
        self.toks: list[tuple[str, str]] = []
        self.i, pos, text = 0, 0, text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise ValueError(f"cannot read PromQL at {text[pos : pos + 20]!r}")
            kind = cast(str, match.lastgroup)  # every alternative of _TOKEN is a named group
            self.toks.append((kind, match.group(kind)))
            pos = match.end()

    def peek(self, value: str | None = None, kind: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        k, v = self.toks[self.i]
        return (value is None or v == value) and (kind is None or k == kind)

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        if not self.peek(value, kind):
            raise ValueError(f"expected {value or kind}")
        self.i += 1
        return self.toks[self.i - 1][1]

    def skip(self, value: str) -> bool:
        found = self.peek(value)
        self.i += found
        return found

    def parse(self) -> Any:
        node = self.expr()
        if self.i != len(self.toks):
            raise ValueError("trailing tokens")
        return node

    def expr(self, level: int = 0) -> Any:
        """Binary operators by precedence: comparisons, then + -, then * /."""
        if level == len(_LEVELS):
            if self.peek("-"):
                self.take()
                return ("bin", "*", ("num", -1.0), self.expr(level))
            return self.primary()
        left = self.expr(level + 1)
        while any(self.peek(o) for o in _LEVELS[level]):
            op = self.take()
            if self.peek("bool"):
                raise ValueError("bool comparisons are not a recognised form")
            left = ("bin", op, left, self.expr(level + 1))
        return left

    def primary(self) -> Any:
        if self.peek(kind="num"):
            return ("num", float(self.take()))
        if self.peek("("):
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if self.peek("{"):
            return self.selector("")
        name = self.take(kind="ident")
        by = None
        if self.peek("by") or self.peek("without"):
            by = self.grouping()
        if self.peek("("):
            self.take()
            args = [self.expr()] if not self.peek(")") else []
            while self.skip(","):
                args.append(self.expr())
            self.take(")")
            if self.peek("by") or self.peek("without"):
                by = self.grouping()
            return ("call", name, tuple(args), by)
        return self.selector(name)

    def grouping(self) -> tuple[str, tuple[str, ...]]:
        kind, labels = self.take(), []
        self.take("(")
        while not self.peek(")"):
            labels.append(self.take(kind="ident"))
            self.skip(",")
        self.take(")")
        return kind, tuple(sorted(labels))

    def selector(self, metric: str) -> Any:
        matchers = []
        if self.peek("{"):
            self.take()
            while not self.peek("}"):
                label = self.take(kind="ident")
                op = self.take()
                if op not in ("=", "!=", "=~", "!~"):
                    raise ValueError(f"bad matcher operator {op}")
                raw = self.take(kind="str")[1:-1]
                value = re.sub(r"\\(.)", r"\1", raw)
                if label == "__name__" and op == "=":
                    metric = value
                else:
                    matchers.append((label, op, value))
                self.skip(",")
            self.take("}")
        window = self.take(kind="range")[1:-1].strip() if self.peek(kind="range") else None
        return ("sel", metric, tuple(sorted(matchers)), window)


def _num(node: Any) -> float | None:
    return node[1] if node[0] == "num" else None


def _rate_sum(node: Any, funcs=("rate",), group=()) -> tuple[str, tuple, str] | None:
    """``sum(rate(m{...}[w]))`` (grouped only by ``group`` or labels the matchers fix)."""
    if node[0] != "call" or node[1] != "sum" or len(node[2]) != 1:
        return None
    inner = node[2][0]
    if inner[0] != "call" or inner[1] not in funcs or len(inner[2]) != 1 or inner[3]:
        return None
    sel = inner[2][0]
    if sel[0] != "sel" or sel[3] is None:
        return None
    if node[3] is not None:
        kind, labels = node[3]
        fixed = {label for label, op, _ in sel[2] if op == "="} | set(group)
        if kind != "by" or not set(labels) <= fixed:
            return None
    return sel[1], sel[2], sel[3]


def _is_5xx(source: str, op: str, value: str) -> bool | None:
    """True for a 5xx matcher, False for its negation (HAProxy's code="5xx" is a plain value)."""
    ops = ("=~", "!~", "=", "!=") if source == "haproxy" else ("=~", "!~")
    return op in ("=~", "=") if value in _FIVE_XX and op in ops else None


def _tag(value: str) -> str | None:
    """canary/stable from a name: a ReplicaSet-hash argument or a -canary/-stable/-primary part."""
    if argo_arg(ARG_CANARY_HASH) in value or re.search(r"-canary(\b|-|$)", value):
        return "canary"
    if argo_arg(ARG_STABLE_HASH) in value or re.search(r"-(stable|primary)(\b|-|$)", value):
        return "stable"
    return None


def _version(source: str, matchers: tuple) -> str | None:
    """Which version a selector's labels pick out (None: both, or unknown)."""
    found = set()
    for label, op, value in matchers:
        if op not in ("=", "=~", "!="):
            continue
        if source == "nginx" and label == "canary":
            if (op, value) in (("!=", ""), ("=~", ".+")) or (op == "=" and value):
                found.add("canary")
            elif (op, value) == ("=", ""):
                found.add("stable")
        elif source == "istio" and label in ("pod", "destination_service_name"):
            found.add(_tag(value) or "")
        elif source == "istio" and label == "destination_service":
            found.add(_tag(value.split(".")[0]) or "")  # a host name: its first label
        elif source == "istio" and label == "destination_workload":
            found.add("stable" if value.endswith("-primary") else "canary")
        elif label in ("destination_canonical_revision", "destination_version", "server"):
            found.add(value if value in ("canary", "stable") else "")
    found.discard("")
    return found.pop() if len(found) == 1 else None


def _base(node: Any) -> tuple[str, MetricSource, Scale, str, tuple, tuple] | None:
    """(measure, source, scale, window, labels, extra) of a base form, scale natural."""
    if node[0] == "bin" and node[1] == "/":
        top, bottom = _rate_sum(node[2]), _rate_sum(node[3])
        if not top or not bottom or top[0] != bottom[0] or top[2] != bottom[2]:
            return None
        source = _SOURCE_OF.get(top[0])
        if source is None or top[0] != _REQUESTS.get(source):
            return None
        extra = [m for m in top[1] if m not in bottom[1]]
        if len(extra) != 1 or set(bottom[1]) - set(top[1]) or extra[0][0] != _STATUS[source]:
            return None
        bad = _is_5xx(source, extra[0][1], extra[0][2])
        if bad is None:
            return None
        return "errorRate" if bad else "successRate", source, "fraction", top[2], bottom[1], ()
    if node[0] == "call" and node[1] == "sum":
        counted = _rate_sum(node, funcs=("increase",))
        source = _SOURCE_OF.get(counted[0]) if counted else None
        if counted and source and counted[0] == _REQUESTS[source]:
            return "requestCount", source, "count", counted[2], counted[1], ()
        return None
    if node[0] == "call" and node[1] == "histogram_quantile" and len(node[2]) == 2:
        q, inner = _num(node[2][0]), node[2][1]
        grouped = inner[0] == "call" and inner[3] == ("by", ("le",))
        summed = _rate_sum(inner, group=("le",)) if grouped else None
        if q is None or not 0 < q < 1 or not summed:
            return None
        source = _SOURCE_OF.get(summed[0])
        if source is None or summed[0] != _BUCKETS.get(source):
            return None
        scale: Scale = "milliseconds" if source == "istio" else "seconds"
        return "latency", source, scale, summed[2], summed[1], (q,)
    return None


_SCALED: dict[tuple[str, float | None, Scale], Scale] = {
    ("*", 100, "fraction"): "percent",
    ("*", 1000, "seconds"): "milliseconds",
    ("/", 1000, "milliseconds"): "seconds",
}


def _match(node: Any) -> tuple[str, MetricSource, Scale, str, tuple, tuple] | None:
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
    pairs = [(_num(right), left)] + ([(_num(left), right)] if op == "*" else [])
    for factor, other in pairs if op in ("*", "/") else ():
        inner = _match(other) if factor is not None else None
        scale = _SCALED.get((op, factor, inner[2])) if inner else None
        if scale and inner:
            return (inner[0], inner[1], scale, *inner[3:])
    if op == "-" and _num(left) in (1, 100):
        inner = _match(right)
        want = "fraction" if _num(left) == 1 else "percent"
        if inner and inner[2] == want and inner[0] in ("errorRate", "successRate"):
            flipped = "successRate" if inner[0] == "errorRate" else "errorRate"
            return (flipped, *inner[1:])
    return None


def recognise_form(promql: str) -> Recognised | None:
    """The recognised form of ``promql`` with its unit, or None.

    Forms (any whitespace; ``sum by (le) (...)`` or ``sum(...) by (le)``; ``rate`` only,
    since ``irate`` reads two samples, not the window): ``sum(rate(R{5xx}[w])) /
    sum(rate(R[w]))`` (error rate), the same with ``!~`` (success rate), ``1 - `` either,
    ``100 *`` either (percent), ``histogram_quantile(q, sum by (le) (rate(B[w])))`` (latency;
    Istio's in ms, ``/ 1000`` gives seconds, ``1000 *`` ms, ``floor(...)`` truncated ms),
    ``sum(increase(R[w]))`` (request count), each optionally ``>= 0`` (a NaN filter). The
    selector must pick out one version (see the module docs).
    """
    try:
        node = _Parser(promql).parse()
    except (ValueError, IndexError):
        return None
    nan_filter = False
    if node[0] == "bin" and node[1] == ">=" and _num(node[3]) == 0:
        node, nan_filter = node[2], True
    found = _match(node)
    if not found:
        return None
    measure, source, scale, window_text, matchers, extra = found
    version = _version(source, matchers)
    templated = "{{" in window_text  # a template variable: the metric's interval
    window = None if templated else parse_window(window_text)
    if version is None or not (templated or (window or 0) > 0):
        return None
    fields: dict[str, Any] = {"measure": measure, "version": version, "window": window}
    if extra:
        fields["quantile"] = extra[0]
    labels = {label: value for label, op, value in matchers if op == "="}
    return Recognised(Query(**fields), source, scale, nan_filter, labels)


def recognise(promql: str) -> Query | None:
    """The simulated query ``promql`` computes, if it is a recognised form in natural units
    (fractions, seconds, counts); else None (the caller then needs an explicit mapping)."""
    found = recognise_form(promql)
    return found.query if found and found.scale in ("fraction", "seconds", "count") else None
