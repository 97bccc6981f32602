"""Overload under traffic that varies within a piece: the requests beyond capacity are
∫ max(0, load(t) − capacity) dt, not the piece's mean rate's overload (Jensen undercounts them;
session 13's random search found 53 failed requests against the per-request reference's 2,147).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from policies import policy_from_yaml
from sim.engine.cells import UserCells
from sim.engine.reference import simulate_reference
from sim.engine.replication import Replication
from sim.world.model import World
from sim.world.traffic import Traffic


def _points(pairs):
    return [{"at": at, "rate": rate} for at, rate in pairs]


PROFILES = {
    "diurnal, short period": {"diurnal": {"mean": 100, "amplitude": 0.5, "period": "60s"}},
    "diurnal, full swing": {"diurnal": {"mean": 100, "amplitude": 1.0, "peakAt": "3h"}},
    "piecewise, periodic": {
        "piecewise": {"points": _points([("0s", 50), ("13s", 200), ("29s", 20)]), "period": "40s"}
    },
    "piecewise": {"piecewise": _points([("0s", 50), ("13s", 200), ("29s", 20)])},
    "constant": {"constant": 80},
}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_excess_is_the_integral_above_the_level(profile):
    traffic = Traffic.load({"rate": PROFILES[profile], "startAt": "1000s"})
    t0 = np.array([0.0, 5.0, 100.0, 3.3, 86400 * 2.1])
    t1 = t0 + np.array([15.0, 60.0, 1.0, 200.0, 45.0])
    for level in (-5.0, 0.0, 30.0, 100.0, 149.9, 160.0, 300.0):
        got = traffic.excess(t0, t1, level)
        for a, b, value in zip(t0, t1, got, strict=True):
            breaks = np.arange(math.ceil(a), b, 0.25)  # the rate's kinks and steps lie on them
            expected, _ = quad(
                lambda t, level=level: max(0.0, float(traffic.rate_at(t)) - level),
                a,
                b,
                points=breaks[1:],
                limit=2000,
            )
            assert value == pytest.approx(expected, rel=1e-7, abs=1e-7), (level, a, b)


# Half the traffic on 2 canary pods of 25 req/s (the stable keeps its 4): the canary Service is
# short half of each cycle, inside every 60 s piece. Each piece's mean rate is at (or near) its
# capacity, so a piece's mean rate counted almost none of those failures.
WORLD = {
    "horizon": "300s",
    "users": {"count": 500},
    "baseline": {"errorRate": 0.0},
    "releases": [{"name": "good", "probability": 1.0}],
    "platform": {
        "replicas": 4,
        "podStartup": "30s",
        "capacityPerPod": 25,
        "scrapeInterval": "60s",
    },
    "operators": {"alerts": []},
}
HOLD = (
    "kind: Canary\nname: hold\ntrafficRouting: {nginx: {}}\n"
    "steps: [{setWeight: 50}, {pause: {duration: 24h}}]\n"
)
N = 12
FIELDS = ("failed_requests", "bad_requests_new", "excess_bad_requests")


@pytest.mark.parametrize("profile", ["diurnal, short period", "piecewise, periodic"])
def test_fast_engine_counts_the_overload_the_reference_meets(profile):
    """Mean of each count, fast against per-request reference: within 4.5 Welch SEs."""
    world = World.model_validate({**WORLD, "traffic": {"rate": PROFILES[profile]}})
    cw = world.compile(7)
    cells, policy = UserCells(cw.users), policy_from_yaml(HOLD)
    release = world.releases["good"]
    fast, ref = [], []
    for i in range(N):
        ss = np.random.SeedSequence(5, spawn_key=(i,))
        fast.append(Replication(cw, cells, policy, release, ss).run())
        ref.append(simulate_reference(cw, policy, release, ss))
    for field in FIELDS:
        x = np.array([getattr(o, field) for o in fast], dtype=float)
        y = np.array([getattr(o, field) for o in ref], dtype=float)
        se = math.sqrt(x.var(ddof=1) / N + y.var(ddof=1) / N)
        assert abs(x.mean() - y.mean()) <= 4.5 * se, (field, x.mean(), y.mean(), se)
    assert np.mean([o.failed_requests for o in ref]) > 1000  # the case is not empty
