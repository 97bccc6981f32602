"""The live command line, the bench scenario and the bench's own processes, without binaries."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from live.backend import BackendState, make_server
from live.calibrate import Check, Prediction, coverage, predict
from live.cli import main, register
from live.journal import StateDir
from live.loadgen import run_load
from live.procs import free_port
from live.scenario import bench_plan, case_world
from policies.errors import PolicyError
from sim.runs.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "live-bench.yaml"


def test_register_adds_live_bench_and_calibrate_to_a_cli() -> None:
    parser = argparse.ArgumentParser(prog="rolloutsim")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["live", "p.yaml", "--time-scale", "0.1", "--scrape-delay", "2s"])
    assert (args.policy, args.time_scale, args.scrape_delay) == ("p.yaml", 0.1, 2.0)
    assert parser.parse_args(["calibrate", "s.yaml", "--repeat", "3"]).repeat == 3
    assert parser.parse_args(["bench", "--rate", "50"]).rate == 50.0


def test_python_dash_m_live_help_is_instant_and_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "live", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "live" in done.stdout and "calibrate" in done.stdout and "bench" in done.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert main(["live", "promote"]) == 2
    assert "give --state DIR" in capsys.readouterr().err
    assert main(["live", "abort", "--state", str(tmp_path)]) == 2
    assert "no executor is running" in capsys.readouterr().err
    policy = ROOT / "scenarios" / "policies" / "canary-nginx.yaml"
    assert main(["live", str(policy), "--state", str(tmp_path / "s")]) == 2
    assert "--haproxy-socket and --prometheus" in capsys.readouterr().err
    ab = ROOT / "scenarios" / "policies" / "ab-test-header.yaml"
    assert main(["live", str(ab), "--state", str(tmp_path / "ab"), "--bench"]) == 2
    assert "cannot express kind: ABTest" in capsys.readouterr().err


def test_a_finished_rollout_is_not_resumed_without_fresh(tmp_path, capsys) -> None:
    policy = ROOT / "scenarios" / "policies" / "canary-nginx.yaml"
    state = StateDir(tmp_path)
    state.append({"kind": "event", "event": {"type": "Started"}, "t": 0})
    done = {"type": "StatusChanged", "status": "Promoted", "reason": "RolloutCompleted"}
    state.append({"kind": "action", "action": done, "t": 1})
    args = ["live", str(policy), "--state", str(tmp_path), "--haproxy-socket", "/x"]
    assert main([*args, "--prometheus", "http://127.0.0.1:9"]) == 2
    assert "already ended (Promoted)" in capsys.readouterr().err
    assert main(["live", "status", "--state", str(tmp_path)]) == 0
    assert "Promoted: RolloutCompleted" in capsys.readouterr().out


def test_the_calibration_scenario_is_an_ordinary_scenario_the_bench_can_realise() -> None:
    loaded = load_scenario(SCENARIO)
    plan = bench_plan(loaded)
    assert (plan.rate, plan.stable_error_rate, plan.scrape_interval) == (100.0, 0.01, 1.0)
    assert [c.name for c in plan.cases][:2] == ["threshold:good", "sprt:good"]
    assert {c.canary_error_rate for c in plan.cases} == {0.01, 0.08, 0.04}
    faster = bench_plan(loaded, time_scale=0.5)  # the same world, twice as fast on the bench
    assert (faster.rate, faster.scrape_interval, faster.horizon) == (200.0, 0.5, 12.5)
    world = case_world(loaded, plan.cases[2])
    assert [r["name"] for r in world["releases"]] == ["bad-8pct"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("podStartup: 0", "podStartup"),
        ("routerDelay: 0", "routerDelay"),
        ("latencyObjective: null", "latencyObjective"),
        ("alerts: []", "world.operators"),
        ("{errorRate: 0.08}", "releases[1].fault"),
    ],
)
def test_what_the_bench_would_only_approximate_is_refused(tmp_path, change, field) -> None:
    other = {
        "podStartup: 0": "podStartup: 30s",
        "routerDelay: 0": "routerDelay: 2s",
        "latencyObjective: null": "latencyObjective: 500ms",
        "alerts: []": "alerts: [{longWindow: 1h, shortWindow: 5m, burnRate: 14.4}]",
        "{errorRate: 0.08}": "{errorRate: 0.08, onset: {afterStart: 10s}}",
    }[change]
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.read_text().replace(change, other))
    with pytest.raises(PolicyError, match="cannot realise") as err:
        bench_plan(load_scenario(path))
    assert field in str(err.value)


def test_a_prediction_converts_simulated_times_to_wall_clock() -> None:
    loaded = load_scenario(SCENARIO)
    plan = bench_plan(loaded, time_scale=0.5)
    case = next(c for c in plan.cases if c.name == "threshold:bad-8pct")
    pred = predict(loaded, case, plan, replications=200)
    assert pred.outcome["rolled_back"] > 0.9 and pred.outcome_set() == ["rolled_back"]
    # judged first at initialDelay 7 s of scenario time: 3.5 s on a bench twice as fast
    assert pred.t_detect[0] == pytest.approx(3.5)


def test_coverage_is_a_binomial_lower_tail() -> None:
    checks = [Check("r", i, "bad_requests", 1, [0, 2], i != 0) for i in range(20)]
    found = coverage(checks)
    assert (found["checks"], found["inside"]) == (20, 19)
    assert found["p_value"] == pytest.approx(1 - 0.95**20, rel=1e-6)
    p = Prediction(
        "r", 10, {"promoted": 0.96, "rolled_back": 0.04}, (0, 1, 2), (0, 1, 2), 0.04, None, None
    )
    assert p.outcome_set() == ["promoted"]


def test_backend_and_open_loop_load_agree_on_every_request() -> None:
    port = free_port()
    state = BackendState("canary", error_rate=0.3, latency=0.0, seed=5)
    server = make_server(port, state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        stats = asyncio.run(run_load(port, rate=300, duration=1.0, seed=2))
    finally:
        server.shutdown()
        server.server_close()
    assert stats.sent == stats.answered == state.served and stats.transport_errors == 0
    assert stats.errors_by_version["canary"] == state.failed == stats.by_status["5xx"]
    assert 200 < stats.sent < 400  # Poisson(300)
    assert 0.15 < state.failed / state.served < 0.45
    assert json.loads(json.dumps(stats.to_dict()))["by_version"] == {"canary": stats.sent}


def test_bench_refuses_to_start_without_binaries(monkeypatch) -> None:
    import live.bench as bench

    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    with pytest.raises(bench.BenchError, match="apt-get install"):
        bench.Bench().start()


def test_the_public_surface_is_pinned_and_lazy() -> None:
    code = (
        "import sys, live; assert 'live.executor' not in sys.modules and 'sim' not in sys.modules;"
        "names = [n for n in live.__all__ if getattr(live, n) is None]; assert not names, names;"
        "print(len(live.__all__))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 17
