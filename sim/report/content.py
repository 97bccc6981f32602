"""What a report shows, top to bottom: verdict, tables, paired differences, figures, provenance.

``build_blocks`` turns a run (its frame, summary and a few traces) into the renderer's blocks
and the figures' PNGs; sim/report/write.py writes them. Order and wording follow DESIGN §6: the
verdict first, for an engineer who did not run the scenario, then the evidence behind it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.report import figures
from sim.report.render import Box, Bullets, Cell, Figure, Footer, Group, Heading, Para, Table
from sim.report.text import (
    DETECTORS,
    Facts,
    fmt_count,
    fmt_duration,
    fmt_pct,
    fmt_pod_seconds,
    policy_lines,
    verdict,
)
from sim.runs.summary import MIXTURE

__all__ = ["build_blocks", "describe_fault"]

BLAST = (
    ("excess_bad_requests", "Excess bad requests", fmt_count),
    ("failed_requests", "Failed requests", fmt_count),
    ("users_hurt", "Users hurt", fmt_count),
    ("error_budget_used", "Error budget used", fmt_pct),
)
SPEED = (
    ("t_detect", "Time to detect", fmt_duration),
    ("t_mitigated", "Time to mitigate", fmt_duration),
    ("rollout_duration", "Time to full rollout", fmt_duration),
    ("false_rollback", "False rollbacks", None),
    ("escaped", "Escaped", None),
    ("extra_pod_seconds", "Extra capacity", fmt_pod_seconds),
)
DIFFS = (
    ("excess_bad_requests", "Excess bad requests", fmt_count),
    ("users_hurt", "Users hurt", fmt_count),
    ("t_mitigated", "Time to mitigate", fmt_duration),
    ("rollout_duration", "Time to full rollout", fmt_duration),
)
_FAULT_WORDS = {
    "errorRate": lambda v: f"fails {fmt_pct(v)} of requests",
    "errorRateMultiplier": lambda v: f"error rate ×{v:g}",
    "latencyShift": lambda v: f"+{v} latency",
    "latencyMultiplier": lambda v: f"latency ×{v:g}",
    "growth": lambda v: f"ramping up over {v.get('duration', '?')}",
    "segment": lambda v: f"only for {v}",
    "crashLoop": lambda v: "pods never become ready" if v else "",
    "onset": lambda v: "onset " + ", ".join(f"{k} {x}" for k, x in v.items()),
}


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


def build_blocks(result, loaded, facts: Facts, traces: list, prov: dict):
    """The report as blocks, and its figures (also blocks) in the order they appear."""
    faults = {r["name"]: r.get("fault") for r in result.world.get("releases", [])}
    colors = figures.policy_colors(facts.policies)
    paras, notes = verdict(facts)
    blocks: list = [
        Heading(f"Release policy report: {loaded.scenario.name}", 1),
        Para(_lede(result, loaded, facts, faults), "lede"),
        Box(
            (
                Heading("Verdict", 2, "verdict"),
                *(Para(p) for p in paras),
                *([Bullets(tuple(notes), "notes")] if notes else []),
            )
        ),
        Heading("What each policy does"),
        Bullets(tuple(policy_lines(facts))),
        Heading("Blast radius, speed and cost"),
        Para(
            "Means, with the half-width of their 95 % confidence interval below. **Any "
            "release** mixes the release classes by their probability: the expected cost of "
            "the next release. A *bad request* failed or was slower than the latency "
            "objective; *excess* bad requests are those beyond what the old version would have "
            "served on the same traffic (around 0 for a good release, so it can be slightly "
            "negative)."
        ),
        *_budget_note(result),
        _summary_table(facts, BLAST, faults, result),
        Para(
            "Times count from the release start and are averaged over the releases where the "
            "event happened; the small print says how often it did. *False rollbacks*: good "
            "releases rolled back; *escaped*: bad releases that reached full rollout. *Extra "
            "capacity*: pod time above the steady state (pod-s, pod-h)."
        ),
        _summary_table(facts, SPEED, faults, result),
    ]
    if len(facts.policies) > 1:
        blocks += [
            Heading(f"Paired differences against the safest policy, {facts.safest}"),
            Para(
                f"Each row is *policy − {facts.safest}* over the same releases (common random "
                "numbers: replication *i* meets the same release, fault onset and traffic "
                "under every policy), so the noise between releases cancels. Bold: "
                "significant at 95 % (the interval excludes 0)."
            ),
            _diff_table(result, facts),
        ]
    figs = _figures(result, facts, traces, faults, colors)
    blocks.append(Heading("Figures"))
    for heading, fig in figs:
        blocks += [Heading(heading, 3), fig]
    blocks.append(Footer(_footer(prov, facts)))
    return blocks, [f for _, f in figs]


def _budget_note(result) -> list:
    """What "error budget used" is measured against, in this world's own SLO terms."""
    from sim.world.model import World

    try:
        slo = World.model_validate(result.world).operators.slo
    except Exception:  # a hand-made result without a full world: say nothing rather than guess
        return []
    return [
        Para(
            f"*Error budget used*: the share of the {slo.target * 100:.6g} % SLO's error budget "
            f"over {_period(slo.period)} that one release spends on excess bad requests."
        )
    ]


def _period(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:g} days" if days >= 1 and days == int(days) else fmt_duration(seconds)


def _lede(result, loaded, facts: Facts, faults) -> str:
    desc = loaded.scenario.description.strip()
    mix = ", ".join(
        f"{c} {fmt_pct(facts.probability.get(c, math.nan))}"
        + (f" ({describe_fault(faults.get(c))})" if faults.get(c) else "")
        for c in facts.classes
    )
    counts = set(result.replications.values())
    reps = (
        f"{counts.pop():,} replications per release class"
        if len(counts) == 1
        else ", ".join(f"{n:,} of {c}" for c, n in result.replications.items()) + " replications"
    )
    text = f"{desc} " if desc else ""
    return (
        f"{text}Simulated {_policies(facts.policies)} on the "
        f"release mix {mix}; {reps} under each policy."
    )


def _policies(names) -> str:
    if len(names) == 1:
        return f"one policy ({names[0]})"
    return f"{len(names)} policies ({', '.join(names)})"


def _class_label(c: str, facts: Facts, faults, result) -> str:
    kind = f"bad: {describe_fault(faults.get(c))}" if c in facts.bad else "good"
    n = result.replications.get(c, 0)
    return (
        f"{c} — {kind}; {fmt_pct(facts.probability.get(c, math.nan))} of releases, "
        f"{n:,} replications"
    )


def _ci(fmt, lo: float, hi: float) -> tuple[str, ...]:
    """The 95 % interval as ± its half-width (every interval here is symmetric)."""
    if math.isnan(lo) or math.isnan(hi):
        return ()
    return (f"± {fmt((hi - lo) / 2)}",)


def _metric_cell(facts: Facts, policy: str, cls: str, metric: str, fmt) -> Cell:
    if fmt is None:  # a share of releases: false rollbacks of good ones, escapes of bad ones
        relevant = facts.good if metric == "false_rollback" else facts.bad
        classes = relevant if cls == MIXTURE else [cls]
        if not set(classes) & set(relevant):
            return Cell("n/a")
        rate, k, n = facts.share(policy, metric, classes)
        which = "good" if metric == "false_rollback" else "bad"
        return Cell(fmt_pct(rate), (f"{k:,} of {n:,} {which} releases",))
    mean = facts.stat(policy, cls, metric)
    lo, hi = facts.stat(policy, cls, metric, "ci_low"), facts.stat(policy, cls, metric, "ci_high")
    rate = facts.stat(policy, cls, metric, "rate")
    if not math.isnan(rate) and rate == 0:
        return Cell("—", ("never",))
    sub = _ci(fmt, lo, hi)
    if not math.isnan(rate) and rate < 1:
        sub += (f"in {fmt_pct(rate)} of releases",)
    return Cell(fmt(mean), sub)


def _summary_table(facts: Facts, metrics, faults, result) -> Table:
    columns = ["Policy"] + [label for _, label, _ in metrics]
    rows: list = []
    groups = [MIXTURE, *facts.bad, *facts.good] if len(facts.classes) > 1 else list(facts.classes)
    for cls in groups:
        if cls == MIXTURE:
            label = "Any release — " + ", ".join(
                f"{c} {fmt_pct(facts.probability.get(c, math.nan))}" for c in facts.classes
            )
        else:
            label = _class_label(cls, facts, faults, result)
        rows.append(Group(label))
        for p in facts.policies:
            rows.append([Cell(p)] + [_metric_cell(facts, p, cls, m, f) for m, _, f in metrics])
    return Table(columns, rows)


def _diff_table(result, facts: Facts) -> Table:
    columns = ["Release class"] + [label for _, label, _ in DIFFS]
    rows: list = []
    for p in facts.policies:
        if p == facts.safest:
            continue
        rows.append(Group(f"{p} − {facts.safest}"))
        comps = {m: result.compare(facts.safest, p, m) for m, _, _ in DIFFS}
        for cls in [MIXTURE, *facts.bad, *facts.good] if len(facts.classes) > 1 else facts.classes:
            cells: list = [Cell("any release" if cls == MIXTURE else cls)]
            for m, _, fmt in DIFFS:
                d = comps[m]
                if cls not in d.index or d.loc[cls, "n"] == 0 or math.isnan(d.loc[cls, "diff"]):
                    cells.append(Cell("—", ("no pairs where both happened",)))
                    continue
                r = d.loc[cls]
                sig = bool(r["significant"])
                sub = _ci(fmt, r["ci_low"], r["ci_high"])
                sub += ("significant" if sig else "not significant",)
                cells.append(Cell(fmt(r["diff"], signed=True), sub, strong=sig))
            rows.append(cells)
    return Table(columns, rows)


def _footer(prov: dict, facts: Facts) -> tuple[tuple[str, str], ...]:
    wall = prov["wall_time_s"]
    items = [
        ("Scenario", prov["scenario"] + (f" ({prov['file']})" if prov["file"] else "")),
        ("Seed", str(prov["seed"])),
        (
            "Replications",
            ", ".join(f"{c} {n:,}" for c, n in prov["replications"].items()) + " per policy",
        ),
        ("Failed replications", f"{prov['failed']:,}"),
        (
            "Digest",
            prov["digest"] + (" (scenario changed before the run)" if prov["changed"] else ""),
        ),
        ("rolloutsim", prov["version"]),
        ("Run", f"{prov['backend']} backend, {fmt_duration(wall)} wall time"),
        ("Written", prov["created"]),
        ("Files", "results.parquet, summary.csv, scenario.resolved.yaml, figures/"),
    ]
    return tuple(items)


# ---------------------------------------------------------------------------- figures


def _figures(result, facts: Facts, traces, faults, colors) -> list[tuple[str, Figure]]:
    out = [("Blast radius", _blast_figure(facts, faults, colors))]
    out.append(("Speed against safety", _pareto_figure(result, facts, colors)))
    by_policy: dict[str, list] = {}
    for t in traces:
        by_policy.setdefault(t.policy, []).append(t)
    for i, p in enumerate(facts.policies):
        if p in by_policy:
            out.append(
                (f"Example timeline: {p}", _timeline_figure(p, i, by_policy[p], facts, colors))
            )
    out.append(("Users hurt", _users_figure(result, facts, colors)))
    return out


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
    png = figures.blast_radius(samples, colors, title=title, panel_titles=titles)
    return Figure("blast-radius", title, caption, png)


def _pareto_figure(result, facts: Facts, colors) -> Figure:
    rows = {}
    for p in facts.policies:
        rows[p] = {
            "x": facts.rollout(p),
            "x_lo": facts.mix(p, "rollout_duration", "ci_low"),
            "x_hi": facts.mix(p, "rollout_duration", "ci_high"),
            "y": facts.mix(p, "excess_bad_requests"),
            "y_lo": facts.mix(p, "excess_bad_requests", "ci_low"),
            "y_hi": facts.mix(p, "excess_bad_requests", "ci_high"),
        }
    points = pd.DataFrame.from_dict(rows, orient="index")
    front = list(result.pareto().index)
    missing = [p for p in facts.policies if math.isnan(rows[p]["x"])]
    if len(front) == 1 and len(facts.policies) > 1:
        title = f"{front[0]} is both faster and safer than every other policy: no trade-off"
    elif len(facts.policies) == 1:
        title = f"{facts.policies[0]}: rollout time against blast radius"
    else:
        title = f"Speed costs safety: {facts.fastest} rolls out fastest, {facts.safest} hurts least"
    caption = (
        "Each point is a policy: mean time to full rollout (releases that were promoted) "
        "against expected excess bad requests per release (the release mix), with 95 % "
        "intervals. Filled points are on the Pareto front: no other policy is both faster and "
        "safer. Down and left is better."
    )
    if missing:
        caption += " Not shown (never fully rolled out): " + ", ".join(missing) + "."
    png = figures.pareto_front(points, front, colors, title=title)
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


def _timeline_figure(policy: str, i: int, traces, facts: Facts, colors) -> Figure:
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
    png = figures.timeline(examples, colors[policy], title=title)
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
    total = (result.world.get("users") or {}).get("count")
    per = {p: facts.blast(p, "users_hurt") for p in facts.policies}
    ranked = sorted(per, key=lambda p: -_fin(per[p]))
    shown = ranked if len(ranked) <= 4 else [ranked[0], ranked[-1]]
    what = "a bad release" if facts.bad else "a release"
    title = f"Users hurt by {what}: " + ", ".join(f"{p} {fmt_count(per[p])}" for p in shown)
    if total:
        title += f" (of {total:,} users)"
    caption = (
        "Mean unique users who got at least one bad response from the new version (bar, with "
        "95 % interval), inside the users who reached it after the fault began (dashed "
        "outline). Every bad response counts, the old version's usual errors too, so a good "
        "release also hurts a few users (see the tables)."
    )
    png = figures.users_hurt(table, colors, title=title, total_users=total)
    return Figure("users-hurt", title, caption, png)


def _fin(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _times(r: float) -> str:
    if not np.isfinite(r):
        return "far more than"
    return f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"
