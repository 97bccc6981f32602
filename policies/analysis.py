"""Argo Rollouts analysis: templates, metrics, and the verdict rules of an AnalysisRun.

The rules follow ``analysis/analysis.go`` (reference/argo-rollouts.md §4): a measurement is
Successful, Failed, Inconclusive or Error; a metric fails as soon as ``failed > failureLimit``
(default 0: the first failed measurement); Inconclusive and Error have their own limits; an
Error resets the consecutive-success count as any non-success does (the AnalysisRun CRD's
``consecutiveSuccess``: "resets to zero when failures, inconclusive measurements, or errors are
encountered"); a run terminates as soon as a deciding (not dry-run) metric goes bad, and
otherwise stays Running until **every** metric, dry-run ones included, has completed
(``assessRunStatus``), then takes the worst phase of its deciding metrics.

A query's result is judged as Argo's Prometheus provider judges it (``policies/measures.py``):
a NaN value goes through the conditions (``result[0] >= 0.95`` on NaN is false: Failed), an
empty vector is an Error only where a condition reads its value (``len(result) == 0 || ...``
guards it; no condition at all is Successful, as ``EvaluateResult`` says).

A metric's provider is a simulated query judged by the success/failure conditions (what the
Argo exporter writes as a Prometheus query), a sequential test (SPRT/mSPRT, which no executor
has) or a Kayenta-style judge. Everything here is pure: no clock, no randomness except a
Generator passed in for Kayenta's tie noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, assert_never, cast

from pydantic import Field, field_validator, model_validator

from policies.base import Model
from policies.conditions import Condition, ConditionError, EmptyResult
from policies.durations import Duration
from policies.kayenta import KayentaJudge
from policies.measures import Observation, Query
from policies.regexes import re2_compile
from policies.sequential import SequentialState, SequentialTest

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ARGO_PROVIDERS",
    "ERROR_RETRY_INTERVAL_S",
    "AnalysisRun",
    "AnalysisTemplate",
    "DryRun",
    "KayentaProvider",
    "Metric",
    "Phase",
    "Provider",
    "Source",
]

ERROR_RETRY_INTERVAL_S = 10.0
"""Argo retries a measurement that errored after 10 s, whatever the interval."""


class Phase(StrEnum):
    """Argo's analysis phases, ordered best to worst by ``severity`` (the properties are cached
    on each member: a measurement asks them several times)."""

    SUCCESSFUL = "Successful"
    RUNNING = "Running"
    PENDING = "Pending"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"
    FAILED = "Failed"

    @cached_property
    def severity(self) -> int:
        return _SEVERITY[self]

    @cached_property
    def completed(self) -> bool:
        return self in _COMPLETED

    @cached_property
    def bad(self) -> bool:
        return self in _BAD


_SEVERITY = {p: i for i, p in enumerate(Phase)}
_BAD = frozenset({Phase.INCONCLUSIVE, Phase.ERROR, Phase.FAILED})
_COMPLETED = _BAD | {Phase.SUCCESSFUL}
# Python 3.11's EnumType.__getattr__ makes each ``Phase.X`` cost several plain lookups: the
# per-measurement code below names the members by these
_SUCCESSFUL, _RUNNING, _PENDING, _INCONCLUSIVE, _ERROR, _FAILED = Phase


class KayentaProvider(KayentaJudge):
    """Kayenta judge over per-``step`` points of the window (Argo's kayenta provider):
    score >= pass -> Successful, >= marginal -> Inconclusive, else Failed."""

    step: Duration = Field(60.0, gt=0)


ARGO_PROVIDERS: tuple[str, ...] = ("prometheus", "datadog", "newRelic", "wavefront", "web")
ARGO_PROVIDERS += ("job", "cloudWatch", "graphite", "influxdb", "skywalking", "plugin")
"""Argo's metric providers other than kayenta (the simulator's own ``query`` stands for them)."""

Source = Query | SequentialTest | KayentaProvider
"""A provider's one source as a value (``Provider.source``): ``match`` on its type."""


class Provider(Model):
    """Where a metric's value comes from: exactly one of query, sequential, kayenta.

    The YAML keeps the executors' shape (one optional key each); code reads ``source``, the one
    that is set, and matches on its type, so a new source cannot be forgotten silently.
    """

    query: Query | None = None
    sequential: SequentialTest | None = None
    kayenta: KayentaProvider | None = None

    @model_validator(mode="before")
    @classmethod
    def _argo_provider(cls, data: Any) -> Any:
        """A provider copied from an Argo AnalysisTemplate (``prometheus: {query: ...}``) is
        refused with the form that simulates it, or the import that keeps its query."""
        given = [k for k in ARGO_PROVIDERS if isinstance(data, dict) and k in data]
        if given:
            raise ValueError(
                f"{given[0]} is an Argo provider, which a policy file does not read: simulate the"
                " metric with provider: {query: {measure: errorRate, version: canary}} (measures"
                " successRate, errorRate, latency with quantile, requestCount), or keep the"
                " Rollout's own query by importing its manifest: rolloutsim import rollout.yaml"
                " --map METRIC=measure:version[:quantile][:unit]"
            )
        return data

    @property
    def source(self) -> Source:
        """The one source given (the validator guarantees exactly one)."""
        source = self.query if self.query is not None else self.sequential
        return source if source is not None else cast(KayentaProvider, self.kayenta)

    @model_validator(mode="after")
    def _exactly_one(self) -> Provider:
        given = [k for k in ("query", "sequential", "kayenta") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a provider needs exactly one of query, sequential, kayenta"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class Metric(Model):
    """One metric of an AnalysisTemplate, with Argo's field names and defaults (§4, §6)."""

    name: str = Field(min_length=1)
    provider: Provider
    interval: Duration | None = None
    initial_delay: Duration = 0.0
    count: int | None = Field(None, ge=0)
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: int = Field(0, ge=-1)
    inconclusive_limit: int = Field(0, ge=0)
    consecutive_error_limit: int = Field(4, ge=0)
    consecutive_success_limit: int = Field(0, ge=0)

    @field_validator("success_condition", "failure_condition")
    @classmethod
    def _safe_condition(cls, text: str | None) -> str | None:
        if text is not None:
            try:
                Condition(text)
            except ConditionError as exc:
                raise ValueError(str(exc)) from None
        return text

    @model_validator(mode="after")
    def _argo_rules(self) -> Metric:
        if self.interval is not None and self.interval <= 0:
            raise ValueError("interval must be > 0")
        if self.count is not None and self.count > 1 and self.interval is None:
            raise ValueError("count > 1 requires an interval (Argo validation)")
        if self.failure_limit < 0 and self.consecutive_success_limit == 0:
            raise ValueError("failureLimit -1 and consecutiveSuccessLimit 0 disable both limits")
        count = self.count  # Argo validates only an explicit count > 0
        if count is not None and count > 0:
            needed = max(self.failure_limit, 0) + self.consecutive_success_limit
            if count < needed:
                raise ValueError(
                    f"count ({count}) must be >= failureLimit + consecutiveSuccessLimit ({needed})"
                )
            if count < self.inconclusive_limit:
                raise ValueError(
                    f"count ({count}) must be >= inconclusiveLimit ({self.inconclusive_limit})"
                )
        if self.provider.query is None and (self.success_condition or self.failure_condition):
            raise ValueError("success/failure conditions apply only to a query provider")
        return self

    def verdict(self, value: float | None) -> Phase:
        """The phase of one measurement of a query returning ``value`` (None: an empty vector),
        under this metric's conditions (Argo ``EvaluateResult``)."""
        return _evaluate(*_conditions(self), value)

    @property
    def limits(self) -> tuple[int, int, int, int, int | None]:
        """failureLimit, inconclusiveLimit, consecutiveErrorLimit, consecutiveSuccessLimit and the
        effective count, which a run reads once (a model's attributes are slow to read)."""
        limits = self.failure_limit, self.inconclusive_limit, self.consecutive_error_limit
        return (*limits, self.consecutive_success_limit, self.effective_count)

    @property
    def effective_count(self) -> int | None:
        """Argo ``EffectiveCount``: count if > 0; 1 without interval; None (unbounded) otherwise."""
        if self.count:
            return self.count
        return 1 if self.interval is None else None


class DryRun(Model):
    """``dryRun: [{metricName: <regex>}]``: matching metrics are measured but never decide."""

    metric_name: str

    @field_validator("metric_name")
    @classmethod
    def _regex(cls, value: str) -> str:
        re2_compile(value)  # Go's regexp, as Argo matches it: RE2, never a backtracking hang
        return value


class AnalysisTemplate(Model):
    """An Argo AnalysisTemplate: a named set of metrics (one AnalysisRun per use)."""

    name: str = Field(min_length=1)
    metrics: tuple[Metric, ...] = Field(min_length=1)
    dry_run: tuple[DryRun, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> AnalysisTemplate:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique (repeated: {', '.join(dupes)})")
        return self


# ----------------------------------------------------------------------------- runtime


@dataclass(slots=True)
class _MetricState:
    metric: Metric
    dry_run: bool
    source: Source
    success: Condition | None  # the metric's conditions, parsed once
    failure: Condition | None
    limits: tuple[int, int, int, int, int | None]  # Metric.limits
    phase: Phase = Phase.PENDING
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0
    sequential: SequentialState | None = None
    history: list[tuple[Phase, float | None]] = field(default_factory=list)


class AnalysisRun:
    """The verdict engine of one Argo AnalysisRun (pure state, fed one measurement at a time).

    The caller owns time: it asks ``next_delay(metric)`` after each ``record`` and measures the
    metric again after that delay; ``phase`` is the run's phase under Argo's rules.
    """

    def __init__(self, templates: tuple[AnalysisTemplate, ...] | list[AnalysisTemplate]) -> None:
        self.metrics: dict[str, _MetricState] = {}
        self.error: str | None = None
        patterns = [d.metric_name for t in templates for d in t.dry_run]
        for template in templates:
            for metric in template.metrics:
                if metric.name in self.metrics:
                    self.error = f"metric {metric.name!r} appears in two templates"
                dry = any(re2_compile(p).search(metric.name) for p in patterns)
                state = _MetricState(
                    metric, dry, metric.provider.source, *_conditions(metric), metric.limits
                )
                if metric.provider.sequential is not None:
                    state.sequential = metric.provider.sequential.start()
                self.metrics[metric.name] = state
        for pattern in patterns:  # a dryRun rule that matches nothing makes the run Error
            if not any(re2_compile(pattern).search(name) for name in self.metrics):
                self.error = f"dryRun metricName {pattern!r} matches no metric"
        self.terminated = False
        # Argo stops the run once a deciding metric is bad (or it cannot start): set, never cleared
        self.terminating = self.error is not None
        self.phase = self._assess()  # kept current: a metric's new phase and terminate() reassess

    def __repr__(self) -> str:
        return f"AnalysisRun(metrics={list(self.metrics)}, phase={self.phase.value})"

    # --- measuring

    def measure(self, name: str, observation: Observation, rng: np.random.Generator | None = None):
        """Judge one measurement of metric ``name`` and update its counters and phase."""
        state = self.metrics[name]
        if state.phase.completed or self.terminated:
            return state.phase
        phase, value = self._judge(state, observation, rng)
        self._count(state, phase, value)
        return phase

    def _judge(self, state: _MetricState, obs: Observation, rng) -> tuple[Phase, float | None]:
        match state.source:
            case Query() as query:
                value = query.result(obs)  # None: an empty result vector
                return _evaluate(state.success, state.failure, value), value
            case SequentialTest():
                assert state.sequential is not None
                if not obs.canary.requests:
                    return _ERROR, None  # no canary data: an Error, as for a query
                decision = state.sequential.update(
                    obs.canary.errors, obs.canary.requests, obs.stable.errors, obs.stable.requests
                )
                value = float(state.sequential.statistic)
                return (_FAILED if decision == "reject" else _SUCCESSFUL), value
            case KayentaProvider() as kayenta:
                return _judge_kayenta(kayenta, obs, rng)
            case never:
                assert_never(never)

    def _count(self, state: _MetricState, phase: Phase, value: float | None) -> None:
        state.history.append((phase, value))
        if phase == _ERROR:
            state.errors += 1
            state.consecutive_error += 1
            state.consecutive_success = 0  # any non-success breaks the run of successes
        else:
            state.consecutive_error = 0
            state.count += 1
            if phase == _SUCCESSFUL:
                state.successful += 1
                state.consecutive_success += 1
            else:
                state.consecutive_success = 0
                if phase == _FAILED:
                    state.failed += 1
                else:
                    state.inconclusive += 1
        metric_phase = self._metric_phase(state)
        if metric_phase != state.phase:  # the run's phase reads only its metrics' phases
            state.phase = metric_phase
            if metric_phase.bad and not state.dry_run:
                self.terminating = True
            self.phase = self._assess()

    @staticmethod
    def _metric_phase(state: _MetricState) -> Phase:
        failure_limit, inconclusive_limit, error_limit, success_limit, count = state.limits
        phase: Phase | None = None
        if failure_limit >= 0 and state.failed > failure_limit:
            phase = _FAILED
        if state.inconclusive > inconclusive_limit:
            phase = _INCONCLUSIVE
        if state.consecutive_error > error_limit:
            phase = _ERROR
        if phase is not None:
            return phase
        if state.sequential is not None and state.sequential.decision == "accept":
            return _SUCCESSFUL  # the SPRT accepted H0: nothing more to learn
        if success_limit > 0 and state.consecutive_success >= success_limit:
            return _SUCCESSFUL
        if count is not None and state.count >= count:
            failure_applies = failure_limit >= 0
            success_applies = success_limit > 0
            if failure_applies and success_applies:
                return _INCONCLUSIVE
            return _FAILED if success_applies else _SUCCESSFUL
        return _RUNNING

    # --- scheduling

    def first_delay(self, name: str) -> float:
        return self.metrics[name].metric.initial_delay

    def next_delay(self, name: str) -> float | None:
        """Seconds until ``name`` is measured again, or None when it needs no more measurements."""
        state = self.metrics[name]
        if state.phase.completed or self.terminated or self.terminating:
            return None
        if state.consecutive_error:  # the last measurement was an Error (any other resets it)
            return ERROR_RETRY_INTERVAL_S
        return state.metric.interval  # None: a single measurement (count 1) already happened

    # --- run phase

    def _assess(self) -> Phase:
        """Argo ``assessRunStatus``: the worst completed deciding metric once terminating;
        otherwise Running while any metric, dry-run included, is unfinished; then the worst
        deciding phase (Successful when every metric is dry-run)."""
        if self.error is not None:
            return _ERROR
        worst: Phase | None = None
        everything_completed = True
        for state in self.metrics.values():
            if not state.phase.completed:
                everything_completed = False
            elif not state.dry_run:
                if worst is None or state.phase.severity > worst.severity:
                    worst = state.phase
            elif worst is None:
                worst = _SUCCESSFUL  # a dry-run metric counts only as "something ended"
        if self.terminating or self.terminated:
            return worst or _SUCCESSFUL
        if not everything_completed or worst is None:
            return _RUNNING
        return worst

    @property
    def completed(self) -> bool:
        return self.phase.completed

    def terminate(self) -> Phase:
        """The rollout cancels the run (promotion, abort, step change): unfinished metrics that
        had not gone bad count as Successful (Argo ``assessMetricStatus`` when terminating)."""
        for state in self.metrics.values():
            if not state.phase.completed:
                state.phase = _SUCCESSFUL
        self.terminated = True
        self.phase = self._assess()
        return self.phase

    def summary(self) -> dict[str, Any]:
        return {
            name: {
                "phase": s.phase.value,
                "count": s.count,
                "failed": s.failed,
                "inconclusive": s.inconclusive,
                "errors": s.errors,
                "dryRun": s.dry_run,
            }
            for name, s in self.metrics.items()
        }


@lru_cache(maxsize=256)
def _condition(text: str) -> Condition:
    return Condition(text)


def _conditions(metric: Metric) -> tuple[Condition | None, Condition | None]:
    """A metric's success and failure conditions, parsed."""
    success, failure = metric.success_condition, metric.failure_condition
    return (
        None if success is None else _condition(success),
        None if failure is None else _condition(failure),
    )


def _evaluate(success: Condition | None, failure: Condition | None, value: float | None) -> Phase:
    """Argo ``EvaluateResult`` on a query's value (None: an empty vector): both conditions are
    evaluated first, success then failure, and an evaluation error (reading the value of an
    empty vector) is an Error; then failure wins, and neither true (both given) is
    Inconclusive. Without conditions the measurement is Successful."""
    try:
        passed = success(value) if success is not None else False
        failed = failure(value) if failure is not None else False
    except EmptyResult:
        return _ERROR
    if success is None and failure is None:
        return _SUCCESSFUL
    if success is not None and failure is None:
        failed = not passed
    elif success is None:
        passed = not failed
    if failed:
        return _FAILED
    return _SUCCESSFUL if passed else _INCONCLUSIVE


def _judge_kayenta(judge: KayentaProvider, obs: Observation, rng) -> tuple[Phase, float | None]:
    series = obs.series or (obs,)
    canary: dict[str, list[float]] = {}
    baseline: dict[str, list[float]] = {}
    for metric in judge.metrics:
        for version, out in (("canary", canary), ("stable", baseline)):
            query = Query(measure=metric.measure, version=version, quantile=metric.quantile)
            out[metric.name] = [query.evaluate(point) for point in series]
    verdict = judge.judge(canary, baseline, rng)
    if verdict.score >= judge.pass_score:
        return _SUCCESSFUL, verdict.score
    if verdict.score >= judge.marginal_score:
        return _INCONCLUSIVE, verdict.score
    return _FAILED, verdict.score
