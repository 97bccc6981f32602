"""Statistical oracles, continued: users touched and hurt (anchors §3.2), and the invariants
every outcome must satisfy (DESIGN §5 "Outcomes"), property-style over seeds and policies.

Shared helpers and the tolerance ``Z`` (4 standard errors) come from test_oracles.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_oracles import Bench, check, fault_began, gated_canary, mean_se, pause_canary, world

# --------------------------------------------------------------------------- 3. users

U, RATE, W, P1, HORIZON = 4000, 50.0, 0.05, 0.2, 1800.0
T = HORIZON - 32.0  # canary pods ready at 30 s, nginx weight 2 s later; no rollback
# per-user rate r = RATE/U: w·r·T ≈ 1.1 (random routing touches ~2/3 of users, not all),
# r·T ≈ 22 (a sticky canary user is all but surely touched), w·r·p1·T ≈ 0.22
_ACTIVITY = {"uniform": "uniform", "lognormal": {"lognormal": {"sigma": 1.5}}}


def _users_bench(activity: str, routing: str) -> Bench:
    return Bench(
        world(
            {"errorRate": P1},
            horizon=HORIZON,
            traffic={"rate": RATE},
            users={"count": U, "activity": _ACTIVITY[activity], "routing": routing},
        )
    )


def _expected_users(bench: Bench, routing: str, p: float, n: int) -> tuple[float, float]:
    """Σ_u P(user u gets ≥ 1 candidate request [bad, with p < 1]) over the built population —
    random routing, Poisson(a_u·R·w·p·T) each; sticky, only bucket < w, Poisson(a_u·R·p·T) —
    and the exact SE of a mean over n replications (independent Bernoulli users)."""
    users = bench.cw.users
    rate = users.activity * RATE * p * T  # a_u·R·p·T
    on_canary = np.ones(users.n, bool) if routing == "random" else users.bucket < 100 * W
    prob = -np.expm1(-(W if routing == "random" else 1.0) * rate[on_canary])
    return float(prob.sum()), math.sqrt(float(np.sum(prob * (1 - prob))) / n)


_COMBOS = [(a, r) for a in _ACTIVITY for r in ("random", "sticky")]


@pytest.mark.parametrize("activity, routing", _COMBOS)
def test_users_hurt(activity, routing):
    """Users hurt: 1 − e^(−w·r·p1·T) per user under random routing, 1 − e^(−r·p1·T) for the
    sticky canary's users (bucket < w); uniform activity gives the closed form exactly."""
    bench = _users_bench(activity, routing)
    outs = bench.outcomes(pause_canary(int(100 * W)), n=60)
    assert fault_began(outs, 32.0, RATE * W)
    expected, _ = _expected_users(bench, routing, P1, 60)
    if activity == "uniform" and routing == "random":
        closed = U * -math.expm1(-W * (RATE / U) * P1 * T)
        assert math.isclose(expected, closed, rel_tol=1e-9)
    m, se = mean_se([o.users_hurt for o in outs])
    check(f"users hurt [{activity}, {routing}]", m, expected, se, "n=60")


@pytest.mark.parametrize(
    "activity, routing", [pytest.param(a, r, id=f"{a}-{r}") for a, r in _COMBOS]
)
def test_users_exposed(activity, routing):
    """Users touched: 1 − e^(−w·r·T) under random routing (45 %-vs-1 % anchor of §3.2) against
    ≈ w of the users under sticky routing (the users whose hash bucket is below w)."""
    bench = _users_bench(activity, routing)
    outs = bench.outcomes(pause_canary(int(100 * W)), n=60)
    expected, se = _expected_users(bench, routing, 1.0, 60)
    if routing == "sticky":  # the bucket draw is Binomial(U, w): ≈ w·U users
        on_canary = int(np.sum(bench.cw.users.bucket < 100 * W))
        assert abs(on_canary - W * U) <= 4 * math.sqrt(U * W * (1 - W))
    elif activity == "uniform":
        assert math.isclose(expected, U * -math.expm1(-W * (RATE / U) * T), rel_tol=1e-9)
    m = float(np.mean([o.users_exposed for o in outs]))
    check(f"users exposed [{activity}, {routing}]", m, expected, se, "(exact SE), n=60")


def test_users_exposed_counts_only_requests_after_the_fault():
    """A 20 % canary from 32 s with a time bomb at 1000 s and a horizon of 1010 s: only the
    last 10 s count, U·(1 − e^(−w·r·10 s)) users, although baseline failures (5 %) on the
    canary hurt hundreds of users before the fault began."""
    bench = Bench(
        world(
            {"errorRate": 0.1, "onset": {"afterStart": 1000}},
            horizon=1010,
            traffic={"rate": 50},
            baseline={"errorRate": 0.05},
            users={"count": 2000},
        )
    )
    outs = bench.outcomes(pause_canary(20), n=40)
    assert fault_began(outs, 1000.0, 50 * 0.2)
    expected = 2000 * -math.expm1(-0.2 * (50 / 2000) * 10.0)
    m, se = mean_se([o.users_exposed for o in outs])
    check("users exposed after a time bomb", m, expected, se)


# --------------------------------------------------------------------------- 7. invariants

_PAGE = [
    {"longWindow": "1h", "shortWindow": "5m", "burnRate": 14.4},
    {"longWindow": "6h", "shortWindow": "30m", "burnRate": 6},
]
_ERR_GATE = "interval: 60s\n{count}failureCondition: result > {limit}\n" + (
    "provider: {{query: {{measure: errorRate}}}}"
)
_INVARIANT_SCENARIOS = {
    "canary-gate-alerts-human": (
        {
            "horizon": 7200,
            "traffic": {"rate": 300},
            "users": {"count": 500, "activity": {"lognormal": {"sigma": 1.0}}},
            "baseline": {"errorRate": 0.002},  # with slow ones 0.26 % bad: under 6 × 0.1 %
            "latencyObjective": 0.4,
            "operators": {"alerts": _PAGE, "humanDetection": {"uniform": ["10m", "40m"]}},
        },
        {"errorRate": 0.03, "latencyShift": 0.3},
        gated_canary(10, _ERR_GATE.format(count="", limit=0.02)).replace(
            "- pause: {duration: 100h}\n",
            "- pause: {duration: 10m}\n- setWeight: 50\n- pause: {duration: 10m}\n",
        ),
    ),
    "bluegreen-segment-sticky": (
        {
            "horizon": 5400,
            "baseline": {"errorRate": 0.001},
            "latencyObjective": 0.4,
            "users": {"count": 1000, "routing": "sticky", "segments": {"beta": {"share": "10%"}}},
            "operators": {"alerts": _PAGE, "humanDetection": "20m"},
        },
        {"errorRate": 0.5, "segment": "beta"},
        "kind: BlueGreen\nname: bg\nautoPromotionSeconds: 300\nscaleDownDelaySeconds: 600\n",
    ),
    "bluegreen-dns": (
        {
            "horizon": 3600,
            "baseline": {"errorRate": 0.004},
            "operators": {"alerts": _PAGE, "humanDetection": "10m"},
        },
        {"errorRate": 0.1},
        "kind: BlueGreen\nname: dns\nswitch: dns\ndnsTtl: 120s\n",
    ),
    "basic-canary-strict-gate": (
        {
            "horizon": 3600,
            "baseline": {"errorRate": 0.01},
            "latencyObjective": 0.2,
            "platform": {"replicas": 4},
        },
        {"errorRateMultiplier": 3},
        gated_canary(25, _ERR_GATE.format(count="count: 10\n", limit=0.013))
        .replace("trafficRouting: {nginx: {}}\n", "")
        .replace(
            "- pause: {duration: 100h}\n",
            "- pause: {duration: 20m}\n- setWeight: 75\n- pause: {duration: 20m}\n",
        ),
    ),
    "leak-after-pod-age": (
        {"horizon": 5400, "baseline": {"errorRate": 0.002}, "operators": {"alerts": _PAGE}},
        {"errorRate": 0.2, "onset": {"afterPodAge": "15m"}},
        pause_canary(20).replace("100h", "1h"),
    ),
}


def _set(x: float) -> bool:
    return not math.isnan(x)


@pytest.mark.parametrize("scenario", list(_INVARIANT_SCENARIOS))
def test_outcome_invariants(scenario):
    """bad = failed + slow = new + old; users exposed (after the fault began) ≤ users, 0
    without a fault, ⊇ users hurt when the fault starts with the candidate and the old version
    lost nothing; users hurt (release-caused) ⊆ users with a bad answer, and none for a good
    release unless the old version lost capacity; the gate fields name the gate that rolled
    back; t_detect ≤ t_rollback_start ≤ t_mitigated; mitigation never without (or before)
    detection; false rollbacks only of good releases, escapes only of bad ones; excess − caused
    has mean 0 for either release (within 4·SE). (bluegreen-dns: Argo's 30 s scale-down delay
    removes the old pods while clients still resolve them for the 120 s TTL: the old version
    fails them, release-caused, also for a good release.)"""
    sections, fault, policy = _INVARIANT_SCENARIOS[scenario]
    bench = Bench(world(fault, **sections))
    users = bench.cw.users.n
    kinds = {"", "gate", "alert", "human", "deadline"}
    residuals: dict[str, list[float]] = {"good": [], "bad": []}
    for release in ("good", "bad"):
        for seed in (1, 2, 3):
            for o in bench.outcomes(policy, release=release, n=8, seed=seed):
                assert o.error == "", o.error
                assert o.bad_requests == o.failed_requests + o.slow_requests, o
                assert o.bad_requests == o.bad_requests_new + o.bad_requests_old, o
                assert 0 <= o.bad_requests_new <= o.candidate_requests, o
                assert 0 <= o.caused_bad_requests <= o.bad_requests, o
                assert 0 <= o.users_hurt <= users and 0 <= o.users_exposed <= users, o
                assert o.users_with_bad <= users, o
                if o.bad_requests_old == 0:
                    assert o.users_hurt <= o.users_with_bad, o
                if release == "good":
                    assert o.users_exposed == 0, o  # nothing to be exposed to
                    if o.bad_requests_old == 0:  # nothing else changed: nobody hurt
                        assert o.users_hurt == o.caused_bad_requests == 0, o
                elif "onset" not in fault and o.bad_requests_old == 0:
                    assert o.users_hurt <= o.users_exposed, o
                if o.detected_by == "gate":
                    assert o.gate_run != "" and o.gate_metrics != "", o
                if o.gate_run:
                    assert o.outcome == "rolled_back", o
                else:
                    assert o.gate_metrics == "" and math.isnan(o.gate_step), o
                residuals[release].append(o.excess_bad_requests - o.caused_bad_requests)
                assert o.detected_by in kinds and _set(o.t_detect) == (o.detected_by != ""), o
                assert (o.outcome == "rolled_back") == _set(o.t_rollback_start), o
                if _set(o.t_rollback_start):
                    assert _set(o.t_detect) and o.t_detect <= o.t_rollback_start, o
                if _set(o.t_mitigated):
                    assert _set(o.t_rollback_start) and o.t_rollback_start <= o.t_mitigated, o
                    assert o.t_detect <= o.t_mitigated, o
                if o.outcome == "promoted":
                    assert _set(o.rollout_duration), o
                assert o.false_rollback == (release == "good" and o.outcome == "rolled_back")
                assert not (o.escaped and release == "good"), o
                assert o.bad_release == (release == "bad")
                if release == "good":
                    assert math.isnan(o.t_fault), o
                elif o.escaped:
                    assert _set(o.rollout_duration), o
    # excess − caused is a martingale in the counted requests (each adds bad − b_ref − caused,
    # of mean 0 given the past, as the fault here makes no request less likely bad); a
    # rollback is a stopping time, so its mean stays 0 (optional stopping)
    for release, values in residuals.items():
        m, se = mean_se(values)
        check(f"{release}-release excess − caused [{scenario}]", m, 0.0, se, f"n={len(values)}")


def test_users_with_bad_of_a_good_release_many_requests_per_user():
    """A good release's bad answers are baseline errors, none caused: who got one is drawn
    without per-user counts (``cells.draw_users``) once they outnumber the users. Random
    routing at w = 50 % and 10 % baseline errors over 400 lognormal users (≈ 880 bad answers
    from the canary, 2.2 per user): 1 − e^(−w·r·b₀·T) per user, and nobody hurt."""
    bench = Bench(
        world(
            None,
            horizon=HORIZON,
            traffic={"rate": 10.0},
            baseline={"errorRate": 0.1},
            users={"count": 400, "activity": _ACTIVITY["lognormal"]},
        )
    )
    n = 60
    outs = bench.outcomes(pause_canary(50), release="good", n=n)
    assert all(o.users_hurt == 0 and o.bad_requests_new > 0.9 * 400 for o in outs)
    prob = -np.expm1(-0.5 * bench.cw.users.activity * 10.0 * 0.1 * T)
    se = math.sqrt(float(np.sum(prob * (1 - prob))) / n)
    m = float(np.mean([o.users_with_bad for o in outs]))
    check("users with bad, a good release", m, float(prob.sum()), se, "(exact SE), n=60")
