"""Durations: float seconds inside, numbers or "30s"/"10m"/"1h"/"2d" strings in YAML (DESIGN §3).

Parsing happens only at load time; everything after sees plain seconds.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["MAX_SECONDS", "Duration", "format_duration", "parse_duration"]

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
