"""The live executor fails safe (issue #13, "Live"): fakes for HAProxy, Prometheus and stdout.

Each test names the hazard it guards: a switch through weights 0/0, an exit message that
claims the stable holds traffic when it does not, a print or log that fails before traffic
moves, SIGTERM and SIGHUP, a stale stable series read as 0 requests, a counter reset missed.
tests/test_live_bench.py runs the same cases that need real processes on the loopback bench.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from test_live_units import THRESHOLD, FakeProm, FakeRuntime, make, series

from live.executor import EXIT
from live.haproxy import HAProxyRouter, RouterError
from live.journal import StateDir
from live.prometheus import PrometheusMetrics
from policies.measures import WindowStats


class RecordingRuntime(FakeRuntime):
    """Keeps the weights after every write; ``fail`` names servers whose writes raise (a
    socket error mid-switch) and ``unreadable`` makes every read fail."""

    def __init__(self, stable: int = 100, canary: int = 0) -> None:
        super().__init__()
        self.weights = {"stable": stable, "canary": canary}
        self.states: list[tuple[int, int]] = []
        self.fail: set[str] = set()
        self.unreadable = False

    def set_weight(self, backend, server, weight):
        if server in self.fail:
            raise RouterError(f"HAProxy admin socket /fake unreachable: write to {server} failed")
        super().set_weight(backend, server, weight)
        self.states.append((self.weights["stable"], self.weights["canary"]))

    def get_weight(self, backend, server):
        if self.unreadable:
            raise RouterError("HAProxy 'get weight' replied ''")
        return super().get_weight(backend, server)


def share(weights: tuple[int, int]) -> float:
    s, c = weights
    return 100.0 * c / (s + c)


# ----------------------------------------------------------------------------- 0/0


@pytest.mark.parametrize(
    "path", [[100, 0, 100], [20, 50, 100], [100, 20, 0], [33, 67, 0, 50], [0, 0, 100]]
)
def test_no_switch_passes_through_zero_zero(path) -> None:
    """Raise the side that gains, then lower the side that loses: between the two writes the
    canary's share lies between the old one and the new one, and never is every weight 0."""
    api = RecordingRuntime()
    router = HAProxyRouter(api)
    before = 0.0
    for target in path:
        api.states.clear()
        assert router.apply(target) == (100 - target, target)
        for state in api.states:
            assert sum(state) > 0, f"{before} -> {target} passed through {state}"
            low, high = sorted((before, float(target)))
            assert low - 1e-9 <= share(state) <= high + 1e-9
        before = float(target)


def test_unknown_weights_write_the_larger_one_first() -> None:
    api = RecordingRuntime(stable=0, canary=100)
    api.unreadable = True  # the reads fail, the writes go through
    router = HAProxyRouter(api)
    with pytest.raises(RouterError, match="cannot read it back"):
        router.apply(0.0)
    assert api.writes == [("stable", 100), ("canary", 0)]
    assert api.states == [(100, 100), (100, 0)]


# ----------------------------------------------------------------------------- who holds traffic


def test_a_failed_second_write_names_who_really_holds_traffic() -> None:
    """Back from all-canary: the stable is raised, the canary write fails. HAProxy has
    100/100, so the canary still holds half the traffic — and the error says so."""
    api = RecordingRuntime()
    router = HAProxyRouter(api)
    router.apply(100.0)
    api.fail = {"canary"}
    with pytest.raises(RouterError) as caught:
        router.apply(0.0)
    assert api.weights == {"stable": 100, "canary": 100}
    message = str(caught.value)
    assert "read back: be/stable=100 be/canary=100" in message
    assert "be/canary (the canary) still holds 50 % of traffic" in message
    assert "holds all traffic" not in message
    assert "still holds 50 %" in router.holder() and "read back" in router.holder()


def test_a_failed_first_write_leaves_the_old_weights_and_says_so() -> None:
    api = RecordingRuntime()
    router = HAProxyRouter(api)
    api.fail = {"canary"}  # promoting: the canary gains, so it is written first, and fails
    with pytest.raises(RouterError, match="be/stable holds all traffic"):
        router.apply(100.0)
    assert api.weights == {"stable": 100, "canary": 0} and api.writes == []


def test_a_router_that_cannot_be_read_is_unknown_never_the_stable() -> None:
    api = RecordingRuntime()
    router = HAProxyRouter(api)
    api.unreadable = True
    assert router.holder().startswith("unknown: HAProxy cannot be read")
    api.unreadable = False
    router.apply(20.0)
    api.unreadable = True
    holder = router.holder()
    assert holder.startswith("unknown now") and "when last read back" in holder
    assert "still holds 20 %" in holder


def test_exit_3_names_the_weights_haproxy_reads_back(tmp_path) -> None:
    """The executor's abort to the stable half fails (the canary write): exit 3, and the
    message names the 50/50 HAProxy really has, not 'the stable holds all traffic'."""
    executor, router, _, _ = make(THRESHOLD, tmp_path)
    runtime = RecordingRuntime()
    router.api = runtime

    def break_it() -> None:
        runtime.fail = {"canary"}
        runtime.weights["stable"] = 90  # drift: the executor aborts to the stable
        runtime.weights["canary"] = 20

    threading.Timer(0.1, break_it).start()
    result = executor.run(until=time.time() + 10)
    assert result.exit_code == EXIT["router"], result
    assert runtime.weights == {"stable": 100, "canary": 20}
    assert "still holds 16.7 % of traffic" in result.message
    assert "read back: be/stable=100 be/canary=20" in result.message


# ----------------------------------------------------------------------------- traffic first


class BrokenState(StateDir):
    """A journal that fails (a full disk) once ``broken`` is set."""

    broken = False

    def append(self, record, durable=False):
        if self.broken:
            raise OSError(28, "No space left on device")
        super().append(record, durable)


def failing_out(flag: dict):
    def out(_line: str) -> None:
        if flag.get("broken"):
            raise OSError(5, "Input/output error")  # the terminal is gone

    return out


def test_after_a_router_failure_traffic_moves_before_any_print_or_log(tmp_path) -> None:
    """From the router failure on, stdout and the journal fail: the first print about it
    already finds all traffic on the stable, and the clean-up still ends with exit 1."""
    executor, router, _, _ = make(THRESHOLD, tmp_path)
    executor.state = state = BrokenState(executor.state.path)
    seen: list[dict] = []

    def out(line: str) -> None:
        if "ROUTER FAILURE" in line:
            seen.append(dict(router.api.weights))
            state.broken = True
        if state.broken:
            raise OSError(5, "Input/output error")  # the terminal is gone

    executor._out = out
    threading.Timer(0.1, lambda: router.api.weights.update(canary=35)).start()  # drift
    result = executor.run(until=time.time() + 10)
    assert seen == [{"stable": 100, "canary": 0}]
    assert router.api.weights == {"stable": 100, "canary": 0}
    assert result.exit_code == EXIT["aborted"] and "aborted to the stable" in result.message


def test_an_io_error_while_running_moves_traffic_then_raises(tmp_path) -> None:
    executor, router, _, _ = make(THRESHOLD, tmp_path)
    flag: dict = {}
    executor._out = failing_out(flag)
    threading.Timer(0.1, lambda: flag.update(broken=True)).start()
    with pytest.raises(OSError, match="Input/output error"):
        executor.run(until=time.time() + 10)
    assert router.api.weights == {"stable": 100, "canary": 0}


# ----------------------------------------------------------------------------- signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("leave", [False, True])
def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path, signum, leave) -> None:
    executor, router, _, _ = make(THRESHOLD, tmp_path, leave_as_is=leave)
    before = signal.getsignal(signum)

    def kill_at_20() -> None:
        deadline = time.time() + 5
        while router.api.weights["canary"] != 20 and time.time() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signum)

    threading.Thread(target=kill_at_20).start()
    result = executor.run(until=time.time() + 10)
    assert result.exit_code == EXIT["interrupted"], result
    assert router.api.weights["canary"] == (20 if leave else 0)
    assert f"stopped ({signal.Signals(signum).name})" in result.message
    assert signal.getsignal(signum) == before  # the command line's handler is back


def test_the_live_run_takes_over_rolloutsims_own_stop_handler(tmp_path) -> None:
    """rolloutsim's CLI raises KeyboardInterrupt on SIGTERM/SIGHUP (run, sweep, tune); inside
    a live run the executor's handling takes over: no exception between two router writes,
    ``--leave-as-is`` honoured."""
    from rolloutsim.cli import _stop_on_signals  # the CLI's handler, as `rolloutsim live` runs

    executor, router, _, _ = make(THRESHOLD, tmp_path, leave_as_is=True)
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGHUP)).start()
    with _stop_on_signals():
        result = executor.run(until=time.time() + 10)
    assert result.exit_code == EXIT["interrupted"] and router.api.weights["canary"] > 0


# ----------------------------------------------------------------------------- metrics


TS = [100.0 + i for i in range(14)]


def steady(server, per_scrape=10, errors=1, times=TS):
    return [
        series(server, "2xx", [(t, (per_scrape - errors) * i) for i, t in enumerate(times)]),
        series(server, "5xx", [(t, errors * i) for i, t in enumerate(times)]),
    ]


def test_a_stale_stable_series_is_no_data_not_zero_requests() -> None:
    """The stable's scrapes stopped 6 s ago while the canary's go on: reading its last value
    at both edges gave 0 requests, and SPRT/Kayenta compared the canary with nothing."""
    result = steady("canary") + steady("stable", times=TS[:8])
    reading = PrometheusMetrics(FakeProm(result)).observe(10.0, 113.4)
    assert not reading.ok and "be/stable" in reading.problem and "end" in reading.problem
    assert reading.stable.requests == 0 and reading.canary.requests == 0


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (steady("canary") + steady("stable")[:1], "no 5xx series for be/stable"),
        (steady("canary") + steady("stable") + steady("stable")[1:], "several series"),
        (
            [*steady("canary"), series("stable", "2xx", [(t, "NaN") for t in TS])],
            "NaN",
        ),
        (  # a series born inside the window: its start is missing
            steady("canary") + steady("stable", times=TS[5:]),
            "be/stable",
        ),
    ],
)
def test_missing_samples_on_either_version_are_no_data(result, problem) -> None:
    reading = PrometheusMetrics(FakeProm(result)).observe(10.0, 113.4)
    assert not reading.ok and problem in reading.problem


def test_a_counter_reset_inside_the_window_is_counted_as_increase_counts_it() -> None:
    """HAProxy restarted at t=108: the canary's counters fell to 0 and grew past where they
    were. End minus start (30) missed it; increase() adds each post-reset value."""
    values = [0, 10, 20, 30, 40, 50, 60, 70, 80, 5, 15, 25, 35, 45]  # t = 100 ... 113
    five = [v // 5 for v in values]
    result = [
        series("canary", "2xx", [(t, v - e) for t, v, e in zip(TS, values, five, strict=True)]),
        series("canary", "5xx", list(zip(TS, five, strict=True))),
        *steady("stable"),
    ]
    reading = PrometheusMetrics(FakeProm(result)).observe(10.0, 113.4)
    assert reading.ok and (reading.start, reading.end) == (103.0, 113.0)
    # answers 30 -> 80 is 50, the reset 5, then 5 -> 45 is 40: 95 (end - start said 15);
    # 5xx 6 -> 16 is 10, the reset 1, then 1 -> 9 is 8: 19
    assert reading.canary == WindowStats(95, 19)
    assert reading.stable == WindowStats(100, 10)
