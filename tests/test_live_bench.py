"""The live executor on the loopback bench: real HAProxy, real Prometheus, real signals.

One bench serves the whole module (starting Prometheus costs ~6 s); each test leaves it as it
found it — weights 100/0, Prometheus running, the admin socket in place. Policies run at a
time scale of 0.2, so a 10 s window is 2 s of wall clock (two 1 s scrapes and more).
Skipped only when the haproxy or prometheus binary is missing; CI installs both with
``apt-get install -y --no-install-recommends haproxy prometheus``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from live.bench import BackendSpec, Bench, binaries_missing
from live.executor import EXIT, LiveExecutor, LiveSettings
from live.haproxy import HAProxyRouter, RouterError, RuntimeAPI
from live.journal import StateDir
from policies import policy_from_yaml

pytestmark = pytest.mark.skipif(
    bool(binaries_missing()),
    reason=f"{' and '.join(binaries_missing())} not installed "
    "(apt-get install -y --no-install-recommends haproxy prometheus)",
)

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.2
RATE = 100.0

CANARY = """
kind: Canary
name: {name}
trafficRouting: {{nginx: {{}}}}
analysisTemplates:
  - name: sr
    metrics:
      - name: sr
        interval: 10s
        initialDelay: {delay}
        successCondition: result[0] >= 0.95
        provider: {{query: {{measure: successRate, version: canary}}}}
analysis: {{startingStep: {start}, templates: [{{templateName: sr}}]}}
steps:
{steps}
"""


def canary(name, steps, delay="20s", start=1) -> str:
    body = "\n".join(f"  - {s}" for s in steps)
    return CANARY.format(name=name, delay=delay, start=start, steps=body)


TWO_STEPS = canary(
    "bench-two-steps",
    ["setWeight: 20", "pause: {duration: 25s}", "setWeight: 50", "pause: {duration: 25s}"],
)
LONG = canary("bench-long", ["setWeight: 20", "pause: {duration: 300s}"])


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    with Bench(
        tmp_path_factory.mktemp("bench"),
        stable=BackendSpec(0.01, 0.001, seed=1),
        canary=BackendSpec(0.01, 0.001, seed=2),
    ) as b:
        load = b.load(RATE, 600.0, seed=3)  # bounded; stopped by PID at the end
        yield b
        load.stop()


@pytest.fixture
def clean(bench):
    """Each test starts and ends with all traffic on the stable and a good canary."""
    bench.set_backend("canary", error_rate=0.01)
    bench.reset_weights()
    yield bench
    if not bench.socket.exists() and bench.socket.with_suffix(".gone").exists():
        bench.socket.with_suffix(".gone").rename(bench.socket)
    bench.start_prometheus()
    bench.set_backend("canary", error_rate=0.01)
    bench.reset_weights()


def execute(bench, policy_text, tmp_path, *, until=60.0, on_line=None, **settings):
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    values = {"time_scale": SCALE, "check_interval": 0.5} | settings
    executor = LiveExecutor(
        policy_from_yaml(policy_text),
        bench.router(),
        bench.metrics(),
        StateDir(tmp_path / "state"),
        LiveSettings(**values),
        out,
    )
    result = executor.run(until=time.time() + until)
    return result, lines, executor


def weights(bench) -> tuple[int, int]:
    return bench.router().read()


def test_a_good_canary_is_promoted(clean, tmp_path) -> None:
    result, lines, executor = execute(clean, TWO_STEPS, tmp_path)
    assert (result.exit_code, result.status) == (EXIT["promoted"], "Promoted"), lines
    assert weights(clean) == (0, 100)
    measures = [r for r in executor.state.records() if r["kind"] == "measure"]
    assert measures and all(m["problem"] is None and m["canary"][0] > 0 for m in measures)
    # the Argo exporter's own query, evaluated beside the counts, says the same (its rate()
    # reads one scrape less of the window, so only roughly: a unit or sign slip would show)
    for m in measures:
        requests, errors = m["canary"]
        assert "haproxy_server_http_responses_total" in m["argo_query"]
        assert m["argo_value"] == pytest.approx(1 - errors / requests, abs=0.15)


def test_a_bad_canary_is_rolled_back_by_its_gate(clean, tmp_path) -> None:
    clean.set_backend("canary", error_rate=0.5)
    result, lines, _ = execute(clean, TWO_STEPS, tmp_path)
    assert (result.exit_code, result.status) == (EXIT["aborted"], "Aborted"), lines
    assert result.reason == "BackgroundAnalysisFailed"
    assert result.detected_at == pytest.approx(20 * SCALE, abs=0.5)  # its first window
    assert weights(clean) == (100, 0)


def test_a_window_without_canary_traffic_is_no_data_and_aborts(clean, tmp_path) -> None:
    """The analysis starts before any weight: NaN windows are Errors (Argo), five in a row
    abort — they never count as success."""
    policy = canary("bench-nan", ["pause: {duration: 300s}", "setWeight: 20"], delay="20s", start=0)
    result, lines, _ = execute(clean, policy, tmp_path)
    assert (result.status, result.reason) == ("Aborted", "BackgroundAnalysisError"), lines
    assert sum("no canary traffic" in line for line in lines) == 5
    assert weights(clean) == (100, 0)


def test_prometheus_stopped_mid_run_never_promotes(clean, tmp_path) -> None:
    """Prometheus is stopped after the first good window; the pause ends while the metrics
    are missing: the promotion is held, the Errors mount up, the rollout aborts."""
    policy = canary("bench-prom", ["setWeight: 20", "pause: {duration: 40s}"])
    stopped = []

    def on_line(line: str) -> None:
        if "measure" in line and "5xx" in line and not stopped:
            stopped.append(time.time())
            threading.Thread(target=clean.stop_prometheus).start()

    result, lines, _ = execute(clean, policy, tmp_path, on_line=on_line)
    assert stopped, lines
    assert result.status == "Aborted" and result.promoted_at is None, lines
    assert result.reason in ("BackgroundAnalysisError", "RollbackRequested:missing-data")
    assert any("NO DATA" in line and "unreachable" in line for line in lines)
    assert weights(clean) == (100, 0)


def test_admin_socket_gone_exits_3_naming_the_server_with_traffic(clean, tmp_path) -> None:
    def on_line(line: str) -> None:
        if "router: canary 20 %" in line:
            clean.socket.rename(clean.socket.with_suffix(".gone"))

    result, lines, _ = execute(clean, LONG, tmp_path, on_line=on_line)
    assert result.exit_code == EXIT["router"], lines
    assert "be/canary (the canary) still holds 20 %" in result.message
    clean.socket.with_suffix(".gone").rename(clean.socket)
    assert weights(clean) == (80, 20)  # the message told the truth


class CanaryWriteFails(RuntimeAPI):
    """The real admin socket, except that writes to the canary server go to a socket that is
    not there: a real socket error, mid-switch."""

    def command(self, line: str) -> str:
        if line.startswith("set weight be/canary "):
            return RuntimeAPI(self.address + ".gone").command(line)
        return super().command(line)


def test_a_write_failing_mid_switch_never_leaves_zero_zero(clean) -> None:
    """Back from all-canary the stable is raised first, so a failed canary write leaves
    100/100 (half the traffic still on the canary, and the error says so), never 0/0; a
    promotion's first write is the canary's: failing, it leaves the stable with everything."""
    failing = HAProxyRouter(CanaryWriteFails(str(clean.socket)))
    clean.router().apply(100.0)
    with pytest.raises(RouterError) as back:
        failing.apply(0.0)
    assert weights(clean) == (100, 100)
    assert "read back: be/stable=100 be/canary=100" in str(back.value)
    assert "be/canary (the canary) still holds 50 % of traffic" in str(back.value)
    clean.reset_weights()
    with pytest.raises(RouterError, match="so be/stable holds all traffic"):
        failing.apply(100.0)
    assert weights(clean) == (100, 0)


def live_cli(*args: str, module: str = "live") -> list[str]:
    """``python -m live live ...``, or with module "rolloutsim" the whole CLI's ``live``."""
    return [sys.executable, "-m", module, "live", *args]


def start_cli(
    bench, policy_file: Path, state: Path, *extra: str, module: str = "live"
) -> subprocess.Popen:
    argv = live_cli(
        str(policy_file),
        "--haproxy-socket",
        str(bench.socket),
        "--prometheus",
        bench.prometheus_url,
        "--state",
        str(state),
        "--time-scale",
        str(SCALE),
        "--check-interval",
        "0.5",
        *extra,
        module=module,
    )
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_share(state: Path, share: float, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for record in StateDir(state).records():
            if record["kind"] == "router" and record["share"] == share:
                return
        time.sleep(0.05)
    raise AssertionError(f"the executor never routed {share} % (see {state})")


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode()


@pytest.mark.parametrize("leave", [False, True])
def test_ctrl_c_moves_traffic_to_the_stable_unless_left_as_is(clean, tmp_path, leave) -> None:
    policy = tmp_path / "long.yaml"
    policy.write_text(LONG)
    extra = ("--leave-as-is",) if leave else ()
    proc = start_cli(clean, policy, tmp_path / "state", *extra)
    wait_for_share(tmp_path / "state", 20.0)
    os.kill(proc.pid, signal.SIGINT)
    code, out = finish(proc)
    assert code == EXIT["interrupted"], out
    assert weights(clean) == ((80, 20) if leave else (100, 0)), out


def test_sigterm_to_rolloutsim_live_moves_traffic_to_the_stable(clean, tmp_path) -> None:
    policy = tmp_path / "long.yaml"
    policy.write_text(LONG)
    proc = start_cli(clean, policy, tmp_path / "state", module="rolloutsim")
    wait_for_share(tmp_path / "state", 20.0)
    os.kill(proc.pid, signal.SIGTERM)
    code, out = finish(proc)
    assert code == EXIT["interrupted"], out
    assert "stopped (SIGTERM): traffic moved to the stable" in out
    assert weights(clean) == (100, 0), out


def test_sighup_with_the_terminal_gone_still_moves_traffic(clean, tmp_path) -> None:
    """The terminal closed (its output now fails) and SIGHUP arrives: traffic moves to the
    stable before the executor tries to say so."""
    policy = tmp_path / "long.yaml"
    policy.write_text(LONG)
    proc = start_cli(clean, policy, tmp_path / "state")
    wait_for_share(tmp_path / "state", 20.0)
    proc.stdout.close()  # every later print of the executor's fails (EPIPE)
    os.kill(proc.pid, signal.SIGHUP)
    proc.wait(30)
    assert weights(clean) == (100, 0)
    stopped = [r for r in StateDir(tmp_path / "state").records() if r["kind"] == "interrupted"]
    assert stopped and stopped[0]["signal"] == "SIGHUP"


def test_resume_after_a_kill_replays_and_reconciles(clean, tmp_path) -> None:
    policy = tmp_path / "two.yaml"
    policy.write_text(TWO_STEPS)
    state = tmp_path / "state"
    proc = start_cli(clean, policy, state)
    wait_for_share(state, 50.0)
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up at all
    proc.wait(10)
    clean.reset_weights()  # and someone moved the traffic meanwhile
    code, out = finish(start_cli(clean, policy, state))
    assert code == EXIT["promoted"], out
    assert "resumed 'bench-two-steps'" in out
    records = StateDir(state).records()
    resumed = max(i for i, r in enumerate(records) if r["kind"] == "resume")
    shares = [r["share"] for r in records[resumed:] if r["kind"] == "router"]
    assert shares == [50.0, 100.0], out  # reconciled to 50 %, then on: not from step 0
    assert weights(clean) == (0, 100)


def test_promote_and_abort_commands_reach_the_running_executor(clean, tmp_path) -> None:
    manual = canary("bench-manual", ["setWeight: 20", "pause: {}"])
    policy = tmp_path / "manual.yaml"
    policy.write_text(manual)
    for command, expected, code in (("promote", (0, 100), 0), ("abort", (100, 0), 1)):
        state = tmp_path / command
        proc = start_cli(clean, policy, state)
        wait_for_share(state, 20.0)
        deadline = time.time() + 10
        while "Paused" not in json.dumps(StateDir(state).records()) and time.time() < deadline:
            time.sleep(0.05)
        sent = subprocess.run(
            live_cli(command, "--state", str(state)), cwd=ROOT, capture_output=True, text=True
        )
        assert sent.returncode == 0, sent.stderr
        got, out = finish(proc)
        assert got == code, out
        assert weights(clean) == expected
        clean.reset_weights()
