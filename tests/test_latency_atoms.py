"""Latency quantiles of a mixture with atoms (a fixed latency): both engines (DESIGN §5).

A gate's q-quantile over canary requests of which a share meets a latency fault is the
mixture's: the generalised inverse inf{x: F(x) >= q}. With a fixed baseline latency (100 ms) and
a fixed shift (2 s) on a segment, the mixture is two atoms: its p50 is the healthy atom while
the faulty share is below a half, its p90 the faulty one. (The fast engine's root search needs a
change of sign, which a CDF that steps over q at the lower atom never gives: a fuzz-found
ValueError at the first such measurement.)
"""

from __future__ import annotations

import pytest
from engine_script import Bench

import policies.controller as pc

SPEC: dict = {
    "horizon": 900,
    "traffic": {"rate": 100.0},
    "users": {"count": 2000, "segments": {"old": {"share": "40%"}}},
    "baseline": {"errorRate": 0.0, "latency": "100ms"},
    "releases": [
        {"name": "slow", "probability": 1.0, "fault": {"latencyShift": 2.0, "segment": "old"}}
    ],
    "platform": {"replicas": 4, "podStartup": {"uniform": ["20s", "40s"]}},
    "operators": {"alerts": []},
}


@pytest.mark.parametrize("engine", ["fast", "ref"])
def test_quantiles_of_two_atoms_are_the_atoms(engine):
    plan = {
        0.0: [pc.Scale("canary", 2), pc.SetWeight(50.0)],
        600.0: [pc.Measure("script", "p", 300.0, quantiles=(0.5, 0.9))],
    }
    bench = Bench(SPEC)
    for i in range(3):
        seen = bench.run(engine, plan, "slow", i)[1].seen["p"]
        assert seen.canary.requests > 10_000  # half of 100/s for 300 s: both atoms well filled
        assert seen.canary.latency[0.5] == pytest.approx(0.1, abs=1e-9)
        assert seen.canary.latency[0.9] == pytest.approx(2.1, abs=1e-9)
        assert seen.stable.latency[0.9] == pytest.approx(0.1, abs=1e-9)
