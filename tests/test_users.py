"""Users: anchors §3.2 (users touched and hurt under random and sticky routing), segment shares
and overlaps, activity-proportional draws within cells and sticky prefixes, and the joint law
of users hurt and exposed, through the engine's ``UserCells``.

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
from sim.engine.cells import UserCells
from sim.world.users import Activity, Segment, UserPopulation

U = 100_000
W, R, T = 1.0, 1.0 / 60.0, 3600.0  # anchors §3.2: 1 % weight, 1 request/min, 60 min
ALL = (frozenset(), None, False, True)  # the cell of every user (no route match, no segment)


def _in(segment: str, inside: bool = True) -> tuple:
    """The cell of the users in (or out of) a fault segment."""
    return (frozenset(), segment, False, inside)


def _sel(cell: tuple = ALL, w: float = 100.0) -> tuple:
    """The cell's users with sticky bucket below w (percent)."""
    return (cell, "bucket", 0.0, w)


def _within(count: float, expected_fraction: np.ndarray | float, n: int | None = None) -> None:
    p = np.broadcast_to(
        np.asarray(expected_fraction, dtype=float), (n,) if n else np.shape(expected_fraction)
    )
    mean, sd = p.sum(), math.sqrt(float((p * (1 - p)).sum()))
    assert abs(count - mean) <= 5 * sd + 1e-9, (count, mean, sd)


def _hurt(cells: UserCells, rng, k: int, selector: tuple) -> np.ndarray:
    mask = np.zeros(cells.n, dtype=bool)
    mask[cells.draw(rng, k, selector)] = True
    return mask


def _exposed(cells: UserCells, rng, terms: dict) -> int:
    """Users reached by Poisson(Λ) requests from each selection {selector: Λ}, as users exposed
    are drawn: the requests' count, then their users ∝ activity."""
    draws = [cells.draw_positions(rng, rng.poisson(n), sel) for sel, n in terms.items()]
    return cells.distinct_users(draws)


@pytest.fixture(scope="module")
def homogeneous() -> UserCells:
    return UserCells(UserPopulation(count=U).build(11))


@pytest.fixture(scope="module")
def heterogeneous() -> UserCells:
    return UserCells(UserPopulation(count=U, activity={"lognormal": {"sigma": 1.5}}).build(12))


# --------------------------------------------------------------------------- anchors §3.2


def test_anchor_numbers():
    assert 1 - math.exp(-W / 100 * R * T) == pytest.approx(0.451, abs=5e-4)  # "45 % touched"
    assert 1 - math.exp(-5 / 100 * R * T) == pytest.approx(0.950, abs=5e-4)  # "95 % at 5 %"


def test_random_routing_touches_1_minus_exp_w_r_t(homogeneous):
    """Simulate the canary's requests themselves: N ~ Poisson(w·U·r·T), users ∝ activity; the
    exposure draw gives the same law."""
    rng = np.random.default_rng(1)
    requests = W / 100 * U * R * T
    hurt = _hurt(homogeneous, rng, rng.poisson(requests), _sel())
    expected = 1 - math.exp(-W / 100 * R * T)
    _within(hurt.sum(), expected, U)
    assert round(hurt.sum() / U, 2) == 0.45
    _within(_exposed(homogeneous, rng, {_sel(): requests}), expected, U)


def test_sticky_routing_touches_w(homogeneous):
    rng = np.random.default_rng(2)
    users = homogeneous.users
    on_canary = int((users.bucket < W).sum())
    _within(on_canary, W / 100, U)  # buckets are U(0, 100): Binomial(U, w)
    requests = U * R * T * homogeneous.share(_sel(ALL, W))  # every request of those users
    hurt = _hurt(homogeneous, rng, rng.poisson(requests), _sel(ALL, W))
    touched = _exposed(homogeneous, rng, {_sel(ALL, W): requests})
    # each prefix user sends Poisson(r·T = 60) requests: touched with prob 1 − e^{−60}
    _within(touched, -math.expm1(-R * T), on_canary)
    _within(hurt.sum(), -math.expm1(-R * T), on_canary)
    assert round(touched / U, 3) == 0.01
    assert np.all(users.bucket[hurt] < W)


@pytest.mark.parametrize("p_bad", [0.05, 0.5])
def test_users_hurt_random_and_sticky(homogeneous, p_bad):
    rng = np.random.default_rng(3)
    w = 5.0
    # random: each user's bad canary requests are Poisson(w r p T)
    bad = w / 100 * U * R * T * p_bad
    hurt = _hurt(homogeneous, rng, rng.poisson(bad), _sel())
    _within(hurt.sum(), -math.expm1(-w / 100 * R * p_bad * T), U)
    # sticky: users hurt = w·U·(1 − e^{−r p T})
    m = int((homogeneous.users.bucket < w).sum())
    k = rng.poisson(U * R * T * homogeneous.share(_sel(ALL, w)) * p_bad)
    _within(_hurt(homogeneous, rng, k, _sel(ALL, w)).sum(), -math.expm1(-R * p_bad * T), m)
    _within(m, w / 100, U)


def test_heterogeneous_activity_touches_the_exact_expectation_and_fewer_users(heterogeneous):
    """For a fixed amount of canary traffic, E[touched] = Σ_u 1 − e^{−a_u Λ}; since that is
    concave in a_u, unequal activity touches *fewer* users than equal activity (Jensen)."""
    rng = np.random.default_rng(4)
    requests = W / 100 * U * R * T
    p = -np.expm1(-heterogeneous.users.activity * requests)
    _within(_hurt(heterogeneous, rng, rng.poisson(requests), _sel()).sum(), p)
    _within(_exposed(heterogeneous, rng, {_sel(): requests}), p)
    assert p.sum() < 0.8 * U * (1 - math.exp(-W / 100 * R * T))


# --------------------------------------------------------------------------- sampling


def test_draws_within_segments_and_sticky_prefixes_are_proportional_to_activity():
    pop = UserPopulation(
        count=200, activity={"lognormal": {"sigma": 1.0}}, segments={"beta": {"share": "30%"}}
    )
    cells = UserCells(pop.build(7))
    users = cells.users
    selector = _sel(_in("beta"), 60.0)
    inside = users.masks["beta"] & (users.bucket < 60.0)
    assert cells.share(selector) == pytest.approx(users.activity[inside].sum())
    rng = np.random.default_rng(8)
    k = int(inside.sum()) // 2  # a draw of up to 0.9 per user keeps its repeats
    draws = np.concatenate([cells.draw(rng, k, selector) for _ in range(50_000 // k)])
    assert draws.size == k * (50_000 // k) and inside[draws].all()
    counts = np.bincount(draws, minlength=200)[inside]
    expected = users.activity[inside] / users.activity[inside].sum() * draws.size
    assert stats.chisquare(counts, expected).pvalue > 1e-3


_SMALL = UserCells(
    UserPopulation(
        count=500, activity={"lognormal": {"sigma": 2}}, segments={"beta": {"share": 20}}
    ).build(0)
)


@settings(max_examples=40, deadline=None)
@given(w=st.floats(0.0, 100.0), n_bad=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1))
def test_draws_stay_in_their_selection(w, n_bad, seed):
    cells, users = _SMALL, _SMALL.users
    rng = np.random.default_rng(seed)
    beta = users.masks["beta"]
    for selector, inside in [
        (_sel(), np.ones(users.n, bool)),
        (_sel(ALL, w), users.bucket < w),
        (_sel(_in("beta")), beta),
        (_sel(_in("beta"), w), beta & (users.bucket < w)),
        (_sel(_in("beta", False), w), ~beta & (users.bucket < w)),
    ]:
        picks = cells.draw(rng, n_bad, selector)
        assert inside[picks].all()
        assert (picks.size > 0) == bool(inside.any())


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
    selector = _sel(_in("eu"))
    picks = [UserCells(u).draw(np.random.default_rng(1), 10, selector) for u in (clone, users)]
    np.testing.assert_array_equal(*picks)
    assert repr(users).startswith("Users(n=200000, routing='sticky', segments={betaTesters=")


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


# --------------------------------------------------------------------------- hurt and exposed


@pytest.mark.parametrize("confined", [False, True])
def test_exposed_and_hurt_have_the_right_joint_law(confined):
    """Replications of one interval at random routing: per user, bad ~ Poisson(Λᵇ), all ~
    Poisson(Λ). The engine draws the bad requests' users, then exposes the users of the good
    requests on top (``BlastRadius.users_exposed``). Then E[hurt] = Σ 1 − e^{−Λᵇ},
    E[exposed] = Σ 1 − e^{−Λ}, and exposed ⊇ hurt. ``confined``: the fault hurts only
    segment "beta" (its cell's requests fail with p, the others' never)."""
    pop = {
        "count": 2000,
        "activity": {"lognormal": {"sigma": 1.0}},
        "segments": {"beta": {"share": 40}},
    }
    cells = UserCells(UserPopulation.model_validate(pop).build(3))
    users = cells.users
    rng = np.random.default_rng(10)
    requests, p_bad, reps = 1500.0, 0.3, 300
    lam = users.activity * requests
    inside = users.masks["beta"] if confined else np.ones(users.n, bool)
    lam_bad = np.where(inside, lam * p_bad, 0.0)
    faulty, healthy = (_sel(_in("beta")), _sel(_in("beta", False))) if confined else (_sel(), None)
    bad = requests * cells.share(faulty) * p_bad
    good = {faulty: requests * cells.share(faulty) - bad}
    if healthy is not None:
        good[healthy] = requests * cells.share(healthy)
    hurt_counts, exposed_counts = [], []
    for _ in range(reps):
        hurt = _hurt(cells, rng, rng.poisson(bad), faulty)
        good_draws = [cells.draw_positions(rng, rng.poisson(n), s) for s, n in good.items()]
        exposed = int(np.count_nonzero(hurt | cells.users_mask(good_draws)))
        assert exposed >= hurt.sum()
        hurt_counts.append(hurt.sum())
        exposed_counts.append(exposed)
    for counts, p in ((hurt_counts, -np.expm1(-lam_bad)), (exposed_counts, -np.expm1(-lam))):
        sd = math.sqrt(float((p * (1 - p)).sum()) / reps)  # SE of the mean of reps counts
        assert abs(np.mean(counts) - p.sum()) < 5 * sd
