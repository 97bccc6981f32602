"""A scripted controller for engine tests: actions at fixed times, measurements recorded.

Why: the engine's traffic actions (mirror, load, session affinity) must be checked against
closed forms whatever policy emits them, so the tests drive both engines — the fast one
(sim/engine/replication.py) and the per-request reference (sim/engine/reference.py) — with the
same script instead of a policy, and read what a gate would see (``MeasurementTaken``).
"""

from __future__ import annotations

import numpy as np

import policies.controller as pc
from policies import policy_from_yaml
from sim.engine.cells import UserCells
from sim.engine.reference import ReferenceReplication
from sim.engine.replication import Replication
from sim.world.model import World

HOLD = "kind: Canary\nname: hold\ntrafficRouting: {nginx: {}}\nsteps: [{pause: {}}]"


class Script:
    """Stands in for ``RolloutController``: ``plan`` maps a time to the actions due then; a
    ``pc.Measure`` is answered by the engine and its observation kept in ``seen``."""

    def __init__(self, plan: dict[float, list]) -> None:
        self.plan, self.seen, self.finished = plan, {}, False

    def start(self) -> list:
        actions = list(self.plan.get(0.0, []))
        actions += [pc.StartTimer(f"{t!r}", t) for t in sorted(self.plan) if t > 0]
        return actions

    def handle(self, event) -> list:
        if isinstance(event, pc.TimerFired):
            return list(self.plan[float(event.key)])
        if isinstance(event, pc.MeasurementTaken):
            self.seen[event.metric] = event.observation
        return []


class Bench:
    """One compiled world run under a script by either engine."""

    def __init__(self, spec: dict, seed: int = 7) -> None:
        self.world = World.model_validate(spec)
        self.cw = self.world.compile(seed)
        self.cells = UserCells(self.cw.users)
        self.policy = policy_from_yaml(HOLD)

    def run(self, engine: str, plan: dict, release: str, i: int, seed: int = 11):
        """Replication ``i``: (outcome, script, replication)."""
        script = Script(plan)
        rel = self.world.releases[release]
        ss = np.random.SeedSequence(seed, spawn_key=(i,))
        if engine == "fast":
            rep = Replication(self.cw, self.cells, self.policy, rel, ss, index=i)
        else:
            rep = ReferenceReplication(self.cw, self.policy, rel, ss, index=i)
        rep.ctl = script
        return rep.run(), script, rep

    def many(self, engine: str, plan: dict, release: str, n: int, metric: str, field: str):
        """``field`` of the canary's WindowStats of measurement ``metric``, n replications."""
        out = []
        for i in range(n):
            _, script, _ = self.run(engine, plan, release, i)
            out.append(getattr(script.seen[metric].canary, field))
        return np.array(out, dtype=float)


def measure(name: str, window: float) -> pc.Measure:
    return pc.Measure("script", name, window)
