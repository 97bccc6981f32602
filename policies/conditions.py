"""Argo-style success/failure conditions as a safe comparison language — never ``eval``.

A condition is judged on what a Prometheus query returns (``utils/evaluate/evaluate.go`` runs
it through ``expr`` with ``result`` bound to the result vector): here a vector of at most one
value, given as a float (NaN included) or ``None`` for an **empty** vector.

Accepted: comparisons of ``result`` (or ``result[0]``) with a number; ``len(result)`` compared
with a number; ``isNaN(result[0])`` and ``isInf(result[0])`` (also on ``result``); joined by
``&&``/``||`` (also ``and``/``or``), with parentheses and ``!``/``not``. That covers the
conditions of Argo's documentation and their guards::

    result[0] >= 0.95
    isNaN(result[0]) || result[0] >= 0.95
    len(result) == 0 || result[0] >= 0.95
    result[0] < 0.01 || isNaN(result[0])

anything else is refused when the policy is loaded. Evaluation follows ``expr``: a comparison
with NaN is false (``!=`` true); ``&&``/``||`` short-circuit left to right; reading the value of
an empty vector (``result[0]``, ``isNaN(result[0])``) is an evaluation error (``EmptyResult``),
which Argo turns into an Error measurement — unless a guard such as ``len(result) == 0 ||``
decided first. ``result`` and ``result[0]`` are the same value here (a one-element vector).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import cast

__all__ = ["Condition", "ConditionError", "EmptyResult"]

_RESULT = r"result(?:\[0\])?"
_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<logic>&&|\|\||\band\b|\bor\b)|(?P<not>!(?!=)|\bnot\b)|(?P<lp>\()|(?P<rp>\))"
    rf"|(?P<nan>isNaN\(\s*{_RESULT}\s*\))|(?P<inf>isInf\(\s*{_RESULT}\s*\))"
    rf"|(?P<len>len\(\s*result\s*\))|(?P<result>{_RESULT}))"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}

Result = float | None
"""What a query returned: its one value (NaN included), or None for an empty vector."""
_Fn = Callable[[Result], bool]


class ConditionError(ValueError):
    """A condition outside the safe language."""


class EmptyResult(LookupError):
    """The condition read the value of an empty result vector (``expr``: index out of range)."""


def _value(result: Result) -> float:
    if result is None:
        raise EmptyResult("the query returned an empty result: result[0] is out of range")
    return result


def _length(result: Result) -> float:
    return 0.0 if result is None else 1.0


class Condition:
    """A parsed condition; ``Condition("result[0] >= 0.99")(0.995) is True``.

    Call it with the query's value, or ``None`` for an empty vector; it raises ``EmptyResult``
    when it has to read the value of an empty vector.
    """

    __slots__ = ("_fn", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        tokens = self._tokenize(text)
        fn, pos = self._parse_or(tokens, 0)
        if pos != len(tokens):
            raise ConditionError(f"unexpected {tokens[pos][1]!r} in condition {text!r}")
        self._fn = fn

    def __call__(self, result: Result) -> bool:
        return self._fn(result)

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise ConditionError(
                    f"condition {text!r} is not a safe comparison (use e.g. 'result[0] >= 0.99')"
                )
            kind = cast(str, match.lastgroup)  # every alternative of _TOKEN is a named group
            tokens.append((kind, match.group(kind)))
            pos = match.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        if not tokens:
            raise ConditionError("condition is empty")
        return tokens

    def _parse_or(self, tokens, pos) -> tuple[_Fn, int]:
        left, pos = self._parse_and(tokens, pos)
        while pos < len(tokens) and tokens[pos][1] in ("||", "or"):
            right, pos = self._parse_and(tokens, pos + 1)
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left, pos

    def _parse_and(self, tokens, pos) -> tuple[_Fn, int]:
        left, pos = self._parse_term(tokens, pos)
        while pos < len(tokens) and tokens[pos][1] in ("&&", "and"):
            right, pos = self._parse_term(tokens, pos + 1)
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left, pos

    def _parse_term(self, tokens, pos) -> tuple[_Fn, int]:
        if pos >= len(tokens):
            raise ConditionError(f"condition {self.text!r} ends too early")
        kind = tokens[pos][0]
        if kind == "not":
            inner, pos = self._parse_term(tokens, pos + 1)
            return (lambda f: lambda r: not f(r))(inner), pos
        if kind == "lp":
            inner, pos = self._parse_or(tokens, pos + 1)
            if pos >= len(tokens) or tokens[pos][0] != "rp":
                raise ConditionError(f"unbalanced parentheses in condition {self.text!r}")
            return inner, pos + 1
        if kind == "nan":
            return (lambda r: math.isnan(_value(r))), pos + 1
        if kind == "inf":
            return (lambda r: math.isinf(_value(r))), pos + 1
        return self._parse_comparison(tokens, pos)

    def _parse_comparison(self, tokens, pos) -> tuple[_Fn, int]:
        if pos + 3 > len(tokens):
            raise ConditionError(f"condition {self.text!r} is not a comparison")
        (k1, v1), (k2, v2), (k3, v3) = tokens[pos : pos + 3]
        if k2 != "op":
            raise ConditionError(f"expected a comparison operator in condition {self.text!r}")
        read = {"result": _value, "len": _length}
        op = _OPS[v2]
        if k1 in read and k3 == "num":
            get, number = read[k1], float(v3)
            return (lambda r: op(get(r), number)), pos + 3
        if k1 == "num" and k3 in read:
            get, number = read[k3], float(v1)
            return (lambda r: op(number, get(r))), pos + 3
        raise ConditionError(
            f"condition {self.text!r} must compare result or len(result) with a number"
        )
