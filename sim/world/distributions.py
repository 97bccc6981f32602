"""Small declarative distributions of durations: pod start-up, latency, human delays.

A scenario says ``startup: {uniform: [20s, 40s]}`` or ``latency: {lognormal: {median: 80ms,
sigma: 0.5}}``; the world needs to draw from it fast and, for oracles and for order statistics
(a latency quantile is F⁻¹ of a Beta draw, DESIGN §5), to know its exact ``cdf`` and ``ppf``.
Every value is a duration in seconds (YAML numbers or "80ms"/"30s"/"10m" strings), so every
distribution here lives on [0, ∞).

YAML forms of a ``DistributionSpec``::

    30s | 0.08 | "80ms"                     Fixed(value)
    {fixed: 30s}                            Fixed(value)
    {uniform: [20s, 40s]}                   Uniform(low, high)   (or {low, high})
    {exponential: {mean: 2h}}               Exponential(mean)    (or {exponential: 2h})
    {lognormal: {median: 80ms, sigma: 0.5}} LogNormal(median, sigma)
    {gamma: {mean: 10m, shape: 2}}          Gamma(mean, shape)
    {empirical: [1s, 2s, 5s]}               Empirical(values)    each value with mass 1/n
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Annotated, Any, ClassVar, TypeVar

import numpy as np
from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from policies.base import Model, brief, format_path
from policies.durations import Duration, format_duration, parse_duration

__all__ = [
    "Distribution",
    "DistributionSpec",
    "Empirical",
    "Exponential",
    "Fixed",
    "Gamma",
    "LogNormal",
    "Uniform",
    "parse_distribution",
]

M = TypeVar("M", bound=Model)

# Bounds that keep every moment and draw finite: a lognormal's mean is median·exp(σ²/2), which
# overflows past σ ≈ 37 and is already 5e21 × the median at 10; a gamma's scale is mean/shape
# (a shape below 1e-3 makes nearly every draw 0 and a few astronomically large).
MAX_SIGMA = 10.0
MIN_SHAPE, MAX_SHAPE = 1e-3, 1e6


def _out(values: np.ndarray) -> Any:
    """A 0-d result comes back as a numpy scalar, an array input as an array."""
    return values[()] if values.ndim == 0 else values


def _quantiles(q: Any) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(q, dtype=float)
    return arr, (arr >= 0.0) & (arr <= 1.0)


class Distribution(Model):
    """A distribution on [0, ∞) with exact moments, cdf and ppf, and fast numpy sampling."""

    kind: ClassVar[str] = ""

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] | None = None) -> Any:
        """One float (``size=None``) or an array of draws, from ``rng`` only."""
        raise NotImplementedError

    @property
    def mean(self) -> float:
        raise NotImplementedError

    @property
    def var(self) -> float:
        raise NotImplementedError

    def cdf(self, x: Any) -> Any:
        """P(X <= x), elementwise."""
        raise NotImplementedError

    def ppf(self, q: Any) -> Any:
        """The smallest x with cdf(x) >= q, elementwise; NaN outside [0, 1]."""
        raise NotImplementedError

    def to_yaml(self) -> Any:
        """The YAML form a user would write (what ``DistributionSpec`` serialises to)."""
        raise NotImplementedError


class Fixed(Distribution):
    """Always ``value`` (a plain number or duration string in YAML)."""

    kind: ClassVar[str] = "fixed"
    value: Duration

    def sample(self, rng, size=None):
        return self.value if size is None else np.full(size, self.value)

    @property
    def mean(self) -> float:
        return self.value

    @property
    def var(self) -> float:
        return 0.0

    def cdf(self, x):
        return _out((np.asarray(x, dtype=float) >= self.value).astype(float))

    def ppf(self, q):
        _, ok = _quantiles(q)
        return _out(np.where(ok, self.value, np.nan))

    def to_yaml(self):
        return format_duration(self.value)


class Uniform(Distribution):
    """Uniform on [low, high]: ``{uniform: [20s, 40s]}``."""

    kind: ClassVar[str] = "uniform"
    low: Duration
    high: Duration

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.low > self.high:
            raise ValueError(f"uniform needs low <= high (got low={self.low}, high={self.high})")
        return self

    def sample(self, rng, size=None):
        return rng.uniform(self.low, self.high, size)

    @property
    def mean(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def var(self) -> float:
        return (self.high - self.low) ** 2 / 12.0

    def cdf(self, x):
        x = np.asarray(x, dtype=float)
        width = self.high - self.low
        if width == 0.0:
            return _out((x >= self.low).astype(float))
        return _out(np.clip((x - self.low) / width, 0.0, 1.0))

    def ppf(self, q):
        arr, ok = _quantiles(q)
        return _out(np.where(ok, self.low + arr * (self.high - self.low), np.nan))

    def to_yaml(self):
        return {"uniform": [format_duration(self.low), format_duration(self.high)]}


class Exponential(Distribution):
    """Memoryless waits (time to detect, hazards): ``{exponential: {mean: 2h}}``."""

    kind: ClassVar[str] = "exponential"
    mean_: Duration = Field(alias="mean", gt=0)

    def sample(self, rng, size=None):
        return rng.exponential(self.mean_, size)

    @property
    def mean(self) -> float:
        return self.mean_

    @property
    def var(self) -> float:
        return self.mean_**2

    def cdf(self, x):
        x = np.asarray(x, dtype=float)
        return _out(np.where(x > 0, -np.expm1(-np.maximum(x, 0.0) / self.mean_), 0.0))

    def ppf(self, q):
        arr, ok = _quantiles(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _out(np.where(ok, -self.mean_ * np.log1p(-arr), np.nan))

    def to_yaml(self):
        return {"exponential": {"mean": format_duration(self.mean_)}}

    def __repr_args__(self):
        yield "mean", self.mean_


class LogNormal(Distribution):
    """Latency: log X ~ Normal(log median, sigma), ``{lognormal: {median: 80ms, sigma: 1}}``."""

    kind: ClassVar[str] = "lognormal"
    median: Duration = Field(gt=0)
    sigma: float = Field(ge=0, le=MAX_SIGMA, allow_inf_nan=False)

    @cached_property
    def _mu(self) -> float:
        return math.log(self.median)

    def sample(self, rng, size=None):
        return rng.lognormal(self._mu, self.sigma, size)

    @property
    def mean(self) -> float:
        return self.median * math.exp(0.5 * self.sigma**2)

    @property
    def var(self) -> float:
        s2 = self.sigma**2
        return self.median**2 * math.exp(s2) * math.expm1(s2)

    def cdf(self, x):
        x = np.asarray(x, dtype=float)
        if self.sigma == 0.0:
            return _out((x >= self.median).astype(float))
        with np.errstate(divide="ignore"):
            z = (np.log(np.maximum(x, 0.0)) - self._mu) / self.sigma
        from scipy import special  # scipy loads lazily: a slow import most runs never need

        return _out(special.ndtr(z))

    def ppf(self, q):
        arr, ok = _quantiles(q)
        with np.errstate(invalid="ignore"):
            from scipy import special

            return _out(np.where(ok, np.exp(self._mu + self.sigma * special.ndtri(arr)), np.nan))

    def to_yaml(self):
        return {"lognormal": {"median": format_duration(self.median), "sigma": self.sigma}}


class Gamma(Distribution):
    """``shape`` exponential phases (operator delays): ``{gamma: {mean: 10m, shape: 2}}``."""

    kind: ClassVar[str] = "gamma"
    mean_: Duration = Field(alias="mean", gt=0)
    shape: float = Field(gt=0, le=MAX_SHAPE, allow_inf_nan=False)

    @model_validator(mode="after")
    def _finite(self) -> Gamma:
        if self.shape < MIN_SHAPE:
            raise ValueError(f"gamma.shape {self.shape:g} is below {MIN_SHAPE:g} (the limit)")
        return self

    @cached_property
    def _scale(self) -> float:
        return self.mean_ / self.shape

    def sample(self, rng, size=None):
        return rng.gamma(self.shape, self._scale, size)

    @property
    def mean(self) -> float:
        return self.mean_

    @property
    def var(self) -> float:
        return self.shape * self._scale**2

    def cdf(self, x):
        x = np.asarray(x, dtype=float)
        from scipy import special

        return _out(special.gammainc(self.shape, np.maximum(x, 0.0) / self._scale))

    def ppf(self, q):
        arr, ok = _quantiles(q)
        safe = np.where(ok, arr, 0.5)
        from scipy import special

        return _out(np.where(ok, special.gammaincinv(self.shape, safe) * self._scale, np.nan))

    def to_yaml(self):
        return {"gamma": {"mean": format_duration(self.mean_), "shape": self.shape}}

    def __repr_args__(self):
        yield "mean", self.mean_
        yield "shape", self.shape


class _Table:
    """Sorted values and their cdf levels, cached on an ``Empirical``. A plain object on
    purpose: pydantic's ``==`` compares the instance dict first, and arrays there would raise."""

    __slots__ = ("levels", "sorted")

    def __init__(self, values: np.ndarray) -> None:
        self.sorted = np.sort(values)
        self.levels = np.arange(1, values.size + 1, dtype=float) / values.size
        self.sorted.flags.writeable = self.levels.flags.writeable = False


class Empirical(Distribution):
    """Measured values, each with mass 1/n (resampling a recording): ``{empirical: [...]}``."""

    kind: ClassVar[str] = "empirical"
    values: tuple[Duration, ...] = Field(min_length=1)

    @cached_property
    def _table(self) -> _Table:
        return _Table(np.asarray(self.values, dtype=float))

    def sample(self, rng, size=None):
        data = self._table.sorted
        if size is None:
            return float(data[rng.integers(data.size)])
        return data[rng.integers(data.size, size=size)]

    @property
    def mean(self) -> float:
        return float(self._table.sorted.mean())

    @property
    def var(self) -> float:
        return float(self._table.sorted.var())

    def cdf(self, x):
        x = np.asarray(x, dtype=float)
        return _out(np.searchsorted(self._table.sorted, x, side="right") / self._table.sorted.size)

    def ppf(self, q):
        arr, ok = _quantiles(q)
        idx = np.minimum(
            np.searchsorted(self._table.levels, np.where(ok, arr, 0.0)), self._table.sorted.size - 1
        )
        return _out(np.where(ok, self._table.sorted[idx], np.nan))

    def to_yaml(self):
        return {"empirical": [format_duration(v) for v in self.values]}


_KINDS: dict[str, type[Distribution]] = {
    cls.kind: cls for cls in (Fixed, Uniform, Exponential, LogNormal, Gamma, Empirical)
}


def _build(kind: str, body: Any) -> Distribution:
    cls = _KINDS[kind]
    if kind == "fixed" and not isinstance(body, dict):
        body = {"value": body}
    elif kind == "uniform" and isinstance(body, list | tuple):
        if len(body) != 2:
            raise ValueError(f"uniform takes [low, high], got {len(body)} value(s)")
        body = {"low": body[0], "high": body[1]}
    elif kind == "exponential" and not isinstance(body, dict):
        body = {"mean": body}
    elif kind == "empirical" and isinstance(body, list | tuple):
        body = {"values": list(body)}
    return validate_as(cls, kind, body)


def validate_as(cls: type[M], label: str, body: Any) -> M:
    """``cls`` from a YAML mapping; any failure is one ValueError naming ``label.field``."""
    if not isinstance(body, dict):
        raise ValueError(f"{label} takes a mapping of its parameters, got {brief(body)}")
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = format_path(tuple(first["loc"]))
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        elif first["type"] == "missing":
            msg = "is required"
        raise ValueError(f"{label}.{where}: {msg}" if where else msg) from None


def json_object(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    """A JSON Schema object with exactly these properties (for the hand-written YAML forms)."""
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": False,
    }


def parse_distribution(data: Any) -> Distribution:
    """A distribution from its YAML form (see the module docstring); ValueError if malformed."""
    if isinstance(data, Distribution):
        return data
    if isinstance(data, bool):
        raise ValueError(f"{brief(data)} is not a distribution")
    if isinstance(data, int | float | str):
        return Fixed(value=parse_duration(data))
    if isinstance(data, dict):
        if len(data) != 1:
            keys = ", ".join(map(str, data)) or "none"
            raise ValueError(
                f"a distribution is one of {', '.join(_KINDS)} as a one-key mapping (got: {keys})"
            )
        ((kind, body),) = data.items()
        if kind not in _KINDS:
            raise ValueError(f"unknown distribution {brief(kind)} (use one of {', '.join(_KINDS)})")
        return _build(kind, body)
    raise ValueError(
        f"{brief(data)} is not a distribution (a duration or e.g. {{uniform: [20s, 40s]}})"
    )


_DURATION = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
_KIND_SCHEMA = json_object(
    fixed={"anyOf": [_DURATION, json_object(("value",), value=_DURATION)]},
    uniform={
        "anyOf": [
            {"type": "array", "items": _DURATION, "minItems": 2, "maxItems": 2},
            json_object(("low", "high"), low=_DURATION, high=_DURATION),
        ]
    },
    exponential={"anyOf": [_DURATION, json_object(("mean",), mean=_DURATION)]},
    lognormal=json_object(
        ("median", "sigma"),
        median=_DURATION,
        sigma={"type": "number", "minimum": 0, "maximum": MAX_SIGMA},
    ),
    gamma=json_object(
        ("mean", "shape"),
        mean=_DURATION,
        shape={"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SHAPE},
    ),
    empirical={
        "anyOf": [
            {"type": "array", "items": _DURATION, "minItems": 1},
            json_object(("values",), values={"type": "array", "items": _DURATION, "minItems": 1}),
        ]
    },
)
_SCHEMA = {
    "title": "Distribution",
    "anyOf": [_DURATION, {**_KIND_SCHEMA, "minProperties": 1, "maxProperties": 1}],
}

DistributionSpec = Annotated[
    Distribution,
    PlainValidator(parse_distribution),
    PlainSerializer(lambda d: d.to_yaml(), when_used="json"),
    WithJsonSchema(_SCHEMA),
]
"""A pydantic field type: a duration or a one-key mapping in YAML, a ``Distribution`` inside."""
