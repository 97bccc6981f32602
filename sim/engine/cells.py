"""The population as cells, and which users a selection's requests come from (exactly).

A *cell* is the users alike to the router: matched by a header route or not, in the fault's
segment or not (sim/engine/flows.py makes the flows over them). Within a cell users are sorted
by sticky bucket (or a DNS switch's or a cookie's per-client key) with cumulative activity, so a
selection (cell, order, key range) is a contiguous range, and a request's user is found by
inverting the cumulative activity: a guide table, sorted uniforms and per-user passes where
they are cheaper (sim/engine/sampling.py holds the plain algorithms).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sim.engine.affinity import draw_each
from sim.engine.sampling import multinomial_hits, multinomial_users, sorted_uniforms
from sim.world.users import CHUNK as _CHUNK
from sim.world.users import SortedKeys, index_dtype

__all__ = ["Drawn", "Selector", "UserCells", "is_each"]

_GUIDE_BINS = 2  # guide-table bins per user: fewer walking steps, a table still small
# Where one pass over the users gets cheaper than k lookups, measured side by side at 200,000
# lognormal users (issue #17): draw() 0.8 × users: 4.9 ms by lookups, 5.7 per user; 1.0 ×: 7.2,
# 7.0. Cost then rises with k throughout.
# draw_users() (only who was hit) switches there too, to one Exp(1) per user: at 200,000 users
# 0.6 × users 1.44 ms by lookups, 2.00 per user; 0.8 ×: 1.90, 2.09; 1.3 ×: 4.66, 2.34.
_PER_USER_DRAW = 0.9  # draw(): k > 0.9 × users -> Poisson counts per user
# Below this many values one binary search each (no guide table) is cheaper: measured at
# 200,000 users, per call, searchsorted vs the guide table: 100 values 51 k vs 139 k
# instructions, 33 vs 36 µs with the tables out of cache; 200: 75 k vs 147 k, 38 vs 40 µs;
# 300: 82 k vs 167 k but 50 vs 40 µs (the searches' cache misses), 700: 84 vs 48 µs.
_SEARCH_BELOW = 200

Selector = tuple  # (cell key, order, lo, hi): users of the cell with key in [lo, hi); orders:
# "bucket" (sticky buckets), a DNS switch's ("dns", n) and a replication's ("cookie", n[, "each"])


@dataclass(eq=False)
class Drawn:
    """The users of a draw as positions in an array of users (a user's repeats adjacent), and
    each one's number of requests: gathered into users when first asked for (most draws are
    only counted)."""

    members: np.ndarray
    positions: np.ndarray
    counts: np.ndarray
    ascending: bool = False  # positions ascending (a group's lookups)

    @cached_property
    def users(self) -> np.ndarray:
        # (positions are in range: "wrap" never wraps; ``take`` gathers faster than indexing)
        return self.members.take(self.positions, mode="wrap")

    def distinct(self) -> int:
        """How many users were drawn: one per run of equal positions."""
        at = self.positions
        return 0 if at.size == 0 else 1 + int(np.count_nonzero(at[1:] != at[:-1]))


class UserCells:
    """The population split by (matched, in fault segment), each cell sorted by sticky bucket
    (and, for a DNS switch or a cookie route, by that one's keys) with cumulative activity.

    A cell in bucket order and its guide table are the population's arrays (``Users.arrays``:
    its shared memory under the process backend): about 20 bytes per user and cell split, once
    per run, not per worker (int32 positions; sorted keys not stored: ``SortedKeys``)."""

    def __init__(self, users) -> None:
        self.users = users
        self.n = users.n
        self._groups: dict = {}
        self._activity: dict = {}  # small groups' activity in order (``_sorted_activity``)
        self._guides: dict = {}
        self.flow_sets: dict = {}  # flow_set's cache
        self._mirrors: dict = {}  # mirror routes -> percent copied per user
        self._cookie: dict = {}  # a replication's cookie order -> (keys, exponentials)
        self._dns: dict = {}  # a DNS switch's order -> its clients' keys
        self._dns_owner: object = None  # the replication whose switches those are
        self._serial = 0

    def _mask(self, names: frozenset) -> np.ndarray:
        if not names:
            return np.zeros(self.n, dtype=bool)
        return np.logical_or.reduce([self.users.masks[name] for name in sorted(names)])

    def cell_key(self, matched: frozenset, fault_segment: str | None, in_m: bool, in_f: bool):
        return (matched, fault_segment, in_m, in_f)

    def _group(self, key, order: str):
        """(members, ``SortedKeys``, cumulative activity) of a cell in ``order``."""
        cache_key = (key, order)
        group = self._groups.get(cache_key)
        if group is None and is_each(order):
            # a cookie order's ``each``: its users in the same order, each counting once
            members, keys, _ = self._group(key, order[:2])
            cum = np.arange(members.size + 1) / self.n
            group = self._groups[cache_key] = (members, keys, cum)
        if group is None:
            matched, fault_segment, in_m, in_f = key
            inside = np.ones(self.n, dtype=bool)
            if matched:
                inside &= self._mask(matched) == in_m
            if fault_segment is not None:
                inside &= self.users.masks[fault_segment] == in_f
            if order == "bucket":  # the population's arrays (named alike in every process)
                tag = "cell " + json.dumps([sorted(matched), fault_segment, in_m, in_f])
                members, cum = self.users.bucket_cell(tag, inside)
                keys = SortedKeys(self.users.bucket, members, tag)
            else:  # a DNS switch's client keys, or a replication's cookie keys
                source = self._dns[order] if order[0] == "dns" else self._cookie[order][0]
                members = np.flatnonzero(inside)
                members = members[np.argsort(source[members], kind="stable")]
                members = members.astype(index_dtype(self.n), copy=False)
                cum = np.concatenate(([0.0], np.cumsum(self.users.activity[members])))
                keys = SortedKeys(source, members)
            group = self._groups[cache_key] = (members, keys, cum)
        return group

    def _range(self, selector: Selector):
        key, order, lo, hi = selector
        members, keys, cum = self._group(key, order)
        i = 0 if lo <= 0 else keys.search(lo)
        full = hi == np.inf if order[0] == "cookie" else hi >= 100  # (cookie keys: unbounded)
        j = members.size if full else keys.search(hi)
        return members, cum, i, j

    def cookie_order(self, exponentials: np.ndarray) -> tuple:
        """A replication's cookie keys K = E / activity (sim/engine/affinity.py) as an order
        of the cells; the previous replication's order and what was cached for it go."""
        self._forget(self._cookie)
        self._serial += 1
        order = ("cookie", self._serial)
        self._cookie[order] = (exponentials / self.users.activity, exponentials)
        return order

    def dns_order(self, keys: np.ndarray, owner: object) -> tuple:
        """A DNS switch's client keys (uniform on [0, 100): clients move in their order over
        the TTL) as an order of the cells. Each switch draws its own, as each client's
        resolver expires on its own clock. ``owner``: the replication, whose switches' orders
        stay until it is done (its users are drawn at its end); another's go."""
        if owner is not self._dns_owner:
            self._forget(self._dns)
            self._dns_owner = owner
        self._serial += 1
        order = ("dns", self._serial)
        self._dns[order] = keys
        return order

    def _forget(self, store: dict) -> None:
        """Drop the orders in ``store`` and what was cached for them."""
        for old in list(store):
            del store[old]
            for cache in (self._groups, self._activity, self._guides):
                for k in [k for k in cache if isinstance(k[1], tuple) and k[1][:2] == old]:
                    del cache[k]
            self.flow_sets.clear()

    def members(self, selector: Selector) -> np.ndarray:
        members, _, i, j = self._range(selector)
        return members[i:j]

    def count_and_sum(self, selector: Selector) -> tuple[int, float]:
        """Cookie order: how many users the range holds, and Σ E (= Σ activity × key)."""
        members, _, i, j = self._range(selector)
        exponentials = self._cookie[selector[1]][1]
        return j - i, float(exponentials[members[i:j]].sum())

    def share(self, selector: Selector) -> float:
        """The selected users' share of all requests (activity)."""
        _, cum, i, j = self._range(selector)
        return float(cum[j] - cum[i])

    def mirror_percent(self, mirrors: tuple) -> np.ndarray:
        """Per user, the percent of its requests to the stable Service that are copied: the
        first mirror route whose match selects the user's segments (``None``: every user)."""
        found = self._mirrors.get(mirrors)
        if found is None:
            found = np.zeros(self.n)
            assigned = np.zeros(self.n, dtype=bool)
            for percent, segments in mirrors:
                mask = np.ones(self.n, dtype=bool) if segments is None else self._mask(segments)
                found[mask & ~assigned] = percent
                assigned |= mask
            if len(self._mirrors) > 64:
                self._mirrors.clear()
            self._mirrors[mirrors] = found
        return found

    def mean_over(self, values: np.ndarray, selector: Selector) -> float:
        """The activity-weighted mean of a per-user value over the selected users."""
        members, cum, i, j = self._range(selector)
        if j <= i or cum[j] - cum[i] <= 0:
            return 0.0
        chosen = members[i:j]
        return float(self.users.activity[chosen] @ values[chosen] / (cum[j] - cum[i]))

    def cell_share(self, key) -> float:
        return self.share((key, "bucket", 0.0, 100.0))

    def draw(self, rng: np.random.Generator, k: int, selector: Selector) -> np.ndarray:
        """Users of ``k`` requests from the selection, each ∝ activity (with repeats, adjacent,
        or each hit user once when ``k`` is large: only who was hit matters to the callers)."""
        _, _, i, j = self._range(selector)
        return self._draw_range(rng, k, selector[:2], i, j).users

    def draw_counts(self, rng: np.random.Generator, k: int, selector: Selector):
        """``draw`` with each returned user's number of requests (the same random numbers:
        the users are ``draw``'s; their counts sum to ``k``)."""
        drawn = self.draw_positions(rng, k, selector)
        return drawn.users, drawn.counts

    def draw_positions(self, rng: np.random.Generator, k: int, selector: Selector) -> Drawn:
        """``draw_counts`` with the users not yet gathered (most draws are only counted)."""
        _, _, i, j = self._range(selector)
        order = selector[1]
        if is_each(order) and k > 0 and i < j:
            users, counts = draw_each(rng, k, self._group(*selector[:2])[0][i:j])
            return Drawn(users, np.arange(users.size), counts)
        return self._draw_range(rng, k, selector[:2], i, j)

    def draw_users(self, rng: np.random.Generator, k: int, selector: Selector) -> Drawn:
        """``draw_positions`` where only who was hit matters (users exposed, bad answers that
        hurt nobody): each user once, with no counts (``multinomial_users``: no Poisson count
        per user hit)."""
        _, _, i, j = self._range(selector)
        if is_each(selector[1]) or j <= i or k <= _PER_USER_DRAW * (j - i):
            return self.draw_positions(rng, k, selector)
        (key, order), (members, _, cum) = selector[:2], self._group(*selector[:2])
        hit = multinomial_users(
            rng,
            k,
            lambda a, b: self._sorted_activity(key, order, i + a, i + b),
            j - i,
            float(cum[j] - cum[i]),
            lambda m: self._picks(rng, m, (key, order), i, j) - i,
            _CHUNK,
        )
        return Drawn(members, hit + i if i else hit, _ones(hit.size), ascending=True)

    def _draw_range(self, rng, k: int, group_key, i: int, j: int) -> Drawn:
        members = self._group(*group_key)[0]
        if k <= 0 or j <= i:
            return Drawn(members, np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64), True)
        if k > _PER_USER_DRAW * (j - i):  # per user is cheaper than k lookups
            hit, counts = self._hits(rng, k, group_key, i, j)
            return Drawn(members, hit + i if i else hit, counts)  # (positions in the group)
        picks = self._picks(rng, k, group_key, i, j)
        return Drawn(members, picks, _ones(k), ascending=True)

    def _picks(self, rng, k: int, group_key, i: int, j: int) -> np.ndarray:
        """Positions in the group of k draws ∝ activity from [i, j), in ascending order."""
        _, _, cum = self._group(*group_key)
        u = sorted_uniforms(rng, k)  # sorted: the lookups walk the tables in order
        u *= cum[j] - cum[i]
        if i:  # (cum[0] is 0: adding it changes no u)
            u += cum[i]
        picks = self._locate(group_key, u)
        if i > 0 or j < cum.size - 1:  # a rounded u may fall just outside a part of the group
            np.minimum(np.maximum(picks, i, out=picks), j - 1, out=picks)  # (np.clip's value)
        return picks

    def _hits(self, rng, k: int, group_key, i: int, j: int):
        """Multinomial(k, activity) over [i, j) per user: (positions from i, counts)."""
        weights = self._sorted_activity(group_key[0], group_key[1], i, j)
        return multinomial_hits(rng, k, weights, lambda m: self._picks(rng, m, group_key, i, j) - i)

    def _locate(self, group_key, u: np.ndarray) -> np.ndarray:
        """For each u (ascending), the position p with cum[p] <= u < cum[p + 1] (the last one
        for a u rounded up to the total): ``searchsorted`` made O(1) per value by a guide table
        (Chen and Asau's index search), whose bin b points at the position of b·total/bins; a
        few vectorised steps then walk the values past their bin's first user to the exact one.
        Few values: ``searchsorted`` itself (the last p with cum[p] <= u is that p, users with
        no activity stepped over alike; one past the last, for a u rounded up, is lowered)."""
        _, keys, cum = self._group(*group_key)
        size, n_bins = cum.size - 1, _GUIDE_BINS * (cum.size - 1)
        if u.size < _SEARCH_BELOW:
            picks = cum.searchsorted(u, side="right")
            picks -= 1
            return np.minimum(picks, size - 1, out=picks)
        guide = self._guides.get(group_key)
        if guide is None:  # a bucket order's is the population's, as its cells
            guide = self._guides[group_key] = self.users.guide_table(keys.tag, cum, n_bins)
        total = cum[-1]
        bins = (u * (n_bins / total)).astype(np.intp)  # truncated (u >= 0)
        if bins[-1] >= n_bins:  # (ascending: only the last may reach n_bins)
            np.minimum(bins, n_bins - 1, out=bins)
        # every index below is in range, so mode="wrap" never wraps: of ``take``'s index
        # checks it is the cheapest, and ``take`` gathers faster than indexing (issue #17)
        picks = guide.take(bins, mode="wrap").astype(np.intp)
        end = int(u.searchsorted(total))  # u below the total: no walk passes the last
        above = cum[1:]  # above[p] is cum[p + 1], read without adding 1 to every position
        walkers = (above.take(picks[:end], mode="wrap") <= u[:end]).nonzero()[0]
        at, target = picks.take(walkers, mode="wrap"), u.take(walkers, mode="wrap")
        while walkers.size:  # the walkers alone, one step on
            at += 1
            picks[walkers] = at
            on = (above.take(at, mode="wrap") <= target).nonzero()[0]
            walkers, at = walkers.take(on, mode="wrap"), at.take(on, mode="wrap")
            target = target.take(on, mode="wrap")
        picks[end:] = size - 1
        return picks

    def distinct_users(self, draws: list[Drawn]) -> int:
        """How many users the draws hold together: counted by position when they are draws
        of groups that hold no user twice (as a blast radius's cells), else marked."""
        if len(draws) == 1:
            return draws[0].distinct()
        by_group = self._by_group(draws)
        if by_group is not None and _disjoint(by_group):
            return sum(
                _distinct_positions(found, self._group(*group_key)[0].size)
                for group_key, found in by_group.items()
            )
        return int(np.count_nonzero(self.users_mask(draws)))

    def _by_group(self, draws: list[Drawn]) -> dict | None:
        """The draws by their group, {(cell key, order): draws}; None if one is of none (a
        cookie order's ``each``: its joiners)."""
        owners = {id(g[0]): key for key, g in self._groups.items() if not is_each(key[1])}
        found: dict = {}
        for drawn in draws:
            group_key = owners.get(id(drawn.members))
            if group_key is None:
                return None
            found.setdefault(group_key, []).append(drawn)
        return found

    def users_mask(self, draws: list[Drawn] | None) -> np.ndarray:
        """A mask of the users of ``draws``."""
        reached = np.zeros(self.n, dtype=bool)
        for drawn in draws or ():
            reached[drawn.users] = True
        return reached

    def _sorted_activity(self, key, order: str, i: int = 0, j: int | None = None) -> np.ndarray:
        """The group's activity in its order over [i, j): kept for small groups, gathered when
        asked for large ones (only per-user passes ask, reading the range anyway)."""
        members, _, cum = self._group(key, order)
        if is_each(order) or members.size > _CHUNK:
            end = None if j is None else j + 1  # cum[k]: the first k's activity (no n-sized diff)
            return np.diff(cum[i:end]) if is_each(order) else self.users.activity[members[i:j]]
        found = self._activity.get((key, order))
        if found is None:
            found = self._activity[(key, order)] = self.users.activity[members]
        return found[i:j]


def _ones(k: int) -> np.ndarray:
    """k ones as a read-only view of one (``np.broadcast_to``'s array, built in a sixth of
    its instructions)."""
    return np.ndarray((k,), np.int64, _ONE, 0, (0,))


_ONE = np.ones(1, np.int64).tobytes()  # immutable bytes: a view of them is read-only


def _distinct_positions(draws: list[Drawn], size: int) -> int:
    """How many distinct positions draws of one group (of ``size`` users) hold together: of
    ascending draws by binary searches when all but the largest are short, else by marking
    (``np.unique`` of three cost 3.6 ms at 200,000 users, binary searches in two long ones
    2 ms, where a mask costs a tenth of that)."""
    found = [drawn for drawn in draws if drawn.positions.size]
    short = (
        sum(drawn.positions.size for drawn in found)
        - max((drawn.positions.size for drawn in found), default=0)
        < size // 8
    )  # (binary searches of all but the largest)
    if short and all(drawn.ascending for drawn in found):
        return _distinct_union([drawn.positions for drawn in found])
    return int(np.count_nonzero(_position_mask(found, size)))


def _position_mask(draws: list[Drawn], size: int) -> np.ndarray:
    """A mask of the positions, in their group of ``size`` users, that draws hold."""
    mask = np.zeros(size, dtype=bool)
    for drawn in draws:
        mask[drawn.positions] = True
    return mask


def _distinct_union(positions: list[np.ndarray]) -> int:
    """How many distinct values ascending arrays hold together: those of the largest, plus
    each other's not in the ones before it (a binary search each: short ones)."""
    positions = sorted((at for at in positions if at.size), key=len, reverse=True)
    if not positions:
        return 0
    large = positions[0]
    count = 1 + int(np.count_nonzero(large[1:] != large[:-1]))  # one per run
    for n, small in enumerate(positions[1:], start=1):
        first = np.empty(small.size, dtype=bool)  # of each run of the small one
        first[0] = True
        np.not_equal(small[1:], small[:-1], out=first[1:])
        new = small[first]
        for seen in positions[:n]:
            found = np.minimum(seen.searchsorted(new), seen.size - 1)
            new = new[seen.take(found) != new]
        count += new.size
    return count


def _disjoint(groups: dict) -> bool:
    """Whether the groups (cell key, order) hold no user twice: distinct cells of one split
    (the same matched routes and fault segment: ``compute_flows``'s keys), each in one order.
    (``compute_flows`` never makes two keys that differ only in a flag ``_group`` ignores.)"""
    keys = [key for key, _ in groups]
    return len({key[:2] for key in keys}) == 1 and len(set(keys)) == len(keys)


def is_each(order) -> bool:
    """A cookie order's ``each`` range: every user in it sent one request (the joining one)."""
    return isinstance(order, tuple) and len(order) > 2
