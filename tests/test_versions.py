"""Versions, faults and release populations: every fault form, exact integrals, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from policies.base import load_yaml, validate_model
from policies.errors import PolicyError
from sim.world.distributions import LogNormal, Uniform
from sim.world.versions import (
    Fault,
    ReleaseClass,
    ReleasePopulation,
    Version,
    parse_probability,
)

BASE = Version()  # 0.1 % errors, lognormal(median 80 ms, sigma 0.5)
P0 = BASE.error_rate


def fault(**data) -> Fault:
    return validate_model(Fault, data)


def quad(f, a, b):
    """Numeric integral with the kinks of the piecewise functions as break points."""
    points = [x for x in (0.0, 600.0, 3600.0) if a < x < b]
    return integrate.quad(f, a, b, points=points or None, limit=200, epsabs=1e-13)[0]


# --- probabilities ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("99.9%", 0.999), ("0.1%", 0.001), ("100%", 1.0), ("0%", 0.0), (0.25, 0.25), ("0.5", 0.5)],
)
def test_probability_accepts_fractions_and_percent_strings(text, value):
    assert parse_probability(text) == value


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (-0.1, "negative"),
        (1.5, "above 1"),
        (99.9, "above 1"),
        ("150%", "above 100%"),
        ("-1%", "negative"),
        ("often", "not a probability"),
        (True, "not a probability"),
        (float("nan"), "finite"),
    ],
)
def test_probability_rejects(bad, needle):
    with pytest.raises(ValueError, match=needle):
        parse_probability(bad)


# --- versions --------------------------------------------------------------------------------


def test_version_defaults_and_slow_probability_is_lognormal_tail():
    assert BASE.error_rate == 0.001
    assert BASE.latency == LogNormal(median=0.08, sigma=0.5)
    assert BASE.to_dict() == {}
    expected = stats.lognorm(s=0.5, scale=0.08).sf(0.2)
    assert BASE.slow_probability(0.2) == pytest.approx(expected, rel=1e-12)
    assert BASE.slow_probability(None) == 0.0
    p, q = BASE.error_rate, expected
    assert BASE.bad_probability(0.2) == pytest.approx(p + (1 - p) * q)


def test_version_from_yaml():
    v = validate_model(
        Version, load_yaml("errorRate: 0.5%\nlatency: {lognormal: {median: 120ms, sigma: 0.3}}")
    )
    assert v.error_rate == 0.005
    assert v.latency == LogNormal(median=0.12, sigma=0.3)
    assert validate_model(Version, v.to_dict()) == v


# --- fault forms -----------------------------------------------------------------------------


def test_absolute_and_relative_error_rates():
    absolute = fault(errorRate="5%")
    relative = fault(errorRateMultiplier=10)
    s = np.array([-1.0, 0.0, 5.0])
    assert np.allclose(absolute.failure_probability(P0, s), [P0, 0.05, 0.05])
    assert np.allclose(relative.failure_probability(P0, s), [P0, 0.01, 0.01])
    assert fault(errorRateMultiplier=5000).failure_probability(P0, 1.0) == 1.0  # capped
    assert isinstance(absolute.failure_probability(P0, 3.0), float)


def test_onset_forms():
    rng = np.random.default_rng(1)
    immediate = fault(errorRate=0.1)
    bomb = fault(errorRate=0.1, onset={"afterStart": "30m"})
    leak = fault(errorRate=0.1, onset={"afterPodAge": "30m"})
    hazard = fault(errorRate=0.1, onset={"hazard": {"mean": "2h"}})
    assert immediate.per_pod and leak.per_pod
    assert not bomb.per_pod and not hazard.per_pod
    assert immediate.onset_time(rng) is None and leak.onset_time(rng) is None
    assert bomb.onset_time(rng) == 1800.0
    starts, ready = np.array([0.0, 100.0]), np.array([30.0, 140.0])
    assert np.allclose(immediate.onset_at(None, starts, ready), ready)
    assert np.allclose(leak.onset_at(None, starts, ready), starts + 1800)
    assert np.allclose(bomb.onset_at(1800.0, starts, ready), [1800.0, 1800.0])
    with pytest.raises(ValueError, match="onset_time"):
        bomb.onset_at(None, starts, ready)


def test_hazard_onset_mean_within_monte_carlo_error():
    hazard = fault(errorRate=0.1, onset={"hazard": {"mean": "2h"}})
    rng = np.random.default_rng(20240601)
    n = 20_000
    draws = np.array([hazard.onset_time(rng) for _ in range(n)])
    se = 7200.0 / math.sqrt(n)  # exponential: sd = mean
    assert abs(draws.mean() - 7200.0) < 4 * se
    assert draws.min() >= 0


def test_segment_and_crash_loop():
    beta = fault(errorRate=0.2, segment="betaTesters")
    assert beta.affects(["betaTesters", "oldAndroidClient"])
    assert not beta.affects(["oldAndroidClient"])
    assert fault(errorRate=0.2).affects([])
    crash = fault(crashLoop=True)
    assert crash.crash_loop and not crash.changes_errors and not crash.changes_latency


def test_fault_yaml_round_trip():
    text = """
errorRateMultiplier: 20
latencyShift: 150ms
latencyMultiplier: 1.5
onset: {afterPodAge: 30m}
growth: {duration: 1h}
segment: betaTesters
"""
    f = validate_model(Fault, load_yaml(text))
    assert f.latency_shift == 0.15 and f.onset.after_pod_age == 1800 and f.growth.duration == 3600
    assert validate_model(Fault, f.to_dict()) == f
    assert "error_rate_multiplier=20" in repr(f) and "crash_loop" not in repr(f)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"errorRate": 0.1, "errorRateMultiplier": 2}, "errorRate or errorRateMultiplier"),
        ({"errorRate": -0.1}, "errorRate: -0.1 is negative"),
        ({"errorRate": 1.5}, "errorRate: 1.5 is above 1"),
        ({"errorRate": "120%"}, "above 100%"),
        ({"errorRateMultiplier": -2}, "errorRateMultiplier"),
        ({"latencyMultiplier": 0}, "latencyMultiplier"),
        ({"latencyShift": -5}, "latencyShift: -5 is negative"),
        ({"errorRate": 0.1, "onset": {}}, "exactly one of afterStart, afterPodAge, hazard"),
        (
            {"errorRate": 0.1, "onset": {"afterStart": "1m", "afterPodAge": "1m"}},
            "exactly one",
        ),
        ({"errorRate": 0.1, "onset": {"hazard": {"mean": 0}}}, "onset.hazard.mean"),
        ({"latencyShift": "1s", "growth": {"duration": "1h"}}, "growth ramps the error rate"),
        ({"growth": {"duration": "1h"}, "errorRate": 0.1, "speed": 1}, "speed: unknown key"),
        ({}, "must change something"),
    ],
)
def test_fault_validation_errors(data, needle):
    with pytest.raises(PolicyError, match=needle.replace("(", r"\(")):
        validate_model(Fault, data)


def test_both_error_rates_error_names_both():
    with pytest.raises(PolicyError) as err:
        validate_model(Fault, {"errorRate": 0.1, "errorRateMultiplier": 2})
    assert "errorRate" in str(err.value) and "errorRateMultiplier" in str(err.value)


# --- growth and exact integrals --------------------------------------------------------------


def test_growth_is_a_linear_ramp():
    f = fault(errorRate=0.101, growth={"duration": "1h"})
    s = np.array([-10.0, 0.0, 1800.0, 3600.0, 7200.0])
    assert np.allclose(f.failure_probability(P0, s), [P0, P0, 0.051, 0.101, 0.101])


@pytest.mark.parametrize(
    "spec",
    [
        {"errorRate": 0.101, "growth": {"duration": "1h"}},
        {"errorRateMultiplier": 30, "growth": {"duration": "10m"}},
        {"errorRate": 0.3},
        {"errorRate": 0.0, "growth": {"duration": "1h"}},  # a ramp down is integrated too
    ],
)
@pytest.mark.parametrize(
    ("a", "b"), [(-500.0, -100.0), (-500.0, 100.0), (100.0, 500.0), (-300.0, 5000.0), (0, 3600)]
)
def test_integral_matches_quadrature(spec, a, b):
    f = fault(**spec)
    exact = f.integrated_failure(P0, a, b)
    numeric = quad(lambda s: f.failure_probability(P0, s), a, b)
    assert exact == pytest.approx(numeric, rel=1e-9, abs=1e-12)


# --- latency ---------------------------------------------------------------------------------


def test_slow_probability_with_latency_shift_matches_lognormal_cdf():
    f = fault(latencyShift="100ms", onset={"afterStart": "10m"})
    objective = 0.25
    expected_after = stats.lognorm(s=0.5, scale=0.08).sf(objective - 0.1)
    expected_before = stats.lognorm(s=0.5, scale=0.08).sf(objective)
    got = f.slow_probability(BASE, objective, np.array([-1.0, 0.0, 100.0]))
    assert np.allclose(got, [expected_before, expected_after, expected_after], rtol=1e-12)
    # a shift beyond the objective makes every request slow
    assert fault(latencyShift="300ms").slow_probability(BASE, objective, 1.0) == 1.0


def test_latency_multiplier_and_shift_together():
    f = fault(latencyShift="50ms", latencyMultiplier=2)
    objective = 0.3
    expected = stats.lognorm(s=0.5, scale=0.08).sf((objective - 0.05) / 2)
    assert f.slow_probability(BASE, objective, 0.0) == pytest.approx(expected, rel=1e-12)
    q = np.array([0.5, 0.9, 0.99])
    x = f.latency_ppf(BASE, q, 1.0)
    assert np.allclose(x, 2 * stats.lognorm(s=0.5, scale=0.08).ppf(q) + 0.05)
    assert np.allclose(f.latency_cdf(BASE, x, 1.0), q)
    assert np.allclose(f.latency_ppf(BASE, q, -1.0), stats.lognorm(s=0.5, scale=0.08).ppf(q))


def test_latency_fault_on_a_uniform_baseline():
    base = Version(latency={"uniform": ["20ms", "120ms"]})
    assert base.latency == Uniform(low=0.02, high=0.12)
    f = fault(latencyShift="40ms")
    assert f.slow_probability(base, 0.1, 1.0) == pytest.approx((0.12 - 0.06) / 0.1)


# --- release population ----------------------------------------------------------------------

POPULATION_YAML = """
- name: good
  probability: 90%
- name: crash
  probability: 1%
  fault: {crashLoop: true}
- name: leak
  probability: 9%
  fault:
    errorRate: 2%
    onset: {afterPodAge: 30m}
"""


def test_population_from_yaml():
    pop = validate_model(ReleasePopulation, load_yaml(POPULATION_YAML))
    assert pop.names == ("good", "crash", "leak")
    assert np.allclose(pop.probabilities, [0.9, 0.01, 0.09])
    assert not pop.is_bad("good") and pop.is_bad("leak") and pop.is_bad(pop[1])
    assert pop["leak"].fault.error_rate == 0.02
    assert [c.name for c in pop] == list(pop.names) and len(pop) == 3
    assert validate_model(ReleasePopulation, pop.to_dict()) == pop
    assert "ReleasePopulation([ReleaseClass(name='good'" in repr(pop)
    with pytest.raises(KeyError, match="no release class named 'x'"):
        pop["x"]


def test_population_sum_rules():
    with pytest.raises(PolicyError, match=r"sum to 0\.95, not 1"):
        validate_model(
            ReleasePopulation,
            [
                {"name": "good", "probability": 0.9},
                {"name": "bad", "probability": "5%", "fault": {"errorRate": 0.1}},
            ],
        )
    with pytest.raises(PolicyError, match=r"sum to 1\.1"):
        validate_model(
            ReleasePopulation,
            [{"name": "a", "probability": 0.6}, {"name": "b", "probability": 0.5}],
        )
    ok = [{"name": "a", "probability": 1 / 3}] + [
        {"name": n, "probability": 1 / 3, "fault": {"errorRate": 0.1}} for n in ("b", "c")
    ]
    assert len(validate_model(ReleasePopulation, ok)) == 3  # float rounding within 1e-9


def test_population_names_and_emptiness():
    with pytest.raises(PolicyError, match="unique: a repeated"):
        validate_model(
            ReleasePopulation,
            [{"name": "a", "probability": 0.5}, {"name": "a", "probability": 0.5}],
        )
    with pytest.raises(PolicyError, match="at least 1"):
        validate_model(ReleasePopulation, [])
    with pytest.raises(PolicyError, match=r"\[0\]\.probability"):
        validate_model(ReleasePopulation, [{"name": "a", "probability": 2}])
    assert ReleasePopulation.good_only().names == ("good",)
    assert ReleaseClass(name="g", probability="100%").is_bad is False


def test_json_schema_accepts_the_yaml_forms():
    import jsonschema

    schema = ReleasePopulation.model_json_schema(by_alias=True, mode="validation")
    jsonschema.validate(load_yaml(POPULATION_YAML), schema)
    fault_schema = Fault.model_json_schema(by_alias=True, mode="validation")
    jsonschema.validate({"errorRate": "0.5%", "onset": {"hazard": {"mean": "2h"}}}, fault_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"errorRate": "lots"}, fault_schema)
