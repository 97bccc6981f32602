"""A pod becomes available minReadySeconds after it is ready: the call made for that moment lands
at now + (at − now), which can round an ulp below ``ready + minReady``; both engines then count
the pod as available (within ``REACHED_TOL``), where they had left it unavailable and, with no
later call, stalled the rollout (the reference in a fifth of its replications, the fast engine
in one of 400; found by the differential search of session 15)."""

from __future__ import annotations

import numpy as np
from test_oracles import Bench

from policies import policy_from_yaml
from sim.engine.reference import simulate_reference

SPEC = {
    "horizon": "10m",
    "traffic": {"rate": 20},
    "users": {"count": 100},
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.1}}],
    "platform": {"replicas": 6, "podStartup": {"uniform": ["5s", "16s"]}},
    "operators": {"alerts": []},
}
POLICY = "kind: RollingUpdate\nname: ru\nmaxSurge: 1\nmaxUnavailable: 0\nminReadySeconds: 5\n"


def test_a_rolling_update_with_min_ready_seconds_always_completes():
    bench = Bench(SPEC)
    assert {o.outcome for o in bench.outcomes(POLICY, n=400)} == {"promoted"}
    policy, release = policy_from_yaml(POLICY), bench.cw.world.releases["bad"]
    for i in range(30):
        ss = np.random.SeedSequence(3, spawn_key=(i,))
        out = simulate_reference(bench.cw, policy, release, ss, index=i)
        assert out.outcome == "promoted", (i, out.outcome)
