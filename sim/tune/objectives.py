"""What "best" means for tuning: the ``Objective`` to minimise and the ``Constraint``s to respect.

A team does not want "the policy with the lowest sample mean"; it wants the schedule that hurts
a bad release least *given* that good releases still ship within the rollout-time budget and
are rarely rolled back. The objective is a mean (or a quantile, over batches) of one outcome
field over some release classes; a constraint is a statistic of an outcome field that must stay
below a limit, turned into the bounded mean whose confidence sequence ``sim.tune.selection``
checks (``Constraint.check``, ``Constraint.values``). Both are weighted over release classes as
the world draws them (``stratum_weights``).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import numpy as np
from pydantic import Field, model_validator

from policies.base import Model
from policies.durations import format_duration, parse_duration
from policies.errors import PolicyError
from sim.tune.selection import ConstraintCheck
from sim.world.model import World

__all__ = [
    "OBJECTIVE_METRICS",
    "Constraint",
    "Objective",
    "ObjectiveMetric",
    "Releases",
    "Statistic",
    "stratum_weights",
]

ObjectiveMetric = Literal[
    "excess_bad_requests",
    "bad_requests",
    "failed_requests",
    "slow_requests",
    "users_hurt",
    "users_exposed",
    "error_budget_used",
    "extra_pod_seconds",
    "candidate_requests",
    "false_rollback",
    "escaped",
]
OBJECTIVE_METRICS: tuple[ObjectiveMetric, ...] = get_args(ObjectiveMetric)
_EVENTS = ("rollout_duration", "t_detect", "t_rollback_start", "t_mitigated", "t_fault")
_RATES = ("false_rollback", "escaped")
Statistic = Annotated[str, Field(pattern=r"^(mean|p([1-9]\d?(\.\d+)?))$")]
Releases = Literal["all", "good", "bad"] | tuple[str, ...]


def stratum_weights(world: World, releases) -> dict[str, float]:
    """{class: weight} of the releases a statistic is about, weights summing to 1."""
    if isinstance(releases, str):
        keep = [c for c in world.releases if releases == "all" or c.is_bad == (releases == "bad")]
    else:
        keep = [c for c in world.releases if c.name in releases]
    total = sum(c.probability for c in keep)
    if not keep or total <= 0:
        raise PolicyError(f"no release class with probability > 0 matches {releases!r}")
    return {c.name: c.probability / total for c in keep}


class Objective(Model):
    """What to minimise: ``metric``'s mean (or quantile ``pNN``) over ``releases``.

    A quantile cannot be observed per replication, so it is taken over ``batch`` replications
    per observation (default 20 per class): the target is then the expected batch quantile.
    """

    metric: ObjectiveMetric = "excess_bad_requests"
    statistic: Statistic = "mean"
    releases: Releases = "all"
    batch: int | None = Field(None, ge=1)

    @property
    def units(self) -> int:
        return self.batch or (1 if self.statistic == "mean" else 20)

    def label(self) -> str:
        who = "" if self.releases == "all" else f" of {self.releases} releases"
        return f"{self.statistic} {self.metric}{who}".replace("_", " ")


def _number(value: float | str) -> float:
    """A number, a percentage ("5%") or a duration ("30m")."""
    if isinstance(value, str):
        text = value.strip()
        return float(text[:-1]) / 100 if text.endswith("%") else parse_duration(text)
    return float(value)


class Constraint(Model):
    """``statistic`` of ``metric`` over ``releases`` must stay ≤ ``max``.

    ``pNN ≤ max`` is checked as P(metric > max) ≤ 1 − NN/100: the same statement, as a mean of
    indicators, bounded, so its confidence sequence needs no normality. ``missing``: an event
    that never happened (a good release never promoted) counts as exceeding (``exceed``: "95 %
    of good releases finish within 30 minutes") or is left out (``ignore``). ``tolerance``: a
    candidate this close below the limit may be dropped (units of the checked mean; default a
    quarter of 1 − NN/100 or of a rate's limit, else a tenth); ``bounds``: the metric's range
    where it has no natural one."""

    metric: str
    statistic: Statistic = "mean"
    releases: Releases = "all"
    max: float | str
    tolerance: float | str | None = None
    bounds: tuple[float, float] | None = None
    missing: Literal["exceed", "ignore"] = "exceed"

    @model_validator(mode="after")
    def _known(self) -> Constraint:
        from sim.engine.outcome import OUTCOME_FIELDS

        text = ("policy", "error", "seed", "outcome", "detected_by", "release_class", "replication")
        if self.metric not in OUTCOME_FIELDS or self.metric in text:
            raise ValueError(f"metric {self.metric!r} is not a numeric outcome field")
        _ = self.limit  # parse now: a bad value is a load error
        if self.tolerance is not None and not _number(self.tolerance) > 0:
            raise ValueError(f"tolerance {self.tolerance!r} must be > 0")
        return self

    @property
    def quantile(self) -> float | None:
        return None if self.statistic == "mean" else float(self.statistic[1:]) / 100

    @property
    def limit(self) -> float:
        return _number(self.max)

    @property
    def _tolerance(self) -> float | None:
        return None if self.tolerance is None else _number(self.tolerance)

    def label(self) -> str:
        who = "" if self.releases == "all" else f" of {self.releases} releases"
        shown = format_duration(self.limit) if self.metric in _EVENTS else f"{self.limit:g}"
        return f"{self.statistic} {self.metric}{who} ≤ {shown}".replace("_", " ")

    def check(self, world: World, replicas: int, index: int) -> ConstraintCheck:
        """The bounded mean the procedure checks, in the units of that mean."""
        q, name = self.quantile, f"c{index}: {self.label()}"
        if q is not None:
            lo, hi, limit = 0.0, 1.0, 1.0 - q
            if self.missing == "ignore":
                lo, hi, limit = -(1.0 - q), q, 0.0
            return ConstraintCheck(name, limit, self._tolerance or (1 - q) / 4, lo, hi)
        lo, hi = self.bounds or self._natural(world, replicas)
        limit = self.limit
        if self.missing == "ignore" and self.metric in _EVENTS:
            lo, hi, limit = lo - limit, hi - limit, 0.0
        tol = self._tolerance or abs(self.limit) / (4 if self.metric in _RATES else 10)
        return ConstraintCheck(name, limit, tol or 0.01 * (hi - lo), lo, hi)

    def _natural(self, world: World, replicas: int) -> tuple[float, float]:
        if self.metric in _RATES:
            return 0.0, 1.0
        if self.metric in _EVENTS:
            return 0.0, world.horizon
        if self.metric == "extra_pod_seconds":
            return 0.0, 2.0 * replicas * world.horizon  # at most a second copy of the service
        if self.metric in ("users_hurt", "users_exposed"):
            return 0.0, float(world.users.count)
        raise PolicyError(f"give bounds: [low, high] for {self.metric} (it has no natural range)")

    def values(self, rows, high: float) -> np.ndarray:
        """Per replication, the value whose mean is checked (see ``check``); ``high``: what a
        missing event counts as under ``missing: exceed`` (the top of the metric's range)."""
        x = rows[self.metric].to_numpy(dtype=float)
        happened = ~np.isnan(x)
        q = self.quantile
        if q is not None:
            over = np.where(happened, x > self.limit, True).astype(float)
            return np.where(happened, over - (1 - q), 0.0) if self.missing == "ignore" else over
        if self.missing == "ignore":
            return np.where(happened, x - self.limit, 0.0)
        return np.where(happened, x, high)
