"""Request-rate profiles with exact integrals, and the ``Traffic`` a release meets.

The engine never simulates single requests: between two control events it draws
Poisson(∫ rate) requests (DESIGN §5, anchors §5.2), so every profile gives its integral in
closed form, for scalars (fast path, pure Python) and numpy arrays alike. Rates are requests
per second; times are seconds of *profile* time (e.g. time of day for a diurnal profile).

YAML forms of a ``RateSpec``::

    2000 | {constant: 2000}                                 Constant(rate)
    {diurnal: {mean: 2000, amplitude: 0.6, peakAt: 14h}}    Diurnal (period defaults to 1d)
    {piecewise: [{at: 0, rate: 100}, {at: 1h, rate: 400}]} Piecewise, holds the last rate
    {piecewise: {points: [...], period: 1d}}                Piecewise repeating every period
    {trace: {file: traffic.csv, column: count}}             Trace of per-minute counts (CSV)
    {trace: {counts: [1200, 1350, ...], beyond: hold}}      Trace given inline

A trace's file is read once, at load, relative to a base directory: the ``base_dir`` of the
pydantic validation context, else the directory set by ``base_directory(...)``, else the
current directory. Beyond its last minute a trace **repeats** (``beyond: repeat``, the default:
a one-day trace is a daily profile) or **holds** its last minute's rate (``beyond: hold``).
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import csv
import itertools
import math
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from policies.base import Model
from policies.durations import Duration, format_duration
from sim.world.distributions import json_object, validate_as

__all__ = [
    "Constant",
    "Diurnal",
    "Piecewise",
    "RatePoint",
    "RateProfile",
    "RateSpec",
    "Trace",
    "Traffic",
    "base_directory",
    "parse_rate",
]

_TWO_PI = 2.0 * math.pi
_BASE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("base_dir", default=None)


def _scalar(*values: Any) -> bool:
    return all(isinstance(v, int | float) for v in values)


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

    def to_yaml(self) -> Any:
        """The YAML form a user would write (what ``RateSpec`` serialises to)."""
        raise NotImplementedError


class Constant(RateProfile):
    """The same rate all day: ``2000`` or ``{constant: 2000}``."""

    kind: ClassVar[str] = "constant"
    rate_: float = Field(alias="rate", ge=0, allow_inf_nan=False)

    def rate(self, t):
        if _scalar(t):
            return self.rate_
        return np.full(np.shape(t), self.rate_)

    def integral(self, t0, t1):
        if _scalar(t0, t1):
            return self.rate_ * (t1 - t0)
        return self.rate_ * (np.asarray(t1, dtype=float) - np.asarray(t0, dtype=float))

    def max_rate(self, t0, t1):
        return self.rate_

    def to_yaml(self):
        return {"constant": self.rate_}

    def __repr_args__(self):
        yield "rate", self.rate_


class Diurnal(RateProfile):
    """mean·(1 + amplitude·cos(2π(t − peakAt)/period)): a daily cycle peaking at ``peakAt``."""

    kind: ClassVar[str] = "diurnal"
    mean: float = Field(ge=0, allow_inf_nan=False)
    amplitude: float = Field(ge=0, le=1)
    peak_at: Duration = 0.0
    period: Duration = Field(86400.0, gt=0)

    def rate(self, t):
        if _scalar(t):
            return self.mean * (
                1.0 + self.amplitude * math.cos(_TWO_PI * (t - self.peak_at) / self.period)
            )
        phase = _TWO_PI * (np.asarray(t, dtype=float) - self.peak_at) / self.period
        return self.mean * (1.0 + self.amplitude * np.cos(phase))

    def integral(self, t0, t1):
        # sin B − sin A = 2 cos((A+B)/2) sin((B−A)/2): no cancellation for short intervals late
        # in the day.
        k = _TWO_PI / self.period
        wave = self.mean * self.amplitude / k
        if _scalar(t0, t1):
            mid = 0.5 * k * (t0 + t1 - 2.0 * self.peak_at)
            return self.mean * (t1 - t0) + wave * 2.0 * math.cos(mid) * math.sin(
                0.5 * k * (t1 - t0)
            )
        t0 = np.asarray(t0, dtype=float)
        t1 = np.asarray(t1, dtype=float)
        mid = 0.5 * k * (t0 + t1 - 2.0 * self.peak_at)
        return self.mean * (t1 - t0) + wave * 2.0 * np.cos(mid) * np.sin(0.5 * k * (t1 - t0))

    def max_rate(self, t0, t1):
        # Between two peaks the cosine has no interior maximum, so the sup is a peak or an end.
        next_peak = self.peak_at + math.ceil((t0 - self.peak_at) / self.period) * self.period
        if next_peak <= t1:
            return self.mean * (1.0 + self.amplitude)
        return max(self.rate(float(t0)), self.rate(float(t1)))

    def to_yaml(self):
        body: dict[str, Any] = {"mean": self.mean, "amplitude": self.amplitude}
        if self.peak_at:
            body["peakAt"] = format_duration(self.peak_at)
        if self.period != 86400.0:
            body["period"] = format_duration(self.period)
        return {"diurnal": body}


class _Steps:
    """A right-continuous step function r(t) = rates[k] on [at[k], at[k+1]) and its integral.

    Without ``period`` the first rate extends to t < 0 and the last holds for ever; with it the
    steps on [0, period) repeat.
    """

    __slots__ = ("at", "at_list", "cum", "cum_list", "n", "period", "rates", "rates_list", "total")

    def __init__(self, at: np.ndarray, rates: np.ndarray, period: float | None) -> None:
        self.at, self.rates, self.period, self.n = at, rates, period, len(at)
        ends = np.append(at[1:], period if period is not None else at[-1])
        self.cum = np.concatenate(([0.0], np.cumsum(rates * (ends - at))))[:-1]
        self.total = float(self.cum[-1] + rates[-1] * (ends[-1] - at[-1]))  # one period's worth
        self.at_list, self.rates_list, self.cum_list = (
            at.tolist(),
            rates.tolist(),
            self.cum.tolist(),
        )

    def _index(self, tau: float) -> int:
        return min(max(bisect.bisect_right(self.at_list, tau) - 1, 0), self.n - 1)

    def rate(self, t: Any) -> Any:
        if _scalar(t):
            if self.period is not None:
                t = t - math.floor(t / self.period) * self.period
            return self.rates_list[self._index(t)]
        t = np.asarray(t, dtype=float)
        if self.period is not None:
            t = np.mod(t, self.period)
        idx = np.clip(np.searchsorted(self.at, t, side="right") - 1, 0, self.n - 1)
        return self.rates[idx]

    def primitive(self, t: Any) -> Any:
        """F(t) = ∫_0^t r, so that ∫_{t0}^{t1} r = F(t1) − F(t0)."""
        if _scalar(t):
            whole = 0.0
            if self.period is not None:
                cycles = math.floor(t / self.period)
                t = t - cycles * self.period
                whole = cycles * self.total
            k = self._index(t)
            return whole + self.cum_list[k] + self.rates_list[k] * (t - self.at_list[k])
        t = np.asarray(t, dtype=float)
        whole = 0.0
        if self.period is not None:
            cycles = np.floor(t / self.period)
            t = t - cycles * self.period
            whole = cycles * self.total
        idx = np.clip(np.searchsorted(self.at, t, side="right") - 1, 0, self.n - 1)
        return whole + self.cum[idx] + self.rates[idx] * (t - self.at[idx])

    def max_rate(self, t0: float, t1: float) -> float:
        if t1 < t0:
            t0, t1 = t1, t0
        if self.period is None:
            return max(self.rates_list[self._index(t0) : self._index(t1) + 1])
        period, rates = self.period, self.rates_list
        c0, c1 = math.floor(t0 / period), math.floor(t1 / period)  # as rate() maps each end
        k0, k1 = self._index(t0 - c0 * period), self._index(t1 - c1 * period)
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

    def rate(self, t):
        return self._steps.rate(t)

    def integral(self, t0, t1):
        steps = self._steps
        return steps.primitive(t1) - steps.primitive(t0)

    def max_rate(self, t0, t1):
        return self._steps.max_rate(t0, t1)


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

    def to_yaml(self):
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
        counts = _read_counts(Path(path), column)
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

    def to_yaml(self):
        body: dict[str, Any] = {"file": self.file} if self.file else {"counts": list(self.counts)}
        if self.file and self.column != "count":
            body["column"] = self.column
        if self.beyond != "repeat":
            body["beyond"] = self.beyond
        return {"trace": body}

    def __repr_args__(self):
        if self.file:
            yield "file", self.file
            yield "minutes", len(self.counts)
        else:
            yield "counts", self.counts
        if self.beyond != "repeat":
            yield "beyond", self.beyond


def _read_counts(path: Path, column: str) -> tuple[float, ...]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in reader.fieldnames:
                have = ", ".join(reader.fieldnames or []) or "no header"
                raise ValueError(f"trace file {str(path)!r} has no column {column!r} ({have})")
            counts = []
            for line, row in enumerate(reader, start=2):
                text = (row.get(column) or "").strip()
                try:
                    counts.append(float(text))
                except ValueError:
                    raise ValueError(
                        f"trace file {str(path)!r} line {line}: {column} {text!r} is not a number"
                    ) from None
    except OSError as exc:
        raise ValueError(f"cannot read trace file {str(path)!r}: {exc.strerror}") from None
    if not counts:
        raise ValueError(f"trace file {str(path)!r} has no rows")
    return tuple(counts)


@contextlib.contextmanager
def base_directory(path: str | Path) -> Iterator[None]:
    """Resolve trace files under ``path`` while validating (e.g. the scenario file's folder)."""
    token = _BASE_DIR.set(Path(path))
    try:
        yield
    finally:
        _BASE_DIR.reset(token)


_KINDS: dict[str, type[RateProfile]] = {
    cls.kind: cls for cls in (Constant, Diurnal, Piecewise, Trace)
}


def parse_rate(data: Any, base_dir: str | Path | None = None) -> RateProfile:
    """A rate profile from its YAML form (module docstring); ValueError if malformed."""
    if isinstance(data, RateProfile):
        return data
    if isinstance(data, bool):
        raise ValueError(f"{data!r} is not a rate")
    if isinstance(data, int | float):
        return validate_as(Constant, "constant", {"rate": data})
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError(
            f"a rate is a number or a one-key mapping {{{', '.join(_KINDS)}: ...}} (got {data!r})"
        )
    ((kind, body),) = data.items()
    if kind not in _KINDS:
        raise ValueError(f"unknown rate profile {kind!r} (use one of {', '.join(_KINDS)})")
    if kind == "constant":
        body = {"rate": body}
    elif kind == "piecewise" and isinstance(body, list | tuple):
        body = {"points": list(body)}
    elif kind == "trace" and isinstance(body, dict) and "file" in body:
        if "counts" in body:
            raise ValueError("trace: give counts or file, not both")
        if not isinstance(body["file"], str) or not body["file"]:
            raise ValueError("trace.file: must be a file name")
        base = Path(base_dir) if base_dir is not None else (_BASE_DIR.get() or Path.cwd())
        column = body.get("column", "count")
        body = {**body, "counts": _read_counts(base / body["file"], str(column))}
    return validate_as(_KINDS[kind], kind, body)


def _parse_spec(data: Any, info: ValidationInfo) -> RateProfile:
    context = info.context if isinstance(info.context, dict) else {}
    return parse_rate(data, context.get("base_dir"))


_NUMBER = {"type": "number", "minimum": 0}
_DURATION = {"anyOf": [_NUMBER, {"type": "string"}]}
_POINTS = {"type": "array", "items": json_object(("at", "rate"), at=_DURATION, rate=_NUMBER)}
_KIND_SCHEMA = json_object(
    constant=_NUMBER,
    diurnal=json_object(("mean", "amplitude"), mean=_NUMBER, peakAt=_DURATION, period=_DURATION,
                 amplitude={"type": "number", "minimum": 0, "maximum": 1}),
    piecewise={"anyOf": [_POINTS, json_object(("points",), points=_POINTS, period=_DURATION)]},
    trace=json_object(file={"type": "string"}, column={"type": "string"},
               counts={"type": "array", "items": _NUMBER}, beyond={"enum": ["repeat", "hold"]}),
)  # fmt: skip
_SCHEMA = {
    "title": "Rate",
    "anyOf": [_NUMBER, {**_KIND_SCHEMA, "minProperties": 1, "maxProperties": 1}],
}

RateSpec = Annotated[
    RateProfile,
    PlainValidator(_parse_spec),
    PlainSerializer(lambda r: r.to_yaml(), when_used="json"),
    WithJsonSchema(_SCHEMA),
]
"""A pydantic field type: a number or a one-key mapping in YAML, a ``RateProfile`` inside."""


class Traffic(Model):
    """The service's request rate, shifted so that t = 0 is the release start.

    ``startAt`` is the profile time at which the release starts (e.g. ``14h`` on a diurnal
    profile: release at the daily peak), so the same release can be run at peak and at trough.
    """

    rate: RateSpec
    start_at: Duration = 0.0

    def rate_at(self, t: Any) -> Any:
        """Requests per second ``t`` seconds after the release start."""
        if _scalar(t):
            return self.rate.rate(t + self.start_at)
        return self.rate.rate(np.asarray(t, dtype=float) + self.start_at)

    def integral(self, t0: Any, t1: Any) -> Any:
        """Expected requests in [t0, t1] (release time), exact."""
        s = self.start_at
        if _scalar(t0, t1):
            return self.rate.integral(t0 + s, t1 + s)
        return self.rate.integral(np.asarray(t0, dtype=float) + s, np.asarray(t1, dtype=float) + s)

    def max_rate(self, t0: float, t1: float) -> float:
        """The highest rate in [t0, t1] (release time)."""
        return self.rate.max_rate(t0 + self.start_at, t1 + self.start_at)

    @classmethod
    def load(cls, data: Any, *, base_dir: str | Path | None = None) -> Traffic:
        """Validate YAML data, reading a trace file relative to ``base_dir``."""
        return cls.model_validate(data, context={"base_dir": base_dir})
