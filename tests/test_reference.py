"""The fast engine against the per-request reference: equivalence in distribution (DESIGN §7).

sim/engine/reference.py simulates every request; sim/engine/replication.py draws traffic in bulk.
Both run the same controller in the same world, so their outcomes must have the same distribution.
Per scenario both engines run N replications on independent seed streams, and for bad_requests,
users_hurt, t_detect, users_exposed and users_with_bad — and, where the outcome's definitions
(DESIGN §5 "Outcomes") matter, on good releases and with capacity the release takes away, for
bad_requests_old and excess_bad_requests — we assert *equivalence* — a confidence interval inside
the margin — never merely "a test did not reject":

* margin δ = 5 % of the metric's pooled mean, in the metric's units, one band for the mean and
  for the 10th/50th/90th percentiles;
* mean: two one-sided tests at α = 0.05, i.e. the Welch 90 % CI of the difference of the means
  lies inside (−δ, δ);
* percentiles: the 90 % percentile-bootstrap CI (2 000 resamples) of the difference of the two
  samples' percentiles lies inside (−δ, δ). Percentiles are Parzen's mid-quantiles: the ordinary
  percentile for continuous data, and a continuous functional for lattice data (request and
  user counts; t_detect of an alert, which fires only at a rule evaluation that sees a new
  15 s scrape), whose ordinary percentile would jump a whole step whenever its CDF crosses q.

N: TOST has power 0.9 at a true difference of 0 when δ/SE ≥ z₀.₉₅ + z₀.₉₅ = 3.29, SE the standard
error of the difference. For a mean that is N ≥ 2·3.29²·CV²/0.05² = 8 659·CV² per engine (a
two-sided test detecting a 5 % difference with 90 % power needs 8 407·CV²). Percentile SEs are
1.25–1.7× larger, so they bind. A pilot of 300 replications per engine gave the CVs and the
bootstrap SEs quoted per scenario below; N is twice the largest requirement (δ/SE ≈ 4.7), so that
a correct engine whose random streams change (a refactor re-rolls every draw) still passes each
binding check with probability ≈ 0.997, not 0.9. The test re-checks the power at the spread it
observes (every SE ≤ δ/3.29, else it reports "N small").

Where a definition gives 0 (nobody exposed to a good release; nobody hurt by one that changes
nothing) both engines must give exactly 0. The two engines reach the definitions differently: the
fast one thins bad counts by (b − b_ref)/b, the reference asks of each request whether the old
version at full capacity would have served it well on the same random numbers.

Besides: the reference meets closed forms on its own (anchors §1.1, §3.2), both engines meet the
users_exposed closed form, and a DNS switch must take its TTL (a fast-engine bug this found, now
fixed: drafts ahead of the clock had ended the switch early).

Fixed seeds (world 7; fast 2024 + k, reference 4242 + k for scenario k; bootstrap 0) make the
test deterministic. Replications run in a two-process pool: about 70 s of CPU, ~40 s on two
idle cores. ``python tests/test_reference.py`` prints the reference's CPU cost per request.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from scipy import stats

from policies import policy_from_yaml
from policies.errors import RolloutsimError
from sim.engine.cells import UserCells
from sim.engine.reference import ReferenceReplication, simulate_reference
from sim.engine.replication import Replication
from sim.world.model import World

WORLD_SEED, FAST_SEED, REF_SEED, BOOT_SEED = 7, 2024, 4242, 0
MARGIN = 0.05  # relative equivalence margin
POWER_Z = 2 * stats.norm.ppf(0.95)  # δ/SE needed for 90 % TOST power at α = 0.05 (3.29)
QUANTILES = (10, 50, 90)
METRICS = ("bad_requests", "users_hurt", "t_detect", "users_exposed", "users_with_bad")

BASE: dict = {
    "horizon": "6m",
    "traffic": {"rate": 50},
    "users": {"count": 1000, "activity": {"lognormal": {"sigma": 1.0}}},
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.1}}],
    "platform": {"replicas": 4, "podStartup": {"uniform": ["20s", "40s"]}},
}
# The background analysis starts with step 2 (when the 4-minute pause at 10 % ends), so its
# first window holds a full minute of canary traffic: a bad canary is caught at once (SPRT) or
# at the second window (threshold, failureLimit 1), and the spread is the data plane's.
GATE = """
analysisTemplates:
  - name: gate
    metrics:
      - name: gate
        interval: 1m
{metric}
analysis: {{templates: [{{templateName: gate}}], startingStep: 2}}
steps: [{{setWeight: 10}}, {{pause: {{duration: 4m}}}}, {{setWeight: 30}},
        {{pause: {{duration: 1m}}}}]
"""
THRESHOLD = """        failureLimit: 1
        successCondition: result[0] >= 0.98
        provider: {query: {measure: successRate, version: canary}}"""
SPRT = "        provider: {sequential: {test: sprt, relativeRisk: 3}}"
NGINX = "kind: Canary\nname: {name}\ntrafficRouting: {{nginx: {{}}}}\n"


def _spec(**sections) -> dict:
    spec = copy.deepcopy(BASE)
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


# name: (world, policy, N). Pilot (300 per engine): CVs of bad, hurt, t_detect and the N that
# gives 90 % power (users_exposed, CV ≤ 0.04, never needs more than 52; users_with_bad is within
# 1 % of users_hurt here: baseline errors are 1 % of the bad requests).
SCENARIOS: dict[str, tuple[dict, str, int]] = {
    # (a) random routing, nginx weights, successRate ≥ 0.98 every 1m, failureLimit 1 (a window
    # of ~300 requests at 10 % errors passes it with probability ~1e-7: detection is certain).
    # CVs 0.080, 0.077, 0.018; means need N ≥ 57, percentiles ≥ 216 (p10 of bad).
    "a-random-threshold": (
        _spec(),
        NGINX.format(name="nginx-threshold") + GATE.format(metric=THRESHOLD),
        440,
    ),
    # (b) the same with sticky routing over 300 users: the canary's users are a bucket prefix,
    # so users_hurt saturates (≈ 42 users for ≈ 225 bad requests). CVs 0.071, 0.092, 0.017;
    # N ≥ 74 (means), 227 (p10 of users_hurt).
    "b-sticky-threshold": (
        _spec(users={"count": 300, "routing": "sticky"}),
        NGINX.format(name="nginx-threshold") + GATE.format(metric=THRESHOLD),
        460,
    ),
    # (c) a Wald SPRT (count ratio, relative risk 3) of canary against stable errors.
    # CVs 0.090, 0.083, 0.021; N ≥ 71 (means), 210 (p90 of bad).
    "c-random-sprt": (
        _spec(),
        NGINX.format(name="nginx-sprt") + GATE.format(metric=SPRT),
        420,
    ),
    # (d) a basic canary (no router: traffic follows pods, 1 of 4 ≈ 25 %) with no gate, caught
    # by a fast burn-rate rule evaluated every 15 s and acknowledged in 1 m.
    # CVs 0.042, 0.043, 0.060; N ≥ 32 (means), 148 (p90 of bad).
    "d-basic-alert": (
        _spec(
            horizon="8m",
            traffic={"rate": 40},
            platform={"ruleEvaluationInterval": "15s"},
            operators={
                "alerts": [{"longWindow": "10m", "shortWindow": "2m", "burnRate": 12}],
                "acknowledgement": "1m",
            },
        ),
        "kind: Canary\nname: basic\n"
        "steps: [{setWeight: 25}, {pause: {duration: 6m}}, {setWeight: 50}, {pause: {}}]\n",
        300,
    ),
}
# (e) users_exposed against its closed form: 5 000 light users and a 50 % error rate held at 20 %
# from t_fault to the 3 min horizon. Drawing the users not hurt with all candidate requests
# (bad ones included) instead of the good ones overcounts this by ~35 % (4 % in a and c).
EXPOSED = (
    _spec(
        horizon="3m",
        users={"count": 5000},
        releases=[{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.5}}],
        operators={"alerts": []},
    ),
    NGINX.format(name="hold") + "steps: [{setWeight: 20}, {pause: {duration: 24h}}]\n",
    100,
)
# The outcome's definitions (DESIGN §5 "Outcomes") on good and bad releases, where they differ
# from the plain counts: name: (world, policy, N, release, metrics compared, metrics that are 0
# in every replication of both engines). Pilot CVs (300 per engine) and the N they need below.
HELD = NGINX.format(name="hold") + "steps: [{setWeight: 50}, {pause: {duration: 24h}}]\n"
WALK = (
    "kind: Canary\nname: walk\n"
    "steps: [{setWeight: 25}, {pause: {duration: 2m}}, {setWeight: 75}, {pause: {duration: 2m}}]\n"
)
_GOOD = {"name": "good", "probability": 0.5}
_CAPACITY = _spec(  # 4 pods carry 56 req/s, 3 only 42: the walk leaves the Service short
    platform={"capacityPerPod": 14, "podStartup": "30s"},
    operators={"alerts": []},
    releases=[_GOOD, {"name": "bad", "probability": 0.5, "fault": {"errorRate": 0.1}}],
)
DEFINITIONS: dict[str, tuple[dict, str, int, str, tuple[str, ...], tuple[str, ...]]] = {
    # (g) a good release held at 50 % with 5 % baseline errors (no alerts: they would page):
    # its ≈ 400 bad requests are all baseline, hitting ≈ 270 users, and nobody is hurt or
    # exposed. CVs 0.050, 0.047; N ≥ 21 (means), 90 (p10 of bad_requests).
    "g-good-held": (
        _spec(
            baseline={"errorRate": 0.05},
            operators={"alerts": []},
            releases=[{"name": "good", "probability": 1.0}],
        ),
        HELD,
        200,
        "good",
        ("bad_requests", "users_with_bad"),
        ("users_hurt", "users_exposed", "caused_bad_requests", "bad_requests_old"),
    ),
    # (f) a basic canary walking 25 % → 75 % on 4 pods of 14 req/s at 50 req/s: the stable is
    # scaled down while canary pods start (30 s), ≈ 760 overload failures on both versions, 420
    # of them on the old one. Good: the overload alone hurts ≈ 410 users; nobody is exposed.
    # CVs 0.037 (bad), 0.050 (old), 0.037 (excess), 0.034 (hurt), 0.049 (with bad);
    # N ≥ 22 (means), 102 (p90 of users_with_bad).
    "f-capacity-good": (
        _CAPACITY,
        WALK,
        220,
        "good",
        ("bad_requests", "bad_requests_old", "excess_bad_requests", "users_hurt", "users_with_bad"),
        ("users_exposed",),
    ),
    # Bad (10 % errors on the canary, never detected in the 6 minutes): both causes at once.
    # CVs 0.025, 0.050, 0.025, 0.021, 0.024, 0.007 (exposed); N ≥ 22 (means), 68 (p90 of old).
    "f-capacity-bad": (
        _CAPACITY,
        WALK,
        160,
        "bad",
        (
            "bad_requests",
            "bad_requests_old",
            "excess_bad_requests",
            "users_hurt",
            "users_with_bad",
            "users_exposed",
        ),
        (),
    ),
}
KEYS = (*SCENARIOS, "e-exposed", *DEFINITIONS)
FIELDS = (
    *METRICS,
    "bad_requests_old",
    "excess_bad_requests",
    "caused_bad_requests",
    "gate_run",
    "gate_metrics",
    "t_fault",
    "detected_by",
    "outcome",
)


# --------------------------------------------------------------------------- running


@functools.cache
def _setup(key: str):
    release = "bad"
    if key == "e-exposed":
        spec, policy = EXPOSED[0], EXPOSED[1]
    elif key in DEFINITIONS:
        spec, policy, _, release = DEFINITIONS[key][:4]
    else:
        spec, policy = SCENARIOS[key][:2]
    world = World.model_validate(spec)
    cw = world.compile(WORLD_SEED)
    return cw, UserCells(cw.users), policy_from_yaml(policy), world.releases[release]


def _chunk(args: tuple[str, str, int, int]) -> list[tuple]:
    """Replications [lo, hi) of one engine on one scenario (runs in a worker process)."""
    key, engine, lo, hi = args
    cw, cells, policy, release = _setup(key)
    seed = (FAST_SEED if engine == "fast" else REF_SEED) + KEYS.index(key)
    rows = []
    for i in range(lo, hi):
        ss = np.random.SeedSequence(seed, spawn_key=(i,))
        if engine == "fast":
            out = Replication(cw, cells, policy, release, ss, index=i, run_seed=seed).run()
        else:
            out = simulate_reference(cw, policy, release, ss, index=i, run_seed=seed)
        rows.append(tuple(getattr(out, f) for f in FIELDS))
    return rows


@functools.cache
def _all_results() -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Every scenario's replications, both engines, in one two-process pool (slow jobs first)."""
    plan = [(key, n) for key, (_, _, n) in SCENARIOS.items()] + [("e-exposed", EXPOSED[2])]
    plan += [(key, spec[2]) for key, spec in DEFINITIONS.items()]
    jobs = [
        (key, engine, lo, min(n, lo + size))
        for engine, size in (("ref", 20), ("fast", 100))
        for key, n in plan
        for lo in range(0, n, size)
    ]
    with ProcessPoolExecutor(max(1, min(2, os.cpu_count() or 1))) as pool:
        parts = list(pool.map(_chunk, jobs))
    rows: dict[tuple[str, str], list] = {}
    for (key, engine, _, _), part in zip(jobs, parts):
        rows.setdefault((key, engine), []).extend(part)
    return {
        k: {f: np.array([r[j] for r in v]) for j, f in enumerate(FIELDS)} for k, v in rows.items()
    }


def _samples(key: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    results = _all_results()
    return results[(key, "fast")][metric].astype(float), results[(key, "ref")][metric].astype(float)


# --------------------------------------------------------------------------- statistics


def welch_ci(x: np.ndarray, y: np.ndarray, level: float = 0.90) -> tuple[float, float, float]:
    """(low, high, SE) of the Welch CI of mean(x) − mean(y)."""
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    d, se = float(x.mean() - y.mean()), math.sqrt(vx + vy)
    if se == 0:
        return d, d, 0.0
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return d - half, d + half, se


def mid_quantiles(x: np.ndarray, qs) -> np.ndarray:
    """Parzen's mid-quantiles: the mid-distribution P(X < v) + ½·P(X = v) at the observed values
    v, inverted by linear interpolation. For continuous data it is the ordinary percentile (the
    Hazen plotting position); for lattice data it moves continuously with the sample, where an
    ordinary percentile jumps a whole step whenever the CDF crosses q."""
    values, counts = np.unique(x, return_counts=True)
    mid = (np.cumsum(counts) - 0.5 * counts) / x.size
    return np.interp(np.asarray(qs, dtype=float) / 100.0, mid, values)


def bootstrap_ci(x, y, rng, n_boot: int = 2000, level: float = 0.90) -> list[tuple]:
    """Per quantile of QUANTILES: (low, high, SE) of the percentile-bootstrap CI of the
    difference of the mid-quantiles of x and y."""

    def one(sample: np.ndarray) -> np.ndarray:
        return mid_quantiles(rng.choice(sample, sample.size), QUANTILES)

    diff = np.array([one(x) - one(y) for _ in range(n_boot)])
    low, high = np.percentile(diff, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return list(zip(low.tolist(), high.tolist(), diff.std(axis=0, ddof=1).tolist()))


def equivalence_problems(fast, ref, what: str) -> list[str]:
    """The assertions of the module docstring; returns what failed (empty: equivalent)."""
    margin = MARGIN * 0.5 * (fast.mean() + ref.mean())
    checks = [("mean", *welch_ci(fast, ref))]
    cis = bootstrap_ci(fast, ref, np.random.default_rng(BOOT_SEED))
    checks += [(f"p{q}", *ci) for q, ci in zip(QUANTILES, cis)]
    problems = []
    for name, low, high, se in checks:
        if not -margin < low <= high < margin:
            problems.append(f"{what} {name}: 90% CI [{low:.4g}, {high:.4g}] not in ±{margin:.4g}")
        if se > margin / POWER_Z:
            problems.append(
                f"{what} {name}: SE {se:.3g} > δ/3.29 = {margin / POWER_Z:.3g}: N small"
            )
    return problems


# --------------------------------------------------------------------------- equivalence


_PAIRS = [(key, m) for key in SCENARIOS for m in METRICS]
_PAIRS += [(key, m) for key, spec in DEFINITIONS.items() for m in spec[4]]


@pytest.mark.slow
@pytest.mark.parametrize("scenario, metric", _PAIRS)
def test_fast_engine_matches_the_reference(scenario, metric):
    fast, ref = _samples(scenario, metric)
    assert np.isfinite(fast).all() and np.isfinite(ref).all(), "every bad release is detected"
    problems = equivalence_problems(fast, ref, f"{scenario} {metric}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(DEFINITIONS))
def test_both_engines_count_nothing_where_the_definitions_say_none(scenario):
    """A good release exposes nobody; without a shortfall it hurts nobody and leaves the old
    version uncounted: exactly 0 in every replication of both engines."""
    results = _all_results()
    for metric in DEFINITIONS[scenario][5]:
        for engine in ("fast", "ref"):
            values = results[(scenario, engine)][metric]
            assert not values.any(), f"{scenario} {engine} {metric}: {values[values != 0][:5]}"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_both_engines_detect_the_same_way(scenario):
    """Same detector and verdict in every replication (the scenarios make them certain)."""
    results = _all_results()
    for field in ("detected_by", "outcome", "gate_run", "gate_metrics"):
        fast = set(results[(scenario, "fast")][field])
        assert fast == set(results[(scenario, "ref")][field]) and len(fast) == 1, field


def _expected_exposed(t_fault: np.ndarray) -> np.ndarray:
    """Scenario (e), per replication: each user's candidate requests after t_fault are Poisson
    (a_u·R·w·(horizon − t_fault)), so E[users exposed] = Σ_u 1 − e^{−λ_u} (anchors §3.2)."""
    cw = _setup("e-exposed")[0]
    lam = np.outer(50 * 0.20 * (180.0 - t_fault), cw.users.activity)
    return -np.expm1(-lam).sum(axis=1)


@pytest.mark.slow
def test_reference_users_exposed_is_the_closed_form():
    results = _all_results()[("e-exposed", "ref")]
    residual = results["users_exposed"] - _expected_exposed(results["t_fault"])
    assert abs(residual.mean()) < 4 * residual.std(ddof=1) / math.sqrt(residual.size)


@pytest.mark.slow
def test_fast_users_exposed_matches_the_reference_and_the_closed_form():
    fast, ref = _samples("e-exposed", "users_exposed")
    problems = equivalence_problems(fast, ref, "users_exposed")
    t_fault = _all_results()[("e-exposed", "fast")]["t_fault"]
    residual = fast - _expected_exposed(t_fault)
    if abs(residual.mean()) >= 4 * residual.std(ddof=1) / math.sqrt(residual.size):
        problems.append(f"fast users_exposed − closed form: mean {residual.mean():.1f}")
    assert not problems, "\n".join(problems)


# DNS blue-green (TTL 300 s, the Service-selector delay 1 s). "rollback": a human undoes the bad
# release 10 min after t_fault while the alert, fired earlier and acknowledged 5 min later, asks
# for a rollback again inside the TTL; every client is back on the old pods 301 s after the undo.
# "scale-down": the old pods go 60 s into the 300 s switch (no analysis, no alert), so clients
# not yet moved fail on the old address; the candidate serves 20/s × (∫ moved dt over the TTL
# + the rest of the horizon) = 20 × (150 + 29) requests (pods ready at 30 s, selector at 31 s).
DNS_CASES = {
    "rollback": (
        {"horizon": "20m", "operators": {"humanDetection": "10m"}},
        "scaleDownDelaySeconds: 1h",
    ),
    "scale-down": (
        {"horizon": "6m", "operators": {"alerts": []}, "platform": {"podStartup": "30s"}},
        "scaleDownDelaySeconds: 60",
    ),
}
DNS_BACK, DNS_SERVED = 1.0 + 300.0, 20 * (150 + 29)


def _dns_outcomes(case: str, engine: str, n: int = 5):
    sections, policy = DNS_CASES[case]
    fault = {"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.2}}
    world = World.model_validate(_spec(traffic={"rate": 20}, releases=[fault], **sections))
    cw, release = world.compile(WORLD_SEED), world.releases["bad"]
    policy = policy_from_yaml(f"kind: BlueGreen\nname: dns\nswitch: dns\ndnsTtl: 300s\n{policy}")
    seed = REF_SEED if engine == "ref" else FAST_SEED
    outs = []
    for i in range(n):
        ss = np.random.SeedSequence(seed, spawn_key=(i,))
        if engine == "ref":
            outs.append(simulate_reference(cw, policy, release, ss, index=i))
        else:
            outs.append(Replication(cw, UserCells(cw.users), policy, release, ss, index=i).run())
    return outs


def _check_dns(case: str, outs) -> None:
    if case == "rollback":
        for out in outs:
            assert out.outcome == "rolled_back" and out.escaped
            assert out.t_mitigated - out.t_rollback_start == pytest.approx(DNS_BACK)
    else:
        served = np.array([o.candidate_requests for o in outs])
        assert abs(served.mean() - DNS_SERVED) < 4 * math.sqrt(DNS_SERVED / served.size)


@pytest.mark.parametrize("case", list(DNS_CASES))
def test_reference_dns_switch_takes_the_ttl(case):
    _check_dns(case, _dns_outcomes(case, "ref"))


@pytest.mark.parametrize("case", list(DNS_CASES))
def test_fast_dns_switch_takes_the_ttl(case):
    _check_dns(case, _dns_outcomes(case, "fast"))


# --------------------------------------------------------------------------- the reference alone


def _reference(spec: dict, policy: str, i: int = 0) -> ReferenceReplication:
    world = World.model_validate(spec)
    rep = ReferenceReplication(
        world.compile(WORLD_SEED),
        policy_from_yaml(policy),
        world.releases["bad"],
        np.random.SeedSequence(REF_SEED, spawn_key=(i,)),
    )
    rep.run()
    return rep


def _hold(weight: float, router: str = "nginx") -> str:
    routing = f"trafficRouting: {{{router}: {{}}}}\n" if router else ""
    steps = f"steps: [{{setWeight: {weight}}}, {{pause: {{duration: 24h}}}}]"
    return f"kind: Canary\nname: hold\n{routing}{steps}"


def test_reference_sre_workbook_identity():
    """anchors §1.1: a 5 % canary of a build failing 20 % gives a 1 % overall error rate."""
    spec = _spec(
        horizon="20m",
        baseline={"errorRate": 0.0},
        latencyObjective=None,
        releases=[{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.2}}],
        platform={"podStartup": "30s"},
        operators={"alerts": []},
    )
    rep = _reference(spec, _hold(5))
    scrapes = rep.scrapes  # from 45 s: the weight lands at 32 s
    n, bad = sum(scrapes.svc_req[3:80]), sum(scrapes.svc_bad[3:80])
    assert abs(bad / n - 0.01) < 4 * math.sqrt(0.01 * 0.99 / n)


@pytest.mark.parametrize("routing", ["random", "sticky"])
def test_reference_users_touched(routing):
    """anchors §3.2: at 1 % weight, one request per user per minute, for T ≈ 1 h, random routing
    touches 1 − e^{−w·r·T} of the users, sticky routing the users whose bucket is below 1."""
    users, horizon = 2000, 3600.0
    spec = _spec(
        horizon=horizon,
        traffic={"rate": users / 60},
        users={"count": users, "activity": "uniform", "routing": routing},
        releases=[{"name": "bad", "probability": 1.0, "fault": {"latencyShift": 0.001}}],
        platform={"podStartup": "30s"},
        operators={"alerts": []},
    )
    rep = _reference(spec, _hold(1))
    touched = rep.outcome.users_exposed
    if routing == "random":
        p = -math.expm1(-0.01 / 60 * (horizon - rep.outcome.t_fault))
        assert abs(touched - users * p) < 4 * math.sqrt(users * p * (1 - p))
    else:
        prefix = int(np.count_nonzero(rep.cw.users.bucket < 1.0))
        assert prefix - 1 <= touched <= prefix  # ~60 requests each: all but surely reached


def test_reference_is_deterministic_and_self_consistent():
    spec, policy, _ = SCENARIOS["a-random-threshold"]
    one, two = _reference(spec, policy, 3), _reference(spec, policy, 3)
    assert repr(one.outcome) == repr(two.outcome)
    rec, out = one.requests.arrays(), one.outcome
    assert out.candidate_requests == rec["t"].size == sum(one.scrapes.req[True])
    assert out.bad_requests == int((rec["failed"] | rec["slow"]).sum())
    assert out.users_hurt <= out.users_exposed <= np.unique(rec["user"]).size
    assert out.t_fault <= out.t_detect <= out.t_rollback_start <= out.t_mitigated
    assert out.t_mitigated == out.t_rollback_start + 2.0  # one nginx weight write


def test_reference_basic_canary_pods_join_after_the_pods_router_delay():
    """A ready pod joins the endpoints routerDelay.pods (1 s) after start-up; without a traffic
    router that is when the canary's traffic begins."""
    spec = _spec(platform={"podStartup": "30s"}, operators={"alerts": []})
    rep = _reference(spec, _hold(25, router=""))
    assert 31.0 <= rep.outcome.t_fault < 32.0


def test_reference_fault_probability_is_the_fault_model():
    fault = {"errorRate": 0.3, "growth": {"duration": "10m"}}
    world = World.model_validate(
        _spec(releases=[{"name": "bad", "probability": 1.0, "fault": fault}])
    )
    rep = ReferenceReplication(
        world.compile(WORLD_SEED),
        policy_from_yaml(_hold(10)),
        world.releases["bad"],
        np.random.SeedSequence(1),
    )
    since = np.array([-5.0, 0.0, 60.0, 300.0, 599.0, 600.0, 3600.0])
    expected = world.releases["bad"].fault.failure_probability(world.baseline.error_rate, since)
    np.testing.assert_allclose([rep._fault_p(s) for s in since], expected, rtol=1e-12)


def test_reference_refuses_experiment_steps():
    """An Argo experiment step's pods have no group in the reference engine: it refuses the
    policy at the start, in one line, rather than failing mid-run (found by a random search)."""
    world = World.model_validate(BASE)
    cw = world.compile(WORLD_SEED)
    policy = policy_from_yaml(
        "kind: Canary\nname: x\ntrafficRouting: {smi: {}}\nsteps:\n  - setWeight: 10\n"
        "  - experiment:\n      duration: 60s\n      templates:\n"
        "        - {name: canary, specRef: canary, weight: 5}\n"
    )
    with pytest.raises(RolloutsimError, match="does not simulate experiment steps"):
        simulate_reference(cw, policy, world.releases["bad"], np.random.SeedSequence(1))


if __name__ == "__main__":
    cw, _, policy, release = _setup("a-random-threshold")
    start, requests = time.process_time(), 0
    for i in range(20):
        rep = ReferenceReplication(
            cw, policy, release, np.random.SeedSequence(REF_SEED, spawn_key=(i,))
        )
        rep.run()
        requests += sum(rep.scrapes.svc_req)
    cpu = time.process_time() - start
    print(f"{requests} requests, {cpu:.2f} s CPU: {cpu / requests * 1e6:.2f} µs per request")
