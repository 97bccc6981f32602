"""Counting without marking (issue #17): ``distinct_users`` counts the users of draws
(``Drawn``, as users exposed are: the bad answers' draws and the good requests') by their
positions in their groups; the caused draw's hurt are kept as a draw. Each must give exactly
the count that marking a byte per user gives, draw for draw.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine.blast import BlastRadius
from sim.engine.cells import Drawn, UserCells, _distinct_union
from sim.world.users import UserPopulation

KEY = (frozenset(), None, False, True)  # the whole population, in sticky-bucket order
SEGMENT_IN, SEGMENT_OUT = (frozenset(), "beta", False, True), (frozenset(), "beta", False, False)


@pytest.fixture(scope="module")
def cells() -> UserCells:
    population = UserPopulation(
        count=3000, activity={"lognormal": {"sigma": 1.5}}, segments={"beta": {"share": "20%"}}
    )
    cells = UserCells(population.build(4))
    _DNS.append(cells.dns_order(np.random.default_rng(5).random(cells.n) * 100.0, object()))
    return cells


_DNS: list = []  # the fixture's DNS switch order ("dns" in a selector below stands for it)


def _in_order(selector: tuple) -> tuple:
    return (selector[0], _DNS[-1], *selector[2:]) if selector[1] == "dns" else selector


def _mask(cells: UserCells, draws: list[Drawn]) -> np.ndarray:
    mask = np.zeros(cells.n, dtype=bool)
    for drawn in draws:
        mask[drawn.users] = True
    return mask


IN, OUT = (SEGMENT_IN, "bucket", 0.0, 100.0), (SEGMENT_OUT, "bucket", 0.0, 100.0)


@pytest.mark.parametrize(
    ("already_from", "k", "terms"),
    [
        ((KEY, "bucket", 0.0, 100.0), 200, {(KEY, "bucket", 0.0, 100.0): 300.0}),  # one draw
        ((KEY, "bucket", 0.0, 100.0), 0, {(KEY, "bucket", 0.0, 100.0): 300.0}),  # none yet
        ((KEY, "bucket", 0.0, 50.0), 200, {(KEY, "bucket", 10.0, 100.0): 30.0}),
        (None, 0, {(KEY, "bucket", 0.0, 40.0): 50.0, (KEY, "bucket", 20.0, 90.0): 90.0}),
        (
            (KEY, "bucket", 0.0, 100.0),
            100,
            {(KEY, "bucket", 0.0, 40.0): 50.0, (KEY, "bucket", 20.0, 90.0): 90.0},
        ),
        (
            (KEY, "bucket", 0.0, 100.0),
            150,
            {(KEY, "bucket", 0.0, 40.0): 50.0, (KEY, "dns", 0.0, 60.0): 40.0},
        ),
        ((KEY, "bucket", 0.0, 100.0), 5000, {(KEY, "bucket", 0.0, 100.0): 30.0}),  # per user
        ((SEGMENT_IN, "bucket", 0.0, 100.0), 100, {(SEGMENT_OUT, "bucket", 0.0, 100.0): 80.0}),
        ((KEY, "bucket", 0.0, 100.0), 100, {(KEY, "bucket", 0.0, 100.0): 3000.0}),  # per user
        ((KEY, "bucket", 40.0, 45.0), 300, {(KEY, "bucket", 40.0, 60.0): 40.0}),  # hits
        ("both cells", 300, {IN: 5000.0, OUT: 40000.0}),  # per user, by position
        ("both cells", 300, {IN: 50.0, OUT: 400.0}),
        ("both cells", 300, {OUT: 400.0}),  # a draw of a group not asked for: marked
    ],
)
def test_exposed_draws_count_as_their_mask(cells, already_from, k, terms):
    """The same draws, the same count: users exposed counted from the draws' positions (the
    bad answers' and the good requests' draws) or from their users marked."""
    if already_from is None:
        already = []
    elif already_from == "both cells":  # lookups in one, per user (hits) in the other
        rng = np.random.default_rng(1)
        already = [cells.draw_positions(rng, k, OUT), cells.draw_positions(rng, 10 * k, IN)]
    else:
        already = [cells.draw_positions(np.random.default_rng(1), k, already_from)]
    for seed in range(5):
        rng = np.random.default_rng(seed)
        draws = already + [
            cells.draw_positions(rng, round(n), _in_order(sel)) for sel, n in terms.items()
        ]
        assert cells.distinct_users(draws) == int(_mask(cells, draws).sum()) > 0


def test_distinct_union_is_unique_of_all():
    rng = np.random.default_rng(2)
    for sizes in [(), (0,), (5,), (40, 3), (3, 40), (1, 1), (30, 30, 2), (0, 7, 0), (9, 1, 30, 4)]:
        arrays = [np.sort(rng.integers(0, 60, size)) for size in sizes]
        expected = np.unique(np.concatenate([np.empty(0, int), *arrays])).size
        assert _distinct_union(arrays) == expected


def test_caused_users_given_a_draw_hurt_the_same_users(cells):
    """Hurt counted from the draw's positions, or marked from its users: the same users."""
    selector = (KEY, "bucket", 0.0, 100.0)
    for share in (0.3, 1.0):
        counts = []
        for as_drawn in (True, False):
            drawn = cells.draw_positions(np.random.default_rng(3), 400, selector)
            rng = np.random.default_rng(7)
            blast = BlastRadius(cells, 0.0, None, None, lambda rng=rng: rng)
            if as_drawn:
                blast._caused_users(drawn, drawn.counts, share)
                counts.append((blast.users_hurt(), blast.totals.caused))
            else:
                blast._caused_users(drawn.users, drawn.counts, share)
                counts.append((int(blast.hurt.sum()), blast.totals.caused))
        assert counts[0] == counts[1]
        assert counts[0][0] > 0


def test_distinct_users_of_draws_that_may_share_users(cells):
    """Draws of one group, of distinct cells of one split, or of groups that share users:
    counted (by position, or marked) as their users marked."""
    rng = np.random.default_rng(6)
    cases = [
        [cells.draw_positions(rng, 500, IN), cells.draw_positions(rng, 400, IN)],
        [cells.draw_positions(rng, 500, OUT), cells.draw_positions(rng, 9000, IN)],
        [
            cells.draw_positions(rng, 900, (KEY, "bucket", 0.0, 100.0)),
            cells.draw_positions(rng, 300, IN),
        ],
        [
            cells.draw_positions(rng, 900, (KEY, _DNS[-1], 0.0, 50.0)),
            cells.draw_positions(rng, 300, (KEY, "bucket", 0.0, 100.0)),
        ],
    ]
    for draws in cases:
        assert cells.distinct_users(draws) == int(_mask(cells, draws).sum())
