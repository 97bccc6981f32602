"""What a gate can measure, and what the world hands back: the contract between policies and sim.

A gate never sees requests, only what a real metrics query would return for a window: per
version, the request and error counts and the latency quantiles it asked for (DESIGN §5,
"Gate measurements see only what a real gate sees").
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

    @model_validator(mode="after")
    def _window_positive(self) -> Query:
        if self.window is not None and self.window <= 0:
            raise ValueError("window must be > 0")
        return self

    def evaluate(self, observation: Observation) -> float:
        """The query's value; NaN when the window held no traffic (a real query returns NaN)."""
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
