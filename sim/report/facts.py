"""What a report's words stand on: a run's numbers, computed once, by DESIGN §6's rule.

Safety is judged on **bad** releases only: each bad class's replications meet the same release
under every policy (common random numbers), so the paired difference per bad release is sharp.
Speed and false rollbacks are judged on **good** releases, which is what a team pays for safety
on every ordinary release. The release *mixture* (bad and good by their probabilities) is the
expected cost of the next release and nothing else: it never decides a tie, because its
good-release noise can hide a bad-release difference the pairing resolves.

Detection is read from the outcome's typed fields: ``detected_by`` (gate, alert, human,
deadline) and, for a gate, ``gate_run``, ``gate_metrics`` and ``gate_step``. A frame from an
older run without the gate fields still reads: its gate catches are simply not itemised.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.report.text import _nan as nan
from sim.runs.summary import MIXTURE, SAFETY, compare, summarize

__all__ = ["CAUGHT", "MOST", "Ending", "Facts", "GateCatch", "nan"]

CAUGHT = ("gate", "alert")
"""Detectors that catch a bad release by design; a human or the progress deadline is a backstop."""
MOST = 0.5
"""A policy "catches most bad releases" when a gate or alert catches at least this share."""


def _inf(x: float) -> float:
    return math.inf if nan(x) else x


@dataclass(frozen=True)
class GateCatch:
    """One analysis run and its failing metrics, and how many bad releases they caught."""

    run: str  # "background", "step-2", "prePromotion", "batch-1", "flagger", or "" (unknown)
    metrics: tuple[str, ...]
    count: int
    step: float  # the step (or batch) where most of these catches happened; nan if none
    at_step: int = 0  # how many of them happened at that step


@dataclass(frozen=True)
class Ending:
    """How a policy's bad releases end: who caught them, and what the horizon cut short.

    Shares are probability-weighted over the bad classes; counts are replications."""

    n: int
    caught: float  # share caught by a gate or an alert
    by: dict[str, int]  # detected_by -> replications (gate, alert, human, deadline)
    never: int  # never detected within the horizon
    never_outcomes: dict[str, int]  # of those: promoted / stalled / rolled_back
    escaped: int  # reached full rollout (caught later or not at all)
    bleeding: float  # share still serving the new version at the horizon (not mitigated)
    bleeding_count: int
    bleeding_blast: float  # share of the blast radius from those releases
    t_human: float  # mean time a human caught it, where one did
    gates: tuple[GateCatch, ...] = ()


@dataclass
class Facts:
    """What the report's text needs, computed once from a run's frame and summary."""

    frame: pd.DataFrame  # replications that ran (no error)
    summary: pd.DataFrame  # every class and the mixture (the next release)
    policies: tuple[str, ...]
    classes: tuple[str, ...]
    probability: dict[str, float]
    bad: tuple[str, ...]
    good: tuple[str, ...]
    kinds: dict[str, str] = field(default_factory=dict)
    horizon: float = math.nan
    bad_summary: pd.DataFrame | None = None  # mixture rows: per bad release
    good_summary: pd.DataFrame | None = None  # mixture rows: per good release
    safety: dict[str, pd.DataFrame] = field(default_factory=dict)  # p − safest, per bad release
    endings: dict[str, Ending] = field(default_factory=dict)
    safest: str = ""
    pick: str = ""
    fastest: str = ""
    failed: int = 0

    @classmethod
    def build(cls, result, kinds: dict[str, str] | None = None, summary=None) -> Facts:
        """``summary``: ``result.summary()`` if already computed."""
        frame = result.frame
        ok = frame[frame["error"].fillna("").astype(str) == ""]
        summary = result.summary() if summary is None else summary
        classes = tuple(result.classes)
        prob = {}
        if len(summary):
            first = summary.xs(summary.index[0][0], level="policy")
            prob = {c: float(first.loc[c, "probability"]) for c in classes if c in first.index}
        bad_flags = frame.groupby("release_class", sort=False)["bad_release"].first()
        bad = tuple(c for c in classes if bool(bad_flags.get(c, False)))
        good = tuple(c for c in classes if c not in bad)
        facts = cls(ok, summary, tuple(result.policies), classes, prob, bad, good, kinds or {})
        facts.failed = int(result.failed)
        facts.horizon = _horizon(getattr(result, "world", None) or {})
        if bad and good:
            facts.bad_summary = summarize(ok, classes=bad)
            facts.good_summary = summarize(ok, classes=good)
        facts.endings = {p: facts._ending(p) for p in facts.policies} if bad else {}
        facts._choose()
        return facts

    # --- numbers ---------------------------------------------------------------------------

    def stat(self, policy: str, cls: str, metric: str, what: str = "mean") -> float:
        return _cell(self.summary, policy, cls, f"{metric}_{what}")

    def mix(self, policy: str, metric: str, what: str = "mean") -> float:
        """The next release: the mixture of every class by its probability."""
        return self.stat(policy, MIXTURE, metric, what)

    def bad_stat(self, policy: str, metric: str, what: str = "mean") -> float:
        """Per bad release (the bad classes mixed by their probabilities)."""
        if self.bad_summary is not None:
            return _cell(self.bad_summary, policy, MIXTURE, f"{metric}_{what}")
        return self.mix(policy, metric, what)  # every class is bad, or none is

    def good_stat(self, policy: str, metric: str, what: str = "mean") -> float:
        """Per good release; with no good class, per release."""
        if self.good_summary is not None:
            return _cell(self.good_summary, policy, MIXTURE, f"{metric}_{what}")
        return self.mix(policy, metric, what)

    def blast(self, policy: str, metric: str = SAFETY) -> float:
        """Per bad release when there are bad classes, else per release."""
        return self.bad_stat(policy, metric)

    def rollout(self, policy: str) -> float:
        """Time to full rollout of a good release (of any release when none is good)."""
        return self.good_stat(policy, "rollout_duration")

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def share(self, policy: str, column: str, classes) -> tuple[float, int, int]:
        """Probability-weighted share of rows where ``column`` is true, and the raw k of n."""
        rows = self.frame[
            (self.frame["policy"] == policy) & self.frame["release_class"].isin(classes)
        ]
        return _weighted_share(rows, rows[column].astype(bool), self.probability)

    def pooled(self, policy: str) -> pd.Series | None:
        """``policy − safest`` in excess bad requests per bad release (None for the safest)."""
        d = self.safety.get(policy)
        return None if d is None else d.loc[MIXTURE]

    def significant(self, policy: str) -> bool:
        row = self.pooled(policy)
        return row is not None and bool(row["significant"])

    def class_diffs(self, policy: str, sign: int) -> list[tuple[str, pd.Series]]:
        """Bad classes where ``policy − safest`` is significantly of ``sign`` (+1 worse, −1
        better), by their own paired interval."""
        d = self.safety.get(policy)
        if d is None or len(self.bad) < 2:
            return []
        out = []
        for c in self.bad:
            if c in d.index and bool(d.loc[c, "significant"]) and d.loc[c, "diff"] * sign > 0:
                out.append((c, d.loc[c]))
        return out

    @property
    def nothing_catches(self) -> bool:
        """No policy's gate or alert catches most bad releases."""
        shares = [e.caught for e in self.endings.values() if not nan(e.caught)]
        return bool(self.bad) and bool(shares) and max(shares) < MOST

    # --- the rule --------------------------------------------------------------------------

    def _choose(self) -> None:
        blast = {p: self.blast(p) for p in self.policies}
        known = [p for p in self.policies if not nan(blast[p])]
        self.safest = min(known, key=lambda p: blast[p]) if known else self.policies[0]
        classes = list(self.bad) or None
        for p in self.policies:
            if p != self.safest:
                self.safety[p] = compare(self.frame, self.safest, p, SAFETY, classes=classes)
        tied = [self.safest] + [
            p for p in self.safety if not self.significant(p) and not self.class_diffs(p, +1)
        ]
        self.pick = min(tied, key=lambda p: _inf(self.rollout(p)))
        self.fastest = min(self.policies, key=lambda p: _inf(self.rollout(p)))

    def _ending(self, policy: str) -> Ending:
        f = self.frame
        rows = f[(f["policy"] == policy) & f["release_class"].isin(self.bad)]
        by = rows["detected_by"].fillna("").astype(str)
        caught, _, n = _weighted_share(rows, by.isin(CAUGHT), self.probability)
        never = rows[by == ""]
        served = rows["candidate_requests"] > 0 if "candidate_requests" in rows else True
        bleeding_rows = rows["t_mitigated"].isna() & served
        bleeding, k, _ = _weighted_share(rows, bleeding_rows, self.probability)
        excess = rows[SAFETY].astype(float) * rows["weight"].astype(float)
        total = float(excess.clip(lower=0).sum())
        cut = float(excess[bleeding_rows].clip(lower=0).sum())
        human = rows.loc[by == "human", "t_detect"].astype(float)
        escaped = int(rows["escaped"].astype(bool).sum()) if "escaped" in rows else 0
        return Ending(
            n=n,
            caught=caught,
            by={k: int(v) for k, v in by[by != ""].value_counts().items()},
            never=len(never),
            never_outcomes=dict(Counter(never["outcome"].astype(str))),
            escaped=escaped,
            bleeding=bleeding,
            bleeding_count=k,
            bleeding_blast=cut / total if total > 0 else math.nan,
            t_human=float(human.mean()) if len(human) else math.nan,
            gates=_gate_catches(rows[by == "gate"]),
        )


def _cell(table: pd.DataFrame, policy: str, cls: str, col: str) -> float:
    if (policy, cls) not in table.index or col not in table:
        return math.nan
    return float(table.loc[(policy, cls), col])


def _weighted_share(rows: pd.DataFrame, mask: pd.Series, probability) -> tuple[float, int, int]:
    num = den = 0.0
    for c, idx in rows.groupby("release_class", sort=False).groups.items():
        w = probability.get(c, 0.0)
        num, den = num + w * float(mask.loc[idx].mean()), den + w
    return (num / den if den > 0 else math.nan), int(mask.sum()), len(rows)


def _gate_catches(rows: pd.DataFrame) -> tuple[GateCatch, ...]:
    """Gate catches grouped by (analysis run, failing metrics), most frequent first."""
    if rows.empty or "gate_run" not in rows:
        return ()
    runs = rows["gate_run"].fillna("").astype(str)
    blank = pd.Series("", index=rows.index)
    metrics = rows["gate_metrics"].fillna("").astype(str) if "gate_metrics" in rows else blank
    steps = (
        rows["gate_step"].astype(float) if "gate_step" in rows else pd.Series(np.nan, rows.index)
    )
    out = []
    for (run, names), part in pd.DataFrame({"r": runs, "m": metrics, "s": steps}).groupby(
        ["r", "m"], sort=False
    ):
        known = part["s"].dropna()
        step = float(known.mode().min()) if len(known) else math.nan
        metric_names = tuple(m for m in str(names).split(",") if m)
        at = int((known == step).sum())
        out.append(GateCatch(str(run), metric_names, len(part), step, at))
    return tuple(sorted(out, key=lambda g: -g.count))


def _horizon(world: dict) -> float:
    from policies.durations import parse_duration

    value = world.get("horizon") if isinstance(world, dict) else None
    if value is None:
        return math.nan
    try:
        return float(parse_duration(value))
    except Exception:  # a hand-made world: the text then says "the horizon"
        return math.nan
