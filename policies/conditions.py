"""Argo's success/failure conditions in a safe subset of its ``expr`` language — never ``eval``.

A condition is judged on what a measurement returned (``utils/evaluate/evaluate.go`` runs it
through ``expr`` with ``result`` bound to it): here a Prometheus vector of at most one value,
given as a float (NaN included) or ``None`` for an **empty** vector, or a string or boolean
result (a web or job provider's).

The language (expr-lang's semantics, Argo's helper functions):

- literals: numbers, strings (``"ok"``, ``'ok'``), ``true``/``false``, ``nil``, lists ``[1, 2]``;
- ``result``, indexed as ``result[i]`` (``result[-1]`` is the last); a bare ``result`` where a
  value is needed is ``result[0]`` (the vector has one element);
- ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``/``not in`` a list, ``+ - * / %``;
- ``&&``/``and``, ``||``/``or`` (left to right, short-circuit), ``!``/``not``, parentheses;
- ``len(x)``, ``isNaN(x)``, ``isInf(x)``, ``asInt(x)``, ``asFloat(x)``, ``isNil(x)``,
  ``default(x, d)``, ``all(list, {# > 0.9})`` (also ``any``, ``none``).

Typical: ``isNaN(result[0]) || result[0] >= 0.95``, ``len(result) == 0 || result[0] >= 0.95``,
``all(result, {# < 0.01})``, ``result == "healthy" || asInt(result) in [200, 204]``.

A condition that is not boolean, reads no ``result``, names anything else, or applies a
function to a value of the wrong kind is refused when the policy is loaded. Evaluation follows
``expr``: a comparison with NaN is false (``!=`` true); ``==`` between different kinds is false,
ordering them an error; an index out of range (``result[0]`` of an empty vector), a string
``asInt`` cannot read, or arithmetic on a string is an evaluation error (``EmptyResult``),
which Argo turns into an Error measurement — unless a guard such as ``len(result) == 0 ||``
decided first. Argo's ``default(x, d)`` and ``isNil(x)`` look at ``result`` itself, whatever
``x`` is: a Prometheus vector is never nil, so ``default`` gives ``result`` back."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any, cast

__all__ = ["Condition", "ConditionError", "EmptyResult"]

_RESULT = r"result(?:\[0\])?"
_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<logic>&&|\|\||\band\b|\bor\b)|(?P<in>\bnot\s+in\b|\bin\b)"
    r"|(?P<not>!(?!=)|\bnot\b)|(?P<lp>\()|(?P<rp>\))"
    rf"|(?P<nan>isNaN\(\s*{_RESULT}\s*\))|(?P<inf>isInf\(\s*{_RESULT}\s*\))"
    rf"|(?P<len>len\(\s*result\s*\))|(?P<result>{_RESULT}(?!\w))"
    r"|(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')|(?P<bool>\btrue\b|\bfalse\b)"
    r"|(?P<nil>\bnil\b)|(?P<name>[A-Za-z_]\w*)|(?P<arith>[-+*/%])|(?P<lb>\[)|(?P<rb>\])"
    r"|(?P<lc>\{)|(?P<rc>\})|(?P<comma>,)|(?P<hash>#))"
)
"""Token kinds; those of the older comparison language (num, op, logic, not, lp, rp, nan,
inf, len, result) are unchanged, as the runbook exporter reads them."""
_SIMPLE = frozenset({"num", "op", "logic", "not", "lp", "rp", "nan", "inf", "len", "result"})
# Bounds on a condition's work (Argo's are a line): characters (evaluation nests a call per
# operator), and parentheses, brackets, calls and ! or - prefixes open at once.
MAX_LENGTH, MAX_NESTING = 512, 32
_ORDER: dict[str, Callable[[Any, Any], bool]]
_ORDER = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_PLAIN = frozenset({int, float})  # exactly these types, no bool: ordered as they are

Result = float | str | bool | None
"""What a measurement returned: a query's one value (NaN included), None for an empty vector,
or a provider's string or boolean."""


class ConditionError(ValueError):
    """A condition outside the safe language."""


class EmptyResult(LookupError):
    """An evaluation error, as ``expr`` raises it: reading the value of an empty vector (index
    out of range), a type mismatch, a string ``asInt`` cannot read. Argo: an Error measurement."""


class _Vec(tuple):
    """A result vector: a value where one is needed (its first element)."""


def _scalar(value: Any) -> Any:
    if isinstance(value, _Vec):
        if not value:
            raise EmptyResult("the query returned an empty result: result[0] is out of range")
        return value[0]
    return value


def _num(value: Any) -> bool:  # a bool is no number in expr; a tuple checks faster than a union
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    a, b = _scalar(a), _scalar(b)
    if _num(a) and _num(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if type(a) not in _PLAIN or type(b) not in _PLAIN:  # else _scalar and _num would pass them
        a, b = _scalar(a), _scalar(b)
        if not ((_num(a) and _num(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise EmptyResult(f"cannot compare {a!r} {op} {b!r}")
    return _ORDER[op](a, b)


def _arith(op: str, a: Any, b: Any) -> Any:
    a, b = _scalar(a), _scalar(b)
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (_num(a) and _num(b)):
        raise EmptyResult(f"cannot compute {a!r} {op} {b!r}")
    if op == "/":
        if b == 0:
            return math.copysign(math.inf, a) if a else math.nan
        return a / b
    if op == "%":
        if not (isinstance(a, int) and isinstance(b, int)) or b == 0:
            raise EmptyResult(f"cannot compute {a!r} % {b!r}")
        return int(math.fmod(a, b))
    return {"+": operator.add, "-": operator.sub, "*": operator.mul}[op](a, b)


def _items(value: Any) -> tuple:
    if isinstance(value, tuple | list):
        return tuple(value)
    raise EmptyResult(f"{value!r} is not a list")


def _as_int(value: Any) -> int:
    value = _scalar(value)
    if isinstance(value, str):
        try:
            return int(value, 10)
        except ValueError:
            raise EmptyResult(f"asInt({value!r}): not an integer") from None
    if _num(value) and math.isfinite(value):
        return int(value)  # Go int64(f) truncates toward zero
    raise EmptyResult(f"asInt({value!r}) is not supported")


def _as_float(value: Any) -> float:
    value = _scalar(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise EmptyResult(f"asFloat({value!r}): not a number") from None
    if _num(value):
        return float(value)
    raise EmptyResult(f"asFloat({value!r}) is not supported")


def _float_of(name: str, value: Any) -> float:  # the argument of isNaN or isInf
    value = _scalar(value)
    if not _num(value):
        raise EmptyResult(f"{name}({value!r}): not a number")
    return float(value)


def _length(value: Any) -> int:
    if isinstance(value, str | tuple | list):
        return len(value)
    raise EmptyResult(f"len({value!r}) is not supported")


_Fn = Callable[[dict[str, Any]], Any]  # an evaluator of the environment (result, #)
# a parsed expression: its kind (bool, num, str, vec, list, any), evaluator, reads result
_Node = tuple[str, _Fn, bool]


class Condition:
    """A parsed condition; ``Condition("result[0] >= 0.99")(0.995) is True``. Call it with the
    measurement's value, ``None`` for an empty vector; it raises ``EmptyResult`` on an
    evaluation error (Argo: an Error measurement). It pickles as its text (closures do not)."""

    __slots__ = ("_depth", "_fn", "_plain", "_pos", "_scope", "_tokens", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        if len(text) > MAX_LENGTH:
            raise ConditionError(f"a condition of {len(text):,} characters (at most {MAX_LENGTH})")
        self._tokens = self._tokenize(text)
        self._pos = self._depth = 0  # the next token; expressions open (at most MAX_NESTING)
        self._scope: tuple[str, ...] = ()  # "#" inside all/any/none
        kind, fn, reads = self._or()
        if self._pos != len(self._tokens):
            raise ConditionError(f"unexpected {self._tokens[self._pos][1]!r} in {text!r}")
        if kind not in ("bool", "any"):
            raise ConditionError(f"condition {text!r} is not true or false (it gives a {kind})")
        if not reads:
            raise ConditionError(f"condition {text!r} does not read result")
        self._fn = fn
        tokens = self._tokens  # the usual form, result[0] >= 0.99: on a float, one comparison
        plain = [kind for kind, _ in tokens] == ["result", "op", "num"] and tokens[1][1] in _ORDER
        self._plain = (_ORDER[tokens[1][1]], _number(tokens[2][1])) if plain else None

    def __reduce__(self) -> tuple:
        return (Condition, (self.text,))

    def __call__(self, result: Result) -> bool:
        if self._plain is not None and type(result) is float:
            return self._plain[0](result, self._plain[1])
        value: Any = result  # a provider's string or boolean is the result itself
        if not isinstance(result, (str, bool)):
            value = _Vec(() if result is None else (result,))
        out = self._fn({"result": value})
        if not isinstance(out, bool):
            raise EmptyResult(f"expected a bool, got {out!r}")
        return out

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    @property
    def simple(self) -> bool:
        """Only the older comparison language (comparisons of ``result`` or ``len(result)``
        with numbers, isNaN/isInf of ``result``, logic): what a token-by-token translator of
        it (the runbook's jq) may take; anything wider it must refuse."""
        return all(kind in _SIMPLE for kind, _ in self._tokens)

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise ConditionError(
                    f"condition {text!r} is not in the safe language (use e.g. 'result[0] >= 0.99')"
                )
            kind = cast(str, match.lastgroup)  # every alternative of _TOKEN is a named group
            tokens.append((kind, match.group(kind)))
            pos = match.end()  # a token's leading blanks are its match's; the text is stripped
        if not tokens:
            raise ConditionError("condition is empty")
        return tokens

    # ------------------------------------------------------------------ parser

    def _peek(self) -> tuple[str, str]:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else ("end", "")

    def _take(self, kind: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token[0] == "end":
            raise ConditionError(f"condition {self.text!r} ends too early")
        if kind is not None and token[0] != kind:
            raise ConditionError(f"expected {kind} but found {token[1]!r} in {self.text!r}")
        self._pos += 1
        return token

    def _need(self, node: _Node, kinds: tuple[str, ...], what: str) -> None:
        if node[0] not in (*kinds, "any"):
            raise ConditionError(f"{what} takes a {' or '.join(kinds)}, not a {node[0]}")

    def _or(self) -> _Node:  # every nested expression starts here (or at a ! or - prefix)
        self._depth += 1  # checked in _unary, which every expression reaches first
        node = self._chain(("||", "or"), self._and, both=False)
        self._depth -= 1
        return node

    def _and(self) -> _Node:
        return self._chain(("&&", "and"), self._compare, both=True)

    def _chain(self, ops: tuple[str, str], operand: Callable[[], _Node], both: bool) -> _Node:
        left = operand()
        while self._peek()[1] in ops:
            op = self._take()[1]
            right = operand()
            for side in (left, right):
                self._need(side, ("bool",), op)
            left = ("bool", _logic(both, left[1], right[1]), left[2] or right[2])
        return left

    def _compare(self) -> _Node:
        left = self._additive()
        kind, op = self._peek()
        if kind not in ("op", "in"):
            return left
        self._take()
        right = self._additive()
        a, b, reads = left[1], right[1], left[2] or right[2]
        if kind == "in":
            self._need(right, ("list", "vec"), "in")
            negate = op.startswith("not")
            return (
                "bool",
                lambda e: negate != any(_equal(a(e), x) for x in _items(b(e))),
                reads,
            )
        if op in ("==", "!="):
            same = op == "=="
            return "bool", lambda e: _equal(a(e), b(e)) == same, reads
        for side in (left, right):
            self._need(side, ("num", "str", "vec"), op)
        return "bool", lambda e: _compare(op, a(e), b(e)), reads

    def _additive(self) -> _Node:
        left = self._multiplicative()
        while True:
            kind, value = self._peek()
            if kind == "arith" and value in "+-":
                self._take()
                right = self._multiplicative()
            elif kind == "num" and value[0] in "+-":  # "x -1": a signed number after a value
                self._tokens[self._pos] = ("num", value[1:])
                right = self._multiplicative()
                value = value[0]
            else:
                return left
            left = self._binary(value, left, right)

    def _multiplicative(self) -> _Node:
        left = self._unary()
        while self._peek()[0] == "arith" and self._peek()[1] in "*/%":
            op = self._take()[1]
            left = self._binary(op, left, self._unary())
        return left

    def _binary(self, op: str, left: _Node, right: _Node) -> _Node:
        kinds = ("num", "vec", "str") if op == "+" else ("num", "vec")
        for side in (left, right):
            self._need(side, kinds, op)
        a, b = left[1], right[1]
        kind = "str" if op == "+" and "str" in (left[0], right[0]) else "num"
        return kind, lambda e: _arith(op, a(e), b(e)), left[2] or right[2]

    def _unary(self) -> _Node:
        if self._depth > MAX_NESTING:
            raise ConditionError(f"a condition nested deeper than {MAX_NESTING} levels")
        kind, value = self._peek()
        if kind == "not" or (kind == "arith" and value in "+-"):
            self._take()
            self._depth += 1
            inner = self._unary()
            self._depth -= 1
            if kind == "not":
                self._need(inner, ("bool",), value)
                f = inner[1]
                return "bool", lambda e: not _truth(f(e)), inner[2]
            self._need(inner, ("num", "vec"), value)
            f, sign = inner[1], -1 if value == "-" else 1
            return "num", lambda e: _arith("*", sign, f(e)), inner[2]
        return self._postfix(self._primary())

    def _postfix(self, node: _Node) -> _Node:
        while self._peek()[0] == "lb":
            self._take()
            index = self._or()
            self._take("rb")
            self._need(node, ("vec", "list", "str"), "indexing")
            self._need(index, ("num",), "an index")
            f, i = node[1], index[1]
            kind = "num" if node[0] == "vec" else "any"  # a vector holds numbers
            node = (kind, _indexer(f, i), node[2] or index[2])
        return node

    def _primary(self) -> _Node:
        kind, value = self._take()
        if kind == "num":
            number = _number(value)
            return "num", lambda e: number, False
        if kind == "str":
            text = _unquote(value)
            return "str", lambda e: text, False
        if kind == "bool":
            return "bool", lambda e: value == "true", False
        if kind == "nil":
            return "any", lambda e: None, False
        if kind == "result":  # result or result[0]: the value (vector indexing: _postfix)
            if value == "result":
                return "vec", lambda e: e["result"], True
            return "num", lambda e: _index(e["result"], 0), True
        if kind == "nan":
            return "bool", lambda e: math.isnan(_float_of("isNaN", e["result"])), True
        if kind == "inf":
            return "bool", lambda e: math.isinf(_float_of("isInf", e["result"])), True
        if kind == "len":
            return "num", lambda e: _length(e["result"]), True
        if kind == "hash":
            if "#" not in self._scope:
                raise ConditionError(f"# is only meaningful inside all/any/none in {self.text!r}")
            return "any", lambda e: e["#"], False
        if kind == "lp":
            inner = self._or()
            self._take("rp")
            return inner
        if kind == "lb":
            return self._list()
        if kind == "name":
            return self._call(value)
        raise ConditionError(f"unexpected {value!r} in condition {self.text!r}")

    def _list(self) -> _Node:
        items: list[_Node] = []
        while self._peek()[0] != "rb":
            items.append(self._or())
            if self._peek()[0] != "comma":
                break
            self._take()
        self._take("rb")
        fns = [f for _, f, _ in items]
        return "list", lambda e: tuple(f(e) for f in fns), any(r for _, _, r in items)

    def _call(self, name: str) -> _Node:
        if name not in _FUNCTIONS and name not in ("all", "any", "none"):
            raise ConditionError(
                f"condition {self.text!r} is not a safe comparison: unknown name {name!r}"
            )
        self._take("lp")
        if name in ("all", "any", "none"):
            return self._quantifier(name)
        args = [self._or()]
        while self._peek()[0] == "comma":
            self._take()
            args.append(self._or())
        self._take("rp")
        takes, gives, fn = _FUNCTIONS[name]
        if len(args) != len(takes):
            raise ConditionError(f"{name} takes {len(takes)} argument(s) in {self.text!r}")
        for arg, kinds in zip(args, takes, strict=True):
            self._need(arg, kinds, name)
        fns = [f for _, f, _ in args]
        reads = any(r for _, _, r in args) or name in ("default", "isNil")
        return gives, lambda e: fn(e, *(f(e) for f in fns)), reads

    def _quantifier(self, name: str) -> _Node:
        items = self._or()
        self._need(items, ("vec", "list"), name)
        self._take("comma")
        braces = self._peek()[0] == "lc"
        if braces:
            self._take()
        outer, self._scope = self._scope, (*self._scope, "#")
        try:
            predicate = self._or()
        finally:
            self._scope = outer
        if braces:
            self._take("rc")
        self._take("rp")
        self._need(predicate, ("bool",), name)
        each, test = items[1], predicate[1]
        quantify = {"all": all, "any": any, "none": lambda xs: not any(xs)}[name]
        return (
            "bool",
            lambda e: quantify(_truth(test({**e, "#": x})) for x in _items(each(e))),
            items[2] or predicate[2],
        )


def _logic(both: bool, a: _Fn, b: _Fn) -> _Fn:
    """``&&`` or ``||``, left to right, short-circuiting as expr does."""
    if both:
        return lambda e: _truth(a(e)) and _truth(b(e))
    return lambda e: _truth(a(e)) or _truth(b(e))


def _indexer(f: _Fn, i: _Fn) -> _Fn:
    return lambda e: _index(f(e), i(e))


def _number(token: str) -> int | float:
    return float(token) if re.search(r"[.eE]", token) else int(token)


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise EmptyResult(f"{value!r} is not true or false")
    return value


def _index(value: Any, index: Any) -> Any:
    if not isinstance(value, (tuple, list, str)) or not isinstance(index, int):
        raise EmptyResult(f"cannot index {value!r} with {index!r}")
    position = index + len(value) if index < 0 else index
    if not 0 <= position < len(value):
        if isinstance(value, _Vec) and not value:
            raise EmptyResult("the query returned an empty result: result[0] is out of range")
        raise EmptyResult(f"index {index} out of range (the result has {len(value)})")
    return value[position]


def _unquote(token: str) -> str:
    escape = {"n": "\n", "t": "\t"}
    return re.sub(r"\\(.)", lambda m: escape.get(m.group(1), m.group(1)), token[1:-1])


_NUMERIC = ("num", "vec")
_ANY = ("vec", "list", "str", "num", "bool")
_FUNCTIONS: dict[str, tuple[tuple[tuple[str, ...], ...], str, Callable[..., Any]]] = {
    "len": ((("vec", "list", "str"),), "num", lambda e, x: _length(x)),
    "isNaN": ((_NUMERIC,), "bool", lambda e, x: math.isnan(_float_of("isNaN", x))),
    "isInf": ((_NUMERIC,), "bool", lambda e, x: math.isinf(_float_of("isInf", x))),
    "asInt": (((*_NUMERIC, "str"),), "num", lambda e, x: _as_int(x)),
    "asFloat": (((*_NUMERIC, "str"),), "num", lambda e, x: _as_float(x)),
    # Argo's isNil and default look at result itself, whatever their first argument
    "isNil": ((_ANY,), "bool", lambda e, x: e["result"] is None),
    "default": ((_ANY, _ANY), "any", lambda e, x, d: d if e["result"] is None else e["result"]),
}
