"""Prometheus ``/api/v1/query_range`` answers: read from a saved file or fetched from a server.

Either way the answer is checked the same way (``status: success``, ``resultType: matrix``,
each series a ``metric`` mapping and ``values`` of ``[time, "value"]`` pairs), and every
problem is one ``PolicyError`` naming the file (or the server and query), the field and the rule.
A server is asked in chunks of at most ``MAX_POINTS`` steps (Prometheus refuses more than 11,000
points per series), with a timeout on every request.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policies.base import read_text_file
from policies.durations import parse_duration
from policies.errors import PolicyError

__all__ = [
    "MAX_POINTS",
    "MAX_RESPONSE_BYTES",
    "Matrix",
    "Series",
    "Source",
    "default_step",
    "parse_matrix",
    "parse_time",
    "query_range",
    "read_matrix",
]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""A saved response is read up to this size (a week at 1-minute steps of 30 buckets fits)."""
MAX_POINTS = 10_000
"""Steps per request to a server (Prometheus's own limit is 11,000 points per series)."""


@dataclass(frozen=True)
class Series:
    """One series of a matrix: its labels and its samples (epoch seconds, values; NaN kept)."""

    labels: dict[str, str]
    times: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Source:
    """Where a matrix came from, for the provenance comments and error lines."""

    where: str  # a file name, or "URL: query"
    query: str | None = None
    start: float | None = None
    end: float | None = None
    step: float | None = None


@dataclass(frozen=True)
class Matrix:
    """A query_range answer: its series and where it came from."""

    series: list[Series]
    source: Source
    notes: list[str] = field(default_factory=list)


def _fail(message: str, source: Source, path: str = "") -> PolicyError:
    return PolicyError(message, path=path, file=source.where)


def _sample(pair: Any, source: Source, where: str) -> tuple[float, float]:
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise _fail("a sample is a [time, value] pair", source, where)
    t, v = pair
    if isinstance(t, bool) or not isinstance(t, int | float | str):
        raise _fail("the time is not a number", source, where)
    try:
        ts = float(t)
        value = float(v) if isinstance(v, str) else math.nan
    except ValueError:
        raise _fail("not a number (Prometheus writes values as strings)", source, where) from None
    if not isinstance(v, str):
        raise _fail(
            "the value is not a string (Prometheus writes values as strings)", source, where
        )
    if not math.isfinite(ts):
        raise _fail("the time is not finite", source, where)
    return ts, value


def parse_matrix(body: Any, source: Source) -> Matrix:
    """Check a decoded answer (the whole response, or its ``data``) and return its series."""
    if not isinstance(body, dict):
        raise _fail("not a Prometheus query_range response (not a JSON object)", source)
    data: Any = body
    if "status" in body:
        if body.get("status") != "success":
            error = str(body.get("error", "no error given"))[:200]
            raise _fail(f"the query failed: {error}", source, "status")
        data = body.get("data")
        if not isinstance(data, dict):
            raise _fail("not a Prometheus query_range response (no data object)", source, "data")
    kind = data.get("resultType")
    if kind is None:
        raise _fail("not a Prometheus query_range response (no resultType)", source, "data")
    if kind != "matrix":
        raise _fail(
            f"resultType is {str(kind)[:40]!r}, not 'matrix' (save a query_range answer, not an"
            " instant query)",
            source,
            "data.resultType",
        )
    result = data.get("result")
    if not isinstance(result, list):
        raise _fail("result is not a list", source, "data.result")
    series = []
    for i, item in enumerate(result):
        where = f"data.result[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("values"), list):
            raise _fail("a series is {metric: {...}, values: [[time, value], ...]}", source, where)
        labels = item.get("metric", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise _fail("metric is not a mapping of label names to strings", source, where)
        pairs = [_sample(p, source, f"{where}.values[{j}]") for j, p in enumerate(item["values"])]
        pairs.sort()
        times = np.array([p[0] for p in pairs], dtype=float)
        values = np.array([p[1] for p in pairs], dtype=float)
        series.append(Series(dict(labels), times, values))
    if not any(s.times.size for s in series):
        raise _fail("no data in the window (the matrix has no samples)", source, "data.result")
    return Matrix(series, source)


def read_matrix(path: str) -> Matrix:
    """A saved query_range response (JSON) from ``path``."""
    source = Source(where=path)
    text = read_text_file(path, limit=MAX_RESPONSE_BYTES)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"not JSON (line {exc.lineno}: {exc.msg})", source) from None
    return parse_matrix(body, source)


def parse_time(text: str, *, now: float | None = None) -> float:
    """Epoch seconds from ``1733011200``, ``2026-12-01T00:00:00Z``, ``now`` or ``now-7d``."""
    value = text.strip()
    now = time.time() if now is None else now
    if value == "now":
        return now
    if value.startswith("now-"):
        return now - parse_duration(value[4:])
    try:
        return float(value) if value.replace(".", "", 1).isdigit() else _iso(value)
    except ValueError:
        raise ValueError(
            f"{value[:40]!r} is not a time (epoch seconds, RFC 3339 such as"
            " 2026-12-01T00:00:00Z, now or now-7d)"
        ) from None


def _iso(value: str) -> float:
    stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def default_step(start: float, end: float) -> float:
    """5 minutes for a day or more, else about 1,000 steps (at least 1 s)."""
    span = end - start
    return 300.0 if span >= 86400 else max(1.0, math.ceil(span / 1000))


def _get(url: str, timeout: float, source: Source) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            raw = reply.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = " ".join(exc.read()[:200].decode(errors="replace").split())
        raise _fail(f"the server answered HTTP {exc.code}: {detail}", source) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _fail(f"the server is unreachable ({reason})", source) from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise _fail(f"the answer is larger than {MAX_RESPONSE_BYTES >> 20} MiB", source)
    try:
        return json.loads(raw)
    except ValueError:
        raise _fail("the answer is not JSON (is this a Prometheus server?)", source) from None


def query_range(
    url: str, query: str, start: float, end: float, step: float, *, timeout: float = 10.0
) -> Matrix:
    """Run ``query`` over [start, end] at ``step`` against the server at ``url``."""
    base = url.rstrip("/")
    source = Source(f"{base} ({query[:80]})", query, start, end, step)
    if not (end > start and step > 0):
        raise _fail("--end must be after --start and --step positive", source)
    merged: dict[tuple[tuple[str, str], ...], list[Series]] = {}
    chunk = step * (MAX_POINTS - 1)
    t0 = start
    while t0 <= end:
        t1 = min(end, t0 + chunk)
        params = urllib.parse.urlencode(
            {"query": query, "start": f"{t0:.3f}", "end": f"{t1:.3f}", "step": f"{step:g}"}
        )
        part = _chunk(_get(f"{base}/api/v1/query_range?{params}", timeout, source), source)
        for s in part:
            merged.setdefault(tuple(sorted(s.labels.items())), []).append(s)
        t0 = t1 + step
    series = []
    for key, parts in merged.items():
        times = np.concatenate([p.times for p in parts])
        values = np.concatenate([p.values for p in parts])
        times, first = np.unique(times, return_index=True)
        series.append(Series(dict(key), times, values[first]))
    if not series:
        raise _fail("no data in the window (the query matched no series)", source)
    return Matrix(series, source)


def _chunk(body: Any, source: Source) -> list[Series]:
    """A chunk's series; a chunk with no samples is empty (another chunk may have them)."""
    try:
        return parse_matrix(body, source).series
    except PolicyError as exc:
        if exc.message.startswith("no data"):
            return []
        raise
