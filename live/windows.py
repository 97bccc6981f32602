"""Live windows against simulated windows: the same quantities, side by side, with tests.

Given the per-window counts a gate would have seen live during a hold (live/hold.py) and those
the simulator draws for the same traffic, this says what differs and by how much:

* traffic: requests per window (Poisson: dispersion 1) and the canary's share, with the split's
  dispersion ``Σ(n_c − w·N)² / Σ w(1−w)·N`` — 1 for a random split (the simulator's), near 0 for
  a smooth weighted round robin (HAProxy's ``balance roundrobin``);
* errors: each version's error rate (exact 95 % interval, and a test of live against simulated)
  and the dispersion of errors per window;
* the gate: the sequential test's log-likelihood-ratio increment per window (mean, spread, a
  two-sample Kolmogorov-Smirnov test, its lag-1 autocorrelation live), and the gate replayed
  offline: paths of windows drawn from each record as the gate meets them in a calibration run
  (``schedule``: so many windows at each weight), their share ending in each decision, with a
  bootstrap interval over the live record.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import numpy as np

__all__ = ["Row", "compare_records", "replay", "split_dispersion"]


@dataclass(frozen=True)
class Row:
    quantity: str
    live: str
    simulated: str
    test: str = ""
    p_value: float | None = None


def split_dispersion(canary: np.ndarray, total: np.ndarray, weight: float) -> float:
    """Σ(n_c − w·N)² / Σ w(1−w)·N: 1 when each request picks a version at random, ~0 for a
    deterministic weighted round robin."""
    w = weight / 100.0
    return float(np.sum((canary - w * total) ** 2) / np.sum(w * (1 - w) * total))


def _rate(k: float, n: float) -> str:
    from scipy.stats import beta

    lo = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    hi = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return f"{100 * k / n:.3f} % [{100 * lo:.3f}, {100 * hi:.3f}] ({int(k)}/{int(n)})"


def _totals(w, version: str) -> tuple[float, float]:
    return getattr(w, f"{version}_errors").sum(), getattr(w, f"{version}_requests").sum()


def _dispersion(x: np.ndarray) -> float:
    """Variance over mean: 1 for Poisson counts."""
    return float(x.var(ddof=1) / max(x.mean(), 1e-12))


def _increments(w, test) -> np.ndarray:
    """The SPRT's own per-window log-likelihood-ratio increment (policies/sequential.py)."""
    return test._llr_increments(
        w.canary_errors, w.canary_requests, w.stable_errors, w.stable_requests
    )


def compare_records(live: dict, simulated: dict, weights, test, slots_per_window: int) -> list[Row]:
    """Rows comparing ``live[weight]`` and ``simulated[weight]`` (``Slots``) at each weight."""
    from scipy.stats import chi2_contingency, ks_2samp

    def requests(w) -> str:
        total = w.canary_requests + w.stable_requests
        return f"{total.mean():.1f}, {_dispersion(total):.2f} ({len(w)} windows)"

    def split(w) -> str:
        total = w.canary_requests + w.stable_requests
        share = w.canary_requests.sum() / total.sum()
        return f"{share:.4f}; {split_dispersion(w.canary_requests, total, weight):.3f}"

    def canary_errors(w) -> str:
        return f"{w.canary_errors.mean():.3f}, {_dispersion(w.canary_errors):.2f}"

    def increments(w) -> str:
        x = _increments(w, test)
        return f"{x.mean():.4f} ± {x.std(ddof=1) / np.sqrt(x.size):.4f}, {x.std(ddof=1):.3f}"

    rows: list[Row] = []
    for weight in weights:
        lw = live[weight].windows(slots_per_window)
        sw = simulated[weight].windows(slots_per_window)
        at = f"{weight:g} %: "
        name = "requests per window: mean, variance/mean"
        rows.append(Row(at + name, requests(lw), requests(sw)))
        name = "canary share; split dispersion (1 random, ~0 round robin)"
        rows.append(Row(at + name, split(lw), split(sw)))
        for version in ("canary", "stable"):
            lk, ln = _totals(lw, version)
            sk, sn = _totals(sw, version)
            table = np.array([[lk, ln - lk], [sk, sn - sk]])
            p = float(chi2_contingency(table)[1]) if lk + sk > 0 else None
            rows.append(Row(at + f"{version} error rate", _rate(lk, ln), _rate(sk, sn), "χ²", p))
        name = "canary errors per window: mean, variance/mean"
        rows.append(Row(at + name, canary_errors(lw), canary_errors(sw)))
        if test.test != "sprt":  # the mSPRT's statistic is a mixture, not a sum of increments
            continue
        li, si = _increments(lw, test), _increments(sw, test)
        name = "gate LLR increment per window: mean ± s.e., sd"
        p = float(ks_2samp(li, si).pvalue)
        rows.append(Row(at + name, increments(lw), increments(sw), "KS", p))
        r1 = float(np.corrcoef(li[:-1], li[1:])[0, 1]) if li.size > 2 else float("nan")
        rows.append(
            Row(
                at + "gate LLR increments, lag-1 autocorrelation (s.e.)",
                f"{r1:+.3f} ({1 / np.sqrt(li.size):.3f})",
                "0 (independent slots)",
            )
        )
    return rows


def replay(records: dict, windows, test, paths: int, seed: int) -> dict:
    """Share of gate paths ending in each decision. ``windows``: per window of the gate, the
    weight of each of its scrape intervals (``live.hold.gate_schedule``); each path fills every
    window with contiguous intervals drawn at random from the record of that weight (a window
    straddling a weight change: a piece from each). Returns {"reject", "accept", "continue"}."""
    rng = np.random.default_rng(seed)
    fields = ("canary_errors", "canary_requests", "stable_errors", "stable_requests")
    counts = np.zeros((4, paths, len(windows)))
    for j, window in enumerate(windows):
        for weight, length in _pieces(window):
            record = records[weight]
            first = rng.integers(0, len(record) - length + 1, size=paths)
            for i, name in enumerate(fields):
                values = getattr(record, name)
                counts[i, :, j] += sum(values[first + d] for d in range(length))
    outcome = test.run(*counts)
    return {d: float(np.mean(outcome.decision == d)) for d in ("reject", "accept", "continue")}


def _pieces(window) -> list[tuple[float, int]]:
    """Runs of equal weights: (weight, scrape intervals) in order."""
    return [(w, len(list(run))) for w, run in groupby(window)]


def bootstrap_replay(
    records: dict, windows, test, slots_per_window: int, seed: int, *, paths=4000, rounds=200
):
    """A 95 % interval for ``replay``'s promotion share (accept or continue) over resamples of
    the live record itself, in blocks of a window: how much the record's length can explain."""
    rng = np.random.default_rng(seed)
    k = slots_per_window
    shares = []
    for i in range(rounds):
        resampled = {}
        for weight, s in records.items():
            blocks = len(s) // k
            pick = rng.integers(0, blocks, blocks)
            idx = (pick[:, None] * k + np.arange(k)).ravel()
            resampled[weight] = s.take(idx)
        out = replay(resampled, windows, test, paths, seed + 1 + i)
        shares.append(out["accept"] + out["continue"])
    return tuple(float(q) for q in np.quantile(shares, [0.025, 0.975]))
