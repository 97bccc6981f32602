"""Confidence sequences for a bounded mean by betting: the feasibility half of the selection.

``sim.tune.selection`` declares a candidate feasible (or not) for a constraint when this
interval for the mean of its bounded observations falls below (or above) the limit. It is valid
at every look at once, so the procedure may recompute it after every stage without paying for
the peeking (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables by
betting", JRSSB 86(1)).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["betting_interval"]

_BISECTIONS = 50
_BET_CAP = 0.75  # WSR's c: a bet never risks more than 75 % of the capital


def betting_interval(x, alpha: float, lower: float, upper: float) -> tuple[float, float]:
    """Running intersection of the hedged betting confidence sequence for the mean of ``x``.

    Valid simultaneously for every prefix of ``x`` (so it may be recomputed at every look):
    P(the true mean ever leaves it) ≤ α for i.i.d. (indeed any conditionally-mean-constant)
    observations in [lower, upper]. Waudby-Smith & Ramdas (2023), Theorem 3 with the predictable
    plug-in bets λ_t = √(2 log(2/α) / (σ̂²_{t−1} t log(1 + t))), capped at c/m and c/(1 − m).
    Both capital processes are monotone in m, so the set is an interval found by bisection.
    """
    y = (np.asarray(x, dtype=float) - lower) / (upper - lower)
    if y.size == 0:
        return lower, upper
    if np.any(~np.isfinite(y)) or y.min() < -1e-9 or y.max() > 1 + 1e-9:
        raise ValueError(f"observations outside their bounds [{lower:g}, {upper:g}]")
    y = np.clip(y, 0.0, 1.0)
    t = np.arange(1, y.size + 1, dtype=float)
    mu = (0.5 + np.cumsum(y)) / (t + 1)
    sig2 = (0.25 + np.cumsum((y - mu) ** 2)) / (t + 1)
    prev = np.concatenate(([0.25], sig2[:-1]))
    thr = math.log(2.0 / alpha)
    lam = np.sqrt(2.0 * thr / (prev * t * np.log1p(t)))

    def up(m: float) -> bool:  # capital betting the mean is above m reached 2/α
        bet = np.minimum(lam, _BET_CAP / m)
        return float(np.max(np.cumsum(np.log1p(bet * (y - m))))) >= thr

    def down(m: float) -> bool:  # ... below m
        bet = np.minimum(lam, _BET_CAP / (1.0 - m))
        return float(np.max(np.cumsum(np.log1p(-bet * (y - m))))) >= thr

    lo, hi = 0.0, 1.0  # largest m with up(m): up is monotone (true on [0, a])
    if up(1e-12):
        a, b = 1e-12, 1.0
        for _ in range(_BISECTIONS):
            mid = 0.5 * (a + b)
            a, b = (mid, b) if up(mid) else (a, mid)
        lo = b
    if down(1.0 - 1e-12):
        a, b = 0.0, 1.0 - 1e-12
        for _ in range(_BISECTIONS):
            mid = 0.5 * (a + b)
            a, b = (a, mid) if down(mid) else (mid, b)
        hi = a
    span = upper - lower
    return lower + lo * span, lower + hi * span
