"""Statistical oracles: the fast engine against the closed forms of DESIGN §7.

Each test isolates one effect with a policy whose exposure is deterministic (a pause and no
gate, alerts off, fixed human delays), runs fixed-seed replications through the public
``Replication`` API and compares the Monte Carlo result with a closed form of
reference/simulation-anchors.md (§1.1, §1.2, §3, §4) or reference/argo-rollouts.md §2.2.

Tolerances: ``Z`` = 4 standard errors of the Monte Carlo estimate (SE = sd/√n from the
replications, or the exact Poisson/binomial standard deviation where the count's law is known);
a correct engine fails one such check with probability ≈ 6e-5, and the seeds are fixed.
Engine bugs these oracles found were fixed; their tests stay as regression guards.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal

import numpy as np
import pytest
from scipy import stats

from policies import policy_from_yaml
from policies.sequential import SequentialTest, sprt_asn, sprt_bounds
from sim.engine.cells import UserCells
from sim.engine.replication import Replication
from sim.world.model import World

Z = 4.0
REPLICATION_TIME_LIMIT_S = 20.0  # a replication here takes milliseconds; more is a hang


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    """Turn an engine hang into a test failure (SIGALRM; pytest runs tests in the main thread)."""

    def expired(_signum, _frame):
        raise TimeoutError(f"{what} did not finish within {seconds:g} s (engine hang)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


BASE: dict = {
    "horizon": 3600,
    "traffic": {"rate": 200},
    "users": {"count": 20},
    "baseline": {"errorRate": 0.0},
    "latencyObjective": None,
    "releases": [{"name": "good", "probability": 0.5}, {"name": "bad", "probability": 0.5}],
    "platform": {"replicas": 4},
    "operators": {"alerts": []},
}


def world(fault: dict | None = None, **sections) -> dict:
    """BASE with some sections replaced (mappings merged one level deep) and the bad fault."""
    spec = copy.deepcopy(BASE)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    if fault is not None:
        spec["releases"][1]["fault"] = fault
    else:
        spec["releases"] = [{"name": "good", "probability": 1.0}]
    return spec


class Bench:
    """One compiled world and its user cells, shared by every replication run on it."""

    def __init__(self, spec: dict, seed: int = 0) -> None:
        self.cw = World.model_validate(spec).compile(seed)
        self.cells = UserCells(self.cw.users)

    @property
    def traffic(self):
        return self.cw.world.traffic

    def run(self, policy: str, release: str = "bad", n: int = 100, seed: int = 1):
        """n replications; returns the Replication objects (``.outcome`` is the record)."""
        pol = policy_from_yaml(policy)
        rel = self.cw.world.releases[release]
        reps = []
        for i in range(n):
            ss = np.random.SeedSequence(seed, spawn_key=(i,))
            rep = Replication(self.cw, self.cells, pol, rel, ss, index=i, run_seed=seed)
            with time_limit(REPLICATION_TIME_LIMIT_S, f"replication {i}"):
                rep.run()
            reps.append(rep)
        return reps

    def outcomes(self, policy: str, release: str = "bad", n: int = 100, seed: int = 1):
        return [r.outcome for r in self.run(policy, release, n, seed)]


def pause_canary(weight: int, router: str = "nginx") -> str:
    """setWeight then a pause longer than any horizon: no gate, exposure fixed by the clock."""
    routing = f"trafficRouting: {{{router}: {{}}}}\n" if router else ""
    return f"kind: Canary\nname: c{weight}\n{routing}steps:\n- setWeight: {weight}\n" + (
        "- pause: {duration: 100h}\n"
    )


def gated_canary(weight: int, metric: str) -> str:
    """A routed canary at ``weight`` whose background analysis (from step 1) is ``metric``."""
    body = "\n".join("    " + line for line in metric.strip().splitlines())
    return (
        pause_canary(weight)
        + "analysis:\n  startingStep: 1\n  templates: [{templateName: gate}]\n"
        + "analysisTemplates:\n- name: gate\n  metrics:\n  - name: gate\n"
        + body
        + "\n"
    )


def mean_se(values) -> tuple[float, float]:
    x = np.asarray(values, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def reference_outcomes(bench: Bench, policy: str, n: int, seed: int = 5, release: str = "bad"):
    """n replications of the per-request reference engine on the bench's world."""
    from sim.engine.reference import simulate_reference

    pol, rel = policy_from_yaml(policy), bench.cw.world.releases[release]
    return [
        simulate_reference(bench.cw, pol, rel, np.random.SeedSequence(seed, spawn_key=(i,)))
        for i in range(n)
    ]


def welch(fast, ref, field: str) -> tuple[float, float, float]:
    """(fast mean, reference mean, Welch z) of an outcome field where it is set (t_fault is
    NaN in a replication without a candidate request)."""
    values = ([v for o in x if math.isfinite(v := getattr(o, field))] for x in (fast, ref))
    (m_f, se_f), (m_r, se_r) = (mean_se(v) for v in values)
    return m_f, m_r, (m_f - m_r) / math.hypot(se_f, se_r)


def fault_began(outs, start: float, rate: float) -> bool:
    """t_fault is the first faulted request (as the reference has it): ``start``, when traffic
    first meets the fault, plus an Exp(``rate``) wait, below 40 mean waits (missed: e^−40)."""
    return all(start <= o.t_fault < start + 40.0 / rate for o in outs)


def check(name: str, measured: float, expected: float, se: float, extra: str = "") -> None:
    """|measured − expected| ≤ Z·se, with the numbers in the message (and printed for -s)."""
    line = f"{name}: expected {expected:.6g}, measured {measured:.6g} ± {se:.3g} (SE) {extra}"
    print(line)
    assert abs(measured - expected) <= Z * se, line


# --------------------------------------------------------------------------- 1. SRE identity


def test_sre_workbook_identity_five_percent_canary_of_twenty_percent_errors():
    """A 5 % canary of a build failing 20 % of requests: 1 % overall errors (anchors §1.1)."""
    bench = Bench(world({"errorRate": 0.2}))
    n, horizon = 40, 3600.0
    outs = bench.outcomes(pause_canary(5), n=n)
    # canary period: canary pod ready (30 s start-up) + nginx propagation (2 s) to the horizon
    assert fault_began(outs, 32.0, 200 * 0.05)
    assert all(o.outcome == "stalled" and o.detected_by == "" for o in outs)
    total = n * float(bench.traffic.integral(32.0, horizon))  # all requests, canary + stable
    cand = sum(o.candidate_requests for o in outs)
    failed = sum(o.failed_requests for o in outs)
    # exact laws: cand ~ Poisson(0.05·total), failed | cand ~ Bin(cand, 0.2),
    # failed ~ Poisson(0.01·total)
    check("canary share", cand / total, 0.05, math.sqrt(0.05 * total) / total, f"n={n}")
    check("canary error rate", failed / cand, 0.20, math.sqrt(0.2 * 0.8 / cand))
    check("overall error rate", failed / total, 0.01, math.sqrt(0.01 * total) / total)
    assert all(o.bad_requests == o.failed_requests for o in outs)


# --------------------------------------------------------------------------- 2. exposure

_HUMAN = {"alerts": [], "humanDetection": 600, "abortLatency": 60}
_EXPOSURE_CASES = {
    # name: (world sections, fault, gate metric or None for a human-detected pause canary)
    "constant": ({"traffic": {"rate": 300}, "operators": _HUMAN}, {"errorRate": 0.05}, None),
    "diurnal": (
        {
            "traffic": {
                "rate": {"diurnal": {"mean": 300, "amplitude": 0.9, "period": "2h"}},
                "startAt": "30m",  # exposure on the steep falling flank of the profile
            },
            "operators": _HUMAN,
        },
        {"errorRate": 0.05},
        None,
    ),
    "latency": (
        {"traffic": {"rate": 300}, "operators": _HUMAN, "latencyObjective": 0.3},
        {"latencyShift": 0.2},
        None,
    ),
    "random-human": (
        {
            "traffic": {"rate": 300},
            # never shorter than 13 s: see test_human_faster_than_the_first_slot_is_seen
            "operators": {**_HUMAN, "humanDetection": {"uniform": ["5m", "15m"]}},
        },
        {"errorRate": 0.05},
        None,
    ),
    "gate": (
        {"traffic": {"rate": 300}},
        {"errorRate": 0.5},
        "interval: 60s\nfailureCondition: result > 0.1\nprovider: {query: {measure: errorRate}}",
    ),
}


def _slow(objective: float, shift: float = 0.0) -> float:
    """P(L + shift > objective) for the default baseline latency lognormal(80 ms, σ 0.5)."""
    return float(stats.norm.sf(math.log((objective - shift) / 0.08) / 0.5))


@pytest.mark.parametrize("case", list(_EXPOSURE_CASES))
def test_exposure_formula_excess_is_delta_p_times_canary_traffic(case):
    """E[excess bad] = Δp · ∫ w·R dt from the fault start to mitigation (anchors §3.1)."""
    sections, fault, gate = _EXPOSURE_CASES[case]
    p0 = 0.005
    bench = Bench(world(fault, baseline={"errorRate": p0}, **sections))
    policy = pause_canary(10) if gate is None else gated_canary(10, gate)
    n = 300 if case == "random-human" else 150
    outs = bench.outcomes(policy, n=n)
    if "latencyShift" in fault:  # bad = failed or slower than 0.3 s; the shift adds 0.2 s
        delta = (1 - p0) * (_slow(0.3, 0.2) - _slow(0.3))
    else:
        delta = fault["errorRate"] - p0
    w = 0.10
    assert all(o.outcome == "rolled_back" for o in outs)
    t_fault = np.array([o.t_fault for o in outs])
    t_det = np.array([o.t_detect for o in outs])
    t_rb = np.array([o.t_rollback_start for o in outs])
    t_mit = np.array([o.t_mitigated for o in outs])
    assert fault_began(outs, 32.0, 200 * w)  # canary ready at 30 s, nginx weight 2 s later
    assert np.allclose(t_mit - t_rb, 2.0)  # rollback = one nginx weight write, 2 s to land
    if gate is None:
        assert {o.detected_by for o in outs} == {"human"}
        assert np.allclose(t_rb - t_det, 60.0)  # abortLatency
        if case == "random-human":
            m, se = mean_se(t_det - t_fault)
            check("mean human detection delay", m, 600.0, se)
        else:
            assert np.allclose(t_det - t_fault, 600.0)
    else:  # the run starts with the weight step done (30 s) and looks at once: its window
        # ends at the 30 s scrape, empty (Error, retried after 10 s); at 40 s it still ends
        # at 30 s; at 50 s it holds [32 s, 45 s) of canary traffic at 50 % errors: Failed
        assert {o.detected_by for o in outs} == {"gate"} and np.all(t_det == 50.0)
    exposure = np.array([bench.traffic.integral(a, b) for a, b in zip(t_fault, t_mit)])
    residual = np.array([o.excess_bad_requests for o in outs]) - delta * w * exposure
    # paired per replication (its own t_fault and t_mitigated): SE of the residuals
    m, se = mean_se(residual)
    mean_expected = float(np.mean(delta * w * exposure))
    check(f"excess vs Δp·w·∫R [{case}]", m + mean_expected, mean_expected, se, f"n={n}")


# --------------------------------------------------------------------------- 3. capacity


def test_requests_beyond_the_serving_pods_capacity_fail():
    """A 50 % nginx canary on 2 replicas gets 1 pod (ceil(w·N)) of capacity 150 req/s for 500
    req/s: 1 − 150/500 = 70 % of its requests fail, however healthy the build; the canary
    period starts when its pod serves (30 s) and the weight lands (2 s later).

    The counterfactual, the old version alone on its 2 pods, fails 70 % too (1000 req/s for
    300): the canary's share is no worse, and the stable, now serving 500 req/s on its 2 pods,
    fails 40 %, better than the counterfactual: both count, so the excess is −30 % of the
    stable's requests (a surge pod adds capacity)."""
    bench = Bench(
        world(None, traffic={"rate": 1000}, platform={"replicas": 2, "capacityPerPod": 150})
    )
    n, horizon = 10, 3600.0
    outs = bench.outcomes(pause_canary(50), release="good", n=n)
    total = n * float(bench.traffic.integral(32.0, horizon))
    cand = sum(o.candidate_requests for o in outs)
    failed = sum(o.bad_requests_new for o in outs)  # no baseline errors, no objective
    check("canary share", cand / total, 0.5, math.sqrt(0.5 * total) / total, f"n={n}")
    check("overloaded canary error rate", failed / cand, 0.7, math.sqrt(0.7 * 0.3 / cand))
    stable = total - cand  # from 32 s on (before, the stable is the counterfactual)
    old = sum(o.bad_requests_old for o in outs)
    check("relieved stable error rate", old / stable, 0.4, math.sqrt(0.4 * 0.6 / stable))
    excess = sum(o.excess_bad_requests for o in outs)
    check(
        "excess", excess / stable, -0.3, math.sqrt(0.7 * 0.3 * cand + 0.4 * 0.6 * stable) / stable
    )
    assert all(o.failed_requests == o.bad_requests for o in outs)
    assert all(o.users_hurt == 0 and o.caused_bad_requests == 0 for o in outs)


# --------------------------------------------------------------------------- 4. burn rate


@pytest.mark.parametrize(
    "error_ratio, rule",
    [(1.0, 0), (0.2, 0), (0.05, 0), (0.01, 1)],
    ids=["e=100%", "e=20%", "e=5%", "e=1%"],
)
def test_burn_rate_detection_time(error_ratio, rule):
    """t = ((1 − SLO)/e)·window·burnRate after the fault (anchors §1.2), within one evaluation
    interval + one scrape (+ 4σ of the Poisson noise on the crossing); 1 h/14.4 dominates for
    e ≥ 1.44 %, 6 h/6 for 0.6 % ≤ e < 1.44 %."""
    horizon = 3600 if rule == 0 else 4 * 3600
    bench = Bench(
        world(
            {"errorRate": error_ratio},
            horizon=horizon,
            traffic={"rate": 1000},
            operators={
                "alerts": [
                    {"longWindow": "1h", "shortWindow": "5m", "burnRate": 14.4},
                    {"longWindow": "6h", "shortWindow": "30m", "burnRate": 6},
                ]
            },
        )
    )
    reps = bench.run("kind: BlueGreen\nname: bg\n", n=10)
    window, burn = [(3600.0, 14.4), (21600.0, 6.0)][rule]
    t_star = (1 - 0.999) / error_ratio * window * burn
    # the window's bad count at the crossing is Poisson(e·R·t*): σ(t) ≈ √(t*/(e·R))
    sigma = math.sqrt(t_star / (error_ratio * 1000))
    slack = 60.0 + 15.0  # ruleEvaluationInterval + scrapeInterval
    delays = []
    for rep in reps:
        o = rep.outcome
        assert fault_began([o], 31.0, 1000)  # preview ready at 30 s, selector 1 s later
        assert o.detected_by == "alert", o
        d = o.t_detect - o.t_fault
        delays.append(d)
        assert t_star - Z * sigma <= d <= t_star + slack + Z * sigma, (d, t_star)
        assert rep.alert.firing.rule.burn_rate == burn
    print(f"burn rate e={error_ratio}: formula {t_star:.1f} s, measured {np.mean(delays):.1f} s")


def test_burn_rate_alert_survives_a_world_change_at_its_evaluation():
    """100 % errors from 31 s: the 1 h/14.4 rule fires at the 120 s evaluation (t* = 51.84 s)
    whatever else happens at that instant — here the old stable is scaled down then."""
    bench = Bench(
        world(
            {"errorRate": 1.0},
            horizon=1800,
            traffic={"rate": 1000},
            operators={"alerts": [{"longWindow": "1h", "shortWindow": "5m", "burnRate": 14.4}]},
        )
    )
    (o,) = bench.outcomes("kind: BlueGreen\nname: bg\nscaleDownDelaySeconds: 90\n", n=1)
    assert (o.detected_by, o.t_detect) == ("alert", 120.0)


def test_human_faster_than_the_first_slot_is_seen():
    """A human noticing 5 s after the fault (its first request, just after 32 s) detects 5 s
    later and the replication ends."""
    bench = Bench(world({"errorRate": 0.05}, operators={"alerts": [], "humanDetection": 5}))
    pol = policy_from_yaml(pause_canary(10))
    rep = Replication(
        bench.cw,
        bench.cells,
        pol,
        bench.cw.world.releases["bad"],
        np.random.SeedSequence(1, spawn_key=(0,)),
    )
    with time_limit(2.0, "replication with a 5 s human delay"):
        o = rep.run()
    assert fault_began([o], 32.0, 200 * 0.10)
    assert (o.detected_by, o.t_detect) == ("human", o.t_fault + 5.0)


# --------------------------------------------------------------------------- 5. gates

_SPRT_WORLD = {
    "horizon": 1800,
    "traffic": {"rate": 100},
    "baseline": {"errorRate": 0.01},
    "platform": {"replicas": 4, "routerDelay": 0, "scrapeInterval": 5},
}
_SPRT_METRIC = (
    "interval: 5s\nprovider: {sequential: {test: sprt, baselineErrorRate: 0.01, relativeRisk: 2}}"
)


def _reference_sprt(p: float, batch: float, paths: int = 20000, seed: int = 99):
    """Independent batched SPRT: Poisson(batch) requests per look, Bin errors; (N, reject)."""
    rng = np.random.default_rng(seed)
    p0, p1 = 0.01, 0.02
    a, b = sprt_bounds(0.05, 0.2)
    n = rng.poisson(batch, (paths, 300))
    k = rng.binomial(n, p)
    llr = np.cumsum(k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0)), axis=1)
    done = (llr >= a) | (llr <= b)
    assert done.any(axis=1).all()
    first = done.argmax(axis=1)
    rows = np.arange(paths)
    return np.cumsum(n, axis=1)[rows, first], llr[rows, first] >= a


def test_sprt_false_rollbacks_and_average_sample_number(monkeypatch):
    """SPRT gate (p0 1 %, ρ 2, α 5 %, β 20 %) on a 10 % canary of 100 req/s, a look every 5 s
    (50 canary requests per look): H0 rolls back ≤ α + 3·SE; under H1 the canary requests the
    test consumed match an independent batched simulation, and exceed Wald's ASN (overshoot)."""
    states = []
    start = SequentialTest.start

    def recording_start(self):
        state = start(self)
        states.append(state)
        return state

    monkeypatch.setattr(SequentialTest, "start", recording_start)
    bench = Bench(world({"errorRateMultiplier": 2}, **_SPRT_WORLD))
    policy = gated_canary(10, _SPRT_METRIC)
    n = 600
    results = {}
    for release, p in (("good", 0.01), ("bad", 0.02)):
        states.clear()
        outs = bench.outcomes(policy, release=release, n=n)
        assert len(states) == n and all(s.decision != "continue" for s in states)
        used = np.array([s.canary_requests for s in states])
        rolled = np.array([o.outcome == "rolled_back" for o in outs])
        assert np.array_equal(rolled, [s.decision == "reject" for s in states])
        # the gate never counts more than was served; the rest is the canary traffic between
        # the decision window's end (the last scrape) and the abort: under 15 s + 10 s of it
        cand = np.array([o.candidate_requests for o in outs])
        assert np.all(used[rolled] <= cand[rolled])
        assert np.all(cand[rolled] - used[rolled] <= 25 * 10 + 4 * math.sqrt(25 * 10))
        ref_n, ref_rej = _reference_sprt(p, batch=50.0)
        m, se = mean_se(used)
        ref_m, ref_se = mean_se(ref_n)
        check(f"SPRT ASN [{release}] vs batched reference", m, ref_m, math.hypot(se, ref_se))
        q = ref_rej.mean()
        check(f"SPRT P(reject) [{release}]", rolled.mean(), q, math.sqrt(q * (1 - q) / n))
        results[release] = (rolled, m, se)
    rolled, _, _ = results["good"]
    assert rolled.mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n), rolled.mean()
    asn_h1, asn_h0 = sprt_asn(0.01, 0.02)
    # Wald's ASN neglects the overshoot past the boundaries (one error moves the LLR by
    # log 2 ≈ A/4, and looks come in batches of 50 requests), which here only adds samples:
    # the engine must match the batched reference above and lie above Wald's approximation
    _, m, se = results["bad"]
    print(f"SPRT ASN H1: Wald {asn_h1:.0f}, measured {m:.0f} ± {se:.0f}")
    print(f"SPRT ASN H0: Wald {asn_h0:.0f}, measured {results['good'][1]:.0f}")
    assert m >= asn_h1 - Z * se


def test_fixed_window_threshold_gate_detection_probability():
    """errorRate > 1 % over 1-min windows of a 10 % canary of 100 req/s (600 requests a window)
    at p = 1 % (10× a 0.1 % baseline; anchors §4.2: ≈ 39 % of windows): per-window detection
    probability q = Σ_n Poisson(n; 600)·P(Bin(n, 1 %) > n/100); five looks catch 1 − (1 − q)⁵."""
    bench = Bench(
        world({"errorRateMultiplier": 10}, **{**_SPRT_WORLD, "baseline": {"errorRate": 0.001}})
    )
    metric = (
        "initialDelay: 60s\ninterval: 60s\ncount: 5\nfailureCondition: result > 0.01\n"
        "provider: {query: {measure: errorRate}}"
    )
    n = 400
    outs = bench.outcomes(gated_canary(10, metric), n=n)
    sizes = np.arange(300, 1000)
    q = float(np.sum(stats.poisson.pmf(sizes, 600) * stats.binom.sf(sizes // 100, sizes, 0.01)))
    # the run starts at 30 s (weight step done; routerDelay 0); after initialDelay it looks at
    # 90, 150, ... 330 s over the disjoint full windows [30, 90), [90, 150), ...
    t_det = np.array([o.t_detect for o in outs])
    assert set(t_det[~np.isnan(t_det)]) <= {90.0, 150.0, 210.0, 270.0, 330.0}
    first = np.mean(t_det == 90.0)
    check("threshold gate: P(first window fails)", first, q, math.sqrt(q * (1 - q) / n))
    q5 = 1 - (1 - q) ** 5
    caught = np.mean(~np.isnan(t_det))
    check("threshold gate: P(caught in 5 windows)", caught, q5, math.sqrt(q5 * (1 - q5) / n))


# --------------------------------------------------------------------------- 6. Argo replicas


@pytest.mark.parametrize(
    "replicas, weight, share",
    [(3, 5, 1 / 4), (5, 5, 1 / 6), (1, 5, 1 / 2), (10, 10, 1 / 10), (20, 33, 7 / 21)],
)
def test_basic_canary_traffic_follows_argo_replica_table(replicas, weight, share):
    """No traffic routing: the canary's share is its share of pods (argo-rollouts.md §2.2:
    N=3, w=5 → 1 canary / 3 stable = 25 %; N=5 → 1/5 → 1/6; N=1 → 50 %)."""
    bench = Bench(world({"errorRate": 0.2}, platform={"replicas": replicas}))
    n, horizon = 20, 3600.0
    outs = bench.outcomes(pause_canary(weight, router=""), n=n)
    start = 30.0 + 1.0  # podStartup + routerDelay.pods: the pod joins the endpoints
    assert fault_began(outs, start, 200 * share)
    total = n * float(bench.traffic.integral(start, horizon))
    cand = sum(o.candidate_requests for o in outs)
    # cand ~ Poisson(share · total) exactly
    check(
        f"basic canary share N={replicas} w={weight}",
        cand / total,
        share,
        math.sqrt(share * total) / total,
    )


def test_basic_canary_pod_joins_endpoints_after_the_pods_router_delay():
    bench = Bench(world({"errorRate": 0.2}))
    (o,) = bench.outcomes(pause_canary(5, router=""), n=1)
    assert fault_began([o], 30.0 + 1.0, 200 / 5)  # podStartup + routerDelay.pods


@pytest.mark.parametrize(
    "scale_down_delay, detect_after, mitigation",
    [(30, 600, 30.0 + 1.0), (600, 60, 1.0)],
    ids=["after-scale-down", "within-scale-down-delay"],
)
def test_blue_green_rollback_waits_for_pods_only_after_scale_down(
    scale_down_delay, detect_after, mitigation
):
    """Undo after the old stable was scaled down starts its pods first (start-up 30 s +
    selector 1 s); within scaleDownDelaySeconds it is the selector switch alone (1 s)."""
    bench = Bench(
        world({"errorRate": 0.2}, operators={"alerts": [], "humanDetection": detect_after})
    )
    policy = f"kind: BlueGreen\nname: bg\nscaleDownDelaySeconds: {scale_down_delay}\n"
    for o in bench.outcomes(policy, n=3):
        # full rollout as users see it: promoted at 30 s, the selector lands 1 s later
        assert o.rollout_duration == 31.0 and o.escaped and o.outcome == "rolled_back"
        assert o.t_detect == o.t_fault + detect_after == o.t_rollback_start
        assert o.t_mitigated - o.t_rollback_start == mitigation
