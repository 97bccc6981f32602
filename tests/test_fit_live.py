"""``rolloutsim fit --prometheus`` against a real Prometheus scraping HAProxy (the loopback
bench): a compressed "day" of 40 s — 60 req/s for 20 s, then 140 req/s for 20 s, every
request failing with probability 5 % — is recovered from HAProxy's own counters.

Queries are the raw cumulative counters (``haproxy_server_http_responses_total``, summed), so
``fit`` must detect them as counters and difference them. Tolerances come from the noise:
arrivals are Poisson, so over T seconds the mean rate has standard deviation √(mean/T) and
each first-harmonic coefficient √(2·mean/T); errors are Bernoulli, so the ratio's is
√(p(1 − p)/N). Two bounded offsets are added: the last scrape before the window's end misses
at most one scrape interval plus the part of a step after the last sample, at the higher
rate; and each sample is the counter as last scraped, so the series lags by at most one scrape
interval. peakAt is a phase of the written period from 00:00 UTC of the window's first day
(sim/fit/traffic.py). Skipped without haproxy or prometheus.
"""

from __future__ import annotations

import math
import time

import pytest
import yaml
from test_fit_cli import main  # noqa: F401 - the fixture

from live.bench import BackendSpec, Bench, binaries_missing
from policies.durations import parse_duration

pytestmark = pytest.mark.skipif(
    bool(binaries_missing()),
    reason=f"{' and '.join(binaries_missing())} not installed "
    "(apt-get install -y --no-install-recommends haproxy prometheus)",
)

LOW, HIGH, PHASE, ERRORS, STEP = 60.0, 140.0, 20.0, 0.05, 1.0
REQUESTS = 'sum(haproxy_server_http_responses_total{proxy="be"})'
FAILED = 'sum(haproxy_server_http_responses_total{proxy="be", code="5xx"})'


def test_fit_recovers_the_rate_and_error_ratio_from_prometheus(main, tmp_path) -> None:  # noqa: F811
    with Bench(tmp_path / "bench", stable=BackendSpec(ERRORS, 0.0, seed=1)) as bench:
        low = bench.load(LOW, PHASE, seed=1).wait()
        high = bench.load(HIGH, PHASE, seed=2).wait()
        time.sleep(2.5 * bench.scrape_interval)  # the last counts reach Prometheus
        start, end = low["started_at"], high["started_at"] + PHASE
        out = tmp_path / "world.yaml"
        argv = ["fit", "--prometheus", bench.prometheus_url, "--requests", REQUESTS]
        argv += ["--errors", FAILED, "--start", f"{start:.3f}", "--end", f"{end:.3f}"]
        argv += ["--step", f"{STEP:g}s", "--period", f"{end - start:.3f}", "-o", str(out)]
        assert main(argv) == 0
        scrape = bench.scrape_interval
    text = out.read_text()
    assert "cumulative counter" in text  # detected and differenced
    world = yaml.safe_load(text)["world"]
    span = end - start
    # what HAProxy really served (a loaded machine's open-loop client may fall short of the
    # asked rate), over the window: the fit must read back what happened, not what was asked
    truth = (low["answered"] + high["answered"]) / span
    fitted = world["traffic"]["rate"]["diurnal"]
    lost = HIGH * (scrape + span % STEP)  # requests the last sample may miss at the end
    assert abs(fitted["mean"] - truth) <= 4 * math.sqrt(truth / span) + lost / span, fitted
    # a square wave's first harmonic: amplitude (4/π)·(HIGH − LOW)/2 / mean, at the high phase
    served = (high["answered"] - low["answered"]) / PHASE
    radius = 2 / math.pi * served  # the first harmonic's size, requests/s
    amplitude = radius / truth
    noise = math.sqrt((2 + amplitude**2) * truth / span) / truth
    # the lost requests fall in the last (scrape + tail) s, a quarter period after the peak,
    # where the cosine they would have added to is at most sin(2π·(scrape + tail)/period)
    near = 2 * math.sin(min(math.pi / 2, 2 * math.pi * (scrape + span % STEP) / span))
    edge = (amplitude + near) * lost / (span * truth)
    assert abs(fitted["amplitude"] - amplitude) <= 4 * noise + edge, (fitted, amplitude)
    period = parse_duration(fitted["period"])
    assert period == pytest.approx(span, abs=1e-3)
    origin = math.floor((start + STEP / 2) / 86400) * 86400  # the first sample's 00:00 UTC
    centre = (high["started_at"] + PHASE / 2 - origin) % period
    phase = parse_duration(fitted["peakAt"])
    turn = period / (2 * math.pi)  # seconds per radian
    lag = scrape + max(low["max_lag_s"], high["max_lag_s"])  # late scrapes, late sends
    allowed = turn * (4 * math.sqrt(2 * truth / span) + 2 * lost / span) / radius + lag
    off = abs(phase - centre) % period
    assert min(off, period - off) <= allowed, (fitted, centre, allowed)
    n = (LOW + HIGH) * PHASE
    rate = world["baseline"]["errorRate"]
    assert abs(rate - ERRORS) <= 4 * math.sqrt(ERRORS * (1 - ERRORS) / n), rate
