"""Mirror copies and load tests in both engines: closed forms, and they hurt no one (DESIGN §5).

A ``SetMirror`` copies ``percent`` % of the requests routed to the stable Service (of the matching
users only, with a match) to the canary Service after the router's delay; a ``SetLoad`` sends
synthetic requests there at once. Both count in the canary's WindowStats — what a gate sees —
and in no field that measures harm. The fast engine (sim/engine/flows.py, tape.py) and the
per-request reference (sim/engine/reference_shadow.py) are driven by the same script
(tests/engine_script.py). One window's count of Poisson requests is Poisson: each closed-form
check allows Z = 4 standard errors of that count (a false alarm about once in 16,000).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from engine_script import Bench, measure

import policies.controller as pc
from policies.common import RouteMatch

Z = 4.0
RATE, WINDOW = 100.0, 300.0
BASE: dict = {
    "horizon": 1500,
    "traffic": {"rate": RATE},
    "users": {
        "count": 2000,
        "activity": {"lognormal": {"sigma": 1.0}},
        "segments": {"beta": {"share": "20%", "header": {"name": "x-beta", "value": "true"}}},
    },
    "baseline": {"errorRate": 0.0},
    "latencyObjective": None,
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.2}}],
    "platform": {"replicas": 4, "podStartup": {"uniform": ["20s", "40s"]}},
    "operators": {"alerts": []},
}
BETA = (RouteMatch.model_validate({"headers": {"x-beta": {"exact": "true"}}}),)
ENGINES = ("fast", "ref")


def bench(fault: dict | None = None, **platform) -> Bench:
    """BASE with the bad release's fault replaced (``{}``: a good release) and platform keys."""
    spec = copy.deepcopy(BASE)
    if fault == {}:
        spec["releases"] = [{"name": "bad", "probability": 1.0}]
    elif fault is not None:
        spec["releases"][0]["fault"] = fault
    spec["platform"].update(platform)
    return Bench(spec)


def near(measured: float, expected: float, what: str) -> None:
    """A Poisson count against its mean: within Z standard errors."""
    se = math.sqrt(max(expected, 1.0))
    assert abs(measured - expected) <= Z * se, f"{what}: {measured} vs {expected:.1f} ± {se:.1f}"


def beta_share(b: Bench) -> float:
    return float(b.cw.users.activity[b.cw.users.masks["beta"]].sum())


@pytest.mark.parametrize("engine", ENGINES)
def test_mirror_copies_percent_of_the_stable_requests_and_hurts_no_one(engine):
    b = bench()
    plan = {
        0.0: [pc.Scale("canary", 2), pc.SetMirror("shadow", 30.0)],
        600.0: [measure("on", WINDOW)],
        700.0: [pc.SetMirror("shadow", 0.0)],
        1200.0: [measure("off", WINDOW)],
    }
    out, script, rep = b.run(engine, plan, "bad", 0)
    on, off = script.seen["on"], script.seen["off"]
    near(on.canary.requests, 0.3 * RATE * WINDOW, "copies")
    near(on.canary.errors, 0.2 * on.canary.requests, "copies failing at the fault's rate")
    near(on.stable.requests, RATE * WINDOW, "every user request still on stable")
    assert off.canary.requests == 0  # percent 0 removed the route
    # nothing that measures harm sees the copies; nor do the SLO alerts' series
    assert out.bad_requests == out.candidate_requests == 0
    assert out.users_hurt == out.users_exposed == out.users_with_bad == 0
    assert math.isnan(out.t_fault) and out.excess_bad_requests == 0
    j0, j1 = int(on.start // 15), int(on.end // 15)
    svc = rep.tape.svc_req if engine == "fast" else rep.scrapes.svc_req
    assert sum(svc[j0:j1]) == on.stable.requests


@pytest.mark.parametrize("engine", ENGINES)
def test_mirror_match_copies_only_its_users_and_the_first_matching_route_wins(engine):
    b = bench(fault={"errorRate": 0.3, "segment": "beta"})
    share = beta_share(b)
    plan = {
        0.0: [pc.Scale("canary", 2), pc.SetMirror("beta", 50.0, BETA)],
        600.0: [measure("beta", WINDOW), pc.SetMirror("all", 20.0)],
        1200.0: [measure("both", WINDOW)],
    }
    _, script, _ = b.run(engine, plan, "bad", 1)
    one, two = script.seen["beta"].canary, script.seen["both"].canary
    near(one.requests, 0.5 * share * RATE * WINDOW, "beta copies")
    near(one.errors, 0.3 * one.requests, "a segment fault applies to its segment's copies")
    both = (0.5 * share + 0.2 * (1.0 - share)) * RATE * WINDOW
    near(two.requests, both, "beta copied by its own route, the others by the catch-all")
    near(two.errors, 0.3 * 0.5 * share * RATE * WINDOW, "only beta's copies meet the fault")


@pytest.mark.parametrize("engine", ENGINES)
def test_load_adds_rate_times_window_and_no_segment_fault(engine):
    b = bench(fault={"errorRate": 0.3, "segment": "beta"})
    plan = {
        0.0: [pc.Scale("canary", 2), pc.SetLoad(15.0)],
        600.0: [measure("on", WINDOW)],
        700.0: [pc.SetLoad(0.0)],
        1200.0: [measure("off", WINDOW)],
    }
    out, script, _ = b.run(engine, plan, "bad", 2)
    on = script.seen["on"].canary
    near(on.requests, 15.0 * WINDOW, "synthetic requests")
    assert on.errors == 0  # no user, no segment: the fault is beta's only
    assert script.seen["off"].canary.requests == 0
    assert out.bad_requests == out.users_exposed == out.candidate_requests == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_load_fails_at_the_candidates_rate(engine):
    _, script, _ = bench().run(
        engine,
        {0.0: [pc.Scale("canary", 1), pc.SetLoad(10.0)], 600.0: [measure("on", WINDOW)]},
        "bad",
        3,
    )
    on = script.seen["on"].canary
    near(on.requests, 10.0 * WINDOW, "synthetic requests")
    near(on.errors, 0.2 * on.requests, "failing at the fault's rate")


@pytest.mark.parametrize("engine", ENGINES)
def test_copies_and_load_overload_a_small_canary(engine):
    """capacityPerPod 30 and one canary pod: 30 copies/s and 10 synthetic/s are 40/s, a quarter
    of them beyond what it can take; the stable's four pods (120/s) carry the users unharmed."""
    b = bench(fault={}, capacityPerPod=30.0)
    plan = {
        0.0: [pc.Scale("canary", 1), pc.SetMirror("m", 30.0), pc.SetLoad(10.0)],
        600.0: [measure("on", WINDOW)],
    }
    out, script, _ = b.run(engine, plan, "bad", 4)
    on = script.seen["on"].canary
    near(on.requests, 40.0 * WINDOW, "copies and synthetic requests")
    near(on.errors, 0.25 * on.requests, "the overloaded quarter fails")
    assert script.seen["on"].stable.errors == 0
    assert out.bad_requests == out.users_hurt == 0 and out.excess_bad_requests == 0


def test_copies_carry_the_candidates_latency_in_both_engines():
    """A gate's p50 of the canary over mirrored traffic is the candidate's (shifted) latency."""
    b = bench(fault={"latencyShift": 0.2})
    plan = {
        0.0: [pc.Scale("canary", 2), pc.SetMirror("m", 20.0)],
        600.0: [pc.Measure("script", "p", WINDOW, quantiles=(0.5,))],
    }
    p50 = {}
    for engine in ENGINES:
        seen = b.run(engine, plan, "bad", 5)[1].seen["p"]
        p50[engine] = seen.canary.latency[0.5]
        shift = p50[engine] - seen.stable.latency[0.5]
        assert 0.15 < shift < 0.25, (engine, shift)
    assert abs(p50["fast"] - p50["ref"]) < 0.03, p50


def test_without_the_actions_the_fast_engine_is_unchanged():
    """A mirror at 0 % and a load of 0 leave the state as it was: the same draws and record."""
    b = bench()
    base = {0.0: [pc.Scale("canary", 2), pc.SetWeight(10.0)], 600.0: [measure("m", WINDOW)]}
    noop = {0.0: [*base[0.0], pc.SetMirror("m", 0.0), pc.SetLoad(0.0)], 600.0: base[600.0]}
    one, two = b.run("fast", base, "bad", 6)[0], b.run("fast", noop, "bad", 6)[0]
    assert repr(one) == repr(two)


def test_fast_and_reference_agree_on_mirrored_gate_windows():
    """Over replications: the canary's requests and errors under a mirror, both engines, against
    each other and the closed form (Welch, Z = 4)."""
    b = bench()
    plan = {0.0: [pc.Scale("canary", 2), pc.SetMirror("m", 10.0)], 300.0: [measure("w", WINDOW)]}
    means = {}
    for engine, n in (("fast", 60), ("ref", 20)):
        requests = b.many(engine, plan, "bad", n, "w", "requests")
        errors = b.many(engine, plan, "bad", n, "w", "errors")
        means[engine] = (
            requests.mean(),
            requests.var(ddof=1) / n,
            errors.mean(),
            errors.var(ddof=1) / n,
        )
    expected = 0.1 * RATE * (WINDOW - 2.0)  # the nginx route lands 2 s in
    for k in (0, 2):
        diff = means["fast"][k] - means["ref"][k]
        se = math.sqrt(means["fast"][k + 1] + means["ref"][k + 1])
        assert abs(diff) <= Z * se, (k, means)
    near(np.mean([means["fast"][0], means["ref"][0]]), expected, "mean copies")


@pytest.mark.parametrize("engine", ENGINES)
def test_pods_joining_an_empty_group_at_one_instant_serve_at_once(engine):
    """Two canary pods ready at the same instant (a fixed podStartup) behind a weight set
    before they serve: from then on the canary's requests are served (the fast engine once
    kept failing them all, as if the group were still empty, until the next event)."""
    b = bench({}, podStartup="30s")
    plan = {0.0: [pc.SetWeight(50.0), pc.Scale("canary", 2)], 400.0: [measure("m", WINDOW)]}
    _, script, _ = b.run(engine, plan, "bad", 0)
    seen = script.seen["m"].canary
    near(seen.requests, 0.5 * RATE * WINDOW, "half the traffic on the canary")
    assert seen.errors == 0  # a good release with no baseline errors, and pods serving


def test_the_reference_load_tester_stops_before_it_starts():
    """A Flagger A/B test whose load test is set and stopped at one instant (iterations 1): the
    reference's load tester process starts after the rate is back to 0 and must not divide by
    it (it raised ZeroDivisionError in 31 of 40 replications; session 15's differential
    search)."""
    import numpy as np
    from test_oracles import Bench

    from policies import policy_from_yaml
    from sim.engine.reference import simulate_reference

    bench = Bench(
        {
            "horizon": "20m",
            "traffic": {"rate": 25.6},
            "users": {
                "count": 198,
                "routing": "sticky",
                "segments": {
                    "beta": {"share": "10%", "header": {"name": "x-canary", "value": "insider"}}
                },
            },
            "baseline": {"errorRate": 0.03},
            "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.3}}],
            "platform": {"replicas": 4, "podStartup": "13s", "routerDelay": {"nginx": "20s"}},
            "operators": {"alerts": []},
        }
    )
    policy = policy_from_yaml(
        "kind: ABTest\nname: f\nprovider: nginx\nanalysis:\n  interval: 30s\n  threshold: 3\n"
        "  iterations: 1\n  match: [{headers: {x-canary: {exact: insider}}}]\n"
        "  loadTest: {rate: 20, duration: 120}\n"
    )
    release = bench.cw.world.releases["bad"]
    for i in range(12):
        simulate_reference(bench.cw, policy, release, np.random.SeedSequence(3, spawn_key=(i,)))
