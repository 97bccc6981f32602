"""A PromQL subset read into a small tree, for ``promql_forms`` to match against known forms.

Nodes are tuples: ``("num", value)``, ``("sel", metric, matchers, range)`` with matchers a
sorted tuple of ``(label, op, value)``, ``("call", name, args, grouping)`` and
``("bin", op, left, right)``; a set operator's vector matching is part of its op
(``"and on()"``). What lies outside the subset (offsets, ``bool``, ``on``/``ignoring`` on
arithmetic, subqueries) raises ``ValueError``: such a query is no recognised form.
"""

from __future__ import annotations

import re
from typing import Any, cast

__all__ = ["number", "parse"]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')|(?P<range>\[[^\]]*\])"
    r"|(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)|(?P<op>=~|!~|==|!=|>=|<=|[-+*/<>=(){},])"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*))"
)
_LEVELS = (("or",), ("and", "unless"), ("==", "!=", ">=", "<=", ">", "<"), ("+", "-"), ("*", "/"))
_SET_OPS = ("or", "and", "unless")


MAX_DEPTH = 64
"""Nested parentheses, calls and unary minus a query may hold (a deeper one is refused, never
a RecursionError)."""


def parse(text: str) -> Any:
    """The tree of ``text``; ``ValueError`` (or ``IndexError``) outside the subset."""
    return _Parser(text).parse()


def number(node: Any) -> float | None:
    """The value of a number node, else None."""
    return node[1] if node[0] == "num" else None


class _Parser:
    """A PromQL subset: selectors, ranges, calls, aggregations with by, + - * /, comparisons."""

    def __init__(self, text: str) -> None:
        self.toks: list[tuple[str, str]] = []
        self.depth = 0  # of primaries being read (parentheses, calls, unary minus)
        self.i, pos, text = 0, 0, text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise ValueError(f"cannot read PromQL at {text[pos : pos + 20]!r}")
            kind = cast(str, match.lastgroup)  # every alternative of _TOKEN is a named group
            self.toks.append((kind, match.group(kind)))
            pos = match.end()

    def peek(self, value: str | None = None, kind: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        k, v = self.toks[self.i]
        return (value is None or v == value) and (kind is None or k == kind)

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        if not self.peek(value, kind):
            raise ValueError(f"expected {value or kind}")
        self.i += 1
        return self.toks[self.i - 1][1]

    def skip(self, value: str) -> bool:
        found = self.peek(value)
        self.i += found
        return found

    def parse(self) -> Any:
        node = self.expr()
        if self.i != len(self.toks):
            raise ValueError("trailing tokens")
        return node

    def expr(self, level: int = 0) -> Any:
        """Binary operators by precedence: or, and/unless, comparisons, + -, * /."""
        if level == len(_LEVELS):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ValueError(f"nested more than {MAX_DEPTH} deep")
            try:
                if self.peek("-"):
                    self.take()
                    return ("bin", "*", ("num", -1.0), self.expr(level))
                return self.primary()
            finally:
                self.depth -= 1
        left = self.expr(level + 1)
        while any(self.peek(o) for o in _LEVELS[level]):
            op = self.take()
            if self.peek("bool"):
                raise ValueError("bool comparisons are not a recognised form")
            if op in _SET_OPS and (self.peek("on") or self.peek("ignoring")):
                kind, labels = self.grouping()
                op = f"{op} {kind}({','.join(labels)})"
            left = ("bin", op, left, self.expr(level + 1))
        return left

    def primary(self) -> Any:
        if self.peek(kind="num"):
            return ("num", float(self.take()))
        if self.peek("("):
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if self.peek("{"):
            return self.selector("")
        name = self.take(kind="ident")
        by = None
        if self.peek("by") or self.peek("without"):
            by = self.grouping()
        if self.peek("("):
            self.take()
            args = [self.expr()] if not self.peek(")") else []
            while self.skip(","):
                args.append(self.expr())
            self.take(")")
            if self.peek("by") or self.peek("without"):
                by = self.grouping()
            return ("call", name, tuple(args), by)
        return self.selector(name)

    def grouping(self) -> tuple[str, tuple[str, ...]]:
        kind, labels = self.take(), []  # by, without, on or ignoring
        self.take("(")
        while not self.peek(")"):
            labels.append(self.take(kind="ident"))
            self.skip(",")
        self.take(")")
        return kind, tuple(sorted(labels))

    def selector(self, metric: str) -> Any:
        matchers = []
        if self.peek("{"):
            self.take()
            while not self.peek("}"):
                label = self.take(kind="ident")
                op = self.take()
                if op not in ("=", "!=", "=~", "!~"):
                    raise ValueError(f"bad matcher operator {op}")
                raw = self.take(kind="str")[1:-1]
                value = re.sub(r"\\(.)", r"\1", raw)
                if label == "__name__" and op == "=":
                    metric = value
                else:
                    matchers.append((label, op, value))
                self.skip(",")
            self.take("}")
        window = self.take(kind="range")[1:-1].strip() if self.peek(kind="range") else None
        return ("sel", metric, tuple(sorted(matchers)), window)
