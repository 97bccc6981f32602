"""The reference engine's step plugins: a ``RunPlugin`` is answered with ``PluginFinished``
after the plugin's drawn duration (sim/world/plugins.py says what the world's plugins do).

Its own random stream, the replication seed's child 8 (after the seven of
sim/engine/reference.py and the shadow's 7), so adding it changed no earlier number.
"""

from __future__ import annotations

import numpy as np

from policies.controller.protocol import PluginFinished, RunPlugin
from sim.world.plugins import check_step_plugins

__all__ = ["Plugins"]


class Plugins:
    """Runs the policy's plugin steps in the world of ``engine`` (a ``ReferenceReplication``)."""

    def __init__(self, engine, seed: np.random.SeedSequence) -> None:
        check_step_plugins(engine.world.step_plugins, engine.policy)
        self.engine, self.seed = engine, seed
        self.rng: np.random.Generator | None = None  # made at the first plugin step

    def run(self, action: RunPlugin) -> None:
        engine = self.engine
        if self.rng is None:
            key = (*self.seed.spawn_key, 8)
            self.rng = np.random.default_rng(
                np.random.SeedSequence(self.seed.entropy, spawn_key=key)
            )
        plugin = engine.world.step_plugins[action.name]
        seconds, phase = plugin.draw(self.rng, engine.release.is_bad)
        finished = PluginFinished(action.step, phase)
        engine._call(engine.env.now + seconds, engine._deliver, [finished])
