"""The words of a report: numbers for humans and the plain-language verdict (DESIGN §6).

A report is read by engineers who did not run it, so every number goes through one formatter
(thousands separators, "1m 40s", "22 min", "—" for never) and the verdict follows DESIGN §6's
rule to the letter: the *safest* policy has the least expected excess bad requests (mixture
mean); the *pick* is the fastest rollout among the safest and the policies whose paired
difference from it is not significant at 95 %; then what each policy costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.runs.summary import MIXTURE

__all__ = [
    "DETECTORS",
    "Facts",
    "fmt_count",
    "fmt_duration",
    "fmt_pct",
    "fmt_pod_seconds",
    "fmt_signed",
    "policy_lines",
    "verdict",
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


def fmt_pod_seconds(x, signed: bool = False) -> str:
    """Capacity above the steady state: 850 pod-s · 1.4 pod-h."""
    if _nan(x):
        return DASH
    x = float(x)
    if abs(x) < 360:
        return fmt_count(x, signed) + " pod-s"
    return fmt_count(x / 3600, signed) + " pod-h"


def fmt_signed(fmt, x) -> str:
    return fmt(x, signed=True)


@dataclass
class Facts:
    """What the report's text needs, computed once from a run's frame and summary."""

    frame: pd.DataFrame  # replications that ran (no error)
    summary: pd.DataFrame
    policies: tuple[str, ...]
    classes: tuple[str, ...]
    probability: dict[str, float]
    bad: tuple[str, ...]
    good: tuple[str, ...]
    kinds: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, pd.DataFrame] = field(default_factory=dict)  # vs safest, excess
    safest: str = ""
    pick: str = ""
    fastest: str = ""
    failed: int = 0

    @classmethod
    def build(cls, result, kinds: dict[str, str] | None = None) -> Facts:
        frame = result.frame
        ok = frame[frame["error"].fillna("").astype(str) == ""]
        summary = result.summary()
        classes = tuple(result.classes)
        first = summary.xs(result.policies[0], level="policy")
        prob = {c: float(first.loc[c, "probability"]) for c in classes if c in first.index}
        bad_flags = frame.groupby("release_class", sort=False)["bad_release"].first()
        bad = tuple(c for c in classes if bool(bad_flags.get(c, False)))
        good = tuple(c for c in classes if c not in bad)
        facts = cls(ok, summary, tuple(result.policies), classes, prob, bad, good, kinds or {})
        facts.failed = int(result.failed)
        facts._choose(result)
        return facts

    # --- numbers ---------------------------------------------------------------------------

    def stat(self, policy: str, cls: str, metric: str, what: str = "mean") -> float:
        key = (policy, cls)
        col = f"{metric}_{what}"
        if key not in self.summary.index or col not in self.summary:
            return math.nan
        return float(self.summary.loc[key, col])

    def mix(self, policy: str, metric: str, what: str = "mean") -> float:
        return self.stat(policy, MIXTURE, metric, what)

    def over(self, policy: str, metric: str, classes) -> float:
        """Mean over a subset of classes (bad or good releases), weighted by probability and by
        the rate at which the event happened (for event times)."""
        num = den = 0.0
        for c in classes:
            m = self.stat(policy, c, metric)
            rate = self.stat(policy, c, metric, "rate")
            w = self.probability.get(c, 0.0) * (1.0 if _nan(rate) else rate)
            if w > 0 and not _nan(m):
                num, den = num + w * m, den + w
        return num / den if den > 0 else math.nan

    def share(self, policy: str, column: str, classes) -> tuple[float, int, int]:
        """Probability-weighted share of rows where ``column`` is true, and the raw k of n."""
        rows = self.frame[
            (self.frame["policy"] == policy) & self.frame["release_class"].isin(classes)
        ]
        num = den = 0.0
        for c, part in rows.groupby("release_class", sort=False):
            w = self.probability.get(c, 0.0)
            num, den = num + w * float(part[column].mean()), den + w
        k, n = int(rows[column].sum()), len(rows)
        return (num / den if den > 0 else math.nan), k, n

    def blast(self, policy: str, metric: str = "excess_bad_requests") -> float:
        """Per bad release when there are bad classes, else per release."""
        return self.over(policy, metric, self.bad) if self.bad else self.mix(policy, metric)

    def rollout(self, policy: str) -> float:
        return self.mix(policy, "rollout_duration")

    # --- the rule --------------------------------------------------------------------------

    def _choose(self, result) -> None:
        excess = {p: self.mix(p, "excess_bad_requests") for p in self.policies}
        known = [p for p in self.policies if not _nan(excess[p])]
        self.safest = min(known, key=lambda p: excess[p]) if known else self.policies[0]
        for p in self.policies:
            if p != self.safest:
                self.diffs[p] = result.compare(self.safest, p, "excess_bad_requests")
        tied = [self.safest] + [
            p for p, d in self.diffs.items() if not bool(d.loc[MIXTURE, "significant"])
        ]
        self.pick = min(tied, key=lambda p: _inf(self.rollout(p)))
        self.fastest = min(self.policies, key=lambda p: _inf(self.rollout(p)))

    def significant(self, policy: str) -> bool:
        d = self.diffs.get(policy)
        return d is not None and bool(d.loc[MIXTURE, "significant"])


def _inf(x: float) -> float:
    return math.inf if _nan(x) else x


def _ratio(a: float, b: float) -> str:
    if _nan(a) or _nan(b) or b <= 0 or a <= 0:
        return ""
    r = a / b
    if r >= 1.95:
        return f"{r:,.0f}× as many" if r >= 10 else f"{r:.1f}× as many"
    return ""


def _rollout_text(t: float) -> str:
    return "never fully rolled out" if _nan(t) else f"{fmt_duration(t)} to full rollout"


def verdict(f: Facts) -> tuple[list[str], list[str]]:
    """The verdict paragraphs (``**name**`` marks a policy) and the notes under it."""
    per = "per bad release" if f.bad else "per release"
    s, pick = f.safest, f.pick
    paras: list[str] = []
    if len(f.policies) == 1:
        paras.append(
            f"Only one policy was simulated, **{s}**: {fmt_count(f.blast(s))} excess bad "
            f"requests expected {per}, {_rollout_text(f.rollout(s))}. "
            "Add a second policy to the scenario to compare."
        )
    elif pick == s:
        paras.append(
            f"**{s}** is the safest: {fmt_count(f.blast(s))} excess bad requests expected {per}, "
            f"against {_others(f)}."
        )
    else:
        d = f.diffs[pick].loc[MIXTURE]
        paras.append(
            f"**{pick}** is the pick: it is as safe as the safest policy, **{s}**, within the "
            f"noise ({fmt_count(f.blast(pick))} vs {fmt_count(f.blast(s))} excess bad requests "
            f"{per}; paired difference {fmt_count(d['diff'], True)} per release, 95 % CI "
            f"{fmt_count(d['ci_low'], True)} to {fmt_count(d['ci_high'], True)}, not "
            f"significant) and it rolls out faster ({fmt_duration(f.rollout(pick))} vs "
            f"{_rollout_text(f.rollout(s))})."
        )
    if len(f.policies) > 1:
        paras.append(_speed_sentence(f, per))
    return paras, _notes(f)


def _others(f: Facts) -> str:
    """The other policies' blast radius against the safest; the nearest and the worst if many."""
    s = f.safest
    others = sorted((p for p in f.policies if p != s), key=lambda p: _inf(f.blast(p)))
    shown = others if len(others) <= 3 else [others[0], others[1], others[-1]]
    parts = []
    for p in shown:
        bits = [_ratio(f.blast(p), f.blast(s))]
        if len(others) <= 3:
            bits.append(
                "paired difference significant"
                if f.significant(p)
                else "difference not significant at 95 %"
            )
        extra = ", ".join(b for b in bits if b)
        parts.append(f"{fmt_count(f.blast(p))} for **{p}**" + (f" ({extra})" if extra else ""))
    if len(others) <= 3:
        return _join(parts)
    text = f"{parts[0]}, {parts[1]}, … up to {parts[2]}"
    weak = [p for p in others if not f.significant(p)]
    if not weak:
        return text + f"; all {len(others)} paired differences are significant at 95 %"
    names = ", ".join(f"**{p}**" for p in weak)
    return text + f"; the paired difference is not significant at 95 % for {names}"


def _speed_sentence(f: Facts, per: str) -> str:
    pick, fast = f.pick, f.fastest
    t_pick, t_fast = f.rollout(pick), f.rollout(fast)
    fr_pick = f.share(pick, "false_rollback", f.good)[0] if f.good else math.nan
    fr_fast = f.share(fast, "false_rollback", f.good)[0] if f.good else math.nan
    pods_pick = f.mix(pick, "extra_pod_seconds")
    pods_fast = f.mix(fast, "extra_pod_seconds")
    if fast == pick:
        rest = [p for p in f.policies if p != pick]
        nxt = min(rest, key=lambda p: _inf(f.rollout(p)))
        return (
            f"**{pick}** is also the fastest ({_rollout_text(t_pick)}, against "
            f"{_rollout_text(f.rollout(nxt))} for **{nxt}**): there is no trade-off to make. "
            f"It costs {fmt_pct(fr_pick)} false rollbacks of good releases and "
            f"{fmt_pod_seconds(pods_pick)} of extra capacity per release."
        )
    if not _nan(t_pick) and not _nan(t_fast) and t_pick - t_fast <= max(60.0, 0.05 * t_pick):
        return (  # a second or two apart is no trade-off worth naming
            f"**{pick}** rolls out as fast as **{fast}** (about {fmt_duration(t_pick)}): its "
            f"safety costs no time. It uses {fmt_pod_seconds(pods_pick)} of extra capacity per "
            f"release (vs {fmt_pod_seconds(pods_fast)}) and rolls back {fmt_pct(fr_pick)} of "
            f"good releases by mistake (vs {fmt_pct(fr_fast)})."
        )
    text = (
        f"**{fast}** is the fastest ({fmt_duration(t_fast)} to full rollout vs "
        f"{fmt_duration(t_pick)}), but a bad release under it serves "
        f"{fmt_count(f.blast(fast))} excess bad requests and hurts "
        f"{fmt_count(f.blast(fast, 'users_hurt'))} users "
        f"(vs {fmt_count(f.blast(pick, 'users_hurt'))})."
    )
    delta = t_pick - t_fast
    cost = (
        f"{fmt_duration(delta)} extra per release"
        if not _nan(delta)
        else "never finishing a rollout within the horizon"
    )
    if fmt_pct(fr_pick) == fmt_pct(fr_fast):
        rollbacks = (
            "; neither rolls back a good release by mistake"
            if fr_pick == 0
            else f"; both roll back {fmt_pct(fr_pick)} of good releases by mistake"
        )
    else:
        rollbacks = (
            f"; it rolls back {fmt_pct(fr_pick)} of good releases by mistake (vs "
            f"{fmt_pct(fr_fast)})"
        )
    text += (
        f" The safety of **{pick}** costs {cost} and {fmt_pod_seconds(pods_pick)} of extra "
        f"capacity per release (vs {fmt_pod_seconds(pods_fast)}){rollbacks}."
    )
    return text


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _notes(f: Facts) -> list[str]:
    notes = []
    counts = f.frame.groupby(["policy", "release_class"]).size()
    low = int(counts.min()) if len(counts) else 0
    if low < 50:
        notes.append(
            f"Only {low} replications per release class: means are rough (see the 95 % "
            "intervals); run more before deciding on a close call."
        )
    if f.failed:
        notes.append(
            f"{f.failed:,} replications failed and are left out of every number "
            "(their errors are in results.parquet)."
        )
    esc = f.share(f.pick, "escaped", f.bad)[0] if f.bad else 0.0
    if not _nan(esc) and esc > 0:
        notes.append(
            f"Under **{f.pick}**, {fmt_pct(esc)} of bad releases still reach full rollout "
            "before they are caught."
        )
    return notes


def policy_lines(f: Facts) -> list[str]:
    """One plain sentence per policy: what a bad and a good release meet under it."""
    lines = []
    for p in f.policies:
        kind = f" ({f.kinds[p]})" if p in f.kinds else ""
        parts = []
        if f.bad:
            bad_rows = f.frame[(f.frame["policy"] == p) & f.frame["release_class"].isin(f.bad)]
            esc = f.share(p, "escaped", f.bad)[0]
            t_off = f.over(p, "t_mitigated", f.bad)
            off = (
                "it keeps serving until the horizon"
                if _nan(t_off)
                else f"no traffic left on it after {fmt_duration(t_off)}"
            )
            parts.append(
                f"A bad release: {fmt_count(f.blast(p))} excess bad requests, "
                f"{fmt_count(f.blast(p, 'users_hurt'))} users hurt; "
                f"{_caught(bad_rows, f.over(p, 't_detect', f.bad))}; {off}; "
                f"{fmt_pct(esc)} reach full rollout."
            )
        if f.good:
            fr = f.share(p, "false_rollback", f.good)[0]
            parts.append(
                f"A good release: {_rollout_text(f.over(p, 'rollout_duration', f.good))}, "
                f"{fmt_pct(fr)} rolled back by mistake."
            )
        parts.append(
            f"Extra capacity: {fmt_pod_seconds(f.mix(p, 'extra_pod_seconds'))} per release."
        )
        lines.append(f"**{p}**{kind} — " + " ".join(parts))
    return lines


def _caught(rows: pd.DataFrame, mean_t: float) -> str:
    if rows.empty:
        return "no replications"
    by = rows["detected_by"].fillna("").astype(str)
    caught = rows[by != ""]
    if caught.empty:
        return "never caught within the horizon"
    shares = by[by != ""].value_counts(normalize=True)
    names = [
        f"{DETECTORS.get(k, k)} ({fmt_pct(v)})" if len(shares) > 1 else DETECTORS.get(k, k)
        for k, v in shares.items()
    ]
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    text = f"caught after {fmt_duration(mean_t)} by {who}"
    missed = 1 - len(caught) / len(rows)
    if missed > 0:
        text += f" (never caught in {fmt_pct(missed)})"
    return text
