"""Flagger's first analysis tick in the engines (DESIGN §5): its ticker runs per Canary object,
started long before this release, so the first tick comes at a uniformly random phase of the
interval, drawn once per replication and shared by every policy (common random numbers);
``platform.flaggerTickPhase`` pins it. The controller's side (``first_tick_s``) is tested in
tests/test_controller_flagger.py; here, what each engine hands it."""

from __future__ import annotations

import math
from pathlib import Path

from test_oracles import Bench, world

from policies import load_policy
from sim.engine.reference import ReferenceReplication
from sim.engine.replication import Replication
from sim.engine.seeds import replication_seed
from sim.world.platform import Platform

PROGRESSIVE = load_policy(
    Path(__file__).resolve().parents[1] / "scenarios/policies/progressive.yaml"
)
INTERVAL = PROGRESSIVE.analysis.effective_interval_s  # 60 s


def first_ticks(platform: dict | None = None, n: int = 40) -> tuple[list[float], list[float]]:
    bench = Bench(world(platform=platform or {}))
    good = bench.cw.world.releases[0]
    fast, ref = [], []
    for i in range(n):
        seed = replication_seed(3, 0, i)
        fast.append(Replication(bench.cw, bench.cells, PROGRESSIVE, good, seed).ctl.first_tick_s)
        ref.append(ReferenceReplication(bench.cw, PROGRESSIVE, good, seed).ctl.first_tick_s)
    return fast, ref


def test_the_phase_is_uniform_in_the_interval_and_the_same_per_replication():
    fast, ref = first_ticks(n=400)
    assert all(0.0 <= t < INTERVAL for t in fast + ref)
    assert len(set(fast)) == len(fast)  # a fresh draw per replication
    # uniform on [0, 60): mean 30 s, standard error 60/sqrt(12·400) ≈ 0.87 s; 4 SE
    assert abs(sum(fast) / len(fast) - INTERVAL / 2) < 4 * INTERVAL / math.sqrt(12 * 400)
    again, _ = first_ticks(n=400)
    assert again == fast  # replication i draws the same phase whatever else runs


def test_a_scenario_pins_the_phase():
    fast, ref = first_ticks({"flaggerTickPhase": "0s"}, n=3)
    assert fast == ref == [0.0, 0.0, 0.0]
    fast, ref = first_ticks({"flaggerTickPhase": "90s"}, n=2)
    assert fast == ref == [30.0, 30.0]  # taken modulo the interval


def test_platform_first_tick():
    assert Platform().flagger_first_tick(60.0, 0.25) == 15.0
    assert Platform.model_validate({"flaggerTickPhase": "20s"}).flagger_first_tick(60.0, 0.9) == 20
