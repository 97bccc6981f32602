"""Simulation against reality: three short live runs, each inside the simulator's 95 % intervals.

``scenarios/live-bench.yaml`` is a scenario the bench can realise: a threshold gate and a
sequential (SPRT) gate against a good canary and two bad ones. Three of its cases run here — a
good canary the threshold gate promotes, a bad one (8 % errors) it rolls back, a bad one (4 %)
the SPRT catches. The simulator predicts each from 2,000 replications; the same controller then
runs each live on the loopback bench (25 s each). Each live run's bad requests served by the
canary and its detection time must lie in the simulator's 95 % prediction interval, and its
outcome in the 95 % outcome set, and the per-case tests (live/case_tests.py) must not reject.

The scenario fixes the live seeds (the backends' error draws, the arrivals), so this is a
regression check that does not fail one time in four by design; ``rolloutsim calibrate`` with
fresh seeds and ``--repeat`` measures the coverage itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from live.bench import binaries_missing
from live.calibrate import calibrate
from live.case_tests import CaseTest, passes

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "live-bench.yaml"
CASES = {
    "threshold:good": "promoted",
    "threshold:bad-8pct": "rolled_back",
    "sprt:bad-4pct": "rolled_back",
}


@pytest.mark.slow
@pytest.mark.skipif(
    bool(binaries_missing()),
    reason=f"{' and '.join(binaries_missing())} not installed "
    "(apt-get install -y --no-install-recommends haproxy prometheus)",
)
def test_live_runs_fall_inside_the_simulators_prediction_intervals(tmp_path) -> None:
    lines: list[str] = []
    report = calibrate(SCENARIO, tmp_path, only=tuple(CASES), say=lines.append)
    log = "\n".join(lines)
    outcomes = {live["run"]: live["outcome"] for live in report["live"]}
    assert outcomes == CASES, log
    quantities = {(c["run"], c["quantity"]) for c in report["checks"]}
    assert {("threshold:bad-8pct", "t_detect"), ("sprt:bad-4pct", "t_detect")} <= quantities
    outside = [c for c in report["checks"] if not c["inside"]]
    assert not outside, log
    assert report["coverage"]["checks"] == 5  # 3 x bad requests, 2 x detection time
    tests = [CaseTest(**t) for t in report["tests"]]
    assert {t.run for t in tests} == set(CASES) and passes(tests), log  # one run per case:
    # only a gross outcome mismatch can fail here; the long calibration has the power
    # (benchmarks/CALIBRATION.md)
    assert json.loads((tmp_path / "calibration.json").read_text())["coverage"]
    assert "| sprt:bad-4pct#0 | t_detect |" in (tmp_path / "report.md").read_text()
