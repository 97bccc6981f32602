"""Sample telemetry for ``rolloutsim fit``: a week of a service's Prometheus answers, made.

Run ``python scenarios/telemetry/make.py`` to rewrite the files beside it (deterministic: a
fixed seed). The truth, which `fit` should recover within its stated intervals:

* requests: diurnal, mean 800 req/s, amplitude 0.6, peak at 14:00 UTC, Poisson counts per
  5-minute step (``sum(rate(http_requests_total[5m]))``), with a 40-minute scrape gap and a
  NaN sample;
* errors: each request fails with probability 0.002 (``sum(rate(...{code=~"5.."}[5m]))``);
* latency: lognormal, median 120 ms, sigma 0.6, as the raw cumulative bucket counters of a
  histogram with Prometheus's default bounds (``sum by (le) (http_request_duration_seconds
  _bucket)``), the process restarted once mid-week (a counter reset);
* releases.csv: 40 past releases, 29 good, 7 rolled back (about 5 % errors), 4 incidents
  (about 1 % errors and slower).

The functions are also the tests' generator of synthetic responses (tests/test_fit*.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

START = 1_793_577_600.0  # 2026-11-02T00:00:00Z, a Monday
STEP = 300.0
DAY = 86400.0
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TRUTH = {
    "mean": 800.0,
    "amplitude": 0.6,
    "peakAt": 14 * 3600.0,
    "errorRate": 0.002,
    "median": 0.120,
    "sigma": 0.6,
}


def diurnal_integral(t0, t1, mean, amplitude, peak, period=DAY):
    """∫ mean·(1 + amplitude·cos(2π(t − peak)/period)) dt over [t0, t1]."""
    k = 2.0 * math.pi / period
    return mean * (t1 - t0) + mean * amplitude / k * (
        np.sin(k * (t1 - peak)) - np.sin(k * (t0 - peak))
    )


def step_counts(rng, times, step, integral):
    """Poisson counts of requests in (t − step, t] for each sample time t."""
    return rng.poisson(integral(times - step, times))


def response(series: list[tuple[dict, np.ndarray, np.ndarray]]) -> dict:
    """A query_range answer: each series (labels, times, values; NaN written "NaN")."""
    result = []
    for labels, times, values in series:
        pairs = [
            [float(t), "NaN" if math.isnan(v) else format(float(v), ".12g")]
            for t, v in zip(times, values, strict=True)
        ]
        result.append({"metric": labels, "values": pairs})
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def latency_bins(rng, counts, median, sigma, bounds=BOUNDS):
    """Per step, requests per bucket (the last is beyond the last bound), multinomial."""
    from scipy import stats

    cdf = stats.norm.cdf((np.log(bounds) - math.log(median)) / sigma)
    p = np.diff(np.concatenate(([0.0], cdf, [1.0])))
    return rng.multinomial(counts, p)


def bucket_series(times, bins, step, *, counters, reset_at=None, bounds=BOUNDS):
    """The histogram's ``le`` series: per-second bucket rates, or raw cumulative counters
    (restarted from 0 at index ``reset_at``)."""
    cumulative = np.cumsum(bins, axis=1)  # cumulative in le
    les = [format(b, "g") for b in bounds] + ["+Inf"]
    out = []
    for j, le in enumerate(les):
        column = cumulative[:, j].astype(float)
        if counters:
            column = np.cumsum(column)
            if reset_at is not None:
                column[reset_at:] -= column[reset_at - 1]
        else:
            column = column / step
        out.append(({"le": le}, times, column))
    return out


def week(
    seed: int = 2026,
    *,
    mean=800.0,
    amplitude=0.6,
    peak=14 * 3600.0,
    error_rate=0.002,
    days=7,
    step=STEP,
):
    """Sample times, request counts and error counts of a diurnal service."""
    rng = np.random.default_rng(seed)
    times = START + step * np.arange(1, int(days * DAY / step) + 1)
    counts = step_counts(
        rng, times, step, lambda a, b: diurnal_integral(a, b, mean, amplitude, peak)
    )
    errors = rng.binomial(counts, error_rate)
    return rng, times, counts, errors


def main(folder: Path) -> None:
    rng, times, counts, errors = week()
    keep = ~((times > START + 2.5 * DAY) & (times <= START + 2.5 * DAY + 40 * 60))  # a gap
    req = counts / STEP
    req[100] = math.nan  # a NaN sample (a rate over a window with a restart)
    err = errors / STEP
    bins = latency_bins(rng, counts, TRUTH["median"], TRUTH["sigma"])
    buckets = bucket_series(times, bins, STEP, counters=True, reset_at=len(times) // 2)
    files = {
        "requests.json": response([({}, times[keep], req[keep])]),
        "errors.json": response([({}, times[keep], err[keep])]),
        "latency.json": response(buckets),
    }
    for name, body in files.items():
        (folder / name).write_text(json.dumps(body, separators=(",", ":")) + "\n")
    outcomes = ["good"] * 29 + ["rolled back"] * 7 + ["incident"] * 4
    order = rng.permutation(len(outcomes))
    lines = ["release,outcome,errorRate,latencyMultiplier"]
    for i, k in enumerate(order):
        outcome = outcomes[k]
        rate = mult = ""
        if outcome == "rolled back":
            rate = f"{rng.uniform(0.03, 0.07):.3f}"
        elif outcome == "incident":
            rate = f"{rng.uniform(0.005, 0.015):.4f}"
            mult = f"{rng.uniform(1.5, 2.5):.2f}" if i % 2 else ""
        lines.append(f"r{i + 1:03d},{outcome},{rate},{mult}")
    (folder / "releases.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Path(__file__).resolve().parent)
