"""Users: anchors §3.2 (users touched and hurt under random and sticky routing), segment shares
and overlaps, activity-proportional sampling, and the exposure tally's joint law.

Tolerances come from the Monte Carlo standard error: a count of independent Bernoulli users has
SD √(Σ p(1 − p)); checks allow 5 SD (a correct model fails about once in 1.7 million seeds,
and the seeds are fixed). Chi-square and KS tests require p > 1e-3.
"""

from __future__ import annotations

import math
import pickle

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from policies.base import validate_model
from policies.common import RouteMatch
from policies.errors import PolicyError
from sim.users import Activity, Segment, UserPopulation, Users

U = 100_000
W, R, T = 1.0, 1.0 / 60.0, 3600.0  # anchors §3.2: 1 % weight, 1 request/min, 60 min


def _within(count: float, expected_fraction: np.ndarray | float, n: int | None = None) -> None:
    p = np.broadcast_to(
        np.asarray(expected_fraction, dtype=float), (n,) if n else np.shape(expected_fraction)
    )
    mean, sd = p.sum(), math.sqrt(float((p * (1 - p)).sum()))
    assert abs(count - mean) <= 5 * sd + 1e-9, (count, mean, sd)


@pytest.fixture(scope="module")
def homogeneous() -> Users:
    return UserPopulation(count=U).build(11)


@pytest.fixture(scope="module")
def heterogeneous() -> Users:
    return UserPopulation(count=U, activity={"lognormal": {"sigma": 1.5}}).build(12)


# --------------------------------------------------------------------------- anchors §3.2


def test_anchor_numbers():
    assert 1 - math.exp(-W / 100 * R * T) == pytest.approx(0.451, abs=5e-4)  # "45 % touched"
    assert 1 - math.exp(-5 / 100 * R * T) == pytest.approx(0.950, abs=5e-4)  # "95 % at 5 %"


def test_random_routing_touches_1_minus_exp_w_r_t(homogeneous):
    """Simulate the canary's requests themselves: N ~ Poisson(w·U·r·T), users ∝ activity."""
    rng = np.random.default_rng(1)
    requests = W / 100 * U * R * T
    tally = homogeneous.tally()
    tally.add(homogeneous.hurt(rng, rng.poisson(requests), ("all",)))
    expected = 1 - math.exp(-W / 100 * R * T)
    _within(tally.count, expected, U)
    assert round(tally.count / U, 2) == 0.45
    # the exposure tally gives the same law without drawing requests
    exposure = homogeneous.exposure()
    exposure.add(("all",), requests)
    assert exposure.expected() == pytest.approx(U * expected, rel=1e-9)
    _within(exposure.sample(rng), expected, U)


def test_sticky_routing_touches_w(homogeneous):
    rng = np.random.default_rng(2)
    eligible = ("sticky_prefix", W)
    on_canary = homogeneous.user_fraction(eligible)
    _within(on_canary * U, W / 100, U)  # buckets are U(0, 100): Binomial(U, w)
    requests = U * R * T * homogeneous.share(eligible)  # every request of those users
    tally = homogeneous.tally()
    tally.add(homogeneous.hurt(rng, rng.poisson(requests), eligible))
    exposure = homogeneous.exposure()
    exposure.add(eligible, requests)
    touched = exposure.sample(rng)
    # each prefix user sends Poisson(r·T = 60) requests: touched with prob 1 − e^{−60}
    _within(touched, -math.expm1(-R * T), round(on_canary * U))
    _within(tally.count, -math.expm1(-R * T), round(on_canary * U))
    assert round(touched / U, 3) == 0.01
    assert np.all(homogeneous.bucket[tally.mask] < W)


@pytest.mark.parametrize("p_bad", [0.05, 0.5])
def test_users_hurt_random_and_sticky(homogeneous, p_bad):
    rng = np.random.default_rng(3)
    w = 5.0
    # random: each user's bad canary requests are Poisson(w r p T)
    bad = w / 100 * U * R * T * p_bad
    tally = homogeneous.tally()
    tally.add(homogeneous.hurt(rng, rng.poisson(bad), ("all",)))
    _within(tally.count, -math.expm1(-w / 100 * R * p_bad * T), U)
    # sticky: users hurt = w·U·(1 − e^{−r p T})
    eligible = ("sticky_prefix", w)
    m = round(homogeneous.user_fraction(eligible) * U)
    tally = homogeneous.tally()
    tally.add(
        homogeneous.hurt(
            rng, rng.poisson(U * R * T * homogeneous.share(eligible) * p_bad), eligible
        )
    )
    _within(tally.count, -math.expm1(-R * p_bad * T), m)
    _within(m, w / 100, U)


def test_heterogeneous_activity_touches_the_exact_expectation_and_fewer_users(heterogeneous):
    """For a fixed amount of canary traffic, E[touched] = Σ_u 1 − e^{−a_u Λ}; since that is
    concave in a_u, unequal activity touches *fewer* users than equal activity (Jensen)."""
    rng = np.random.default_rng(4)
    requests = W / 100 * U * R * T
    p = -np.expm1(-heterogeneous.activity * requests)
    tally = heterogeneous.tally()
    tally.add(heterogeneous.hurt(rng, rng.poisson(requests), ("all",)))
    _within(tally.count, p)
    exposure = heterogeneous.exposure()
    exposure.add(("all",), requests)
    assert exposure.expected() == pytest.approx(p.sum(), rel=1e-9)
    _within(exposure.sample(rng), p)
    assert p.sum() < 0.8 * U * (1 - math.exp(-W / 100 * R * T))


# --------------------------------------------------------------------------- sampling


def test_hurt_is_proportional_to_activity():
    users = UserPopulation(count=30, activity={"lognormal": {"sigma": 1.0}}).build(5)
    n = 60_000
    for n_bad in (n, 50):  # the sorted-key path and the small path
        draws = np.concatenate(
            [users.hurt(np.random.default_rng(6 + i), n_bad, ("all",)) for i in range(n // n_bad)]
        )
        counts = np.bincount(draws, minlength=30)
        assert stats.chisquare(counts, users.activity * n).pvalue > 1e-3


def test_hurt_within_segments_and_sticky_prefixes_is_proportional_to_activity():
    pop = UserPopulation(
        count=200, activity={"lognormal": {"sigma": 1.0}}, segments={"beta": {"share": "30%"}}
    )
    users = pop.build(7)
    eligible = ("segment_sticky", "beta", 60.0)
    inside = users.masks["beta"] & (users.bucket < 60.0)
    draws = users.hurt(np.random.default_rng(8), 50_000, eligible)
    assert inside[draws].all()
    assert users.share(eligible) == pytest.approx(users.activity[inside].sum())
    counts = np.bincount(draws, minlength=200)[inside]
    expected = users.activity[inside] / users.activity[inside].sum() * draws.size
    assert stats.chisquare(counts, expected).pvalue > 1e-3


@settings(max_examples=40, deadline=None)
@given(w=st.floats(0.0, 100.0), n_bad=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_eligible_sets_are_respected(w, n_bad, seed):
    users = _SMALL
    rng = np.random.default_rng(seed)
    for eligible, inside in [
        (("all",), np.ones(users.n, bool)),
        (("sticky_prefix", w), users.bucket < w),
        (("segment", "beta"), users.masks["beta"]),
        (("segment_sticky", "beta", w), users.masks["beta"] & (users.bucket < w)),
    ]:
        assert users.user_fraction(eligible) == inside.mean()
        if not inside.any():
            with pytest.raises(ValueError, match="no active users"):
                users.hurt(rng, n_bad, eligible)
            continue
        picks = users.hurt(rng, n_bad, eligible)
        assert picks.shape == (n_bad,) and inside[picks].all()


_SMALL = UserPopulation(
    count=500, activity={"lognormal": {"sigma": 2}}, segments={"beta": {"share": 20}}
).build(0)


def test_bad_eligible_sets():
    with pytest.raises(ValueError, match="unknown segment"):
        _SMALL.hurt(np.random.default_rng(0), 1, ("segment", "nope"))
    with pytest.raises(ValueError, match="eligible set"):
        _SMALL.hurt(np.random.default_rng(0), 1, ("everyone",))
    assert _SMALL.hurt(np.random.default_rng(0), 0, ("all",)).size == 0


# --------------------------------------------------------------------------- population


POPULATION = {
    "count": 200_000,
    "activity": {"lognormal": {"sigma": 1.5}},
    "segments": {
        "betaTesters": {"share": "2%", "header": {"name": "x-beta", "value": "true"}},
        "oldAndroid": {"share": 5, "cookie": {"name": "canary", "value": "always"}},
        "eu": {"share": "30%"},
    },
    "overlaps": {"betaTesters&oldAndroid": "0.5%"},
    "routing": "sticky",
}


@pytest.fixture(scope="module")
def population() -> UserPopulation:
    return validate_model(UserPopulation, POPULATION)


def test_segment_shares_and_overlaps_within_binomial_error(population):
    users = population.build(2024)
    n = users.n
    m = users.masks
    _within(m["betaTesters"].sum(), 0.02, n)
    _within(m["oldAndroid"].sum(), 0.05, n)
    _within(m["eu"].sum(), 0.30, n)
    _within((m["betaTesters"] & m["oldAndroid"]).sum(), 0.005, n)  # stated
    _within((m["betaTesters"] & m["eu"]).sum(), 0.02 * 0.30, n)  # unstated: independent
    _within((m["oldAndroid"] & m["eu"]).sum(), 0.05 * 0.30, n)
    # segments are independent of buckets and activity
    _within((m["eu"] & (users.bucket < 10)).sum(), 0.03, n)
    assert stats.kstest(users.bucket, stats.uniform(0, 100).cdf).pvalue > 1e-3
    ratio = users.activity[m["eu"]].mean() / users.activity.mean()
    assert abs(ratio - 1) < 5 * users.activity.std() / users.activity.mean() / math.sqrt(
        m["eu"].sum()
    )


def test_three_segments_with_chained_and_nested_overlaps():
    pop = UserPopulation(
        count=400_000,
        segments={"a": {"share": 10}, "b": {"share": 20}, "c": {"share": 10}},
        overlaps={"a&b": 10, "b&c": "10%", "a&c": 0},  # b is split exactly into a and c
    )
    m = pop.build(9).masks
    assert not (m["a"] & ~m["b"]).any() and not (m["c"] & ~m["b"]).any()
    assert not (m["a"] & m["c"]).any() and not (m["b"] & ~m["a"] & ~m["c"]).any()
    _within(m["a"].sum(), 0.1, pop.count)
    _within(m["b"].sum(), 0.2, pop.count)


@pytest.mark.parametrize(
    ("segments", "overlaps", "message"),
    [
        ({"a": "2%", "b": "5%"}, {"a&b": "3%"}, "3% is impossible for shares 2% and 5%"),
        ({"a": 60, "b": 50}, {"a&b": 5}, "(it must be in 10%..50%)"),
        ({"a": 50, "b": 50, "c": 50}, {"a&b": 0, "b&c": 0, "a&c": 0}, "cannot all hold"),
        ({"a": 2, "b": 5}, {"a&c": 1}, 'name two different segments as "a&b"'),
        ({"a": 2, "b": 5}, {"a&a": 1}, "name two different"),
        ({"a": 2, "b": 5}, {"a&b": 1, "b&a": 1}, "stated twice"),
        ({"a&b": 2}, {}, "must be non-empty without '&' or '|'"),
        ({"a": "120%"}, {}, "is not a percentage in 0..100"),
        ({"a": "lots"}, {}, "is not a percentage"),
    ],
)
def test_population_errors(segments, overlaps, message):
    data = {
        "count": 10,
        "segments": {k: {"share": v} for k, v in segments.items()},
        "overlaps": overlaps,
    }
    with pytest.raises(PolicyError) as info:
        validate_model(UserPopulation, data, file="world.yaml")
    assert message in str(info.value)


def test_yaml_round_trip_and_repr(population):
    assert validate_model(UserPopulation, population.to_dict()) == population
    assert population.to_dict()["activity"] == {"lognormal": {"sigma": 1.5}}
    assert population.to_dict()["segments"]["betaTesters"]["share"] == "2%"
    assert repr(population.activity) == "Activity(kind='lognormal', sigma=1.5)"
    assert "Segment(share=2.0, header=NameValue(name='x-beta', value='true'))" in repr(population)
    assert UserPopulation(count=3).to_dict() == {"count": 3}
    schema = UserPopulation.model_json_schema(by_alias=True)
    jsonschema.validate(POPULATION, schema)
    jsonschema.validate(population.to_dict(), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"count": 3, "activity": {"zipf": {}}}, schema)
    assert Activity.model_validate("uniform") == Activity()
    with pytest.raises(ValueError, match="lognormal needs sigma"):
        Activity.model_validate({"lognormal": {}})


def test_build_is_deterministic_and_streams_are_separate(population):
    a, b = population.build(5), population.build(np.random.SeedSequence(5))
    np.testing.assert_array_equal(a.activity, b.activity)
    np.testing.assert_array_equal(a.bucket, b.bucket)
    for name in a.masks:
        np.testing.assert_array_equal(a.masks[name], b.masks[name])
    assert a.activity.sum() == pytest.approx(1.0)
    fewer = population.model_copy(update={"segments": {}, "overlaps": {}}).build(5)
    np.testing.assert_array_equal(fewer.activity, a.activity)  # a segment changes nothing else
    np.testing.assert_array_equal(fewer.bucket, a.bucket)
    g1, g2 = population.build(np.random.default_rng(3)), population.build(np.random.default_rng(3))
    np.testing.assert_array_equal(g1.bucket, g2.bucket)
    assert not np.array_equal(population.build(6).bucket, a.bucket)


def test_users_are_read_only_and_picklable(population):
    users = population.build(1)
    with pytest.raises(ValueError, match="read-only"):
        users.activity[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        users.masks["eu"][0] = True
    clone = pickle.loads(pickle.dumps(users))
    picks = [u.hurt(np.random.default_rng(1), 10, ("segment", "eu")) for u in (clone, users)]
    np.testing.assert_array_equal(*picks)
    assert repr(users).startswith("Users(n=200000, routing='sticky', segments={betaTesters=")


def test_eligible_follows_routing_and_unions(population):
    users = population.build(1)
    assert users.eligible(5.0) == ("sticky_prefix", 5.0)
    assert users.eligible(5.0, "eu") == ("segment_sticky", "eu", 5.0)
    random_users = population.model_copy(update={"routing": "random"}).build(1)
    assert random_users.eligible(5.0) == ("all",) and random_users.eligible(5.0, "eu") == (
        "segment",
        "eu",
    )
    key = users.union(["oldAndroid", "betaTesters"])
    both = users.masks["betaTesters"] | users.masks["oldAndroid"]
    assert users.user_fraction(("segment", key)) == both.mean()
    assert users.share(("segment", key)) == pytest.approx(users.activity[both].sum())
    with pytest.raises(ValueError, match="unknown segment"):
        users.union(["nope"])


def test_segments_matched_by_route_matches(population):
    header = RouteMatch(headers={"X-Beta": {"exact": "true"}})
    nginx_cookie = RouteMatch(cookie={"exact": "canary"})
    istio_cookie = RouteMatch(headers={"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}})
    assert population.segments_matched_by([header]) == ("betaTesters",)
    assert population.segments_matched_by([nginx_cookie]) == ("oldAndroid",)
    assert population.segments_matched_by([istio_cookie]) == ("oldAndroid",)
    assert population.segments_matched_by([header, nginx_cookie]) == ("betaTesters", "oldAndroid")
    assert population.segments_matched_by([RouteMatch(headers={"x-beta": {"exact": "no"}})]) == ()
    never = Segment(share=1, cookie={"name": "canary", "value": "never"})
    assert not never.matched_by(nginx_cookie)


# --------------------------------------------------------------------------- exposure tally


def test_exposure_intensities_accumulate_per_prefix_and_segment():
    users = _SMALL
    tally = users.exposure()
    tally.add(("sticky_prefix", 1.0), 0.0)  # nothing
    tally.add(("sticky_prefix", 10.0), 100.0, 10.0)
    tally.add(("sticky_prefix", 50.0), 300.0, 0.0)
    tally.add(("sticky_prefix", 10.0), 50.0, 5.0)  # same prefix again: one term
    tally.add(("segment_sticky", "beta", 80.0), 40.0, 4.0)
    tally.add(("all",), 20.0)
    a, b, beta = users.activity, users.bucket, users.masks["beta"]

    def part(mask, requests):
        return np.where(mask, a * requests / a[mask].sum(), 0.0)

    lam_expected = (part(b < 10, 150.0) + part(b < 50, 300.0) + part(beta & (b < 80), 40.0)
                    + part(np.ones_like(beta), 20.0))  # fmt: skip
    bad_expected = part(b < 10, 15.0) + part(beta & (b < 80), 4.0)
    lam, lam_bad = tally.intensities()
    np.testing.assert_allclose(lam, lam_expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lam_bad, bad_expected, rtol=1e-12, atol=1e-15)
    assert tally.expected() == pytest.approx(-np.expm1(-lam_expected).sum())
    tally.reset()
    assert tally.expected() == 0.0 and tally.sample(np.random.default_rng(0)) == 0


def test_exposure_sample_and_mask_agree_and_contain_the_hurt(homogeneous):
    tally = homogeneous.exposure()
    tally.add(("sticky_prefix", 30.0), 5000.0, 500.0)
    hurt = homogeneous.tally()
    hurt.add(homogeneous.hurt(np.random.default_rng(1), 500, ("sticky_prefix", 30.0)))
    mask = tally.sample_mask(np.random.default_rng(9), hurt.mask)
    assert tally.sample(np.random.default_rng(9), hurt.mask) == mask.sum()
    assert mask[hurt.mask].all()
    assert not mask[homogeneous.bucket >= 30.0].any()


@pytest.mark.parametrize("confined", [False, True])
def test_exposed_and_hurt_have_the_right_joint_law(confined):
    """Replications of one interval at random routing: per user, bad ~ Poisson(Λᵇ), all ~
    Poisson(Λ). Then E[hurt] = Σ 1 − e^{−Λᵇ}, E[exposed] = Σ 1 − e^{−Λ}, and hurt ⊆ exposed.
    ``confined``: the fault hurts only segment "beta" (bad requests added in their own call)."""
    pop = {
        "count": 2000,
        "activity": {"lognormal": {"sigma": 1.0}},
        "segments": {"beta": {"share": 40}},
    }
    users = UserPopulation.model_validate(pop).build(3)
    rng = np.random.default_rng(10)
    requests, p_bad, reps = 1500.0, 0.3, 300
    lam = users.activity * requests
    where = ("segment", "beta") if confined else ("all",)
    inside = users.masks["beta"] if confined else np.ones(users.n, bool)
    bad = requests * users.share(where) * p_bad  # the eligible users' requests, times p
    lam_bad = np.where(inside, lam * p_bad, 0.0)
    hurt_counts, exposed_counts = [], []
    for _ in range(reps):
        tally, exposure = users.tally(), users.exposure()
        tally.add(users.hurt(rng, rng.poisson(bad), where))
        exposure.add(("all",), requests)
        exposure.add(where, 0.0, bad)
        exposed = exposure.sample_mask(rng, tally.mask)
        assert exposed[tally.mask].all()
        hurt_counts.append(tally.count)
        exposed_counts.append(exposed.sum())
    np.testing.assert_allclose(exposure.intensities()[1], lam_bad, rtol=1e-9, atol=1e-15)
    for counts, p in ((hurt_counts, -np.expm1(-lam_bad)), (exposed_counts, -np.expm1(-lam))):
        sd = math.sqrt(float((p * (1 - p)).sum()) / reps)  # SE of the mean of reps counts
        assert abs(np.mean(counts) - p.sum()) < 5 * sd


def test_exposure_rejects_inconsistent_input():
    tally = _SMALL.exposure()
    with pytest.raises(ValueError, match=">= 0"):
        tally.add(("all",), -1.0)
    with pytest.raises(ValueError, match="no active users"):
        tally.add(("sticky_prefix", 0.0), 1.0)
