"""How much of a piece's requests each candidate pod's fault touches, in requests, not seconds.

A piece is drawn under one world state, but a pod's fault may begin inside it. Its requests
before the onset see the baseline, those after it the fault (or, with ``growth``, a ramp from
the baseline up to it). Where the rate varies inside the piece (a step, a diurnal slope) a time
average miscounts them: a fault starting as the rate steps from 20 to 100 req/s, 40 s into a
60 s piece, meets 2000 of its 2400 requests, not two thirds. A load tester's requests come at
a constant rate: theirs are the time averages (``rate=None``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["onset_shares"]


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
