"""Prometheus as the metrics backend: gate windows as exact counts, and "no data" when unsure.

``PrometheusMetrics.observe`` answers one ``Measure``: for each version, the requests and 5xx
answers between the last scrape at or before the window's end and the scrape one window earlier
(live/queries.py says why counts and not ``increase``). Whenever the answer cannot be trusted —
Prometheus unreachable or answering an error, no samples, samples older than a few scrape
intervals, a counter that went backwards, a NaN — the result is an *empty* window with the
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
        """Counts over the window ending at the last scrape at or before epoch ``end``."""
        s = self.scrape_interval
        span = window_s + 3 * s
        expr = counter_samples(self.backend, (self.stable, self.canary), span, self.extra_labels)
        try:
            data = self.api.query(expr, end)
        except MetricsError as exc:
            return _empty(str(exc), end)
        totals, errors = _series_by_server(data.get("result", []))
        for server in (self.canary, self.stable):
            if server not in totals:
                return _empty(f"no samples of {self.backend}/{server} in Prometheus", end)
        times = sorted(totals[self.canary])
        t1 = times[-1]
        if end - t1 > 2.5 * s + 0.5:
            return _empty(f"latest sample is {end - t1:.1f} s old (scrapes stopped?)", end)
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
            try:
                n = _at(totals[server], t1) - _at(totals[server], t0)
                e = _at(errors[server], t1) - _at(errors[server], t0)
            except KeyError:
                return _empty(f"{self.backend}/{server} has no sample at a window edge", end)
            if not (math.isfinite(n) and math.isfinite(e)):
                return _empty(f"{self.backend}/{server}: NaN in the counters", end)
            if n < 0 or e < 0 or e > n:
                return _empty(f"{self.backend}/{server}: counter reset in the window", end)
            stats[server] = WindowStats(round(n), round(e))
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


def _series_by_server(result: list[dict]) -> tuple[dict, dict]:
    """{server: {timestamp: value summed over codes}} for all answers and for 5xx only."""
    totals: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    errors: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for series in result:
        server = series["metric"].get("server")
        code = series["metric"].get("code")
        for ts, value in series.get("values", []):
            v = float(value)
            totals[server][float(ts)] += v
            errors[server][float(ts)] += v if code == "5xx" else 0.0
    return totals, errors


def _at(series: dict[float, float], t: float) -> float:
    """The sample at exactly t, else the last one before it (scrape timestamps may differ)."""
    if t in series:
        return series[t]
    before = [x for x in series if x <= t]
    if not before:
        raise KeyError(t)
    return series[max(before)]
