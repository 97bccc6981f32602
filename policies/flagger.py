"""Flagger's policies: Progressive (the Flagger canary) and ABTest (match + iterations).

Flagger advances on an analysis tick every ``interval``; each tick checks every metric over its
query window, a failed check (including *no data*) counts, failures are cumulative, and the
rollback comes on the tick after the ``threshold``-th failure (reference/executors.md §A.3).
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast, get_args

from pydantic import Field, model_validator

from policies.base import Model
from policies.common import PolicyBase, RouteMatch
from policies.durations import Duration
from policies.measures import Observation, Query
from policies.vocabulary import FlaggerProvider

__all__ = [
    "DEFAULT_PROVIDER_VERSION",
    "GATES",
    "GATE_URL",
    "MIN_INTERVAL_S",
    "PROVIDER_VERSIONS",
    "ABTest",
    "ApprovalGate",
    "FlaggerAnalysis",
    "FlaggerMetric",
    "FlaggerProvider",
    "GateType",
    "Progressive",
    "ThresholdRange",
]

MIN_INTERVAL_S = 10.0
"""Flagger clamps an analysis interval below 10 s to 10 s."""

GateType = Literal["confirm-rollout", "confirm-traffic-increase", "confirm-promotion"]
"""Flagger's webhooks that wait for an outside answer (``scheduler_hooks.go``)."""
GATES: tuple[GateType, ...] = get_args(GateType)
GATE_URL = "http://flagger-loadtester.{namespace}/gate/check"
"""A gate's webhook when the policy names none: the Flagger load tester's manual gate, closed
until someone opens it (``/gate/open``); import reads it back as no URL."""

PROVIDER_VERSIONS: dict[str, tuple[str, ...]] = {
    "gatewayapi": ("v1", "v1beta1"),
    "smi": ("v1alpha3", "v1alpha2", "v1alpha1"),
    "appmesh": ("v1beta2",),
}
"""The ``provider: NAME:VERSION`` suffixes Flagger's CRD accepts. Bare ``gatewayapi`` or ``smi``
is not in the CRD's enum (and Flagger's router factory would route it with Istio), so these are
written with ``DEFAULT_PROVIDER_VERSION`` when the policy names none; bare ``appmesh`` is App
Mesh v1beta1 (``pkg/router/factory.go``)."""
DEFAULT_PROVIDER_VERSION = {"gatewayapi": "v1", "smi": "v1alpha3"}

_BUILTIN = {"request-success-rate", "request-duration"}


class ThresholdRange(Model):
    """``thresholdRange: {min, max}``: a check fails below min or above max."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("thresholdRange needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("thresholdRange.min is above max")
        return self


class FlaggerMetric(Model):
    """A Flagger metric: a built-in (request-success-rate in %, request-duration in ms) or a
    custom one whose ``query`` is what its MetricTemplate would compute."""

    name: str = Field(min_length=1)
    interval: Duration = Field(60.0, gt=0)
    threshold_range: ThresholdRange | None = None
    threshold: float | None = None
    query: Query | None = None

    @model_validator(mode="after")
    def _rules(self) -> FlaggerMetric:
        if self.name not in _BUILTIN and self.query is None:
            raise ValueError(
                f"metric {self.name!r} is not built in (request-success-rate, request-duration):"
                " give a query"
            )
        if self.threshold_range is None and self.threshold is None:
            raise ValueError("a Flagger metric needs thresholdRange (or the deprecated threshold)")
        return self

    def value(self, observation: Observation) -> float:
        """The value Flagger's query returns: percent for success rate, ms for duration."""
        if self.query is not None:
            return self.query.evaluate(observation)
        stats = observation.canary
        if not stats.requests:
            return math.nan
        if self.name == "request-success-rate":
            return 100.0 * (1.0 - stats.errors / stats.requests)
        seconds = stats.latency.get(0.99, math.nan)
        return math.floor(seconds * 1000.0) if not math.isnan(seconds) else math.nan

    def check(self, observation: Observation) -> bool:
        """True if the check passes; no data is a failed check (Flagger ``ErrNoValuesFound``)."""
        value = self.value(observation)
        if math.isnan(value):
            return False
        if self.threshold_range is not None:
            low, high = self.threshold_range.min, self.threshold_range.max
            return not ((low is not None and value < low) or (high is not None and value > high))
        threshold = cast(float, self.threshold)  # _rules: given when thresholdRange is not
        if self.name == "request-success-rate":
            return value >= threshold  # the deprecated threshold is a minimum here
        return value <= threshold  # and a maximum for duration and custom metrics


class ApprovalGate(Model):
    """A ``confirm-*`` webhook: the release waits at it until someone approves (the scenario's
    approval model, like an Argo pause without duration). Where it waits
    (reference/executors.md §A.3): ``confirm-rollout`` before the canary scales up (phase
    Waiting); ``confirm-traffic-increase`` before each weight step of a canary (analysis keeps
    running); ``confirm-promotion`` before promotion (WaitingPromotion; analysis keeps running
    and failed checks keep counting). Flagger asks the hook on every tick; each time a gate is
    reached it waits for one approval. ``name`` and ``url`` are the webhook's, kept for export."""

    type: GateType
    name: str | None = None
    url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data


class FlaggerAnalysis(Model):
    """``spec.analysis`` of a Flagger Canary, with Flagger's defaults (executors.md §A.2)."""

    interval: Duration = Field(60.0, gt=0)
    threshold: int = 1
    max_weight: int | None = Field(None, ge=0, le=100)
    step_weight: int | None = Field(None, ge=0)
    step_weights: tuple[int, ...] | None = None
    step_weight_promotion: int | None = Field(None, ge=0)
    iterations: int | None = Field(None, ge=0)
    match: tuple[RouteMatch, ...] = ()
    metrics: tuple[FlaggerMetric, ...] = ()
    gates: tuple[ApprovalGate, ...] = ()

    @model_validator(mode="after")
    def _rules(self) -> FlaggerAnalysis:
        given = [
            n for n in ("iterations", "step_weight", "step_weights") if getattr(self, n) is not None
        ]
        if len(given) > 1:
            raise ValueError("give only one of iterations, stepWeight, stepWeights (Flagger CRD)")
        if self.step_weights is not None:  # above 100 acts as 100 (maxWeight, nextStepWeight)
            if not self.step_weights or any(w <= 0 for w in self.step_weights):
                raise ValueError("stepWeights must be positive weights")
            if list(self.step_weights) != sorted(set(self.step_weights)):
                raise ValueError("stepWeights must increase")
        return self

    @property
    def gate_types(self) -> frozenset[str]:
        """The confirm-* gates present (several webhooks of one type: one approval opens it)."""
        return frozenset(g.type for g in self.gates)

    @property
    def effective_interval_s(self) -> float:
        return max(self.interval, MIN_INTERVAL_S)

    @property
    def effective_threshold(self) -> int:
        return self.threshold if self.threshold > 0 else 1

    @property
    def effective_max_weight(self) -> int:
        """Flagger ``maxWeight``: stepWeights' last value wins; else maxWeight; else 100."""
        if self.step_weights and not self.step_weight:
            return min(100, self.step_weights[-1])
        return self.max_weight if self.max_weight else 100

    def next_step_weight(self, current: int) -> int:
        """Flagger ``nextStepWeight`` (scheduler.go), stepWeight winning over stepWeights."""
        if self.step_weight or not self.step_weights:
            return self.step_weight or 0
        weights = self.step_weights
        if current == 100:
            return 1
        if current == 0:
            return min(100 - current, weights[0])
        for i, w in enumerate(weights[:-1]):
            if current == w:
                return min(100 - current, weights[i + 1] - current)
        return 100 - current


class _FlaggerPolicy(PolicyBase):
    provider: FlaggerProvider = "istio"
    provider_version: str | None = None
    """The ``provider: NAME:VERSION`` suffix (``gatewayapi:v1beta1`` -> ``v1beta1``); None: the
    first of ``PROVIDER_VERSIONS`` (or none, for a provider without versions)."""
    skip_analysis: bool = False
    progress_deadline_seconds: Duration = 600.0

    @model_validator(mode="after")
    def _version(self) -> _FlaggerPolicy:
        allowed = PROVIDER_VERSIONS.get(self.provider, ())
        if self.provider_version is not None and self.provider_version not in allowed:
            versions = ", ".join(allowed) or "none"
            raise ValueError(
                f"providerVersion {self.provider_version!r}: Flagger's CRD accepts for"
                f" {self.provider}: {versions}"
            )
        return self

    @property
    def flagger_provider(self) -> str:
        """``spec.provider`` as Flagger's CRD spells it (``gatewayapi:v1``, ``smi:v1alpha3``)."""
        version = self.provider_version or DEFAULT_PROVIDER_VERSION.get(self.provider)
        return f"{self.provider}:{version}" if version else self.provider


class Progressive(_FlaggerPolicy):
    """The Flagger canary: weight grows by stepWeight (or along stepWeights) each healthy tick
    up to maxWeight, then promotes."""

    kind: Literal["Progressive"] = "Progressive"
    analysis: FlaggerAnalysis

    @model_validator(mode="after")
    def _needs_weights(self) -> Progressive:
        a = self.analysis
        if a.iterations is not None or a.match:
            raise ValueError("analysis.iterations/match make an A/B test or blue/green: use ABTest")
        if not a.step_weight and not a.step_weights:
            raise ValueError("analysis needs stepWeight or stepWeights")
        return self

    def weight_schedule(self) -> list[int]:
        """Canary weights per healthy tick until promotion (Flagger ``runCanary``)."""
        weights, current = [], 0
        while current < self.analysis.effective_max_weight:
            current = min(100, current + self.analysis.next_step_weight(current))
            weights.append(current)
        return weights


class ABTest(_FlaggerPolicy):
    """Flagger A/B testing: requests matching ``analysis.match`` go 100 % to the canary for
    ``iterations`` healthy ticks, everyone else stays on the primary; then it promotes."""

    kind: Literal["ABTest"] = "ABTest"
    analysis: FlaggerAnalysis

    @model_validator(mode="after")
    def _needs_match(self) -> ABTest:
        a = self.analysis
        if not a.iterations or a.iterations < 1:
            raise ValueError("analysis.iterations must be >= 1 for an A/B test")
        if not a.match:
            raise ValueError("analysis.match must name the requests that see the canary")
        if self.provider == "kubernetes":
            raise ValueError(
                "provider kubernetes cannot route by match (Flagger turns it blue/green)"
            )
        return self
