"""What a gate can measure, and what the world hands back: the contract between policies and sim.

A gate never sees requests, only what a real metrics query would return for a window: per
version, the request and error counts and the latency quantiles it asked for (DESIGN §5,
"Gate measurements see only what a real gate sees").

A window without requests is one of two things to Prometheus, and Argo treats them apart
(``metricproviders/prometheus/prometheus.go`` hands the result vector to the condition):

* the version's series exist (its pods served before, so its counters exist) but saw no request
  in the window: a ratio is 0/0 = **NaN**, and the condition is judged on NaN (a comparison is
  false: ``result[0] >= 0.95`` makes the measurement Failed unless ``isNaN(...)`` guards it);
* no series at all (the version never served, its counters were never created): the query
  returns an **empty vector**, and reading ``result[0]`` is an Error measurement unless
  ``len(result) == 0 || ...`` guards it.

``WindowStats.has_series`` says which; its default ``None`` (the engine does not say) keeps the
older rule: a window whose value is NaN counts as an empty vector, a request count as 0.

A query states its unit (``Query.unit``): a rate as a fraction (the default) or in percent, a
latency in seconds (the default) or milliseconds, as the PromQL it stands for returns it (Linkerd's
and Flagger's success rates are percent, Istio's and Linkerd's latencies milliseconds).
``Query.evaluate`` returns the value in that unit, so a condition or threshold is compared in the
query's own scale and an imported condition stays as the manifest wrote it.

A query may also filter NaN itself: ``(... ) >= 0`` drops a NaN sample, so 0/0 becomes an
empty vector too. ``Query.nan_filter`` says whether the query has that filter: the exporters
write it when it is set (the default for policies written here) and the importers set it from
the manifest's query, so the simulator judges exactly what the executor will be given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from policies.base import Model
from policies.durations import Duration

__all__ = [
    "LAST_SCRAPE_S",
    "UNITS",
    "ErrorClass",
    "MeasureName",
    "Observation",
    "Query",
    "QueryVersion",
    "Unit",
    "VersionName",
    "WindowStats",
]

MeasureName = Literal["successRate", "errorRate", "latency", "requestCount"]
VersionName = Literal["canary", "stable"]
QueryVersion = Literal["canary", "stable", "all"]
"""What a query selects: one version, or ``all``, both together (the whole Service)."""
ErrorClass = Literal["5xx", "4xx", "404", "4xx+5xx"]
"""The responses a rate counts as errors. The simulated world's failures are 5xx and it answers
no 4xx: a 4xx (or 404) rate is 0 wherever there is traffic, and 4xx+5xx is its 5xx rate."""
LAST_SCRAPE_S = 0.001
"""The window of an ``irate`` query. Prometheus's irate is the rate between the last two samples
in its range, i.e. over the last scrape interval; the world measures whole scrape slots, at
least one, so a window shorter than any scrape interval is exactly that last interval."""
Unit = Literal["fraction", "percent", "seconds", "milliseconds"]
"""The scale a query's value is in: rates as fractions or percent, latencies in s or ms."""

UNITS: dict[str, tuple[Unit, ...]] = {
    "successRate": ("fraction", "percent"),
    "errorRate": ("fraction", "percent"),
    "latency": ("seconds", "milliseconds"),
    "requestCount": (),
}
"""The units each measure can be given in, the natural one (the default) first."""
_FACTOR: dict[str, float] = {"percent": 100.0, "milliseconds": 1000.0}


MEAN = -1.0
"""The ``WindowStats.latency`` key of the window's mean latency (no quantile is negative):
Flagger's request-duration on nginx and skipper is the canary's mean."""


@dataclass(slots=True)
class WindowStats:
    """One version's traffic in a query window, as a metrics backend would report it.

    Read-only by convention, not ``frozen``: a frozen dataclass's ``__init__`` costs about five
    times more, and the engine builds these (and Observations) for every gate measurement."""

    requests: int = 0
    errors: int = 0
    latency: Mapping[float, float] = field(default_factory=dict)  # quantile (or MEAN) -> s
    has_series: bool | None = None
    """Whether the version's series exist at the window's end, i.e. one of its pods served a
    request before then: True -> a window without requests gives NaN (0/0); False -> an empty
    result vector; None (unknown) -> a NaN value is taken as an empty vector, a count as 0."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan


@dataclass(slots=True)
class Observation:
    """Both versions' stats over ``[start, end]``; ``series`` holds sub-interval observations
    for judges that compare per-interval values (Kayenta). Read-only, as WindowStats."""

    start: float
    end: float
    canary: WindowStats
    stable: WindowStats
    series: tuple[Observation, ...] = ()

    def of(self, version: QueryVersion) -> WindowStats:
        """One version's stats, or (``all``) both versions' requests and errors together; the
        latency of both together is no function of each one's quantiles, so it is left out."""
        if version != "all":
            return self.canary if version == "canary" else self.stable
        c, s = self.canary, self.stable
        series = (
            None
            if c.has_series is None and s.has_series is None
            else bool(c.has_series or s.has_series)
        )
        return WindowStats(c.requests + s.requests, c.errors + s.errors, {}, series)


class Query(Model):
    """A simulated metrics query: a measure of one version over a window.

    These are the forms the exporters turn into PromQL (success rate, error rate, latency
    quantile, request count); ``window`` defaults to the metric's interval. ``unit``: the scale
    of the value (None: the natural one, a fraction or seconds; a count has none).
    """

    measure: MeasureName
    version: QueryVersion = "canary"
    quantile: float = Field(0.99, gt=0, lt=1)
    window: Duration | None = None
    unit: Unit | None = None
    irate: Duration | None = None
    """The range of an ``irate(...[range])`` query (None: ``rate``): irate reads the last two
    samples in it, so the measured ``window`` is the last scrape interval (``LAST_SCRAPE_S``)."""
    errors: ErrorClass = "5xx"
    """The responses a success or error rate counts as errors (see ``ErrorClass``)."""
    min_rate: float | None = Field(None, gt=0)
    """``clamp_min(total, r)``: the rate's denominator is at least ``r`` requests per second, so
    a window with little or no traffic gives a small rate (0 without traffic), never NaN."""
    nan_filter: bool = True
    """The query drops a NaN sample (``(...) >= 0``): 0/0 is an empty vector (an Error), never
    judged as NaN. Exported queries carry the filter when this is set; an imported query
    without it sets it False, and a window with no traffic is then judged on NaN."""

    @model_validator(mode="before")
    @classmethod
    def _natural_unit(cls, data: Any) -> Any:
        """The natural unit is no unit: ``unit: fraction`` and the default are one query."""
        if isinstance(data, dict) and data.get("unit") is not None:
            units = UNITS.get(str(data.get("measure")), ())
            if units and data["unit"] == units[0]:
                data = {k: v for k, v in data.items() if k != "unit"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _irate_window(cls, data: Any) -> Any:
        """An irate query is measured over the last scrape interval, whatever its range."""
        if isinstance(data, dict) and data.get("irate") is not None:
            data = {**data, "window": LAST_SCRAPE_S}
        return data

    @model_validator(mode="after")
    def _window_positive(self) -> Query:
        if self.window is not None and self.window <= 0:
            raise ValueError("window must be > 0")
        if self.version == "all" and self.measure == "latency":
            raise ValueError(
                "a latency quantile of both versions together is not modelled: the world hands"
                " back each version's quantiles, and the quantile of their mixture is no"
                " function of them"
            )
        if (self.errors != "5xx" or self.min_rate) and self.measure not in (
            "errorRate",
            "successRate",
        ):
            raise ValueError("errors and minRate belong to a success or error rate")
        if self.unit is not None and self.unit not in UNITS[self.measure]:
            allowed = ", ".join(UNITS[self.measure]) or "none (a count)"
            raise ValueError(f"unit {self.unit} is not one of {self.measure}'s: {allowed}")
        return self

    @property
    def scale(self) -> Unit | None:
        """The unit the value is in (the natural one when ``unit`` is None; None for a count)."""
        units = UNITS[self.measure]
        return self.unit or (units[0] if units else None)

    def result(self, observation: Observation) -> float | None:
        """What the query returns: its one value (NaN for 0/0 over existing series), or None
        for an empty result vector (no series; see the module docstring and ``has_series``)."""
        stats = observation.of(self.version)
        if stats.has_series is False:
            return None
        value = self._value(stats, observation)
        if math.isnan(value) and (self.nan_filter or stats.has_series is None):
            return None  # the query filters NaN out, or (unknown) the older rule: empty
        return value

    def evaluate(self, observation: Observation) -> float:
        """The query's value in its unit; NaN when the window held no traffic."""
        return self._value(observation.of(self.version), observation)

    def _value(self, stats: WindowStats, observation: Observation) -> float:
        measure, unit = self.measure, self.unit  # read once: a model's attributes are slow
        if measure == "requestCount":
            return float(stats.requests)
        errors = stats.errors if self.errors in ("5xx", "4xx+5xx") else 0  # the world has no 4xx
        total = float(stats.requests)
        if self.min_rate:  # clamp_min on the request rate: seconds of the window x the minimum
            total = max(total, self.min_rate * max(observation.end - observation.start, 0.0))
        if not total:
            return math.nan
        if measure == "errorRate":
            value = errors / total
        elif measure == "successRate":
            value = 1.0 - errors / total
        else:
            value = stats.latency.get(self.quantile, math.nan)
        return value * _FACTOR[unit] if unit else value
