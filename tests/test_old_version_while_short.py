"""The old version's requests while full capacity is short in part of a piece: counted where the
release changes their odds, not the whole piece (sim/engine/short_capacity.py). Found by
session 15's differential search, root cause by a helper in session 16."""

from __future__ import annotations

from test_oracles import Bench, reference_outcomes, welch


def test_the_old_versions_bad_requests_while_full_capacity_is_short_part_of_a_piece():
    """One replica of capacity 59.5 req/s under a diurnal rate peaking at 74 req/s: the old
    version at full capacity (the counterfactual) is overloaded only while r(t) > 59.5, for
    t in (46.4, 233.6) s, and the old version's requests count only while the release changes
    its odds (``Outcome``). ``BlastRadius._account_old`` counted every old request of a 60 s
    piece in which they change anywhere, so its baseline errors before 46.4 s and after
    233.6 s were counted too: bad_requests_old 116.4 ± 0.7 where the reference gives
    102.1 ± 1.1 (a hand calculation of the overcount: 14.7). Each counted piece is now thinned
    to the time where r(t) exceeds min(L_S, L_full), the levels at which the old Service and
    full capacity overload."""
    spec = {
        "horizon": "300s",
        "traffic": {
            "rate": {
                "diurnal": {"mean": 41.0, "amplitude": 0.81, "period": "600s", "peakAt": "140s"}
            }
        },
        "users": {"count": 1000},
        "baseline": {"errorRate": 0.01},
        "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.1}}],
        "platform": {
            "replicas": 1,
            "podStartup": {"exponential": {"mean": "20s"}},
            "scrapeInterval": "60s",
            "capacityPerPod": 59.5,
        },
        "operators": {"alerts": []},
    }
    policy = (
        "kind: Canary\nname: c\ntrafficRouting: {nginx: {}}\nscaleDownDelaySeconds: 10\n"
        "abortScaleDownDelaySeconds: 0\nmaxSurge: 0%\nmaxUnavailable: 25%\nsteps:\n"
        "  - setWeight: 20\n  - pause: {duration: 180s}\n"
        "  - setWeight: 30\n  - pause: {duration: 90s}\n"
    )
    bench = Bench(spec)
    fast, ref = bench.outcomes(policy, n=300), reference_outcomes(bench, policy, 24)
    m_f, m_r, z = welch(fast, ref, "bad_requests_old")
    assert abs(z) < 4, (m_f, m_r, z)
