"""The baseline ``errorRate``: errors over requests in the window, with its uncertainty.

A ratio of sums (total errors / total requests, never a mean of per-step ratios, which would
weigh a quiet night like the peak). Its standard error is the larger of two: the binomial one
from the counts (exact for independent requests) and the linearised ratio estimator's with
Newey–West weights, which also sees errors that come in bursts or drift over the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.fit.series import Regular, align, newey_west_lags

__all__ = ["ErrorRateFit", "fit_error_rate"]

_Z = 1.959963984540054


@dataclass
class ErrorRateFit:
    """errors/requests over the window, its 95 % interval and the totals behind it."""

    error_rate: float
    ci: tuple[float, float]
    requests: float  # counted requests (rate × step summed)
    errors: float
    points: int
    notes: list[str] = field(default_factory=list)
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per step, for the report


def fit_error_rate(requests: Regular, errors: Regular) -> ErrorRateFit:
    """The error ratio over the steps where both series have data."""
    times, rows, step = align([requests, errors])
    if times.size == 0:
        raise ValueError("errors: no step has data for both requests and errors")
    r, e = rows[0] * step, rows[1] * step
    total_r, total_e = float(r.sum()), float(e.sum())
    if total_r <= 0:
        raise ValueError("requests: no requests in the window")
    notes = []
    if total_e > total_r:
        raise ValueError("errors: more errors than requests (is --errors a subset of --requests?)")
    p = total_e / total_r
    z = e - p * r
    gamma = float(z @ z)
    for lag in range(1, newey_west_lags(z.size) + 1):
        gamma += 2.0 * (1.0 - lag / (newey_west_lags(z.size) + 1.0)) * float(z[lag:] @ z[:-lag])
    se_ratio = math.sqrt(max(gamma, 0.0)) / total_r
    se_binomial = math.sqrt(max(p * (1.0 - p), 0.25 / total_r**2) / total_r)
    se = max(se_ratio, se_binomial)
    if se_ratio > 1.5 * se_binomial:
        notes.append(
            f"errors: the error ratio varies {se_ratio / se_binomial:.1f}× more than chance"
            " (bursts or drift): its interval is the wider, time-series one"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(r > 0, e / np.where(r > 0, r, 1.0), np.nan)
    ci = (max(0.0, p - _Z * se), min(1.0, p + _Z * se))
    return ErrorRateFit(p, ci, total_r, total_e, int(times.size), notes, times, ratio)
