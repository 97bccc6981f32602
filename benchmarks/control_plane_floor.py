"""How much of a good release's CPU is the control plane alone: a bound, not a simulation.

Issue #17 asks for 4x less CPU per replication. Whatever the data plane costs, the events,
the controller and simpy remain; this measures them by stubbing the data plane out in three
stages of the reference scenario's good release (class 0):

1. the full engine;
2. no users drawn (users hurt, with a bad answer, exposed: 0);
3. no traffic drawn either: drafts only move the tape's mark, cuts and settling do nothing,
   every gate window reads one fixed healthy observation.

Stage 3 is what no data-plane work can remove. Its numbers are wrong on purpose (never use
them); only the times count. The stubs are applied in this process after stage 1 and stage 2.

Run:  .venv/bin/python benchmarks/control_plane_floor.py [--replications 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engine import machine_line, timed_class  # noqa: E402

from policies.measures import Observation, WindowStats  # noqa: E402
from sim import load_scenario  # noqa: E402
from sim.engine import blast, drafting, tape  # noqa: E402


def no_users() -> None:
    for counter in ("users_hurt", "users_with_bad", "users_exposed"):
        setattr(blast.BlastRadius, counter, lambda self: 0)


def no_traffic() -> None:
    def draft(self, target):
        self.tape.drafted_until = max(self.tape.drafted_until, target)

    def observation(self, end, window, quantiles, series_step, rng):
        j1 = int(end // self.slot)
        j0 = max(0, j1 - max(1, round(window / self.slot)))
        healthy = WindowStats(requests=6000, errors=6, has_series=True)
        return Observation(j0 * self.slot, j1 * self.slot, healthy, healthy)

    drafting.Drafter.draft = draft
    tape.Tape.cut = lambda self, t: None
    tape.Tape._settle = lambda self, t: None
    tape.Tape.observation = observation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=300)
    n = parser.parse_args().replications
    loaded = load_scenario(ROOT / "benchmarks" / "reference.yaml")
    name, policy = next(iter(loaded.policies.items()))
    args = (loaded.world.to_dict(), loaded.scenario.seed, policy.to_dict(), name, 0, n)
    print(machine_line())
    full = timed_class(*args)[0]  # class 0, the good release; each warms up first
    no_users()
    without_users = timed_class(*args)[0]
    no_traffic()
    control = timed_class(*args)[0]
    print(f"good release, CPU ms per replication over {n}:")
    print(f"  full engine           {full:6.2f}")
    print(f"  no users drawn        {without_users:6.2f}")
    print(f"  no traffic either     {control:6.2f}  (the control plane: {control / full:.0%})")


if __name__ == "__main__":
    main()
