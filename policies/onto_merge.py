"""The edit rules of ``export --onto``: apply diff(E0, E1) to a team's own document.

E0 is the export of the policy imported from the document, E1 the export of the new policy,
both with the same target, so everything they agree on (object names, addresses, pod templates
the exporter invents) is left alone and only what the policy changed is written. Where the
document says a thing differently from E0 (``result`` for ``result[0]``, ``300s`` for ``5m``, a
query in percent whose conditions the importer divided by 100), the new value is written in the
document's own way: the same ratio to the old number, the same text around the numbers.

Units of change: a metric (a list item with a name and a query, provider or threshold) changes
as a whole when its query changes or a threshold cannot be written in the document's scale, so
a condition and its query's scale never get out of step; a list whose items are added or
removed is aligned item by item (``difflib``), keeping the document's items that E0 and E1
share; everything else changes leaf by leaf. ``Names`` translates the exporter's template names
back into the document's.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

__all__ = ["Names", "merge"]

_NUMBER = re.compile(r"(?<![\w.\[\]])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_COUPLED = (
    *("provider", "templateRef", "query"),
    *("successCondition", "failureCondition", "threshold", "thresholdRange"),
)
"""A metric's query and the fields read in its scale: written together or not at all."""


class _Untranslatable(Exception):
    """A changed value the document says in a way the new value cannot be put in."""


@dataclass
class Names:
    """Exported template names -> the document's: ``refs`` maps an exported AnalysisTemplate
    or MetricTemplate name to (kind, name) of the original; ``args`` gives, per original
    template set, the ``args`` an original analysis block passes it."""

    refs: dict[str, tuple[str, str]] = field(default_factory=dict)
    args: dict[tuple[tuple[str, str], ...], Any] = field(default_factory=dict)

    def ref(self, exported: dict) -> dict:
        """An Argo template reference (``templateName``) in the document's names."""
        out = dict(exported)
        kind, name = self.refs.get(str(exported.get("templateName")), ("", ""))
        if name:
            out["templateName"] = name
            if kind == "ClusterAnalysisTemplate":
                out["clusterScope"] = True
        return out


def _is_metric(item: Any) -> bool:
    return isinstance(item, dict) and "name" in item and any(k in item for k in _COUPLED)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def convert(value: Any, names: Names) -> Any:
    """An exported value as it is written into the document (template names translated)."""
    value = _plain(value)  # new containers all the way down
    return _translate(value, names)


def _translate(value: Any, names: Names) -> Any:
    if isinstance(value, list):
        return [_translate(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _translate(v, names) for k, v in value.items()}
    if isinstance(out.get("templates"), list) and all(
        isinstance(t, dict) and "templateName" in t for t in out["templates"]
    ):
        out["templates"] = [names.ref(t) for t in out["templates"]]
        key = tuple(names.refs.get(str(t["templateName"]), ("", "")) for t in value["templates"])
        if all(k[1] for k in key) and key in names.args:
            args = names.args[key]
            if args is None:
                out.pop("args", None)
            else:
                out["args"] = _plain(args)
    ref = out.get("templateRef")
    if isinstance(ref, dict) and str(ref.get("name")) in names.refs:
        out["templateRef"] = {**ref, "name": names.refs[str(ref["name"])][1]}
    return out


def _number(x: float, like: Any) -> Any:
    x = float(f"{x:.12g}")
    if x == int(x) and (isinstance(like, int) or abs(x) >= 1):
        return int(x)
    return x


def _scaled_text(o: str, e0: str, e1: str) -> str:
    """``e1`` written as ``o`` writes ``e0``: same text between the numbers, each number at
    the ratio ``o`` has to ``e0`` (``result`` and ``result[0]`` read alike)."""

    def parts(text: str) -> tuple[list[str], list[float]]:
        text = re.sub(r"\bresult\[0\]", "result", text)
        pieces = _NUMBER.split(text)
        return pieces[0::2], [float(p) for p in pieces[1::2]]

    o_text, o_num = parts(o)
    e0_text, e0_num = parts(e0)
    e1_text, e1_num = parts(e1)
    if o_text != e0_text or e1_text != e0_text or len(o_num) != len(e1_num):
        raise _Untranslatable
    out = [o_text[0]]
    raw = _NUMBER.split(re.sub(r"\bresult\[0\]", "result", o))[1::2]
    for i, (a, b, c) in enumerate(zip(o_num, e0_num, e1_num, strict=True)):
        if b == c:  # a number the policy did not change stays as the document writes it
            out.append(raw[i])
        else:
            ratio = _ratio(a, b)
            value = _number(c * ratio, 1 if "." not in raw[i] else 0.5)
            out.append(repr(value) if isinstance(value, float) else str(value))
        out.append(o_text[i + 1])
    text = "".join(out)
    return text if "result[0]" not in o else re.sub(r"\bresult\b(?!\s*\[)", "result[0]", text)


_TOKEN = re.compile(r"\w+(?:\.\w+)*|[^\w\s]")


def _token_edit(o: str, e0: str, e1: str) -> str:
    """``o`` with the tokens E1 substitutes for E0's substituted alike (a query's window
    ``2m`` -> ``5m``, its quantile), keeping the document's own query around them."""
    a, b = _TOKEN.findall(e0), _TOKEN.findall(e1)
    pairs = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op != "replace" or i2 - i1 != j2 - j1:
            raise _Untranslatable
        pairs += list(zip(a[i1:i2], b[j1:j2], strict=True))
    out = o
    for old, new in dict(pairs).items():
        if not re.fullmatch(r"[\w.]+", old):
            raise _Untranslatable
        out, n = re.subn(rf"(?<![\w.]){re.escape(old)}(?![\w.])", new, out)
        if not n:
            raise _Untranslatable
    return out


def _ratio(a: float, b: float) -> float:
    if b == 0:
        if a == 0:
            return 1.0
        raise _Untranslatable
    return a / b


def _leaf(o: Any, e0: Any, e1: Any, strict: bool) -> Any:
    """The new value of a leaf the document holds as ``o`` and E0 as ``e0``."""
    if (o == e0 and type(o) is type(e0)) or isinstance(o, bool) or isinstance(e1, bool):
        return e1
    numeric = (int, float)
    if isinstance(o, numeric) and isinstance(e0, numeric) and isinstance(e1, numeric):
        return _number(e1 * _ratio(float(o), float(e0)), o)
    if o == e0:
        return e1
    if isinstance(o, str) and isinstance(e0, str) and isinstance(e1, str):
        for way in (_scaled_text, _token_edit):
            try:
                return way(o, e0, e1)
            except _Untranslatable:
                pass
        if strict:
            raise _Untranslatable
    elif strict:
        raise _Untranslatable
    return e1


def merge(o: Any, e0: Any, e1: Any, names: Names, *, strict: bool = False) -> Any:
    """``o`` with the changes from ``e0`` to ``e1``; dicts and lists are edited in place.

    ``strict``: raise ``_Untranslatable`` rather than write a value the document says
    differently (inside a metric, where the whole metric is written instead)."""
    if e0 == e1:
        return o
    if isinstance(o, dict) and isinstance(e0, dict) and isinstance(e1, dict):
        if _is_metric(e1) and _is_metric(e0) and not strict:
            return _metric(o, e0, e1, names)
        _dict(o, e0, e1, names, strict)
        return o
    if isinstance(o, list) and isinstance(e0, list) and isinstance(e1, list):
        return _list(o, e0, e1, names, strict)
    if isinstance(o, dict | list) or isinstance(e1, dict | list):
        if strict:
            raise _Untranslatable
        return convert(e1, names)
    return _styled(o, _leaf(o, e0, e1, strict))


def _styled(o: Any, new: Any) -> Any:
    """A new string in the old one's quoting (ruamel keeps it in the scalar's type)."""
    if isinstance(o, str) and isinstance(new, str) and type(o) is not str:
        try:
            return type(o)(new)
        except TypeError:
            return new
    return new


def _put(o: dict, key: str, value: Any, order: list[str]) -> None:
    """Set ``o[key]``; a new key goes after the key before it in E1's order, if the document
    has that one (ruamel's ``insert``), else at the end."""
    if key in o or not hasattr(o, "insert"):
        o[key] = value
        return
    before = order[: order.index(key)] if key in order else []
    keys = list(o)
    for prev in reversed(before):
        if prev in keys:
            o.insert(keys.index(prev) + 1, key, value)
            return
    o[key] = value


def _dict(o: dict, e0: dict, e1: dict, names: Names, strict: bool) -> None:
    order = list(e1)
    for key in list(e0):
        if key not in e1 and key in o:
            del o[key]
    for key in order:
        if key not in e0 or key not in o:
            if key in e0 and e0[key] == e1[key]:
                continue  # E0 has it, the document does not: not the policy's to add
            if strict and (key in e0 or key in _COUPLED):
                raise _Untranslatable
            _put(o, key, convert(e1[key], names), order)
        elif e0[key] != e1[key]:
            new = merge(o[key], e0[key], e1[key], names, strict=strict)
            if new is not o[key]:
                o[key] = new


def _sig(item: Any) -> Any:
    """What makes two items the same item changed: a name, else the keys (a step's action)."""
    if isinstance(item, dict):
        return ("name", str(item["name"])) if "name" in item else tuple(sorted(item))
    return type(item).__name__


def _list(o: list, e0: list, e1: list, names: Names, strict: bool) -> list:
    """Items aligned by ``difflib`` (E0's against E1's): the document's items E0 and E1 share
    stay, an item changed in place (same keys) is merged, others are added or dropped."""
    if len(o) != len(e0):
        if strict:
            raise _Untranslatable
        return convert(e1, names)  # the document's list is not E0's: written as E1 has it
    matcher = difflib.SequenceMatcher(
        a=[_canon(x) for x in e0], b=[_canon(x) for x in e1], autojunk=False
    )
    out: list[Any] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.extend(o[i1:i2])
            continue
        kinds = difflib.SequenceMatcher(
            a=[_sig(x) for x in e0[i1:i2]], b=[_sig(x) for x in e1[j1:j2]], autojunk=False
        )
        for op2, k1, k2, m1, m2 in kinds.get_opcodes():
            if op2 == "equal":
                pairs = zip(range(i1 + k1, i1 + k2), range(j1 + m1, j1 + m2), strict=True)
                out.extend(merge(o[i], e0[i], e1[j], names, strict=strict) for i, j in pairs)
            elif strict:
                raise _Untranslatable
            else:
                new = e1[j1 + m1 : j1 + m2]
                out.extend(_like(convert(x, names), _model(o, x)) for x in new)
    o[:] = out  # in place: a ruamel list keeps its comments on the items kept
    return o


def _model(o: list, item: Any) -> Any:
    """An item of the document's list shaped like ``item`` (same keys), or None."""
    if isinstance(item, dict):
        return next((x for x in o if isinstance(x, dict) and set(x) == set(item)), None)
    return None


def _like(new: Any, model: Any) -> Any:
    """A new value in the flow or block style its model in the document has."""
    if isinstance(new, dict):
        out = CommentedMap()
        for k, v in new.items():
            out[k] = _like(v, model.get(k) if isinstance(model, dict) else None)
        if isinstance(model, CommentedMap) and model.fa.flow_style():
            out.fa.set_flow_style()
        return out
    if isinstance(new, list):
        first = model[0] if isinstance(model, list) and model else None
        seq = CommentedSeq(_like(v, first) for v in new)
        if isinstance(model, CommentedSeq) and model.fa.flow_style():
            seq.fa.set_flow_style()
        return seq
    return new


def _metric(o: dict, e0: dict, e1: dict, names: Names) -> dict:
    """One metric: leaf by leaf in the document's own query and scale when every change can
    be written so (a threshold at the document's ratio, a window swapped in its query), else
    E1's metric as a whole."""
    trial = copy.deepcopy(o)
    try:
        _dict(trial, e0, e1, names, strict=True)
    except _Untranslatable:
        _whole(o, e0, e1, names)
    else:
        _dict(o, e0, e1, names, strict=True)
    return o


def _whole(o: dict, e0: dict, e1: dict, names: Names) -> None:
    """E1's metric over the document's: what E0 and E1 agree on stays the document's (a
    provider address), except the query and what is read in its scale; keys neither has stay."""
    order = list(e1)
    for key in list(e0):
        if key not in e1 and key in o:
            del o[key]
    for key in order:
        value = e1[key]
        same = key in e0 and e0[key] == value
        if key in o and same and key not in _COUPLED:
            continue
        if (
            key in o
            and isinstance(o[key], dict)
            and isinstance(value, dict)
            and set(o[key]) & set(value)
            and key in e0
            and isinstance(e0[key], dict)
        ):
            _whole(o[key], e0[key], value, names)
            continue
        _put(o, key, convert(value, names), order)
