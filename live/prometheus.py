"""Prometheus as the metrics backend: gate windows as exact counts, and "no data" when unsure.

``PrometheusMetrics.observe`` answers one ``Measure``: for each version, the requests and 5xx
answers between the last scrape at or before the window's end and the scrape one window earlier
(live/queries.py says why counts and not ``increase``; a counter reset is counted as
``increase`` counts it). Whenever the answer cannot be trusted — Prometheus unreachable or
answering an error, no samples, a series of either version stale or missing at an edge of the
window, two series for one server and code, a NaN — the result is an *empty* window with the
problem named. The controller then applies its own rules to "no data" (Argo: an Error
measurement, Flagger: a failed check); the executor never turns missing data into a success.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass

from live.queries import argo_query, counter_samples, up_query
from policies.measures import WindowStats

__all__ = ["MetricsError", "PrometheusAPI", "PrometheusMetrics", "Reading"]


class MetricsError(RuntimeError):
    """Prometheus did not answer, or answered with an error."""


class PrometheusAPI:
    """The HTTP API's instant query (``/api/v1/query``); every call has a timeout."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"PrometheusAPI({self.url!r})"

    def query(self, expr: str, at: float | None = None) -> dict:
        """``data`` of an instant query evaluated at epoch ``at`` (now if None)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode(errors="replace")
            message = f"Prometheus at {self.url} answered HTTP {exc.code}: {detail}"
            raise MetricsError(message) from None
        except (OSError, ValueError) as exc:
            raise MetricsError(f"Prometheus at {self.url} unreachable: {exc}") from None
        if body.get("status") != "success":
            raise MetricsError(f"Prometheus query failed: {body.get('error', body)}")
        return body["data"]

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        """The value of a one-element instant vector (None if empty)."""
        result = self.query(expr, at)["result"]
        return float(result[0]["value"][1]) if result else None

    def target_up(self, job: str, since: float = 0.0) -> bool:
        """True once the job's target has been scraped successfully at or after epoch
        ``since`` (a restarted Prometheus still answers its old samples for a while)."""
        if self.scalar(up_query(job)) != 1.0:
            return False
        return (self.scalar(f"timestamp({up_query(job)})") or 0.0) >= since


@dataclass(frozen=True)
class Reading:
    """One window as read: per-version stats (empty on a problem), the scrapes it spans."""

    canary: WindowStats
    stable: WindowStats
    start: float  # epoch of the earlier scrape (nan if unknown)
    end: float  # epoch of the later scrape
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _empty(problem: str, end: float) -> Reading:
    return Reading(WindowStats(), WindowStats(), math.nan, end, problem)


class PrometheusMetrics:
    """Window counts of two HAProxy servers from Prometheus (labels ``proxy``, ``server``)."""

    def __init__(
        self,
        api: PrometheusAPI,
        backend: str = "be",
        stable: str = "stable",
        canary: str = "canary",
        scrape_interval: float = 1.0,
        extra_labels: dict[str, str] | None = None,
    ) -> None:
        self.api = api
        self.backend, self.stable, self.canary = backend, stable, canary
        self.scrape_interval = scrape_interval
        self.extra_labels = dict(extra_labels or {})

    def __repr__(self) -> str:
        return (
            f"PrometheusMetrics({self.api.url!r}, backend={self.backend!r}, "
            f"scrape_interval={self.scrape_interval:g})"
        )

    def observe(self, window_s: float, end: float) -> Reading:
        """Counts over the window ending at the last scrape at or before epoch ``end``.

        Every series of *both* servers must have a sample at the window's two edges: a stale
        or missing stable series would otherwise read as 0 requests and blind the gates that
        compare the versions (SPRT, Kayenta).
        """
        s = self.scrape_interval
        span = window_s + 3 * s
        expr = counter_samples(self.backend, (self.stable, self.canary), span, self.extra_labels)
        try:
            data = self.api.query(expr, end)
        except MetricsError as exc:
            return _empty(str(exc), end)
        try:
            found = _series(data.get("result", []), self.backend)
        except ValueError as exc:
            return _empty(str(exc), end)
        for server in (self.canary, self.stable):
            if server not in found:
                return _empty(f"no samples of {self.backend}/{server} in Prometheus", end)
        times = sorted({t for codes in found.values() for v in codes.values() for t in v})
        t1 = times[-1]
        if end - t1 > 2.5 * s + 0.5:
            return _empty(f"latest sample is {end - t1:.1f} s old (scrapes stopped?)", end)
        for server in (self.canary, self.stable):
            if "5xx" not in found[server]:  # else its errors would read as 0: a healthy look
                return _empty(f"no 5xx series for {self.backend}/{server} in Prometheus", end)
        edge = t1 - window_s
        earlier = [t for t in times if edge - 1.5 * s <= t <= edge + s / 2]
        # no sample at the window's start (Prometheus just started, or missed scrapes): the
        # window is cut at its first sample inside, as the simulator cuts a window at the
        # release start and as rate() uses the samples it has
        inside = [t for t in times if t > edge]
        t0 = earlier[-1] if earlier else inside[0]
        if t0 >= t1:
            return _empty("only one sample so far", end)
        stats = {}
        for server in (self.canary, self.stable):
            counts = {}
            for code, samples in found[server].items():
                try:
                    counts[code] = _increase(samples, t0, t1, tolerance=s / 2)
                except KeyError as exc:
                    where = f"{self.backend}/{server} (code {code})"
                    return _empty(f"{where}: no sample at the window's {exc.args[0]}", end)
            stats[server] = WindowStats(round(sum(counts.values())), round(counts["5xx"]))
        return Reading(stats[self.canary], stats[self.stable], t0, t1)

    def witness(self, query, window_s: float, end: float) -> dict:
        """The Argo exporter's PromQL for ``query`` and its value at ``end`` (for the log).

        Only when the servers carry the versions' names, as the exporter's selector assumes.
        """
        if (self.stable, self.canary) != ("stable", "canary"):
            return {}
        text = argo_query(query, self.backend, window_s)
        if text is None:
            return {}
        try:
            value = self.api.scalar(text, end)
        except MetricsError as exc:
            return {"argo_query": text, "argo_error": str(exc)}
        return {"argo_query": text, "argo_value": value}


def _series(result: list[dict], backend: str) -> dict[str, dict[str, dict[float, float]]]:
    """{server: {code: {timestamp: value}}}; ``ValueError`` for a NaN or for two series of one
    server and code (two scrape jobs: their sum would count every request twice)."""
    out: dict[str, dict[str, dict[float, float]]] = defaultdict(dict)
    for series in result:
        labels = series["metric"]
        server, code = labels.get("server"), labels.get("code", "")
        if code in out[server]:
            raise ValueError(
                f"several series for {backend}/{server} code {code} (labels {labels}): "
                "select one with --prom-label (e.g. job=...)"
            )
        values = {float(t): float(v) for t, v in series.get("values", [])}
        if not all(math.isfinite(v) for v in values.values()):
            raise ValueError(f"{backend}/{server}: NaN in the counters")
        out[server][code] = values
    return {k: v for k, v in out.items() if v}


def _increase(samples: dict[float, float], t0: float, t1: float, tolerance: float) -> float:
    """How much a counter grew from its sample at t0 to its sample at t1, as Prometheus's
    ``increase()`` counts a reset: any decrease between two consecutive samples means the
    counter restarted from 0, so the sample after it is all growth. ``KeyError(t)`` when the
    series has no sample at an edge t (none within ``tolerance`` before it)."""
    times = sorted(samples)
    first = _edge(times, t0, tolerance, "start")
    last = _edge(times, t1, tolerance, "end (stale)")
    total, prev = 0.0, samples[first]
    for t in times:
        if first < t <= last:
            v = samples[t]
            total += v - prev if v >= prev else v
            prev = v
    return total


def _edge(times: list[float], t: float, tolerance: float, name: str) -> float:
    """The last sample time at or before t, if it is within ``tolerance`` of t."""
    before = [x for x in times if x <= t]
    if not before or t - before[-1] > tolerance:
        raise KeyError(name)
    return before[-1]
