"""Raw series made regular: NaN samples dropped, counters turned into rates (resets handled),
series of different steps put on one grid, several series summed, gaps kept as NaN — and each
of these said in a note, so the fit's provenance shows what was done to the data.

A series is taken for a cumulative counter when it never (or almost never) goes down while
rising most of the time; a rate, even a smooth one, goes down about half the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.fit.responses import Matrix, Series

__all__ = [
    "Regular",
    "align",
    "counter_increases",
    "grid_step",
    "is_counter",
    "newey_west_lags",
    "regular",
]

MAX_DROP_FRACTION = 0.02
"""A counter may go down (reset) at most this often between consecutive samples."""


@dataclass
class Regular:
    """Values on a regular grid ``t0 + k·step`` (NaN where there is no data)."""

    times: np.ndarray
    values: np.ndarray
    step: float
    notes: list[str] = field(default_factory=list)
    counter: bool = False

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.values)


def grid_step(times: np.ndarray) -> float:
    """The series' step: the median spacing of its samples."""
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if gaps.size else math.nan


def is_counter(values: np.ndarray) -> bool:
    """Cumulative: rises at least half the time and goes down (a reset) at most 2 % of it."""
    v = values[np.isfinite(values)]
    if v.size < 3:
        return False
    d = np.diff(v)
    drops = int(np.count_nonzero(d < 0))
    return np.count_nonzero(d > 0) >= 0.5 * d.size and drops <= max(1, MAX_DROP_FRACTION * d.size)


def counter_increases(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Growth between consecutive samples, a drop read as a restart from 0 (as ``increase()``
    reads it), and how many resets there were."""
    d = np.diff(values)
    resets = d < 0
    return np.where(resets, values[1:], d), int(np.count_nonzero(resets))


def _as_rate(
    s: Series, notes: list[str], name: str, counter: bool | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(times, per-second values) of one series, NaN samples dropped, a counter differenced
    (``counter`` None: decided from the series itself)."""
    ok = np.isfinite(s.values)
    if not ok.all():
        notes.append(f"{name}: {np.count_nonzero(~ok)} NaN or infinite samples dropped")
    t, v = s.times[ok], s.values[ok]
    if not (is_counter(v) if counter is None else counter) or v.size < 2:
        return t, v, False
    inc, resets = counter_increases(v)
    dt = np.diff(t)
    # growth across a gap happened at unknown times within it: the gap stays a gap
    rate = inc / np.where((dt > 0) & (dt <= 1.5 * grid_step(t)), dt, np.nan)
    said = f"{name}: a cumulative counter (never down but at resets): differenced into a rate"
    notes.append(said + (f", {resets} counter reset(s) handled" if resets else ""))
    known = np.isfinite(rate)
    return t[1:][known], rate[known], True


def newey_west_lags(n: int) -> int:
    """The usual automatic bandwidth floor(4 (n/100)^(2/9)) for autocorrelated residuals."""
    return int(4 * (max(n, 1) / 100.0) ** (2.0 / 9.0))


def _bin(t: np.ndarray, v: np.ndarray, t0: float, step: float, size: int) -> np.ndarray:
    """Average of the samples falling in each grid cell [t0 + k·step − step/2, ...)."""
    k = np.floor((t - t0) / step + 0.5).astype(int)
    keep = (k >= 0) & (k < size)
    total = np.bincount(k[keep], weights=v[keep], minlength=size)
    count = np.bincount(k[keep], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def regular(
    matrix: Matrix, name: str, *, sum_series: bool = True, counter: bool | None = None
) -> Regular:
    """The matrix's series as one per-second rate on a regular grid (summed over series);
    ``counter`` says whether they are cumulative counters (None: each series decides)."""
    notes = list(matrix.notes)
    parsed = [_as_rate(s, notes, name, counter) for s in matrix.series]
    parsed = [p for p in parsed if p[0].size]
    if not parsed:
        raise ValueError(f"{name}: no finite samples in the window")
    steps = sorted({round(grid_step(t), 6) for t, _, _ in parsed if t.size > 1})
    steps = [s for s in steps if math.isfinite(s)] or [matrix.source.step or 60.0]
    step = steps[-1]
    if len(steps) > 1:
        shown = ", ".join(f"{s:g} s" for s in steps)
        notes.append(f"{name}: series of different steps ({shown}) averaged onto {step:g} s")
    t0 = min(float(t[0]) for t, _, _ in parsed)
    t1 = max(float(t[-1]) for t, _, _ in parsed)
    size = math.floor((t1 - t0) / step + 0.5) + 1
    columns = np.vstack([_bin(t, v, t0, step, size) for t, v, _ in parsed])
    if len(parsed) > 1:
        if not sum_series:
            raise ValueError(f"{name}: {len(parsed)} series where one was expected")
        notes.append(f"{name}: {len(parsed)} series summed (aggregate in the query to choose)")
    with np.errstate(invalid="ignore"):
        values = np.where(np.isnan(columns).all(axis=0), np.nan, np.nansum(columns, axis=0))
    missing = ~np.isfinite(values)
    if missing.any():
        edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
        longest = int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())
        notes.append(
            f"{name}: {int(missing.sum())} of {size} steps have no data (longest gap"
            f" {longest * step / 60:.0f} min): left out of the fit"
        )
    times = t0 + step * np.arange(size)
    return Regular(times, values, step, notes, counter=any(c for _, _, c in parsed))


def align(parts: list[Regular]) -> tuple[np.ndarray, np.ndarray, float]:
    """Several series on one grid: (times, values with one row per series, step), only where
    every series has data; a finer series is averaged onto the coarsest step."""
    step = max(p.step for p in parts)
    t0 = min(float(p.times[0]) for p in parts)
    t1 = max(float(p.times[-1]) for p in parts)
    size = math.floor((t1 - t0) / step + 0.5) + 1
    rows = np.vstack([_bin(p.times[p.valid], p.values[p.valid], t0, step, size) for p in parts])
    keep = np.isfinite(rows).all(axis=0)
    return t0 + step * np.arange(size)[keep], rows[:, keep], step
