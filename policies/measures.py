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

__all__ = ["UNITS", "MeasureName", "Observation", "Query", "Unit", "VersionName", "WindowStats"]

MeasureName = Literal["successRate", "errorRate", "latency", "requestCount"]
VersionName = Literal["canary", "stable"]
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


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One version's traffic in a query window, as a metrics backend would report it."""

    requests: int = 0
    errors: int = 0
    latency: Mapping[float, float] = field(default_factory=dict)  # quantile -> seconds
    has_series: bool | None = None
    """Whether the version's series exist at the window's end, i.e. one of its pods served a
    request before then: True -> a window without requests gives NaN (0/0); False -> an empty
    result vector; None (unknown) -> a NaN value is taken as an empty vector, a count as 0."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan


@dataclass(frozen=True, slots=True)
class Observation:
    """Both versions' stats over ``[start, end]``; ``series`` holds sub-interval observations
    for judges that compare per-interval values (Kayenta)."""

    start: float
    end: float
    canary: WindowStats
    stable: WindowStats
    series: tuple[Observation, ...] = ()

    def of(self, version: VersionName) -> WindowStats:
        return self.canary if version == "canary" else self.stable


class Query(Model):
    """A simulated metrics query: a measure of one version over a window.

    These are the forms the exporters turn into PromQL (success rate, error rate, latency
    quantile, request count); ``window`` defaults to the metric's interval. ``unit``: the scale
    of the value (None: the natural one, a fraction or seconds; a count has none).
    """

    measure: MeasureName
    version: VersionName = "canary"
    quantile: float = Field(0.99, gt=0, lt=1)
    window: Duration | None = None
    unit: Unit | None = None
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

    @model_validator(mode="after")
    def _window_positive(self) -> Query:
        if self.window is not None and self.window <= 0:
            raise ValueError("window must be > 0")
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
        value = self.evaluate(observation)
        if math.isnan(value) and (self.nan_filter or stats.has_series is None):
            return None  # the query filters NaN out, or (unknown) the older rule: empty
        return value

    def evaluate(self, observation: Observation) -> float:
        """The query's value in its unit; NaN when the window held no traffic."""
        stats = observation.of(self.version)
        if self.measure == "requestCount":
            return float(stats.requests)
        if not stats.requests:
            return math.nan
        if self.measure == "errorRate":
            value = stats.errors / stats.requests
        elif self.measure == "successRate":
            value = 1.0 - stats.errors / stats.requests
        else:
            value = stats.latency.get(self.quantile, math.nan)
        return value * _FACTOR[self.unit] if self.unit else value
