"""Warnings for gates that will see windows without requests and do not guard them.

Argo judges a Prometheus result as it comes (policies/measures.py): a 0/0 ratio over existing
series is NaN and an unguarded ``result[0] >= x`` is Failed on it; a canary that never served
has no series, so the vector is empty and reading ``result[0]`` is an Error. ``explain`` asks
here which metrics will meet such windows — any unguarded ratio without a NaN filter, and canary
metrics measured before the canary serves — and words each warning with the guard that fixes it.
"""

from __future__ import annotations

import math
from collections.abc import Container

from policies.analysis import ERROR_RETRY_INTERVAL_S, AnalysisTemplate, Metric, Phase
from policies.canary import Canary, Pause
from policies.common import RolloutAnalysis
from policies.conditions import Condition, EmptyResult
from policies.measures import Query

__all__ = ["canary_quiet_windows", "nan_guards", "quiet_warnings"]


_RATIOS = ("successRate", "errorRate", "latency")  # 0/0 over existing series: NaN


def _canary_metrics(templates: tuple[AnalysisTemplate, ...]) -> list[tuple[Metric, Query]]:
    return [
        (m, q)
        for t in templates
        for m in t.metrics
        if (q := m.provider.query) is not None and q.version == "canary"
    ]


def _guard(text: str, prefix: str) -> str:
    inner = f"({text})" if any(op in text for op in ("||", "&&", " or ", " and ")) else text
    return f"{prefix}{inner}"


def _true_on_nan(condition: str) -> bool:
    """Whether ``condition`` holds for a NaN sample (an evaluation error counts as not)."""
    try:
        return bool(Condition(condition)(math.nan))
    except EmptyResult:
        return False


def _fixes(metric: Metric, query: Query, empty: bool) -> str:
    """The condition fields rewritten so that a window without requests passes: a guard that
    short-circuits before the comparison reads the value, for NaN where NaN is not already
    passing (and the query does not filter it out), and for an empty vector too if ``empty``."""
    success, failure = metric.success_condition, metric.failure_condition
    nan_bad = not query.nan_filter and metric.verdict(math.nan) != Phase.SUCCESSFUL
    fixes = []
    if success is not None and (nan_bad or empty):
        head = ("len(result) == 0 || " if empty else "") + (
            "isNaN(result[0]) || " if nan_bad else ""
        )
        fixes.append(f'successCondition: "{_guard(success, head)}"')
    fails_on_nan = failure is not None and not query.nan_filter and _true_on_nan(failure)
    if failure is not None and (fails_on_nan or empty):
        guard = ("len(result) > 0 && " if empty else "") + (
            "!isNaN(result[0]) && " if fails_on_nan else ""
        )
        fixes.append(f'failureCondition: "{_guard(failure, guard)}"')
    return ", ".join(fixes)


def _what(metric: Metric, query: Query) -> str:
    measure = f"p{query.quantile * 100:g} latency" if query.measure == "latency" else query.measure
    conditions = " / ".join(
        c for c in (metric.success_condition, metric.failure_condition) if c is not None
    )
    return f'metric "{metric.name}" ({measure} of {query.version}: {conditions or "no condition"})'


def nan_guards(
    templates: tuple[AnalysisTemplate, ...], told: Container[int] = frozenset()
) -> list[str]:
    """One warning per ratio metric that a 0/0 window (NaN) turns bad without a guard (unless
    ``told``: already warned about, with the wider guard, for a window with no canary at all)."""
    out = []
    for t in templates:
        for metric in t.metrics:
            query = metric.provider.query
            if query is None or query.measure not in _RATIOS or id(metric) in told:
                continue
            if query.nan_filter:
                continue  # the query drops NaN (``>= 0``): 0/0 is an empty vector, not NaN
            texts = (metric.success_condition or "") + (metric.failure_condition or "")
            phase = metric.verdict(math.nan)
            if "isNaN" in texts or phase == Phase.SUCCESSFUL:
                continue  # a deliberate NaN rule, or NaN passes anyway
            out.append(
                f"{_what(metric, query)} is {phase.value} on a window without {query.version} "
                "requests (Prometheus gives 0/0 = NaN, and Argo compares NaN as false): guard "
                f"it with {_fixes(metric, query, empty=False)}"
            )
    return out


def quiet_warnings(where: str, templates, applies) -> list[tuple[Metric, str]]:
    """Warnings for canary metrics measured where the canary serves nothing: the query is an
    empty vector (the canary never served) or NaN (it did, earlier), unless guarded."""
    out = []
    for metric, query in _canary_metrics(templates):
        if not applies(metric):
            continue
        bad = []
        empty = metric.verdict(None)
        nan = empty if query.nan_filter else metric.verdict(math.nan)  # a filter drops NaN
        if empty != Phase.SUCCESSFUL:
            streak = metric.consecutive_error_limit + 1
            bad.append(
                f"an empty result is {empty.value}"
                + (
                    f" ({streak} in a row, {ERROR_RETRY_INTERVAL_S:g} s apart, abort)"
                    if empty == Phase.ERROR
                    else ""
                )
            )
        if nan != Phase.SUCCESSFUL and not query.nan_filter:
            bad.append(f"NaN (0/0) is {nan.value}")
        if bad:
            text = (
                f"{where}: {_what(metric, query)} sees windows without canary requests, where "
                f"{' and '.join(bad)}; guard it with {_fixes(metric, query, empty=True)}"
            )
            out.append((metric, text))
    return out


def canary_quiet_windows(policy: Canary) -> list[tuple[Metric, str]]:
    """Analyses measured before the first setWeight above 0 has made the canary serve."""
    first = next((i for i, step in enumerate(policy.steps) if step.set_weight), len(policy.steps))
    out = []
    if policy.analysis is not None and policy.analysis.starting_step <= first:
        start = policy.analysis.starting_step
        waits = any(
            isinstance(operation, Pause | RolloutAnalysis)
            for step in policy.steps[start:first]
            for operation in step.operations
        )
        out += quiet_warnings(
            f"background analysis starts at step {start}, before the canary serves "
            "(startingStep after the first setWeight, or an initialDelay, avoids it)",
            policy.templates_for(policy.analysis),
            lambda metric: waits or first == len(policy.steps) or metric.initial_delay == 0,
        )
    for i, step in enumerate(policy.steps[:first]):
        if step.analysis is not None:
            out += quiet_warnings(
                f"step {i}: analysis before any setWeight above 0, the canary serves nothing",
                policy.templates_for(step.analysis),
                lambda metric: True,
            )
    return out
