"""Baseline latency from a Prometheus histogram: a lognormal by maximum likelihood on the
binned counts, or the empirical distribution when the lognormal fits badly.

Each bucket series (label ``le``) is either a per-second rate (``sum by (le) (rate(..._bucket
[5m]))``) or the raw cumulative counter (told apart by monotonicity, resets handled, in
sim/fit/series.py); both become counts per bucket over the window. A request in bucket
(le₋, le] is only known to lie in that interval, so the likelihood is interval-censored:
Σ nᵢ·log(Φ(zᵢ) − Φ(zᵢ₋₁)), zᵢ = (log leᵢ − μ)/σ, maximised by scipy.optimize. Its standard
errors come from the observed information (the inverse Hessian). The fit is judged by the
largest gap between the fitted and the observed cdf at the bucket bounds (a KS distance on the
bins): with millions of requests any test would reject a good model, the size of the gap says
whether it matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.fit.responses import Matrix, Source
from sim.fit.series import align, is_counter, regular

__all__ = ["EMPIRICAL_POINTS", "LatencyFit", "bucket_counts", "fit_latency"]

EMPIRICAL_POINTS = 200
_Z = 1.959963984540054


@dataclass
class LatencyFit:
    """The fitted latency, how well the lognormal matches the buckets, and the data."""

    form: str  # "lognormal" or "empirical"
    median: float
    sigma: float
    ci: dict[str, tuple[float, float]]
    distance: float  # max |F_fit − F_obs| over the finite bucket bounds
    g_p: float  # likelihood-ratio (G) test p-value, for the record
    total: float
    bounds: np.ndarray  # finite le, increasing
    observed_cdf: np.ndarray  # at bounds
    empirical: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        from scipy import special

        with np.errstate(divide="ignore"):
            z = (np.log(np.maximum(x, 1e-300)) - math.log(self.median)) / max(self.sigma, 1e-12)
        return special.ndtr(z)


def _le(value: str, source: Source) -> float:
    try:
        le = float(value)
    except ValueError:
        raise ValueError(f"{source.where}: le={value[:20]!r} is not a bucket bound") from None
    if not le > 0 or math.isnan(le):
        raise ValueError(f"{source.where}: le={value[:20]!r}: a latency bound must be > 0")
    return le


def bucket_counts(matrix: Matrix) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
    """(bounds with +Inf last, cumulative counts, notes, exact) from the bucket series."""
    groups: dict[float, list] = {}
    for s in matrix.series:
        if "le" not in s.labels:
            raise ValueError(
                f"{matrix.source.where}: a series has no le label (query sum by (le) (...))"
            )
        groups.setdefault(_le(s.labels["le"], matrix.source), []).append(s)
    bounds = np.array(sorted(groups))
    if not np.isinf(bounds[-1]):
        raise ValueError(f'{matrix.source.where}: no le="+Inf" bucket, so the total is unknown')
    if bounds.size < 3:
        raise ValueError(f"{matrix.source.where}: {bounds.size} buckets; a fit needs at least 3")
    notes: list[str] = []
    # the +Inf bucket (every request) decides for all: a bucket few requests reach may stay
    # flat for hours, which alone would not read as a counter
    exact = all(is_counter(s.values) for s in groups[math.inf])
    parts = [
        regular(Matrix(groups[le], matrix.source), f"latency le={le:g}", counter=exact)
        for le in bounds
    ]
    resets = max(sum("reset" in n for n in p.notes) for p in parts)
    gaps = [n for n in parts[-1].notes if "no data" in n or "NaN" in n]
    notes += [n.replace("le=inf", 'le="+Inf"') for n in gaps]
    _, rows, step = align(parts)
    if rows.shape[1] == 0:
        raise ValueError(f"{matrix.source.where}: no step has data in every bucket")
    if exact:
        said = "latency: raw cumulative bucket counters, differenced (exact counts)"
        notes.append(said + (", counter resets handled" if resets else ""))
    else:
        notes.append(
            "latency: bucket rates × step read as counts (exact when the rate window equals the"
            " step; a longer window makes the intervals too narrow by √(window/step))"
        )
    cumulative = rows.sum(axis=1) * step
    fixed = np.maximum.accumulate(cumulative)
    if np.any(fixed - cumulative > 1e-3 * max(fixed[-1], 1.0)):
        notes.append("latency: the buckets were not cumulative in le at places: made monotone")
    return bounds, fixed, notes, exact


def _loglik(params: np.ndarray, logb: np.ndarray, counts: np.ndarray) -> float:
    from scipy import special

    mu, log_sigma = params
    z = (logb - mu) / math.exp(log_sigma)
    cdf = np.concatenate(([0.0], special.ndtr(z), [1.0]))
    sf = np.concatenate(([1.0], special.ndtr(-z), [0.0]))
    # the difference of cdfs below the median, of survivals above it: no cancellation in tails
    p = np.where(np.arange(cdf.size - 1) < np.searchsorted(z, 0.0), np.diff(cdf), -np.diff(sf))
    return float(np.sum(counts * np.log(np.maximum(p, 1e-300))))


def _hessian(f, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    k = x.size
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            out[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4 * h * h
            )
    return out


def fit_latency(matrix: Matrix, *, tolerance: float = 0.02) -> LatencyFit:
    """Fit the bucket series of ``matrix``; ``tolerance`` bounds the cdf gap of a lognormal."""
    from scipy import optimize, stats

    bounds, cumulative, notes, _ = bucket_counts(matrix)
    total = float(cumulative[-1])
    if total <= 0:
        raise ValueError(f"{matrix.source.where}: no requests in the histogram's window")
    counts = np.diff(np.concatenate(([0.0], cumulative)))
    finite = bounds[:-1]
    logb = np.log(finite)
    f_obs = cumulative[:-1] / total
    # start from the observed median and quartile spread (interpolated in log le)
    mu0 = float(np.interp(0.5, f_obs, logb))
    spread = float(np.interp(0.75, f_obs, logb) - np.interp(0.25, f_obs, logb))
    x0 = np.array([mu0, math.log(max(spread / 1.349, 0.05))])
    fun = lambda x: -_loglik(x, logb, counts)  # noqa: E731 - one expression
    best = optimize.minimize(fun, x0, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-9})
    mu, log_sigma = (float(v) for v in best.x)
    try:
        cov = np.linalg.inv(_hessian(fun, best.x))
        se_mu, se_ls = (math.sqrt(max(cov[i, i], 0.0)) for i in (0, 1))
    except np.linalg.LinAlgError:
        se_mu = se_ls = math.inf
    sigma = math.exp(log_sigma)
    fit = LatencyFit(
        form="lognormal",
        median=math.exp(mu),
        sigma=sigma,
        ci={
            "median": (math.exp(mu - _Z * se_mu), math.exp(mu + _Z * se_mu)),
            "sigma": (math.exp(log_sigma - _Z * se_ls), math.exp(log_sigma + _Z * se_ls)),
        },
        distance=0.0,
        g_p=math.nan,
        total=total,
        bounds=finite,
        observed_cdf=f_obs,
        notes=notes,
    )
    f_fit = fit.cdf(finite)
    fit.distance = float(np.max(np.abs(f_fit - f_obs)))
    p_fit = np.diff(np.concatenate(([0.0], f_fit, [1.0])))
    seen = counts > 0
    g = 2.0 * float(
        np.sum(counts[seen] * np.log(counts[seen] / (total * np.maximum(p_fit[seen], 1e-300))))
    )
    dof = max(int(np.count_nonzero(seen)) - 3, 1)
    fit.g_p = float(stats.chi2.sf(g, dof))
    if fit.distance > tolerance:
        fit.form = "empirical"
        fit.empirical = _empirical(fit, counts)
        notes.append(
            f"latency: the lognormal misses the buckets by up to {fit.distance:.3f} of the cdf"
            f" (> {tolerance:g}): the empirical distribution is written"
        )
    return fit


def _empirical(fit: LatencyFit, counts: np.ndarray) -> list[float]:
    """EMPIRICAL_POINTS values at evenly spaced levels of the observed cdf, log-linear inside a
    bucket (linear in the first); beyond the last finite bound, the lognormal's tail."""
    from scipy import special

    levels = (np.arange(EMPIRICAL_POINTS) + 0.5) / EMPIRICAL_POINTS
    f = np.concatenate(([0.0], fit.observed_cdf))
    b = fit.bounds
    out = []
    last = f[-1]
    f_fit_last = float(fit.cdf(b[-1:])[0])
    for q in levels:
        if q > last:  # slower than every finite bound: the tail of the fit beyond it
            u = f_fit_last + (q - last) / max(1.0 - last, 1e-12) * (1.0 - f_fit_last)
            z = special.ndtri(min(u, 1.0 - 1e-12))
            out.append(max(float(math.exp(math.log(fit.median) + fit.sigma * z)), float(b[-1])))
            continue
        i = int(np.searchsorted(f, q, side="left"))  # q in (f[i-1], f[i]]: bucket i-1
        i = min(max(i, 1), b.size)
        lo_f, hi_f = f[i - 1], f[i]
        frac = (q - lo_f) / (hi_f - lo_f) if hi_f > lo_f else 0.5
        if i == 1:
            out.append(float(b[0] * frac))
        else:
            lo, hi = math.log(b[i - 2]), math.log(b[i - 1])
            out.append(float(math.exp(lo + frac * (hi - lo))))
    return [float(f"{v:.6g}") for v in out]
