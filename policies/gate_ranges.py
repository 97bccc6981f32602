"""A gate's conditions tried on every value its rate can return, to catch a unit mix-up.

A success rate compared as ``>= 99`` where the query returns a fraction (0–1) fails every
measurement, so every release is rolled back; ``min: 0.99`` on Flagger's percentage passes all
but a total outage. Both are valid and run as the executor would run them, so they are warned
of, not refused: the warning says which value range the query returns and what the gate does
over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from policies.analysis import Phase

__all__ = ["unit_mixups"]

_RANGES = {"fraction": 1.0, "percent": 100.0}
_OUTAGE = 0.01  # a gate that fails only in the lowest 1 % of the range: only an outage fails it


def unit_mixups(policy: Any) -> list[str]:
    """A warning for each rate gate of ``policy`` that no value of its range passes, or that
    only values in the lowest 1 % of the range fail."""
    out = []
    for where, unit, passes in _rate_gates(policy):
        top = _RANGES[unit]
        values = np.linspace(0.0, top, 1001)
        ok = np.array([passes(float(v)) for v in values])
        if not ok.any():
            what = "fail every value, so every measurement fails"
        elif ok[int(_OUTAGE * 1000) :].all():
            what = f"fail no value above {_OUTAGE * top:g}: only an outage fails the gate"
        else:
            continue
        out.append(
            f"{where}: its query returns a {unit} (0 to {top:g}) and its conditions {what};"
            f" written for a {'percent' if unit == 'fraction' else 'fraction'}?"
        )
    return out


def _rate_gates(policy: Any) -> Iterator[tuple[str, str, Callable[[float], bool]]]:
    """(where, unit, passes) of each success or error rate a gate judges."""
    for template in getattr(policy, "analysis_templates", ()):
        for metric in template.metrics:
            query = metric.provider.query
            if query is not None and query.scale in _RANGES:
                where = f"analysisTemplates {template.name!r} metric {metric.name!r}"
                yield where, str(query.scale), partial(_succeeds, metric)
    flagger = policy.kind in ("Progressive", "ABTest")
    for metric in policy.analysis.metrics if flagger else ():
        builtin = "percent" if metric.name == "request-success-rate" else None
        unit = builtin if metric.query is None else metric.query.scale
        if unit in _RANGES:
            yield f"analysis.metrics {metric.name!r}", str(unit), metric.passes


def _succeeds(metric: Any, value: float) -> bool:
    return bool(metric.verdict(value) is Phase.SUCCESSFUL)
