"""``rolloutsim fit`` from the command line: the shipped sample gives a world that ``run``
accepts, a Prometheus server is queried in chunks, and every bad input is one line, exit 2."""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import yaml
from test_fit import make

import rolloutsim.cli as cli
from rolloutsim.fit_command import add_fit_parser
from sim.fit.releases import fit_releases
from sim.runs.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "scenarios" / "telemetry"


@pytest.fixture
def main(monkeypatch):
    """``rolloutsim`` with ``fit`` (added here until the CLI registers it itself)."""
    build = cli.build_parser

    def with_fit():
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "fit" not in sub.choices:
            add_fit_parser(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_fit)
    return cli.main


def sample(*extra: str) -> list[str]:
    files = ("requests", "errors", "latency-buckets")
    names = ("requests.json", "errors.json", "latency.json")
    args = ["fit"]
    for flag, name in zip(files, names, strict=True):
        args += [f"--{flag}", str(SAMPLE / name)]
    return [*args, *extra]


def test_the_sample_gives_a_world_that_a_scenario_accepts(main, tmp_path, capsys) -> None:
    out = tmp_path / "world.yaml"
    assert main(sample("-o", str(out), "--releases", str(SAMPLE / "releases.csv"))) == 0
    text = out.read_text()
    assert "# requests: " in text and "goodness of fit" in text and "95 % CI" in text
    world = yaml.safe_load(text)["world"]
    truth = make.TRUTH
    diurnal = world["traffic"]["rate"]["diurnal"]
    assert diurnal["mean"] == pytest.approx(truth["mean"], rel=1e-3)
    assert diurnal["amplitude"] == pytest.approx(truth["amplitude"], abs=2e-3)
    assert diurnal["peakAt"] == "14h"
    assert world["baseline"]["errorRate"] == pytest.approx(truth["errorRate"], rel=0.01)
    lognormal = world["baseline"]["latency"]["lognormal"]
    assert lognormal == {"median": "120ms", "sigma": pytest.approx(truth["sigma"], abs=1e-3)}
    assert [c["name"] for c in world["releases"]] == ["good", "rolled-back", "incident"]
    assert (tmp_path / "world-fit.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (tmp_path / "world-fit.html").read_text()
    # merged into a scenario beside the shipped policies, it validates
    scenario = {
        "name": "merged",
        "world": world,
        "policies": [{"file": str(ROOT / "scenarios/policies/canary-20-first.yaml")}],
        "replications": 4,
    }
    (tmp_path / "merged.yaml").write_text(yaml.safe_dump(scenario))
    loaded = load_scenario(tmp_path / "merged.yaml")
    assert loaded.world.baseline.error_rate == pytest.approx(0.002, rel=0.01)


def test_a_whole_scenario_runs(main, tmp_path, capsys) -> None:
    out = tmp_path / "fitted" / "scenario.yaml"
    args = sample(
        "-o", str(out), "--scenario", "fitted", "--releases", str(SAMPLE / "releases.csv")
    )
    assert main([*args, "--horizon", "1h", "--users", "5000", "--no-report"]) == 0
    data = yaml.safe_load(out.read_text())
    # no --policy: the seed practice's two, inline, so the file runs wherever it is moved
    assert [p["name"] for p in data["policies"]] == ["canary-20-first", "bluegreen"]
    report = tmp_path / "report"
    run = ["run", str(out), "--replications", "4", "-o", str(report), "--no-progress"]
    assert main(run) == 0, capsys.readouterr().err
    assert (report / "results.parquet").exists()
    assert "canary-20-first" in (report / "report.md").read_text()


def test_a_trace_is_written_beside_the_world_and_loads(main, tmp_path) -> None:
    rng = np.random.default_rng(2)
    times = make.START + make.STEP * np.arange(1, 289 * 2)
    steps = (((times - make.START) % make.DAY) // 3600 >= 8) * 400.0 + 100.0  # a square day
    counts = rng.poisson(steps * make.STEP)
    for name, values in (("r", counts), ("e", rng.binomial(counts, 0.01))):
        body = make.response([({}, times, values / make.STEP)])
        (tmp_path / f"{name}.json").write_text(json.dumps(body))
    out = tmp_path / "w.yaml"
    argv = ["fit", "--requests", str(tmp_path / "r.json"), "--errors", str(tmp_path / "e.json")]
    assert main([*argv, "-o", str(out)]) == 0
    world = yaml.safe_load(out.read_text())["world"]
    assert world["traffic"]["rate"] == {"trace": {"file": "w-traffic.csv"}}
    minutes = (tmp_path / "w-traffic.csv").read_text().split()
    assert minutes[0] == "count" and len(minutes) == 1441
    night, day = float(minutes[1 + 3 * 60]) / 60, float(minutes[1 + 12 * 60]) / 60
    assert night == pytest.approx(100, rel=0.05) and day == pytest.approx(500, rel=0.05)


def test_release_probabilities_are_the_jeffreys_posterior(tmp_path) -> None:
    from scipy import stats

    classes, notes = fit_releases(str(SAMPLE / "releases.csv"))
    good = classes[0]
    assert (good.name, good.count) == ("good", 29)
    assert good.probability == pytest.approx(29.5 / 41.5, abs=1e-4)
    assert good.ci == pytest.approx(stats.beta.ppf([0.025, 0.975], 29.5, 12.0))
    assert sum(c.probability for c in classes) == pytest.approx(1.0, abs=1e-12)
    assert "Jeffreys" in notes[0]


class Canned(http.server.BaseHTTPRequestHandler):
    """query_range over a synthetic day, as Prometheus answers it (and counts the calls)."""

    calls: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        url = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        Canned.calls.append(q)
        start, end, step = float(q["start"]), float(q["end"]), float(q["step"])
        times = np.arange(start, end + step / 2, step)
        mean = 50.0 if "5.." in q["query"] else 1000.0
        mid = times - step / 2  # rate(x[1m]) at t is the rate over the minute before t
        values = mean * (1 + 0.5 * np.cos(2 * np.pi * (mid - 6 * 3600) / make.DAY))
        body = json.dumps(make.response([({}, times, values)])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_queries_run_against_a_server_in_chunks(main, tmp_path, capsys) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Canned.calls.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        argv = ["fit", "--prometheus", url, "--requests", "sum(rate(http_requests_total[1m]))"]
        argv += ["--errors", 'sum(rate(http_requests_total{code=~"5.."}[1m]))']
        argv += ["--start", "2026-11-02T00:00:00Z", "--end", "2026-11-12T00:00:00Z"]
        assert main([*argv, "--step", "1m", "-o", str(tmp_path / "w.yaml")]) == 0
    finally:
        server.shutdown()
    assert len(Canned.calls) == 2 * 2  # 14,401 steps: two chunks per query
    world = yaml.safe_load((tmp_path / "w.yaml").read_text())["world"]
    assert world["traffic"]["rate"]["diurnal"]["mean"] == pytest.approx(1000, rel=1e-6)
    assert world["traffic"]["rate"]["diurnal"]["peakAt"] == "6h"
    assert world["baseline"]["errorRate"] == pytest.approx(0.05, rel=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(tmp_path, name, body) -> str:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return str(path)


VECTOR = {"status": "success", "data": {"resultType": "vector", "result": []}}
FAILED = {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}
EMPTY = {"status": "success", "data": {"resultType": "matrix", "result": []}}
NO_LE = make.response([({}, np.array([1.0, 2.0]), np.array([1.0, 2.0]))])
ONE = make.response([({}, make.START + 300.0 * np.arange(1, 30), np.full(29, 5.0))])


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("not-json", "not JSON (line 1"),
        ("vector", "resultType is 'vector', not 'matrix'"),
        ("failed", "the query failed: parse error at char 5"),
        ("empty", "no data in the window"),
        ("no-le", "has no le label"),
        ("unreachable", "the server is unreachable"),
        ("no-start", "--prometheus needs --start"),
        ("bad-url", "is not an http(s) URL"),
        ("bad-time", "is not a time"),
        ("bad-outcome", "line 2.outcome: 'shipped' is not an outcome"),
        ("missing", "cannot read file"),
        ("buckets-as-requests", "--requests: holds histogram buckets"),
        ("negative-users", "--users: '-5' is neither a whole number from 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(main, tmp_path, capsys, case, needle) -> None:
    good = write(tmp_path, "one.json", ONE)
    files = {"requests": good, "errors": good}
    extra: list[str] = []
    if case == "not-json":
        files["requests"] = write(tmp_path, "x.json", "{")
    elif case in ("vector", "failed", "empty"):
        body = {"vector": VECTOR, "failed": FAILED, "empty": EMPTY}[case]
        files["errors"] = write(tmp_path, "x.json", body)
    elif case == "no-le":
        extra = ["--latency-buckets", write(tmp_path, "x.json", NO_LE)]
    elif case == "unreachable":
        extra = ["--prometheus", f"http://127.0.0.1:{_free_port()}", "--start", "now-1h"]
    elif case == "no-start":
        extra = ["--prometheus", "http://127.0.0.1:9"]
    elif case == "bad-url":
        extra = ["--prometheus", "file:///etc/passwd", "--start", "now-1h"]
    elif case == "bad-time":
        extra = ["--prometheus", "http://127.0.0.1:9", "--start", "yesterday"]
    elif case == "bad-outcome":
        extra = ["--releases", write(tmp_path, "r.csv", "release,outcome\nr1,shipped\n")]
    elif case == "missing":
        files["requests"] = str(tmp_path / "nope.json")
    elif case == "buckets-as-requests":
        files["requests"] = str(SAMPLE / "latency.json")
    elif case == "negative-users":
        extra = ["--users", "-5"]
    argv = ["fit", "--requests", files["requests"], "--errors", files["errors"], *extra]
    assert main([*argv, "-o", str(tmp_path / "w.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rolloutsim: error: ") and err.count("\n") == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_pod_startup_users_and_replicas_from_saved_answers(main, tmp_path) -> None:
    t = np.array([1.0, 2.0, 3.0])
    pods = [({"pod": f"web-{i}"}, t, np.array([np.nan, v, v])) for i, v in enumerate((21, 34, 28))]
    startup = write(tmp_path, "startup.json", make.response(pods))
    users = write(tmp_path, "users.json", make.response([({}, t, np.array([900, 1200, 1100.4]))]))
    argv = sample("--pod-startup", startup, "--users", users, "--replicas", "6")
    assert main([*argv, "-o", str(tmp_path / "w.yaml"), "--no-report"]) == 0
    world = yaml.safe_load((tmp_path / "w.yaml").read_text())["world"]
    assert world["platform"] == {"replicas": 6, "podStartup": {"empirical": ["21s", "28s", "34s"]}}
    assert world["users"] == {"count": 1100}  # the last value of the unique-users gauge


def test_the_inline_default_policies_are_the_shipped_files() -> None:
    """DEFAULT_POLICIES (inline, for an installed package without scenarios/) are the seed
    practice's policy files, field for field."""
    from policies import load_policy, parse_policy
    from sim.fit.world import DEFAULT_POLICIES

    shipped = [
        ROOT / "scenarios/policies/canary-20-first.yaml",
        ROOT / "scenarios/policies/bluegreen.yaml",
    ]
    assert [parse_policy(p) for p in DEFAULT_POLICIES] == [load_policy(f) for f in shipped]


def test_given_policy_files_are_referenced_relative_to_the_scenario(main, tmp_path) -> None:
    out = tmp_path / "fitted" / "scenario.yaml"
    policy = ROOT / "scenarios/policies/canary-basic.yaml"
    args = sample("-o", str(out), "--scenario", "fitted", "--policy", str(policy))
    assert main([*args, "--horizon", "1h", "--users", "5000", "--no-report"]) == 0
    (ref,) = yaml.safe_load(out.read_text())["policies"]
    assert (out.parent / ref["file"]).resolve() == policy.resolve()
