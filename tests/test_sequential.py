"""Sequential gates: closed forms against simulation-anchors §4, Monte Carlo rates, mechanics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from policies.base import validate_model
from policies.errors import PolicyError
from policies.sequential import (
    SequentialTest,
    fixed_sample_size,
    kl_bernoulli,
    sprt_asn,
    sprt_bounds,
)

Z95 = norm.ppf(0.95)


def _mcse(p: float, reps: int) -> float:
    return math.sqrt(p * (1 - p) / reps)


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize(
    ("p0", "p1", "expected"),
    [
        (0.001, 0.0015, 28_602),
        (0.001, 0.002, 8_026),
        (0.001, 0.005, 775),
        (0.001, 0.01, 227),
        (0.01, 0.015, 2_829),
        (0.01, 0.02, 792),
        (0.01, 0.05, 75),
        (0.001, 0.2, 4),
    ],
)
def test_fixed_sample_size_table(p0, p1, expected):
    """§4.1 table, normal-approximation column (the table rounds to the nearest request)."""
    assert round(fixed_sample_size(p0, p1)) == expected


def test_sprt_bounds_and_kl():
    a, b = sprt_bounds(0.05, 0.2)
    assert (a, b) == pytest.approx((math.log(16), math.log(0.2 / 0.95)))  # 2.7726, −1.5581
    assert kl_bernoulli(0.3, 0.3) == 0.0
    assert kl_bernoulli(0.002, 0.001) == pytest.approx(3.8676e-4, rel=1e-4)
    assert kl_bernoulli(0.0, 0.5) == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    ("p0", "p1", "h1", "h0"),
    [
        (0.001, 0.002, 4_929, 4_365),
        (0.001, 0.005, 470, 559),
        (0.01, 0.02, 487, 430),
        (0.01, 0.015, 1_742, 1_400),
    ],
)
def test_wald_asn_table(p0, p1, h1, h0):
    """§4.3 table, "Wald approx" entries of the ASN columns."""
    asn_h1, asn_h0 = sprt_asn(p0, p1)
    assert (round(asn_h1), round(asn_h0)) == (h1, h0)


@pytest.mark.parametrize("bad", [(0.0, 0.2), (0.5, 0.2), (0.05, 0.5), (0.05, -0.1)])
def test_closed_forms_reject_bad_error_rates(bad):
    with pytest.raises(ValueError, match=r"\(0, 0.5\)"):
        sprt_bounds(*bad)
    with pytest.raises(ValueError, match="p0 < p1"):
        fixed_sample_size(0.002, 0.001)


# --------------------------------------------------------------------------- Monte Carlo


# §4.3 batched simulation (batches of 50, 1,500 replications): mean N under H1 and H0, FPR
SPRT_TABLE = [
    (0.001, 0.002, 5_460, 4_690, 0.030),
    (0.001, 0.005, 604, 602, 0.031),
    (0.01, 0.02, 565, 458, 0.047),
    (0.01, 0.015, 1_898, 1_436, 0.052),
]


def _exact_batched_sprt(p0, p1, p, batch=50):
    """E[N] and P(reject) of the batch-checked Bernoulli SPRT, by forward recursion on the error
    count (the LLR after m batches depends only on k): an independent, noise-free reference."""
    a, c = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    upper, lower = sprt_bounds(0.05, 0.2)
    step = binom.pmf(np.arange(batch + 1), batch, p)
    alive = np.zeros(4_000)
    alive[0] = 1.0
    k = np.arange(alive.size)
    mean_n = reject = 0.0
    for m in range(1, 100_000):
        alive = np.convolve(alive, step)[: k.size]
        llr = k * a + (batch * m - k) * c
        up, down = llr >= upper, llr <= lower
        mean_n += batch * m * alive[up | down].sum()
        reject += alive[up].sum()
        alive[up | down] = 0.0
        if alive.sum() < 1e-12:
            return mean_n, reject
    raise AssertionError("did not converge")


@pytest.mark.parametrize(("p0", "p1", "asn_h1", "asn_h0", "fpr"), SPRT_TABLE)
def test_sprt_monte_carlo_against_exact_and_table(p0, p1, asn_h1, asn_h0, fpr):
    reps, batch = 1_500, 50
    windows = math.ceil(12 * fixed_sample_size(p0, p1) / batch)
    rng = np.random.default_rng(4_300 + round(p1 * 1e4))
    test = SequentialTest(test="sprt", baseline_error_rate=p0, relative_risk=p1 / p0)
    requests = np.full((reps, windows), batch)
    h0 = test.run(rng.binomial(batch, p0, (reps, windows)), requests)
    h1 = test.run(rng.binomial(batch, p1, (reps, windows)), requests)
    assert (h0.decision != "continue").all() and (h1.decision != "continue").all()

    exact_n0, exact_fpr = _exact_batched_sprt(p0, p1, p0)
    exact_n1, exact_power = _exact_batched_sprt(p0, p1, p1)
    sim_fpr = float(np.mean(h0.decision == "reject"))
    assert exact_fpr <= 0.05 and sim_fpr <= 0.05 + 3 * _mcse(0.05, reps)
    assert abs(sim_fpr - exact_fpr) <= 3 * _mcse(exact_fpr, reps)
    assert abs(sim_fpr - fpr) <= 3 * math.sqrt(2) * _mcse(fpr, reps)  # table: 1,500 runs too
    power = float(np.mean(h1.decision == "reject"))
    assert abs(power - exact_power) <= 3 * _mcse(exact_power, reps)
    assert exact_power >= 0.8  # batching does not cost the designed power 1 − β

    wald_h1, wald_h0 = sprt_asn(p0, p1)
    for outcome, wald, exact, table in (
        (h1, wald_h1, exact_n1, asn_h1),
        (h0, wald_h0, exact_n0, asn_h0),
    ):
        mean_n = float(outcome.canary_requests.mean())
        se = float(outcome.canary_requests.std()) / math.sqrt(reps)
        assert abs(mean_n - exact) <= 3 * se
        assert wald < exact < fixed_sample_size(p0, p1)  # overshoot, yet fewer than n* on average
        # the table's batched simulation: its 1 % rows sit 10-14 % below the exact value
        assert abs(mean_n - table) <= 0.2 * table
    if p1 == 0.002:  # the headline row: 3 combined MC standard errors of the mean
        se = float(h1.canary_requests.std()) / math.sqrt(reps)
        assert abs(h1.canary_requests.mean() - asn_h1) <= 3 * math.sqrt(2) * se


PEEK_REPS, PEEK_LOOKS, PER_MINUTE, P0 = 20_000, 60, 600, 0.001


@pytest.fixture(scope="module")
def peeking_paths():
    """§4.2: known baseline 0.1 %, 600 canary requests a minute, one look a minute for an hour."""
    rng = np.random.default_rng(328)
    errors = rng.binomial(PER_MINUTE, P0, (PEEK_REPS, PEEK_LOOKS))
    return errors, np.full_like(errors, PER_MINUTE)


def test_peeking_a_fixed_z_test_inflates_to_a_third(peeking_paths):
    errors, requests = peeking_paths
    k, n = errors.cumsum(axis=1), requests.cumsum(axis=1)
    z = (k / n - P0) / np.sqrt(P0 * (1 - P0) / n)
    any_look = float(np.mean((z > Z95).any(axis=1)))
    final = float(np.mean(z[:, -1] > Z95))
    # §4.2: 32.8 % and 6.0 %, each from 20,000 runs: compare within 3 combined standard errors
    assert abs(any_look - 0.328) <= 3 * math.sqrt(2) * _mcse(0.328, PEEK_REPS)
    # the single look is exactly P(Bin(36,000, 0.1 %) ≥ 46) = 6.08 %
    n_total = PER_MINUTE * PEEK_LOOKS
    c = math.floor(n_total * P0 + Z95 * math.sqrt(n_total * P0 * (1 - P0))) + 1
    exact = float(binom.sf(c - 1, n_total, P0))
    assert c == 46 and exact == pytest.approx(0.0608, abs=5e-4)
    assert abs(final - exact) <= 3 * _mcse(exact, PEEK_REPS)
    assert abs(final - 0.060) <= 3 * math.sqrt(2) * _mcse(0.060, PEEK_REPS)


def test_msprt_stays_valid_under_the_same_sixty_looks(peeking_paths):
    errors, requests = peeking_paths
    out = SequentialTest(test="msprt", baseline_error_rate=P0).run(errors, requests)
    fpr = float(np.mean(out.decision == "reject"))
    assert fpr <= 0.05 + 3 * _mcse(0.05, PEEK_REPS)  # Ville: P(sup Λ ≥ 1/α) ≤ α
    assert set(np.unique(out.decision)) <= {"continue", "reject"}  # never accepts


def test_conditional_msprt_valid_with_unknown_baseline(peeking_paths):
    errors, requests = peeking_paths
    rng = np.random.default_rng(329)
    baseline = rng.binomial(10 * PER_MINUTE, P0, errors.shape)  # a 10× larger baseline arm
    out = SequentialTest(test="msprt").run(errors, requests, baseline, 10 * requests)
    assert float(np.mean(out.decision == "reject")) <= 0.05 + 3 * _mcse(0.05, PEEK_REPS)


def test_msprt_detects_a_doubling_within_the_hour():
    rng = np.random.default_rng(2)
    errors = rng.binomial(PER_MINUTE, 2 * P0, (2_000, PEEK_LOOKS))
    requests = np.full_like(errors, PER_MINUTE)
    known = SequentialTest(test="msprt", baseline_error_rate=P0).run(errors, requests)
    assert float(np.mean(known.decision == "reject")) >= 0.95
    baseline = rng.binomial(10 * PER_MINUTE, P0, errors.shape)
    counted = SequentialTest(test="msprt").run(errors, requests, baseline, 10 * requests)
    assert float(np.mean(counted.decision == "reject")) >= 0.9


# --------------------------------------------------------------------------- hand-checked steps


def test_known_baseline_sprt_accepts_after_1556_clean_requests():
    """LLR = n·log(0.998/0.999) reaches B = log(0.2/0.95) = −1.5581 at n = 1,556."""
    state = SequentialTest(test="sprt", baseline_error_rate=0.001).start()
    assert state.update(0, 1_555) == "continue"
    assert state.update(0, 1) == "accept"
    assert state.statistic == pytest.approx(1_556 * math.log(0.998 / 0.999))
    state = SequentialTest(test="sprt", baseline_error_rate=0.001).start()
    assert state.update(5, 5) == "reject"  # 5·log 2 > log 16


def test_known_baseline_msprt_statistic_is_the_mixture_formula():
    p0, n, k = 0.001, 1_000, 5
    v, tau2 = p0 * (1 - p0), p0**2
    lam = math.sqrt(v / (v + n * tau2)) * math.exp(
        n * n * tau2 * (k / n - p0) ** 2 / (2 * v * (v + n * tau2))
    )  # ≈ 38.8
    state = SequentialTest(test="msprt", baseline_error_rate=p0).start()
    assert state.update(2, 400) == "continue"
    assert state.update(3, 600) == "reject"  # Λ ≥ 1/α = 20
    assert state.statistic == pytest.approx(math.log(lam))
    assert state.always_valid_p == pytest.approx(1 / lam)


def test_count_ratio_e_process_by_hand():
    """Equal traffic (π0 = ½): E = mean_j Π_windows Bin(k_c; K, π(ρ_j)) / Bin(k_c; K, ½)."""
    rhos = (1.25, 1.5, 2.0, 5.0, 10.0)

    def e_value(windows):
        ratios = [
            math.prod(
                binom.pmf(kc, kc + kb, r / (r + 1)) / binom.pmf(kc, kc + kb, 0.5)
                for kc, kb in windows
            )
            for r in rhos
        ]
        return sum(ratios) / len(rhos)

    state = SequentialTest(test="msprt").start()
    assert state.update(6, 1_000, 0, 1_000) == "continue"  # E ≈ 13.6
    assert state.statistic == pytest.approx(math.log(e_value([(6, 0)])))
    assert state.update(2, 1_000, 0, 1_000) == "reject"  # E ≈ 39 ≥ 20
    assert state.statistic == pytest.approx(math.log(e_value([(6, 0), (2, 0)])))
    assert state.always_valid_p == pytest.approx(1 / e_value([(6, 0), (2, 0)]))


# --------------------------------------------------------------------------- mechanics


CONFIGS = [
    {"test": "sprt", "baselineErrorRate": 0.01},
    {"test": "sprt"},
    {"test": "msprt", "baselineErrorRate": 0.01},
    {"test": "msprt"},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_stepwise_matches_vectorised(config):
    test = validate_model(SequentialTest, config)
    rng = np.random.default_rng(11)
    reps, windows = 40, 120
    cr = rng.integers(0, 300, (reps, windows)) * (rng.random((reps, windows)) > 0.1)
    br = rng.integers(0, 900, (reps, windows)) * (rng.random((reps, windows)) > 0.1)
    rate = np.where(np.arange(reps) % 2, 0.02, 0.01)[:, None]
    ce, be = rng.binomial(cr, rate), rng.binomial(br, 0.01)
    out = test.run(ce, cr, be, br)
    for i in range(reps):
        state, stopped = test.start(), -1
        for w in range(windows):
            if state.update(ce[i, w], cr[i, w], be[i, w], br[i, w]) != "continue" and stopped < 0:
                stopped = w
        assert (state.decision, stopped) == (out.decision[i], out.window[i])
    assert {"reject", "continue" if config["test"] == "msprt" else "accept"} <= set(out.decision)


@pytest.mark.parametrize("test", ["sprt", "msprt"])
def test_conditional_test_is_invariant_to_scaling_traffic(test):
    rng = np.random.default_rng(5)
    cr = rng.integers(100, 1_000, 30)  # stage-varying shares
    br = rng.integers(1_000, 5_000, 30)
    ce, be = rng.binomial(cr, 0.004), rng.binomial(br, 0.002)
    config = SequentialTest(test=test)
    states = [config.start() for _ in range(3)]
    for w in range(30):
        for state, scale in zip(states, (1, 7, 1_000), strict=True):
            state.update(int(ce[w]), int(cr[w]) * scale, int(be[w]), int(br[w]) * scale)
        assert states[0].statistic == pytest.approx(states[1].statistic, abs=1e-9)
        assert states[0].statistic == pytest.approx(states[2].statistic, abs=1e-9)
        assert states[0].decision == states[1].decision == states[2].decision


@pytest.mark.parametrize("config", CONFIGS)
def test_zero_traffic_windows_change_nothing(config):
    state = validate_model(SequentialTest, config).start()
    before = (state.statistic, state.windows, state.always_valid_p)
    assert state.update(0, 0, 0, 0) == "continue"
    assert (state.statistic, state.windows, state.always_valid_p) == before
    state.update(1, 100, 1, 100)
    mid = state.statistic
    assert state.update(0, 0, 0, 0) == "continue" and state.statistic == mid
    if "baselineErrorRate" not in config:  # one arm idle: the window carries no information
        assert state.update(0, 0, 3, 500) == "continue" and state.statistic == mid
        assert state.baseline_requests == 600


@pytest.mark.parametrize("config", CONFIGS[::2])
def test_decisions_are_sticky(config):
    state = validate_model(SequentialTest, config).start()
    assert state.update(50, 100) == "reject"
    frozen = (state.statistic, state.canary_requests, state.windows)
    assert state.update(0, 1_000_000) == "reject"
    assert (state.statistic, state.canary_requests, state.windows) == frozen
    sprt = SequentialTest(test="sprt", baseline_error_rate=0.01).start()
    assert sprt.update(0, 10_000) == "accept"
    assert sprt.update(500, 500) == "accept"


def test_msprt_never_accepts():
    state = SequentialTest(test="msprt", baseline_error_rate=0.001).start()
    assert state.update(0, 10_000_000) == "continue"
    assert state.statistic == -math.inf and state.always_valid_p == 1.0
    conditional = SequentialTest(test="msprt").start()
    assert conditional.update(0, 10_000, 1_000, 10_000) == "continue"
    assert conditional.always_valid_p == 1.0


def test_msprt_evidence_for_the_null_far_below_exp_range():
    """A busy service's equal windows drive the conditional mSPRT's log statistic below -709,
    where e^-statistic overflows a float: its always-valid p-value stays 1 and the test goes
    on (a fuzz-found OverflowError: every replication of such a run raised it)."""
    state = SequentialTest(test="msprt").start()
    for _ in range(200):
        assert state.update(30_000, 100_000, 30_000, 100_000) == "continue"
    assert state.statistic < -709 and state.always_valid_p == 1.0


def test_bad_counts_raise():
    state = SequentialTest(test="sprt").start()
    with pytest.raises(ValueError, match="errors <= requests"):
        state.update(5, 4, 0, 10)
    with pytest.raises(ValueError, match="more errors than requests"):
        SequentialTest(test="sprt").run(np.array([5]), np.array([4]), np.array([0]), np.array([1]))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"test": "sprt", "alpha": 0.5}, r"alpha 0.5 must be in \(0, 0.5\)"),
        ({"test": "sprt", "beta": 0}, r"beta 0.0 must be in \(0, 0.5\)"),
        ({"test": "msprt", "beta": 0.1}, "only to the SPRT"),
        ({"test": "msprt", "relativeRisk": 3}, "the SPRT's alternative"),
        ({"test": "sprt", "relativeRisk": 1}, "must be > 1"),
        ({"test": "sprt", "baselineErrorRate": 0}, r"baselineErrorRate 0.0 must be in \(0, 1\)"),
        ({"test": "sprt", "baselineErrorRate": 0.6}, "not a probability below 1"),
        ({"test": "sprt", "baselineErrorRate": 0.01, "tau": 0.01}, "tau applies only"),
        ({"test": "msprt", "tau": 0.01}, "tau applies only"),
        ({"test": "msprt", "baselineErrorRate": 0.01, "tau": -1}, "must be > 0"),
        ({"test": "msprt", "priorRelativeRisks": [0.5, 2]}, "values > 1"),
        ({"test": "msprt", "priorWeights": [1, 2]}, "one per priorRelativeRisks"),
        ({"test": "sprt", "priorRelativeRisks": [2]}, "only to the conditional mSPRT"),
        ({"test": "wald"}, '"sprt" or "msprt"'),
        ({"test": "sprt", "rho": 2}, "unknown key"),
    ],
)
def test_validation_messages(config, message):
    with pytest.raises(PolicyError, match=message):
        validate_model(SequentialTest, config)


def test_yaml_round_trip():
    test = validate_model(
        SequentialTest, {"test": "msprt", "alpha": 0.01, "priorRelativeRisks": [1.5, 3]}
    )
    assert test.to_dict() == {"test": "msprt", "alpha": 0.01, "priorRelativeRisks": [1.5, 3.0]}
    assert validate_model(SequentialTest, test.to_dict()) == test
