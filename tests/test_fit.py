"""``rolloutsim fit`` recovers a known truth from synthetic Prometheus answers.

The answers come from scenarios/telemetry/make.py (the generator of the shipped sample): a
week at a 5-minute step, Poisson request counts, binomial errors, multinomial histogram
buckets. Interval checks are coverage counts over 20 seeds: a 95 % interval that covers the
truth 15 times or fewer in 20 does so with probability 0.3 % (binomial), so a failure means
the interval is wrong, not unlucky.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from sim.fit.error_rate import fit_error_rate
from sim.fit.latency import fit_latency
from sim.fit.responses import Source, parse_matrix
from sim.fit.series import regular
from sim.fit.traffic import fit_traffic, trace_counts
from sim.fit.world import Fitted, world_data
from sim.world.traffic import parse_rate

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make", ROOT / "scenarios/telemetry/make.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)

SEEDS = range(20)
MIN_COVERED = 16  # of 20: P(X <= 15 | p = 0.95) = 0.003


def matrix(series, name="synthetic"):
    return parse_matrix(make.response(series), Source(name))


def rates(times, values, labels=None):
    return matrix([(labels or {}, times, values)])


def covered(lo_hi, truth) -> bool:
    return lo_hi[0] <= truth <= lo_hi[1]


@pytest.mark.parametrize(
    ("mean", "amplitude", "peak_h"), [(300.0, 0.2, 3.0), (800.0, 0.6, 14.0), (50.0, 0.9, 21.5)]
)
def test_diurnal_parameters_within_their_intervals(mean, amplitude, peak_h) -> None:
    hits = {"mean": 0, "amplitude": 0, "peakAt": 0}
    for seed in SEEDS:
        _, times, counts, _ = make.week(seed, mean=mean, amplitude=amplitude, peak=peak_h * 3600)
        fit = fit_traffic(regular(rates(times, counts / make.STEP), "requests"))
        assert fit.form == "diurnal" and not fit.weekly
        hits["mean"] += covered(fit.ci["mean"], mean)
        hits["amplitude"] += covered(fit.ci["amplitude"], amplitude)
        hits["peakAt"] += covered(fit.ci["peakAt"], peak_h * 3600)
        assert fit.peak_at == pytest.approx(peak_h * 3600, abs=600)
    assert min(hits.values()) >= MIN_COVERED, hits


def test_a_two_peak_day_is_written_as_a_trace_of_the_observed_profile() -> None:
    rng = np.random.default_rng(5)
    times = make.START + make.STEP * np.arange(1, 2017)
    k = 2 * math.pi / make.DAY

    def integral(a, b):  # 400·(1 + 0.5 cos(2k(t − 10h))): peaks at 10:00 and 22:00
        return 400 * (b - a) + 400 * 0.5 / (2 * k) * (
            np.sin(2 * k * (b - 36000)) - np.sin(2 * k * (a - 36000))
        )

    counts = make.step_counts(rng, times, make.STEP, integral)
    fit = fit_traffic(regular(rates(times, counts / make.STEP), "requests"))
    assert fit.form == "trace" and fit.profile_error > 0.05 and fit.r2_daily > 0.99
    minutes, length = trace_counts(fit, make.STEP)
    assert (len(minutes), length) == (1440, make.DAY)
    per_s = np.array(minutes) / 60
    assert per_s.mean() == pytest.approx(400, rel=0.01)
    assert per_s[600] == pytest.approx(600, rel=0.05)  # 10:00, a peak
    assert per_s[960] == pytest.approx(200, rel=0.08)  # 16:00, a trough


def test_a_weekend_dip_is_found_and_written_as_a_week_long_trace() -> None:
    rng = np.random.default_rng(6)
    times = make.START + make.STEP * np.arange(1, 7 * 288 + 1)
    weekend = ((times - make.START) // make.DAY) >= 5  # START is a Monday
    base = make.diurnal_integral(times - make.STEP, times, 500, 0.5, 13 * 3600)
    counts = rng.poisson(base * np.where(weekend, 0.6, 1.0))
    fit = fit_traffic(regular(rates(times, counts / make.STEP), "requests"))
    assert fit.weekly and fit.weekly_p < 1e-3 and fit.form == "trace"
    minutes, length = trace_counts(fit, make.STEP)
    assert length == 7 * make.DAY and len(minutes) == 7 * 1440
    per_s = np.array(minutes) / 60
    assert per_s[: 5 * 1440].mean() == pytest.approx(500, rel=0.02)  # Monday to Friday
    assert per_s[5 * 1440 :].mean() == pytest.approx(300, rel=0.03)  # the weekend


def test_gaps_nan_and_a_reset_counter_are_handled_and_said() -> None:
    hits = {"mean": 0, "peakAt": 0}
    for seed in SEEDS:
        _, times, counts, _ = make.week(seed, mean=200, amplitude=0.5, peak=9 * 3600)
        counter = np.cumsum(counts).astype(float)
        counter[1000:] -= counter[999]  # the process restarted: the counter starts from 0
        keep = np.ones(times.size, bool)
        keep[300:320] = False  # a 100-minute scrape gap
        counter[50] = math.nan
        reg = regular(rates(times[keep], counter[keep]), "requests")
        said = " ".join(reg.notes)
        assert "cumulative counter" in said and "1 counter reset" in said
        assert "NaN" in said and "longest gap 105 min" in said
        fit = fit_traffic(reg)
        hits["mean"] += covered(fit.ci["mean"], 200)
        hits["peakAt"] += covered(fit.ci["peakAt"], 9 * 3600)
    assert min(hits.values()) >= MIN_COVERED, hits


def test_series_of_different_steps_are_summed_on_the_coarser_grid() -> None:
    rng = np.random.default_rng(3)
    fine = make.START + 60.0 * np.arange(1, 7 * 1440 + 1)
    coarse = make.START + make.STEP * np.arange(1, 7 * 288 + 1)
    a = make.step_counts(rng, fine, 60.0, lambda x, y: make.diurnal_integral(x, y, 100, 0.5, 0))
    b = make.step_counts(
        rng, coarse, make.STEP, lambda x, y: make.diurnal_integral(x, y, 300, 0.5, 0)
    )
    m = matrix([({"pod": "a"}, fine, a / 60.0), ({"pod": "b"}, coarse, b / make.STEP)])
    reg = regular(m, "requests")
    assert reg.step == make.STEP
    assert any("different steps" in n for n in reg.notes) and any(
        "2 series" in n for n in reg.notes
    )
    fit = fit_traffic(reg)
    assert fit.mean == pytest.approx(400, rel=0.01)


def test_error_rate_within_its_interval() -> None:
    hits = 0
    for seed in SEEDS:
        _, times, counts, errors = make.week(seed, mean=300, error_rate=0.002)
        fit = fit_error_rate(
            regular(rates(times, counts / make.STEP), "requests"),
            regular(rates(times, errors / make.STEP), "errors"),
        )
        hits += covered(fit.ci, 0.002)
        assert not fit.notes  # binomial errors vary as chance says
    assert hits >= MIN_COVERED


def test_bursty_errors_get_the_wider_interval_and_a_note() -> None:
    rng, times, counts, _ = make.week(4, mean=300)
    p = np.where(rng.random(times.size) < 0.05, 0.02, 0.001)  # incidents in 5 % of the steps
    errors = rng.binomial(counts, p)
    fit = fit_error_rate(
        regular(rates(times, counts / make.STEP), "requests"),
        regular(rates(times, errors / make.STEP), "errors"),
    )
    assert any("more than chance" in n for n in fit.notes)
    assert covered(fit.ci, float(np.mean(p) * 1))  # the long-run ratio (counts nearly flat)


@pytest.mark.parametrize("counters", [False, True], ids=["bucket-rates", "raw-counters"])
def test_lognormal_latency_within_its_intervals(counters) -> None:
    hits = {"median": 0, "sigma": 0}
    for seed in SEEDS:
        rng, times, counts, _ = make.week(seed, mean=20.0, days=2)
        bins = make.latency_bins(rng, counts, 0.08, 0.7)
        reset = times.size // 3 if counters else None
        m = matrix(make.bucket_series(times, bins, make.STEP, counters=counters, reset_at=reset))
        fit = fit_latency(m)
        assert fit.form == "lognormal" and fit.distance < 0.01
        hits["median"] += covered(fit.ci["median"], 0.08)
        hits["sigma"] += covered(fit.ci["sigma"], 0.7)
    assert min(hits.values()) >= MIN_COVERED, hits


def test_a_two_mode_latency_is_written_as_its_empirical_distribution() -> None:
    rng, times, counts, _ = make.week(8, mean=50.0, days=1)
    fast = make.latency_bins(rng, (counts * 0.7).astype(int), 0.02, 0.3)
    slow = make.latency_bins(rng, counts - (counts * 0.7).astype(int), 0.8, 0.3)
    fit = fit_latency(matrix(make.bucket_series(times, fast + slow, make.STEP, counters=True)))
    assert fit.form == "empirical" and fit.distance > 0.02
    values = np.array(fit.empirical)
    assert len(values) == 200 and np.all(np.diff(values) >= 0)
    # 70 % of requests are fast (below 50 ms) and the slow ones sit between 0.25 s and 2.5 s
    assert np.mean(values <= 0.05) == pytest.approx(0.7, abs=0.01)
    assert 0.25 < np.median(values[values > 0.1]) < 2.5


@pytest.mark.parametrize("period", [40.069, 40.0691123], ids=["whole-ms", "finer"])
def test_a_short_period_s_peak_is_read_from_midnight_and_written_with_its_period(period) -> None:
    """A square wave (60/s, then 140/s, each half a period) whose period does not divide a day,
    read from a cumulative counter at 1 s: peakAt is the phase from 00:00 UTC of the window's
    first day, as the world reads it (the epoch is 45 million periods away, where a period
    rounded for writing loses the phase), and the written peakAt and period put the cosine's
    peak at the high half's middle."""
    first = make.START + 13 * 3600 + 0.3  # 13:00:00.3 on a Monday
    times = first + np.arange(0.0, 10 * period)  # ten cycles at 1 s

    def served(t):  # requests served since ``first``: low for half a period, then high
        cycles, tau = np.divmod(t - first, period)
        return cycles * 100 * period + np.where(
            tau < period / 2, 60 * tau, 30 * period + 140 * (tau - period / 2)
        )

    counter = 1000.0 + served(times)  # a counter that had counted before the window
    reg = regular(rates(times, counter), "requests")
    assert reg.counter
    fit = fit_traffic(reg, period=period)
    centre = (first + 0.75 * period - make.START) % period  # the high half's middle, from 00:00
    assert fit.amplitude == pytest.approx(4 / math.pi * 40 / 100, rel=0.02)  # first harmonic
    assert fit.peak_at == pytest.approx(centre, abs=0.05)
    errors = fit_error_rate(reg, regular(rates(times, 0.05 * counter), "errors"))
    world = world_data(Fitted(fit, errors, {}))
    diurnal = parse_rate(world["traffic"]["rate"])
    assert diurnal.period == period
    assert diurnal.rate(centre) == pytest.approx(diurnal.mean * (1 + diurnal.amplitude), rel=1e-4)
