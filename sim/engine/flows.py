"""From the router's state and the serving pods to request flows over the users' cells.

The controller describes routing as two Services and a weight (policies/controller/protocol.py).
Here that picture meets the users: each request comes from a user (∝ activity), belongs to a
cell of the population (matched by a header route or not, in the fault's segment or not), is
sent to the canary Service (always if matched; else with probability w under random routing,
or if the user's sticky bucket is below w), and lands on a pod of that Service's groups
(in proportion to their serving pods). A *flow* is one (cell, Service, version) combination with
its constant share of all requests; the data plane draws counts per flow.

A mirror's copies and a load tester's requests are *shadow* flows to the canary Service: the
canary's metrics (the gates' windows) count them and its pods carry their load, but no user
meets them, so the blast radius, the service's own series (SLO alerts), when the fault began
and whether the candidate is still reached read the users' flows only. Under a cookie route
(session affinity) the users are ranged by their cookie key (sim/engine/affinity.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from policies.controller.protocol import GROUP_VERSION
from sim.engine.affinity import cookie_services
from sim.engine.cells import Selector, UserCells

__all__ = ["Flow", "FlowSet", "RoutingState", "compute_flows", "flow_set"]


class RoutingState(NamedTuple):
    """What the router does right now (after propagation delays). Immutable: a change makes a
    new one (``_replace``); a tuple, so ``flow_set``'s cache hashes and compares it cheaply."""

    weight: float = 0.0  # percent of unmatched requests to the canary Service
    stable: frozenset = frozenset({"stable"})
    canary: frozenset = frozenset({"canary"})
    matched: frozenset = frozenset()  # segments whose requests a match route sends to canary
    dns_from: frozenset | None = None  # stable Service groups before a DNS switch
    dns_start: float = 0.0
    dns_ttl: float = 0.0
    dns_order: tuple = ()  # the clients' order of that switch (``UserCells.dns_order``)
    # session affinity over one piece (sim/engine/affinity.py): (order, lo, W(s), W(e), requests)
    cookie: tuple | None = None
    # mirror routes in order, (percent, segments matched or None for every request): a stable
    # request is copied by the first route it matches; ``load``: synthetic requests per second
    mirrors: tuple = ()
    load: float = 0.0

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
    users: Selector | None = field(compare=False)
    unserved: bool = False  # the Service had no serving pod: every request fails
    # a copy (mirror) or a synthetic request: the canary's metrics see it, no user does
    shadow: bool = False
    rate: float = 0.0  # requests per second on top of ``share`` of the traffic (load tests)
    # the candidate's pod groups behind the Service (a request meets those pods alone)
    pods_of: frozenset = field(default=frozenset(), compare=False)


class FlowSet:
    """The flows of one routing state as the data plane uses them: per-flow arrays built once
    (and, through ``flow_set``, once per worker for every state a run meets again)."""

    __slots__ = (
        "any_faulty",
        "any_unserved",
        "by_slot",
        "canary",
        "canary_idx",
        "canary_rows",
        "canary_users",
        "fault_sets",
        "faulted_rows",
        "faulted_sets",
        "faulted_share",
        "faulty",
        "flows",
        "probabilities",
        "rate",
        "service_canary",
        "shadow",
        "share",
        "stable_idx",
        "unserved",
    )

    def __init__(self, flows: list[Flow]) -> None:
        self.flows = tuple(flows)
        self.share = np.array([f.share for f in flows], dtype=float)
        self.canary = np.array([f.version == "canary" for f in flows], dtype=bool)
        # copies and synthetic requests (``shadow``) reach no user: the blast radius, the
        # service's own series and whether the candidate is reached read users' flows only
        shadow = np.array([f.shadow for f in flows], dtype=bool)
        self.shadow = shadow if shadow.any() else None
        reach = self.canary & ~shadow  # users' requests served by the new version
        self.canary_idx = np.flatnonzero(reach)
        ids = self.canary_idx.tolist()
        # (the blast radius's) contiguous flows, as usual one, as a slice: indexing gives views
        contiguous = bool(ids) and ids[-1] - ids[0] + 1 == len(ids)
        self.canary_rows = slice(ids[0], ids[-1] + 1) if contiguous else self.canary_idx
        self.canary_users = tuple(flows[i].users for i in ids)  # their selectors
        self.stable_idx = np.flatnonzero(~self.canary & ~shadow)
        self.faulty = self.canary & np.array([f.faulty for f in flows], dtype=bool)
        self.any_faulty = bool((self.faulty & ~shadow).any())  # users meet the fault
        self.rate = np.array([f.rate for f in flows], dtype=float) if shadow.any() else None
        self.unserved = np.array([f.unserved for f in flows], dtype=bool)
        self.any_unserved = bool(self.unserved.any())
        # users' requests that meet the fault with pods behind them (sim/engine/fault_arrival.py)
        self.faulted_rows = np.flatnonzero(self.faulty & ~shadow & ~self.unserved)
        self.faulted_share = float(self.share[self.faulted_rows].sum())
        # the faulty rows by the candidate pods behind them, (groups, rows), and the users'
        # faulted share of each: one entry but while two Services hold candidate pods (a
        # Flagger promotion: the canary's and the primary's new ones)
        rows = np.flatnonzero(self.faulty)
        behind = [flows[i].pods_of for i in rows.tolist()]
        groups = list(dict.fromkeys(behind))  # (in the flows' order: the same in every process)
        self.fault_sets: tuple = ()
        self.faulted_sets: tuple = ()
        if len(groups) == 1:
            self.fault_sets = ((groups[0], rows),)
            self.faulted_sets = ((groups[0], self.faulted_share),)
        elif groups:
            self.fault_sets = tuple((g, rows[[b == g for b in behind]]) for g in groups)
            faulted = np.isin(np.arange(len(flows)), self.faulted_rows)
            self.faulted_sets = tuple(
                (g, float(self.share[r[faulted[r]]].sum())) for g, r in self.fault_sets
            )
        self.service_canary = np.array([f.service == "canary" for f in flows], dtype=bool)
        # rows: canary requests, faulty canary requests, stable requests (for the slot series)
        # the seven per-slot series as one matrix over (failed/slow/good, flow) counts; the
        # faulty canary row is weighted by the share of faulty pods afterwards (sim/engine/tape.py)
        users = ~shadow
        by_slot = np.zeros((7, 3, len(flows)))
        by_slot[0], by_slot[1, 0] = self.canary, self.canary
        by_slot[2] = self.faulty
        by_slot[3], by_slot[4, 0] = ~self.canary, ~self.canary
        by_slot[5], by_slot[6, :2] = users, users
        self.by_slot = by_slot.reshape(7, -1)
        # (p, q) -> request probabilities per flow, as tape.py keeps them (``_probabilities``)
        self.probabilities: dict = {}

    def __len__(self) -> int:
        return len(self.flows)


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
            services: list[tuple[str, frozenset, float, Selector | None]] = [
                ("canary", state.canary, to_canary, canary_sel)
            ]
            for groups, part, tag in stable_sets:
                sel: Selector | None = rest_sel
                if len(stable_sets) > 1:  # the requests of the clients that have moved, or not
                    lo, hi = (0.0, moved * 100.0) if tag == "dns_new" else (moved * 100.0, 100.0)
                    sel = (key, state.dns_order, lo, hi)
                    part = cells.share(sel) / a_cell
                services.append(("stable", groups, (1.0 - to_canary) * part, sel))
            if state.cookie is not None and not in_m:  # session affinity: who holds a cookie
                services = cookie_services(state, cells, key, a_cell)
            for service, groups, fraction, sel in services:
                if fraction <= 0 or sel is None:
                    continue
                pods = {g: serving.get(g, 0) for g in groups}
                total = sum(pods.values())
                new = sum(n for g, n in pods.items() if GROUP_VERSION.get(g) == "canary")
                behind = _candidates(groups)
                # nobody to serve: the requests fail on the version the Service is for
                unserved = 1.0 if service == "canary" else 0.0
                new_frac = new / total if total else unserved
                for version, part_v in (("canary", new_frac), ("stable", 1.0 - new_frac)):
                    share = a_cell * fraction * part_v
                    if share > 0:
                        on = behind if version == "canary" else frozenset()
                        flow = Flow(version, service, share, faulty, sel, total == 0, pods_of=on)
                        flows.append(flow)
    if state.mirrors or state.load > 0:
        flows += _shadow_flows(state, serving, cells, flows, fault_segment)
    return flows


def _shadow_flows(state: RoutingState, serving, cells: UserCells, flows, fault_segment):
    """Mirror copies of the users' requests to the stable Service, and synthetic requests, both
    to the canary Service: each copy has its source's fault rule (a segment fault applies to
    copies of that segment's requests), a synthetic request has no user (no segment fault)."""
    pods = {g: serving.get(g, 0) for g in state.canary}
    total = sum(pods.values())
    new = sum(n for g, n in pods.items() if GROUP_VERSION.get(g) == "canary")
    new_frac = new / total if total else 1.0  # nobody serves: they fail on the canary version
    parts = [(v, p) for v, p in (("canary", new_frac), ("stable", 1.0 - new_frac)) if p > 0]
    behind = _candidates(state.canary)
    out: list[Flow] = []
    if state.mirrors:
        percent = cells.mirror_percent(state.mirrors)
        for f in flows:
            if f.service != "stable" or f.users is None:
                continue
            copied = f.share * cells.mean_over(percent, f.users) / 100.0
            for version, part_v in parts:
                if copied * part_v > 0:
                    shadow = Flow(version, "canary", copied * part_v, f.faulty, None, total == 0)
                    out.append(replace(shadow, shadow=True, pods_of=behind))
    if state.load > 0:
        faulty = fault_segment is None
        for version, part_v in parts:
            rate = state.load * part_v
            out.append(Flow(version, "canary", 0.0, faulty, None, total == 0, True, rate, behind))
    return out


def _candidates(groups: frozenset) -> frozenset:
    """The groups of the new version's pods among a Service's."""
    return frozenset(g for g in groups if GROUP_VERSION.get(g) == "canary")


_FLOW_SETS_MAX = 4096


def flow_set(
    state: RoutingState,
    serving: dict[str, int],
    cells: UserCells,
    fault_segment: str | None,
    sticky: bool,
    moved: float = 1.0,
) -> FlowSet:
    """``compute_flows`` as a ``FlowSet``, cached on ``cells``: replications of one run meet
    the same few states (weights, pod counts) again and again. (The pod counts' key is in the
    dict's order, unsorted: ``Pods.serving`` keeps one order; another order of equal counts
    would only build an equal ``FlowSet`` once more.)"""
    key = (state, tuple(serving.items()), fault_segment, sticky, moved)
    found = cells.flow_sets.get(key)
    if found is None:
        if len(cells.flow_sets) >= _FLOW_SETS_MAX:
            cells.flow_sets.clear()
        flows = compute_flows(state, serving, cells, fault_segment, sticky, moved)
        found = cells.flow_sets[key] = FlowSet(flows)
    return found
