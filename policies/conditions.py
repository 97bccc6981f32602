"""Argo-style success/failure conditions as a safe comparison language — never ``eval``.

Accepted: comparisons of ``result`` (or ``result[0]``) with a number, joined by ``&&``/``||``
(also ``and``/``or``), with parentheses and ``!``/``not``; ``isNaN(result)`` is a term too.
That covers the conditions of Argo's documentation (``result[0] >= 0.95``,
``result < 0.01 || isNaN(result)``); anything else is refused when the policy is loaded.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import cast

__all__ = ["Condition", "ConditionError"]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<logic>&&|\|\||\band\b|\bor\b)|(?P<not>!(?!=)|\bnot\b)|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<nan>isNaN\(\s*result(?:\[0\])?\s*\))|(?P<result>result(?:\[0\])?))"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


class ConditionError(ValueError):
    """A condition outside the safe language."""


class Condition:
    """A parsed condition; ``Condition("result[0] >= 0.99")(0.995) is True``."""

    __slots__ = ("_fn", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        tokens = self._tokenize(text)
        fn, pos = self._parse_or(tokens, 0)
        if pos != len(tokens):
            raise ConditionError(f"unexpected {tokens[pos][1]!r} in condition {text!r}")
        self._fn = fn

    def __call__(self, result: float) -> bool:
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

    def _parse_or(self, tokens, pos):
        left, pos = self._parse_and(tokens, pos)
        while pos < len(tokens) and tokens[pos][1] in ("||", "or"):
            right, pos = self._parse_and(tokens, pos + 1)
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left, pos

    def _parse_and(self, tokens, pos):
        left, pos = self._parse_term(tokens, pos)
        while pos < len(tokens) and tokens[pos][1] in ("&&", "and"):
            right, pos = self._parse_term(tokens, pos + 1)
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left, pos

    def _parse_term(self, tokens, pos):
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
            return (lambda r: math.isnan(r)), pos + 1
        return self._parse_comparison(tokens, pos)

    def _parse_comparison(self, tokens, pos):
        if pos + 3 > len(tokens):
            raise ConditionError(f"condition {self.text!r} is not a comparison")
        (k1, v1), (k2, v2), (k3, v3) = tokens[pos : pos + 3]
        if k2 != "op":
            raise ConditionError(f"expected a comparison operator in condition {self.text!r}")
        if k1 == "result" and k3 == "num":
            op, number = _OPS[v2], float(v3)
            return (lambda r: op(r, number)), pos + 3
        if k1 == "num" and k3 == "result":
            op, number = _OPS[v2], float(v1)
            return (lambda r: op(number, r)), pos + 3
        raise ConditionError(f"condition {self.text!r} must compare result with a number")
