"""A blue-green DNS switch as its clients see it: each client's resolver moves at its own
uniform time within the TTL, afresh for every switch, as the per-request reference draws them
(sim/engine/reference.py). Found by session 15's differential search: the fast engine held
the moved share at the slot's midpoint from the switch on (the first candidate request came
at 31.4 s where 33.2 s was due), ordered every switch of every replication by one key per
client (the clients failing longest on the way out failed longest on the way back: fewer users
hurt), and waited for the whole TTL before a rollback was done although the candidate's pods
were gone before it."""

from __future__ import annotations

import math

from test_oracles import Bench, mean_se, reference_outcomes, welch

TFAULT = {
    "horizon": "5m",
    "traffic": {"rate": 20},
    "users": {"count": 1000},
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.1}}],
    "platform": {"replicas": 2, "podStartup": "30s"},
    "operators": {"alerts": []},
}
KEEP = "kind: BlueGreen\nname: dns\nswitch: dns\ndnsTtl: 60s\nscaleDownDelaySeconds: 3600\n"


def test_the_first_request_after_a_dns_switch_comes_as_clients_move():
    """A switch from 31 s, each client moving at a uniform time within the 60 s TTL at 20 req/s:
    the first candidate request's wait is Rayleigh with rate 20·(t − 31)/60, E[t_fault] =
    31 + √(π·60/(2·20)) = 33.17 (the reference: 33.17 ± 0.09)."""
    m, se = mean_se([o.t_fault for o in Bench(TFAULT).outcomes(KEEP, n=200)])
    assert abs(m - (31 + math.sqrt(math.pi * 60 / 40))) < 4 * se, (m, se)


def test_a_few_clients_of_unequal_activity_move_one_by_one():
    """20 clients of lognormal(σ = 2) activity and a 600 s TTL: the candidate's first request
    waits for a busy client to move, not for a share of the requests growing smoothly (the
    fast engine read 24.6 s against the reference's 54.3 ± 2.5 with a smooth share)."""
    spec = TFAULT | {
        "horizon": "3m",
        "traffic": {"rate": 5},
        "users": {"count": 20, "activity": {"lognormal": {"sigma": 2.0}}},
    }
    policy = KEEP.replace("dnsTtl: 60s", "dnsTtl: 600s")
    bench = Bench(spec)
    fast, ref = bench.outcomes(policy, n=300), reference_outcomes(bench, policy, 150)
    for field in ("t_fault", "users_exposed", "candidate_requests"):
        m_f, m_r, z = welch(fast, ref, field)
        assert abs(z) < 4, (field, m_f, m_r, z)


UNDO = {
    "horizon": "8m",
    "traffic": {"rate": 20},
    "users": {"count": 1000},
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.1}}],
    "platform": {"replicas": 2, "podStartup": "10s"},
    "operators": {"alerts": [], "humanDetection": "3m", "acknowledgement": "0s"},
}


def test_each_switch_moves_the_clients_in_an_order_of_its_own():
    """Old pods scaled down at the switch, a human undoing the release 3 min later: unmoved
    clients fail on the way out and again on the way back. With one order for both switches
    the same clients failed longest twice (the fast engine: 742 users hurt against the
    reference's 766)."""
    policy = KEEP.replace("scaleDownDelaySeconds: 3600", "scaleDownDelaySeconds: 0")
    bench = Bench(UNDO)
    fast, ref = bench.outcomes(policy, n=200), reference_outcomes(bench, policy, 100)
    for field in ("users_hurt", "users_with_bad", "bad_requests"):
        m_f, m_r, z = welch(fast, ref, field)
        assert abs(z) < 4, (field, m_f, m_r, z)


def test_a_rollback_is_done_when_the_candidate_pods_are_gone_inside_the_ttl():
    """Undone after promotion with the old pods gone (scaleDownDelaySeconds 30 < TTL 60): the
    old pods are ready 6 s after the undo, the controller switches back and scales the
    candidate down 30 s later, while clients are still moving: from then no request can reach
    it. The fast engine waited for the whole TTL (71 s)."""
    spec = UNDO | {
        "horizon": "16m",
        "traffic": {"rate": 7.4},
        "baseline": {"errorRate": 0.03},
        "platform": {"replicas": 6, "podStartup": "6s", "routerDelay": {"serviceSelector": "5s"}},
        "operators": {"alerts": [], "humanDetection": "591s", "acknowledgement": "0s"},
    }
    policy = KEEP.replace("scaleDownDelaySeconds: 3600", "scaleDownDelaySeconds: 30")
    bench = Bench(spec)
    for outcomes in (bench.outcomes(policy, n=20), reference_outcomes(bench, policy, 20)):
        for out in outcomes:
            assert out.outcome == "rolled_back"
            assert out.t_mitigated - out.t_rollback_start == 36.0


CUT_MID_SLOT = {
    "horizon": "400s",
    "traffic": {"rate": 16.5},
    "users": {"count": 5000, "activity": "uniform"},
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.02}}],
    "platform": {"replicas": 5, "podStartup": "8s", "scrapeInterval": "15s"},
    "operators": {"alerts": [], "acknowledgement": "0s"},
}
FAILS_AT_ONCE = (
    "kind: BlueGreen\nname: bg\nswitch: dns\ndnsTtl: 30s\nscaleDownDelaySeconds: 3600\n"
    "autoPromotionSeconds: 120\npostPromotionAnalysis: {templates: [{templateName: g}]}\n"
    "analysisTemplates:\n  - name: g\n    metrics:\n      - name: m\n        interval: 30s\n"
    "        count: 1\n        initialDelay: 0s\n        successCondition: 'result[0] < 0'\n"
    "        provider: {query: {measure: requestCount}}\n"
)


def test_a_switch_back_inside_a_slot_keeps_the_moved_share_up_to_it():
    """The switch at t₁ = 129, a post-promotion gate failing at once, the switch back at t₂ =
    139 (Δ = 10 s into a 15 s slot), TTL 30 s: each client reaches the candidate from t₁ + 30·U
    to t₂ + 30·U', so the candidate gets 16.5 · (Δ²/(2·30) + 30/2) = 275.0 requests. A piece of
    the switch drafted to the slot's end and cut at t₂ kept the whole slot's mean moved share
    (0.45 where [135, 139) has 0.27): 286.0 (found by session 17's differential search)."""
    outs = Bench(CUT_MID_SLOT).outcomes(FAILS_AT_ONCE, n=150)
    assert all(o.t_rollback_start == 138.0 for o in outs)  # the timeline the closed form has
    mean, se = mean_se([o.candidate_requests for o in outs])
    assert abs(mean - 16.5 * (10**2 / 60 + 15)) < 4 * se, (mean, se)


def test_clients_move_within_a_slot_longer_than_the_ttl():
    """A 60 s slot, TTL 30 s, the switch at t₁ = 129 and back at t₂ = 189: client u is on the
    candidate over [t₁ + 30·U, t₂ + 30·U'], so with λ = 16.5/5000 per client and a = 30λ,
    users_exposed = 5000·(1 − e^(−60λ)·(2 cosh a − 2)/a²) = 894.8. Drafted one slot at a time,
    the clients moved in one step per slot: 879.7 (found by session 17's differential search)."""
    world = {**CUT_MID_SLOT, "platform": {**CUT_MID_SLOT["platform"], "scrapeInterval": "60s"}}
    policy = FAILS_AT_ONCE.replace("initialDelay: 0s", "initialDelay: 40s")
    outs = Bench(world).outcomes(policy, n=300)
    assert all(o.t_rollback_start == 188.0 for o in outs)
    lam = 16.5 / 5000
    a = 30 * lam
    expected = 5000 * (1 - math.exp(-60 * lam) * (2 * math.cosh(a) - 2) / a**2)
    mean, se = mean_se([o.users_exposed for o in outs])
    assert abs(mean - expected) < 4 * se, (mean, se, expected)


def test_a_rollback_during_a_switch_is_done_only_when_the_switch_back_is():
    """Two clients; the always-failing gate rolls back while the switch to the candidate is
    still under way, the switch back lands 1 s later and sends every client to the address it
    leaves until its own time within the 60 s TTL (the candidate's pods stay): t_mitigated =
    t_rollback_start + 61 in every replication, as the reference records. The recorder looked
    at the clients moved so far: when neither had, it found the rollback done at once (in 14 %
    of replications; found by session 17's differential search)."""
    world = {**CUT_MID_SLOT, "horizon": "500s", "traffic": {"rate": 10}, "users": {"count": 2}}
    world["platform"] = {"replicas": 2, "podStartup": "8s", "scrapeInterval": "15s"}
    policy = FAILS_AT_ONCE.replace("dnsTtl: 30s", "dnsTtl: 60s").replace(
        "scaleDownDelaySeconds: 3600\n",
        "scaleDownDelaySeconds: 3600\nabortScaleDownDelaySeconds: 3600\n",
    )
    outs = Bench(world).outcomes(policy, n=100)
    assert all(o.t_mitigated - o.t_rollback_start == 61.0 for o in outs)
