"""The world a release meets: traffic, users, the baseline version, the release population,
the platform and the operators (DESIGN §5), as one validated model — the ``world:`` section of a
scenario file — and its compiled form, built once per run and shared by every replication.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from policies.base import Model
from policies.durations import Duration
from sim.world.operators import Operators
from sim.world.platform import Platform
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

    def compile(self, seed: int | np.random.SeedSequence) -> CompiledWorld:
        """Build the shared, read-only parts (the user population) from the run's seed."""
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        return CompiledWorld(self, self.users.build(ss.spawn(1)[0]))


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
