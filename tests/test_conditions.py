"""The safe condition language against Argo's ``expr`` semantics (utils/evaluate/evaluate.go).

A condition is called with a query's one value (NaN included) or None for an empty result
vector. The guarded forms are those of Argo's documentation ("Handling Metric Results - NaN and
Infinity", features/analysis.md, added by argo-rollouts PR #977) and of users' templates
(``len(result) == 0 || isNaN(result[0]) || result[0] >= 0.99``, argo-rollouts PR #4203).
"""

from __future__ import annotations

import math

import pytest

from policies.conditions import Condition, ConditionError, EmptyResult

NAN, INF, EMPTY = math.nan, math.inf, None


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("result[0] >= 0.95", 0.96, True),
        ("result[0] >= 0.95", 0.94, False),
        ("result[0] >= 0.95", NAN, False),  # any ordered comparison with NaN is false
        ("result[0] < 0.95", NAN, False),
        ("result[0] != 0.95", NAN, True),  # Go: NaN != x
        ("result == 1", NAN, False),
        ("isNaN(result) || result >= 0.95", NAN, True),  # the docs' NaN guard
        ("isNaN(result[0]) || result[0] >= 0.95", 0.5, False),
        ("isNaN(result[0]) || result[0] < 0.95", NAN, True),  # a failure that fires on NaN
        ("isInf(result)", INF, True),
        ("isInf(result[0])", -INF, True),
        ("isInf(result[0])", 1.0, False),
        ("!isInf(result[0]) && result[0] >= 0.95", INF, False),
        ("len(result) == 0 || result[0] >= 0.95", EMPTY, True),
        ("len(result) == 0 || result[0] >= 0.95", 0.5, False),
        ("len(result) > 0 && result[0] >= 0.95", EMPTY, False),  # && short-circuits too
        ("len(result) == 1", 0.5, True),
        ("0 < len(result)", EMPTY, False),
        ("len(result) == 0 || isNaN(result[0]) || result[0] >= 0.99", EMPTY, True),
        ("len(result) == 0 || isNaN(result[0]) || result[0] >= 0.99", NAN, True),
        ("len(result) == 0 || isNaN(result[0]) || result[0] >= 0.99", 0.98, False),
        ("not (result < 0.9) and (result != 0.95 or result == 1)", 0.95, False),
        ("(result >= 0.1 && result <= 0.9) || result > 2", 2.5, True),
    ],
)
def test_conditions_judge_like_expr(text, value, expected):
    assert Condition(text)(value) is expected


@pytest.mark.parametrize(
    "text",
    [
        "result[0] >= 0.95",
        "isNaN(result[0]) || result[0] >= 0.95",  # isNaN(result[0]) reads the value
        "isInf(result)",
        "result[0] >= 0.95 || len(result) == 0",  # evaluated left to right
    ],
)
def test_reading_an_empty_vector_is_an_evaluation_error(text):
    """expr: ``result[0]`` of an empty array is "index out of range" -> an Error measurement."""
    with pytest.raises(EmptyResult):
        Condition(text)(EMPTY)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "result",
        "result >= threshold",
        "len(result[0]) == 0",
        "isNaN(0.5)",
        "result[1] > 0",
        "__import__('os')",
        "result >= 0.95 ||",
        "(result >= 0.95",
        "len(result)",
        "default(result, 0) > 1",
    ],
)
def test_anything_else_is_refused(text):
    with pytest.raises(ConditionError):
        Condition(text)


def test_tokens_of_older_conditions_are_unchanged():
    """The exporters translate conditions token by token; the kinds they know stay as they were."""
    kinds = [k for k, _ in Condition._tokenize("!(result[0] < 0.9) && isNaN(result) || 1 > result")]
    assert kinds == [
        "not",
        "lp",
        "result",
        "op",
        "num",
        "rp",
        "logic",
        "nan",
        "logic",
        "num",
        "op",
        "result",
    ]
