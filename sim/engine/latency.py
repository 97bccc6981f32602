"""What a gate reads of a window's latencies: a quantile, or the mean, of n requests of which a
share ``phi`` is served with the fault's latency (m·L + shift, L the baseline's).

Kept apart from the tape (sim/engine/tape.py), which counts requests: these are the two
statistics its windows hand the detectors, exact in law. A quantile is the k-th order statistic,
F⁻¹ of a Beta(k, n−k+1) draw; the mean (Flagger's request-duration on nginx and skipper) is the
requests' latencies drawn and averaged, up to ``EXACT_MEAN`` of them.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["EXACT_MEAN", "mixture_mean", "mixture_ppf"]

EXACT_MEAN = 1 << 16
"""Up to this many requests of a part, its latencies are drawn and summed; above, the sum is
Normal(k·μ, k·σ²) with the baseline's exact moments: the central limit theorem at k > 65,536,
where the sum's skewness is below the distribution's / 256 (a lognormal of σ = 1: under 0.03),
for a cost that does not grow with the rate."""


def mixture_ppf(fault, base, u: float, phi: float) -> float:
    """The u-quantile of the mixture: the baseline's, or the fault's for a share ``phi``."""
    if fault is None or phi <= 0 or not fault.changes_latency:
        return float(base.latency.ppf(u))
    fault_ppf = float(fault.latency_ppf(base, u, np.inf))
    if phi >= 1:
        return fault_ppf
    base_ppf = float(base.latency.ppf(u))
    lo, hi = min(base_ppf, fault_ppf), max(base_ppf, fault_ppf)
    if hi - lo < 1e-12:
        return lo

    def cdf_gap(x: float) -> float:
        mixed = phi * fault.latency_cdf(base, x, np.inf) + (1 - phi) * base.latency.cdf(x)
        return float(mixed) - u

    if cdf_gap(lo) >= 0:  # an atom (a fixed latency) at lo holds the u-quantile: below
        return lo  # lo both CDFs are under u, and brentq needs a change of sign
    from scipy.optimize import brentq  # a slow import, needed only for latency faults

    return float(brentq(cdf_gap, lo, hi))


def mixture_mean(fault, base, n: int, phi: float, rng: np.random.Generator) -> float:
    """The mean latency of n requests: Binomial(n, phi) of them faulted, each m·L + shift."""
    faulted = 0
    if fault is not None and fault.changes_latency and phi > 0:
        faulted = int(rng.binomial(n, min(phi, 1.0)))
    m, shift = fault.latency_scale() if faulted else (1.0, 0.0)
    dist = base.latency
    total = _sum(dist, n - faulted, rng) + m * _sum(dist, faulted, rng) + shift * faulted
    return total / n


def _sum(dist, k: int, rng: np.random.Generator) -> float:
    """The sum of k draws of ``dist`` (see ``EXACT_MEAN``)."""
    if k <= 0:
        return 0.0
    if k <= EXACT_MEAN:
        return float(np.sum(dist.sample(rng, k)))
    return float(rng.normal(k * dist.mean, math.sqrt(k * dist.var)))
