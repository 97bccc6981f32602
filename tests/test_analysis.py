"""Argo AnalysisRun verdict rules (reference/argo-rollouts.md §4), table-driven.

Each metric measures the canary's error rate (errors per 1,000 requests) so that a test picks
the measured value directly; an empty window (0 requests, series unknown) is a query with no
result: an Error wherever a condition reads it.
"""

from __future__ import annotations

import pytest

from policies.analysis import (
    ERROR_RETRY_INTERVAL_S,
    AnalysisRun,
    AnalysisTemplate,
    Metric,
    Phase,
)
from policies.base import validate_model
from policies.errors import PolicyError
from policies.measures import Observation, Query, WindowStats

S, F, INC, E, R = (
    Phase.SUCCESSFUL,
    Phase.FAILED,
    Phase.INCONCLUSIVE,
    Phase.ERROR,
    Phase.RUNNING,
)
GOOD, BAD, MIDDLE, EMPTY = 0.01, 0.20, 0.07, None
BOTH = {"successCondition": "result < 0.05", "failureCondition": "result > 0.10"}


def obs(rate: float | None) -> Observation:
    """One window whose canary error rate is ``rate``; None is a window with no traffic."""
    canary = WindowStats() if rate is None else WindowStats(1000, round(rate * 1000))
    return Observation(0.0, 60.0, canary, WindowStats(1000, 0))


def metric(name: str = "m", **fields) -> dict:
    data = {"name": name, "provider": {"query": {"measure": "errorRate"}}}
    data.update(fields)
    return data


def run_of(*metrics: dict, dry_run: tuple[str, ...] = ()) -> AnalysisRun:
    template = validate_model(
        AnalysisTemplate,
        {
            "name": "t",
            "metrics": list(metrics),
            "dryRun": [{"metricName": p} for p in dry_run],
        },
    )
    return AnalysisRun([template])


def feed(run: AnalysisRun, name: str, rates) -> list[Phase]:
    """Measure ``name`` once per rate; the metric phase after each measurement."""
    phases = []
    for rate in rates:
        run.measure(name, obs(rate))
        phases.append(run.metrics[name].phase)
    return phases


# --------------------------------------------------------------------------- §4.2 EvaluateResult


@pytest.mark.parametrize(
    ("conditions", "rate", "expected"),
    [
        ({}, BAD, S),  # both conditions empty -> Successful (code, not the docs)
        ({"successCondition": "result < 0.05"}, GOOD, S),
        ({"successCondition": "result < 0.05"}, BAD, F),  # only success: false -> Failed
        ({"failureCondition": "result > 0.10"}, BAD, F),
        ({"failureCondition": "result > 0.10"}, MIDDLE, S),  # only failure: false -> Successful
        (BOTH, GOOD, S),
        (BOTH, BAD, F),
        (BOTH, MIDDLE, INC),  # neither true -> Inconclusive
        # both true: failure wins
        ({"successCondition": "result < 0.5", "failureCondition": "result > 0.1"}, BAD, F),
        (BOTH, EMPTY, E),  # an empty query result is an Error, not a verdict
    ],
)
def test_evaluate_result(conditions, rate, expected):
    run = run_of(metric(**conditions))
    assert run.measure("m", obs(rate)) == expected


# ------------------------------------------------- §4.2 NaN and empty results (Prometheus provider)

NAN, NO_SERIES, UNKNOWN = "nan", "no-series", "unknown"
"""Windows without a canary request: series exist (0/0 = NaN), none exist (an empty result
vector), or the engine did not say (``has_series`` None: taken as empty, the older rule)."""


def quiet(kind: str) -> Observation:
    series = {NAN: True, NO_SERIES: False, UNKNOWN: None}[kind]
    return Observation(0.0, 60.0, WindowStats(has_series=series), WindowStats(1000, 0))


def success_rate(nan_filter: bool = False, **conditions) -> dict:
    """The Argo docs' success-rate query (no NaN filter unless asked)."""
    query = {"measure": "successRate", "nanFilter": nan_filter}
    return metric(provider={"query": query}, **conditions)


GUARD_NAN = "isNaN(result[0]) || result[0] >= 0.95"
GUARD_EMPTY = "len(result) == 0 || result[0] >= 0.95"


@pytest.mark.parametrize(
    ("conditions", "window", "expected"),
    [
        # Argo docs' success rate: NaN >= 0.95 is false -> Failed (not an Error)
        ({"successCondition": "result[0] >= 0.95"}, NAN, F),
        ({"successCondition": GUARD_NAN}, NAN, S),  # the docs' guard
        ({"successCondition": GUARD_EMPTY}, NAN, F),  # a length guard does not cover NaN
        # only an empty vector is an Error: result[0] is out of range
        ({"successCondition": "result[0] >= 0.95"}, NO_SERIES, E),
        ({"successCondition": GUARD_EMPTY}, NO_SERIES, S),  # short-circuits before result[0]
        ({"successCondition": "result[0] >= 0.95 || len(result) == 0"}, NO_SERIES, E),
        ({"successCondition": GUARD_NAN}, NO_SERIES, E),  # isNaN(result[0]) reads it too
        ({"successCondition": "len(result) > 0 && result[0] >= 0.95"}, NO_SERIES, F),
        # only a failure condition: false on NaN, so the measurement is Successful
        ({"failureCondition": "result[0] < 0.95"}, NAN, S),
        ({"failureCondition": "result[0] < 0.95"}, NO_SERIES, E),
        # both: neither true on NaN -> Inconclusive
        (
            {"successCondition": "result[0] >= 0.95", "failureCondition": "result[0] < 0.9"},
            NAN,
            INC,
        ),
        ({}, NAN, S),  # no condition: Successful whatever the value
        ({}, NO_SERIES, S),  # EvaluateResult never reads the result
        # the engine did not say: a NaN window is taken as empty, as before
        ({"successCondition": "result[0] >= 0.95"}, UNKNOWN, E),
        ({"successCondition": GUARD_NAN}, UNKNOWN, E),
        ({"successCondition": GUARD_EMPTY}, UNKNOWN, S),
    ],
)
def test_nan_and_empty_results(conditions, window, expected):
    run = run_of(success_rate(**conditions))
    assert run.measure("m", quiet(window)) == expected


def test_a_nan_window_fails_the_default_metric_at_once():
    """failureLimit 0: one 0/0 window of an unguarded success rate aborts (Failed, no retry)."""
    run = run_of(success_rate(interval="60s", successCondition="result[0] >= 0.95"))
    assert feed_windows(run, [NAN]) == [F]
    assert run.phase == F and run.next_delay("m") is None
    empty = run_of(success_rate(interval="60s", successCondition="result[0] >= 0.95"))
    assert feed_windows(empty, [NO_SERIES] * 5) == [R, R, R, R, E]  # 5 Errors, 10 s apart


@pytest.mark.parametrize("window", [NAN, NO_SERIES, UNKNOWN])
def test_a_nan_filter_makes_every_quiet_window_an_empty_vector(window):
    """``(...) >= 0`` drops the NaN sample: 0/0 reads as an empty vector, an Error unguarded,
    and the length guard covers it (what the exporters write by default)."""
    plain = run_of(success_rate(nan_filter=True, successCondition="result[0] >= 0.95"))
    assert plain.measure("m", quiet(window)) == E
    guarded = run_of(success_rate(nan_filter=True, successCondition=GUARD_EMPTY))
    assert guarded.measure("m", quiet(window)) == S


def feed_windows(run: AnalysisRun, kinds) -> list[Phase]:
    phases = []
    for kind in kinds:
        run.measure("m", quiet(kind))
        phases.append(run.metrics["m"].phase)
    return phases


@pytest.mark.parametrize(
    ("window", "expected"),
    [(NAN, 0.0), (NO_SERIES, None), (UNKNOWN, 0.0)],
)
def test_a_request_count_over_existing_series_is_zero(window, expected):
    """``sum(increase(...))`` of existing series is 0; of no series, an empty vector."""
    assert Query(measure="requestCount").result(quiet(window)) == expected


# --------------------------------------------------------------------------- §4.3 limits


def test_default_failure_limit_fails_on_first_failed_measurement():
    run = run_of(metric(interval="60s", successCondition="result < 0.05"))
    assert feed(run, "m", [BAD]) == [F]
    assert run.phase == F and run.terminating
    assert run.next_delay("m") is None


def test_failure_limit_two_fails_on_the_third_failure():
    run = run_of(metric(interval="60s", failureLimit=2, successCondition="result < 0.05"))
    assert feed(run, "m", [BAD, GOOD, BAD, GOOD, BAD]) == [R, R, R, R, F]
    assert run.summary()["m"]["failed"] == 3
    assert run.phase == F


def test_inconclusive_limit():
    run = run_of(metric(interval="60s", inconclusiveLimit=1, **BOTH))
    assert feed(run, "m", [MIDDLE, GOOD, MIDDLE]) == [R, R, INC]
    assert run.phase == INC


def test_failures_within_the_limit_do_not_mask_an_inconclusive():
    run = run_of(metric(interval="60s", failureLimit=1, **BOTH))
    assert feed(run, "m", [BAD, MIDDLE]) == [R, INC]


def test_five_errors_in_a_row_are_an_error():
    run = run_of(metric(interval="60s", successCondition="result < 0.05"))
    assert feed(run, "m", [EMPTY] * 5) == [R, R, R, R, E]
    assert run.phase == E
    assert run.summary()["m"]["count"] == 0  # errors do not count toward count


def test_a_result_resets_consecutive_errors():
    run = run_of(metric(interval="60s", successCondition="result < 0.05"))
    assert feed(run, "m", [EMPTY] * 4 + [GOOD] + [EMPTY] * 4) == [R] * 9
    assert feed(run, "m", [EMPTY]) == [E]


def test_consecutive_error_limit_zero_errors_on_the_first_error():
    run = run_of(metric(interval="60s", consecutiveErrorLimit=0, successCondition="result < 0.05"))
    assert feed(run, "m", [EMPTY]) == [E]


def test_errors_do_not_count_toward_count():
    run = run_of(metric(interval="60s", count=2, successCondition="result < 0.05"))
    assert feed(run, "m", [EMPTY, GOOD, EMPTY, EMPTY]) == [R, R, R, R]
    assert feed(run, "m", [GOOD]) == [S]
    summary = run.summary()["m"]
    assert (summary["count"], summary["errors"]) == (2, 3)


def test_error_is_retried_after_ten_seconds_whatever_the_interval():
    run = run_of(metric(interval="5m", successCondition="result < 0.05"))
    run.measure("m", obs(EMPTY))
    assert run.next_delay("m") == ERROR_RETRY_INTERVAL_S == 10.0
    run.measure("m", obs(GOOD))
    assert run.next_delay("m") == 300.0


def test_error_retry_without_interval_and_single_count():
    """count 1 (no interval): an Error is retried after 10 s and does not use up the count."""
    run = run_of(metric(successCondition="result < 0.05"))
    assert feed(run, "m", [EMPTY]) == [R]
    assert run.next_delay("m") == 10.0
    assert feed(run, "m", [GOOD]) == [S]
    assert run.next_delay("m") is None
    assert run.phase == S


def test_initial_delay_is_the_first_delay():
    run = run_of(metric(interval="60s", initialDelay="2m"))
    assert run.first_delay("m") == 120.0


def test_consecutive_success_limit_succeeds_early():
    run = run_of(
        metric(
            interval="60s", count=10, consecutiveSuccessLimit=3, successCondition="result < 0.05"
        )
    )
    # failureLimit 0 still fires at once, so use good values only, broken by nothing
    assert feed(run, "m", [GOOD, GOOD, GOOD]) == [R, R, S]
    assert run.summary()["m"]["count"] == 3


def test_consecutive_success_streak_is_broken_by_an_error():
    """Upstream: the AnalysisRun CRD's ``consecutiveSuccess`` "resets to zero when failures,
    inconclusive measurements, or errors are encountered" (anchors/argo-rollouts/
    analysis-run-crd.yaml); an Error is retried and does not count, but it breaks the streak."""
    run = run_of(
        metric(
            interval="60s", count=10, consecutiveSuccessLimit=3, successCondition="result < 0.05"
        )
    )
    assert feed(run, "m", [GOOD, GOOD, EMPTY, GOOD]) == [R, R, R, R]  # kept, S came here
    assert feed(run, "m", [GOOD]) == [R]
    assert feed(run, "m", [GOOD]) == [S]  # three successes after the Error
    summary = run.summary()["m"]
    assert (summary["count"], summary["errors"]) == (5, 1)


def test_consecutive_success_streak_is_broken_by_inconclusive():
    run = run_of(
        metric(
            interval="60s",
            count=10,
            consecutiveSuccessLimit=2,
            inconclusiveLimit=5,
            **BOTH,
        )
    )
    assert feed(run, "m", [GOOD, MIDDLE, GOOD, GOOD]) == [R, R, R, S]


@pytest.mark.parametrize(
    ("limits", "rates", "expected"),
    [
        # only failureLimit active: count reached within the limit -> Successful
        ({"failureLimit": 2}, [BAD, GOOD, BAD, GOOD], S),
        # only consecutiveSuccessLimit active (failureLimit -1): streak not reached -> Failed
        ({"failureLimit": -1, "consecutiveSuccessLimit": 3}, [GOOD, BAD, GOOD, GOOD], F),
        # both active and neither fired -> Inconclusive
        ({"failureLimit": 1, "consecutiveSuccessLimit": 3}, [GOOD, BAD, GOOD, GOOD], INC),
    ],
)
def test_count_reached(limits, rates, expected):
    run = run_of(metric(interval="60s", count=4, successCondition="result < 0.05", **limits))
    phases = feed(run, "m", rates)
    assert phases[:-1] == [R] * (len(rates) - 1)
    assert phases[-1] == expected
    assert run.phase == expected


def test_failure_limit_minus_one_never_fails_on_failures():
    run = run_of(
        metric(
            interval="60s",
            failureLimit=-1,
            consecutiveSuccessLimit=2,
            successCondition="result < 0.05",
        )
    )
    assert feed(run, "m", [BAD] * 20) == [R] * 20
    assert feed(run, "m", [GOOD, GOOD]) == [R, S]


def test_default_count_without_interval_is_one():
    run = run_of(metric(successCondition="result < 0.05"))
    assert feed(run, "m", [GOOD]) == [S]
    assert run.completed and run.next_delay("m") is None


def test_unbounded_with_interval_keeps_running():
    run = run_of(metric(interval="30s", successCondition="result < 0.05"))
    assert feed(run, "m", [GOOD] * 50) == [R] * 50
    assert run.next_delay("m") == 30.0 and run.phase == R


def test_failure_limit_without_explicit_count_is_valid():
    """Upstream TestValidateMetrics: count 0/unset with failureLimit 2 -> no error (§4.3)."""
    run = run_of(metric(failureLimit=2, successCondition="result < 0.05"))
    assert feed(run, "m", [BAD]) == [S]  # count 1 reached, failed 1 <= failureLimit 2


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"interval": "60s", "count": 2, "failureLimit": 3}, "failureLimit"),
        ({"interval": "60s", "count": 4, "failureLimit": 2, "consecutiveSuccessLimit": 3}, "count"),
        ({"interval": "60s", "count": 1, "inconclusiveLimit": 2}, "inconclusiveLimit"),
        ({"count": 3}, "interval"),
        ({"interval": "60s", "failureLimit": -1}, "disable both"),
    ],
)
def test_metric_validation(fields, message):
    with pytest.raises(PolicyError, match=message):
        validate_model(Metric, metric(**fields))


def test_valid_limits_at_the_boundary():
    validate_model(
        Metric, metric(interval="60s", count=5, failureLimit=2, consecutiveSuccessLimit=3)
    )


# --------------------------------------------------------------------------- §4.4 run phase


def test_run_phase_is_the_worst_metric_phase():
    run = run_of(
        metric("a", successCondition="result < 0.05"),
        metric("b", **BOTH),
    )
    run.measure("a", obs(GOOD))
    assert run.phase == R  # b has not been measured yet
    run.measure("b", obs(MIDDLE))
    assert run.phase == INC


def test_failed_is_worse_than_error():
    run = run_of(
        metric("a", interval="60s", consecutiveErrorLimit=0, successCondition="result < 0.05"),
        metric("b", interval="60s", successCondition="result < 0.05"),
    )
    run.measure("a", obs(EMPTY))
    assert run.phase == E
    run.measure("b", obs(BAD))  # measured in flight before termination took effect
    assert run.phase == F


def test_one_bad_metric_terminates_the_run():
    run = run_of(
        metric("a", interval="60s", successCondition="result < 0.05"),
        metric("b", interval="60s", successCondition="result < 0.05"),
    )
    run.measure("a", obs(GOOD))
    run.measure("b", obs(BAD))
    assert run.terminating
    assert run.phase == F
    assert run.next_delay("a") is None  # no new measurement is scheduled


def test_run_is_running_until_every_metric_completes():
    run = run_of(
        metric("a", successCondition="result < 0.05"),
        metric("b", interval="60s", count=3, successCondition="result < 0.05"),
    )
    run.measure("a", obs(GOOD))
    feed(run, "b", [GOOD, GOOD])
    assert run.phase == R
    feed(run, "b", [GOOD])
    assert run.phase == S


def test_terminate_with_nothing_bad_is_successful():
    run = run_of(metric(interval="60s", successCondition="result < 0.05"))
    feed(run, "m", [GOOD, GOOD])
    assert run.terminate() == S
    assert run.phase == S and run.next_delay("m") is None


def test_terminate_before_any_measurement_is_successful():
    run = run_of(metric(interval="60s", initialDelay="5m"))
    assert run.terminate() == S


def test_terminate_within_failure_limit_is_successful():
    """A terminated run reports Successful unless a limit had already been exceeded (§1)."""
    run = run_of(metric(interval="60s", failureLimit=3, successCondition="result < 0.05"))
    feed(run, "m", [BAD, BAD, BAD])
    assert run.phase == R
    assert run.terminate() == S


def test_terminate_keeps_a_bad_phase():
    run = run_of(
        metric("a", interval="60s", successCondition="result < 0.05"),
        metric("b", interval="60s", **BOTH),
    )
    run.measure("b", obs(MIDDLE))
    assert run.terminate() == INC


def test_measurements_after_completion_are_ignored():
    run = run_of(metric(successCondition="result < 0.05"))
    feed(run, "m", [BAD])
    assert feed(run, "m", [GOOD]) == [F]
    assert run.summary()["m"]["count"] == 1


# --------------------------------------------------------------------------- dryRun


def test_dry_run_metric_never_decides():
    run = run_of(
        metric("success", successCondition="result < 0.05"),
        metric("latency-p99", interval="60s", successCondition="result < 0.05"),
        dry_run=("latency",),  # unanchored regex
    )
    run.measure("latency-p99", obs(BAD))
    assert run.metrics["latency-p99"].phase == F
    assert not run.terminating and run.phase == R
    run.measure("success", obs(GOOD))
    assert run.phase == S
    assert run.summary()["latency-p99"]["dryRun"] is True
    assert run.summary()["success"]["dryRun"] is False


def test_run_waits_for_an_unfinished_dry_run_metric():
    """Upstream ``assessRunStatus``: "If any metric is not yet completed, the AnalysisRun is
    still considered Running" — dry-run metrics included; only the worst phase skips them."""
    run = run_of(
        metric("success", successCondition="result < 0.05"),
        metric("shadow", interval="60s", count=3, successCondition="result < 0.05"),
        dry_run=("shadow",),
    )
    run.measure("success", obs(GOOD))
    assert run.metrics["success"].phase == S
    assert run.phase == R and not run.completed  # the dry-run metric still measures
    assert run.next_delay("shadow") == 60.0
    assert feed(run, "shadow", [BAD]) == [F]  # a dry-run failure ends it, decides nothing
    assert run.phase == S and not run.terminating


def test_run_of_dry_run_metrics_only_runs_until_they_complete():
    """Upstream TestAssessRunStatusWithOnlyDryRunMetrics: a run of dry-run metrics only is
    Successful once they completed — not before (rolloutsim used to complete it at once)."""
    run = run_of(
        metric("a", interval="60s", count=2, successCondition="result < 0.05"),
        metric("b", successCondition="result < 0.05"),
        dry_run=(".",),
    )
    assert run.phase == R
    run.measure("b", obs(BAD))  # Failed: completed, and decides nothing
    assert feed(run, "a", [GOOD]) == [R]
    assert run.phase == R
    assert feed(run, "a", [GOOD]) == [S]
    assert run.phase == S and run.completed


def test_unbounded_dry_run_metric_keeps_the_run_running_until_terminated():
    """Upstream TestTerminateAnalysisRunInDryRunMode: a terminated run is Successful."""
    run = run_of(metric("a", interval="60s", successCondition="result < 0.05"), dry_run=("a",))
    assert feed(run, "a", [BAD] * 3) == [F, F, F]  # Failed at once; dry-run: nothing stops
    run2 = run_of(
        metric(
            "a",
            interval="60s",
            failureLimit=-1,
            consecutiveSuccessLimit=2,
            successCondition="result < 0.05",
        ),
        dry_run=("a",),
    )
    assert feed(run2, "a", [BAD] * 20) == [R] * 20
    assert run2.phase == R
    assert run2.terminate() == S


def test_mixed_run_takes_the_deciding_metric_inconclusive():
    """Upstream TestAssessRunStatusWithMixedMetrics: a deciding metric Inconclusive and a
    dry-run metric Failed -> the run is Inconclusive (terminating, dry-run ignored)."""
    run = run_of(
        metric("run-forever", interval="60s", **BOTH),
        metric("success-metric", interval="60s", successCondition="result < 0.05"),
        dry_run=("success-metric",),
    )
    run.measure("success-metric", obs(BAD))
    assert run.phase == R and not run.terminating
    run.measure("run-forever", obs(MIDDLE))
    assert run.terminating and run.phase == INC


def test_dry_run_regex_matching_nothing_is_an_error():
    run = run_of(metric("success"), dry_run=("^latency$",))
    assert run.phase == E and run.terminating


# --------------------------------------------------------------------------- sequential provider


def sprt_run(interval: str | None = "60s") -> AnalysisRun:
    fields = {
        "name": "sprt",
        "provider": {"sequential": {"test": "sprt", "baselineErrorRate": 0.01, "relativeRisk": 2}},
    }
    if interval:
        fields["interval"] = interval
    return run_of(fields)


def seq_obs(errors: int, requests: int) -> Observation:
    return Observation(0.0, 60.0, WindowStats(requests, errors), WindowStats(1000, 10))


def test_sprt_fails_on_rejection():
    """LLR per window: errors·ln 2 + (n − errors)·ln(0.98/0.99); reject at ln 16 = 2.77."""
    run = sprt_run()
    assert run.measure("sprt", seq_obs(1, 100)) == S  # LLR −0.31: keep looking
    assert run.metrics["sprt"].phase == R
    assert run.measure("sprt", seq_obs(10, 100)) == F  # LLR 5.71 >= 2.77
    assert run.phase == F and run.terminating


def test_sprt_succeeds_on_acceptance():
    run = sprt_run()
    assert run.measure("sprt", seq_obs(0, 100)) == S  # LLR −1.02 > −1.56: not yet
    assert run.phase == R
    run.measure("sprt", seq_obs(0, 100))  # LLR −2.03 <= ln(0.2/0.95) = −1.56: accept
    assert run.phase == S
    assert run.next_delay("sprt") is None
