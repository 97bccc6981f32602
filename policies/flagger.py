"""Flagger's policies: Progressive (the Flagger canary, or with ``iterations`` and no match
Flagger's blue/green) and ABTest (match + iterations).

Flagger advances on an analysis tick every ``interval``; each tick checks every metric over its
query window, a failed check (including *no data*) counts, failures are cumulative, and the
rollback comes on the tick after the ``threshold``-th failure (reference/executors.md §A.3).
Flagger picks the strategy from the analysis (``canary.go`` ``DeploymentStrategy``): match and
iterations make an A/B test, iterations alone blue/green, weights a canary; the kubernetes
provider forces blue/green (``scheduler.go``: match dropped, ``iterations := 10`` if < 1), so a
Progressive policy on it is a blue/green whatever its weights say (they are kept for export, as
Flagger keeps them in the Canary and ignores them).
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast, get_args

from pydantic import Field, model_validator

from policies.base import Model
from policies.common import PolicyBase, RouteMatch
from policies.durations import Duration
from policies.measures import MEAN, Observation, Query
from policies.vocabulary import FlaggerProvider

__all__ = [
    "DEFAULT_PROVIDER_VERSION",
    "GATES",
    "GATE_URL",
    "LOAD_TESTER",
    "MIN_INTERVAL_S",
    "MIRROR_PROVIDERS",
    "PROVIDER_VERSIONS",
    "STICKY_PROVIDERS",
    "ABTest",
    "ApprovalGate",
    "FlaggerAnalysis",
    "FlaggerMetric",
    "FlaggerProvider",
    "GateType",
    "LoadTest",
    "Progressive",
    "SessionAffinity",
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
LOAD_TESTER = "http://flagger-loadtester.{namespace}/"
"""A load test's webhook when the policy names none: the Flagger load tester in the namespace;
import reads it back as no URL."""

_BUILTIN = {"request-success-rate", "request-duration"}
KUBERNETES_ITERATIONS = 10
"""What Flagger sets ``iterations`` to on the kubernetes provider when it is below 1."""

MIRROR_PROVIDERS = {"istio": "canary and blue/green", "gatewayapi": "blue/green"}
"""Where Flagger's ``mirror`` works: Istio's router writes ``mirror`` (+ ``mirrorPercentage``
from ``mirrorWeight``) on the route (``pkg/router/istio.go``); the Gateway API v1 router adds a
RequestMirror filter only when ``iterations > 0`` and without a percentage
(``gateway_api.go``); no other router mirrors. A canary whose router does not mirror never
leaves weight 0 (``runCanary`` asks for the mirror again on every tick), a blue/green runs
unmirrored."""
STICKY_PROVIDERS = ("istio", "gatewayapi")
"""Routers that write Flagger's session-affinity cookie route (istio.go, gateway_api*.go)."""


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


def duration_read(provider: str) -> tuple[float, float]:
    """What Flagger's built-in request-duration reads on ``provider`` (its observer's query,
    ``pkg/metrics/observers``): the latency (a quantile, or ``MEAN``) and the factor from
    seconds to the number Flagger truncates to whole ms: the mean in ms on nginx and skipper,
    the P99 in seconds on Traefik (read as ms: 0 below 1 s), the P99 in ms elsewhere."""
    return _DURATION_READ.get(provider, (0.99, 1000.0))


_DURATION_READ = {"nginx": (MEAN, 1000.0), "skipper": (MEAN, 1000.0), "traefik": (0.99, 1.0)}


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

    def value(self, observation: Observation, provider: str = "istio") -> float:
        """The value Flagger's query returns: percent for success rate; for duration what
        ``provider``'s built-in reads (``duration_read``), truncated to whole ms."""
        if self.query is not None:
            return self.query.evaluate(observation)
        stats = observation.canary
        if not stats.requests:
            return math.nan
        if self.name == "request-success-rate":
            return 100.0 * (1.0 - stats.errors / stats.requests)
        key, factor = duration_read(provider)
        seconds = stats.latency.get(key, math.nan)
        return math.floor(seconds * factor) if not math.isnan(seconds) else math.nan

    def check(self, observation: Observation, provider: str = "istio") -> bool:
        """True if the check passes; no data is a failed check (Flagger ``ErrNoValuesFound``)."""
        return self.passes(self.value(observation, provider))

    def passes(self, value: float) -> bool:
        """Whether Flagger's check passes on the query's ``value`` (NaN: no data, failed)."""
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
    approval model, like an Argo pause without duration). Where it waits (Flagger's
    ``pkg/controller/scheduler.go``): ``confirm-rollout`` before the canary scales up (phase
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


class LoadTest(Model):
    """A Flagger load-tester webhook that runs ``hey`` against the canary's own Service
    (``<target>-canary``): synthetic requests that count in the canary's metrics and hurt no
    user. ``rate`` is requests per second in all (hey's ``-q`` is per worker: rate = q x c);
    ``concurrency`` is hey's ``-c``, ``duration`` its ``-z``. A ``rollout`` hook is called on
    every analysis tick and the load tester starts the command unless it still runs
    (``pkg/loadtester/runner.go``), so load runs for ``duration`` from each analysis tick
    (continuously when duration >= interval); a ``pre-rollout`` hook is called once, on the
    tick before the first analysis, and runs for ``duration``. ``name`` and ``url`` are the
    webhook's, kept for export (None: ``load-test`` and the load tester in the namespace)."""

    rate: float = Field(gt=0)
    concurrency: int = Field(1, ge=1)
    duration: Duration = Field(60.0, gt=0)
    type: Literal["rollout", "pre-rollout"] = "rollout"
    name: str | None = None
    url: str | None = None


class SessionAffinity(Model):
    """``analysis.sessionAffinity``: while the canary has weight, its responses set a cookie
    (``cookieName``, ``Max-Age`` = ``maxAge`` s, Flagger's default 86400) and requests bearing
    it go to the canary whatever the weight; when the weight returns to 0 (promotion, rollback)
    the cookie route is replaced by one that expires the cookie (``Max-Age=-1``)."""

    cookie_name: str = Field(min_length=1)
    max_age: Duration = Field(86400.0, gt=0)


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
    mirror: bool = False
    mirror_weight: float | None = Field(None, gt=0, le=100)
    """Percent of requests mirrored (Istio ``mirrorPercentage``); None: all of them."""
    session_affinity: SessionAffinity | None = None
    load_test: LoadTest | None = None

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
        if self.mirror_weight is not None and not self.mirror:
            raise ValueError("mirrorWeight needs mirror: true")
        return self

    @property
    def mirror_percent(self) -> float:
        """Percent of requests copied to the canary while mirroring (0: no mirror)."""
        if not self.mirror:
            return 0.0
        return self.mirror_weight if self.mirror_weight is not None else 100.0

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
    analysis: FlaggerAnalysis

    @model_validator(mode="after")
    def _version(self) -> _FlaggerPolicy:
        allowed = PROVIDER_VERSIONS.get(self.provider, ())
        if self.provider_version is not None and self.provider_version not in allowed:
            versions = ", ".join(allowed) or "none"
            raise ValueError(
                f"providerVersion {self.provider_version!r}: Flagger's CRD accepts for"
                f" {self.provider}: {versions}"
            )
        sticky = self.analysis.session_affinity
        if sticky is not None and self.provider not in STICKY_PROVIDERS:
            raise ValueError(
                f"analysis.sessionAffinity: Flagger's {self.provider} router writes no cookie"
                f" route (only {', '.join(STICKY_PROVIDERS)} do)"
            )
        return self

    @property
    def flagger_provider(self) -> str:
        """``spec.provider`` as Flagger's CRD spells it (``gatewayapi:v1``, ``smi:v1alpha3``)."""
        version = self.provider_version or DEFAULT_PROVIDER_VERSION.get(self.provider)
        return f"{self.provider}:{version}" if version else self.provider


class Progressive(_FlaggerPolicy):
    """The Flagger canary: weight grows by stepWeight (or along stepWeights) each healthy tick
    up to maxWeight, then promotes. With ``iterations`` (and always on the kubernetes provider)
    it is Flagger's blue/green (``runBlueGreen``): ``iterations`` analysis ticks at weight 0
    (the canary sees only mirrored and load-test requests), then live traffic switches to the
    canary, one more analysis, the primary rolls to the new version and traffic returns to it;
    on the kubernetes provider there is no router and the primary's rolling update is the
    switch users see."""

    kind: Literal["Progressive"] = "Progressive"

    @model_validator(mode="after")
    def _needs_weights(self) -> Progressive:
        a = self.analysis
        if a.match:
            raise ValueError("analysis.match makes an A/B test: use ABTest")
        if self.provider != "kubernetes":
            if a.iterations is not None and a.iterations < 1:
                raise ValueError("analysis.iterations must be >= 1 for blue/green")
            if a.iterations is None and not a.step_weight and not a.step_weights:
                raise ValueError("analysis needs stepWeight, stepWeights or iterations")
        if a.mirror:
            modes = MIRROR_PROVIDERS.get(self.provider, "")
            if self.provider_version == "v1beta1":  # gateway_api_v1beta1.go has no filter
                modes = ""
            mode = "blue/green" if self.blue_green else "canary"
            if mode not in modes:
                where = f" ({modes} only)" if modes else ""
                raise ValueError(
                    f"analysis.mirror: Flagger's {self.provider} router does not mirror in a"
                    f" {mode}{where}"
                )
            if a.mirror_weight is not None and self.provider != "istio":
                raise ValueError(
                    "analysis.mirrorWeight: only Flagger's Istio router mirrors a percentage"
                    " (the Gateway API's RequestMirror filter copies every request)"
                )
        return self

    @property
    def blue_green(self) -> bool:
        """Flagger's blue/green: iterations without match, or the kubernetes provider."""
        return self.provider == "kubernetes" or self.analysis.iterations is not None

    @property
    def effective_iterations(self) -> int:
        """Blue/green analysis iterations (kubernetes: 10 when below 1, as Flagger sets)."""
        n = self.analysis.iterations or 0
        return n if n >= 1 else KUBERNETES_ITERATIONS

    def weight_schedule(self) -> list[int]:
        """Canary weights per healthy tick until promotion (Flagger ``runCanary``); a
        blue/green has none before its switch to 100."""
        if self.blue_green:
            return []
        weights, current = [], 0
        while current < self.analysis.effective_max_weight:
            current = min(100, current + self.analysis.next_step_weight(current))
            weights.append(current)
        return weights


class ABTest(_FlaggerPolicy):
    """Flagger A/B testing: requests matching ``analysis.match`` go 100 % to the canary for
    ``iterations`` healthy ticks, everyone else stays on the primary; then it promotes."""

    kind: Literal["ABTest"] = "ABTest"

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
        if a.mirror:
            raise ValueError("analysis.mirror: Flagger's A/B test never mirrors (runAB)")
        if a.session_affinity is not None:
            raise ValueError(
                "analysis.sessionAffinity: Flagger's A/B routes replace the cookie route"
                " (the match decides who sees the canary)"
            )
        return self
