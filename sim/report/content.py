"""What a report shows, top to bottom: verdict, tables, paired differences, figures, provenance.

``build_blocks`` turns a run (its frame, summary and a few traces) into the renderer's blocks
and the figures' PNGs (drawn by sim/report/exhibits.py); sim/report/write.py writes them. Order
and wording follow DESIGN §6: the verdict first, for an engineer who did not run the scenario,
then the evidence behind it. A section or figure that cannot be drawn says so in its place.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import Future

from policies.errors import one_line
from sim.report import figures
from sim.report.exhibits import CannotDraw, figure_sections
from sim.report.facts import Facts
from sim.report.render import Box, Bullets, Cell, Figure, Footer, Group, Heading, Para, Table
from sim.report.sensitivity_report import section_blocks
from sim.report.text import (
    describe_fault,
    fmt_count,
    fmt_duration,
    fmt_pct,
    fmt_pod_seconds,
    pod_unit,
)
from sim.report.verdict import policy_lines, verdict
from sim.runs.summary import MIXTURE, compare

__all__ = ["build_blocks", "incomplete_notice"]

BLAST = (
    ("excess_bad_requests", "Excess bad requests", fmt_count),
    ("bad_requests_new", "Bad requests, new version", fmt_count),
    ("bad_requests_old", "Bad requests, old version", fmt_count),
    ("users_hurt", "Users hurt", fmt_count),
    ("users_with_bad", "Users with any bad response", fmt_count),
    ("error_budget_used", "Error budget used", fmt_pct),
)
OLD_BLAST = (("failed_requests", "Failed requests", fmt_count),)
"""What a frame from before the split by version shows in place of the caused bad requests."""
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
BAD_POOLED = "any bad release"
"""The diff table's row for the bad classes mixed by probability (several bad classes)."""


def _one_line(exc: BaseException) -> str:
    """``one_line``, but a figure that cannot be drawn says why in plain words."""
    return " ".join(str(exc).split()) if isinstance(exc, CannotDraw) else one_line(exc)


def build_blocks(
    result, loaded, facts: Facts, traces: list, prov: dict, timeline_notes=None, sensitivity=None
):
    """The report as blocks, its figures (also blocks) in the order they appear, and what
    could not be drawn (``[(what, why)]``): such a section or figure says so in its place.

    ``timeline_notes``: {policy: (passed over, errors)}, sentences on the example timelines: a
    replication whose row failed and was passed over, a rerun that raised (a problem).
    ``sensitivity``: a ``sim.runs.sensitivity.SensitivityResult`` for a "Sensitivity" section
    after the paired differences (``run --sensitivity``); None leaves it out.
    """
    problems: list[tuple[str, str]] = []
    faults = {r["name"]: r.get("fault") for r in (result.world or {}).get("releases", [])}
    colors = figures.policy_colors(facts.policies)

    def guarded(what: str, build) -> list:
        try:
            return build()
        except Exception as exc:  # a section that fails says so; the rest is still written
            return [_not_shown(what, exc, problems)]

    def verdict_box() -> list:
        paras, notes = verdict(facts)
        return [
            Box(
                (
                    Heading("Verdict", 2, "verdict"),
                    *(Para(p) for p in paras),
                    *([Bullets(tuple(notes), "notes")] if notes else []),
                )
            )
        ]

    blocks: list = [Heading(f"Release policy report: {loaded.scenario.name}", 1)]
    blocks += guarded("introduction", lambda: [Para(_lede(result, loaded, facts, faults), "lede")])
    at_top = len(blocks)
    blocks += guarded("verdict", verdict_box)
    blocks.append(Heading("What each policy does"))
    blocks += guarded("policy summaries", lambda: [Bullets(tuple(policy_lines(facts)))])
    notes = (*getattr(loaded, "notes", ()), *getattr(result, "notes", ()))
    if notes:
        blocks.append(Bullets(notes, "notes"))
    blocks += [Heading("Blast radius, speed and cost"), Para(_blast_caption(facts))]
    blocks += guarded("budget note", lambda: _budget_note(result))
    blocks += guarded(
        "blast-radius table", lambda: [_summary_table(facts, _blast_metrics(facts), faults, result)]
    )
    blocks.append(
        Para(
            "Times count from the release start and are averaged over the releases where the "
            "event happened; the small print says how often it did. *False rollbacks*: good "
            "releases rolled back; *escaped*: bad releases that reached full rollout. *Extra "
            "capacity*: pod time above the steady state, in one unit per column."
        )
    )
    blocks += guarded("speed table", lambda: [_summary_table(facts, SPEED, faults, result)])
    if len(facts.policies) > 1:
        blocks += [
            Heading(f"Paired differences against {facts.safest}"),
            Para(_diff_caption(facts)),
        ]
        blocks += guarded("paired-difference table", lambda: [_diff_table(facts)])
    figs: list[Figure] = []
    if sensitivity is not None:
        drawn = guarded("sensitivity section", lambda: section_blocks(sensitivity)[0])
        figs += [b for b in drawn if isinstance(b, Figure)]
        blocks += drawn
    blocks.append(Heading("Figures"))
    found = figure_sections(
        result, facts, traces, faults, colors, timeline_notes or {}, lambda *p: problems.append(p)
    )
    pending = []
    for heading, build in found:
        blocks.append(Heading(heading, 3))
        drawn = guarded(f"figure “{heading}”", build)
        at = len(blocks)
        pending += [
            (at + i, f"figure “{heading}”") for i, b in enumerate(drawn) if isinstance(b, Figure)
        ]
        blocks += drawn
    figs += _settle(blocks, pending, problems)
    blocks += guarded("footer", lambda: [Footer(_footer(prov))])
    if problems:
        blocks.insert(at_top, incomplete_notice(problems, "results.parquet and summary.csv"))
    return blocks, figs, problems


def _settle(blocks: list, pending: list[tuple[int, str]], problems: list) -> list[Figure]:
    """The figures at ``pending`` (index, what), in order, each waited for when it was drawn in
    the worker pool (``exhibits._draw``); one that failed there says so in its place."""
    out = []
    for at, what in pending:
        fig = blocks[at]
        if isinstance(fig.png, Future):
            try:
                fig = blocks[at] = dataclasses.replace(fig, png=fig.png.result())
            except Exception as exc:  # as ``guarded`` says it for a figure drawn here
                blocks[at] = _not_shown(what, exc, problems)
                continue
        out.append(fig)
    return out


def _not_shown(what: str, exc: Exception, problems: list) -> Para:
    """A part that failed: recorded among the problems, and said in its place."""
    problems.append((what, _one_line(exc)))
    return Para(f"Not shown: the {what} could not be drawn ({_one_line(exc)}).", "problem")


def _blast_metrics(facts: Facts) -> tuple:
    metrics = [m for m in BLAST if facts.has(m[0]) and f"{m[0]}_mean" in facts.summary]
    if not facts.has("bad_requests_new"):
        metrics.insert(1, OLD_BLAST[0])
    return tuple(metrics)


def _blast_caption(facts: Facts) -> str:
    text = (
        "Means, with the half-width of their 95 % confidence interval below, for each bad "
        "release class, each good class, and **any release**: the classes mixed by their "
        "probability, the expected cost of the next release. A *bad request* failed or was "
        "slower than the latency objective. *Excess* bad requests: bad requests on either "
        "version beyond what the old version at full capacity would have served on the same "
        "traffic (around 0 for a good release, so it can be slightly negative)."
    )
    if facts.has("bad_requests_new"):
        text += (
            " *Bad requests* on the new version: every bad response it served, its ordinary "
            "errors included; on the old version: those it served while the release left it "
            "short of capacity (stable pods scaled down during a walk, an abort onto cold or "
            "scaled-down pods). Elsewhere the old version is the counterfactual, not counted."
        )
    text += (
        " *Users hurt*: users who got at least one bad response the release caused (about 0 "
        "for a good release)"
    )
    if facts.has("users_with_bad"):
        text += (
            "; *users with any bad response* from the new version also counts its ordinary "
            "errors, which the old version would have given too"
        )
    return text + "."


def _diff_caption(facts: Facts) -> str:
    who = (
        f"{facts.safest}, the policy with the least harm per bad release"
        if facts.nothing_catches
        else facts.safest
    )
    return (
        f"Each row is *policy − {who}* over the same releases (common random numbers: "
        "replication *i* meets the same release, fault onset and traffic under every policy), "
        "so the noise between releases cancels. Safety is judged on the bad classes"
        + (f" and on *{BAD_POOLED}* (the bad classes mixed)" if len(facts.bad) > 1 else "")
        + ", speed on the good ones; *any release* is the next release's expected difference. "
        "Bold: significant at 95 % (the interval excludes 0)."
    )


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


def _groups(facts: Facts) -> list[str]:
    """Bad classes first (safety), then good ones (speed), then the mixture (the next release)."""
    return [*facts.bad, *facts.good, MIXTURE] if len(facts.classes) > 1 else list(facts.classes)


def _summary_table(facts: Facts, metrics, faults, result) -> Table:
    columns = ["Policy"] + [label for _, label, _ in metrics]
    groups = _groups(facts)
    fmts = []
    for m, _, fmt in metrics:  # capacity: one unit for the whole column
        if fmt is fmt_pod_seconds:
            fmt = pod_unit(facts.stat(p, c, m) for c in groups for p in facts.policies)
        fmts.append(fmt)
    rows: list = []
    for cls in groups:
        if cls == MIXTURE:
            label = "Any release (the next release) — " + ", ".join(
                f"{c} {fmt_pct(facts.probability.get(c, math.nan))}" for c in facts.classes
            )
        else:
            label = _class_label(cls, facts, faults, result)
        rows.append(Group(label))
        for p in facts.policies:
            cells = [_metric_cell(facts, p, cls, m, f) for (m, _, _), f in zip(metrics, fmts)]
            rows.append([Cell(p), *cells])
    return Table(columns, rows)


def _diff_table(facts: Facts) -> Table:
    columns = ["Release class"] + [label for _, label, _ in DIFFS]
    order = [*facts.bad, *([BAD_POOLED] if len(facts.bad) > 1 else []), *facts.good]
    order += [MIXTURE] if len(facts.classes) > 1 else []
    rows: list = []
    for p in facts.policies:
        if p == facts.safest:
            continue
        rows.append(Group(f"{p} − {facts.safest}"))
        comps = {m: compare(facts.frame, facts.safest, p, m) for m, _, _ in DIFFS}
        pooled = (
            {m: compare(facts.frame, facts.safest, p, m, classes=facts.bad) for m, _, _ in DIFFS}
            if len(facts.bad) > 1
            else {}
        )
        for cls in order:
            label = {MIXTURE: "any release (the next release)"}.get(cls, cls)
            cells: list = [Cell(label)]
            for m, _, fmt in DIFFS:
                d, key = (pooled[m], MIXTURE) if cls == BAD_POOLED else (comps[m], cls)
                if key not in d.index or d.loc[key, "n"] == 0 or math.isnan(d.loc[key, "diff"]):
                    cells.append(Cell("—", ("no pairs where both happened",)))
                    continue
                r = d.loc[key]
                sig = bool(r["significant"])  # the interval excludes 0, by construction
                sub = _ci(fmt, r["ci_low"], r["ci_high"])
                sub += ("significant" if sig else "not significant",)
                cells.append(Cell(fmt(r["diff"], signed=True), sub, strong=sig))
            rows.append(cells)
    return Table(columns, rows)


def _footer(prov: dict) -> tuple[tuple[str, str], ...]:
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
            prov["digest"] + "".join(f" ({why})" for why in prov.get("differs", ())),
        ),
        ("rolloutsim", prov["version"]),
        ("Run", f"{prov['backend']} backend, {fmt_duration(wall)} wall time"),
        ("Written", prov["created"]),
        ("Files", "results.parquet, summary.csv, scenario.resolved.yaml, figures/"),
    ]
    return tuple(items)


def incomplete_notice(problems: list[tuple[str, str]], files: str) -> Para:
    """The paragraph at the top of a report that could not be drawn whole: what is missing and
    where the numbers are (``finished_cell`` looks for its first words)."""
    what = "; ".join(f"the {w} ({why})" for w, why in problems)
    return Para(
        f"**This report is incomplete.** Not drawn: {what}. Every number is in {files}.",
        "problem",
    )
