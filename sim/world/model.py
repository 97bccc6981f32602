"""The world a release meets: traffic, users, the baseline version, the release population,
the platform and the operators (DESIGN §5), as one validated model — the ``world:`` section of a
scenario file — and its compiled form, built once per run and shared by every replication.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from policies.base import Model
from policies.durations import Duration, format_duration
from sim.world.operators import Operators
from sim.world.platform import Platform
from sim.world.plugins import StepPlugin
from sim.world.traffic import Traffic
from sim.world.users import UserPopulation
from sim.world.versions import ReleasePopulation, Version

if TYPE_CHECKING:
    from sim.world.users import Users

__all__ = ["CompiledWorld", "World"]


class World(Model):
    """Everything but the policy: what traffic, which users, how the versions behave."""

    horizon: Duration = Field(86400.0, gt=0)
    traffic: Traffic
    users: UserPopulation = UserPopulation(count=10000)
    baseline: Version = Version()
    latency_objective: Duration | None = Field(0.5, gt=0)
    releases: ReleasePopulation = ReleasePopulation.good_only()
    platform: Platform = Platform()
    operators: Operators = Operators()
    step_plugins: dict[str, StepPlugin] = Field(default_factory=dict)
    """Argo step plugins by name: how long each takes and how often it fails (plugins.py)."""

    @field_validator("baseline")
    @classmethod
    def _baseline_serves(cls, baseline: Version) -> Version:
        if baseline.error_rate >= 1.0:
            raise ValueError(
                "errorRate 1 means every request of the old version fails, so no release can"
                " do worse and every comparison is empty; write a fraction (0.01) or a percentage"
                ' ("1%")'
            )
        return baseline

    @field_validator("releases")
    @classmethod
    def _segments_exist(cls, releases: ReleasePopulation, info: ValidationInfo):
        """A fault confined to a segment no user is in would hurt nobody: a typo, refused."""
        users = info.data.get("users")
        if users is None:  # the users failed validation: that error is the one reported
            return releases
        for i, release in enumerate(releases):
            segment = release.fault.segment if release.fault is not None else None
            if segment is not None and segment not in users.segments:
                raise ValueError(
                    f"[{i}].fault.segment {segment!r} is not a segment of users.segments (have:"
                    f" {', '.join(users.segments) or 'none'}), so the fault would reach nobody"
                )
        return releases

    def warnings(self) -> list[str]:
        """What is valid but odd enough to mislead, each saying why (for the report's notes)."""
        out = []
        bad = self.baseline.bad_probability(self.latency_objective)
        if bad >= 0.99:
            out.append(
                f"warning: baseline: {bad:.3%} of the old version's requests are already bad"
                f" (failed or slower than latencyObjective {_fmt(self.latency_objective)}), so"
                " a release has almost nothing left to make worse and blast radii say little"
            )
        thresholds = [(r.threshold(self.operators.slo.target), r) for r in self.operators.alerts]
        if thresholds:
            threshold, rule = min(thresholds, key=lambda x: x[0])
            if bad >= threshold:
                out.append(
                    f"warning: baseline: {bad:.3%} of the old version's requests are bad, at or"
                    f" above the alert threshold {threshold:.3%} (burnRate {rule.burn_rate:g} ×"
                    " (1 − slo.target)): the burn-rate alert fires at the release start on the"
                    " old version alone, so every release is rolled back by it"
                )
        p0 = self.baseline.error_rate
        for release in self.releases:
            fault = release.fault
            if fault is None:
                continue
            onset = fault.onset.after_start if fault.onset is not None else None
            if onset is not None and onset >= self.horizon:
                out.append(
                    f"warning: release class {release.name!r}: its fault begins at"
                    f" {_fmt(onset)}, not before the horizon {_fmt(self.horizon)}, so within"
                    " the run it is a good release"
                )
            if fault.changes_latency or fault.crash_loop or not fault.changes_errors:
                continue
            if float(fault.target_error_rate(p0)) <= p0:
                out.append(
                    f"warning: release class {release.name!r} is bad but its fault (error rate"
                    f" {float(fault.target_error_rate(p0)):.4g}) is no worse than the baseline's"
                    f" {p0:.4g}: its blast radius is zero or negative, so policies are ranked by"
                    " how fast they ship it, not by how well they contain it"
                )
        return out

    def compile(self, seed: int | np.random.SeedSequence) -> CompiledWorld:
        """Build the shared, read-only parts (the user population) from the run's seed."""
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        return CompiledWorld(self, self.users.build(ss.spawn(1)[0]))


def _fmt(seconds: float | None) -> str:
    return "none" if seconds is None else str(format_duration(seconds))


@dataclass(frozen=True, eq=False)
class CompiledWorld:
    """A world with its user population drawn: common to all policies and replications."""

    world: World
    users: Users

    @cached_property
    def baseline_failure(self) -> float:
        return self.world.baseline.error_rate

    @cached_property
    def baseline_slow(self) -> float:
        return self.world.baseline.slow_probability(self.world.latency_objective)

    @cached_property
    def baseline_bad(self) -> float:
        """P(a request is failed or slower than the objective) on the baseline."""
        p, q = self.baseline_failure, self.baseline_slow
        return p + (1.0 - p) * q
