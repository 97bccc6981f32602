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

A query may also filter NaN itself: ``(... ) >= 0`` drops a NaN sample, so 0/0 becomes an
empty vector too. ``Query.nan_filter`` says whether the query has that filter: the exporters
write it when it is set (the default for policies written here) and the importers set it from
the manifest's query, so the simulator judges exactly what the executor will be given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from policies.base import Model
from policies.durations import Duration

__all__ = ["MeasureName", "Observation", "Query", "VersionName", "WindowStats"]

MeasureName = Literal["successRate", "errorRate", "latency", "requestCount"]
VersionName = Literal["canary", "stable"]


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
    quantile, request count); ``window`` defaults to the metric's interval.
    """

    measure: MeasureName
    version: VersionName = "canary"
    quantile: float = Field(0.99, gt=0, lt=1)
    window: Duration | None = None
    nan_filter: bool = True
    """The query drops a NaN sample (``(...) >= 0``): 0/0 is an empty vector (an Error), never
    judged as NaN. Exported queries carry the filter when this is set; an imported query
    without it sets it False, and a window with no traffic is then judged on NaN."""

    @model_validator(mode="after")
    def _window_positive(self) -> Query:
        if self.window is not None and self.window <= 0:
            raise ValueError("window must be > 0")
        return self

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
        """The query's value as a number; NaN when the window held no traffic."""
        stats = observation.of(self.version)
        if self.measure == "requestCount":
            return float(stats.requests)
        if not stats.requests:
            return math.nan
        if self.measure == "errorRate":
            return stats.errors / stats.requests
        if self.measure == "successRate":
            return 1.0 - stats.errors / stats.requests
        return stats.latency.get(self.quantile, math.nan)
