"""What the candidate's fault does to a piece's requests: the share served by a pod past its
onset, and their failure and slow probabilities.

A piece is drawn under one world state, but a pod's fault may begin inside it. Its requests
before the onset see the baseline, those after it the fault (or, with ``growth``, a ramp from
the baseline up to it). Those are counted in requests, not seconds: where the rate varies inside
the piece (a step, a diurnal slope) a time average miscounts them (a fault starting as the rate
steps from 20 to 100 req/s, 40 s into a 60 s piece, meets 2000 of its 2400 requests, not two
thirds). A load tester's requests come at a constant rate: theirs are time averages.

A request meets the pods of the Service it is sent to, as the per-request reference picks one.
While two Services hold candidate pods (a Flagger promotion: the canary's, whose fault has grown
for a while, and the primary's new ones), each Service's flows average over its own pods
(``FlowSet.fault_sets``), not over all of them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

__all__ = ["CandidateFault", "Part", "onset_shares"]


def onset_shares(fault, rate, starts: np.ndarray, ends: np.ndarray, onsets: np.ndarray):
    """Per pod and piece, (pods, pieces) each: the share of the piece's requests served after
    the pod's onset, and the mean of the fault's ramp (0 before onset, 1 once grown) over them;
    the two are the same without ``growth``. ``rate``: the traffic's profile, None for
    requests spread evenly over time."""
    s, e = starts[None, :], ends[None, :]
    o = np.minimum(onsets[:, None], e)  # (an onset after the piece, or never: none touched)
    lo = np.maximum(o, s)
    growth = None if fault.growth is None else fault.growth.duration
    hi = e if growth is None else np.clip(o + growth, s, e)
    if rate is None:
        width = e - s
        after = (e - lo) / width
        if growth is None:
            return after, after
        rising = (hi - lo) * (0.5 * (hi + lo) - o) / growth
        return after, (rising + e - hi) / width
    total = rate.integral(s, e)
    some = total > 0  # (a piece with no requests keeps the time average: nothing to weight)
    even = onset_shares(fault, None, starts, ends, onsets) if not some.all() else None
    safe = np.where(some, total, 1.0)
    after = rate.integral(lo, np.broadcast_to(e, lo.shape)) / safe
    if growth is None:
        ramp = after
    else:
        rising = rate.moment(lo, hi, o) / growth
        ramp = (rising + rate.integral(hi, np.broadcast_to(e, hi.shape))) / safe
    if even is not None:
        after, ramp = np.where(some, after, even[0]), np.where(some, ramp, even[1])
    return np.clip(after, 0.0, 1.0), np.clip(ramp, 0.0, 1.0)


class Part(NamedTuple):
    """The faulty flows behind one Service over a draft's pieces."""

    rows: np.ndarray | None  # their rows (None: every faulty flow)
    on: bool | None  # the fault nowhere, everywhere throughout, or varying (None)
    shares: Any  # where it varies, the pods' ``onset_shares`` (after, ramp); else None
    state: object  # their pods (a ``FaultState``)


_NOWHERE, _THROUGHOUT = [Part(None, False, None, None)], [Part(None, True, None, None)]


class CandidateFault:
    """The candidate's fault over pieces, for one tape. ``profile``: the traffic (None under a
    constant rate); p/q: the baseline's and the fault's failure and slow probabilities."""

    def __init__(self, fault, profile, p0: float, q0: float, p1: float, q1: float) -> None:
        self.fault, self.profile = fault, profile
        self.p0, self.q0, self.p1, self.q1 = p0, q0, p1, q1
        # the error rate once the fault has grown (p1 is at onset: the same without growth)
        grown = math.nan if fault is None else fault.failure_probability(p0, math.inf)
        self.p_grown = float(grown)

    def on(self, start: float, end: float, state) -> bool | None:
        """Whether the fault is on in pieces from ``start`` to ``end``: False (nowhere), True
        (in full, on every pod, throughout) or None (it varies)."""
        f = self.fault
        if f is None or state.pods == 0 or state.first >= end:
            return False
        if f.growth is None and state.last <= start:
            return True
        return None

    def parts(self, fs, starts: np.ndarray, ends: np.ndarray, state) -> list[Part]:
        """The faulty flows of ``fs`` by the pods behind them: one part unless two Services
        hold candidate pods whose faults differ over the pieces."""
        start, end = starts.item(0), ends.item(-1)
        on = self.on(start, end, state)
        if on is not None:  # (the most common: one part, its pods not read)
            return _THROUGHOUT if on else _NOWHERE
        sets = fs.fault_sets
        if len(sets) < 2 and (not sets or state.of(sets[0][0]) is state):
            return [self._part(None, on, starts, ends, state)]
        out = []
        for groups, rows in sets:
            pods = state.of(groups)
            out.append(self._part(rows, self.on(start, end, pods), starts, ends, pods))
        return out

    def _part(self, rows, on, starts, ends, state) -> Part:
        shares = None if on is not None else self._shares(self.profile, starts, ends, state)
        return Part(rows, on, shares, state)

    def _shares(self, profile, starts, ends, state) -> tuple:
        return onset_shares(self.fault, profile, starts, ends, state.onsets)

    def probabilities(self, part: Part):
        """Mean failure and slow probabilities of a part's requests per piece (scalars when
        the same throughout)."""
        if part.on is not None:
            return (self.p1, self.q1) if part.on else (self.p0, self.q0)
        return self._mean(*part.shares)

    def _mean(self, after, ramp):
        """Over requests of ``onset_shares`` (after, ramp): the error rate ramps, the latency
        steps at onset."""
        p = self.p0 + (self.p_grown - self.p0) * ramp.mean(axis=0)
        return p, self.q0 + (self.q1 - self.q0) * after.mean(axis=0)

    def per_flow(self, fs, parts: list[Part], starts, ends) -> tuple[np.ndarray, np.ndarray]:
        """Failure and slow probabilities per flow and piece, (flows, 1 or pieces) each."""
        if len(parts) == 1:
            p_c, q_c = self.probabilities(parts[0])
            p = np.where(fs.faulty[:, None], p_c, self.p0)
            q = np.where(fs.faulty[:, None], q_c, self.q0)
        else:
            shape = (len(fs), starts.size)
            p, q = np.full(shape, self.p0), np.full(shape, self.q0)
            for part in parts:
                p[part.rows], q[part.rows] = self.probabilities(part)
        if fs.rate is not None and self.profile is not None:
            # a load tester's requests come evenly over time: theirs are time averages
            tester = fs.faulty & (fs.rate > 0)
            for part in parts:
                rows = tester
                if part.rows is not None:  # its own flows only
                    rows = np.zeros_like(tester)
                    rows[part.rows] = tester[part.rows]
                if part.on is None and rows.any():
                    even = self._mean(*self._shares(None, starts, ends, part.state))
                    p[rows], q[rows] = even
        return p, q

    def phi(self, fs, parts: list[Part]):
        """Per piece, the share of the candidate's requests whose pod's fault is active: a
        float when the same in every piece (0 or 1), else per piece; per part, [(rows, that)]
        when there are several."""
        if not fs.any_faulty and (fs.shadow is None or not fs.faulty.any()):
            return 0.0  # not even copies meet the fault
        shares = [p.shares[0].mean(axis=0) if p.on is None else float(p.on) for p in parts]
        return shares[0] if len(parts) == 1 else [(p.rows, x) for p, x in zip(parts, shares)]
