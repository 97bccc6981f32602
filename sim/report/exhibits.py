"""The report's figures as blocks: each drawn from the facts, with a title that says what to see
and a caption that says how to read it (DESIGN §6: blast radius, speed against safety, example
timelines, users hurt). sim/report/figures.py only draws; this module decides what is drawn and
in what words. A figure with nothing to show raises ``CannotDraw`` with the reason, which the
report prints in its place (sim/report/content.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from sim.report import figures
from sim.report.facts import Facts
from sim.report.render import Figure, Para
from sim.report.text import DETECTORS, describe_fault, fmt_count, fmt_duration, fmt_pct
from sim.report.verdict import _join
from sim.runs.summary import MIXTURE, pareto

__all__ = ["CannotDraw", "figure_sections"]


class CannotDraw(Exception):
    """A figure or section that has nothing to show; its message says why, in words."""


def figure_sections(result, facts: Facts, traces, faults, colors, notes, problem):
    """(heading, a function drawing that figure) in report order.

    ``notes``: {policy: (passed over, errors)}: sentences on the example replications whose row
    failed (passed over for the next one) and on reruns that raised; ``problem(what, why)``
    records an error, which the timeline also states in its place.
    """
    out: list[tuple[str, Callable[[], list]]] = [
        ("Blast radius", lambda: [_blast_figure(facts, faults, colors)]),
        ("Speed against safety", lambda: [_pareto_figure(facts, colors)]),
    ]
    by_policy: dict[str, list] = {}
    for t in traces:
        by_policy.setdefault(t.policy, []).append(t)
    for i, p in enumerate(facts.policies):
        if p not in by_policy and p not in notes:
            continue
        skipped, errors = notes.get(p, ([], []))

        def timeline(i=i, p=p, skipped=skipped, errors=errors) -> list:
            if not by_policy.get(p):
                raise CannotDraw(" ".join([*errors, *skipped]) or "no example release was rerun")
            blocks: list = [_timeline_figure(p, i, by_policy[p], facts, colors, skipped)]
            for e in errors:
                problem(f"example timeline of {p}", e)
                blocks.append(Para(f"Not shown: {e}", "problem"))
            return blocks

        out.append((f"Example timeline: {p}", timeline))
    out.append(("Users hurt", lambda: [_users_figure(result, facts, colors)]))
    return out


def _draw(figure: Callable[..., bytes], *args: Any, **kwargs: Any) -> Any:
    """``figure(*args, **kwargs)``: its PNG, or with a warm worker pool its future there (the
    report's figures then draw side by side, and matplotlib loads in the workers); the report
    waits for them in order (``sim.report.content``). A replaced function (a test's) runs here."""
    from sim.runs import pool

    executor = pool.warm_executor()
    if executor is None or getattr(figure, "__module__", "") != figures.__name__:
        return figure(*args, **kwargs)
    return executor.submit(figure, *args, **kwargs)


def _blast_figure(facts: Facts, faults, colors) -> Figure:
    panels = list(facts.bad) or list(facts.classes)
    f = facts.frame
    samples = {
        c: {
            p: f.loc[
                (f["policy"] == p) & (f["release_class"] == c), "excess_bad_requests"
            ].to_numpy(dtype=float)
            for p in facts.policies
        }
        for c in panels
    }
    titles = {
        c: (f"{c} ({describe_fault(faults.get(c))}), " if faults.get(c) else f"{c}, ")
        + f"{fmt_pct(facts.probability.get(c, math.nan))} of releases"
        for c in panels
    }
    ranked = sorted(facts.policies, key=lambda p: -_fin(facts.blast(p)))
    if not facts.bad:
        title = "No release class carries a fault: excess bad requests are noise around 0"
    elif len(ranked) < 2:
        only = ranked[0]
        title = f"A bad release under {only}: {fmt_count(facts.blast(only))} excess bad requests"
    else:
        worst, best = ranked[0], ranked[-1]
        r = facts.blast(worst) / facts.blast(best) if facts.blast(best) > 0 else math.inf
        title = (
            f"A bad release under {worst} serves {_times(r)} the excess bad requests it does "
            f"under {best}"
            if r >= 1.5
            else "A bad release serves similar numbers of excess bad requests under every policy"
        )
    caption = (
        "One dot per simulated release; box: middle half, whiskers: 5–95 %, diamond: the mean "
        "(the number in the tables). Excess bad requests: bad requests beyond what the old "
        "version would have served on the same traffic."
    )
    png = _draw(figures.blast_radius, samples, colors, title=title, panel_titles=titles)
    return Figure("blast-radius", title, caption, png)


def _pareto_figure(facts: Facts, colors) -> Figure:
    """Rollout time of a good release against excess bad requests per bad release: the
    verdict's two axes (each falls back to every release when there is no class of its kind)."""
    good, bad = bool(facts.good and facts.bad), bool(facts.bad)
    rows = {}
    for p in facts.policies:
        rows[p] = {
            "x": facts.rollout(p),
            "x_lo": facts.good_stat(p, "rollout_duration", "ci_low"),
            "x_hi": facts.good_stat(p, "rollout_duration", "ci_high"),
            "y": facts.blast(p),
            "y_lo": facts.bad_stat(p, "excess_bad_requests", "ci_low"),
            "y_hi": facts.bad_stat(p, "excess_bad_requests", "ci_high"),
        }
    points = pd.DataFrame.from_dict(rows, orient="index")
    release = "a good release" if good else "a release"
    if points[["x", "y"]].dropna().empty:
        raise CannotDraw(
            f"no policy fully rolled out {release} within the horizon, so no policy has a "
            "rollout time to place"
        )
    front = list(
        pareto(
            facts.frame,
            x_classes=list(facts.good) if good else None,
            y_classes=list(facts.bad) if bad else None,
        ).index
    )
    missing = [p for p in facts.policies if math.isnan(rows[p]["x"])]
    if len(front) == 1 and len(facts.policies) > 1:
        title = f"{front[0]} is both faster and safer than every other policy: no trade-off"
    elif len(facts.policies) == 1:
        title = f"{facts.policies[0]}: rollout time against blast radius"
    elif facts.nothing_catches:
        title = (
            f"No policy catches most bad releases: {facts.fastest} rolls out fastest, "
            f"{facts.safest} hurts least"
        )
    else:
        title = f"Speed costs safety: {facts.fastest} rolls out fastest, {facts.safest} hurts least"
    per = "per bad release" if bad else "per release"
    caption = (
        f"Each point is a policy: mean time to full rollout of {release} against excess bad "
        f"requests {per}, with 95 % intervals. Filled points are on the Pareto front: no other "
        "policy is both faster and safer. Down and left is better."
    )
    if missing:
        caption += " Not shown (never fully rolled out): " + ", ".join(missing) + "."
    ylabel = f"excess bad requests {per} (mean)"
    xlabel = f"time to full rollout of {release} (mean)"
    png = _draw(
        figures.pareto_front, points, front, colors, title=title, xlabel=xlabel, ylabel=ylabel
    )
    return Figure("pareto", title, caption, png)


def _story(trace) -> tuple[str, float]:
    """What happened in one traced release, in words, and when it was over."""
    marks = {k: (t, d) for t, k, d in reversed(figures.trace_marks(trace))}
    parts = []
    if "promoted" in marks:
        parts.append(f"fully promoted at {fmt_duration(marks['promoted'][0])}")
    if "detect" in marks:
        t, by = marks["detect"]
        parts.append(f"caught by {DETECTORS.get(by, by)} at {fmt_duration(t)}")
    if "mitigated" in marks:
        parts.append(f"off the new version at {fmt_duration(marks['mitigated'][0])}")
    elif "rollback" in marks:
        parts.append(f"rollback started at {fmt_duration(marks['rollback'][0])}")
    if not parts:
        parts.append("not finished within the horizon")
    end = max((t for t, _ in marks.values()), default=math.nan)
    return ", ".join(parts), end


def _timeline_figure(policy: str, i: int, traces, facts: Facts, colors, skipped=()) -> Figure:
    examples, summary = [], []
    bad = [t for t in traces if t.release_class in facts.bad][:1]
    good = [t for t in traces if t.release_class not in facts.bad][:1]
    for t in bad + good:
        story, _ = _story(t)
        kind = "bad" if t.release_class in facts.bad else "good"
        examples.append((f"A {kind} release ({t.release_class}, #{t.replication}): {story}", t))
        summary.append(f"a {kind} release is {story.split(', ')[-1]}")
    title = f"{policy}: " + "; ".join(summary)
    caption = (
        "One simulated release of each kind (replication shown by #, the same row as in "
        "results.parquet). Top: share of requests served by the new version. Bottom: share of "
        "requests that failed, per version (slow responses are not shown here: a latency fault "
        "appears only in the tables). Vertical lines: detection, rollback start, no traffic "
        "left on the new version, full promotion."
    )
    shown = _join([f"#{t.replication} of {t.release_class}" for t in bad + good])
    caption += f" Shown: replication {shown}."
    if skipped:
        caption += " " + " ".join(skipped)
    png = _draw(figures.timeline, examples, colors[policy], title=title)
    return Figure(f"timeline-{i + 1}", title, caption, png)


def _users_figure(result, facts: Facts, colors) -> Figure:
    panels = list(facts.bad) or [MIXTURE]
    rows = []
    for c in panels:
        for p in facts.policies:
            rows.append(
                {
                    "panel": "any release (the mix)" if c == MIXTURE else f"a bad release: {c}",
                    "policy": p,
                    "hurt": facts.stat(p, c, "users_hurt"),
                    "hurt_lo": facts.stat(p, c, "users_hurt", "ci_low"),
                    "hurt_hi": facts.stat(p, c, "users_hurt", "ci_high"),
                    "exposed": facts.stat(p, c, "users_exposed"),
                }
            )
    table = pd.DataFrame(rows)
    total = ((result.world or {}).get("users") or {}).get("count")
    per = {p: facts.blast(p, "users_hurt") for p in facts.policies}
    ranked = sorted(per, key=lambda p: -_fin(per[p]))
    shown = ranked if len(ranked) <= 4 else [ranked[0], ranked[-1]]
    what = "a bad release" if facts.bad else "a release"
    title = f"Users hurt by {what}: " + ", ".join(f"{p} {fmt_count(per[p])}" for p in shown)
    if total:
        title += f" (of {total:,} users)"
    caption = (
        "Mean unique users who got at least one bad response the release caused (bar, with "
        "95 % interval), inside the users who reached the new version after its fault began "
        "(dashed outline). A user whose only bad responses are ones the old version would "
        "have given too is not hurt, so a good release hurts about no one; the tables also "
        "count users with any bad response from the new version."
    )
    png = _draw(figures.users_hurt, table, colors, title=title, total_users=total)
    return Figure("users-hurt", title, caption, png)


def _fin(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _times(r: float) -> str:
    if not np.isfinite(r):
        return "far more than"
    return f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"
