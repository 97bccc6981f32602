"""The safe condition language against Argo's ``expr`` semantics (utils/evaluate/evaluate.go).

A condition is called with a query's one value (NaN included) or None for an empty result
vector. The guarded forms are those of Argo's documentation ("Handling Metric Results - NaN and
Infinity", features/analysis.md, added by argo-rollouts PR #977) and of users' templates
(``len(result) == 0 || isNaN(result[0]) || result[0] >= 0.99``, argo-rollouts PR #4203).
"""

from __future__ import annotations

import math
import pickle

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
        "__import__('os')",
        "result >= 0.95 ||",
        "(result >= 0.95",
        "len(result)",
        "result.__class__ == 1",
        "eval('1') == 1",
        "all(result, # > 0.5) + 1 > 0",
        "# > 0.5",
        "isNaN('x') || result > 0",
        "result > 0 ? true : false",
        "len(5) == 1 && result > 0",
    ],
)
def test_anything_else_is_refused(text):
    with pytest.raises(ConditionError):
        Condition(text)


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        # strings and booleans: a web or job provider's result, and literals
        ('result == "healthy"', "healthy", True),
        ("result == 'healthy'", "degraded", False),
        ('result != "healthy"', "degraded", True),
        ("result == true", True, True),
        ("result == false", True, False),
        ('result == "1"', 1.0, False),  # == across kinds is false, not an error
        ('result in ["ok", "healthy"]', "ok", True),
        ('result not in ["ok", "healthy"]', "ok", False),
        ("asInt(result) in [200, 204]", "204", True),
        ("asFloat(result) >= 0.95", "0.97", True),
        ("asInt(result[0]) == 2", 2.9, True),  # Go int64(f) truncates
        ("asInt(result) == -2", -2.9, True),
        # arithmetic, indexing, length
        ("result[0] * 100 >= 95", 0.96, True),
        ("result[0] -1 < 0", 0.5, True),
        ("100 - result[0] * 100 <= 5", 0.96, True),
        ("result[-1] >= 0.95", 0.96, True),
        ("len(result) == 1 && result[0] >= 0.95", 0.96, True),
        ("len(result) == 1", EMPTY, False),
        # quantifiers over the vector, with the closure's #
        ("all(result, {# >= 0.95})", 0.96, True),
        ("all(result, # >= 0.95)", 0.9, False),
        ("all(result, {# >= 0.95})", EMPTY, True),  # vacuously true, as expr's all
        ("any(result, {# < 0.01})", EMPTY, False),
        ("none(result, {isNaN(#)})", 0.5, True),
        ("none(result, {isNaN(#)})", NAN, False),
        # Argo's default and isNil look at result itself: a vector is never nil
        ("default(result, 0) >= 0.5", 0.6, True),
        ("isNil(result) || result >= 0.5", 0.6, True),
        ("!isNil(result)", EMPTY, True),
        ("isNaN(result[0]) == false", 0.5, True),
        ("(result[0] + 1) / 2 == 1", 1.0, True),
    ],
)
def test_the_wider_language_judges_like_expr(text, value, expected):
    assert Condition(text)(value) is expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("result[1] > 0", 0.5),  # the simulated query returns one element: out of range
        ("result[0] >= 0.95", EMPTY),
        ("asInt(result) == 1", "one"),  # Argo's asInt panics: an Error measurement
        ('result > "a"', 1.0),  # ordering a number against a string
        ("default(result, 0) >= 0.5", EMPTY),  # the empty vector is returned, then read
        ("result + 1 > 0", "x"),
        ("all(result, {# > 0.5}) && result[0] > 0", EMPTY),
    ],
)
def test_evaluation_errors_are_errors(text, value):
    with pytest.raises(EmptyResult):
        Condition(text)(value)


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


def test_simple_says_which_conditions_a_token_translator_may_take():
    assert Condition("len(result) == 0 || !(result[0] < 0.9) && isNaN(result)").simple
    assert not Condition('result == "ok"').simple
    assert not Condition("all(result, {# > 0.9})").simple
    assert not Condition("result[0] * 100 > 5").simple


def test_a_condition_pickles_as_its_text():
    """Analysis runs keep their parsed conditions; a run (and a controller) must still pickle."""
    condition = pickle.loads(pickle.dumps(Condition("result[0] >= 0.99 || isNaN(result)")))
    assert condition.text == "result[0] >= 0.99 || isNaN(result)"
    assert condition(0.995) and condition(math.nan) and not condition(0.5)
