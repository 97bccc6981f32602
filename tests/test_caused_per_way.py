"""Release-caused requests are counted per way a request goes bad (failure, overload, slowness),
each on a draw the counterfactual shares, as the per-request reference counts them: extra pods
relieving an overload do not make up for a fault's errors (``BlastRadius._caused_means``).
Found by sessions 15 and 16's differential searches (caused_bad_requests z −24 and −112)."""

from __future__ import annotations

import math

from test_oracles import BASE, Bench, check, pause_canary, reference_outcomes, welch

# 100 req/s on 4 pods of 20 req/s: full capacity (80) overloads f = 0.2 of the requests. A 20 %
# canary gets its own pod (Argo keeps the stable at 4 with traffic routing): 20 req/s on the
# canary's pod, 80 on the stable's 4, neither overloaded. The fault fails p = 0.1 of the
# canary's requests. The counterfactual fails 0.2 of every request (its overload), the canary
# 0.1 of its own: b − b_ref = −0.1, yet 0.8 × 0.1 of the canary's requests fail where the
# counterfactual serves them (its overload draw spares them and nothing fails at p₀ = 0).
RELIEF = {
    **BASE,
    "horizon": 600,
    "traffic": {"rate": 100},
    "users": {"count": 200},
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.1}}],
    "platform": {"replicas": 4, "capacityPerPod": 20, "podStartup": 0},
}
P, F = 0.1, 0.2


def test_a_fault_under_relieved_overload_causes_its_own_errors():
    """caused = (1 − f)·p of the canary's requests (the counterfactual's overload draw spares
    them, its failure draw fails none); before, b − b_ref = p − f < 0 counted none."""
    outs = Bench(RELIEF).outcomes(pause_canary(20), n=40)
    requests = sum(o.candidate_requests for o in outs)
    caused = sum(o.caused_bad_requests for o in outs)
    share = (1.0 - F) * P
    assert all(o.bad_requests_old == 0 for o in outs)  # the stable is no worse off
    check("caused share", caused / requests, share, math.sqrt(share * (1 - share) / requests))
    failed = sum(o.bad_requests_new for o in outs) / requests
    check("candidate failed share", failed, P, math.sqrt(P * (1 - P) / requests))


def test_caused_and_hurt_agree_with_the_per_request_reference():
    bench = Bench(RELIEF)
    fast = bench.outcomes(pause_canary(20), n=60)
    ref = reference_outcomes(bench, pause_canary(20), 8)
    for field in ("caused_bad_requests", "users_hurt", "bad_requests", "excess_bad_requests"):
        m_f, m_r, z = welch(fast, ref, field)
        assert abs(z) < 4, (field, m_f, m_r, z)


def test_a_fault_with_fewer_errors_but_slower_answers_causes_its_slow_ones():
    """A release that fixes errors (p₀ 0.05 → 0) but answers 100 ms slower: latencies
    Exp(mean 100 ms) against a 250 ms objective, slow with q₀ = e^−2.5, then q = e^−1.5. Its
    slow answers are caused where the counterfactual's would have been good: (1 − p₀)(q − q₀)
    of its requests, 0.134; netting the errors it fixed against them, b − b_ref, counted
    0.095."""
    spec = {
        **RELIEF,
        "platform": {"replicas": 4},
        "baseline": {"errorRate": 0.05, "latency": {"exponential": {"mean": 0.1}}},
        "latencyObjective": 0.25,
        "releases": [
            {"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.0, "latencyShift": 0.1}}
        ],
    }
    bench = Bench(spec)
    outs = bench.outcomes(pause_canary(20), n=40)
    requests = sum(o.candidate_requests for o in outs)
    caused = sum(o.caused_bad_requests for o in outs)
    share = (1.0 - 0.05) * (math.exp(-1.5) - math.exp(-2.5))
    check("caused share", caused / requests, share, math.sqrt(share * (1 - share) / requests))
    ref = reference_outcomes(bench, pause_canary(20), 8)
    m_f, m_r, z = welch(outs, ref, "caused_bad_requests")
    assert abs(z) < 4, (m_f, m_r, z)


def test_under_a_varying_rate_the_relieved_overload_agrees_with_the_reference():
    """A diurnal rate of 63 to 117 req/s: full capacity (80) and the canary's pod (20 req/s of
    its 20 % share, level 100) both overload at the peak, full capacity the more throughout."""
    rate = {"diurnal": {"mean": 90.0, "amplitude": 0.3, "period": "600s", "peakAt": "300s"}}
    bench = Bench({**RELIEF, "traffic": {"rate": rate}})
    fast = bench.outcomes(pause_canary(20), n=60)
    ref = reference_outcomes(bench, pause_canary(20), 8)
    for field in ("caused_bad_requests", "bad_requests_new", "users_hurt"):
        m_f, m_r, z = welch(fast, ref, field)
        assert abs(z) < 4, (field, m_f, m_r, z)
