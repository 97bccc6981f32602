"""The verdict and the policy lines: what the numbers say, in plain words (DESIGN §6).

The rule, on facts computed once (sim/report/facts.py):

- **Safety** is excess bad requests *per bad release*, compared by the paired difference on
  common random numbers per bad release (each bad class's differences mixed by the classes'
  probabilities); a difference is "significant" only when its 95 % interval excludes 0, and
  every difference quoted is per bad release, beside per-bad-release means.
- The **safest** policy has the fewest; the **pick** is the fastest rollout of a good release
  among the safest and the policies not significantly less safe (pooled, nor on any bad class).
- **Speed** and false rollbacks are judged on good releases; capacity is compared with its
  sign (a policy that needs less is not paying for it) in one unit.
- When no policy's gate or alert catches most bad releases, the verdict says so **first**, with
  how they end (a human, the progress deadline, the horizon) and how much of the blast radius
  the horizon cuts short; and it names no "safest" policy whose edge is a later rollout.
- The release **mixture** is the expected cost of the next release, and only that.
"""

from __future__ import annotations

import pandas as pd

from sim.report.facts import Ending, Facts, GateCatch, _inf, nan
from sim.report.text import DETECTORS, fmt_count, fmt_duration, fmt_pct, pod_unit

__all__ = ["gate_words", "policy_lines", "verdict"]


def _join(parts: list[str], last: str = "and") -> str:
    parts = [p for p in parts if p]
    if len(parts) <= 2:
        return f" {last} ".join(parts)
    return ", ".join(parts[:-1]) + f" {last} " + parts[-1]


def _ratio(a: float, b: float) -> str:
    if nan(a) or nan(b) or b <= 0 or a <= 0:
        return ""
    r = a / b
    if r >= 1.95:
        return f"{r:,.0f}× as many" if r >= 10 else f"{r:.1f}× as many"
    return ""


def _rollout_text(t: float) -> str:
    return "never fully rolled out" if nan(t) else f"{fmt_duration(t)} to full rollout"


def _rollout_of(t: float, good: bool) -> str:
    """``22 min to full rollout of a good release`` · ``no good release fully rolled out``."""
    which = "good release" if good else "release"
    if nan(t):
        return f"no {which} fully rolled out within the horizon"
    return f"{fmt_duration(t)} to full rollout of a {which}" if good else _rollout_text(t)


def _horizon(f: Facts) -> str:
    return "the horizon" if nan(f.horizon) else f"the horizon ({fmt_duration(f.horizon)})"


def _difference(row: pd.Series | None, per: str) -> str:
    """``paired difference +40 per bad release, 95 % CI +27 to +53, significant``."""
    if row is None or nan(row["diff"]):
        return "no paired difference (no pairs)"
    text = f"paired difference {fmt_count(row['diff'], True)} {per}"
    if nan(row["ci_low"]):
        return text + ", too few pairs for an interval"
    text += f", 95 % CI {fmt_count(row['ci_low'], True)} to {fmt_count(row['ci_high'], True)}"
    return text + (", significant" if bool(row["significant"]) else ", not significant")


def _per(f: Facts) -> str:
    return "per bad release" if f.bad else "per release"


# ---------------------------------------------------------------------------- the verdict


def verdict(f: Facts) -> tuple[list[str], list[str]]:
    """The verdict paragraphs (``**name**`` marks a policy) and the notes under it."""
    paras: list[str] = []
    if f.frame.empty:
        return [
            "Every replication failed: there are no numbers to compare. Each error is in "
            "results.parquet."
        ], []
    if f.nothing_catches:
        paras.append(_nothing_catches(f))
    s, per = f.safest, _per(f)
    if len(f.policies) == 1:
        paras.append(
            f"Only one policy was simulated, **{s}**: {fmt_count(f.blast(s))} excess bad "
            f"requests expected {per}, {_rollout_of(f.rollout(s), bool(f.good and f.bad))}. "
            "Add a second policy to the scenario to compare."
        )
    elif f.nothing_catches:
        paras.append(_least_harm(f))
    else:
        paras.append(_safest(f) + _class_exceptions(f))
    if len(f.policies) > 1:
        paras.append(_speed(f))
    if f.bad and f.good:
        paras.append(_next_release(f))
    return paras, _notes(f)


def _others(f: Facts, exclude: set[str]) -> str:
    """Other policies' blast radius against the safest, with the paired difference per bad
    release; the nearest two and the worst when there are many."""
    s, per = f.safest, _per(f)
    others = sorted((p for p in f.policies if p not in exclude), key=lambda p: _inf(f.blast(p)))
    detailed = len(others) <= 3
    shown = others if detailed else [others[0], others[1], others[-1]]
    parts = []
    for p in shown:
        bits = [_ratio(f.blast(p), f.blast(s))]
        if detailed:
            bits.append(_difference(f.pooled(p), per))
        extra = "; ".join(b for b in bits if b)
        parts.append(f"{fmt_count(f.blast(p))} for **{p}**" + (f" ({extra})" if extra else ""))
    if detailed:
        return _join(parts)
    text = f"{parts[0]}, {parts[1]}, … up to {parts[2]}"
    weak = [p for p in others if not f.significant(p)]
    if not weak:
        return text + f"; all {len(others)} paired differences {per} are significant at 95 %"
    names = ", ".join(f"**{p}**" for p in weak)
    return text + f"; the paired difference {per} is not significant at 95 % for {names}"


def _safest(f: Facts) -> str:
    s, pick, per = f.safest, f.pick, _per(f)
    if pick == s:
        return (
            f"**{s}** is the safest: {fmt_count(f.blast(s))} excess bad requests expected {per}, "
            f"against {_others(f, {s})}."
        )
    text = (
        f"**{pick}** is the pick: it is as safe as the safest policy, **{s}**, within the noise "
        f"({fmt_count(f.blast(pick))} vs {fmt_count(f.blast(s))} excess bad requests {per}; "
        f"{_difference(f.pooled(pick), per)}) and it rolls out "
        f"{'a good release ' if f.good and f.bad else ''}faster "
        f"({fmt_duration(f.rollout(pick))} vs {_rollout_text(f.rollout(s))})."
    )
    rest = [p for p in f.policies if p not in (s, pick)]
    if rest:
        text += f" Against **{s}**'s {fmt_count(f.blast(s))}: {_others(f, {s, pick})}."
    return text


def _class_exceptions(f: Facts) -> str:
    """With several bad classes: where another policy is significantly safer on one of them."""
    out = []
    for p in f.policies:
        for c, row in f.class_diffs(p, -1):
            out.append(
                f" On **{c}** releases, however, **{p}** is safer than **{f.safest}** "
                f"({fmt_count(row['mean_b'])} vs {fmt_count(row['mean_a'])} excess bad requests; "
                f"{_difference(row, f'per {c} release')})."
            )
    return "".join(out)


def _ending_words(e: Ending) -> str:
    """``a human catches 31 of 40 after 1h 50m on average, 9 are never caught (9 fully rolled
    out and still serving)``: how the bad releases no gate or alert caught end."""
    parts = []
    if e.by.get("human"):
        parts.append(
            f"a human catches {e.by['human']} of {e.n} after {fmt_duration(e.t_human)} on average"
        )
    if e.by.get("deadline"):
        parts.append(f"the progress deadline stops {e.by['deadline']}")
    if e.never:
        ends = {
            "promoted": "fully rolled out and still serving",
            "stalled": "stalled mid-rollout",
            "rolled_back": "rolled back without a detection",
        }
        how = [f"{k} {ends.get(o, o)}" for o, k in sorted(e.never_outcomes.items()) if k]
        parts.append(
            f"{e.never} {'is' if e.never == 1 else 'are'} never caught within the horizon"
            + (f" ({_join(how)})" if how else "")
        )
    return _join(parts) or "every one is caught"


def _nothing_catches(f: Facts) -> str:
    """The lead when no policy's gate or alert catches most bad releases."""
    ranked = sorted(f.endings, key=lambda p: -f.endings[p].caught)
    best = f.endings[ranked[0]].caught
    if best == 0:
        caught = "no gate or alert catches any of them"
    else:
        each = ", ".join(f"**{p}** {fmt_pct(f.endings[p].caught)}" for p in ranked)
        caught = f"a gate or the SLO alert catches at most {fmt_pct(best)} of them ({each})"
    ends = {p: _ending_words(f.endings[p]) for p in f.policies}
    if len(set(ends.values())) == 1 and len(ends) > 1:
        how = f"under every policy, {ends[f.policies[0]]}"
    else:
        how = "; ".join(f"under **{p}**, {ends[p]}" for p in f.policies)
    text = f"**No policy catches most bad releases**: {caught}. How they end: {how}."
    cut = [p for p in f.policies if f.endings[p].bleeding_count]
    if not cut:
        return text + f" No bad release is still serving at {_horizon(f)}: it cuts nothing short."
    shares = _join(
        [
            f"{f.endings[p].bleeding_count} of {f.endings[p].n} under **{p}**"
            + (
                f" ({fmt_pct(f.endings[p].bleeding_blast)} of its blast radius)"
                if not nan(f.endings[p].bleeding_blast)
                else ""
            )
            for p in cut
        ]
    )
    return (
        text + f" {_horizon(f)[0].upper()}{_horizon(f)[1:]} cuts the blast radius short: "
        f"{shares} still serve the new version when the simulation stops, so their bad "
        "requests are counted only up to then and every blast radius below is a lower bound."
    )


def _least_harm(f: Facts) -> str:
    """Nothing catches the bug: the policy with the least harm, and where its edge comes from."""
    s, per = f.safest, _per(f)
    text = (
        f"Least harm {per}: **{s}**, {fmt_count(f.blast(s))} excess bad requests, against "
        f"{_others(f, {s})}."
    )
    others = [p for p in f.policies if p != s]
    caught_s = f.endings[s].caught
    caught_other = max(f.endings[p].caught for p in others)
    if caught_s >= caught_other + 0.1:
        return text + (
            f" Part of its edge is catching more of them ({fmt_pct(caught_s)} by a gate or "
            f"alert, vs at most {fmt_pct(caught_other)}), but it does not catch most: none is "
            "named the safest."
        )
    fastest_other = min(others, key=lambda p: _inf(f.rollout(p)))
    t_s, t_o = f.rollout(s), f.rollout(fastest_other)
    good = " of a good release" if f.good and f.bad else ""
    if _inf(t_s) > _inf(t_o):
        return text + (
            f" Its edge comes only from rolling out later ({_rollout_text(t_s)}{good}, vs "
            f"{fmt_duration(t_o)} for **{fastest_other}**), not from catching the bug: once "
            "it is fully rolled out the bug hurts as many under it, so none is named the safest."
        )
    return text + " Its edge does not come from catching the bug: none is named the safest."


def _capacity(a: str, b: str, f: Facts) -> str:
    """``1.2 pod-h of extra capacity per release (vs 0.23 pod-h)`` with the right sign."""
    pa, pb = f.mix(a, "extra_pod_seconds"), f.mix(b, "extra_pod_seconds")
    fmt = pod_unit([pa, pb])
    if nan(pa) or nan(pb) or fmt(pa) == fmt(pb):
        return f"the same extra capacity ({fmt(pa)} per release)"
    if pa > pb:
        return f"{fmt(pa - pb)} more capacity per release ({fmt(pa)} vs {fmt(pb)})"
    return f"less capacity than **{b}** ({fmt(pa)} vs {fmt(pb)} per release), not more"


def _rollbacks(a: str, b: str, f: Facts) -> str:
    if not f.good:
        return ""
    ra, rb = f.share(a, "false_rollback", f.good)[0], f.share(b, "false_rollback", f.good)[0]
    if fmt_pct(ra) == fmt_pct(rb):
        if ra == 0:
            return "neither rolls back a good release by mistake"
        return f"both roll back {fmt_pct(ra)} of good releases by mistake"
    return f"**{a}** rolls back {fmt_pct(ra)} of good releases by mistake (vs {fmt_pct(rb)})"


def _speed(f: Facts) -> str:
    """Speed on good releases, and what the safer policy pays for its safety (or saves)."""
    good = " of a good release" if f.good and f.bad else ""
    # without a safest policy (nothing catches the bug) compare the least-harm one
    pick, fast = (f.safest if f.nothing_catches else f.pick), f.fastest
    t_pick, t_fast = f.rollout(pick), f.rollout(fast)
    if fast == pick:
        rest = [p for p in f.policies if p != pick]
        nxt = min(rest, key=lambda p: _inf(f.rollout(p)))
        return (
            f"**{pick}** is also the fastest ({_rollout_text(t_pick)}{good}, against "
            f"{fmt_duration(f.rollout(nxt)) if not nan(f.rollout(nxt)) else 'never'} for "
            f"**{nxt}**): there is no trade-off to make. "
            f"It needs {_capacity(pick, nxt, f)}; "
            f"{_rollbacks(pick, nxt, f) or 'no release is good'}."
        )
    if not nan(t_pick) and not nan(t_fast) and t_pick - t_fast <= max(60.0, 0.05 * t_pick):
        return (  # a second or two apart is no trade-off worth naming
            f"**{pick}** rolls out as fast as **{fast}** (about {fmt_duration(t_pick)}{good}). "
            f"It needs {_capacity(pick, fast, f)}; {_rollbacks(pick, fast, f)}."
        )
    text = (
        f"**{fast}** is the fastest ({fmt_duration(t_fast)} to full rollout{good}, vs "
        f"{fmt_duration(t_pick) if not nan(t_pick) else 'never'} for **{pick}**)"
    )
    if f.bad:
        text += (
            f", but a bad release under it serves {fmt_count(f.blast(fast))} excess bad "
            f"requests and hurts {fmt_count(f.blast(fast, 'users_hurt'))} users (vs "
            f"{fmt_count(f.blast(pick))} and {fmt_count(f.blast(pick, 'users_hurt'))})"
        )
    delta = t_pick - t_fast
    wait = (
        f"{fmt_duration(delta)} more per good release"
        if not nan(delta)
        else "never finishing a rollout within the horizon"
    )
    what = "Rolling out later with" if f.nothing_catches else "The safety of"
    rollbacks = _rollbacks(pick, fast, f)
    return (
        text
        + f". {what} **{pick}** costs {wait}, and it needs {_capacity(pick, fast, f)}"
        + (f"; {rollbacks}" if rollbacks else "")
        + "."
    )


def _next_release(f: Facts) -> str:
    """The mixture: what the next release is expected to cost, and nothing else."""
    bad = sum(f.probability.get(c, 0.0) for c in f.bad)
    first = f.safest if f.nothing_catches else f.pick
    rest = sorted(
        (p for p in f.policies if p != first), key=lambda p: _inf(f.mix(p, "excess_bad_requests"))
    )
    order = [first, *rest]
    shown = order if len(order) <= 4 else [*order[:2], order[-1]]
    parts = [f"{fmt_count(f.mix(p, 'excess_bad_requests'))} under **{p}**" for p in shown]
    parts[0] = parts[0].replace(" under", " excess bad requests under", 1)
    return (
        f"The next release (bad with probability {fmt_pct(bad)}) is expected to cost "
        f"{_join(parts)}."
    )


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
    if f.bad and not f.nothing_catches:
        esc = f.share(f.pick, "escaped", f.bad)[0]
        if not nan(esc) and esc > 0:
            notes.append(
                f"Under **{f.pick}**, {fmt_pct(esc)} of bad releases still reach full rollout "
                "before they are caught."
            )
        for p in f.policies:
            e = f.endings[p]
            if e.bleeding_count:
                notes.append(
                    f"Under **{p}**, {e.bleeding_count} of {e.n} bad releases still serve the "
                    f"new version at {_horizon(f)}: their bad requests are counted only up to "
                    "it, so its blast radius is a lower bound."
                )
    return notes


# ---------------------------------------------------------------------------- policy lines


_RUNS = {
    "background": "background analysis",
    "prePromotion": "pre-promotion analysis",
    "postPromotion": "post-promotion analysis",
    "flagger": "Flagger's analysis",
}


def gate_words(g: GateCatch) -> str:
    """``background analysis 'success-rate'`` · ``the analysis at step 2 'error-rate'``."""
    run = g.run
    if not run:
        name = "its analysis gate"
    elif run in _RUNS:
        name = _RUNS[run]
    elif run.startswith("step-") and run[5:].isdigit():
        name = f"the analysis at step {run[5:]}"
    elif run.startswith("batch-") and run[6:].isdigit():
        name = f"the analysis of batch {run[6:]}"
    else:
        name = f"analysis run '{run}'"
    metrics = _join([f"'{m}'" for m in g.metrics])
    return f"{name} {metrics}".strip()


def _step_words(g: GateCatch) -> str:
    """`` (mostly at step 2)``; nothing when the run's name says its step already. Flagger's
    is the tick of explain's walk where its failed checks held it (`` (held at tick 1)``)."""
    if nan(g.step) or g.run.startswith(("step-", "batch-")):
        return ""
    how = "" if g.at_step == g.count else ("mostly " if 2 * g.at_step > g.count else "most often ")
    where = f"held at tick {g.step:.0f}" if g.run == "flagger" else f"at step {g.step:.0f}"
    return f" ({how}{where})"


def _caught(f: Facts, p: str) -> str:
    """``caught by background analysis 'success-rate' in 38 of 40 bad releases (mostly at
    step 2) and by the SLO burn-rate alert in 2, after 1m 46s on average``."""
    e = f.endings[p]
    if e.n == 0:
        return "no replications"
    if not e.by:
        return "never caught within the horizon"
    found: list[tuple[str, int, str]] = [(gate_words(g), g.count, _step_words(g)) for g in e.gates]
    if len(found) > 2:
        found[2:] = [("other analyses", sum(k for _, k, _ in found[2:]), "")]
    if e.by.get("gate") and not e.gates:
        found.append((DETECTORS["gate"], e.by["gate"], ""))
    found += [(DETECTORS[w], e.by[w], "") for w in ("alert", "human", "deadline") if e.by.get(w)]
    words = [
        f"{'by ' if i else ''}{who} in {k}{f' of {e.n} bad releases' if i == 0 else ''}{where}"
        for i, (who, k, where) in enumerate(found)
    ]
    text = f"caught by {_join(words)}, after {fmt_duration(f.blast(p, 't_detect'))} on average"
    if e.never:
        text += f"; never caught in {e.never}"
    return text


def policy_lines(f: Facts) -> list[str]:
    """One plain sentence per policy: what a bad and a good release meet under it."""
    lines = []
    pods = pod_unit(f.mix(p, "extra_pod_seconds") for p in f.policies)
    for p in f.policies:
        kind = f" ({f.kinds[p]})" if p in f.kinds else ""
        parts = []
        if f.bad:
            esc = f.share(p, "escaped", f.bad)[0]
            t_off = f.blast(p, "t_mitigated")
            off = (
                "it keeps serving until the horizon"
                if nan(t_off)
                else f"no traffic left on it after {fmt_duration(t_off)}"
            )
            users = f"{fmt_count(f.blast(p, 'users_hurt'))} users hurt by it"
            if f.has("users_with_bad"):
                users += f" ({fmt_count(f.blast(p, 'users_with_bad'))} with any bad response)"
            parts.append(
                f"A bad release: {fmt_count(f.blast(p))} excess bad requests, {users}; "
                f"{_caught(f, p)}; {off}; {fmt_pct(esc)} reach full rollout."
            )
        if f.good:
            fr = f.share(p, "false_rollback", f.good)[0]
            t = f.good_stat(p, "rollout_duration") if f.bad else f.mix(p, "rollout_duration")
            parts.append(
                f"A good release: {_rollout_text(t)}, {fmt_pct(fr)} rolled back by mistake."
            )
        parts.append(f"Extra capacity: {pods(f.mix(p, 'extra_pod_seconds'))} per release.")
        lines.append(f"**{p}**{kind} — " + " ".join(parts))
    return lines
