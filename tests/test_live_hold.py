"""The hold experiment's parts without the bench: the gate's schedule, the window statistics,
the offline replay of a sequential gate, and the per-case calibration tests (issue #20)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from live.case_tests import case_tests, passes
from live.hold import Slots, describe_schedule, gate_schedule, sequential_metric
from live.windows import compare_records, replay, split_dispersion
from sim.runs.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "live-bench.yaml"


@pytest.fixture(scope="module")
def sprt():
    policy = load_scenario(SCENARIO).policies["sprt"]
    return policy, sequential_metric(policy).provider.sequential


def held(weight: float, slots: int, p_canary: float, rng, round_robin: bool = False) -> Slots:
    """Per-second counts at 100 req/s: Poisson arrivals, a random or round-robin split."""
    total = rng.poisson(100, slots)
    if round_robin:
        canary = np.diff(np.floor(np.cumsum(total) * weight / 100 + rng.uniform()), prepend=0)
        canary = np.clip(canary.astype(int), 0, total)
    else:
        canary = rng.binomial(total, weight / 100)
    stable = total - canary
    return Slots(
        np.arange(1.0, slots + 1),
        canary,
        rng.binomial(canary, p_canary),
        stable,
        rng.binomial(stable, 0.01),
    )


def test_the_schedule_is_the_simulators_windows_up_to_the_promotion(sprt) -> None:
    policy, _ = sprt
    windows = gate_schedule(policy, 1.0, 1.0)
    # measurements at 4, 6, ..., 22 s read [t-3, t-1]; the weight goes 20 -> 50 at 14 s
    assert len(windows) == 10
    assert windows[:6] == ((20.0, 20.0),) * 6 and windows[6] == (20.0, 50.0)
    assert windows[7:] == ((50.0, 50.0),) * 3
    assert describe_schedule(windows) == "6 windows at 20 %, 1 window at 20→50 %, 3 windows at 50 %"


def test_split_dispersion_tells_a_random_split_from_round_robin() -> None:
    rng = np.random.default_rng(1)
    random, rr = held(20, 4000, 0.04, rng), held(20, 4000, 0.04, rng, round_robin=True)
    total = random.canary_requests + random.stable_requests
    # E = 1 for a random split; its s.e. over 4,000 slots is about sqrt(2/4000) = 0.022
    assert split_dispersion(random.canary_requests, total, 20) == pytest.approx(1.0, abs=0.1)
    total = rr.canary_requests + rr.stable_requests
    assert split_dispersion(rr.canary_requests, total, 20) < 0.1


def test_the_replay_of_ideal_records_is_the_gates_own_promotion_probability(sprt) -> None:
    """Windows drawn from long ideal records give the simulator's promotion probability for
    sprt:bad-4pct (4.9 % over 4,000 replications, s.e. 0.35 %), and losing the last window
    nearly doubles it — the effect behind issue #20."""
    policy, test = sprt
    rng = np.random.default_rng(7)
    records = {w: held(w, 50_000, 0.04, rng) for w in (20.0, 50.0)}
    windows = gate_schedule(policy, 1.0, 1.0)
    full = replay(records, windows, test, 40_000, seed=3)
    short = replay(records, windows[:-1], test, 40_000, seed=3)
    promote = full["accept"] + full["continue"]
    # s.e.: replay 0.11 %, the records' own noise ~0.3 %, the simulated value 0.35 %
    assert promote == pytest.approx(0.050, abs=0.015)
    assert short["accept"] + short["continue"] > promote + 0.03
    same = replay(records, windows, test, 40_000, seed=3)
    assert same == full  # a fixed seed replays the same paths


def test_round_robin_does_not_move_the_conditional_sprt(sprt) -> None:
    """The count-ratio SPRT conditions on each window's requests: a smooth weighted round robin
    (HAProxy) and a random split (the simulator) give the same promotion probability."""
    policy, test = sprt
    rng = np.random.default_rng(11)
    windows = gate_schedule(policy, 1.0, 1.0)
    shares = []
    for rr in (False, True):
        records = {w: held(w, 50_000, 0.04, rng, round_robin=rr) for w in (20.0, 50.0)}
        out = replay(records, windows, test, 40_000, seed=5)
        shares.append(out["accept"] + out["continue"])
    assert shares[0] == pytest.approx(shares[1], abs=0.015)


def test_compare_records_names_an_error_rate_that_differs(sprt) -> None:
    _, test = sprt
    rng = np.random.default_rng(2)
    live = {20.0: held(20, 2000, 0.02, rng)}
    same = {20.0: held(20, 8000, 0.04, rng)}
    rows = {r.quantity: r for r in compare_records(live, same, [20.0], test, 2)}
    canary = rows["20 %: canary error rate"]
    assert canary.p_value is not None and canary.p_value < 1e-6
    assert rows["20 %: stable error rate"].p_value > 0.001
    live = {20.0: held(20, 2000, 0.04, rng)}
    rows = {r.quantity: r for r in compare_records(live, same, [20.0], test, 2)}
    assert rows["20 %: canary error rate"].p_value > 0.001


class _Prediction:
    def __init__(self, promoted: float, t_detect) -> None:
        self.run, self.replications = "sprt:bad-4pct", 2000
        self.outcome = {"promoted": promoted, "rolled_back": 1 - promoted}
        self.samples = {"t_detect": np.asarray(t_detect, float)}


class _Live:
    def __init__(self, outcome: str, t_detect) -> None:
        self.outcome, self.t_detect = outcome, t_detect


def test_per_case_tests_catch_a_promotion_rate_or_detection_times_far_off() -> None:
    rng = np.random.default_rng(4)
    grid = np.arange(6.0, 23.0, 2.0)
    weights = np.array([4, 12, 15, 15, 14, 14, 11, 6, 4], float)
    simulated = rng.choice(grid, 1900, p=weights / weights.sum())
    prediction = _Prediction(0.05, simulated)
    alike = [_Live("rolled_back", t) for t in rng.choice(grid, 19, p=weights / weights.sum())]
    alike.append(_Live("promoted", None))
    tests = case_tests(prediction, alike, seed=1)
    assert [t.quantity for t in tests] == ["promoted", "t_detect"]
    assert passes(tests)
    # 8 promotions in 20 against 5 %, and detections all at the late end
    late = [_Live("rolled_back", t) for t in rng.choice(grid[-3:], 12)]
    far = late + [_Live("promoted", None)] * 8
    tests = case_tests(prediction, far, seed=1)
    assert not passes(tests)
    assert all(t.p_value < 0.001 for t in tests)
