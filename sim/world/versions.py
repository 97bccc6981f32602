"""Versions, faults and the release population: what a release does to each request.

A request is *bad* when it fails or is slower than the latency objective (DESIGN §5). The
baseline ``Version`` fixes both probabilities; a candidate's ``Fault`` changes them from its
onset on. The engine draws counts as Poisson of integrated rates, so it needs exact integrals of
these probabilities over an interval: a fault is therefore piecewise linear in the time since its
onset (constant, or a linear ramp with ``growth``) and every ``mean_*_over`` is closed form.

Times called ``since_onset`` are seconds since the fault began on the pod that serves the
request (negative: not yet). How that is computed depends on the onset kind; see
``Fault.onset_at``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    WithJsonSchema,
    model_validator,
)

from policies.base import Model
from policies.durations import Duration
from sim.world.distributions import DistributionSpec, LogNormal

__all__ = [
    "PROBABILITY_JSON_SCHEMA",
    "SUM_TOLERANCE",
    "Fault",
    "Growth",
    "Hazard",
    "Onset",
    "Probability",
    "ReleaseClass",
    "ReleasePopulation",
    "Version",
    "parse_probability",
]

SUM_TOLERANCE = 1e-9
"""How far the release-class probabilities may sum from 1."""


def parse_probability(value: object) -> float:
    """A fraction in [0, 1] from a number (0.001) or a percent string ("0.1%", "99.9%")."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a probability")
    if isinstance(value, str):
        text = value.strip()
        try:  # Decimal keeps "99.9%" -> 0.999 exact to the nearest float
            number = Decimal(text[:-1].strip()) / 100 if text.endswith("%") else Decimal(text)
        except InvalidOperation:
            raise ValueError(
                f'"{value}" is not a probability (write a fraction such as 0.001 '
                f'or a percentage such as "0.1%")'
            ) from None
        if not number.is_finite():
            raise ValueError(f'"{value}" is not a finite probability')
        if text.endswith("%") and number > 1:
            raise ValueError(f'"{value}" is above 100%')
        x = float(number)
    else:
        x = float(value)
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"{value!r} is not a finite probability")
    if x < 0:
        raise ValueError(f"{value!r} is negative; a probability must be in [0, 1]")
    if x > 1:
        raise ValueError(
            f'{value!r} is above 1; write a fraction (0.999) or a percentage ("99.9%")'
        )
    return x


PROBABILITY_JSON_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?([eE][-+]?\d+)?\s*%?\s*$"},
    ],
    "description": 'a fraction in [0, 1] or a percentage such as "99.9%"',
}

Probability = Annotated[
    float,
    BeforeValidator(parse_probability),
    WithJsonSchema(PROBABILITY_JSON_SCHEMA, mode="validation"),
]
"""A pydantic field type: a fraction, or a percent string converted to one (DESIGN §3)."""


def _out(values: np.ndarray) -> Any:
    """0-d results come back as floats, array inputs as arrays."""
    return float(values) if values.ndim == 0 else values


def _f(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=float)


_DEFAULT_LATENCY = LogNormal(median=0.08, sigma=0.5)


class Version(Model):
    """One version's behaviour per request: failure probability and latency (seconds).

    Defaults are assumptions for a typical web service: 0.1 % errors (the SRE Workbook's
    99.9 % SLO world) and lognormal latency with median 80 ms and sigma 0.5.
    """

    error_rate: Probability = 0.001
    latency: DistributionSpec = _DEFAULT_LATENCY

    def slow_probability(self, objective_s: float | None) -> float:
        """P(latency > objective) = 1 − F(objective); 0 without an objective."""
        if objective_s is None:
            return 0.0
        return float(1.0 - self.latency.cdf(objective_s))

    def bad_probability(self, objective_s: float | None) -> float:
        """P(bad) = p + (1 − p)·q: a failure is bad; a success is bad when slow."""
        p, q = self.error_rate, self.slow_probability(objective_s)
        return p + (1.0 - p) * q


class Hazard(Model):
    """``{hazard: {mean: 2h}}``: onset after an exponential time from the release start."""

    mean: Duration = Field(gt=0)


class Onset(Model):
    """When the fault begins: exactly one of ``afterStart``, ``afterPodAge``, ``hazard``."""

    after_start: Duration | None = None
    after_pod_age: Duration | None = None
    hazard: Hazard | None = None

    @model_validator(mode="after")
    def _one(self) -> Onset:
        given = [v for v in (self.after_start, self.after_pod_age, self.hazard) if v is not None]
        if len(given) != 1:
            raise ValueError("onset takes exactly one of afterStart, afterPodAge, hazard")
        return self


class Growth(Model):
    """``{duration: 1h}``: the error rate ramps linearly from baseline to target after onset."""

    duration: Duration = Field(gt=0)


class Fault(Model):
    """What is wrong with a bad candidate, and from when.

    ``errorRate`` (absolute) or ``errorRateMultiplier`` (× the baseline, capped at 1);
    ``latencyShift`` is added to and ``latencyMultiplier`` multiplies every latency of the
    baseline distribution (L' = m·L + shift). ``onset`` default: immediate, from the moment a pod
    serves. ``growth`` ramps the error rate only; the latency change is a step at onset.
    ``segment`` confines the fault to requests of that segment's users; ``crashLoop`` means the
    candidate's pods never become ready (nothing else about the fault then matters).
    """

    error_rate: Probability | None = None
    error_rate_multiplier: float | None = Field(None, ge=0, allow_inf_nan=False)
    latency_shift: Duration | None = None
    latency_multiplier: float | None = Field(None, gt=0, allow_inf_nan=False)
    onset: Onset | None = None
    growth: Growth | None = None
    segment: str | None = Field(None, min_length=1)
    crash_loop: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Fault:
        if self.error_rate is not None and self.error_rate_multiplier is not None:
            raise ValueError("give errorRate or errorRateMultiplier, not both")
        if self.growth is not None and not self.changes_errors:
            raise ValueError(
                "growth ramps the error rate: it needs errorRate or errorRateMultiplier"
            )
        if not (self.changes_errors or self.changes_latency or self.crash_loop):
            raise ValueError(
                "a fault must change something: errorRate, errorRateMultiplier, latencyShift, "
                "latencyMultiplier or crashLoop"
            )
        return self

    # --- what it changes -------------------------------------------------------------------

    @property
    def changes_errors(self) -> bool:
        return self.error_rate is not None or self.error_rate_multiplier is not None

    @property
    def changes_latency(self) -> bool:
        return bool(self.latency_shift) or self.latency_multiplier not in (None, 1.0)

    def affects(self, segments: Iterable[str] = ()) -> bool:
        """Whether a user in ``segments`` meets the fault (always, without a ``segment``)."""
        return self.segment is None or self.segment in set(segments)

    # --- when it starts --------------------------------------------------------------------

    @property
    def per_pod(self) -> bool:
        """True for ``afterPodAge`` and immediate onsets: each pod has its own onset."""
        return self.onset is None or self.onset.after_pod_age is not None

    def onset_time(self, rng: np.random.Generator) -> float | None:
        """Release-wide onset, seconds after the release start; None when it is per pod.

        ``afterStart`` needs no draw; ``hazard`` draws one exponential from ``rng`` (call once
        per replication, so every policy of replication i meets the same onset).
        """
        if self.onset is None or self.onset.after_pod_age is not None:
            return None
        if self.onset.after_start is not None:
            return self.onset.after_start
        assert self.onset.hazard is not None
        return float(rng.exponential(self.onset.hazard.mean))

    def onset_at(self, onset_time: float | None, pod_start: Any, pod_ready: Any) -> Any:
        """Absolute onset time on pods (engine clock), vectorised over pods.

        immediate: the pod's ready time (it serves from then); ``afterPodAge``: pod start +
        age; ``afterStart``/``hazard``: ``onset_time`` from ``onset_time(rng)``, the same for all.
        ``since_onset`` for a request at time t on a pod is then ``t − onset_at(...)``.
        """
        start, ready = np.broadcast_arrays(_f(pod_start), _f(pod_ready))
        if self.onset is None:
            return _out(ready.copy())
        if self.onset.after_pod_age is not None:
            return _out(start + self.onset.after_pod_age)
        if onset_time is None:
            raise ValueError("this fault's onset is release-wide: pass onset_time(rng)")
        return _out(np.full(start.shape, float(onset_time)))

    # --- failures --------------------------------------------------------------------------

    def target_error_rate(self, baseline_p: Any) -> Any:
        """The error rate once fully in effect (after onset and any growth)."""
        p0 = _f(baseline_p)
        if self.error_rate is not None:
            return _out(np.full(p0.shape, self.error_rate))
        if self.error_rate_multiplier is not None:
            return _out(np.minimum(1.0, self.error_rate_multiplier * p0))
        return _out(p0.copy())

    def failure_probability(self, baseline_p: Any, since_onset: Any) -> Any:
        """p(s): baseline before onset (s < 0), then target, or a linear ramp with growth."""
        p0, s = np.broadcast_arrays(_f(baseline_p), _f(since_onset))
        p1 = _f(self.target_error_rate(p0))
        if self.growth is not None:
            frac = np.clip(s / self.growth.duration, 0.0, 1.0)
        else:
            frac = (s >= 0).astype(float)
        return _out(np.clip(p0 + (p1 - p0) * frac, 0.0, 1.0))

    def _ramp_primitive(self, s: np.ndarray) -> np.ndarray:
        """h(s) with ∫ p = p0·s + (p1 − p0)·h(s): 0, s²/2D, then s − D/2."""
        if self.growth is None:
            return np.maximum(s, 0.0)
        d = self.growth.duration
        inside = np.clip(s, 0.0, d)
        return inside * inside / (2.0 * d) + np.maximum(s - d, 0.0)

    def integrated_failure(self, baseline_p: Any, a: Any, b: Any) -> Any:
        """∫_a^b p(s) ds over since-onset bounds (exact, piecewise linear)."""
        p0, a, b = np.broadcast_arrays(_f(baseline_p), _f(a), _f(b))
        p1 = _f(self.target_error_rate(p0))
        return _out(p0 * (b - a) + (p1 - p0) * (self._ramp_primitive(b) - self._ramp_primitive(a)))

    # --- latency ---------------------------------------------------------------------------

    def latency_scale(self) -> tuple[float, float]:
        """(m, shift): a faulted request's latency is m·L + shift, L the baseline's."""
        return (self.latency_multiplier or 1.0), (self.latency_shift or 0.0)

    def latency_cdf(self, baseline: Version, x: Any, since_onset: Any) -> Any:
        """P(L' ≤ x): the baseline's cdf before onset, of (x − shift)/m after (exact)."""
        x, s = np.broadcast_arrays(_f(x), _f(since_onset))
        before = _f(baseline.latency.cdf(x))
        if not self.changes_latency:
            return _out(before)
        m, shift = self.latency_scale()
        y = (x - shift) / m
        after = np.where(y < 0, 0.0, _f(baseline.latency.cdf(np.maximum(y, 0.0))))
        return _out(np.where(s >= 0, after, before))

    def latency_ppf(self, baseline: Version, q: Any, since_onset: Any) -> Any:
        """F'⁻¹(q) = m·F⁻¹(q) + shift after onset (for order-statistic quantiles)."""
        q, s = np.broadcast_arrays(_f(q), _f(since_onset))
        base = _f(baseline.latency.ppf(q))
        m, shift = self.latency_scale()
        return _out(np.where(s >= 0, m * base + shift, base))

    def slow_probability(self, baseline: Version, objective_s: float | None, since_onset: Any):
        """P(L' > objective) with the shift/multiplier applied once onset has passed."""
        s = _f(since_onset)
        if objective_s is None:
            return _out(np.zeros(s.shape))
        return _out(1.0 - _f(self.latency_cdf(baseline, objective_s, s)))

    # --- bad = failed or slow --------------------------------------------------------------

    def bad_probability(self, baseline: Version, objective_s: float | None, since_onset: Any):
        """p + (1 − p)·q at since_onset (slowness taken independent of failure)."""
        p = _f(self.failure_probability(baseline.error_rate, since_onset))
        q = _f(self.slow_probability(baseline, objective_s, since_onset))
        return _out(p + (1.0 - p) * q)


class ReleaseClass(Model):
    """One kind of release and how often it comes: ``fault: null`` is a good release."""

    name: str = Field(min_length=1)
    probability: Probability
    fault: Fault | None = None

    @property
    def is_bad(self) -> bool:
        return self.fault is not None


class ReleasePopulation(RootModel[tuple[ReleaseClass, ...]]):
    """The mix of releases a run is stratified over: a YAML list of classes summing to 1.

    Each class is simulated on its own and its results weighted by its probability (stratified
    sampling), so a rare bad class still gets its replications.
    """

    model_config = ConfigDict(frozen=True)

    root: tuple[ReleaseClass, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _valid(self) -> ReleasePopulation:
        names = [c.name for c in self.root]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"release class names must be unique: {', '.join(dupes)} repeated")
        total = math.fsum(c.probability for c in self.root)
        if abs(total - 1.0) > SUM_TOLERANCE:
            raise ValueError(
                f"release class probabilities sum to {total:.12g}, not 1 (±{SUM_TOLERANCE:g})"
            )
        return self

    @classmethod
    def good_only(cls) -> ReleasePopulation:
        """Every release is good (false-rollback and cost studies)."""
        return cls((ReleaseClass(name="good", probability=1.0),))

    def __iter__(self) -> Iterator[ReleaseClass]:  # type: ignore[override]
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def __getitem__(self, key: int | str) -> ReleaseClass:
        if isinstance(key, str):
            for c in self.root:
                if c.name == key:
                    return c
            raise KeyError(f"no release class named {key!r} (have: {', '.join(self.names)})")
        return self.root[key]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.root)

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([c.probability for c in self.root])

    def is_bad(self, release: ReleaseClass | str) -> bool:
        """Whether a class (or the class of that name) carries a fault."""
        return (self[release] if isinstance(release, str) else release).is_bad

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready list with YAML key names, defaults left out."""
        return [c.to_dict() for c in self.root]

    def __repr__(self) -> str:
        return f"ReleasePopulation({list(self.root)!r})"
