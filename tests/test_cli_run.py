"""``rolloutsim run`` / ``sweep`` as a user meets them: a report folder, one-line errors with exit
code 2, and an interrupted run that resumes without redoing finished work. (The sweep from
Python and the run options: tests/test_sweep.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sim.runs.runner
from rolloutsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED_PRACTICE = ROOT / "scenarios" / "seed-practice.yaml"


def small_scenario(tmp_path: Path, horizon: str = "1h") -> Path:
    """The seed practice, shortened: the same question, seconds to run."""
    text = SEED_PRACTICE.read_text().replace("horizon: 6h", f"horizon: {horizon}")
    text = text.replace("file: policies/", f"file: {ROOT / 'scenarios' / 'policies'}/")
    path = tmp_path / "seed.yaml"
    path.write_text(text)
    return path


def test_run_writes_the_report_and_prints_the_verdict(tmp_path: Path, capsys) -> None:
    scenario = small_scenario(tmp_path)
    out = tmp_path / "report"
    code = main(
        [
            "run",
            str(scenario),
            "-o",
            str(out),
            "--replications",
            "8",
            "--backend",
            "inprocess",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "canary-20-first** is the safest" in printed and "report.html" in printed
    for name in (
        "report.html",
        "report.md",
        "results.parquet",
        "summary.csv",
        "scenario.resolved.yaml",
    ):
        assert (out / name).is_file()
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2 * 2 * 8  # policies x classes x replications
    assert not (tmp_path / "report.checkpoint").exists()  # removed once the report is whole


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope.yaml"], "nope.yaml: cannot read file"),
        (["run", "SCENARIO", "--replications", "0"], "--replications: 0 must be >= 1"),
        (["run", "SCENARIO", "-j", "0"], "-j: 0 must be >= 1"),
        (["run", "SCENARIO", "--seed", "-1"], "--seed: -1 must be a whole number in [0, 2**63)"),
        (["sweep", "SCENARIO", "--seed", str(2**63)], f"--seed: {2**63} must be a whole"),
        (
            ["sweep", "SCENARIO", "--param", "world.trafic.startAt=1h"],
            "world.trafic does not exist",
        ),
        (["sweep", "SCENARIO", "--param", "no-equals-sign"], "use PATH=VALUE"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tmp_path: Path) -> None:
    scenario = small_scenario(tmp_path)
    args = [str(scenario) if a == "SCENARIO" else a for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "rolloutsim", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_interrupted_run_resumes_without_redoing_finished_chunks(tmp_path, monkeypatch):
    scenario = small_scenario(tmp_path)
    options = ["--replications", "12", "--backend", "inprocess", "--no-progress"]
    calls = []
    real = sim.runs.runner.run_chunk
    interrupt_at = None

    def counting(*args):
        calls.append(args)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return real(*args)

    monkeypatch.setattr(sim.runs.runner, "run_chunk", counting)
    reference = tmp_path / "reference"
    assert main(["run", str(scenario), "-o", str(reference), *options]) == 0
    total = len(calls)  # chunks of an uninterrupted run
    assert total >= 4
    calls.clear()
    interrupt_at = 3
    out = tmp_path / "interrupted"
    assert main(["run", str(scenario), "-o", str(out), *options]) == 130  # interrupted
    assert not out.exists()  # nothing half-written
    assert (tmp_path / "interrupted.checkpoint").is_dir()
    done_before = len(calls) - 1  # the third chunk raised before finishing
    calls.clear()
    interrupt_at = None
    assert main(["run", str(scenario), "-o", str(out), "--resume", *options]) == 0
    assert len(calls) == total - done_before
    assert not (tmp_path / "interrupted.checkpoint").exists()
    first = pd.read_parquet(reference / "results.parquet")
    second = pd.read_parquet(out / "results.parquet")
    cols = [c for c in first.columns if c != "wall_time"]
    pd.testing.assert_frame_equal(first[cols], second[cols])


def test_sweep_runs_every_cell(tmp_path: Path, capsys) -> None:
    scenario = small_scenario(tmp_path)
    out = tmp_path / "sw"
    args = ["--replications", "4", "--backend", "inprocess", "--no-progress", "-o", str(out)]
    assert main(["sweep", str(scenario), "--param", "world.traffic.rate=100,400", *args]) == 0
    assert f"sweep: {out / 'sweep.csv'}" in capsys.readouterr().out
    table = pd.read_csv(out / "sweep.csv")
    assert set(table["world.traffic.rate"].astype(str)) == {"100", "400"}
    assert set(table["policy"]) == {"canary-20-first", "bluegreen"}
    assert len(list((out / "cells").iterdir())) == 2


TUNE = """
name: small-tune
world:
  horizon: 1h
  traffic: {rate: 20}
  users: {count: 100}
  baseline: {errorRate: 0.0}
  latencyObjective: null
  releases:
    - {name: good, probability: 0.5}
    - {name: bad, probability: 0.5, fault: {errorRate: 0.05}}
  platform: {replicas: 4, podStartup: 30}
  operators: {alerts: [], humanDetection: 900, abortLatency: 60}
policies:
  - {kind: Canary, name: incumbent, trafficRouting: {nginx: {}}, steps: [{setWeight: 50}]}
seed: 4
backend: inprocess
tune:
  space:
    - kind: Canary
      fixed: {trafficRouting: {nginx: {}}}
      weights: [[5], [25]]
      steps: []
      pause: [20m]
      gate: [none]
  objective: {metric: excess_bad_requests, releases: bad}
  indifference: 10
  confidence: 0.9
"""


def test_tune_takes_the_run_options_over_the_file(tmp_path: Path, capsys) -> None:
    """`rolloutsim tune`: the file says seed 4 and in-process; --seed wins over it."""
    import json

    scenario = tmp_path / "tune.yaml"
    scenario.write_text(TUNE)
    seeds = {}
    for flags in ([], ["--seed", "6"]):
        out = tmp_path / f"out{len(flags)}"
        assert main(["tune", str(scenario), "-o", str(out), "--no-progress", *flags]) == 0
        assert f"tune report: {out}" in capsys.readouterr().out
        assert not out.with_name(out.name + ".checkpoint").exists()
        seeds[len(flags)] = json.loads((out / "tune.json").read_text())["seed"]
    assert seeds == {0: 4, 2: 6}
