"""Distributions: YAML forms, exact moments/cdf/ppf against scipy.stats, sampling against cdf.

Statistical checks use fixed seeds; mean checks allow 5 standard errors (σ/√n), KS tests
require p > 1e-3 (a correct sampler fails either about once in 10^3–10^6 seeds).
"""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter
from scipy import stats

from policies.base import Model, validate_model
from policies.errors import PolicyError
from sim.world.distributions import (
    DistributionSpec,
    Empirical,
    Exponential,
    Fixed,
    Gamma,
    LogNormal,
    Uniform,
    parse_distribution,
)


class World(Model):
    startup: DistributionSpec
    detection: DistributionSpec | None = None


CASES = [
    # (YAML form, repr, scipy.stats frozen equivalent)
    (30, "Fixed(value=30.0)", None),
    ("80ms", "Fixed(value=0.08)", None),
    ({"fixed": "2m"}, "Fixed(value=120.0)", None),
    ({"uniform": ["20s", "40s"]}, "Uniform(low=20.0, high=40.0)", stats.uniform(20, 20)),
    ({"uniform": {"low": 1, "high": 3}}, "Uniform(low=1.0, high=3.0)", stats.uniform(1, 2)),
    ({"exponential": {"mean": "2h"}}, "Exponential(mean=7200.0)", stats.expon(scale=7200)),
    ({"exponential": "10m"}, "Exponential(mean=600.0)", stats.expon(scale=600)),
    (
        {"lognormal": {"median": "80ms", "sigma": 0.5}},
        "LogNormal(median=0.08, sigma=0.5)",
        stats.lognorm(0.5, scale=0.08),
    ),
    (
        {"gamma": {"mean": "10m", "shape": 2}},
        "Gamma(mean=600.0, shape=2.0)",
        stats.gamma(2, scale=300),
    ),
    ({"empirical": ["1s", 2, 5]}, "Empirical(values=(1.0, 2.0, 5.0))", None),
]


@pytest.mark.parametrize(("yaml_form", "text", "_ref"), CASES)
def test_yaml_forms_parse_with_readable_repr_and_round_trip(yaml_form, text, _ref):
    world = validate_model(World, {"startup": yaml_form})
    assert repr(world.startup) == text
    assert validate_model(World, world.to_dict()) == world
    assert parse_distribution(yaml_form) == world.startup


@pytest.mark.parametrize(("yaml_form", "_text", "ref"), [c for c in CASES if c[2] is not None])
def test_moments_cdf_ppf_match_scipy(yaml_form, _text, ref):
    dist = parse_distribution(yaml_form)
    assert dist.mean == pytest.approx(ref.mean(), rel=1e-12)
    assert dist.var == pytest.approx(ref.var(), rel=1e-12)
    x = ref.ppf(np.linspace(0.001, 0.999, 41))
    np.testing.assert_allclose(dist.cdf(x), ref.cdf(x), rtol=1e-10, atol=1e-14)
    q = np.linspace(0.0, 1.0, 41)
    np.testing.assert_allclose(dist.ppf(q), ref.ppf(q), rtol=1e-10)


@pytest.mark.parametrize(("yaml_form", "_text", "ref"), [c for c in CASES if c[2] is not None])
def test_sampling_matches_cdf(yaml_form, _text, ref):
    dist = parse_distribution(yaml_form)
    draws = dist.sample(np.random.default_rng(20240601), 20_000)
    assert draws.shape == (20_000,)
    assert stats.kstest(draws, dist.cdf).pvalue > 1e-3
    assert abs(draws.mean() - dist.mean) < 5 * np.sqrt(dist.var / draws.size)


def test_scalar_sample_is_a_float_and_uses_only_the_generator():
    for yaml_form, _, _ in CASES:
        dist = parse_distribution(yaml_form)
        a = dist.sample(np.random.default_rng(7))
        b = dist.sample(np.random.default_rng(7))
        assert isinstance(a, float) and a == b


@pytest.mark.parametrize(
    "yaml_form",
    [c[0] for c in CASES] + [{"gamma": {"mean": "10m", "shape": 0.5}}],  # (another algorithm)
)
def test_an_array_draw_is_that_many_scalar_draws(yaml_form):
    """A scale draws its pods' start-up times in one call (sim/engine/pods.py); the engine's
    numbers stay those of one draw per pod only while numpy gives the same values and leaves
    the generator in the same state."""
    dist = parse_distribution(yaml_form)
    one, each = np.random.default_rng(11), np.random.default_rng(11)
    for count in (1, 3, 20):
        drawn = dist.sample(one, count).tolist()
        assert drawn == [float(dist.sample(each)) for _ in range(count)]
    assert one.bit_generator.state == each.bit_generator.state


def test_fixed_is_a_step():
    d = Fixed(value=30.0)
    assert d.cdf(29.999) == 0.0 and d.cdf(30.0) == 1.0
    np.testing.assert_array_equal(d.ppf([0.0, 0.5, 1.0]), [30.0, 30.0, 30.0])
    assert np.isnan(d.ppf(1.5))
    np.testing.assert_array_equal(d.sample(np.random.default_rng(0), (2, 2)), np.full((2, 2), 30.0))


def test_empirical_is_the_step_cdf_of_its_values():
    d = Empirical(values=(5.0, 1.0, 2.0, 2.0))
    np.testing.assert_allclose(
        d.cdf([0.5, 1.0, 1.5, 2.0, 4.9, 5.0]), [0, 0.25, 0.25, 0.75, 0.75, 1]
    )
    # smallest x with F(x) >= q
    np.testing.assert_array_equal(d.ppf([0.0, 0.25, 0.26, 0.75, 0.76, 1.0]), [1, 1, 2, 2, 5, 5])
    assert d.mean == 2.5 and d.var == pytest.approx(np.var([5, 1, 2, 2]))
    draws = d.sample(np.random.default_rng(3), 40_000)
    values, counts = np.unique(draws, return_counts=True)
    assert values.tolist() == [1.0, 2.0, 5.0]
    assert stats.chisquare(counts, np.array([0.25, 0.5, 0.25]) * draws.size).pvalue > 1e-3


def test_degenerate_parameters():
    assert Uniform(low=3, high=3).cdf(3.0) == 1.0 and Uniform(low=3, high=3).cdf(2.9) == 0.0
    d = LogNormal(median=2.0, sigma=0.0)
    assert d.mean == 2.0 and d.var == 0.0 and d.cdf(1.99) == 0.0 and d.cdf(2.0) == 1.0
    assert d.ppf(0.3) == pytest.approx(2.0)
    assert Exponential(mean=5).cdf(-1.0) == 0.0 and LogNormal(median=1, sigma=1).cdf(0.0) == 0.0


@given(
    kind=st.sampled_from(["uniform", "exponential", "lognormal", "gamma"]),
    a=st.floats(0.01, 1e4),
    b=st.floats(0.05, 3.0),
    q=st.floats(1e-6, 1 - 1e-6),
)
def test_ppf_inverts_cdf(kind, a, b, q):
    dist = {
        "uniform": Uniform(low=a, high=a * (1 + b)),
        "exponential": Exponential(mean=a),
        "lognormal": LogNormal(median=a, sigma=b),
        "gamma": Gamma(mean=a, shape=b),
    }[kind]
    x = dist.ppf(q)
    assert np.isfinite(x) and x >= 0
    assert dist.cdf(x) == pytest.approx(q, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("yaml_form", "message"),
    [
        ({"uniform": ["40s", "20s"]}, "uniform needs low <= high"),
        ({"uniform": [1]}, "uniform takes [low, high]"),
        ({"lognormal": {"median": "80ms"}}, "lognormal.sigma: is required"),
        ({"lognormal": {"median": 0, "sigma": 1}}, "lognormal.median: Input should be greater"),
        ({"gamma": {"mean": 1, "shape": 0}}, "gamma.shape: Input should be greater than 0"),
        ({"gamma": {"mean": 1, "shape": 1, "scale": 2}}, "gamma.scale: unknown key"),
        ({"exponential": {"mean": 0}}, "exponential.mean: Input should be greater than 0"),
        ({"empirical": []}, "empirical.values"),
        ({"weibull": {"shape": 1}}, "unknown distribution 'weibull'"),
        ({"uniform": [1, 2], "fixed": 3}, "one-key mapping"),
        ("10x", '"10x" is not a duration'),
        (-1, "negative"),
        (True, "True is not a distribution"),
        ([1, 2], "is not a distribution"),
    ],
)
def test_errors_are_value_errors_with_clear_text(yaml_form, message):
    with pytest.raises(ValueError, match=None) as info:
        parse_distribution(yaml_form)
    assert message in str(info.value)
    with pytest.raises(PolicyError) as info:
        validate_model(World, {"startup": yaml_form}, file="world.yaml")
    assert str(info.value).startswith("world.yaml: startup: ")
    assert message in str(info.value)


def test_optional_spec_and_json_schema():
    assert World(startup=1).detection is None
    assert World(startup=1, detection="5m").to_dict() == {"startup": "1s", "detection": "5m"}
    schema = TypeAdapter(World).json_schema(by_alias=True)
    for yaml_form, _, _ in CASES:
        jsonschema.validate({"startup": yaml_form}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"startup": {"weibull": {}}}, schema)
