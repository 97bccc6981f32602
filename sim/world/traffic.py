"""The ``Traffic`` a release meets, and the YAML forms of its rate (``sim.world.rates``).

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

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema

from policies.base import Model, brief
from policies.durations import Duration
from sim.world.distributions import json_object, validate_as
from sim.world.rates import (
    Constant,
    Diurnal,
    Piecewise,
    RateProfile,
    Trace,
    as_times,
    read_trace,
)

__all__ = ["RateSpec", "Traffic", "base_directory", "parse_rate"]

_BASE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("base_dir", default=None)


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
        raise ValueError(f"{brief(data)} is not a rate")
    if isinstance(data, int | float):
        return validate_as(Constant, "constant", {"rate": data})
    if not isinstance(data, dict) or len(data) != 1:
        kinds = ", ".join(_KINDS)
        raise ValueError(
            f"a rate is a number or a one-key mapping {{{kinds}: ...}} (got {brief(data)})"
        )
    ((kind, body),) = data.items()
    if kind not in _KINDS:
        raise ValueError(f"unknown rate profile {brief(kind)} (use one of {', '.join(_KINDS)})")
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
        body = {**body, "counts": read_trace(base / body["file"], str(column))}
    return validate_as(_KINDS[kind], kind, body)


def _parse_spec(data: Any, info: ValidationInfo) -> RateProfile:
    context = info.context if isinstance(info.context, dict) else {}
    return parse_rate(data, context.get("base_dir"))


_NUMBER = {"type": "number", "minimum": 0}
_DURATION = {"anyOf": [_NUMBER, {"type": "string"}]}
_POINTS = {"type": "array", "items": json_object(("at", "rate"), at=_DURATION, rate=_NUMBER)}
_DIURNAL = json_object(
    ("mean", "amplitude"),
    mean=_NUMBER,
    peakAt=_DURATION,
    period=_DURATION,
    amplitude={"type": "number", "minimum": 0, "maximum": 1},
)
_TRACE = json_object(
    file={"type": "string"},
    column={"type": "string"},
    counts={"type": "array", "items": _NUMBER},
    beyond={"enum": ["repeat", "hold"]},
)
_PIECEWISE = {"anyOf": [_POINTS, json_object(("points",), points=_POINTS, period=_DURATION)]}
_KIND_SCHEMA = json_object(constant=_NUMBER, diurnal=_DIURNAL, piecewise=_PIECEWISE, trace=_TRACE)
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
        return self.rate.rate(as_times(t) + self.start_at)

    def integral(self, t0: Any, t1: Any) -> Any:
        """Expected requests in [t0, t1] (release time), exact."""
        s = self.start_at
        return self.rate.integral(as_times(t0) + s, as_times(t1) + s)

    def max_rate(self, t0: float, t1: float) -> float:
        """The highest rate in [t0, t1] (release time)."""
        return self.rate.max_rate(t0 + self.start_at, t1 + self.start_at)

    def excess(self, t0: Any, t1: Any, level: float) -> Any:
        """Expected requests beyond ``level`` per second in [t0, t1] (release time), exact."""
        s = self.start_at
        return self.rate.excess(as_times(t0) + s, as_times(t1) + s, level)

    def time_above(self, t0: Any, t1: Any, level: float) -> Any:
        """Seconds in [t0, t1] (release time) with the rate above ``level``, exact."""
        s = self.start_at
        return self.rate.time_above(as_times(t0) + s, as_times(t1) + s, level)

    def moment(self, t0: Any, t1: Any, origin: Any) -> Any:
        """∫_{t0}^{t1} (t − origin)·rate dt (release time), exact: requests weighted by their
        time since ``origin``."""
        s = self.start_at
        return self.rate.moment(as_times(t0) + s, as_times(t1) + s, as_times(origin) + s)

    @classmethod
    def load(cls, data: Any, *, base_dir: str | Path | None = None) -> Traffic:
        """Validate YAML data, reading a trace file relative to ``base_dir``."""
        return cls.model_validate(data, context={"base_dir": base_dir})
