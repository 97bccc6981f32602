"""Numbers for humans: one formatter per kind of number a report shows (DESIGN §6), and a
release class's fault in words.

A report is read by engineers who did not run it, so every number goes through one of these
(thousands separators, "1m 40s", "22 min", "—" for never). Capacity keeps one unit per column
or sentence (``pod_unit``): pod-seconds and pod-hours are never mixed where they are compared.
The verdict's words are in sim/report/verdict.py, the numbers they stand on in facts.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

__all__ = [
    "DETECTORS",
    "describe_fault",
    "fmt_count",
    "fmt_duration",
    "fmt_pct",
    "fmt_pod_seconds",
    "fmt_signed",
    "pod_unit",
]

DASH = "—"
DETECTORS = {
    "gate": "its analysis gate",
    "alert": "the SLO burn-rate alert",
    "human": "a human",
    "deadline": "the progress deadline",
}


def _nan(x) -> bool:
    return x is None or (isinstance(x, float | np.floating) and math.isnan(x))


def fmt_count(x, signed: bool = False) -> str:
    """1,234 · 56 · 3.4 · 0.27 (signed: +1,234 / -3.4)."""
    if _nan(x):
        return DASH
    x = float(x)
    a = abs(x)
    if a >= 99.5 or a == 0:
        text = f"{a:,.0f}"
    elif a >= 9.95:
        text = f"{a:.0f}"
    elif a >= 0.995:
        text = f"{a:.1f}".removesuffix(".0")
    else:
        text = f"{a:.2g}"
    sign = "-" if x < 0 and text.strip("0.") else ("+" if signed and x > 0 else "")
    return sign + text


def fmt_duration(seconds, signed: bool = False) -> str:
    """38 s · 1m 40s · 22 min · 1h 05m · 2d 03h (signed: +21 min)."""
    if _nan(seconds):
        return DASH
    s = float(seconds)
    sign = "-" if s < 0 else ("+" if signed and s > 0 else "")
    s = abs(s)
    if s < 9.95:
        text = f"{s:.1f} s"
    elif s < 59.5:
        text = f"{s:.0f} s"
    elif s < 599.5:
        m, r = divmod(round(s), 60)
        text = f"{m}m {r:02d}s"
    elif s < 3570:
        text = f"{s / 60:.0f} min"
    elif s < 86400 - 30:
        h, m = divmod(round(s / 60), 60)
        text = f"{h}h {m:02d}m"
    else:
        d, h = divmod(round(s / 3600), 24)
        text = f"{d} d" if h == 0 else f"{d}d {h:02d}h"
    return sign + text


def fmt_pct(fraction, signed: bool = False) -> str:
    """A fraction as percent: 23 % · 2.4 % · 0.054 % · 0 %."""
    if _nan(fraction):
        return DASH
    p = float(fraction) * 100
    a = abs(p)
    if a == 0:
        text = "0"
    elif a >= 9.95:
        text = f"{a:.0f}"
    elif a >= 0.995:
        text = f"{a:.1f}".removesuffix(".0")
    else:
        text = f"{a:.2g}"
    sign = "-" if p < 0 else ("+" if signed and p > 0 else "")
    return f"{sign}{text} %"


def fmt_pod_seconds(x, signed: bool = False, unit: str | None = None) -> str:
    """Capacity above the steady state: 850 pod-s · 1.4 pod-h (``unit`` forces one of them)."""
    if _nan(x):
        return DASH
    x = float(x)
    unit = unit or ("pod-s" if abs(x) < 360 else "pod-h")
    return fmt_count(x / 3600 if unit == "pod-h" else x, signed) + f" {unit}"


def pod_unit(values: Iterable[float]) -> Callable[..., str]:
    """One formatter for capacity values shown together: pod-h if any is 360 pod-s or more."""
    finite = [abs(float(v)) for v in values if not _nan(v)]
    unit = "pod-h" if finite and max(finite) >= 360 else "pod-s"

    def fmt(x, signed: bool = False) -> str:
        return fmt_pod_seconds(x, signed, unit)

    return fmt


def fmt_signed(fmt, x) -> str:
    return fmt(x, signed=True)


_FAULT_WORDS = {
    "errorRate": lambda v: f"fails {fmt_pct(v)} of requests",
    "errorRateMultiplier": lambda v: f"error rate ×{v:g}",
    "latencyShift": lambda v: f"+{_latency(v)} latency",
    "latencyMultiplier": lambda v: f"latency ×{v:g}",
    "growth": lambda v: f"ramping up over {v.get('duration', '?')}",
    "segment": lambda v: f"only for {v}",
    "crashLoop": lambda v: "pods never become ready" if v else "",
    "onset": lambda v: "onset " + ", ".join(f"{k} {x}" for k, x in v.items()),
}


def _latency(seconds) -> str:
    """A request latency: 600 ms, 1.5 s (``fmt_duration`` rounds below a second to 0.6 s)."""
    if isinstance(seconds, str) or _nan(seconds):
        return str(seconds)
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else fmt_duration(seconds)


def describe_fault(fault: dict | None) -> str:
    """A release class's fault in words: "fails 5 % of requests, onset afterStart 10m"."""
    if not fault:
        return "no fault"
    parts = []
    for key, value in fault.items():
        word = _FAULT_WORDS.get(key)
        text = word(value) if word else f"{key} {value}"
        if text:
            parts.append(text)
    return ", ".join(parts)
