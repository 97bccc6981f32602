"""Argo step plugins as the team's world runs them: how long each takes and how often it fails.

A plugin step (a k6 load test, a job, a gate of the team's own) is a step that takes time and
can fail. Both are properties of the plugin where the team runs it, not of the policy that calls
it, so the world says them per plugin name (``world.stepPlugins``), as it says ``podStartup``::

    stepPlugins:
      jmichalek132/k6-step:
        duration: {uniform: [4m, 6m]}      # from the step's start to Argo reading its end
        failure: {badRelease: 90%, goodRelease: 2%}

``duration`` runs from the step being reached to the moment Argo reads the plugin's end (its
work plus its polling: Argo asks again after the plugin's backoff + 5 s). ``failure`` is the
chance that it ends Failed, on a release with a fault (any release class whose ``fault`` is
set) and on one without: its power and its false-alarm rate. A Failed plugin aborts the
rollout, as Argo does; any other end completes the step. A policy whose plugin the world does
not describe is refused (``check_step_plugins``): nothing here guesses a plugin's behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from policies.base import Model
from policies.controller.protocol import PluginPhase
from policies.errors import PolicyError
from sim.world.distributions import DistributionSpec
from sim.world.versions import Probability

__all__ = ["PluginFailure", "StepPlugin", "check_step_plugins"]


class PluginFailure(Model):
    """How often the plugin ends Failed: on a release with a fault, and on one without."""

    bad_release: Probability
    good_release: Probability


class StepPlugin(Model):
    """One step plugin in the team's world: how long its step takes and how often it fails."""

    duration: DistributionSpec
    failure: PluginFailure

    def draw(self, rng: np.random.Generator, bad: bool) -> tuple[float, PluginPhase]:
        """One run: (seconds until Argo reads its end, its phase), in that order from ``rng``."""
        seconds = float(self.duration.sample(rng))
        p = self.failure.bad_release if bad else self.failure.good_release
        return seconds, "Failed" if float(rng.random()) < p else "Successful"


def check_step_plugins(
    step_plugins: Mapping[str, StepPlugin], policy: Any, *, where: str = "", file: str | None = None
) -> None:
    """Refuse a policy with a plugin step the world does not describe, naming the field to add."""
    if getattr(policy, "kind", None) != "Canary":
        return
    for i, step in enumerate(policy.steps):
        plugin = step.plugin
        if plugin is not None and plugin.name not in step_plugins:
            raise PolicyError(
                f"{policy.name}: step plugin {plugin.name!r} is not described by the world: add"
                f' "{plugin.name}": {{duration: ..., failure: {{badRelease: ..., goodRelease:'
                " ...}} under world.stepPlugins (how long it takes and how often it fails where"
                " the team runs it)",
                path=f"{where}.steps[{i}].plugin" if where else f"steps[{i}].plugin",
                file=file,
            )
