"""The live executor's parts without HAProxy or Prometheus: fakes stand in for both.

These run everywhere in well under a minute; tests/test_live_bench.py runs the same executor
against the real binaries on the loopback bench.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest

from live.executor import EXIT, LiveExecutor, LiveSettings
from live.haproxy import HAProxyRouter, RouterError, split_weights
from live.journal import StateDir, decode_event, encode_action, encode_event
from live.prometheus import MetricsError, PrometheusMetrics, Reading
from live.queries import argo_query, label_matchers, prom_duration
from live.realise import canary_share, check_supported, has_gates, latency_gates
from policies import load_policy, policy_from_yaml
from policies.controller import (
    Approved,
    CanaryController,
    MeasurementTaken,
    PodsChanged,
    RollbackRequested,
    RolloutController,
    SetSelectors,
    Started,
    TimerFired,
)
from policies.errors import NotExpressibleError
from policies.exporters.promql import query_for
from policies.measures import Observation, Query, WindowStats

POLICIES = Path(__file__).resolve().parents[1] / "scenarios" / "policies"
SCALE = 0.01  # policy seconds -> wall seconds: a 100 s policy runs in one second

THRESHOLD = """
kind: Canary
name: unit-threshold
trafficRouting: {nginx: {}}
analysisTemplates:
  - name: sr
    metrics:
      - name: sr
        interval: 10s
        initialDelay: 10s
        successCondition: result[0] >= 0.95
        provider: {query: {measure: successRate, version: canary}}
analysis: {startingStep: 1, templates: [{templateName: sr}]}
steps:
  - setWeight: 20
  - pause: {duration: 50s}
  - setWeight: 50
  - pause: {duration: 50s}
"""

SPRT = """
kind: Canary
name: unit-sprt
trafficRouting: {nginx: {}}
analysisTemplates:
  - name: sprt
    metrics:
      - name: sprt
        interval: 10s
        initialDelay: 10s
        provider: {sequential: {test: sprt, relativeRisk: 2.0}}
analysis: {startingStep: 1, templates: [{templateName: sprt}]}
steps:
  - setWeight: 20
  - pause: {duration: 35s}
"""


# ----------------------------------------------------------------------------- fakes


class FakeRuntime:
    """HAProxy's runtime API in memory; ``down`` makes it unreachable, ``stuck`` ignores writes."""

    def __init__(self) -> None:
        self.weights = {"stable": 100, "canary": 0}
        self.down = False
        self.stuck = False
        self.writes: list[tuple[str, int]] = []

    def _check(self) -> None:
        if self.down:
            raise RouterError("HAProxy admin socket /fake unreachable: [Errno 2] No such file")

    def set_weight(self, backend, server, weight):
        self._check()
        self.writes.append((server, weight))
        if not self.stuck:
            self.weights[server] = weight

    def get_weight(self, backend, server):
        self._check()
        return self.weights[server]


class FakeMetrics:
    """Answers every window with the counts of a canary/stable error rate (exact means), or
    no data while ``down``."""

    def __init__(self, rate=100.0, stable_p=0.01, canary_p=0.01, router=None) -> None:
        self.rate, self.stable_p, self.canary_p = rate, stable_p, canary_p
        self.router = router
        self.down = False
        self.calls = 0

    def observe(self, window, end):
        self.calls += 1
        if self.down:
            return Reading(WindowStats(), WindowStats(), math.nan, end, "Prometheus down")
        share = self.router.api.weights["canary"] / 100 if self.router else 0.2
        n_c = round(self.rate * window * share / SCALE)
        n_s = round(self.rate * window * (1 - share) / SCALE)
        canary = WindowStats(n_c, round(n_c * self.canary_p))
        stable = WindowStats(n_s, round(n_s * self.stable_p))
        return Reading(canary, stable, end - window, end)


def make(policy_text, tmp_path, canary_p=0.01, **settings):
    policy = policy_from_yaml(policy_text)
    router = HAProxyRouter(FakeRuntime())
    metrics = FakeMetrics(canary_p=canary_p, router=router)
    values = {"time_scale": SCALE, "check_interval": 0.05, "scrape_delay": 0.0} | settings
    lines: list[str] = []
    executor = LiveExecutor(
        policy, router, metrics, StateDir(tmp_path / "state"), LiveSettings(**values), lines.append
    )
    return executor, router, metrics, lines


def router_records(state: StateDir) -> list[float]:
    return [r["share"] for r in state.records() if r["kind"] == "router"]


# ----------------------------------------------------------------------------- routing


def test_canary_share_follows_the_controllers_routing_picture() -> None:
    routed = RolloutController(policy_from_yaml(THRESHOLD), 10)
    pods = {"stable": 10, "canary": 2}
    routed.weight = 20.0
    assert canary_share(routed, pods) == pytest.approx(20.0)
    routed.selectors = (frozenset({"canary"}), frozenset({"canary"}))  # promoted
    routed.weight = 0.0
    assert canary_share(routed, pods) == pytest.approx(100.0)
    basic = RolloutController(policy_from_yaml("kind: Canary\nname: b\nsteps: [setWeight: 5]"), 3)
    basic.selectors = (frozenset({"stable", "canary"}), frozenset({"canary"}))
    assert canary_share(basic, {"stable": 3, "canary": 1}) == pytest.approx(25.0)  # N / N+1
    flagger = RolloutController(
        policy_from_yaml("kind: Progressive\nname: f\nanalysis: {stepWeight: 10}"), 4
    )
    flagger.selectors = (frozenset({"stable", "primary"}), frozenset({"canary"}))
    assert canary_share(flagger, {"stable": 1, "primary": 3, "canary": 0}) == pytest.approx(75.0)


def test_split_weights_are_percentages_of_whole_numbers() -> None:
    assert split_weights(20) == (80, 20)
    assert split_weights(33.4) == (67, 33)
    assert split_weights(0) == (100, 0) and split_weights(100) == (0, 100)


def test_unrealisable_policies_are_refused_naming_the_field() -> None:
    with pytest.raises(NotExpressibleError, match="ABTest"):
        check_supported(load_policy(POLICIES / "ab-test-header.yaml"))
    dns = "kind: BlueGreen\nname: bg\nswitch: dns\ndnsTtl: 60s"
    with pytest.raises(NotExpressibleError, match="switch: dns"):
        check_supported(policy_from_yaml(dns))
    assert has_gates(policy_from_yaml(THRESHOLD))
    assert not has_gates(policy_from_yaml("kind: Canary\nname: c\nsteps: [setWeight: 5]"))
    flagger = "kind: Progressive\nname: f\nanalysis:\n  stepWeight: 10\n  metrics:\n"
    flagger += "    - {name: request-duration, thresholdRange: {max: 500}}"
    assert latency_gates(policy_from_yaml(flagger)) == ["request-duration"]


# ----------------------------------------------------------------------------- the router


def test_router_reads_back_every_write_and_names_the_server_holding_traffic() -> None:
    router = HAProxyRouter(FakeRuntime())
    assert router.apply(20.0) == (80, 20)
    router.api.stuck = True
    with pytest.raises(RouterError, match="do not read back"):
        router.apply(50.0)
    router.api.stuck, router.api.down = False, True
    with pytest.raises(RouterError, match="unreachable"):
        router.verify()
    assert "be/canary (the canary) still holds 20 %" in router.holder()


def test_the_server_that_gains_is_written_first() -> None:
    """Never both at 0 between the writes (tests/test_live_safety.py has the failures)."""
    router = HAProxyRouter(FakeRuntime())
    router.apply(50.0)
    assert router.api.writes == [("canary", 50), ("stable", 50)]
    router.api.writes.clear()
    router.apply(0.0)
    assert router.api.writes == [("stable", 100), ("canary", 0)]


# ----------------------------------------------------------------------------- metrics


class FakeProm:
    def __init__(self, result=None, error=None) -> None:
        self.result, self.error = result or [], error
        self.url = "http://fake"

    def query(self, expr, at=None):
        if self.error:
            raise MetricsError(self.error)
        return {"result": self.result}


def series(server, code, points):
    return {"metric": {"server": server, "code": code}, "values": [[t, str(v)] for t, v in points]}


def test_window_counts_are_exact_differences_between_scrapes() -> None:
    ts = [100.0 + i for i in range(14)]
    result = [
        series("canary", "2xx", [(t, 10 * i) for i, t in enumerate(ts)]),
        series("canary", "5xx", [(t, i) for i, t in enumerate(ts)]),
        series("stable", "2xx", [(t, 40 * i) for i, t in enumerate(ts)]),
        series("stable", "5xx", [(t, 0) for t in ts]),
    ]
    reading = PrometheusMetrics(FakeProm(result)).observe(10.0, 113.4)
    assert reading.ok and (reading.start, reading.end) == (103.0, 113.0)
    assert reading.canary == WindowStats(110, 10)
    assert reading.stable == WindowStats(400, 0)


@pytest.mark.parametrize(
    ("prom", "end", "problem"),
    [
        (FakeProm(error="Prometheus at x unreachable: refused"), 110.0, "unreachable"),
        (FakeProm([series("canary", "2xx", [(100.0, 1), (101.0, 2)])]), 101.0, "no samples"),
        (
            FakeProm([series(s, "2xx", [(100.0, 1), (101.0, 2)]) for s in ("canary", "stable")]),
            130.0,
            "old",
        ),
    ],
)
def test_untrustworthy_windows_are_no_data_never_success(prom, end, problem) -> None:
    reading = PrometheusMetrics(prom).observe(10.0, end)
    assert not reading.ok and problem in reading.problem
    assert reading.canary.requests == 0  # the controller sees an empty window: NaN


def test_queries_use_haproxys_metric_names_and_the_argo_exporters_form() -> None:
    assert label_matchers("be", ("stable", "canary"), {"job": 'a"b'}) == (
        'proxy="be", server=~"stable|canary", job="a\\"b"'
    )
    assert prom_duration(2.5) == "2500ms" and prom_duration(10) == "10s"
    query = Query(measure="successRate")
    assert argo_query(query, "be", 10.0) == query_for(
        query, "haproxy", service="be", window=10.0, nan_filter=True
    )
    assert "haproxy_server_http_responses_total" in argo_query(query, "be", 10.0)
    assert argo_query(Query(measure="latency"), "be", 10.0) is None  # no histogram


# ----------------------------------------------------------------------------- the journal


def test_every_event_round_trips_through_the_log() -> None:
    obs = Observation(1.0, 11.0, WindowStats(10, 1, {0.99: 0.2}), WindowStats(40, 0))
    obs = Observation(1.0, 11.0, obs.canary, obs.stable, (obs,))
    events = [
        Started(),
        TimerFired("measure/background/sr"),
        PodsChanged({"stable": 10, "canary": 2}),
        MeasurementTaken("background", "sr", obs),
        Approved(),
        RollbackRequested("router"),
    ]
    for event in events:
        assert decode_event(json.loads(json.dumps(encode_event(event)))) == event
    record = encode_action(SetSelectors(frozenset({"canary"}), frozenset({"canary"})))
    assert record == {
        "type": "SetSelectors",
        "stable": ["canary"],
        "canary": ["canary"],
        "transition_s": 0.0,
    }


def test_a_torn_last_line_is_ignored_and_a_dead_pid_is_not_signalled(tmp_path) -> None:
    state = StateDir(tmp_path)
    state.append({"kind": "event", "event": {"type": "Started"}, "t": 1.0})
    with open(state.log, "a") as f:
        f.write('{"kind": "event", "ev')
    assert len(state.records()) == 1
    state.pid_file.write_text(json.dumps({"pid": 2**22 + 12345, "start": 1}))
    assert state.read_pid() is None
    state.write_pid()
    assert state.read_pid() is not None


# ----------------------------------------------------------------------------- the executor


def test_the_executor_drives_the_simulators_own_controller(tmp_path) -> None:
    executor, *_ = make(THRESHOLD, tmp_path)
    assert type(executor.ctl) is CanaryController  # policies.controller, not a copy


def test_a_good_canary_is_promoted_and_a_bad_one_rolled_back(tmp_path) -> None:
    executor, router, _, _ = make(THRESHOLD, tmp_path / "good")
    result = executor.run(until=time.time() + 10)
    assert (result.exit_code, result.status) == (EXIT["promoted"], "Promoted")
    assert router.api.weights == {"stable": 0, "canary": 100}
    assert router_records(executor.state) == [0.0, 20.0, 50.0, 100.0]
    executor, router, _, _ = make(THRESHOLD, tmp_path / "bad", canary_p=0.2)
    result = executor.run(until=time.time() + 10)
    assert (result.exit_code, result.status) == (EXIT["aborted"], "Aborted")
    assert "Analysis" in result.reason and result.detected_at == pytest.approx(0.1, abs=0.1)
    assert router.api.weights == {"stable": 100, "canary": 0}


def test_prometheus_down_is_an_error_and_aborts_never_promotes(tmp_path) -> None:
    executor, router, metrics, lines = make(THRESHOLD, tmp_path)
    metrics.down = True
    result = executor.run(until=time.time() + 10)
    assert result.status == "Aborted" and result.reason == "BackgroundAnalysisError"
    assert result.promoted_at is None and router.api.weights["canary"] == 0
    assert any("NO DATA (Prometheus down)" in line for line in lines)


def test_a_sequential_gate_without_data_cannot_promote(tmp_path) -> None:
    """An empty window is an Error for the SPRT as for any metric (nothing learnt, never a
    pass): five in a row abort, and the executor's missing-data hold backs that up."""
    executor, router, metrics, _ = make(SPRT, tmp_path, missing_data_timeout=0.3)
    threading.Timer(0.05, lambda: setattr(metrics, "down", True)).start()
    result = executor.run(until=time.time() + 10)
    assert result.status == "Aborted"
    assert result.reason in {"BackgroundAnalysisError", "RollbackRequested:missing-data"}
    assert result.promoted_at is None and router.api.weights["canary"] == 0


def test_a_short_metrics_outage_does_not_stop_a_good_release(tmp_path) -> None:
    """Fewer Errors in a row than consecutiveErrorLimit allows: the release goes on."""
    executor, _, metrics, _ = make(SPRT, tmp_path, missing_data_timeout=5.0)
    metrics.down = True
    # the first look (initialDelay 10 s) errs; Errors are retried every 10 s (0.1 s of wall
    # time here): even 0.3 s of thread jitter leaves fewer than the 5 in a row that abort
    threading.Timer(15 * SCALE, lambda: setattr(metrics, "down", False)).start()
    result = executor.run(until=time.time() + 10)
    assert result.status == "Promoted"


def test_router_gone_aborts_to_stable_or_exits_3_naming_the_server(tmp_path) -> None:
    executor, router, _, _ = make(THRESHOLD, tmp_path / "a")
    threading.Timer(0.05, lambda: setattr(router.api, "down", True)).start()
    result = executor.run(until=time.time() + 10)
    assert result.exit_code == EXIT["router"]
    assert "be/canary (the canary) still holds 20 %" in result.message
    assert executor.ctl.status == "Aborted"  # the controller was told, the router was not
    executor, router, _, _ = make(THRESHOLD, tmp_path / "b")
    threading.Timer(0.05, lambda: router.api.weights.update(canary=35)).start()  # drift
    result = executor.run(until=time.time() + 10)
    assert result.exit_code == EXIT["aborted"] and "router failure" in result.message
    assert router.api.weights == {"stable": 100, "canary": 0}


def test_a_stop_moves_traffic_to_the_stable_unless_left_as_is(tmp_path) -> None:
    for leave, expected in ((False, 0), (True, 20)):
        executor, router, _, _ = make(THRESHOLD, tmp_path / str(leave), leave_as_is=leave)
        threading.Timer(0.1, executor.inbox.stop).start()
        result = executor.run(until=time.time() + 10)
        assert result.exit_code == EXIT["interrupted"]
        assert router.api.weights["canary"] == expected


def test_resume_replays_the_log_and_reconciles_the_router(tmp_path) -> None:
    executor, router, _, _ = make(THRESHOLD, tmp_path)
    first = executor.run(until=time.time() + 0.75)  # stopped during the 50 % pause
    assert first.exit_code == EXIT["deadline"] and router.api.weights["canary"] == 0
    stopped = (executor.ctl.step_index, executor.ctl.weight, set(executor.ctl.timers))
    assert stopped[:2] == (3, 50.0)
    again, lines = make_again(executor)
    again._begin()  # the replay alone
    assert (again.ctl.step_index, again.ctl.weight, set(again.ctl.timers)) == stopped
    assert set(again.timers) == set(executor.timers)
    assert router.api.weights["canary"] == 50  # reconciled to the controller's weight
    assert any("resumed" in line and "3 events" not in line for line in lines)
    again, lines = make_again(executor)
    result = again.run(until=time.time() + 10)
    assert result.status == "Promoted"
    records = executor.state.records()
    resumes = [i for i, r in enumerate(records) if r["kind"] == "resume"]
    after = [r["share"] for r in records[resumes[-1] :] if r["kind"] == "router"]
    assert after == [50.0, 100.0]  # it went on from 50 %, not from the first step


def make_again(executor):
    lines: list[str] = []
    again = LiveExecutor(
        executor.policy,
        executor.router,
        executor.metrics,
        executor.state,
        executor.settings,
        lines.append,
    )
    return again, lines


def test_approval_and_abort_requests(tmp_path) -> None:
    manual = THRESHOLD.replace("pause: {duration: 50s}", "pause: {}")
    executor, _, _, _ = make(manual, tmp_path / "approve")
    threading.Timer(0.1, executor.inbox.approve).start()
    threading.Timer(0.3, executor.inbox.approve).start()
    assert executor.run(until=time.time() + 10).status == "Promoted"
    executor, _, _, _ = make(manual, tmp_path / "abort")
    threading.Timer(0.1, executor.inbox.abort).start()
    result = executor.run(until=time.time() + 10)
    assert (result.status, result.reason) == ("Aborted", "RollbackRequested:human")
    assert result.detected_at is None  # a human, not a gate


PROGRESSIVE = """
kind: Progressive
name: unit-progressive
provider: nginx
analysis:
  interval: 10s
  threshold: 2
  maxWeight: 50
  stepWeight: 25
  metrics:
    - {name: request-success-rate, interval: 10s, thresholdRange: {min: 95}}
"""


@pytest.mark.parametrize(
    ("text", "shares"),
    [
        (PROGRESSIVE, [0.0, 25.0, 50.0]),  # Flagger; then the primary takes over pod by pod
        ((POLICIES / "bluegreen.yaml").read_text(), [0.0, 100.0]),  # a selector switch
        ((POLICIES / "canary-basic.yaml").read_text(), None),  # traffic follows pods
        ((POLICIES / "rolling-update.yaml").read_text(), None),
    ],
)
def test_every_kind_becomes_a_share_and_reaches_the_new_version(tmp_path, text, shares) -> None:
    fast = {"time_scale": 0.002, "replicas": 4, "approve_after": 0.05}
    executor, router, _, _ = make(text, tmp_path, **fast)
    result = executor.run(until=time.time() + 20)
    assert result.status == "Promoted", result
    assert router.api.weights == {"stable": 0, "canary": 100}
    seen = router_records(executor.state)
    assert seen == sorted(seen) and seen[-1] == 100.0
    if shares is not None:
        assert seen[: len(shares)] == shares


def test_flagger_statuses_name_the_weight_and_failed_checks_not_the_tick_count(tmp_path):
    """Flagger's ticks include waiting and failed ones: the live log says where the canary is as
    Flagger's status does (weight, failed checks); an Argo canary says its step."""
    fast = {"time_scale": 0.002, "replicas": 4}
    executor, _, _, lines = make(PROGRESSIVE, tmp_path / "f", canary_p=0.2, **fast)
    assert executor.run(until=time.time() + 20).status == "Aborted"
    said = [line.split("] ", 1)[1] for line in lines if "] status " in line]
    assert said == [
        "status Progressing: RolloutStarted (at weight 0, failed checks 0)",
        "status Progressing: FailedCheck (at weight 25, failed checks 1)",
        "status Aborted: FailedChecksThreshold (at weight 25, failed checks 2)",
    ]
    executor, *_, lines = make(THRESHOLD, tmp_path / "a")
    executor.run(until=time.time() + 10)
    last = [line for line in lines if "] status " in line][-1]
    assert last.endswith("status Promoted: RolloutCompleted (step 4)")


# THRESHOLD's first step alone, its pause 30 s: the third measurement (30 s) is due at the
# instant the pause ends
TIE = THRESHOLD.split("  - pause: {duration: 50s}")[0] + "  - pause: {duration: 30s}\n"


class SlowMetrics(FakeMetrics):
    """Answers like ``FakeMetrics`` after ``latency`` wall seconds, and keeps each window's end."""

    def __init__(self, latency: float, **kw) -> None:
        super().__init__(**kw)
        self.latency, self.ends = latency, []

    def observe(self, window, end):
        self.ends.append(end)
        time.sleep(self.latency)
        return super().observe(window, end)


def test_timers_count_from_their_deadlines_and_ties_fire_in_the_simulators_order(tmp_path):
    """A slow query (a fifth of the interval here) must not push the next measurement later,
    and the measurement due at the instant the last pause ends comes before the promotion, as
    in the simulator (issue #20: the live SPRT gate lost that window and promoted more often)."""
    from sim.engine.replication import simulate
    from sim.world.model import World

    executor, router, _, _ = make(TIE, tmp_path)
    metrics = executor.metrics = SlowMetrics(0.2 * 10 * SCALE, router=router)
    result = executor.run(until=time.time() + 10)
    assert result.status == "Promoted"
    measured = [r for r in executor.state.records() if r["kind"] == "measure"]
    assert len(measured) == 3  # the promotion's probe also reads a window: not a measurement
    t0 = executor.t0
    assert [round((end - t0) / SCALE, 4) for end in metrics.ends[:3]] == [10.0, 20.0, 30.0]
    assert result.promoted_at == pytest.approx(30 * SCALE)
    world = World.model_validate(
        {
            "horizon": "60s",
            "traffic": {"rate": 100},
            "users": {"count": 100},
            "platform": {"replicas": 10, "podStartup": 0, "routerDelay": 0},
            "operators": {"alerts": []},
            "releases": [{"name": "good", "probability": 1.0}],
        }
    )
    outcome = simulate(world, executor.policy, "good", 1)
    assert outcome.rollout_duration == 30.0  # the simulator promotes at the same instant


def test_a_resume_after_a_long_stop_neither_skips_a_pause_nor_refires_a_timer(tmp_path):
    """Timers restored from the log whose deadlines passed while the executor was down happen
    at the resume, not at their old deadlines (which would fire the rest of the rollout at
    once); and a timer that fired before the stop does not fire again (it would end a manual
    pause nobody approved)."""
    text = THRESHOLD.replace(
        "  - pause: {duration: 50s}\n", "  - pause: {duration: 10s}\n  - pause: {}\n", 1
    )
    executor, router, _, _ = make(text, tmp_path)
    first = executor.run(until=time.time() + 0.3)  # stopped in the manual pause
    assert first.exit_code == EXIT["deadline"] and executor.ctl.status == "Paused"
    time.sleep(1.2)  # down for longer than the rest of the rollout's timers
    again, _ = make_again(executor)
    result = again.run(until=time.time() + 1.0)
    assert result.exit_code == EXIT["deadline"]  # still waiting for an approval
    assert again.ctl.status == "Paused" and router.api.weights["canary"] == 0
    again, _ = make_again(executor)
    threading.Timer(0.1, again.inbox.approve).start()
    started = time.time()
    result = again.run(until=time.time() + 10)
    assert result.status == "Promoted"
    assert time.time() - started >= 50 * SCALE  # the 50 % pause ran in full after the resume
