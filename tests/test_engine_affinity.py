"""Session affinity in both engines against closed forms for Poisson users (DESIGN §5, §7).

User u (activity share a_u) sends Poisson requests at a_u·r; at weight w the router sends each
to the canary with probability w until the first one goes there, which sets the cookie: from then
on (for max-age) every request of u goes to the canary. With the route landing at t0 and
k_u = a_u·w·r, u holds a cookie at t with probability 1 − e^{−k_u (t − t0)}, so

* canary requests over [t1, t2): Σ_u a_u·r·[Δ − (1 − w)(e^{−k_u (t1−t0)} − e^{−k_u (t2−t0)}) / k_u];
* users who reached the canary by T: Σ_u 1 − e^{−k_u T'} (T' = T − t0): the same as without the
  cookie — who is touched first does not change, how often they come back does;
* users hurt (each request of the candidate failing with p, c_u = a_u·r·p): u escapes if it never
  joined, or joined at τ with a good joining request and no failure after:
  P = e^{−k T'} + k (1 − p) e^{−c T'} (1 − e^{−(k − c) T'}) / (k − c).

Both engines (the fast one: sim/engine/affinity.py; the per-request one:
sim/engine/reference_shadow.py) are driven by one script (tests/engine_script.py) and checked
against these means within Z = 4 standard errors of the replications' mean.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from engine_script import Bench, measure

import policies.controller as pc
from policies.errors import RolloutsimError

Z = 4.0
RATE, W, P, HORIZON, T0 = 20.0, 0.10, 0.2, 1800.0, 62.0  # the route lands 2 s after 60 s
SPEC: dict = {
    "horizon": HORIZON,
    "traffic": {"rate": RATE},
    "users": {"count": 2000, "activity": {"lognormal": {"sigma": 1.0}}},
    "baseline": {"errorRate": 0.0},
    "latencyObjective": None,
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": P}}],
    "platform": {"replicas": 4, "podStartup": {"uniform": ["20s", "40s"]}},
    "operators": {"alerts": []},
}
COOKIE = [pc.SetWeight(100 * W), pc.SetSessionAffinity(86400.0)]
PLAN = {
    0.0: [pc.Scale("canary", 2)],
    60.0: COOKIE,
    600.0: [measure("early", 300.0)],
    1500.0: [measure("late", 300.0)],
}
N = {"fast": 120, "ref": 30}


@pytest.fixture(scope="module")
def bench() -> Bench:
    return Bench(SPEC)


@pytest.fixture(scope="module")
def runs(bench):
    """Per engine: the canary's requests in both windows, users exposed and hurt, bad requests."""
    out = {}
    for engine, n in N.items():
        rows = []
        for i in range(n):
            outcome, script, _ = bench.run(engine, PLAN, "bad", i)
            seen = script.seen
            rows.append(
                (
                    seen["early"].canary.requests,
                    seen["late"].canary.requests,
                    outcome.users_exposed,
                    outcome.users_hurt,
                    outcome.bad_requests,
                )
            )
        out[engine] = np.array(rows, dtype=float)
    return out


def canary_requests(a: np.ndarray, t1: float, t2: float) -> float:
    k = a * W * RATE
    gap = np.exp(-k * (t1 - T0)) - np.exp(-k * (t2 - T0))
    return float(np.sum(a * RATE * ((t2 - t1) - (1 - W) * gap / k)))


def check_mean(values: np.ndarray, expected: float, what: str) -> None:
    se = values.std(ddof=1) / math.sqrt(values.size)
    line = f"{what}: mean {values.mean():.1f} ± {se:.1f} (SE) vs closed form {expected:.1f}"
    print(line)
    assert abs(values.mean() - expected) <= Z * max(se, 1e-9), line


@pytest.mark.parametrize("engine", list(N))
def test_canary_traffic_grows_as_users_keep_their_cookie(engine, bench, runs):
    a = bench.cw.users.activity
    check_mean(runs[engine][:, 0], canary_requests(a, 300.0, 600.0), f"{engine} early window")
    check_mean(runs[engine][:, 1], canary_requests(a, 1200.0, 1500.0), f"{engine} late window")
    assert runs[engine][:, 1].mean() > 2 * RATE * 300.0 * W  # far above the weight's 10 %


@pytest.mark.parametrize("engine", list(N))
def test_users_exposed_hurt_and_bad_requests_are_the_closed_forms(engine, bench, runs):
    a = bench.cw.users.activity
    t = HORIZON - T0
    k, c = a * W * RATE, a * RATE * P
    exposed = float(np.sum(-np.expm1(-k * t)))
    escape = np.exp(-k * t) + k * (1 - P) * np.exp(-c * t) * -np.expm1(-(k - c) * t) / (k - c)
    check_mean(runs[engine][:, 2], exposed, f"{engine} users exposed")
    check_mean(runs[engine][:, 3], float(np.sum(1 - escape)), f"{engine} users hurt")
    check_mean(runs[engine][:, 4], P * canary_requests(a, T0, HORIZON), f"{engine} bad requests")


def test_the_engines_agree(runs):
    for column, what in enumerate(("early", "late", "exposed", "hurt", "bad")):
        x, y = runs["fast"][:, column], runs["ref"][:, column]
        se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
        assert abs(x.mean() - y.mean()) <= Z * se, (what, x.mean(), y.mean(), se)


def test_a_cookie_route_of_max_age_zero_changes_nothing(bench):
    plain = {0.0: [pc.Scale("canary", 2)], 60.0: [pc.SetWeight(100 * W)]}
    zero = {0.0: plain[0.0], 60.0: [*plain[60.0], pc.SetSessionAffinity(0.0)]}
    for engine in N:
        one, two = bench.run(engine, plain, "bad", 3)[0], bench.run(engine, zero, "bad", 3)[0]
        assert repr(one) == repr(two), engine


@pytest.mark.parametrize("engine", list(N))
def test_cookies_expire_and_removing_the_route_ends_them(engine, bench):
    """Weight 0 at 400 s: holders stay on the canary until max-age (300 s) after the weight last
    sent them there, then nobody; removing the cookie route ends it after the router's delay."""
    expire = {
        0.0: [pc.Scale("canary", 2)],
        60.0: [pc.SetWeight(100 * W), pc.SetSessionAffinity(300.0)],
        400.0: [pc.SetWeight(0.0)],
        690.0: [measure("holders", 270.0)],
        1020.0: [measure("after", 300.0)],
    }
    seen = bench.run(engine, expire, "bad", 4)[1].seen
    assert seen["holders"].canary.requests > 0.5 * RATE * 270.0 * W
    assert seen["after"].canary.requests == 0
    remove = {**expire, 400.0: [pc.SetWeight(0.0), pc.SetSessionAffinity(0.0)]}
    seen = bench.run(engine, remove, "bad", 4)[1].seen
    assert seen["holders"].canary.requests == 0


def test_the_fast_engine_refuses_sticky_users_with_a_cookie_route():
    spec = {**SPEC, "users": {**SPEC["users"], "routing": "sticky"}}
    with pytest.raises(RolloutsimError, match="per-request engine"):
        Bench(spec).run("fast", {0.0: COOKIE}, "bad", 0)


def test_a_scenario_with_session_affinity_over_sticky_users_is_refused(tmp_path):
    """Refused when the scenario is loaded (CLI: exit 2, one line naming the field), not by
    every replication of the run (found by a random search over valid-looking scenarios)."""
    from rolloutsim.cli import main

    scenario = tmp_path / "affinity.yaml"
    scenario.write_text(
        "name: affinity\n"
        "world:\n"
        "  horizon: 1h\n"
        "  traffic: {rate: 100}\n"
        "  users: {count: 1000, routing: sticky}\n"
        "  releases: [{name: good, probability: 1}]\n"
        "policies:\n"
        "  - kind: Progressive\n"
        "    name: affinity\n"
        "    provider: istio\n"
        "    analysis:\n"
        "      interval: 1m\n"
        "      threshold: 2\n"
        "      stepWeight: 20\n"
        "      maxWeight: 50\n"
        "      sessionAffinity: {cookieName: flagger-cookie}\n"
        "      metrics: [{name: request-success-rate, interval: 1m, thresholdRange: {min: 99}}]\n"
        "replications: 2\n"
        "seed: 1\n"
    )
    assert main(["validate", str(scenario)]) == 2
    scenario.write_text(scenario.read_text().replace("routing: sticky", "routing: random"))
    assert main(["validate", str(scenario)]) == 0
