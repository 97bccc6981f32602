"""The engine's user draws (sim/engine/cells.py ``UserCells``) against exact references.

The fast paths — a guide table in place of binary search, Poisson counts corrected to a fixed
total in place of numpy's multinomial, exposure drawn request by request or user by user —
must give exactly the reference's answer (lookups) or its distribution (draws), with fixed
seeds and tolerances of 4 Monte Carlo standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.engine.cells import _SEARCH_BELOW, UserCells
from sim.world.users import UserPopulation, Users

Z = 4.0
KEY = (frozenset(), None, False, True)  # the whole population, in sticky-bucket order
GROUP = (KEY, "bucket")


def _cells(n: int = 2000, sigma: float = 1.5, seed: int = 3) -> UserCells:
    population = UserPopulation(count=n, activity={"lognormal": {"sigma": sigma}})
    return UserCells(population.build(seed))


def test_guide_table_lookup_is_binary_search():
    """``_locate`` returns searchsorted(cum, u, 'right') − 1 for every u (ascending, as
    ``_picks`` draws them), at bin edges, user boundaries and the very ends included, and steps
    over users with no activity; a u rounded up to the total is the last user's."""
    cells = _cells()
    cum = cells._group(*GROUP)[2]
    rng = np.random.default_rng(0)
    u = np.concatenate(
        (
            rng.random(50_000) * cum[-1],
            cum[:-1],  # each user's first point
            np.nextafter(cum[1:], 0.0),  # each user's last point
            [0.0, np.nextafter(cum[-1], 0.0), cum[-1], cum[-1]],
        )
    )
    u.sort()
    expected = np.minimum(np.searchsorted(cum, u, side="right") - 1, cum.size - 2)
    assert np.array_equal(cells._locate(GROUP, u.copy()), expected)

    built = _cells(n=500).users
    activity = built.activity.copy()
    activity[::3] = 0.0  # a third of the users never send a request
    zeros = UserCells(Users(activity / activity.sum(), built.bucket))
    zm, _, zc = zeros._group(*GROUP)
    u = np.sort(rng.random(20_000)) * zc[-1]
    picks = zeros._locate(GROUP, u.copy())
    assert np.array_equal(picks, np.searchsorted(zc, u, side="right") - 1)
    assert not np.any(zeros.users.activity[zm[picks]] == 0.0)

    # few values take plain binary searches (_SEARCH_BELOW): the same positions, at the same
    # edges, ends and users with no activity, on either side of the switch
    for k in (1, 5, _SEARCH_BELOW - 1, _SEARCH_BELOW):
        some = np.sort(np.append(rng.choice(np.concatenate((u, zc[:-1])), k - 1), zc[-1]))
        expected = np.minimum(np.searchsorted(zc, some, side="right") - 1, zc.size - 2)
        assert np.array_equal(zeros._locate(GROUP, some.copy()), expected)


def _counts(cells: UserCells, rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """``_hits`` over the whole group as one count per user."""
    hit, counts = cells._hits(rng, k, GROUP, 0, n)
    out = np.zeros(n, dtype=np.int64)
    out[hit] = counts
    return out


@pytest.mark.parametrize("k", [1_500, 12_000, 40_000])
def test_counts_are_multinomial(k):
    """``_counts``: the total is exactly k, each user's mean count is k·w, and the number of
    users hit matches numpy's multinomial (both branches of the correction are exercised)."""
    cells = _cells()
    n = cells.n
    weights = cells._sorted_activity(*GROUP)
    p = weights / weights.sum()
    rng = np.random.default_rng(k)
    reps = 400
    counts = np.array([_counts(cells, rng, k, n) for _ in range(reps)])
    assert (counts.sum(axis=1) == k).all() and (counts >= 0).all()
    # per-user means: z-scores of the 10 heaviest users
    top = np.argsort(p)[-10:]
    se = np.sqrt(k * p[top] * (1 - p[top]) / reps)
    assert np.all(np.abs(counts[:, top].mean(axis=0) - k * p[top]) < Z * se)
    # users hit, against numpy's multinomial on another stream
    ours = (counts > 0).sum(axis=1)
    ref_rng = np.random.default_rng(10_000 + k)
    theirs = np.array([(ref_rng.multinomial(k, p) > 0).sum() for _ in range(reps)])
    se = math.sqrt((ours.var(ddof=1) + theirs.var(ddof=1)) / reps)
    assert abs(ours.mean() - theirs.mean()) < Z * se


def test_draws_hit_users_in_proportion_to_activity():
    """A user's chance to be among the users of k draws is 1 − (1 − w)^k, whichever path
    (lookups below 0.9 draws per user, counts above) ``draw`` takes."""
    cells = _cells(n=1000)
    weights = cells._sorted_activity(*GROUP)
    members, _, _ = cells._group(*GROUP)
    p = weights / weights.sum()
    rng = np.random.default_rng(7)
    for k in (300, 5_000):  # lookups; counts
        reps = 600
        hits = np.zeros(cells.n)
        for _ in range(reps):
            hits[cells.draw(rng, k, (KEY, "bucket", 0.0, 100.0))] += 1
        expected = 1 - (1 - p) ** k
        got = hits[members] / reps
        se = np.sqrt(expected * (1 - expected) / reps)
        assert np.sum((got - expected) ** 2 / np.maximum(se, 1e-9) ** 2) < cells.n + 6 * math.sqrt(
            2 * cells.n
        )  # χ² with n degrees of freedom, 6 sd


def _reached(cells: UserCells, rng, terms: dict, already: np.ndarray) -> int:
    """Users of Poisson(Λ) requests from each selection {selector: Λ} or of ``already``."""
    draws = [cells.draw_positions(rng, rng.poisson(n), sel) for sel, n in terms.items()]
    return int(np.count_nonzero(already | cells.users_mask(draws)))


@pytest.mark.parametrize("margin", [2.0, -4.0])  # S ≤ k at once; S > k forced: fresh tries
@pytest.mark.parametrize("k", [1_000, 5_000])  # per user above 0.9 draws per user
def test_draw_users_hits_users_as_the_multinomial_does(monkeypatch, margin, k):
    """Who k draws ∝ activity hit, without counts (users exposed): each user once, ascending,
    with chance 1 − (1 − w)^k each (χ² over the users), and as many as numpy's multinomial."""
    from sim.engine import sampling

    monkeypatch.setattr(sampling, "_MARGIN", margin)
    cells = _cells(n=1000)
    members, _, _ = cells._group(*GROUP)
    weights = cells._sorted_activity(*GROUP)
    p = weights / weights.sum()
    rng = np.random.default_rng(k + int(margin))
    reps, hits, sizes = 400, np.zeros(cells.n), []
    for _ in range(reps):
        drawn = cells.draw_users(rng, k, (KEY, "bucket", 0.0, 100.0))
        assert np.all(np.diff(drawn.positions) > 0) and drawn.ascending
        hits[drawn.users] += 1
        sizes.append(drawn.positions.size)
    expected = 1 - (1 - p) ** k
    se = np.sqrt(expected * (1 - expected) / reps)
    chi2 = np.sum((hits[members] / reps - expected) ** 2 / np.maximum(se, 1e-9) ** 2)
    assert chi2 < cells.n + 6 * math.sqrt(2 * cells.n)
    ref_rng = np.random.default_rng(7)
    theirs = np.array([(ref_rng.multinomial(k, p) > 0).sum() for _ in range(reps)])
    se_mean = math.sqrt((np.var(sizes, ddof=1) + theirs.var(ddof=1)) / reps)
    assert abs(np.mean(sizes) - theirs.mean()) < Z * se_mean


def test_draw_users_in_steps_draws_the_same_users(monkeypatch):
    """The per-user pass in steps of a few users draws what one step draws (no n-sized
    temporaries at 10 M users, the same numbers)."""
    from sim.engine import cells as cell_module

    cells = _cells(n=1000)
    selector = (KEY, "bucket", 10.0, 90.0)
    whole = cells.draw_users(np.random.default_rng(5), 3_000, selector).positions
    monkeypatch.setattr(cell_module, "_CHUNK", 97)
    stepped = cells.draw_users(np.random.default_rng(5), 3_000, selector).positions
    assert whole.size > 500 and np.array_equal(whole, stepped)


@pytest.mark.parametrize("expected_requests", [300.0, 60_000.0])
def test_exposed_matches_poisson_users(expected_requests):
    """Users reached by Poisson(Λ) requests from a half of the population and Λ/2 from all of
    it: Σ_u 1 − e^−λ_u, drawn request by request (small Λ) or user by user (large Λ)."""
    cells = _cells(n=1500)
    members, keys, cum = cells._group(*GROUP)
    act = cells._sorted_activity(*GROUP)
    half = (KEY, "bucket", 0.0, 50.0)
    whole = (KEY, "bucket", 0.0, 100.0)
    terms = {half: expected_requests, whole: expected_requests / 2}
    j = int(np.searchsorted(keys, 50.0, side="left"))
    lam = act * (expected_requests / 2) / cum[-1]
    lam[:j] += act[:j] * expected_requests / cum[j]
    prob = -np.expm1(-lam)
    already = np.zeros(cells.n, dtype=bool)
    already[members[-5:]] = True  # five users already reached (their bad answers)
    prob[-5:] = 1.0
    reps = 300
    rng = np.random.default_rng(int(expected_requests))
    got = np.array([_reached(cells, rng, terms, already) for _ in range(reps)])
    se = math.sqrt(float(np.sum(prob * (1 - prob))) / reps)
    assert abs(got.mean() - prob.sum()) < Z * se


def test_distinct_users_of_disjoint_cells_are_counted_as_marked(monkeypatch):
    """Draws of distinct cells of one split are counted by position, not marked (no user is in
    two): the count equals marking's, draw for draw, and cells that may share users (one cell
    in two orders) are still marked."""
    from sim.engine import cells as cell_module

    population = UserPopulation(
        count=3000, activity={"lognormal": {"sigma": 1.5}}, segments={"beta": {"share": "10%"}}
    )
    cells = UserCells(population.build(3))
    dns = cells.dns_order(np.random.default_rng(4).random(cells.n) * 100.0, object())
    inside, outside = (frozenset(), "beta", False, True), (frozenset(), "beta", False, False)
    cases = [
        {(inside, "bucket", 0.0, 100.0): 5000, (outside, "bucket", 0.0, 100.0): 30000},
        {(inside, "bucket", 0.0, 40.0): 5000, (inside, "bucket", 10.0, 100.0): 1000},
        {(inside, "bucket", 0.0, 100.0): 5000, (inside, dns, 0.0, 60.0): 3000},
    ]
    real = cell_module._disjoint
    for terms, disjoint in zip(cases, (True, True, False), strict=True):
        rng = np.random.default_rng(9)
        draws = [cells.draw_positions(rng, k, sel) for sel, k in terms.items()]
        assert real(cells._by_group(draws)) is disjoint
        counted = cells.distinct_users(draws)
        monkeypatch.setattr(cell_module, "_disjoint", lambda _groups: False)
        marked = cells.distinct_users(draws)
        monkeypatch.setattr(cell_module, "_disjoint", real)
        assert counted == marked == int(cells.users_mask(draws).sum())
