"""Operators and backstops that apply to every policy: SLO burn-rate alerts and humans.

A blue-green switch with no analysis is still caught — later — by the service's SLO alerts or by
a human noticing (DESIGN §5). The alert here is the SRE Workbook's multi-window, multi-burn-rate
rule (ch. 5, Table 5-8; ``reference/simulation-anchors.md`` §1.2), evaluated Prometheus-style on
per-scrape counts of the whole service, with baseline-rate history assumed before the release.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from policies.base import Model
from policies.durations import Duration
from sim.world.distributions import DistributionSpec, Fixed
from sim.world.platform import Platform
from sim.world.versions import Probability, parse_probability

__all__ = [
    "PAGE_RULES",
    "TICKET_RULE",
    "AlertFiring",
    "BurnRateAlert",
    "BurnRateRule",
    "Operators",
    "Slo",
    "budget_consumed_at_alert",
    "burn_rate_detection_time",
]

_DAY = 86400.0
_TOL = 1e-9  # relative slack on threshold comparisons, so exact ties fire


class Slo(Model):
    """``{target: 99.9%, period: 30d}``: the service's objective over a rolling period."""

    target: Probability = 0.999
    period: Duration = 30 * _DAY

    @model_validator(mode="after")
    def _proper(self) -> Slo:
        if not 0.0 < self.target < 1.0:
            raise ValueError("target must be strictly between 0 and 100% (e.g. 99.9%)")
        if self.period <= 0:
            raise ValueError("period must be > 0")
        return self

    @property
    def error_budget(self) -> float:
        """The allowed bad fraction, 1 − target."""
        return 1.0 - self.target

    def budget(self, expected_requests: float) -> float:
        """Bad requests allowed over the period: (1 − target) × expected requests."""
        return self.error_budget * expected_requests

    def time_to_exhaust(self, error_ratio: float) -> float:
        """Seconds a steady ``error_ratio`` takes to use the whole budget (inf at 0)."""
        if error_ratio <= 0:
            return math.inf
        return self.error_budget * self.period / error_ratio


class BurnRateRule(Model):
    """Fire when both windows' error ratios are ≥ burnRate × (1 − SLO)."""

    long_window: Duration = Field(gt=0)
    short_window: Duration = Field(gt=0)
    burn_rate: float = Field(gt=0, allow_inf_nan=False)
    severity: Literal["page", "ticket"] = "page"

    @model_validator(mode="after")
    def _windows(self) -> BurnRateRule:
        if self.short_window > self.long_window:
            raise ValueError("shortWindow must not be longer than longWindow")
        return self

    def threshold(self, slo_target: float) -> float:
        return self.burn_rate * (1.0 - slo_target)


PAGE_RULES: tuple[BurnRateRule, ...] = (
    BurnRateRule(long_window=3600, short_window=300, burn_rate=14.4),
    BurnRateRule(long_window=6 * 3600, short_window=1800, burn_rate=6),
)
"""SRE Workbook Table 5-8 page rules (99.9 % SLO): 2 % and 5 % of the budget at firing."""

TICKET_RULE = BurnRateRule(
    long_window=3 * _DAY, short_window=6 * 3600, burn_rate=1, severity="ticket"
)
"""Table 5-8's ticket rule (10 % of the budget); not in the defaults."""


class Operators(Model):
    """The humans and alerts around every release.

    - ``slo`` 99.9 % over 30 d (SRE Workbook ch. 5's running example).
    - ``alerts``: Table 5-8's two page rules; ``[]`` disables alerting.
    - ``acknowledgement`` 5 m: from an alert firing to deciding to roll back (assumption; the
      SRE book's on-call chapter names 5 minutes as a typical response time for user-facing
      services).
    - ``humanDetection``: time from fault onset until a human notices without any alert
      (e.g. ``{exponential: {mean: 4h}}``); None = never.
    - ``abortLatency`` 0: from the decision to the abort/undo command taking effect (assumption).
    - ``approvalDelay`` 10 m: a human promoting a manual pause (assumption).
    """

    slo: Slo = Slo()
    alerts: tuple[BurnRateRule, ...] = PAGE_RULES
    acknowledgement: DistributionSpec = Fixed(value=300.0)
    human_detection: DistributionSpec | None = None
    abort_latency: DistributionSpec = Fixed(value=0.0)
    approval_delay: DistributionSpec = Fixed(value=600.0)

    def burn_rate_alert(
        self,
        platform: Platform,
        *,
        pre_release_rate: float,
        baseline_error_ratio: float,
        evaluation_offset: float = 0.0,
    ) -> BurnRateAlert | None:
        """An evaluator over the platform's scrapes and rule interval (None: alerts disabled)."""
        if not self.alerts:
            return None
        return BurnRateAlert(
            self.alerts,
            self.slo.target,
            slot_width=platform.scrape_interval,
            evaluation_interval=platform.rule_evaluation_interval,
            pre_release_rate=pre_release_rate,
            baseline_error_ratio=baseline_error_ratio,
            scrape_delay=platform.scrape_delay,
            evaluation_offset=evaluation_offset,
        )


def burn_rate_detection_time(
    slo_target: float | str,
    error_ratio: float,
    window: float,
    burn_rate: float,
    *,
    baseline_error_ratio: float = 0.0,
) -> float:
    """Seconds until a window's error ratio reaches burnRate × (1 − SLO) (anchors §1.2).

    t = ((1 − SLO) / error_ratio) × window × burn_rate, for a window that held no errors
    before; with baseline history at ratio p0 it is window × (θ − p0) / (error_ratio − p0).
    The window's average never exceeds ``error_ratio``, so when t would be longer than the
    window the rule never fires: inf. Zero if the baseline alone is at the threshold.
    """
    slo = parse_probability(slo_target)
    threshold = burn_rate * (1.0 - slo)
    p0 = baseline_error_ratio
    if p0 >= threshold * (1 - _TOL):
        return 0.0
    if error_ratio < threshold * (1 - _TOL) or error_ratio <= p0:
        return math.inf
    return min(window * (threshold - p0) / (error_ratio - p0), window)


def budget_consumed_at_alert(burn_rate: float, window: float, period: float = 30 * _DAY) -> float:
    """Fraction of the period's budget a steady burn has used when the rule fires."""
    return burn_rate * window / period


@dataclass(frozen=True)
class AlertFiring:
    """The first evaluation at which a rule fired."""

    time: float
    rule: BurnRateRule


class _RunningSums:
    """Running sums of the requests and bad series, a leading 0 each (c[j + 1] = Σ slots 0..j),
    with amortised O(1) append of chunks."""

    def __init__(self) -> None:
        self.data = np.zeros((2, 1024))
        self.size = 1

    def extend(self, requests: np.ndarray, bad: np.ndarray) -> None:
        """Append both chunks' running sums from the last values on (as one cumsum over
        everything appended would continue: each row is summed in order, in place)."""
        start, need = self.size - 1, self.size + requests.size
        if need > self.data.shape[1]:
            grown = np.empty((2, max(need, 2 * self.data.shape[1])))
            grown[:, : self.size] = self.data[:, : self.size]
            self.data = grown
        self.data[0, self.size : need] = requests
        self.data[1, self.size : need] = bad
        sums = self.data[:, start:need]
        np.add.accumulate(sums, axis=1, out=sums)
        self.size = need

    @property
    def view(self) -> np.ndarray:
        return self.data[:, : self.size]


class BurnRateAlert:
    """The multi-window burn-rate rules on per-slot counts of the whole service, incrementally.

    Slots are uniform (width = the scrape interval), contiguous and appended in time order;
    slot j covers (end_j − width, end_j]. A window W at an evaluation sees the slots whose end
    lies in (v − W, v], v being the last slot end at or before ``time − scrape_delay``; slots
    before the first one given are history at ``pre_release_rate`` with ``baseline_error_ratio``
    bad. Evaluations run at ``evaluation_offset + k × evaluation_interval``. A rule fires at the
    first evaluation where both its windows' ratios are ≥ burn_rate × (1 − SLO); an empty
    window never fires. The first firing latches (``firing``).

    ``extend`` costs O(new slots + new evaluations): it decides every evaluation whose newest
    visible slot is one of the new ones, so a firing it reports may lie up to one slot width
    plus ``scrape_delay`` after the last new slot end — the data it saw is already final.
    """

    def __init__(
        self,
        rules: Sequence[BurnRateRule],
        slo_target: float | str,
        *,
        slot_width: float,
        evaluation_interval: float,
        pre_release_rate: float,
        baseline_error_ratio: float,
        scrape_delay: float = 0.0,
        evaluation_offset: float = 0.0,
    ) -> None:
        if slot_width <= 0 or evaluation_interval <= 0:
            raise ValueError("slot_width and evaluation_interval must be > 0")
        if pre_release_rate < 0 or not 0 <= baseline_error_ratio <= 1 or scrape_delay < 0:
            raise ValueError(
                "need pre_release_rate >= 0, 0 <= baseline_error_ratio <= 1, delay >= 0"
            )
        self.rules = tuple(rules)
        self.slo_target = parse_probability(slo_target)
        self.slot_width = float(slot_width)
        self.evaluation_interval = float(evaluation_interval)
        self.scrape_delay = float(scrape_delay)
        self.evaluation_offset = float(evaluation_offset)
        self.pre_release_rate = float(pre_release_rate)
        self.baseline_error_ratio = float(baseline_error_ratio)
        self._thresholds = [r.threshold(self.slo_target) for r in self.rules]
        self._slots = [
            (self._n_slots(r.long_window), self._n_slots(r.short_window)) for r in self.rules
        ]
        self._hist_req = self.pre_release_rate * self.slot_width
        self._hist_bad = self.baseline_error_ratio * self._hist_req
        self._sums = _RunningSums()
        self._first_end: float | None = None
        self.firing: AlertFiring | None = None

    def fresh(self) -> BurnRateAlert:
        """The same evaluator with no slots yet: its rules' parameters (immutable) are shared,
        only the data and the firing are new (cheaper than working them out again)."""
        new = object.__new__(BurnRateAlert)
        new.__dict__.update(self.__dict__)
        new._sums, new._first_end, new.firing = _RunningSums(), None, None
        return new

    def _n_slots(self, window: float) -> int:
        return max(1, math.ceil(window / self.slot_width - _TOL))

    @property
    def n_slots(self) -> int:
        return self._sums.size - 1

    # --- data ------------------------------------------------------------------------------

    @property
    def lowest_threshold(self) -> float:
        """The smallest bad ratio any rule fires at (a window never exceeds its worst slot)."""
        return min(self._thresholds, default=math.inf)

    def extend(self, ends: Any, requests: Any, bad: Any, *, may_fire: bool = True) -> float | None:
        """Append slots; the firing time if the alert first fires on evaluations they decide.

        ``may_fire=False`` appends without deciding: the caller knows no slot so far (history
        included) reaches ``lowest_threshold``, so no window can.
        """
        ends, req, bad = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (ends, requests, bad))
        if ends.size == 0:
            return None
        if self._first_end is None:
            self._first_end = float(ends[0])
        self._check(self.n_slots, ends, req, bad)
        return self.append(float(ends[0]), req, bad, may_fire=may_fire)

    def append(
        self, first_end: float, requests: np.ndarray, bad: np.ndarray, *, may_fire: bool = True
    ) -> float | None:
        """``extend`` on a hot path: float arrays of slots known to be valid and contiguous,
        the first ending at ``first_end`` (unchecked)."""
        n0 = self.n_slots
        if self._first_end is None:
            self._first_end = first_end
        # sequential cumulative sums continue exactly as one cumsum over all slots would
        self._sums.extend(requests, bad)
        if self.firing is not None or not may_fire:
            return None
        self.firing = self._first_firing(n0, self.n_slots)
        return None if self.firing is None else self.firing.time

    def _check(self, n0: int, ends: np.ndarray, req: np.ndarray, bad: np.ndarray) -> None:
        if not (ends.shape == req.shape == bad.shape) or ends.ndim != 1:
            raise ValueError("ends, requests and bad must be 1-d arrays of one length")
        if np.any(req < 0) or np.any(bad < 0) or np.any(bad > req * (1 + _TOL) + _TOL):
            raise ValueError("need 0 <= bad <= requests in every slot")
        assert self._first_end is not None  # extend() sets it before it checks
        expected = self._first_end + (n0 + np.arange(ends.size)) * self.slot_width
        if not np.allclose(ends, expected, rtol=0.0, atol=1e-6 * max(1.0, self.slot_width)):
            raise ValueError(
                f"slots must be contiguous with width {self.slot_width:g}s: expected ends "
                f"starting at {expected[0]:g}, got {ends[0]:g}"
            )

    def truncate(self, n_slots: int) -> None:
        """Forget every slot from index ``n_slots`` on (drafted slots the world discarded), and
        a firing that was decided on them."""
        n_slots = max(0, min(n_slots, self.n_slots))
        self._sums.size = n_slots + 1
        if self.firing is not None:
            seen = int(self._visible_slot(np.array([self.firing.time]))[0])
            if seen >= n_slots:
                self.firing = None
        if n_slots == 0:
            self._first_end = None

    def evaluate(self, ends: Any, requests: Any, bad: Any) -> AlertFiring | None:
        """One-shot: the first firing on these slots alone (this object's state is untouched)."""
        fresh = self.fresh()
        fresh.extend(ends, requests, bad)
        return fresh.firing

    # --- rules -----------------------------------------------------------------------------

    def _visible_slot(self, times: np.ndarray) -> np.ndarray:
        """Index of the newest slot visible at each evaluation time (−1: only history)."""
        assert self._first_end is not None
        x = (times - self.scrape_delay - self._first_end) / self.slot_width
        return np.floor(x + _TOL).astype(np.int64)

    def _window(self, js: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(requests, bad) over the m slots ending at slot j (j ≥ −1), history filling in."""
        lo = np.maximum(js - m, -1)
        missing = np.maximum(m - (js + 1), 0)
        cr, cb = self._sums.view
        req = cr[js + 1] - cr[lo + 1] + missing * self._hist_req
        bad = cb[js + 1] - cb[lo + 1] + missing * self._hist_bad
        return req, bad

    def _conditions(self, js: np.ndarray) -> list[np.ndarray]:
        out = []
        for threshold, (m_long, m_short) in zip(self._thresholds, self._slots):
            ok = self._reaches(js, m_short, threshold)  # the short window fails more often
            if ok.any():
                ok &= self._reaches(js, m_long, threshold)
            out.append(ok)
        return out

    def _reaches(self, js: np.ndarray, m: int, threshold: float) -> np.ndarray:
        """Whether the m slots ending at each slot j hold requests, a threshold's share bad."""
        req, bad = self._window(js, m)
        return (req > 0) & (bad >= threshold * req * (1 - _TOL))

    def _first_firing(self, n0: int, n1: int) -> AlertFiring | None:
        """The earliest evaluation whose newest visible slot lies in [n0, n1) that fires."""
        assert self._first_end is not None
        step, off = self.evaluation_interval, self.evaluation_offset
        lo_t = self._first_end + n0 * self.slot_width + self.scrape_delay
        hi_t = self._first_end + n1 * self.slot_width + self.scrape_delay
        k = np.arange(math.floor((lo_t - off) / step) - 1, math.ceil((hi_t - off) / step) + 2)
        times = off + k * step
        js = self._visible_slot(times)
        keep = (js >= n0) & (js < n1)
        times, js = times[keep], js[keep]
        if times.size == 0:
            return None
        best: AlertFiring | None = None
        for rule, ok in zip(self.rules, self._conditions(js)):
            if ok.any():
                t = float(times[int(np.argmax(ok))])
                if best is None or t < best.time:
                    best = AlertFiring(t, rule)
        return best

    def active_at(self, time: float) -> tuple[BurnRateRule, ...]:
        """Rules whose condition holds at an evaluation at ``time`` on the data seen so far."""
        if self._first_end is None:
            raise ValueError("no slots yet")
        js = np.maximum(self._visible_slot(np.array([float(time)])), -1)
        if js[0] >= self.n_slots:
            raise ValueError(f"time {time:g} needs slots not yet given")
        return tuple(r for r, ok in zip(self.rules, self._conditions(js)) if ok[0])

    def __repr__(self) -> str:
        return (
            f"BurnRateAlert(rules={len(self.rules)}, slo={self.slo_target:g}, "
            f"slot={self.slot_width:g}s, every={self.evaluation_interval:g}s, "
            f"history={self.pre_release_rate:g}/s at {self.baseline_error_ratio:g})"
        )
