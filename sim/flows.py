"""From the router's state and the serving pods to request flows, and whose requests they are.

The controller describes routing as two Services and a weight (policies/controller/protocol.py).
Here that picture meets the users: each request comes from a user (∝ activity), belongs to a
cell of the population (matched by a header route or not, in the fault's segment or not), is
sent to the canary Service (always if matched; else with probability w under random routing,
or if the user's sticky bucket is below w), and lands on a pod of that Service's groups
(in proportion to their serving pods). A *flow* is one (cell, Service, version) combination with
its constant share of all requests; the data plane draws counts per flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from policies.controller.protocol import GROUP_VERSION

__all__ = ["Flow", "RoutingState", "Selector", "UserCells", "compute_flows"]

Selector = tuple  # (cell key, order "bucket"|"dns", lo, hi): users of the cell with key in [lo, hi)


@dataclass(frozen=True)
class RoutingState:
    """What the router does right now (after propagation delays)."""

    weight: float = 0.0  # percent of unmatched requests to the canary Service
    stable: frozenset = frozenset({"stable"})
    canary: frozenset = frozenset({"canary"})
    matched: frozenset = frozenset()  # segments whose requests a match route sends to canary
    dns_from: frozenset | None = None  # stable Service groups before a DNS switch
    dns_start: float = 0.0
    dns_ttl: float = 0.0

    def dns_moved(self, t: float) -> float:
        """Fraction of clients that have moved to the new address at time t."""
        if self.dns_from is None or self.dns_ttl <= 0:
            return 1.0
        return float(np.clip((t - self.dns_start) / self.dns_ttl, 0.0, 1.0))


@dataclass(frozen=True)
class Flow:
    version: str  # "canary" (the new version) or "stable"
    service: str  # "canary" or "stable" Service (for capacity)
    share: float  # fraction of all requests
    faulty: bool  # the candidate's fault applies to these requests (segment rule)
    users: Selector = field(compare=False)
    unserved: bool = False  # the Service had no serving pod: every request fails


class UserCells:
    """The population split by (matched, in fault segment), each cell sorted by sticky bucket
    (and, for DNS switches, by an independent per-client key) with cumulative activity."""

    def __init__(self, users, seed: int = 0) -> None:
        self.users = users
        self.n = users.n
        self._groups: dict = {}
        self._activity: dict = {}
        self._dns_key = np.random.default_rng(seed).random(users.n) * 100.0

    def _mask(self, names: frozenset) -> np.ndarray:
        if not names:
            return np.zeros(self.n, dtype=bool)
        return np.logical_or.reduce([self.users.masks[name] for name in sorted(names)])

    def cell_key(self, matched: frozenset, fault_segment: str | None, in_m: bool, in_f: bool):
        return (matched, fault_segment, in_m, in_f)

    def _group(self, key, order: str):
        cache_key = (key, order)
        group = self._groups.get(cache_key)
        if group is None:
            matched, fault_segment, in_m, in_f = key
            inside = np.ones(self.n, dtype=bool)
            if matched:
                inside &= self._mask(matched) == in_m
            if fault_segment is not None:
                inside &= self.users.masks[fault_segment] == in_f
            keys = self.users.bucket if order == "bucket" else self._dns_key
            members = np.flatnonzero(inside)
            members = members[np.argsort(keys[members], kind="stable")]
            cum = np.concatenate(([0.0], np.cumsum(self.users.activity[members])))
            group = (members, keys[members], cum)
            self._groups[cache_key] = group
        return group

    def _range(self, selector: Selector):
        key, order, lo, hi = selector
        members, keys, cum = self._group(key, order)
        i = 0 if lo <= 0 else int(np.searchsorted(keys, lo, side="left"))
        j = members.size if hi >= 100 else int(np.searchsorted(keys, hi, side="left"))
        return members, cum, i, j

    def share(self, selector: Selector) -> float:
        """The selected users' share of all requests (activity)."""
        _, cum, i, j = self._range(selector)
        return float(cum[j] - cum[i])

    def cell_share(self, key) -> float:
        return self.share((key, "bucket", 0.0, 100.0))

    def draw(self, rng: np.random.Generator, k: int, selector: Selector) -> np.ndarray:
        """Users of ``k`` requests from the selection, each ∝ activity (with repeats, or each
        hit user once when ``k`` is large: only who was hit matters to the callers)."""
        members, cum, i, j = self._range(selector)
        if k <= 0 or j <= i:
            return np.empty(0, dtype=np.intp)
        if k > j - i:  # one multinomial over the selection is cheaper than k binary searches
            key, order = selector[:2]
            weights = self._sorted_activity(key, order)[i:j]
            hits = rng.multinomial(k, weights / weights.sum())
            return members[i:j][hits > 0]
        u = cum[i] + rng.random(k) * (cum[j] - cum[i])
        if k > 64:
            u.sort()  # sorted keys make the binary searches cache-friendly (~5x at 1e5)
        picks = np.searchsorted(cum, u, side="right") - 1
        return members[np.clip(picks, i, j - 1)]

    def exposed(self, rng: np.random.Generator, terms: dict, already: np.ndarray) -> int:
        """How many users were reached: ``already`` plus each user with probability
        1 − e^−λ, λ its intensity from {selector: expected requests}. Drawn per group in the
        group's own order, scattering only the users drawn: independent draws per group
        compose exactly (1 − e^−(λ1+λ2) = 1 − (1 − p1)(1 − p2))."""
        reached = already.copy()
        for (key, order), ranges in self._ranges_by_group(terms).items():
            members, _, _ = self._group(key, order)
            lam = self._sorted_activity(key, order) * self._steps(members.size, ranges)
            live = np.flatnonzero(lam)
            hit = rng.random(live.size) < -np.expm1(-lam[live])
            reached[members[live[hit]]] = True
        return int(np.count_nonzero(reached))

    def _ranges_by_group(self, terms: dict) -> dict:
        by_group: dict = {}
        for selector, expected in terms.items():
            _, cum, i, j = self._range(selector)
            total = cum[j] - cum[i]
            if expected > 0 and total > 0:
                by_group.setdefault(selector[:2], []).append((i, j, expected / total))
        return by_group

    @staticmethod
    def _steps(size: int, ranges) -> np.ndarray:
        """Σ of scale over the ranges [i, j) each position lies in (a step function)."""
        steps = np.zeros(size + 1)
        for i, j, scale in ranges:
            steps[i] += scale
            steps[j] -= scale
        return np.cumsum(steps[:-1])

    def _sorted_activity(self, key, order: str) -> np.ndarray:
        cached = self._activity.get((key, order))
        if cached is None:
            members, _, _ = self._group(key, order)
            cached = self._activity[(key, order)] = self.users.activity[members]
        return cached


def compute_flows(
    state: RoutingState,
    serving: dict[str, int],
    cells: UserCells,
    fault_segment: str | None,
    sticky: bool,
    moved: float = 1.0,
) -> list[Flow]:
    """The flows for this routing state and these serving pods (``moved``: DNS fraction)."""
    matched = state.matched
    m_values = (True, False) if matched else (False,)
    f_values = (True, False) if fault_segment is not None else (True,)
    stable_sets = [(state.stable, moved, "dns_new")]
    if state.dns_from is not None and moved < 1.0:
        stable_sets.append((state.dns_from, 1.0 - moved, "dns_old"))
    flows: list[Flow] = []
    for in_m in m_values:
        for in_f in f_values:
            key = cells.cell_key(matched, fault_segment, in_m, in_f)
            a_cell = cells.cell_share(key)
            if a_cell <= 0:
                continue
            faulty = fault_segment is None or in_f
            w = state.weight / 100.0
            if in_m:
                to_canary, canary_sel = 1.0, (key, "bucket", 0.0, 100.0)
                rest_sel = None
            elif sticky and 0 < w < 1:
                canary_sel = (key, "bucket", 0.0, state.weight)
                rest_sel = (key, "bucket", state.weight, 100.0)
                to_canary = cells.share(canary_sel) / a_cell
            else:
                to_canary = w
                canary_sel = rest_sel = (key, "bucket", 0.0, 100.0)
            services = [("canary", state.canary, to_canary, canary_sel)]
            for groups, part, tag in stable_sets:
                sel = rest_sel
                if tag == "dns_old" or (tag == "dns_new" and len(stable_sets) > 1):
                    lo, hi = (0.0, moved * 100.0) if tag == "dns_new" else (moved * 100.0, 100.0)
                    sel = (key, "dns", lo, hi)
                services.append(("stable", groups, (1.0 - to_canary) * part, sel))
            for service, groups, fraction, sel in services:
                if fraction <= 0 or sel is None:
                    continue
                pods = {g: serving.get(g, 0) for g in groups}
                total = sum(pods.values())
                new = sum(n for g, n in pods.items() if GROUP_VERSION.get(g) == "canary")
                # nobody to serve: the requests fail on the version the Service is for
                unserved = 1.0 if service == "canary" else 0.0
                new_frac = new / total if total else unserved
                for version, part_v in (("canary", new_frac), ("stable", 1.0 - new_frac)):
                    share = a_cell * fraction * part_v
                    if share > 0:
                        flows.append(Flow(version, service, share, faulty, sel, total == 0))
    return flows
