"""How the Argo importer reads single fields: durations, integers, known keys, placeholders.

Shared by the Rollout reader (``argo_steps``), the AnalysisTemplate reader (``argo``) and the
Flagger importer (Go durations). Every bad value becomes one ``PolicyError`` naming its field.
"""

from __future__ import annotations

import math
import re
from typing import Any

from policies.base import brief, find_flow_key
from policies.exporters.promql_versions import ARG
from policies.importers.context import Context

__all__ = [
    "ARG",
    "as_int",
    "check_keys",
    "go_seconds",
    "mapping",
    "refuse_flow_keys",
    "substitute",
]

_GO_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_GO_PART = re.compile(rf"({_GO_NUMBER})(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_GO_UNIT = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1,
    "m": 60,
    "h": 3600,
}
_GO_DURATION = re.compile(rf"[-+]?(?:{_GO_NUMBER}(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+|[-+]?0")
_GO_INT = re.compile(r"[-+]?[0-9]+")
_GO_MAX_S = (2**63 - 1) / 1e9
"""Go's longest ``time.Duration``: int64 nanoseconds."""


def go_seconds(value: Any, path: str, ctx: Context, *, whole: bool = False) -> float:
    """Seconds of an Argo duration, read as Argo reads it (``DurationString``): whole seconds
    (Go's ``ParseInt``: ASCII digits, no spaces or underscores), else Go's
    ``time.ParseDuration`` (ns to h, no "d"); beyond Go's int64 nanoseconds is an error."""
    if isinstance(value, bool | dict | list) or value is None:
        raise ctx.error(path, f"{brief(value)} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value)
        if _GO_INT.fullmatch(text):
            seconds = float(int(text)) if len(text) <= 20 else math.inf  # beyond int64: refused
        elif _GO_DURATION.fullmatch(text):
            sign = -1.0 if text.startswith("-") else 1.0
            seconds = sign * sum(
                float(m.group(1)) * _GO_UNIT[m.group(2)] for m in _GO_PART.finditer(text)
            )
        else:
            raise ctx.error(
                path,
                f"{brief(value)} is not an Argo duration (whole seconds, or a Go duration such as"
                " 30s, 5m, 1h30m; Go has no 'd')",
            )
    if not math.isfinite(seconds) or abs(seconds) > _GO_MAX_S:
        raise ctx.error(path, f"{brief(value)} is beyond Go's longest duration (about 292 years)")
    if whole and seconds != math.floor(seconds):
        ctx.notes.append(f"{path}: {value!r} truncates to {math.floor(seconds)} s, as Argo does")
        seconds = float(math.floor(seconds))
    return seconds


def substitute(
    value: Any, args: dict[str, str], path: str, ctx: Context, label: str | None = None
) -> Any:
    """``value`` with its ``{{args.x}}`` replaced as Argo does when the run starts: by the
    analysis reference's value, else the template's default; one that has neither is refused
    by name (a field read before the run cannot stay a placeholder)."""
    if not isinstance(value, str) or "{{" not in value:
        return value
    missing = [m.group(1) for m in ARG.finditer(value) if m.group(1) not in args]
    if missing:
        raise ctx.error(
            path,
            f"argument {missing[0]!r} has no value: neither the analysis reference's args nor"
            " the template's defaults give one",
            label,
        )
    return ARG.sub(lambda m: args[m.group(1)], value)


def check_keys(obj: dict, known: set[str], path: str, ctx: Context, label=None) -> None:
    """Refuse the first key the simulator has no model of (never drop it silently)."""
    unknown = sorted(set(obj) - known, key=str)
    if unknown:
        raise ctx.error(
            f"{path}.{unknown[0]}" if path else str(unknown[0]),
            "field not understood: the simulator has no model of it, refusing rather than"
            " dropping it",
            label,
        )


def as_int(value: Any, path: str, ctx: Context, args: dict[str, str] | None = None) -> int:
    """An integer field; in a template (``args`` given) ``{{args.x}}`` is substituted first.

    A Rollout's integer fields are JSON integers (the API server refuses "3" or 2.5); a
    template's may be strings, since Argo substitutes arguments into them.
    """
    if isinstance(value, str) and args is not None:
        value = substitute(value, args, path, ctx)
        try:
            return int(value)
        except ValueError:
            raise ctx.error(path, f"{value!r} is not an integer") from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(path, f"{value!r} is not an integer")
    return value


def mapping(value: Any, path: str, ctx: Context, what: str = "a mapping") -> dict:
    """``value`` as a dict (None: empty), else one error naming the field."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.error(path, f"{value!r} is not {what}")
    return value


def refuse_flow_keys(doc: dict, ctx: Context, label: str | None = None) -> None:
    """An object that is used may not hold a mapping as a key (an unquoted ``{{...}}``)."""
    where = find_flow_key(doc)
    if where is not None:
        raise ctx.error(
            where,
            "an unquoted {{...}} is a YAML flow mapping, not text: quote it (the API server"
            " refuses a mapping as a key)",
            label,
        )
