"""The user population: unique users, not just requests (DESIGN §5).

Users-hurt blast radius depends on the routing key (anchors §3.2: 1 % weight, 1 request/min,
1 h: random routing touches 45 % of users, sticky 1 %), so users are modelled, never requests:

- ``UserPopulation`` (YAML): how many users, how unequal their activity, which segments.
- ``Users``: built once, read-only, shared by replications and policies (common random
  numbers): per user an activity share, a sticky bucket in [0, 100) (bucket < w is on the
  canary at weight w percent) and segment membership. Who was hurt or exposed is drawn by the
  engine's ``sim.engine.flows.UserCells``.

Modelling choices: activity, bucket and segment membership are independent of each other;
segments whose overlap is not stated are independent (the overlap is the product of the
shares); with several segments the joint law is the one closest to independence that has the
stated shares and pairwise overlaps (iterative proportional fitting), so an unstated pair is
independent unless stated overlaps force otherwise (b ⊆ c forces a&c >= a&b).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from policies.base import Model, brief
from sim.world.distributions import json_object

__all__ = ["MAX_USERS", "Activity", "NameValue", "Percent", "Segment", "UserPopulation", "Users"]


def _percent(value: Any) -> float:
    try:
        number = float(value.strip().removesuffix("%") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not 0.0 <= number <= 100.0:
        raise ValueError(f'{brief(value)} is not a percentage in 0..100 (e.g. 2.5 or "2.5%")')
    return number


def _pct(value: float) -> str:
    return f"{value:.15g}%"


_PCT_SCHEMA = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 100}, {"type": "string"}]}
Percent = Annotated[
    float,
    BeforeValidator(_percent),
    PlainSerializer(_pct, when_used="json"),
    WithJsonSchema(_PCT_SCHEMA),
]
"""A share of users in percent: ``"2%"`` or ``2`` in YAML, a float 0..100 inside."""


class NameValue(Model):
    """A header or cookie a segment's users send: ``{name: x-beta, value: "true"}``."""

    name: str = Field(min_length=1)
    value: str


class Segment(Model):
    """A named group of users: ``{share: 2%, header: {name: x-beta, value: "true"}}``."""

    share: Percent
    header: NameValue | None = None
    cookie: NameValue | None = None

    def matched_by(self, match: Any) -> bool:
        """Whether a route-match entry (``policies.common.RouteMatch``; conditions ANDed) selects
        these users: headers by name (any case) and value, a ``cookie`` header sees name=value,
        a ``cookie`` matcher (ingress-nginx) names the cookie, whose value must be ``always``."""
        for name, condition in match.headers.items():
            if self.header is not None and name.lower() == self.header.name.lower():
                value = self.header.value
            elif name.lower() == "cookie" and self.cookie is not None:
                value = f"{self.cookie.name}={self.cookie.value}"
            else:
                return False
            if not condition.matches(value):
                return False
        if match.cookie is not None:
            cookie = self.cookie
            if cookie is None or cookie.value != "always" or not match.cookie.matches(cookie.name):
                return False
        return True


class Activity(Model):
    """How unequal users' request rates are: ``uniform`` or ``{lognormal: {sigma: 1.5}}``
    (relative rates: only each user's share of all requests matters)."""

    kind: Literal["uniform", "lognormal"] = "uniform"
    sigma: float | None = Field(None, ge=0, le=10, allow_inf_nan=False)  # 10: one user is all

    @model_validator(mode="before")
    @classmethod
    def _yaml_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"kind": data}
        if isinstance(data, dict) and len(data) == 1 and "kind" not in data:
            ((kind, body),) = data.items()
            if not isinstance(body, dict | None):
                raise ValueError(f"activity {kind} takes a mapping, got {brief(body)}")
            return {"kind": kind, **(body or {})}
        return data

    @model_validator(mode="after")
    def _params(self) -> Activity:
        if (self.kind == "lognormal") != (self.sigma is not None):
            raise ValueError("activity: lognormal needs sigma, uniform takes no parameters")
        return self

    def shares(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n iid activity weights, normalised to sum to 1."""
        if self.kind == "uniform":
            return np.full(n, 1.0 / n)
        assert self.sigma is not None  # _params: lognormal comes with its sigma
        raw = np.exp(self.sigma * rng.standard_normal(n))
        return raw / raw.sum()

    def to_yaml(self) -> Any:
        return "uniform" if self.kind == "uniform" else {"lognormal": {"sigma": self.sigma}}


_LOGNORMAL = json_object(("sigma",), sigma={"type": "number", "minimum": 0, "maximum": 10})
_ACTIVITY_SCHEMA = {"anyOf": [{"enum": ["uniform"]}, json_object(lognormal=_LOGNORMAL)]}
ActivitySpec = Annotated[
    Activity,
    PlainSerializer(lambda a: a.to_yaml(), when_used="json"),
    WithJsonSchema(_ACTIVITY_SCHEMA),
]


def _rake(p: np.ndarray, events: list[np.ndarray], targets: list[float]) -> float:
    """Iterative proportional fitting of ``p`` in place; returns the largest residual."""
    for _ in range(2000):
        worst = 0.0  # absolute residuals; sums over 2^16 cells are good to ~1e-13
        for cells, target in zip(events, targets):
            inside, outside = p[cells].sum(), p[~cells].sum()
            worst = max(worst, abs(inside - target * (inside + outside)))
            p[cells] *= target / inside if inside > 0 else 1.0
            p[~cells] *= (1.0 - target) / outside if outside > 0 else 1.0
        if worst < 1e-11:
            break
    return worst


def _cell_probabilities(shares: list[float], overlaps: dict[tuple[int, int], float]) -> np.ndarray:
    """P(membership pattern) over the 2^k patterns of k segments (bit j = segment j).

    The law closest to independence (in KL divergence: maximum entropy relative to it) with
    the given shares and stated pairwise overlaps: start from independence, zero the patterns
    no solution can use, rake to the stated overlaps. Unstated pairs stay independent whenever
    the stated ones allow it (always for two segments).
    """
    k = len(shares)
    bits = ((np.arange(1 << k)[:, None] >> np.arange(k)) & 1).astype(bool)
    s = np.asarray(shares, dtype=float)
    p = np.prod(np.where(bits, s, 1.0 - s), axis=1)
    events = [bits[:, i] for i in range(k)] + [bits[:, i] & bits[:, j] for i, j in overlaps]
    targets = [*s, *overlaps.values()]
    for (i, j), both in overlaps.items():  # patterns a stated overlap rules out on its own
        a, b = bits[:, i], bits[:, j]
        for cells, mass in (
            (a & b, both),
            (a & ~b, s[i] - both),
            (~a & b, s[j] - both),
            (~a & ~b, 1.0 - s[i] - s[j] + both),
        ):
            p[cells] *= mass > 1e-15
    if overlaps and _rake(p, events, targets) > 1e-11 and k <= 10:
        # Slow: some pattern must be empty that no pair rules out alone; find them by LP.
        from scipy.optimize import linprog

        a_eq = np.array([np.ones(1 << k), *events], dtype=float)
        for cell in np.flatnonzero(p > 0):
            lp = linprog(-np.eye(1 << k)[cell], A_eq=a_eq, b_eq=[1.0, *targets], bounds=(0, 1))
            if lp.status != 0 or -lp.fun < 1e-12:
                p[cell] = 0.0
        p[p > 0] = np.maximum(p[p > 0], 1e-6)  # restart inside the feasible face
        _rake(p, events, targets)
    total = p.sum()
    if not total > 0 or any(abs(p[c].sum() / total - t) > 1e-9 for c, t in zip(events, targets)):
        raise ValueError("segments: the stated shares and overlaps cannot all hold at once")
    return np.maximum(p, 0.0) / total


MAX_USERS = 2_000_000
"""The largest population modelled: each user costs memory and time in every run (about 65
bytes and a microsecond to build), and blast radii are shares, which a sample keeps."""


class UserPopulation(Model):
    """``users: {count: 200000, activity: {lognormal: {sigma: 1.5}}, segments: {...}}``.

    ``overlaps: {"betaTesters&oldAndroid": 0.5%}`` states the share of users in both; unstated
    pairs are independent (as far as the stated ones allow). ``routing`` is the world's default
    routing key: random per request, or sticky per user by hash bucket.
    """

    count: int = Field(gt=0)
    activity: ActivitySpec = Activity()
    segments: dict[str, Segment] = Field(default_factory=dict, max_length=16)
    overlaps: dict[str, Percent] = Field(default_factory=dict)
    routing: Literal["random", "sticky"] = "random"

    @field_validator("count")
    @classmethod
    def _bounded(cls, count: int) -> int:
        if count > MAX_USERS:
            raise ValueError(
                f"{count:,} users is more than {MAX_USERS:,} (the limit: model a sample, the "
                "blast radius is a share of users)"
            )
        return count

    @model_validator(mode="after")
    def _check(self) -> UserPopulation:
        for name in self.segments:
            if not name or "&" in name or "|" in name:
                raise ValueError(f"segment name {name!r} must be non-empty without '&' or '|'")
        names = list(self.segments)
        for key, both in self.overlaps.items():
            pair = [part.strip() for part in key.split("&")]
            if len(pair) != 2 or pair[0] == pair[1] or any(p not in names for p in pair):
                raise ValueError(
                    f'overlaps[{key!r}]: name two different segments as "a&b" (segments: '
                    f"{', '.join(names) or 'none'})"
                )
            sa, sb = (self.segments[p].share for p in pair)
            low, high = max(0.0, sa + sb - 100.0), min(sa, sb)
            if not low <= both <= high:
                raise ValueError(
                    f"overlaps[{key!r}]: {_pct(both)} is impossible for shares {_pct(sa)} and "
                    f"{_pct(sb)} (it must be in {_pct(low)}..{_pct(high)})"
                )
        _ = self._cells  # infeasible combinations fail here, at load
        return self

    @cached_property
    def _cells(self) -> tuple[float, ...]:
        names = list(self.segments)
        pairs: dict[tuple[int, int], float] = {}
        for key, both in self.overlaps.items():
            i, j = sorted(names.index(part.strip()) for part in key.split("&"))
            if (i, j) in pairs:
                raise ValueError(f"overlaps[{key!r}]: this pair is stated twice")
            pairs[(i, j)] = both / 100.0
        shares = [seg.share / 100.0 for seg in self.segments.values()]
        cdf = np.minimum(np.cumsum(_cell_probabilities(shares, pairs)), 1.0)
        cdf[-1] = 1.0
        return tuple(cdf.tolist())  # not an array: model equality compares the instance dict

    def segments_matched_by(self, matches: Iterable[Any]) -> tuple[str, ...]:
        """Names of segments any of the route-match entries selects (entries are ORed)."""
        entries = list(matches)
        return tuple(n for n, s in self.segments.items() if any(s.matched_by(m) for m in entries))

    def build(self, seed: int | np.random.SeedSequence | np.random.Generator) -> Users:
        """Draw a population, deterministic in ``seed`` (activity, buckets, segments from child
        streams: a new segment changes nothing else). Build once per run and share it across
        replications and policies (common random numbers); it is read-only and picklable."""
        if isinstance(seed, np.random.Generator):
            act_rng, bucket_rng, seg_rng = seed.spawn(3)
        else:
            ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
            act_rng, bucket_rng, seg_rng = (np.random.default_rng(s) for s in ss.spawn(3))
        n, activity = self.count, self.activity.shares(act_rng, self.count)
        # Sorted iid U(0, 100) buckets without a sort: normalised exponential spacings are the
        # order statistics; a random permutation then deals them to users.
        spacings = np.cumsum(bucket_rng.standard_exponential(n + 1))
        ordered = spacings[:n] * (100.0 / spacings[n])
        order = bucket_rng.permutation(n)
        bucket = np.empty(n)
        bucket[order] = ordered
        cells = np.searchsorted(self._cells, seg_rng.random(n) if self.segments else (), "right")
        masks = {name: ((cells >> j) & 1).astype(bool) for j, name in enumerate(self.segments)}
        return Users(activity, bucket, masks, routing=self.routing)


class Users:
    """A built population: per-user activity share, sticky bucket and segment masks.

    Read-only and picklable: built once per run, shared by every replication and policy. The
    engine's view of it (cells by route match and fault segment, sorted by bucket, with
    cumulative activity, and the draws of who was hurt or exposed) is
    ``sim.engine.flows.UserCells``.
    """

    __slots__ = ("activity", "bucket", "masks", "n", "routing")

    def __init__(
        self,
        activity: np.ndarray,
        bucket: np.ndarray,
        masks: dict[str, np.ndarray] | None = None,
        *,
        routing: str = "random",
    ) -> None:
        self.activity = np.asarray(activity, dtype=float)
        self.bucket = np.asarray(bucket, dtype=float)
        self.n, self.routing = self.activity.size, routing
        self.masks = {name: np.asarray(m, dtype=bool) for name, m in (masks or {}).items()}
        for arr in (self.activity, self.bucket, *self.masks.values()):
            arr.flags.writeable = False

    def __repr__(self) -> str:
        segments = ", ".join(f"{k}={m.mean():.2%}" for k, m in self.masks.items())
        return f"Users(n={self.n}, routing={self.routing!r}, segments={{{segments}}})"
