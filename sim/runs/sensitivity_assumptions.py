"""The assumptions a sensitivity analysis varies one at a time, and the ``sensitivity:`` section.

Each assumption scales one part of the world by a factor (×1 is the scenario as written), says
the scaled value in words, and says why it is skipped when the world has nothing there to scale:

- ``faultSeverity``: every bad class's fault, by its *excess* over the old version: errorRate
  p0 + k·(p − p0) (capped at 100 %), errorRateMultiplier and latencyMultiplier 1 + k·(m − 1),
  latencyShift k·s. ×0 would be a good release; a crash loop has no severity to scale.
- ``traffic``: the request rate (a constant rate, a diurnal mean, piecewise rates, trace counts).
- ``podStartup``, ``routerDelay``: every duration of the start-up distribution; every router
  kind's propagation delay.
- ``humanDetection``, ``acknowledgement``: the durations of those operator delays.
- ``gateNoise``: the old version's ordinary error rate (``world.baseline.errorRate``). Gates
  judge Poisson counts of requests and errors per window, so what they must tell a fault from is
  this floor of ordinary errors at the window's traffic (traffic is varied on its own); the
  scrape interval only moves a window's edges, and the world has no other metric noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from policies.base import Model, validate_model
from policies.vocabulary import routers_of
from sim.world.distributions import Empirical, Exponential, Fixed, Gamma, LogNormal, Uniform
from sim.world.model import World
from sim.world.rates import Constant, Diurnal, Piecewise, RatePoint, Trace

__all__ = [
    "ASSUMPTIONS",
    "DEFAULT_RANGES",
    "LABELS",
    "SensitivitySpec",
    "Variant",
    "parse_spec",
    "skip_reason",
    "vary",
]

Name = Literal[
    "faultSeverity",
    "traffic",
    "podStartup",
    "routerDelay",
    "humanDetection",
    "acknowledgement",
    "gateNoise",
]
ASSUMPTIONS: tuple[str, ...] = get_args(Name)  # in the order the reports list them
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "faultSeverity": (0.25, 4.0),
    "traffic": (0.5, 2.0),
    "podStartup": (0.5, 3.0),
    "routerDelay": (0.5, 3.0),
    "humanDetection": (0.25, 4.0),
    "acknowledgement": (0.25, 4.0),
    "gateNoise": (0.25, 4.0),
}
"""Factors on the scenario's own values: wide enough to hold a plausible misjudgement (a bug
4× subtler or worse, half or twice the traffic, start-up and delays up to 3× slower)."""
LABELS = {
    "faultSeverity": "fault severity",
    "traffic": "traffic rate",
    "podStartup": "pod start-up",
    "routerDelay": "router delay",
    "humanDetection": "human detection",
    "acknowledgement": "alert acknowledgement",
    "gateNoise": "gate noise (baseline error rate)",
}
WHERE = {
    "faultSeverity": "world.releases[*].fault",
    "traffic": "world.traffic.rate",
    "podStartup": "world.platform.podStartup",
    "routerDelay": "world.platform.routerDelay",
    "humanDetection": "world.operators.humanDetection",
    "acknowledgement": "world.operators.acknowledgement",
    "gateNoise": "world.baseline.errorRate",
}

Range = tuple[float, float]


class SensitivitySpec(Model):
    """A scenario's ``sensitivity:`` section: ``{faultSeverity: [0.25, 4], skip: [traffic]}``.

    Each range is [low, high] factors on the scenario's value (0 < low ≤ 1 ≤ high, low < high);
    a range left out takes ``DEFAULT_RANGES``. ``bisect``: extra runs to locate each flip."""

    fault_severity: Range | None = None
    traffic: Range | None = None
    pod_startup: Range | None = None
    router_delay: Range | None = None
    human_detection: Range | None = None
    acknowledgement: Range | None = None
    gate_noise: Range | None = None
    skip: tuple[Name, ...] = ()
    bisect: int = Field(4, ge=0, le=10)

    @field_validator(
        "fault_severity",
        "traffic",
        "pod_startup",
        "router_delay",
        "human_detection",
        "acknowledgement",
        "gate_noise",
    )
    @classmethod
    def _factors(cls, value: Range | None) -> Range | None:
        if value is None:
            return value
        low, high = (float(v) for v in value)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("factors must be finite numbers")
        if not 0 < low <= 1 <= high or low >= high:
            raise ValueError(
                f"[{low:g}, {high:g}] is not a range of factors: give [low, high] with"
                " 0 < low ≤ 1 ≤ high and low < high (1 is the scenario's own value)"
            )
        return (low, high)

    def ranges(self, given: dict[str, Range] | None = None) -> dict[str, Range]:
        """Every assumption not skipped and its range: ``given`` (the caller's), this section's,
        then ``DEFAULT_RANGES``."""
        own = self.model_dump(by_alias=True, exclude={"skip", "bisect"})
        out = {}
        for name in ASSUMPTIONS:
            if name in self.skip:
                continue
            out[name] = (given or {}).get(name) or own.get(name) or DEFAULT_RANGES[name]
        return out


def parse_spec(data: Any, *, file: str | None = None, path: str = "sensitivity") -> SensitivitySpec:
    """The ``sensitivity:`` section (or the caller's mapping), validated: one line naming the
    file, the field and the rule when it is wrong."""
    return validate_model(SensitivitySpec, data or {}, file=file, path=path)


@dataclass(frozen=True)
class Variant:
    """The world with one assumption scaled, and the scaled value in words."""

    world: World
    value: str


def skip_reason(world: World, policies: dict[str, Any], name: str) -> str | None:
    """Why ``name`` cannot be varied in this world (nothing to scale), else None."""
    ops, platform = world.operators, world.platform
    faults = [c.fault for c in world.releases if c.fault is not None]
    kinds = _router_kinds(policies, every=True)
    nothing = {
        "faultSeverity": (
            not any(_scalable(f) for f in faults),
            "no bad release class has an error rate or latency change to scale",
        ),
        "traffic": (
            _traffic_scale(world.traffic.rate, 2.0) == world.traffic.rate,
            "the traffic rate is 0 throughout",
        ),
        "podStartup": (platform.pod_startup.mean == 0, "pods start at once (podStartup 0)"),
        "routerDelay": (
            all(platform.router_delay_for(k) == 0 for k in kinds),
            "every router the policies use takes effect at once (routerDelay 0)",
        ),
        "humanDetection": (
            ops.human_detection is None,
            "no human notices a bad release without an alert (humanDetection unset)",
        ),
        "acknowledgement": (
            not ops.alerts or ops.acknowledgement.mean == 0,
            "no alert is configured (operators.alerts is empty)"
            if not ops.alerts
            else "alerts are acknowledged at once (acknowledgement 0)",
        ),
        "gateNoise": (
            world.baseline.error_rate == 0,
            "the old version never fails (baseline errorRate 0)",
        ),
    }
    empty, why = nothing[name]
    return why if empty else None


def vary(world: World, policies: dict[str, Any], name: str, factor: float) -> Variant:
    """``world`` with the assumption ``name`` scaled by ``factor``, and that value in words."""
    k = float(factor)
    ops, platform = world.operators, world.platform
    if name == "faultSeverity":
        classes = []
        for c in world.releases:
            fault = c.fault
            if fault is not None and _scalable(fault):
                c = c.model_copy(update={"fault": _fault(fault, world.baseline.error_rate, k)})
            classes.append(c)
        releases = world.releases.model_copy(update={"root": tuple(classes)})
        new = world.model_copy(update={"releases": releases})
        words = "; ".join(
            f"{c.name} {_fault_words(c.fault)}" for c in new.releases if c.fault is not None
        )
        return Variant(new, words)
    if name == "traffic":
        rate = _traffic_scale(world.traffic.rate, k)
        traffic = world.traffic.model_copy(update={"rate": rate})
        return Variant(world.model_copy(update={"traffic": traffic}), _rate_words(rate))
    if name == "podStartup":
        startup = _scaled(platform.pod_startup, k)
        new_platform = platform.model_copy(update={"pod_startup": startup})
        return Variant(world.model_copy(update={"platform": new_platform}), _dist_words(startup))
    if name == "routerDelay":
        delays = platform.router_delay
        scaled = delays.model_copy(
            update={f: getattr(delays, f) * k for f in type(delays).model_fields}
        )
        new_platform = platform.model_copy(update={"router_delay": scaled})
        words = ", ".join(
            f"{kind} {_dur(new_platform.router_delay_for(kind))}"
            for kind in _router_kinds(policies)
        )
        return Variant(world.model_copy(update={"platform": new_platform}), words)
    if name in ("humanDetection", "acknowledgement"):
        field = "human_detection" if name == "humanDetection" else "acknowledgement"
        dist = getattr(ops, field)
        scaled_dist = _scaled(dist, k) if dist is not None else None
        new_ops = ops.model_copy(update={field: scaled_dist})
        words = "never" if scaled_dist is None else _dist_words(scaled_dist)
        return Variant(world.model_copy(update={"operators": new_ops}), words)
    if name == "gateNoise":
        p = min(world.baseline.error_rate * k, 0.99)
        baseline = world.baseline.model_copy(update={"error_rate": p})
        return Variant(world.model_copy(update={"baseline": baseline}), f"errorRate {_pct(p)}")
    raise ValueError(f"unknown assumption {name!r} (use one of {', '.join(ASSUMPTIONS)})")


# ---------------------------------------------------------------------------- scaling


def _scalable(fault) -> bool:
    return not fault.crash_loop and (fault.changes_errors or fault.changes_latency)


def _fault(fault, p0: float, k: float):
    """The fault with its excess over the old version scaled by ``k`` (module docstring)."""
    update: dict[str, Any] = {}
    if fault.error_rate is not None:
        update["error_rate"] = min(max(p0 + k * (fault.error_rate - p0), 0.0), 1.0)
    if fault.error_rate_multiplier is not None:
        update["error_rate_multiplier"] = max(1.0 + k * (fault.error_rate_multiplier - 1.0), 0.0)
    if fault.latency_shift is not None:
        update["latency_shift"] = fault.latency_shift * k
    if fault.latency_multiplier is not None:
        update["latency_multiplier"] = max(1.0 + k * (fault.latency_multiplier - 1.0), 0.01)
    return fault.model_copy(update=update)


def _traffic_scale(rate, k: float):
    if isinstance(rate, Constant):
        return Constant(rate_=rate.rate_ * k)
    if isinstance(rate, Diurnal):
        return rate.model_copy(update={"mean": rate.mean * k})
    if isinstance(rate, Piecewise):
        points = tuple(RatePoint(at=p.at, rate=p.rate * k) for p in rate.points)
        return Piecewise(points=points, period=rate.period)
    if isinstance(rate, Trace):  # inline counts: the scaled trace is no longer the file's
        return Trace(counts=tuple(c * k for c in rate.counts), beyond=rate.beyond)
    raise ValueError(f"cannot scale a {type(rate).__name__} rate")


def _scaled(dist, k: float):
    """A duration distribution with every duration ×k (shapes and sigmas kept)."""
    if isinstance(dist, Fixed):
        return Fixed(value=dist.value * k)
    if isinstance(dist, Uniform):
        return Uniform(low=dist.low * k, high=dist.high * k)
    if isinstance(dist, Exponential):
        return Exponential(mean_=dist.mean_ * k)
    if isinstance(dist, LogNormal):
        return LogNormal(median=dist.median * k, sigma=dist.sigma)
    if isinstance(dist, Gamma):
        return Gamma(mean_=dist.mean_ * k, shape=dist.shape)
    if isinstance(dist, Empirical):
        return Empirical(values=tuple(v * k for v in dist.values))
    raise ValueError(f"cannot scale a {type(dist).__name__} distribution")


def _router_kinds(policies: dict[str, Any], every: bool = False) -> list[str]:
    """The router kinds the policies' weight changes go through (``every``: and the ones every
    release meets: endpoints joining, a Service selector switching back)."""
    kinds: list[str] = []
    for policy in policies.values():
        kinds += [k for k in routers_of(policy) if k not in kinds]
    if every:
        kinds += [k for k in ("pods", "serviceSelector") if k not in kinds]
    return kinds or ["pods"]


# ---------------------------------------------------------------------------- words


def _pct(p: float) -> str:
    return f"{p * 100:.3g} %"


def _dur(s: float) -> str:
    """45 s · 2.5 min · 1.7 h (three significant figures: a scaled value is rarely round)."""
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def _dist_words(dist) -> str:
    if isinstance(dist, Fixed):
        return _dur(dist.value)
    if isinstance(dist, Uniform):
        return f"uniform {_dur(dist.low)} to {_dur(dist.high)}"
    if isinstance(dist, Exponential):
        return f"exponential, mean {_dur(dist.mean_)}"
    if isinstance(dist, LogNormal):
        return f"lognormal, median {_dur(dist.median)}"
    if isinstance(dist, Gamma):
        return f"gamma, mean {_dur(dist.mean_)}"
    return f"empirical, mean {_dur(dist.mean)}"


def _rate_words(rate) -> str:
    if isinstance(rate, Constant):
        return f"{rate.rate_:.4g} requests/s"
    if isinstance(rate, Diurnal):
        return f"diurnal, mean {rate.mean:.4g} requests/s"
    if isinstance(rate, Piecewise):
        return f"piecewise, peak {max(p.rate for p in rate.points):.4g} requests/s"
    counts = rate.counts or (0.0,)
    return f"trace, mean {sum(counts) / len(counts) / 60:.4g} requests/s"


def _fault_words(fault) -> str:
    if fault.crash_loop:
        return "crash loop (not scaled)"
    parts = []
    if fault.error_rate is not None:
        parts.append(f"errorRate {_pct(fault.error_rate)}")
    if fault.error_rate_multiplier is not None:
        parts.append(f"errorRateMultiplier {fault.error_rate_multiplier:.3g}")
    if fault.latency_shift:
        parts.append(f"latencyShift {_dur(fault.latency_shift)}")
    if fault.latency_multiplier not in (None, 1.0):
        parts.append(f"latencyMultiplier {fault.latency_multiplier:.3g}")
    return ", ".join(parts)
