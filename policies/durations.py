"""Durations: float seconds inside, numbers or "30s"/"10m"/"1h"/"2d" strings in YAML (DESIGN §3).

Parsing happens only at load time; everything after sees plain seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = [
    "AMBIGUOUS_OVER",
    "MAX_SECONDS",
    "Duration",
    "ambiguous_durations",
    "format_duration",
    "parse_duration",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.ASCII)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
MAX_SECONDS = 3650 * 86400.0
"""The longest duration anything here may last (ten years, "3650d"): beyond it a value is a
typo or an attack, and the event arithmetic it would feed is meaningless."""
_MAX_TEXT = 64  # characters of a duration string ("1h30m" is 5)


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "90s", "1h30m", "2d"; refuses negatives,
    non-finite values, durations beyond ``MAX_SECONDS`` and digits other than ASCII 0-9
    (``float()`` would read "５" as 5, which no executor does)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"a {len(str(value))}-digit duration is longer than 3650d") from None
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"{value!r} is not a duration")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a duration must be >= 0")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{_shown(value)} is longer than {MAX_SECONDS:.0f} s (3650d), the limit")
    return seconds


def _shown(value: object) -> str:
    return f"{value:.6g} s" if isinstance(value, int | float) else repr(value)


def _parse_text(value: str) -> float:
    text = value.strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"a duration of {len(text)} characters is not a duration (at most 64)")
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        raise ValueError(f"{value!r}: a duration is written with ASCII digits 0-9 only")
    if _NUMBER.fullmatch(text):
        return float(text)
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        shown = f'"{value}"' if value.isprintable() else repr(value)  # one line, always
        raise ValueError(
            f'{shown} is not a duration (use seconds or e.g. "30s", "10m", "1h", "2d")'
        )
    return seconds


def format_duration(seconds: float) -> str | float:
    """The shortest exact string for whole seconds ("10m", "90s"); other values stay numbers."""
    if seconds != int(seconds):
        return seconds
    whole = int(seconds)
    for unit in ("d", "h", "m"):
        size = int(_UNITS[unit])
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


DURATION_JSON_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|(\d+(\.\d+)?(ms|s|m|h|d))+)\s*$"},
    ],
    "description": 'seconds, or a duration such as "30s", "10m", "1h", "2d"',
}

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, when_used="json"),
    WithJsonSchema(DURATION_JSON_SCHEMA, mode="validation"),
]
"""A pydantic field type: accepts seconds or a duration string, holds float seconds."""


AMBIGUOUS_OVER = {"latency": 10.0, "duration": 86400.0}
"""Seconds above which a duration written as a bare number is likely meant in another unit,
by field kind: a request latency (``latencyObjective``, ``latencyShift``, a latency
distribution) over 10 s is almost always milliseconds written bare (``latencyObjective:
1000``); any other duration (pauses, intervals, windows, delays, horizons) over a day. A
value written with a unit (``"1000ms"``, ``"1000s"``) is never warned about."""
LATENCY_KEYS = frozenset({"latency", "latencyObjective", "latencyShift"})
"""Keys whose durations (and everything under them) are request latencies."""


def ambiguous_durations(obj: Any, raw: Any, path: str = "") -> list[str]:
    """A warning for each duration of a validated model ``obj`` that its YAML ``raw`` gave as
    a bare number above ``AMBIGUOUS_OVER`` for its kind: valid, but probably not meant."""
    out: list[str] = []
    _walk(obj, raw, path, False, out)
    return out


def _walk(obj: Any, raw: Any, path: str, latency: bool, out: list[str]) -> None:
    fields = getattr(type(obj), "model_fields", None)
    if fields is None:
        if isinstance(obj, tuple | list) and isinstance(raw, list):
            for i, (item, given) in enumerate(zip(obj, raw)):
                _walk(item, given, f"{path}[{i}]", latency, out)
        elif isinstance(obj, dict) and isinstance(raw, dict):
            for key, item in obj.items():
                _walk(item, raw.get(key), f"{path}.{key}" if path else str(key), latency, out)
        return
    if list(fields) == ["root"]:  # a RootModel: its YAML is the root value itself
        _walk(obj.root, raw, path, latency, out)
        return
    raw = _as_fields(type(obj), fields, raw)
    for name, field in fields.items() if isinstance(raw, dict) else ():
        key = field.alias or name
        given = raw.get(key, raw.get(name))
        here = f"{path}.{key}" if path else key
        kind = "latency" if latency or key in LATENCY_KEYS else "duration"
        if given is None or key.endswith("Seconds"):  # the unit is in the name
            continue
        if _is_duration(field.annotation, field.metadata):
            for i, value in enumerate(given if isinstance(given, list) else [given]):
                where = f"{here}[{i}]" if isinstance(given, list) else here
                out += _warning(where, value, kind)
        else:
            _walk(getattr(obj, name), given, here, kind == "latency", out)


def _as_fields(cls: type, fields: dict[str, Any], raw: Any) -> Any:
    """A short form as its fields: ``{lognormal: {median: 80}}`` (the key is the model's
    ``kind``), ``30`` (its one duration), ``[20, 40]`` (its durations in order)."""
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) == getattr(cls, "kind", None):
        raw = next(iter(raw.values()))
    durations = [f.alias or n for n, f in fields.items() if _is_duration(f.annotation, f.metadata)]
    if isinstance(raw, int | float | str) and len(durations) == 1:
        return {durations[0]: raw}
    if isinstance(raw, list) and len(durations) == 1:
        return {durations[0]: raw}
    if isinstance(raw, list) and len(raw) == len(durations):
        return dict(zip(durations, raw))
    return raw


def _is_duration(annotation: Any, metadata: Sequence[Any] = ()) -> bool:
    if any(getattr(m, "func", None) is parse_duration for m in metadata):
        return True
    extra = getattr(annotation, "__metadata__", ())
    if any(getattr(m, "func", None) is parse_duration for m in extra):
        return True
    return any(_is_duration(arg) for arg in get_args(annotation) if arg is not Ellipsis)


def _warning(path: str, value: Any, kind: str) -> list[str]:
    bare = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        bare, value = True, float(value)
    if not bare or not math.isfinite(value) or value <= AMBIGUOUS_OVER[kind]:
        return []
    what = "request latency" if kind == "latency" else "duration"
    shown, long = f"{value:g}", _human(float(value))
    long = "" if long == f"{shown} seconds" else f" ({long})"
    return [
        f"warning: {path}: {shown} is read as {shown} seconds{long}, long for a {what} written"
        f' without a unit (over {_human(AMBIGUOUS_OVER[kind])}): write "{shown}ms" if you meant'
        f' milliseconds, or "{shown}s" to keep it'
    ]


def _human(seconds: float) -> str:
    for size, unit in ((86400, "days"), (3600, "hours"), (60, "minutes")):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:g} seconds"
