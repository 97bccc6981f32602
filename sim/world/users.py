"""The user population: unique users, not just requests (DESIGN §5).

Users-hurt blast radius depends on the routing key (anchors §3.2: 1 % weight, 1 request/min,
1 h: random routing touches 45 % of users, sticky 1 %), so users are modelled, never requests:

- ``UserPopulation`` (YAML): how many users, how unequal their activity, which segments.
- ``Users``: built once, read-only, shared by replications and policies (common random
  numbers): per user an activity share, a sticky bucket in [0, 100) (bucket < w is on the
  canary at weight w percent) and segment membership. Who was hurt or exposed is drawn by the
  engine's ``sim.engine.cells.UserCells``.

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

__all__ = [
    "CHUNK",
    "MAX_USERS",
    "Activity",
    "NameValue",
    "Percent",
    "Segment",
    "SortedKeys",
    "UserPopulation",
    "Users",
    "index_dtype",
]


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
        raw = rng.standard_normal(n)  # in place: one array of n at a time
        raw *= self.sigma
        np.exp(raw, out=raw)
        raw /= raw.sum()
        return raw

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


MAX_USERS = 10_000_000
"""The largest population modelled: each user costs memory and time in every run (about 60
bytes, held once in shared memory for all workers, and a microsecond to build; 10 M users run
in 841 MB in all: benchmarks/RESULTS.md), and blast radii are shares, which a sample keeps."""


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
        ordered = spacings[:n]
        ordered *= 100.0 / spacings[n]
        order = bucket_rng.permutation(n)
        bucket = np.empty(n)
        bucket[order] = ordered
        cells = np.searchsorted(self._cells, seg_rng.random(n) if self.segments else (), "right")
        cells = cells.astype(np.uint16)  # 16 segments at most: small temporaries below
        masks = {name: ((cells >> j) & 1).astype(bool) for j, name in enumerate(self.segments)}
        return Users(
            activity, bucket, masks, routing=self.routing, by_bucket=_ties_by_index(order, ordered)
        )


def _ties_by_index(order: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """The users by bucket (``order``), equal buckets by user index as a stable argsort has
    them (ties are rare: an exponential spacing below the sum's rounding)."""
    by_bucket = order.astype(np.int32)
    for at in np.flatnonzero(ordered[1:] == ordered[:-1]):
        run = np.flatnonzero(ordered == ordered[at])
        by_bucket[run] = np.sort(by_bucket[run])
    return by_bucket


class Users:
    """A built population: per-user activity share, sticky bucket and segment masks.

    Read-only and picklable: built once per run, shared by every replication and policy. The
    engine's view of it (cells by route match and fault segment, sorted by bucket, with
    cumulative activity, and the draws of who was hurt or exposed) is
    ``sim.engine.cells.UserCells``. ``by_bucket``: the users in bucket order (int32; the draw
    knows it, else a stable argsort) from which each cell's order is a filter, not a sort.
    ``store``: where per-population arrays go (``arrays``): the population's shared memory
    when it has some (``sim.runs.pool``), so that workers build and hold them once.
    """

    __slots__ = ("_by_bucket", "activity", "bucket", "masks", "n", "routing", "store")

    def __init__(
        self,
        activity: np.ndarray,
        bucket: np.ndarray,
        masks: dict[str, np.ndarray] | None = None,
        *,
        routing: str = "random",
        by_bucket: np.ndarray | None = None,
        store: Any = None,
    ) -> None:
        self.activity = np.asarray(activity, dtype=float)
        self.bucket = np.asarray(bucket, dtype=float)
        self.n, self.routing, self.store = self.activity.size, routing, store
        self.masks = {name: np.asarray(m, dtype=bool) for name, m in (masks or {}).items()}
        self._by_bucket = None if by_bucket is None else np.asarray(by_bucket, dtype=np.int32)
        for arr in (self.activity, self.bucket, self._by_bucket, *self.masks.values()):
            if arr is not None:
                arr.flags.writeable = False

    def __getstate__(self) -> tuple:
        return (self.activity, self.bucket, self.masks, self.routing, self._by_bucket)

    def __setstate__(self, state: tuple) -> None:  # a pickled population keeps no store
        activity, bucket, masks, routing, by_bucket = state
        Users.__init__(self, activity, bucket, masks, routing=routing, by_bucket=by_bucket)

    @property
    def by_bucket(self) -> np.ndarray:
        if self._by_bucket is None:
            self._by_bucket = np.argsort(self.bucket, kind="stable").astype(np.int32)
            self._by_bucket.flags.writeable = False
        return self._by_bucket

    def arrays(self, tag: str, parts: list[tuple[str, str, int]], fill) -> dict:
        """Arrays of the population named ``tag`` ((name, dtype, size) each), filled once by
        ``fill(arrays)``: in shared memory when the ``store`` takes them (read-only), else
        private. ``tag`` must say everything they depend on."""
        found = None if self.store is None else self.store(tag, parts, fill)
        if found is None:
            found = {name: np.empty(size, dtype) for name, dtype, size in parts}
            fill(found)
        return found

    def __repr__(self) -> str:
        segments = ", ".join(f"{k}={m.mean():.2%}" for k, m in self.masks.items())
        return f"Users(n={self.n}, routing={self.routing!r}, segments={{{segments}}})"

    def bucket_cell(self, tag: str, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The users of a cell (mask ``inside``, named by ``tag``) in bucket order, a filter
        of ``by_bucket``, and their cumulative activity from 0: arrays of the population."""
        m = int(np.count_nonzero(inside))

        def fill(out: dict) -> None:
            members, at = out["members"], 0
            for start in range(0, self.n, CHUNK):  # in steps: no n-sized temporaries
                part = self.by_bucket[start : start + CHUNK]
                part = part[inside[part]]
                members[at : at + part.size] = part
                at += part.size
            _cumulative(self.activity, members, out["cum"])

        parts = [("members", index_dtype(self.n), m), ("cum", "<f8", m + 1)]
        arrays = self.arrays(f"{tag} bucket", parts, fill)
        return arrays["members"], arrays["cum"]

    def guide_table(self, tag: str | None, cum: np.ndarray, bins: int) -> np.ndarray:
        """Bin b: the position of b·total/bins in ``cum`` (Chen and Asau's guide table; bin
        starts lowered by 1e-12: a rounded draw never lands before one). ``tag`` names a
        cell's: an array of the population; None: private."""

        def fill(out: dict) -> None:
            size, guide = cum.size - 1, out["guide"]
            for start in range(0, bins, CHUNK):
                edges = np.arange(start, min(start + CHUNK, bins)) * (cum[-1] / bins)
                found = np.searchsorted(cum, edges * (1 - 1e-12), side="right") - 1
                guide[start : start + edges.size] = np.clip(found, 0, size - 1)

        parts = [("guide", "<i4", bins)]
        if tag is None:
            out = {"guide": np.empty(bins, np.int32)}
            fill(out)
            return out["guide"]
        return self.arrays(f"{tag} guide", parts, fill)["guide"]


CHUNK = 1 << 20  # users per step when building into (shared) memory: small temporaries


def index_dtype(n: int) -> str:
    """Positions among n users: int32 for large populations (half the memory), else intp
    (numpy indexes with intp: no conversion on every draw)."""
    return "<i4" if n > CHUNK else np.dtype(np.intp).str


def _cumulative(activity: np.ndarray, members: np.ndarray, out: np.ndarray) -> None:
    """``out`` = 0, then the running sum of activity[members], in steps (the same additions
    in the same order as one cumsum: each step starts from the last sum)."""
    out[0] = 0.0
    for start in range(0, members.size, CHUNK):
        part = activity[members[start : start + CHUNK]]
        part[0] += out[start]
        np.cumsum(part, out=out[start + 1 : start + 1 + part.size])


_SAMPLE = 64  # every 64th sorted key is kept: a search reads one block of 64 keys


class SortedKeys:
    """A group of users' sorted keys (buckets, DNS or cookie keys), not stored: every
    ``_SAMPLE``-th, and the per-user ``source`` to read one block of the rest. ``search`` is
    ``searchsorted(keys, value, "left")``, exactly."""

    __slots__ = ("dense", "members", "sample", "source", "tag")

    def __init__(self, source: np.ndarray, members: np.ndarray, tag: str | None = None) -> None:
        self.source, self.members, self.tag = source, members, tag  # tag: the population's
        self.sample = source[members[::_SAMPLE]]
        self.dense = source[members] if members.size <= CHUNK else None  # small: all of them

    def search(self, value: float) -> int:
        if self.dense is not None:
            return int(np.searchsorted(self.dense, value, side="left"))
        b = int(np.searchsorted(self.sample, value, side="left"))  # keys[64(b−1)] < value
        lo, hi = max(b - 1, 0) * _SAMPLE, min(b * _SAMPLE, self.members.size)
        return lo + int(np.searchsorted(self.source[self.members[lo:hi]], value, side="left"))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # the keys, for tests
        return np.asarray(self.source[self.members], dtype=dtype)
