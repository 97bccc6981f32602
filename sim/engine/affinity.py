"""Session affinity in the fast engine: who holds the canary's cookie, as a range of users.

Why a range: under random routing user u (activity share a_u) sends canary-by-weight requests
as a Poisson process of intensity a_u·w(t)·r(t) while it holds no cookie, so its first one comes
when W(t) = ∫ w·r dt (since the cookie route landed) reaches K_u = E_u / a_u, E_u ~ Exp(1)
(the time-change theorem). Drawing E once per replication and sorting users by K makes the
users who got a cookie by t the prefix K ≤ W(t), and those whose cookie is still valid
(max-age M) the range W(t − M) < K ≤ W(t): the same picture as the sticky buckets, searched in
a cumulative activity (sim/engine/cells.py, order ``("cookie", n)``).

Within one piece [s, e) (a scrape slot at most, so the range moves slot by slot) the users split:
holders (valid cookie at s: every request to canary), joiners (W(s) < K ≤ W(e): their requests
before the joining one go to stable with probability 1 − w, the joining one and all after it to
canary; Σ a_u·K_u = Σ E_u gives their expected counts in closed form), the rest (no canary
request by weight: to stable with probability 1 − w) and users whose first cookie has expired,
who follow the weight again. Not modelled here: a second cookie after the first expired (those
users follow the weight: the per-request engine, sim/engine/reference_shadow.py, gives them one),
a cookie expiring inside a piece (it holds to the piece's end), and sticky routing, where the
router's own choice is per user already (refused with a message naming the per-request engine).
Approximate within a piece only: the joining requests are counted as Poisson around the number
of joiners (one each), and the joiners' later requests in it are spread over them ∝ activity.
tests/test_engine_affinity.py checks both engines against the closed forms of a Poisson user.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numpy.random import Generator

from policies.errors import PolicyError, RolloutsimError

if TYPE_CHECKING:
    from sim.engine.cells import UserCells
    from sim.engine.flows import RoutingState

__all__ = ["Cookies", "check_session_affinity", "cookie_services", "draw_each"]


def check_session_affinity(policy, world, *, where: str, file: str) -> None:
    """Refuse session affinity over sticky users when a scenario is loaded: only the
    per-request engine simulates it (``Cookies.land``), so every replication would fail."""
    analysis = getattr(policy, "analysis", None)
    if getattr(analysis, "session_affinity", None) and world.users.routing == "sticky":
        raise PolicyError(
            f"{policy.name}: session affinity with sticky users (world.users.routing: sticky) "
            "is not simulated; set world.users.routing: random, or drop sessionAffinity",
            path=f"{where}.analysis.sessionAffinity",
            file=file,
        )


class Cookies:
    """The cookie route of one replication: when it is on, W(t) and the users' keys."""

    def __init__(self, traffic, cells, make_rng: Callable[[], Generator], sticky: bool) -> None:
        """``make_rng()``: the cookie keys' stream, made only if a cookie route lands."""
        self.traffic, self.cells, self.make_rng, self.sticky = traffic, cells, make_rng, sticky
        self.max_age = 0.0  # 0: no cookie route
        self.order: tuple | None = None  # the cells' order of this replication's keys
        self.times: list[float] = []  # checkpoints of W: time, W there, w·(route on) after it
        self.values: list[float] = []
        self.slopes: list[float] = []

    def __repr__(self) -> str:
        return f"Cookies(max_age={self.max_age}, checkpoints={len(self.times)})"

    @property
    def on(self) -> bool:
        return self.max_age > 0

    def land(self, now: float, max_age: float, weight: float) -> None:
        """The cookie route lands (``max_age`` 0 removes it)."""
        if max_age > 0 and self.sticky:
            raise RolloutsimError(
                "session affinity with sticky users (users.routing: sticky) is simulated only "
                "by the per-request engine (sim.engine.reference.simulate_reference)"
            )
        if max_age > 0 and self.order is None:  # E_u ~ Exp(1): K_u = E_u / a_u
            e = self.make_rng().standard_exponential(self.cells.n)
            self.order = self.cells.cookie_order(e)
        self.max_age = max(0.0, float(max_age))
        self.checkpoint(now, weight)

    def checkpoint(self, now: float, weight: float) -> None:
        """The weight (or the route) changes at ``now``: W grows at w·r from here."""
        if self.order is None:
            return
        value = self.w_at(now)
        while self.times and self.times[-1] >= now:  # several changes at one instant
            self.times.pop(), self.values.pop(), self.slopes.pop()
        self.times.append(now)
        self.values.append(value)
        self.slopes.append(weight / 100.0 if self.on else 0.0)

    def w_at(self, t: float) -> float:
        """W(t): canary-by-weight requests per unit activity since the route first landed."""
        k = bisect.bisect_right(self.times, t) - 1
        if k < 0:
            return 0.0
        slope = self.slopes[k]
        if slope <= 0 or t <= self.times[k]:
            return self.values[k]
        return self.values[k] + slope * float(self.traffic.integral(self.times[k], t))

    def steady_until(self, t: float) -> float:
        """Until when, from ``t``, the holders' range stays put: ``t`` while W grows or cookies
        given while it grew are expiring (the range moves slot by slot), else the moment the
        next such expiry begins (a growth interval's start plus max-age; inf if none)."""
        if not self.times or self.slopes[-1] > 0:
            return t
        since = t - self.max_age
        for k, start in enumerate(self.times):
            if self.slopes[k] <= 0:
                continue
            end = self.times[k + 1]  # not the last checkpoint: its slope is 0
            if start <= since < end:
                return t  # cookies given in [start, end) are expiring now
            if since < start:
                return start + self.max_age
        return np.inf

    def piece(self, t0: float, t1: float) -> tuple:
        """The state's ``cookie`` for the piece [t0, t1): (order, lo, W(t0), W(t1), requests)."""
        assert self.order is not None  # landed with a positive max-age
        lo = self.w_at(t0 - self.max_age)
        requests = float(self.traffic.integral(t0, t1))
        return (self.order, lo, self.w_at(t0), self.w_at(t1), requests)


def cookie_services(state: RoutingState, cells: UserCells, key, a_cell: float) -> list:
    """A cell's requests under a cookie route over one piece (compute_flows' ``services``): per
    range of the cookie order, its fraction of the cell's requests to each Service. The joining
    requests are their own range, ``each`` user of it once (drawn without repeats)."""
    assert state.cookie is not None  # only called with a cookie route on
    order, lo, w_s, w_e, requests = state.cookie
    w = state.weight / 100.0
    holders, expired = (key, order, lo, w_s), (key, order, 0.0, lo)
    joiners, rest = (key, order, w_s, w_e), (key, order, w_e, np.inf)
    canary, stable = state.canary, state.stable
    out: list = [("canary", canary, cells.share(holders) / a_cell, holders)]
    a_old, a_rest = cells.share(expired), cells.share(rest)
    out.append(("canary", canary, w * a_old / a_cell, expired))  # they follow the weight
    out.append(("stable", stable, (1.0 - w) * a_old / a_cell, expired))
    out.append(("stable", stable, (1.0 - w) * a_rest / a_cell, rest))
    if w_e > w_s and w > 0 and requests > 0:
        n, sum_e = cells.count_and_sum(joiners)
        a_join = cells.share(joiners)
        before = max(0.0, sum_e - w_s * a_join) / w  # their requests before the joining one
        each = (key, (*order, "each"), w_s, w_e)  # the joining request: one per joiner
        out.append(("canary", canary, n / requests / a_cell, each))
        out.append(("canary", canary, (a_join * requests - before) / requests / a_cell, joiners))
        out.append(("stable", stable, (1.0 - w) * before / requests / a_cell, joiners))
    return out


def draw_each(rng: np.random.Generator, k: int, members: np.ndarray):
    """Joining requests (one per joiner): k distinct users of ``members`` (a range of an
    ``each`` order), uniformly; more than it holds, which a Poisson count allows, go to its
    users at random. (users hit, their counts), as ``UserCells.draw_counts``."""
    counts = np.zeros(members.size, dtype=np.int64)
    counts[rng.choice(members.size, min(k, members.size), replace=False)] = 1
    if k > members.size:
        counts += np.bincount(
            rng.integers(0, members.size, k - members.size), minlength=members.size
        )
    hit = counts > 0
    return members[hit], counts[hit]
