"""When the fault began (``t_fault``): the first user request served by a candidate pod whose
fault is active, as the per-request reference engine has it (DESIGN §5, sim/engine/outcome.py).

Those requests are a Poisson process of rate μ(t) = r(t) · S · a(t): S the share of the traffic
in the users' flows that meet the fault (the candidate's, in the fault's segment, served), a(t)
the share of the serving candidate pods past their onset. Its first point is where ∫μ reaches
one Exp(1) draw E (a stream of its own, so no other number moves), whatever μ turns out to be
later: a draft discarded by a cut is drawn again under the new world, and E stays. Exact, with
no per-request work: the tape keeps ∫μ per piece (``faulted``), and the one piece where the sum
reaches E is inverted (piecewise linear under a constant rate, else a root search).

The moment the users' flows could first meet the fault (their pods' onset) comes earlier when
those requests are sparse: a 1 % canary on a 10 % segment at 20 req/s met its fault at 32 s and
sent its first faulted request at 87 s, and a human's detection is timed from that.

The time is drawn apart from the tape's counts, which hold on average one faulted request
before it (∫μ up to it is E, of mean 1) where the per-request engine has one at it:
``BlastRadius.users_exposed`` counts that request's user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["NO_FAULT", "FaultArrival", "FaultState", "sources"]


@dataclass
class FaultState:
    """The candidate's pods as the fault sees them: per serving pod, when its fault begins."""

    onsets: np.ndarray  # absolute onset time per serving candidate pod (inf: never)
    pods: int  # serving candidate pods (the average is over them)
    groups: tuple = ()  # per pod, its group (the Services behind which it serves)
    _of: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the earliest and latest onsets (inf: no pod), read by every piece under this state
        # (Python's min and max: numpy's of a few times, never NaN, without the call overhead)
        onsets = self.onsets.tolist() if self.pods else [math.inf]
        self.first, self.last = float(min(onsets)), float(max(onsets))

    def of(self, groups: frozenset) -> FaultState:
        """The pods of ``groups`` alone: the ones a Service's requests meet (itself if all)."""
        found = self._of.get(groups)
        if found is None:
            keep = [g in groups for g in self.groups]
            if all(keep):
                found = self
            else:
                mask = np.array(keep, dtype=bool)
                kept = tuple(g for g in self.groups if g in groups)
                found = FaultState(self.onsets[mask], len(kept), kept)
            self._of[groups] = found
        return found


NO_FAULT = FaultState(np.empty(0), 0)
"""The fault state of a release without a fault (its pods' onsets are never read)."""


def sources(fs) -> list[tuple]:
    """(selector, share) of the flows a faulted request may come from."""
    return [(fs.flows[i].users, fs.flows[i].share) for i in fs.faulted_rows.tolist()]


class FaultArrival:
    """One replication's first faulted request: Exp(1) against the pieces' ∫μ, in time order."""

    def __init__(self, traffic, constant_rate: float | None, rng) -> None:
        self.traffic, self.constant_rate, self.rng = traffic, constant_rate, rng
        self.budget: float | None = None  # E, drawn when some piece first holds a faulted request
        self.spent = 0.0  # ∫μ over the pieces committed so far

    def mass(self, fs, starts, ends, fault, dns: tuple | None = None) -> np.ndarray | None:
        """∫μ over each piece (None: no faulted request can come in any). ``dns``: the pieces
        are of a DNS switch (``_served``). Each Service's share over its own pods."""
        total = None
        for groups, share in fs.faulted_sets:
            pods = fault.of(groups)
            if share <= 0 or pods.pods == 0:
                continue
            at = np.clip(pods.onsets[:, None], starts[None, :], ends[None, :])  # (pods, pieces)
            if self.constant_rate is not None and dns is None:
                served = self.constant_rate * (ends[None, :] - at)
            else:
                served = self._served(at, np.broadcast_to(ends, at.shape), dns)
            mass = share * served.sum(axis=0) / pods.pods
            total = mass if total is None else total + mass
        return total

    def _served(self, at: np.ndarray, t: np.ndarray, dns: tuple | None) -> np.ndarray:
        """The users' requests from ``at`` to ``t`` per unit of their share. In a DNS
        switch's piece the share is the piece's mean of the clients moved, m̄, while the moved
        grow as (τ − start)/TTL: ∫ r·(τ − start) dτ / (TTL·m̄)."""
        if dns is None:
            return self.traffic.integral(at, t)
        start, ttl, moved = dns
        return self.traffic.moment(at, t, start) / (ttl * moved)

    def piece_mass(self, block, k: int) -> float:
        """``mass`` of piece k of a block alone (after a cut shortened it)."""
        piece = slice(k, k + 1)
        starts, ends = block.starts[piece], block.ends[piece]
        mass = self.mass(block.flows, starts, ends, block.fault, block.dns)
        return 0.0 if mass is None else mass.item(0)

    def commit(self, block, sel: slice) -> float | None:
        """Count pieces ``sel`` (in time order): the first faulted request's time if it lies in
        them, else None (their ∫μ is spent)."""
        if block.faulted is None:
            return None
        found, self.spent = self._find(block, sel.start, block.faulted[sel].tolist(), self.spent)
        return found

    def peek(self, blocks) -> float | None:
        """The first faulted request's time if the blocks not yet committed hold it."""
        total = self.spent
        for block in blocks:
            if block.faulted is not None:
                found, total = self._find(block, 0, block.faulted.tolist(), total)
                if found is not None:
                    return found
        return None

    def _find(self, block, first: int, masses: list, total: float) -> tuple[float | None, float]:
        """Walk pieces ``first``… of a block on from ∫μ = ``total``: the time where it reaches
        E (or None), and the ∫μ walked to."""
        for i, mass in enumerate(masses):
            if mass <= 0:
                continue
            if self.budget is None:
                self.budget = float(self.rng.standard_exponential())
            if total + mass >= self.budget:
                return self._time(block, first + i, self.budget - total), total + mass
            total += mass
        return None, total

    def _time(self, block, k: int, mass: float) -> float:
        """Where in piece k the ∫μ from its start reaches ``mass``: under a constant rate ∫μ
        is piecewise linear, steeper at each pod's onset (walked exactly); else (a varying
        rate, a DNS switch's clients moving) a root search."""
        start, end = block.starts.item(k), block.ends.item(k)
        sets = block.flows.faulted_sets
        per_pod: float | np.ndarray
        if len(sets) == 1:  # every pod alike: its Service's share over its pods
            pods = block.fault.of(sets[0][0])
            onsets, per_pod = pods.onsets, sets[0][1] / pods.pods
        else:  # each pod its own Service's share over that Service's pods
            parts = [(block.fault.of(g), share) for g, share in sets]
            parts = [(pods, share) for pods, share in parts if pods.pods]
            onsets = np.concatenate([pods.onsets for pods, _ in parts])
            per_pod = np.concatenate([np.full(p.pods, share / p.pods) for p, share in parts])
        clipped = sorted(min(max(o, start), end) for o in onsets.tolist())
        if self.constant_rate is not None and block.dns is None and isinstance(per_pod, float):
            step, at, reached = per_pod * self.constant_rate, clipped[0], 0.0
            for active, onset in enumerate([*clipped[1:], end], start=1):
                gained = step * active * (onset - at)
                if reached + gained >= mass:
                    return min(at + (mass - reached) / (step * active), end)
                reached, at = reached + gained, onset
            return end  # (rounding: the piece's sum reached it at its very end)
        # (weights per pod follow the pods' order: unsorted then)
        bounds = np.array(clipped) if isinstance(per_pod, float) else np.clip(onsets, start, end)

        def left(t: float) -> float:
            at = np.minimum(bounds, t)
            served = self._served(at, np.full(at.shape, t), block.dns)
            if isinstance(per_pod, float):
                return per_pod * float(served.sum()) - mass
            return float((per_pod * served).sum()) - mass

        if left(end) <= 0.0:
            return end
        from scipy.optimize import brentq  # a slow import (0.2 s), needed only here

        return float(brentq(left, start, end, xtol=1e-9, rtol=4 * math.ulp(1.0)))
