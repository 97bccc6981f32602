"""Flagger's request-duration reads what its provider's observer queries: the canary's mean on
nginx and skipper, its P99 in seconds truncated (read as ms) on Traefik, the P99 in ms elsewhere
(fluxcd/flagger pkg/metrics/observers; reference/executors.md §A.7). The mean of a window's n
latencies is drawn exactly up to ``EXACT_MEAN`` requests, from its central limit above."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_oracles import Bench, world

from sim.engine.latency import EXACT_MEAN, mixture_mean
from sim.world.model import World

LATENCY = {"lognormal": {"median": "80ms", "sigma": 0.5}}  # mean 90.7 ms, P99 256 ms


def _versions(fault: dict | None):
    releases = [{"name": "bad", "probability": 1.0, "fault": fault}] if fault else []
    spec = world(None, baseline={"errorRate": 0.0, "latency": LATENCY})
    spec["releases"] = releases or spec["releases"]
    w = World.model_validate(spec)
    return w.baseline, (w.releases["bad"].fault if fault else None)


@pytest.mark.parametrize("n", [400, EXACT_MEAN + 1000])
@pytest.mark.parametrize("fault, phi", [(None, 0.0), ({"latencyShift": "100ms"}, 0.3)])
def test_the_mean_has_the_mixtures_mean_and_variance(n, fault, phi):
    """E = μ + φ·shift; Var = (σ² + φ(1−φ)·shift²)/n (a shift moves a Binomial share)."""
    base, f = _versions(fault)
    rng = np.random.default_rng(5)
    draws = np.array([mixture_mean(f, base, n, phi, rng) for _ in range(800)])
    mu, var = base.latency.mean, base.latency.var
    shift = 0.1 if fault else 0.0
    expected = mu + phi * shift
    variance = (var + phi * (1 - phi) * shift**2) / n
    assert abs(draws.mean() - expected) < 4 * math.sqrt(variance / draws.size)
    # the sample variance of 800 draws: SE √(2/799) of the variance, in relative terms
    assert abs(draws.var(ddof=1) / variance - 1) < 4 * math.sqrt(2 / 799)


def test_fixed_latencies_give_their_exact_mean():
    spec = world(None, baseline={"errorRate": 0.0, "latency": "100ms"})
    base = World.model_validate(spec).baseline
    rng = np.random.default_rng(0)
    assert mixture_mean(None, base, 10, 0.0, rng) == pytest.approx(0.1, abs=1e-15)


def _good_release(provider: str, limit_ms: int):
    bench = Bench(world(None, horizon=1800, traffic={"rate": 50}, baseline={"latency": LATENCY}))
    policy = (
        f"kind: Progressive\nname: f\nprovider: {provider}\n"
        "analysis: {interval: 1m, threshold: 2, stepWeight: 25, maxWeight: 50, metrics:\n"
        f"  [{{name: request-duration, thresholdRange: {{max: {limit_ms}}}, interval: 1m}}]}}\n"
    )
    return [o.outcome for o in bench.outcomes(policy, release="good", n=12)]


def test_nginx_judges_the_mean_where_istio_judges_the_p99():
    """A good release of mean 91 ms and P99 256 ms under a 200 ms limit: Flagger on nginx
    promotes it, on Istio rolls it back (the review's finding: nginx was judged by the P99)."""
    assert set(_good_release("nginx", 200)) == {"promoted"}
    assert set(_good_release("skipper", 200)) == {"promoted"}
    assert set(_good_release("istio", 200)) == {"rolled_back"}


def test_traefik_reads_its_p99_in_seconds_as_ms():
    """Traefik's query returns seconds, which Flagger truncates and reads as ms: 0 below 1 s,
    so even a 1 ms limit passes a 256 ms P99."""
    assert set(_good_release("traefik", 1)) == {"promoted"}
    assert set(_good_release("linkerd", 1)) == {"rolled_back"}


@pytest.mark.slow
def test_both_engines_judge_nginxs_mean_alike():
    """A latency fault that puts the canary's mean at the limit (90.7 + 30 ms against 120 ms,
    truncated to whole ms: each check fails with probability ≈ 0.46): the fast engine's drawn
    mean and the per-request reference's average give the same rollbacks and detection times."""
    from policies import policy_from_yaml
    from sim.engine.cells import UserCells
    from sim.engine.reference import simulate_reference
    from sim.engine.replication import Replication

    spec = world(
        {"latencyShift": "30ms"},
        horizon=900,
        traffic={"rate": 50},
        baseline={"latency": LATENCY},
        users={"count": 500},
    )
    spec["releases"] = [{"name": "bad", "probability": 1.0, "fault": {"latencyShift": "30ms"}}]
    cw = World.model_validate(spec).compile(3)
    cells, release = UserCells(cw.users), cw.world.releases["bad"]
    policy = policy_from_yaml(
        "kind: Progressive\nname: f\nprovider: nginx\n"
        "analysis: {interval: 1m, threshold: 2, stepWeight: 20, maxWeight: 60, metrics:\n"
        "  [{name: request-duration, thresholdRange: {max: 120}, interval: 1m}]}\n"
    )
    n = 80
    fast, ref = [], []
    for i in range(n):
        ss = np.random.SeedSequence(11, spawn_key=(i,))
        fast.append(Replication(cw, cells, policy, release, ss, index=i, run_seed=11).run())
        ss = np.random.SeedSequence(12, spawn_key=(i,))
        ref.append(simulate_reference(cw, policy, release, ss, index=i, run_seed=12))
    for what in ("rolled back", "t_detect"):
        if what == "rolled back":
            a = np.array([o.outcome == "rolled_back" for o in fast], float)
            b = np.array([o.outcome == "rolled_back" for o in ref], float)
        else:
            a = np.array([o.t_detect for o in fast if math.isfinite(o.t_detect)])
            b = np.array([o.t_detect for o in ref if math.isfinite(o.t_detect)])
        se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        assert a.mean() > 0 and abs(a.mean() - b.mean()) < 4 * se, (what, a.mean(), b.mean(), se)
