"""Request-rate profiles with exact integrals: constant, diurnal, piecewise, per-minute trace.

The engine never simulates single requests: between two control events it draws
Poisson(∫ rate) requests (DESIGN §5, anchors §5.2), so every profile gives its integral in
closed form, for Python numbers (the per-event calls, in pure Python) and numpy arrays alike,
through one formula per profile (``_Floats``/``_Arrays``). Rates are requests per second; times
are seconds of *profile* time (e.g. time of day for a diurnal profile). Their YAML forms and the
``Traffic`` a release meets are in ``sim.world.traffic``.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from policies.base import Model
from policies.durations import Duration, format_duration
from sim.world.trace_file import MAX_TRACE_BYTES, read_trace

__all__ = [
    "MAX_TRACE_BYTES",
    "Constant",
    "Diurnal",
    "Piecewise",
    "RatePoint",
    "RateProfile",
    "Trace",
    "as_times",
    "read_trace",
]

_TWO_PI = 2.0 * math.pi


class _Floats:
    """Python numbers and ``math``: the engine's per-event calls, free of numpy's per-call cost.

    With ``_Arrays`` it is the one thing that differs between a scalar and an array call: every
    profile writes its formula once, over ``xp`` (the array-API habit), so the two cannot
    disagree (a time reduced into its period once went through ``math.floor`` for a scalar and
    ``np.mod`` for an array, and the two paths gave different rates at t = −5e-324).
    """

    floor = staticmethod(math.floor)
    cos = staticmethod(math.cos)
    sin = staticmethod(math.sin)

    @staticmethod
    def full(t: float, value: float) -> float:
        return value

    @staticmethod
    def step(steps: _Steps, tau: float) -> int:
        """The index of the step that holds ``tau``: the last start at or before it, or the
        first step before them all (bisection never passes the last)."""
        k = bisect.bisect_right(steps.at_list, tau) - 1
        return k if k > 0 else 0


class _Arrays:
    """numpy arrays of floats: the same operations, elementwise."""

    floor = staticmethod(np.floor)
    cos = staticmethod(np.cos)
    sin = staticmethod(np.sin)

    @staticmethod
    def full(t: np.ndarray, value: float) -> np.ndarray:
        return np.full(np.shape(t), value)

    @staticmethod
    def step(steps: _Steps, tau: np.ndarray) -> np.ndarray:
        return np.maximum(np.searchsorted(steps.at, tau, side="right") - 1, 0)


_Backend = type[_Floats] | type[_Arrays]


def as_times(t: Any) -> Any:
    """A Python number (or numpy scalar) as it is, anything else as an array of floats."""
    return t if isinstance(t, int | float) else np.asarray(t, dtype=float)


def _numbers(t: Any) -> tuple[_Backend, Any]:
    """The backend for ``t``, and ``t`` in its form (``as_times``)."""
    if isinstance(t, int | float):
        return _Floats, t
    return _Arrays, np.asarray(t, dtype=float)


def _interval(t0: Any, t1: Any) -> tuple[_Backend, Any, Any]:
    """``_numbers`` for the two ends of an interval: numbers if both are, else arrays."""
    if isinstance(t0, int | float) and isinstance(t1, int | float):
        return _Floats, t0, t1
    return _Arrays, np.asarray(t0, dtype=float), np.asarray(t1, dtype=float)


class RateProfile(Model):
    """A rate r(t) >= 0 with its exact integral and its supremum over an interval."""

    kind: ClassVar[str] = ""

    def rate(self, t: Any) -> Any:
        """Requests per second at profile time ``t`` (scalar or array)."""
        raise NotImplementedError

    def integral(self, t0: Any, t1: Any) -> Any:
        """∫_{t0}^{t1} r(t) dt, exact; scalars or broadcastable arrays (negative if t1 < t0)."""
        raise NotImplementedError

    def max_rate(self, t0: float, t1: float) -> float:
        """sup of r(t) over the closed interval [t0, t1] (a thinning bound)."""
        raise NotImplementedError

    def excess(self, t0: np.ndarray, t1: np.ndarray, level: float) -> np.ndarray:
        """∫_{t0}^{t1} max(0, r(t) − level) dt, exact, per interval (t0 <= t1): the requests
        beyond a capacity of ``level`` per second. An interval's mean rate would undercount
        them wherever the rate crosses the level inside it (Jensen)."""
        raise NotImplementedError

    def time_above(self, t0: np.ndarray, t1: np.ndarray, level: float) -> np.ndarray:
        """The time in [t0, t1] with r(t) > ``level``, exact, per interval (t0 <= t1): with
        ``excess``, the requests arriving while the rate is above a level."""
        raise NotImplementedError

    def moment(self, t0: np.ndarray, t1: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """∫_{t0}^{t1} (t − origin)·r(t) dt, exact, elementwise over broadcastable arrays: the
        requests of an interval weighted by their time since ``origin`` (a fault's growth ramp
        over the requests it meets, sim/engine/onset.py)."""
        raise NotImplementedError

    def to_yaml(self) -> Any:
        """The YAML form a user would write (what ``RateSpec`` serialises to)."""
        raise NotImplementedError


class Constant(RateProfile):
    """The same rate all day: ``2000`` or ``{constant: 2000}``."""

    kind: ClassVar[str] = "constant"
    rate_: float = Field(alias="rate", ge=0, allow_inf_nan=False)

    def rate(self, t: Any) -> Any:
        xp, t = _numbers(t)
        return xp.full(t, self.rate_)

    def integral(self, t0: Any, t1: Any) -> Any:
        _, t0, t1 = _interval(t0, t1)
        return self.rate_ * (t1 - t0)

    def max_rate(self, t0: float, t1: float) -> float:
        return self.rate_

    def excess(self, t0: np.ndarray, t1: np.ndarray, level: float) -> np.ndarray:
        return max(self.rate_ - level, 0.0) * (np.asarray(t1) - np.asarray(t0))

    def time_above(self, t0: np.ndarray, t1: np.ndarray, level: float) -> np.ndarray:
        return (self.rate_ > level) * (np.asarray(t1) - np.asarray(t0))

    def moment(self, t0: np.ndarray, t1: np.ndarray, origin: np.ndarray) -> np.ndarray:
        return self.rate_ * (t1 - t0) * (0.5 * (t0 + t1) - origin)

    def to_yaml(self) -> Any:
        return {"constant": self.rate_}

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "rate", self.rate_


class Diurnal(RateProfile):
    """mean·(1 + amplitude·cos(2π(t − peakAt)/period)): a daily cycle peaking at ``peakAt``."""

    kind: ClassVar[str] = "diurnal"
    mean: float = Field(ge=0, allow_inf_nan=False)
    amplitude: float = Field(ge=0, le=1)
    peak_at: Duration = 0.0
    period: Duration = Field(86400.0, gt=0)

    def rate(self, t: Any) -> Any:
        xp, t = _numbers(t)
        return self.mean * (
            1.0 + self.amplitude * xp.cos(_TWO_PI * (t - self.peak_at) / self.period)
        )

    def integral(self, t0: Any, t1: Any) -> Any:
        # sin B − sin A = 2 cos((A+B)/2) sin((B−A)/2): no cancellation for short intervals late
        # in the day.
        xp, t0, t1 = _interval(t0, t1)
        k = _TWO_PI / self.period
        wave = self.mean * self.amplitude / k
        mid = 0.5 * k * (t0 + t1 - 2.0 * self.peak_at)
        return self.mean * (t1 - t0) + wave * 2.0 * xp.cos(mid) * xp.sin(0.5 * k * (t1 - t0))

    def max_rate(self, t0: float, t1: float) -> float:
        # Between two peaks the cosine has no interior maximum, so the sup is a peak or an end.
        next_peak = self.peak_at + math.ceil((t0 - self.peak_at) / self.period) * self.period
        if next_peak <= t1:
            return self.mean * (1.0 + self.amplitude)
        return max(self.rate(float(t0)), self.rate(float(t1)))

    def excess(self, t0: np.ndarray, t1: np.ndarray, level: float) -> np.ndarray:
        return self._above(t0, t1, level, requests=True)

    def time_above(self, t0: np.ndarray, t1: np.ndarray, level: float) -> np.ndarray:
        return self._above(t0, t1, level, requests=False)

    def _above(self, t0: np.ndarray, t1: np.ndarray, level: float, requests: bool) -> np.ndarray:
        # In phase θ = k(t − peakAt) the rate is above the level where cos θ > u, on (−α, α)
        # of each period (α = arccos u); G is ∫ max(0, r − level) (``requests``, else ∫ 1)
        # from a trough, per period P.
        m, a, k = self.mean, self.amplitude, _TWO_PI / self.period
        t0, t1 = np.asarray(t0, dtype=float), np.asarray(t1, dtype=float)
        u = (level / m - 1.0) / a if m > 0 and a > 0 else (-2.0 if level < m else 2.0)
        if u <= -1.0:  # above the level throughout
            if not requests:
                return np.broadcast_to(t1 - t0, np.broadcast(t0, t1).shape).copy()
            return self.integral(t0, t1) - level * (t1 - t0)
        if u >= 1.0:  # never above it
            return np.zeros(np.broadcast(t0, t1).shape)
        alpha, sin_alpha = math.acos(u), math.sqrt(1.0 - u * u)
        if requests:
            per_period = 2.0 * ((m - level) * alpha + m * a * sin_alpha) / k
        else:
            per_period = 2.0 * alpha / k

        def primitive(t: np.ndarray) -> np.ndarray:
            theta = k * (t - self.peak_at)
            cycles = np.floor((theta + math.pi) / _TWO_PI)
            theta = np.clip(theta - cycles * _TWO_PI, -alpha, alpha)  # within (−π, π]
            if requests:
                inside = ((m - level) * (theta + alpha) + m * a * (np.sin(theta) + sin_alpha)) / k
            else:
                inside = (theta + alpha) / k
            return cycles * per_period + inside

        return np.maximum(primitive(t1) - primitive(t0), 0.0)

    def moment(self, t0: np.ndarray, t1: np.ndarray, origin: np.ndarray) -> np.ndarray:
        # ∫ (t − o)·cos(k(t − c)) dt = (t − o)·sin(k(t − c))/k + cos(k(t − c))/k²
        k = _TWO_PI / self.period

        def wave(t: np.ndarray) -> np.ndarray:
            theta = k * (t - self.peak_at)
            return (t - origin) * np.sin(theta) / k + np.cos(theta) / (k * k)

        flat = (t1 - t0) * (0.5 * (t0 + t1) - origin)
        return self.mean * (flat + self.amplitude * (wave(t1) - wave(t0)))

    def to_yaml(self) -> Any:
        body: dict[str, Any] = {"mean": self.mean, "amplitude": self.amplitude}
        if self.peak_at:
            body["peakAt"] = format_duration(self.peak_at)
        if self.period != 86400.0:
            body["period"] = format_duration(self.period)
        return {"diurnal": body}


_Table = tuple[Any, Any, Any]
"""A step function's (starts, rates, requests before each start), as lists or as arrays."""


class _Steps:
    """A right-continuous step function r(t) = rates[k] on [at[k], at[k+1]) and its integral.

    Without ``period`` the first rate extends to t < 0 and the last holds for ever; with it the
    steps on [0, period) repeat.
    """

    __slots__ = ("at", "at_list", "moments", "period", "tables", "total", "total_moment")

    def __init__(self, at: np.ndarray, rates: np.ndarray, period: float | None) -> None:
        self.at, self.period = at, period
        ends = np.append(at[1:], period if period is not None else at[-1])
        cum = np.concatenate(([0.0], np.cumsum(rates * (ends - at))))[:-1]
        self.total = float(cum[-1] + rates[-1] * (ends[-1] - at[-1]))  # one period's worth
        # the same for ∫_0^t τ·r(τ) dτ (``moment_primitive``)
        halves = rates * (ends * ends - at * at) / 2.0
        self.moments = np.concatenate(([0.0], np.cumsum(halves)))[:-1]
        self.total_moment = float(self.moments[-1] + halves[-1])
        lists = (at.tolist(), rates.tolist(), cum.tolist())
        self.tables: dict[_Backend, _Table] = {_Floats: lists, _Arrays: (at, rates, cum)}
        self.at_list: list[float] = lists[0]

    def _locate(self, xp: _Backend, t: Any) -> tuple[Any, Any, Any]:
        """Where ``t`` falls: (whole periods before it, its time within its period, the index
        of its step). The one reduction every evaluation goes through."""
        cycles = 0
        if self.period is not None:
            cycles = xp.floor(t / self.period)
            t = t - cycles * self.period
        return cycles, t, xp.step(self, t)

    def rate(self, t: Any) -> Any:
        xp, t = _numbers(t)
        _, _, k = self._locate(xp, t)
        return self.tables[xp][1][k]

    def primitive(self, t: Any) -> Any:
        """F(t) = ∫_0^t r, so that ∫_{t0}^{t1} r = F(t1) − F(t0)."""
        xp, t = _numbers(t)
        cycles, t, k = self._locate(xp, t)
        at, rates, cum = self.tables[xp]
        whole = cycles * self.total if self.period is not None else 0.0
        return whole + cum[k] + rates[k] * (t - at[k])

    def moment_primitive(self, t: np.ndarray) -> np.ndarray:
        """G(t) = ∫_0^t τ·r(τ) dτ (arrays): period c of a repeating profile adds
        c·P·(one period's requests) + its own moment."""
        cycles, t, k = self._locate(_Arrays, np.asarray(t, dtype=float))
        at, rates, cum = self.tables[_Arrays]
        inside = self.moments[k] + rates[k] * (t * t - at[k] * at[k]) / 2.0
        if self.period is None:
            return inside
        p = self.period
        whole = p * self.total * cycles * (cycles - 1.0) / 2.0 + cycles * self.total_moment
        return whole + cycles * p * (cum[k] + rates[k] * (t - at[k])) + inside

    def max_rate(self, t0: float, t1: float) -> float:
        if t1 < t0:
            t0, t1 = t1, t0
        c0, _, k0 = self._locate(_Floats, t0)  # each end mapped as rate() maps it
        c1, _, k1 = self._locate(_Floats, t1)
        rates = self.tables[_Floats][1]
        if c1 == c0:
            return max(rates[k0 : k1 + 1])
        if c1 == c0 + 1:
            return max(max(rates[k0:]), max(rates[: k1 + 1]))
        return max(rates)


class _StepProfile(RateProfile):
    """Shared evaluation of the step-function profiles (Piecewise, Trace)."""

    @cached_property
    def _steps(self) -> _Steps:
        raise NotImplementedError

    def rate(self, t: Any) -> Any:
        return self._steps.rate(t)

    def integral(self, t0: Any, t1: Any) -> Any:
        steps = self._steps
        return steps.primitive(t1) - steps.primitive(t0)

    def max_rate(self, t0: float, t1: float) -> float:
        return self._steps.max_rate(t0, t1)

    def moment(self, t0: np.ndarray, t1: np.ndarray, origin: np.ndarray) -> np.ndarray:
        steps = self._steps
        return (
            steps.moment_primitive(t1)
            - steps.moment_primitive(t0)
            - origin * (steps.primitive(t1) - steps.primitive(t0))
        )

    def excess(self, t0: np.ndarray, t1: np.ndarray, level: float) -> np.ndarray:
        # max(0, r − level) is itself a step function on the same steps
        clipped = self._clipped.get(level)
        if clipped is None:
            steps = self._steps
            rates = np.maximum(steps.tables[_Arrays][1] - level, 0.0)
            if len(self._clipped) > 64:  # (levels are capacities: a few per run)
                self._clipped.clear()
            clipped = self._clipped[level] = _Steps(steps.at, rates, steps.period)
        t0, t1 = np.asarray(t0, dtype=float), np.asarray(t1, dtype=float)
        return np.maximum(clipped.primitive(t1) - clipped.primitive(t0), 0.0)

    def time_above(self, t0: np.ndarray, t1: np.ndarray, level: float) -> np.ndarray:
        # 1{r > level} is a step function on the same steps
        above = self._clipped.get(("time", level))
        if above is None:
            steps = self._steps
            rates = (steps.tables[_Arrays][1] > level).astype(float)
            above = self._clipped[("time", level)] = _Steps(steps.at, rates, steps.period)
        t0, t1 = np.asarray(t0, dtype=float), np.asarray(t1, dtype=float)
        return np.maximum(above.primitive(t1) - above.primitive(t0), 0.0)

    @cached_property
    def _clipped(self) -> dict:
        return {}


class RatePoint(Model):
    """From ``at`` on, the rate is ``rate`` (until the next point)."""

    at: Duration
    rate: float = Field(ge=0, allow_inf_nan=False)


class Piecewise(_StepProfile):
    """A step profile: ``{piecewise: [{at: 0, rate: 100}, {at: 1h, rate: 400}]}``.

    The first point must be at 0; the last rate holds for ever, or, with ``period``, the steps
    on [0, period) repeat (a daily shape).
    """

    kind: ClassVar[str] = "piecewise"
    points: tuple[RatePoint, ...] = Field(min_length=1)
    period: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> Piecewise:
        ats = [p.at for p in self.points]
        if ats[0] != 0:
            raise ValueError(f"piecewise: the first point must be at 0 (got at={ats[0]})")
        if any(b <= a for a, b in itertools.pairwise(ats)):
            raise ValueError("piecewise: points must be in strictly increasing order of at")
        if self.period is not None and self.period <= ats[-1]:
            raise ValueError(f"piecewise: period ({self.period}) must be after the last point")
        return self

    @cached_property
    def _steps(self) -> _Steps:
        at = np.array([p.at for p in self.points], dtype=float)
        rates = np.array([p.rate for p in self.points], dtype=float)
        return _Steps(at, rates, self.period)

    def to_yaml(self) -> Any:
        points = [{"at": format_duration(p.at), "rate": p.rate} for p in self.points]
        if self.period is None:
            return {"piecewise": points}
        return {"piecewise": {"points": points, "period": format_duration(self.period)}}


class Trace(_StepProfile):
    """A recorded profile: per-minute request counts, rate = count/60 within each minute.

    ``counts`` inline, or read from the ``column`` of a CSV ``file`` at load (``file`` is kept
    for the YAML round trip; ``counts`` then holds what was read). Beyond the last minute the
    trace repeats (default) or holds the last minute's rate.
    """

    kind: ClassVar[str] = "trace"
    counts: tuple[float, ...] = ()
    file: str | None = None
    column: str = "count"
    beyond: Literal["repeat", "hold"] = "repeat"

    @model_validator(mode="after")
    def _check(self) -> Trace:
        if not self.counts:
            if self.file is not None:
                raise ValueError(
                    f"trace file {self.file!r} is not loaded: use parse_rate(..., base_dir) or "
                    "Trace.from_csv(path)"
                )
            raise ValueError("trace needs counts or a file")
        bad = next((c for c in self.counts if not (c >= 0 and math.isfinite(c))), None)
        if bad is not None:
            raise ValueError(f"trace counts must be finite and >= 0 (got {bad})")
        return self

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        *,
        column: str = "count",
        beyond: Literal["repeat", "hold"] = "repeat",
        name: str | None = None,
    ) -> Trace:
        """Read per-minute counts from ``column`` of a CSV with a header row."""
        counts = read_trace(Path(path), column)
        return cls(counts=counts, file=name or str(path), column=column, beyond=beyond)

    @cached_property
    def _steps(self) -> _Steps:
        rates = np.asarray(self.counts, dtype=float) / 60.0
        at = 60.0 * np.arange(rates.size, dtype=float)
        return _Steps(at, rates, 60.0 * rates.size if self.beyond == "repeat" else None)

    @property
    def duration(self) -> float:
        """Seconds the trace covers (60 × minutes)."""
        return 60.0 * len(self.counts)

    def to_yaml(self) -> Any:
        body: dict[str, Any] = {"file": self.file} if self.file else {"counts": list(self.counts)}
        if self.file and self.column != "count":
            body["column"] = self.column
        if self.beyond != "repeat":
            body["beyond"] = self.beyond
        return {"trace": body}

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        if self.file:
            yield "file", self.file
            yield "minutes", len(self.counts)
        else:
            yield "counts", self.counts
        if self.beyond != "repeat":
            yield "beyond", self.beyond
