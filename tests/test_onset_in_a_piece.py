"""A fault beginning inside a piece under a varying rate: the piece's failure and slow
probabilities are averages over its requests, not its seconds (sim/engine/onset.py).

Session 15's differential search found the fast engine averaging over time: a fault starting
as the rate stepped from 20 to 100 req/s, 20 s into a 60 s scrape slot, failed 735 requests
where 1000 were due (the per-request reference: 1003 ± 3.4)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from test_oracles import Bench, mean_se

from sim.engine.onset import onset_shares
from sim.world.traffic import Traffic
from sim.world.versions import Fault

STEP = {"piecewise": [{"at": 0, "rate": 20}, {"at": "200s", "rate": 100}]}
DIURNAL = {"diurnal": {"mean": 40, "amplitude": 0.9, "period": "300s", "peakAt": "70s"}}


def _direct(traffic, fault, start, end, onset):
    """(after, ramp) of one pod and piece by quadrature of the rate and the ramp."""
    ramp = fault.growth.duration if fault.growth is not None else None

    def weight(t):
        if t < onset:
            return 0.0
        return 1.0 if ramp is None else min((t - onset) / ramp, 1.0)

    points = [x for x in (onset, 200.0) if start < x < end]
    rate = traffic.rate_at
    total = integrate.quad(rate, start, end, points=points or None)[0]
    after = integrate.quad(lambda t: rate(t) * (t >= onset), start, end, points=points or None)
    ramped = integrate.quad(lambda t: rate(t) * weight(t), start, end, points=points or None)
    return after[0] / total, ramped[0] / total


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("growth", [None, "40s", "10m"])
@pytest.mark.parametrize("rate", [STEP, DIURNAL], ids=["step", "diurnal"])
def test_shares_are_request_weighted(rate, growth):
    traffic = Traffic.model_validate({"rate": rate, "startAt": "30s"})
    spec = {"errorRate": 0.5} | ({"growth": {"duration": growth}} if growth else {})
    fault = Fault.model_validate(spec)
    starts, ends = np.array([120.0, 180.0, 240.0]), np.array([180.0, 240.0, 300.0])
    onsets = np.array([150.0, 200.0, 239.0, 10.0, np.inf])
    after, ramp = onset_shares(fault, traffic, starts, ends, onsets)
    assert after.shape == ramp.shape == (5, 3)
    for i, onset in enumerate(onsets.tolist()):
        for j in range(3):
            if onset == np.inf:
                assert after[i, j] == ramp[i, j] == 0.0
                continue
            want = _direct(traffic, fault, starts[j], ends[j], onset)
            assert (after[i, j], ramp[i, j]) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_evenly_spread_requests_are_time_averages():
    fault = Fault.model_validate({"errorRate": 0.5, "growth": {"duration": "20s"}})
    after, ramp = onset_shares(fault, None, np.array([180.0]), np.array([240.0]), np.array([200.0]))
    assert after.item() == pytest.approx(40 / 60)
    assert ramp.item() == pytest.approx((10 + 20) / 60)  # ∫ ramp: 20 s rising (10), 20 s grown


def _bench(fault: dict) -> Bench:
    return Bench(
        {
            "horizon": "240s",
            "traffic": {"rate": STEP},
            "users": {"count": 1000},
            "releases": [{"name": "bad", "probability": 1.0, "fault": fault}],
            "platform": {"replicas": 4, "podStartup": "10s", "scrapeInterval": "60s"},
            "operators": {"alerts": []},
        }
    )


HOLD = (
    "kind: Canary\nname: hold\ntrafficRouting: {nginx: {}}\n"
    "steps: [{setWeight: 50}, {pause: {duration: 24h}}]\n"
)


def test_a_fault_starting_as_the_rate_steps_fails_the_requests_after_it():
    """The fault begins at 200 s as the rate steps from 20 to 100 req/s, inside a 60 s slot;
    a canary held at 50 % to the 240 s horizon: 0.5·100·40 = 2000 requests after the onset,
    half failing, E ≈ 1000 (plus 0.1 % baseline before it; the reference: 1003 ± 3.4)."""
    bench = _bench({"errorRate": 0.5, "onset": {"afterStart": "200s"}})
    m, se = mean_se([o.bad_requests_new for o in bench.outcomes(HOLD, n=100)])
    assert abs(m - 1000.0) < 4 * se + 5.0, (m, se)  # (5: the baseline's share, at most)


def test_a_growing_fault_ramps_over_the_requests_after_it():
    """The same with a 40 s ramp to 50 %: 0.5·100·∫_0^40 0.5·s/40 ds = 500 failed requests
    (time-averaged over the slot, 367)."""
    bench = _bench(
        {"errorRate": 0.5, "onset": {"afterStart": "200s"}, "growth": {"duration": "40s"}}
    )
    m, se = mean_se([o.bad_requests_new for o in bench.outcomes(HOLD, n=100)])
    assert abs(m - 500.0) < 4 * se + 5.0, (m, se)
