"""What the outcome counts (DESIGN §5 "Outcomes"), against closed forms, in both engines.

* Capacity the release process takes away counts, on either version: a basic canary's walk
  (the stable scaled down while canary pods start) and a rolling update without surge fail
  R − C·(serving pods) requests per second while short; the test tables the serving pods per
  interval (Argo's and Kubernetes' replica arithmetic, tested against their docs in
  tests/test_controller_*.py; pods serve 30 s start-up + 1 s endpoint delay after they are
  asked for) and compares either version's bad requests, the release-caused ones and the users
  they hurt with the integral.
* A DNS switch whose old pods go while clients still resolve them fails those clients' requests
  on the old version: R·∫(1 − moved) dt after the scale-down, in both engines.
* The old version's bad requests after an undo count until the old version is whole again: a
  switch back still in flight (closed form), old pods not yet in the endpoints (fast engine
  against the reference).
* A release that changes nothing hurts nobody (exactly 0), though it serves baseline errors.
* ``users_with_bad`` is what ``users_hurt`` counted before the split by cause (pinned numbers).
* The gate fields name the gate that rolled back, from the controller's typed cause.
* The fast engine's draw of caused requests per user has the binomial law it stands for.

Tolerances: ``Z`` = 4 standard errors of the Monte Carlo mean, from the count's known law
(Poisson counts; independent Bernoulli users) or, where stated, from the replications.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_oracles import Bench, check, mean_se, pause_canary, world

from policies import policy_from_yaml
from sim.engine.cells import UserCells
from sim.engine.reference import simulate_reference
from sim.engine.replication import Replication
from sim.world.model import World

R, C, N = 400.0, 110.0, 4  # requests/s, capacity per pod: 4 pods carry 440, 3 only 330
USERS = 5000

# (start, end, old pods serving, new pods serving) while the Service (one for both versions:
# traffic follows pods) has fewer than 4 serving pods.
# Basic canary 25 % → 75 %: at 0 the stable goes 4 → 3 and a canary pod starts (serves at
# 31); at 150 (the 2-min pause over) the stable goes to 2 and two canary pods start, at 180 (the
# new pods ready) the stable goes to 1, and they serve at 181; at 300 the stable goes to 0 and
# the last canary pod starts (serves at 331).
WALK = [(0, 31, 3, 0), (150, 180, 2, 1), (180, 181, 1, 1), (300, 331, 0, 3)]
WALK_POLICY = (
    "kind: Canary\nname: walk\n"
    "steps: [{setWeight: 25}, {pause: {duration: 2m}}, {setWeight: 75}, {pause: {duration: 2m}}]\n"
)
# Rolling update, maxSurge 0, maxUnavailable 1: each 30 s one old pod goes and a new one
# starts (ready at +30 s, serving at +31 s), so for one second in each batch two pods are gone.
ROLL = [
    (0, 30, 3, 0),
    (30, 31, 2, 0),
    (31, 60, 2, 1),
    (60, 61, 1, 1),
    (61, 90, 1, 2),
    (90, 91, 0, 2),
    (91, 121, 0, 3),
]
ROLL_POLICY = "kind: RollingUpdate\nname: roll\nmaxSurge: 0\nmaxUnavailable: 1\n"


def _capacity_bench(p0: float) -> Bench:
    return Bench(
        world(
            None,
            horizon=480,
            traffic={"rate": R},
            users={"count": USERS},
            baseline={"errorRate": p0},
            platform={"replicas": N, "capacityPerPod": C, "podStartup": "30s"},
        )
    )


def _outcomes(engine: str, cw, cells, policy, release, seed: int, n: int) -> list:
    """Replications 0..n-1 of run ``seed`` by the fast engine or the reference."""
    outs = []
    for i in range(n):
        ss = np.random.SeedSequence(seed, spawn_key=(i,))
        if engine == "fast":
            outs.append(Replication(cw, cells, policy, release, ss).run())
        else:
            outs.append(simulate_reference(cw, policy, release, ss))
    return outs


def _short(table, p0: float) -> dict[str, float]:
    """Expected counts while short: per interval the overload o = 1 − C·pods/R fails, and a
    request not overloaded fails with p0; the counterfactual (4 pods, 440 ≥ R) fails p0."""
    out = dict.fromkeys(("old", "new", "caused", "new_requests"), 0.0)
    for start, end, old, new in table:
        pods = old + new
        over = 1.0 - C * pods / R
        requests = R * (end - start)
        bad = over + (1.0 - over) * p0
        out["old"] += requests * old / pods * bad
        out["new"] += requests * new / pods * bad
        out["caused"] += requests * over * (1.0 - p0)
    return out


@pytest.mark.parametrize("p0", [0.0, 0.02], ids=["p0=0", "p0=2%"])
@pytest.mark.parametrize("case", ["basic-canary-walk", "rolling-update-no-surge"])
def test_capacity_taken_away_by_the_release_counts_on_either_version(case, p0):
    """A good release: E[bad_requests_old] and (p0 = 0) E[bad_requests_new] are the overload
    integrated over the intervals above; the release-caused ones, o·(1 − p0) of the requests
    there, hurt Σ_u 1 − e^{−a_u·Λ} users (each user's caused requests are Poisson(a_u·Λ));
    the excess has the caused ones' mean."""
    table, policy = (WALK, WALK_POLICY) if case == "basic-canary-walk" else (ROLL, ROLL_POLICY)
    bench, n = _capacity_bench(p0), 40
    outs = bench.outcomes(policy, release="good", n=n)
    assert all(o.error == "" and o.outcome == "promoted" for o in outs)
    want = _short(table, p0)
    old = [o.bad_requests_old for o in outs]
    check(f"old version's bad [{case}]", np.mean(old), want["old"], math.sqrt(want["old"] / n))
    caused = [o.caused_bad_requests for o in outs]
    check(f"caused [{case}]", np.mean(caused), want["caused"], math.sqrt(want["caused"] / n))
    if p0 == 0.0:
        new = [o.bad_requests_new for o in outs]
        check(f"new version's bad [{case}]", np.mean(new), want["new"], math.sqrt(want["new"] / n))
        assert all(o.caused_bad_requests == o.bad_requests for o in outs)
    m, se = mean_se([o.excess_bad_requests - o.caused_bad_requests for o in outs])
    check(f"excess − caused [{case}]", m, 0.0, se)
    hit = -np.expm1(-bench.cw.users.activity * want["caused"])
    se_users = math.sqrt(float(np.sum(hit * (1 - hit))) / n)
    hurt = [o.users_hurt for o in outs]
    check(f"users hurt [{case}]", np.mean(hurt), float(hit.sum()), se_users)
    assert all(o.users_exposed == 0 for o in outs)  # a good release: no fault to meet


def test_dns_scale_down_fails_the_clients_still_on_the_old_address():
    """A DNS blue-green switch lands at 31 s (pods ready at 30 s, the selector 1 s later) and
    moves clients uniformly over the 300 s TTL; the old pods go 60 s after the switch (90 s).
    The clients not yet moved then fail: E[bad_requests_old] = R·∫_90^331 (331 − t)/300 dt
    = R·241²/600, in both engines. Uniform activity over 20 000 users: the fast engine draws the
    clients' move order once per world, which adds at most R·∫ √(m(1 − m)/U) dt of error."""
    rate, users, n = 20.0, 20000, 20
    spec = world(
        None,
        horizon=360,
        traffic={"rate": rate},
        users={"count": users},
        platform={"podStartup": "30s"},
    )
    world_ = World.model_validate(spec)
    cw, release = world_.compile(5), world_.releases["good"]
    policy = policy_from_yaml(
        "kind: BlueGreen\nname: dns\nswitch: dns\ndnsTtl: 300s\nscaleDownDelaySeconds: 60\n"
    )
    expected = rate * 241.0**2 / 600.0
    moved = (np.arange(90.0, 331.0) + 0.5 - 31.0) / 300.0
    keys = rate * float(np.sum(np.sqrt(moved * (1 - moved) / users)))  # bound, per second
    cells = UserCells(cw.users)
    for engine in ("fast", "ref"):
        outs = _outcomes(engine, cw, cells, policy, release, 8, n)
        old = [o.bad_requests_old for o in outs]
        se = math.hypot(math.sqrt(expected / n), keys if engine == "fast" else 0.0)
        check(f"DNS scale-down, old version's bad [{engine}]", np.mean(old), expected, se)
        assert all(o.users_exposed == 0 for o in outs)
        assert all(o.users_hurt > 0 and o.bad_requests_new == 0 for o in outs)  # p0 = 0


def test_a_switch_still_in_flight_counts_until_it_lands():
    """A blue-green with no scale-down delay and a 20 s selector delay: at the promotion, and
    again at the human's undo, the old active pods go at once while the Service's selector
    still points at them for 20 s, so every request then fails on the old version:
    E[bad_requests_old] = 2·R·20 s (p0 = 0). The undo's 20 s come after the candidate's pods
    are gone and the controller is done: the run must not stop before the switch lands (a
    fast-engine bug found by comparing the engines on random worlds: it counted one switch)."""
    rate, n = 50.0, 20
    spec = {
        "horizon": "400s",
        "traffic": {"rate": rate},
        "users": {"count": 200},
        "baseline": {"errorRate": 0.0},
        "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.2}}],
        "platform": {
            "replicas": 2,
            "podStartup": "30s",
            "routerDelay": {"serviceSelector": "20s"},
        },
        "operators": {"alerts": [], "humanDetection": "60s"},
    }
    world_ = World.model_validate(spec)
    cw, release = world_.compile(7), world_.releases["bad"]
    policy = policy_from_yaml("kind: BlueGreen\nname: bg\nscaleDownDelaySeconds: 0\n")
    cells = UserCells(cw.users)
    expected = 2 * rate * 20.0
    for engine in ("fast", "ref"):
        outs = _outcomes(engine, cw, cells, policy, release, 9, n)
        assert all(o.outcome == "rolled_back" for o in outs)
        old = [o.bad_requests_old for o in outs]
        se = math.sqrt(expected / n)  # a Poisson count of mean ``expected`` per replication
        check(
            f"blue-green switches in flight, old version's bad [{engine}]",
            np.mean(old),
            expected,
            se,
        )


def test_old_pods_not_yet_serving_after_an_undo_count_in_both_engines():
    """A rolling update of a good release on 2 pods, undone by the burn-rate alert (a 2 %
    baseline burns a 99.9 % SLO): the undo brings the old pods back, and until they join the
    endpoints (1 s after ready) the Service has none, so requests fail on the old version.
    The fast engine must count them as the per-request reference does (it stopped the run as
    soon as the new pods were gone: half of the old version's bad requests, 60 against 120).
    Welch: the difference of the means within Z standard errors."""
    n = 60
    spec = {
        "horizon": "300s",
        "traffic": {"rate": 60},
        "users": {"count": 150},
        "baseline": {"errorRate": 0.02},
        "releases": [{"name": "good", "probability": 1.0}],
        "platform": {"replicas": 2, "podStartup": "30s"},
        "operators": {
            "alerts": [{"longWindow": "1h", "shortWindow": "5m", "burnRate": 6}],
            "acknowledgement": "30s",
        },
    }
    world_ = World.model_validate(spec)
    cw, release = world_.compile(7), world_.releases["good"]
    policy = policy_from_yaml("kind: RollingUpdate\nname: ru\nmaxSurge: 25%\nmaxUnavailable: 50%\n")
    cells = UserCells(cw.users)
    old = {
        e: [o.bad_requests_old for o in _outcomes(e, cw, cells, policy, release, 5, n)]
        for e in ("fast", "ref")
    }
    assert min(old["ref"]) > 0  # the undo leaves the Service without a serving pod for a while
    (m_f, se_f), (m_r, se_r) = mean_se(old["fast"]), mean_se(old["ref"])
    check(
        "old version's bad after the undo, fast − reference", m_f - m_r, 0.0, math.hypot(se_f, se_r)
    )


def test_a_release_that_changes_nothing_hurts_nobody():
    """A "fault" at the baseline's own error rate (p = p₀): none of the new version's bad
    requests is release-caused, in either engine, so nobody is hurt (exactly), though users
    meet its baseline errors (users_with_bad) and reach it after its "fault" began."""
    spec = world(
        {"errorRate": 0.01},
        horizon=900,
        traffic={"rate": 50},
        users={"count": 500},
        baseline={"errorRate": 0.01},
        latencyObjective=0.3,
    )
    world_ = World.model_validate(spec)
    cw = world_.compile(2)
    cells = UserCells(cw.users)
    policy = policy_from_yaml(pause_canary(20))
    for release in ("good", "bad"):
        for i in range(5):
            ss = np.random.SeedSequence(3, spawn_key=(i,))
            fast = Replication(cw, cells, policy, world_.releases[release], ss).run()
            ref = simulate_reference(cw, policy, world_.releases[release], ss)
            for o in (fast, ref):
                assert o.users_hurt == o.caused_bad_requests == 0, o
                assert o.users_with_bad > 0 and o.bad_requests_old == 0, o
                assert (o.users_exposed > 0) == (release == "bad"), o


# users_hurt before the split by cause (commit 2842892), same seeds: users_with_bad keeps it
# bit for bit (the caused draws have a random stream of their own), and users_exposed too.
# Re-pinned when user picks came to be drawn from exponential spacings (issue #17): the values
# moved with the draws, the property pinned (no dependence on the caused stream) did not.
# users_exposed re-pinned when the exposed came to be the users of the tape's own good requests
# (not fresh Poisson ones): users_with_bad kept every value. Both re-pinned for the bad release
# when t_fault came to be its first faulted request (sim/engine/fault_arrival.py): the bad
# requests before and after it are split over users apart, so those draws moved with it (and
# the exposed good requests' users are drawn without counts: sampling.multinomial_users).
PINNED = {
    "good": [(81, 0), (71, 0), (77, 0), (82, 0)],
    "bad": [(104, 841), (125, 848), (117, 845), (129, 811)],
}


def test_users_with_bad_is_what_users_hurt_counted_before():
    spec = {
        "horizon": "30m",
        "traffic": {"rate": 100},
        "users": {"count": 3000, "activity": {"lognormal": {"sigma": 1.0}}},
        "baseline": {"errorRate": 0.002},
        "latencyObjective": 0.25,
        "releases": [
            {"name": "good", "probability": 0.5},
            {
                "name": "bad",
                "probability": 0.5,
                "fault": {"errorRate": 0.03, "onset": {"afterPodAge": "5m"}},
            },
        ],
        "platform": {"replicas": 4, "podStartup": {"uniform": ["20s", "40s"]}},
        "operators": {"humanDetection": "10m"},
    }
    world_ = World.model_validate(spec)
    cw = world_.compile(11)
    cells = UserCells(cw.users)
    policy = policy_from_yaml(
        "kind: Canary\nname: c\ntrafficRouting: {nginx: {}}\n"
        "steps: [{setWeight: 20}, {pause: {duration: 5m}}, {setWeight: 60}, "
        "{pause: {duration: 5m}}]\n"
    )
    for release, pinned in PINNED.items():
        got = []
        for i in range(4):
            ss = np.random.SeedSequence(99, spawn_key=(i,))
            o = Replication(cw, cells, policy, world_.releases[release], ss).run()
            got.append((o.users_with_bad, o.users_exposed))
            assert o.users_hurt <= o.users_with_bad
        assert got == pinned, release


_GATED = {
    "argo-background": (
        "kind: Canary\nname: argo\ntrafficRouting: {nginx: {}}\n"
        "steps: [{setWeight: 20}, {pause: {duration: 10m}}]\n"
        "analysis: {templates: [{templateName: t}], startingStep: 1}\n"
        "analysisTemplates:\n- name: t\n  metrics:\n  - name: success\n    interval: 1m\n"
        "    failureLimit: 0\n    successCondition: result[0] >= 0.95\n"
        "    provider: {query: {measure: successRate, version: canary}}\n",
        ("background", "success", 1.0),
    ),
    "flagger": (
        "kind: Progressive\nname: flagger\nprovider: nginx\n"
        "analysis: {interval: 1m, threshold: 1, maxWeight: 50, stepWeight: 10,\n"
        "  metrics: [{name: request-success-rate, interval: 1m, thresholdRange: {min: 95}}]}\n",
        ("flagger", "request-success-rate", None),
    ),
}


@pytest.mark.parametrize("case", list(_GATED))
def test_gate_fields_name_the_gate_that_rolled_back(case):
    """A 50 % error rate fails the first window of either gate: both engines record the run,
    its failing metric and its step from the controller's typed cause."""
    policy_yaml, (run, metrics, step) = _GATED[case]
    spec = world({"errorRate": 0.5}, horizon=900, traffic={"rate": 50}, users={"count": 200})
    world_ = World.model_validate(spec)
    cw = world_.compile(0)
    cells, policy = UserCells(cw.users), policy_from_yaml(policy_yaml)
    for i in range(3):
        ss = np.random.SeedSequence(4, spawn_key=(i,))
        fast = Replication(cw, cells, policy, world_.releases["bad"], ss).run()
        ref = simulate_reference(cw, policy, world_.releases["bad"], ss)
        for o in (fast, ref):
            assert o.outcome == "rolled_back" and o.detected_by == "gate", o
            assert (o.gate_run, o.gate_metrics) == (run, metrics), o
            if step is not None:
                assert o.gate_step == step, o
            else:
                assert math.isfinite(o.gate_step), o
        assert fast.gate_step == ref.gate_step


def test_caused_users_draw_has_the_binomial_law():
    """``BlastRadius._caused_users`` draws the first caused request's position per user and
    one binomial for the rest: per user Binomial(c, s) in law. Over replications, E[hurt] =
    Σ 1 − (1 − s)^c, E[caused] = s·Σc, Var[caused] = s(1 − s)·Σc (4 SE; the variance by its
    χ² approximation)."""
    from sim.engine.blast import BlastRadius

    population = UserCells(World.model_validate(world(None, users={"count": 400})).compile(0).users)
    counts = np.random.default_rng(1).poisson(2.0, 400).astype(np.int64)
    users = np.flatnonzero(counts)
    counts = counts[users]
    reps = 4000
    for share in (0.05, 0.6):
        hurt, caused = np.empty(reps), np.empty(reps)
        for r in range(reps):
            rng = np.random.default_rng([r, 7])
            blast = BlastRadius(population, 0.0, None, None, lambda rng=rng: rng)
            blast._caused_users(users, counts, share)
            hurt[r], caused[r] = blast.hurt.sum(), blast.totals.caused
        p = -np.expm1(counts * np.log1p(-share))
        check(f"hurt, s={share}", hurt.mean(), p.sum(), math.sqrt((p * (1 - p)).sum() / reps))
        n = counts.sum()
        check(
            f"caused, s={share}",
            caused.mean(),
            share * n,
            math.sqrt(share * (1 - share) * n / reps),
        )
        var = share * (1 - share) * n
        check(f"var caused, s={share}", caused.var(ddof=1), var, var * math.sqrt(2 / (reps - 1)))
