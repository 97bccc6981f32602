"""Durations: float seconds inside, numbers or "30s"/"10m"/"1h"/"2d" strings in YAML (DESIGN §3).

Parsing happens only at load time; everything after sees plain seconds.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "90s", "1h30m", "2d"; refuses negatives."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f'"{value}" is not a duration (use seconds or e.g. "30s", "10m", "1h", "2d")'
                ) from None
    else:
        raise ValueError(f"{value!r} is not a duration")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a duration must be >= 0")
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
