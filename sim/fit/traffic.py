"""The traffic profile by harmonic regression: a daily cosine when it fits, else a trace.

The world's ``diurnal`` rate is one cosine a day, mean·(1 + amplitude·cos(2π(t − peakAt)/1d))
(sim/world/rates.py), in profile time = seconds since 00:00 UTC of the window's first day (for
a period that does not divide a day, 00:00 UTC of another day is another phase, and the epoch
itself millions of periods away, where a rounded period loses the phase). Three fits of
the per-second rate say whether that is enough:

* **cosine**: a constant and the first daily harmonic — the ``diurnal`` form;
* **daily**: the first ``DAILY_HARMONICS`` daily harmonics — the day's real shape;
* **weekly**: the daily fit plus three weekly harmonics, tried when the window spans a week.

The weekly terms count when they are both significant (F test, p < 0.001) and large (their
RMS ≥ 3 % of the mean); the daily shape counts when the cosine is more than ``tolerance``
(RMS, relative to the mean) away from it. Either way the profile is written as a per-minute
trace of the observed rate folded over the day (or week, from Monday 00:00 UTC), gaps filled
from the harmonic fit. Standard errors are Newey–West (the samples of ``rate(x[5m])`` overlap
and so are correlated), carried to amplitude and peak by the delta method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.fit.series import Regular, newey_west_lags

__all__ = [
    "DAILY_HARMONICS",
    "TrafficFit",
    "fit_traffic",
    "hac_covariance",
    "trace_counts",
]

DAILY_HARMONICS = 6
WEEKLY_P = 1e-3
WEEKLY_SIZE = 0.03
_Z = 1.959963984540054
_MONDAY = 4 * 86400.0  # epoch 0 was a Thursday: the week's profile starts on Monday 00:00 UTC
_DAY = 86400.0


@dataclass
class TrafficFit:
    """The fitted profile, its uncertainty, how well each form fits, and the decision."""

    form: str  # "diurnal" or "trace"
    mean: float
    amplitude: float
    peak_at: float  # seconds into the period, from ``origin``
    period: float
    ci: dict[str, tuple[float, float]]
    r2_cosine: float
    r2_daily: float
    profile_error: float  # RMS(cosine − daily)/mean over the period
    weekly: bool
    weekly_p: float | None
    weekly_size: float | None
    points: int
    step: float
    notes: list[str] = field(default_factory=list)
    origin: float = 0.0  # 00:00 UTC of the window's first day (epoch seconds): profile time 0
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sample times (centres)
    observed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cosine: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shape: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the richest fit kept
    _coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _terms: list[tuple[float, int]] = field(default_factory=list)

    def rich(self, t: np.ndarray) -> np.ndarray:
        """The richest fit kept (daily harmonics, plus weekly if shown) at epoch times ``t``."""
        return _design(t - self.origin, self._terms) @ self._coef


def _design(t: np.ndarray, terms: list[tuple[float, int]]) -> np.ndarray:
    """Columns 1, then cos and sin of 2πk·t/period for each (period, k)."""
    cols = [np.ones_like(t)]
    for period, k in terms:
        w = 2.0 * math.pi * k / period
        cols += [np.cos(w * t), np.sin(w * t)]
    return np.column_stack(cols)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    return coef, resid, float(resid @ resid)


def hac_covariance(x: np.ndarray, resid: np.ndarray, lags: int) -> np.ndarray:
    """Newey–West covariance of OLS coefficients (Bartlett weights up to ``lags``)."""
    bread = np.linalg.pinv(x.T @ x)
    u = x * resid[:, None]
    meat = u.T @ u
    for lag in range(1, lags + 1):
        w = 1.0 - lag / (lags + 1.0)
        g = u[lag:].T @ u[:-lag]
        meat += w * (g + g.T)
    n, k = x.shape
    return bread @ meat @ bread * (n / max(n - k, 1))


def _f_test(rss0: float, rss1: float, extra: int, n: int, k1: int) -> float:
    from scipy import stats

    if rss1 <= 0 or n <= k1:
        return 0.0
    f = ((rss0 - rss1) / extra) / (rss1 / (n - k1))
    return float(stats.f.sf(f, extra, n - k1))


def fit_traffic(data: Regular, *, period: float = 86400.0, tolerance: float = 0.05) -> TrafficFit:
    """Fit the profile of a per-second rate series; ``tolerance`` bounds the cosine's error."""
    ok = data.valid
    # a rate sample at t covers (t − step, t]: it is the rate at the middle of that step
    epoch = data.times[ok] - data.step / 2.0
    y = data.values[ok]
    n = y.size
    notes = [f"traffic: each sample read as the rate over the step before it ({data.step:g} s)"]
    if n < 8:
        raise ValueError(f"traffic: {n} samples with data; a profile needs at least 8")
    origin = math.floor(float(epoch[0]) / _DAY) * _DAY
    t = epoch - origin  # profile time: the phase is read from 00:00 UTC of the first day
    span = float(t[-1] - t[0]) + data.step
    if span < 0.9 * period:
        notes.append(
            f"traffic: the window ({span / 3600:.3g} h) is shorter than one period"
            f" ({period / 3600:.3g} h): the cosine is extrapolated"
        )
    cos_terms = [(period, 1)]
    x1 = _design(t, cos_terms)
    coef1, resid1, rss1 = _ols(x1, y)
    tss = float(((y - y.mean()) ** 2).sum())
    k_daily = max(1, min(DAILY_HARMONICS, int(period / (2.0 * data.step)) - 1, (n - 2) // 4))
    daily_terms = [(period, k) for k in range(1, k_daily + 1)]
    xd = _design(t, daily_terms)
    coefd, _, rssd = _ols(xd, y)
    terms, coef, weekly, weekly_p, weekly_size = daily_terms, coefd, False, None, None
    week = 7.0 * period
    if span >= 0.95 * week and n > xd.shape[1] + 12:
        week_terms = daily_terms + [(week, j) for j in (1, 2, 3)]
        xw = _design(t, week_terms)
        coefw, _, rssw = _ols(xw, y)
        weekly_p = _f_test(rssd, rssw, 6, n, xw.shape[1])
        part = xw[:, xd.shape[1] :] @ coefw[xd.shape[1] :]
        weekly_size = float(np.sqrt(np.mean(part**2)) / max(coefw[0], 1e-12))
        weekly = weekly_p < WEEKLY_P and weekly_size >= WEEKLY_SIZE
        if weekly:
            terms, coef = week_terms, coefw
    elif span < 0.95 * week:
        notes.append("traffic: the window is shorter than a week: no weekly pattern was tried")
    mean, a, b = (float(v) for v in coef1)
    if mean <= 0:
        raise ValueError("traffic: the mean rate is not positive (no requests in the window)")
    r = math.hypot(a, b)
    amplitude = r / mean
    w = 2.0 * math.pi / period
    peak = (math.atan2(b, a) / w) % period
    cov = hac_covariance(x1, resid1, newey_west_lags(n))
    ci = _intervals(mean, a, b, cov, w, period)
    grid = np.linspace(0.0, period, 721)[:-1] + (t[0] // period) * period
    cos_grid = _design(grid, cos_terms) @ coef1
    daily_grid = _design(grid, daily_terms) @ coefd
    profile_error = float(np.sqrt(np.mean((cos_grid - daily_grid) ** 2)) / mean)
    form = "diurnal" if (profile_error <= tolerance and not weekly) else "trace"
    if amplitude > 1.0:
        notes.append(
            f"traffic: the cosine's amplitude {amplitude:.3f} is above 1 (the rate would"
            " go negative): the observed profile is written as a trace"
        )
        form = "trace"
    if form == "trace" and (period % 60 or period < 60):
        notes.append("traffic: a trace needs a period of whole minutes: the cosine is written")
        form = "diurnal"
    return TrafficFit(
        form=form,
        mean=mean,
        amplitude=min(amplitude, 1.0),
        peak_at=peak,
        period=period,
        ci=ci,
        r2_cosine=1.0 - rss1 / tss if tss > 0 else 1.0,
        r2_daily=1.0 - rssd / tss if tss > 0 else 1.0,
        profile_error=profile_error,
        weekly=weekly,
        weekly_p=weekly_p,
        weekly_size=weekly_size,
        points=n,
        step=data.step,
        notes=notes,
        origin=origin,
        times=epoch,
        observed=y,
        cosine=x1 @ coef1,
        shape=_design(t, terms) @ coef,
        _coef=coef,
        _terms=terms,
    )


def _intervals(mean, a, b, cov, w, period) -> dict[str, tuple[float, float]]:
    """95 % intervals for mean, amplitude and peakAt (delta method on the cosine's a, b)."""
    r = math.hypot(a, b) or 1e-300
    amp = r / mean
    g_amp = np.array([-amp / mean, a / (r * mean), b / (r * mean)])
    g_peak = np.array([0.0, -b / r**2, a / r**2]) / w
    se_mean = math.sqrt(max(cov[0, 0], 0.0))
    se_amp = math.sqrt(max(float(g_amp @ cov @ g_amp), 0.0))
    se_peak = math.sqrt(max(float(g_peak @ cov @ g_peak), 0.0))
    peak = (math.atan2(b, a) / w) % period
    return {
        "mean": (mean - _Z * se_mean, mean + _Z * se_mean),
        "amplitude": (max(0.0, amp - _Z * se_amp), amp + _Z * se_amp),
        "peakAt": (peak - _Z * min(se_peak, period / 2), peak + _Z * min(se_peak, period / 2)),
    }


def trace_counts(fit: TrafficFit, step: float) -> tuple[list[float], float]:
    """Per-minute counts of the observed profile folded over the day (or the week from Monday
    00:00 UTC), each sample spread over the minutes of its step, minutes without data filled
    from the fit; and the trace's length in seconds."""
    length = 7.0 * fit.period if fit.weekly else fit.period
    origin = _MONDAY if fit.weekly and fit.period == _DAY else fit.origin
    minutes = int(length // 60)
    parts = max(1, round(step / 60.0))
    offsets = ((np.arange(parts) + 0.5) / parts - 0.5) * step
    tau = np.mod((fit.times[:, None] + offsets[None, :]).ravel() - origin, length)
    slot = np.minimum((tau // 60).astype(int), minutes - 1)
    values = np.repeat(fit.observed, parts)
    total = np.bincount(slot, weights=values, minlength=minutes)
    count = np.bincount(slot, minlength=minutes)
    filled = fit.rich(origin + 60.0 * np.arange(minutes) + 30.0)
    rate = np.where(count > 0, total / np.maximum(count, 1), filled)
    return [round(max(float(v), 0.0) * 60.0, 3) for v in rate], length
