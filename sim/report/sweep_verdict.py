"""The sweep's verdict in words: where the answer changes across the cells (DESIGN §6).

Said in this order, on facts computed once (sim/report/sweep_facts.py):

- a **warning** first for a swept path that changes nothing in the simulated world (its cells
  are the same replications, so they are no evidence of anything);
- where **no policy catches most bad releases** (the run report's rule: there the policy with
  the least harm owes it to rolling out later, not to catching the bug), and where that changes;
- the **safest** policy (fewest excess bad requests per bad release) and the **fastest** (time
  to full rollout of a good release): the same everywhere, or where it changes, with the
  paired difference at both neighbouring cells and whether each is significant, so a
  crossover inside the noise is not mistaken for one.
"""

from __future__ import annotations

from typing import Any

from sim.report.sweep_facts import (
    CellFacts,
    Change,
    NoOp,
    Paired,
    SweepFacts,
    is_numeric,
    short_path,
    value_key,
)
from sim.report.text import fmt_count, fmt_duration, fmt_pct
from sim.report.verdict import _join

__all__ = ["cell_label", "sweep_verdict", "value_text"]

_MOST_CHANGES = 6
"""Changes spelled out in the verdict; the rest are in the cells table."""


def value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def cell_label(values: dict[str, Any]) -> str:
    """``errorRate = 0.01, startAt = 2h``: each path by its last part."""
    return ", ".join(f"{short_path(p)} = {value_text(v)}" for p, v in values.items())


def sweep_verdict(sf: SweepFacts) -> tuple[list[str], list[str]]:
    """The verdict paragraphs (``**name**`` marks a policy) and the notes under it."""
    paras = [_noop(n, sf) for n in sf.noops]
    if sf.noops and len(sf.noops) == len(sf.paths):
        paras.append(
            "Every cell is the same simulation, so this sweep says nothing about where the "
            "answer changes; each cell's report gives the one answer."
        )
        return paras, _notes(sf)
    policies = {p for c in sf.cells for p in c.facts.policies}
    if len(policies) < 2:
        only = ", ".join(f"**{p}**" for p in sorted(policies))
        paras += [p for p in (_catching(sf),) if p]
        paras.append(
            f"Only {only} ran, so no policy is compared with another: the tables and figures "
            "show how its blast radius and cost move across the cells."
        )
        return paras, _notes(sf)
    paras += [p for p in (_catching(sf), _winners(sf, "safest"), _winners(sf, "fastest")) if p]
    return paras, _notes(sf)


# ---------------------------------------------------------------------------- no-op paths


def _noop(n: NoOp, sf: SweepFacts) -> str:
    values = _join([value_text(v) for v in n.values])
    why = (
        "every value resolves to the same scenario"
        if n.same_scenario
        else "the scenario differs, but nothing it changes reaches the simulation (e.g. the "
        "start time of a constant traffic rate)"
    )
    fixed = " wherever the other swept paths are held" if len(sf.paths) > 1 else ""
    return (
        f"**Warning: {n.path} changes nothing in the simulated world.** Its values "
        f"({values}) give identical replications, number for number, under every policy{fixed}: "
        f"{why}. Its cells are one simulation repeated, not evidence that the answer holds "
        "across them."
    )


# ---------------------------------------------------------------------------- catching


def _catching(sf: SweepFacts) -> str:
    none = [c for c in sf.cells if not c.catches]
    if not none:
        return ""
    if len(none) == len(sf.cells):
        return (
            "**In no cell does any policy catch most bad releases** (by its gate or an alert): "
            "a human or the horizon ends them, and a policy's smaller blast radius comes from "
            "rolling out later, not from catching the bug (see each cell's report)."
        )
    where = _where(sf, none)
    text = (
        f"**No policy catches most bad releases {where}** (by its gate or an alert): there a "
        "human or the horizon ends them, and the policy with the least harm owes it to rolling "
        "out later, not to catching the bug."
    )
    moves = [c for c in sf.changes if c.what == "catching"]
    if moves:
        text += " " + _some([_catch_move(g, w) for g, w in _grouped(sf, moves)])
    return text


def _catch_move(group: list[Change], where: str) -> str:
    c = group[0]
    left, right = c.cells
    off, on = (left, right) if not left.catches else (right, left)
    best = max(on.caught().items(), key=lambda kv: kv[1])
    low = max(off.caught().values(), default=0.0)
    between = _between(c, where).replace("Between", "between", 1)
    first = f" (with {_fixed(c)})" if len(group) > 1 else ""
    return (
        f"Whether any policy catches the bug changes {between}: at {_at(c.path, on)}{first}"
        f" **{best[0]}**'s gate or alert "
        f"catches {fmt_pct(best[1])} of bad releases, at {_at(c.path, off)} none catches more "
        f"than {fmt_pct(low)}."
    )


# ---------------------------------------------------------------------------- winners


_WORDS = {
    "safest": ("the safest", "fewest excess bad requests per bad release"),
    "fastest": ("the fastest", "shortest time to full rollout of a good release"),
}


def _winners(sf: SweepFacts, what: str) -> str:
    name, measure = _WORDS[what]
    clear = "safe_clear" if what == "safest" else "fast_clear"
    winners = {getattr(c, what) for c in sf.cells}
    sharp = sum(bool(getattr(c, clear)) for c in sf.cells)
    n = len(sf.cells)
    sig = (
        "significantly in every cell"
        if sharp == n
        else f"significantly in {sharp} of {n} cells"
        if sharp
        else "but in no cell significantly"
    )
    if len(winners) == 1:
        (w,) = winners
        blind = [c for c in sf.cells if not c.catches] if what == "safest" else []
        if blind:
            text = (
                f"**{w}** has the {measure} in every cell, {sig}; it is the safest where a "
                f"policy catches the bug, and {_where(sf, blind)} its edge comes from rolling "
                "out later."
            )
        else:
            text = f"**{w}** is {name} ({measure}) in every cell, {sig}."
        return text + _margins(sf, w, what)
    text = f"{name.capitalize()} ({measure}) changes across the cells: {_regions(sf, what)}."
    moves = [c for c in sf.changes if c.what == what]
    if moves:
        text += " " + _some([_move(g, w, what) for g, w in _grouped(sf, moves)])
    return text


def _margins(sf: SweepFacts, winner: str, what: str) -> str:
    """`` Its margin over the runner-up: +410 … at x = a to +30,068 … at x = b.``"""
    found = []
    for c in sf.cells:
        score = c.facts.blast if what == "safest" else c.facts.rollout
        rivals = [p for p in c.facts.policies if p != winner and score(p) == score(p)]
        if not rivals:
            continue
        d = c.paired(winner, min(rivals, key=score), what)
        if d is not None and d.diff == d.diff:
            found.append((d.diff, c))
    if len(found) < 2:
        return ""
    (lo, at_lo), (hi, at_hi) = min(found, key=lambda x: x[0]), max(found, key=lambda x: x[0])
    fmt = fmt_count if what == "safest" else fmt_duration
    per = "excess bad requests per bad release" if what == "safest" else "per good release"
    if fmt(lo) == fmt(hi):
        return f" Its margin over the runner-up is {fmt(lo)} {per} in every cell (paired)."
    return (
        f" Its margin over the runner-up (paired) runs from {fmt(lo)} {per} at "
        f"{cell_label(at_lo.values)} to {fmt(hi)} at {cell_label(at_hi.values)}."
    )


def _regions(sf: SweepFacts, what: str) -> str:
    """``**A** at errorRate = 0.002 and 0.01, **B** at 0.05`` (one path), else counts."""
    if len(sf.paths) == 1:
        path = sf.paths[0]
        parts: list[tuple[str, list[str]]] = []
        for _, line in sf.lines(path):
            for c in line:
                w = getattr(c, what)
                if parts and parts[-1][0] == w:
                    parts[-1][1].append(value_text(c.values[path]))
                else:
                    parts.append((w, [value_text(c.values[path])]))
        return _join([f"**{w}** at {short_path(path)} = {_join(vs)}" for w, vs in parts])
    counts: dict[str, int] = {}
    for c in sf.cells:
        counts[getattr(c, what)] = counts.get(getattr(c, what), 0) + 1
    return _join([f"**{w}** in {k} of {len(sf.cells)} cells" for w, k in counts.items()])


def _move(group: list[Change], where: str, what: str) -> str:
    c = group[0]
    left, right = c.cells
    text = f"{_between(c, where)} it changes from **{c.a}** to **{c.b}**: "
    if len(group) > 1:
        text += f"with {_fixed(c)}, "
    text += f"at {_at(c.path, left)} {_edge(c.a, c.before, what)}; "
    text += f"at {_at(c.path, right)} {_edge(c.b, c.after, what)}"
    sure = [
        x.before is not None
        and x.after is not None
        and x.before.significant
        and x.after.significant
        for x in group
    ]
    if sure[0]:
        text += ", so the crossover lies between them"
    else:
        text += (
            ", so the change is within the noise on at least one side: more replications, or "
            "values in between, would place it"
        )
    if c.crossing == c.crossing:  # not NaN
        text += (
            f" (interpolated linearly, the paired difference crosses zero near "
            f"{short_path(c.path)} ≈ {c.crossing:.3g})"
        )
    if len(group) > 1:
        text += (
            f"; the same change at the {len(group) - 1} other setting"
            f"{'s' if len(group) > 2 else ''} is significant on both sides in "
            f"{sum(sure[1:])} of {len(group) - 1}"
        )
    return text + "."


def _edge(winner: str, d: Paired | None, what: str) -> str:
    """``**A** has 1,234 fewer (95 % CI 900 to 1,500, significant)``."""
    if d is None or d.diff != d.diff:
        return f"**{winner}** leads, with no paired difference to show (no pairs)"
    fmt = fmt_count if what == "safest" else fmt_duration
    less = "fewer excess bad requests per bad release" if what == "safest" else "faster"
    ci = "" if d.lo != d.lo else f"95 % CI {fmt(d.lo, signed=True)} to {fmt(d.hi, signed=True)}, "
    verdict = "significant" if d.significant else "not significant"
    if what == "safest":
        return f"**{winner}** has {fmt(d.diff)} {less} ({ci}{verdict})"
    return f"**{winner}** rolls a good release out {fmt(d.diff)} {less} ({ci}{verdict})"


# ---------------------------------------------------------------------------- helpers


def _between(c: Change, where: str = "") -> str:
    left, right = c.cells
    v0, v1 = value_text(left.values[c.path]), value_text(right.values[c.path])
    return f"Between {short_path(c.path)} = {v0} and {v1}{where}"


def _fixed(c: Change) -> str:
    return ", ".join(f"{short_path(p)} = {value_text(v)}" for p, v in c.fixed)


def _grouped(sf: SweepFacts, changes: list[Change]) -> list[tuple[list[Change], str]]:
    """The same change (path, values, winners) at several settings of the other paths, said
    once: the changes and where they happen in words (`` (at every errorRate)``)."""
    groups: dict[tuple, list[Change]] = {}
    for c in changes:
        left, right = c.cells
        key = (
            c.path,
            c.what,
            value_key(left.values[c.path]),
            value_key(right.values[c.path]),
            c.a,
            c.b,
        )
        groups.setdefault(key, []).append(c)
    out = []
    for members in groups.values():
        first = members[0]
        total = len(sf.lines(first.path))
        if not first.fixed:
            where = ""
        elif len(members) == total > 1:
            where = " (at every " + " and ".join(short_path(p) for p, _ in first.fixed) + ")"
        else:
            where = " (with " + "; with ".join(_fixed(m) for m in members) + ")"
        out.append((members, where))
    return out


def _at(path: str, c: CellFacts) -> str:
    return f"{short_path(path)} = {value_text(c.values[path])}"


def _where(sf: SweepFacts, cells: list[CellFacts]) -> str:
    if len(sf.paths) == 1:
        path = sf.paths[0]
        return f"at {short_path(path)} = {_join([value_text(c.values[path]) for c in cells])}"
    shown = [cell_label(c.values) for c in cells[:4]]
    more = f" and {len(cells) - 4} more cells" if len(cells) > 4 else ""
    return f"in {len(cells)} of {len(sf.cells)} cells ({'; '.join(shown)}{more})"


def _some(sentences: list[str]) -> str:
    shown = sentences[:_MOST_CHANGES]
    more = len(sentences) - len(shown)
    tail = [f"{more} more changes are in the cells table."] if more > 0 else []
    return " ".join([*shown, *tail])


def _notes(sf: SweepFacts) -> list[str]:
    notes = []
    if sf.same_seed:
        notes.append(
            "Every cell ran with the same seed: replication *i* of a release class meets the same "
            "random numbers in every cell (common random numbers), so cells differ only by what "
            "the swept values change."
        )
    else:
        notes.append("The cells ran with different seeds: differences between cells are unpaired.")
    counts = [c.frame.groupby(["policy", "release_class"]).size() for c in sf.cells]
    low = min((int(k.min()) for k in counts if len(k)), default=0)
    if low < 50:
        notes.append(
            f"Only {low} replications per release class in a cell: the intervals are wide and a "
            "change may be within the noise; rerun with more before relying on a crossover."
        )
    reused = sum(c.reused for c in sf.cells)
    if reused:
        notes.append(f"{reused} of {len(sf.cells)} cells were read back from an earlier run.")
    if any(not is_numeric(sf.axes[p]) for p in sf.paths):
        notes.append("Values that are not numbers are shown in the order given.")
    return notes
