"""A sensitivity analysis in words, a tornado chart and a table: its own report folder, or a
"Sensitivity" section of a run's report (issue #14 part 4; sim/runs/sensitivity.py runs it).

The words lead with the answer a reviewer asks for, "would the verdict change if we are wrong
about X?": the assumptions that flip it (the safest or the fastest policy changes), at which
end and between which values, or that none does within its range; then what the key difference
(the base runner-up minus the safest, excess bad requests per bad release) moves with most.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from pathlib import Path

from sim.report.plotting import WIDTH_IN, draw_png, log_axis, thousands, wrap
from sim.report.render import (
    Box,
    Bullets,
    Cell,
    Figure,
    Footer,
    Heading,
    Para,
    Table,
    to_html,
    to_markdown,
)
from sim.report.text import fmt_count, fmt_duration
from sim.runs.files import atomic_write, atomic_write_bytes
from sim.runs.sensitivity_assumptions import LABELS, WHERE

__all__ = ["section_blocks", "sensitivity_words", "tornado", "write_sensitivity"]

SENSITIVITY_FILES = ("report.html", "report.md", "sensitivity.csv", "figures/tornado.png")
_LOW, _HIGH = "#56B4E9", "#E69F00"
_FLIP = "#C00000"


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _factor(k: float) -> str:
    return f"×{k:.3g}"


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _key_words(r) -> str:
    """``+30,068 (95 % CI +26,967 to +33,170)``."""
    if _nan(r.key):
        return "no paired difference"
    ci = ""
    if not _nan(r.key_low):
        ci = f" (95 % CI {fmt_count(r.key_low, True)} to {fmt_count(r.key_high, True)})"
    return f"{fmt_count(r.key, True)}{ci}"


# ---------------------------------------------------------------------------- words


def sensitivity_words(res) -> list[str]:
    """The paragraphs (``**name**`` marks a policy): flips first, then the key difference."""
    paras = [_flip_words(res)]
    varied = res.varied
    if varied:
        paras.append(_key_paragraph(res, varied))
    return paras


def _flip_words(res) -> str:
    n = min(res.replications.values()) if res.replications else 0
    if not res.flips:
        ranges = ", ".join(
            f"{_label(a)} {_factor(res.ranges[a][0])} to {_factor(res.ranges[a][1])}"
            for a in res.varied
        )
        if not ranges:
            return "No assumption could be varied (see the notes)."
        text = (
            f"**No assumption flips the verdict within its range**: **{res.safest}** stays the "
            f"safest and **{res.fastest}** the fastest at both ends of every range ({ranges})."
        )
        ends = [r for r in res.readings if r.end in ("low", "high") and not _nan(r.key)]
        if ends:
            near = min(ends, key=lambda r: r.key)
            sig = "still significant" if near.key_significant else "no longer significant"
            text += (
                f" The closest call: the safety gap of **{res.safest}** over **{res.runner_up}**"
                f" shrinks to {fmt_count(near.key, True)} excess bad requests per bad release at"
                f" {_label(near.assumption)} {_factor(near.factor)} ({near.value}), {sig}."
            )
        return text
    parts = []
    for f in res.flips:
        r = res.reading(f.assumption, f.end)
        role = "the safest" if f.what == "safest" else "the fastest"
        how = (
            "significant at 95 %"
            if f.significant
            else f"within the noise at {n} replications per class: run more to be sure"
        )
        text = (
            f"**{_cap(_label(f.assumption))}** can flip the verdict: at {_factor(f.factor)} "
            f"({r.value}) **{f.after}** is {role} instead of **{f.before}** ({how})"
        )
        if f.located:
            lo, hi = f.bracket
            text += (
                f"; the change happens between {_factor(lo)} and {_factor(hi)} "
                f"({f.bracket_values[0]} to {f.bracket_values[1]})"
            )
        else:
            text += f"; somewhere between ×1 and {_factor(f.factor)} (not located)"
        parts.append(text + ".")
    flipped = {f.assumption for f in res.flips}
    steady = [_label(a) for a in res.varied if a not in flipped]
    if steady:
        parts.append(f"No other assumption flips it ({', '.join(steady)}).")
    return " ".join(parts)


def _swing(res, a: str) -> float:
    vals = [res.reading(a, e).key for e in ("low", "high") if _has(res, a, e)]
    vals = [v for v in (*vals, res.base.key) if not _nan(v)]
    return max(vals) - min(vals) if vals else 0.0


def _has(res, a: str, end: str) -> bool:
    try:
        res.reading(a, end)
    except KeyError:
        return False
    return True


def _key_paragraph(res, varied: list[str]) -> str:
    ranked = sorted(varied, key=lambda a: -_swing(res, a))
    what = (
        f"The key difference — **{res.runner_up}** − **{res.safest}**, excess bad requests per "
        f"bad release, paired — is {_key_words(res.base)} as written."
    )

    def span(a: str) -> str:
        ends = [res.reading(a, e) for e in ("low", "high") if _has(res, a, e)]
        shown = " to ".join(f"{fmt_count(r.key, True)} at {_factor(r.factor)}" for r in ends)
        return f"{_label(a)} ({shown})"

    text = what + f" It moves most with {', then '.join(span(a) for a in ranked[:3])}"
    text += f"; least with {_label(ranked[-1])}." if len(ranked) > 3 else "."
    lost = [
        f"{_label(r.assumption)} {_factor(r.factor)}"
        for r in res.readings
        if r.end in ("low", "high") and not r.key_significant
    ]
    if not res.base.key_significant:
        text += " As written it is not significant at 95 %: the two are within the noise."
    elif lost:
        text += f" It is not significant at 95 % at {', '.join(lost)}."
    else:
        text += " It stays significant at 95 % at every end."
    return text


# ---------------------------------------------------------------------------- figure


def tornado(res) -> Figure:
    """Bars from the key difference as written to its value at each end of each range."""
    varied = sorted(res.varied, key=lambda a: _swing(res, a))  # widest on top
    flipped = {f.assumption for f in res.flips}
    if not varied:
        raise ValueError("no assumption was varied")
    base = res.base.key
    top = sorted(res.varied, key=lambda a: -_swing(res, a))[0]
    if flipped:
        first = res.flips[0]
        role = "the safest" if first.what == "safest" else "the fastest"
        past = f"×{first.bracket[0]:.3g}" if first.end == "low" else f"×{first.bracket[1]:.3g}"
        side = "below" if first.end == "low" else "above"
        title = (
            f"{_cap(' and '.join(_label(a) for a in sorted(flipped)))} can flip the verdict"
            f" ({first.after} is {role} {side} about {past} of {_label(first.assumption)})"
        )
    else:
        title = f"{res.safest} stays the safest at every end; the gap moves most with {_label(top)}"

    def draw(fig) -> None:
        ax = fig.subplots()
        xs = [base]
        for y, a in enumerate(varied):
            for end, color in (("low", _LOW), ("high", _HIGH)):
                if not _has(res, a, end):
                    continue
                r = res.reading(a, end)
                if _nan(r.key):
                    continue
                xs += [r.key, r.key_low, r.key_high]
                ax.barh(y, r.key - base, left=base, height=0.55, color=color, zorder=2)
                if not _nan(r.key_low):
                    ax.errorbar(
                        r.key,
                        y,
                        xerr=[[r.key - r.key_low], [r.key_high - r.key]],
                        color="#333",
                        capsize=3,
                        lw=1,
                        zorder=3,
                    )
                ha = "left" if r.key >= base else "right"
                pad = 6 if ha == "left" else -6
                ax.annotate(
                    _factor(r.factor),
                    (r.key_high if ha == "left" else r.key_low, y),
                    xytext=(pad, 0),
                    textcoords="offset points",
                    ha=ha,
                    va="center",
                    fontsize=10,
                )
        ax.axvline(base, color="#000", lw=1.2, zorder=4)
        finite = [x for x in xs if not _nan(x)]
        if min(finite) <= 0:
            ax.axvline(0, color=_FLIP, lw=1, ls="--", zorder=1)
            ax.annotate(
                "0: the policies tie",
                (0, len(varied) - 0.5),
                xytext=(4, 0),
                textcoords="offset points",
                color=_FLIP,
                fontsize=9.5,
            )
        ax.set_yticks(range(len(varied)))
        ax.set_yticklabels(
            [_label(a) + (" (flips)" if a in flipped else "") for a in varied], fontsize=10.5
        )
        for tick, a in zip(ax.get_yticklabels(), varied):
            if a in flipped:
                tick.set_color(_FLIP)
                tick.set_fontweight("bold")
        import numpy as np

        if not log_axis(ax, "x", np.asarray(finite, dtype=float)):
            ax.xaxis.set_major_formatter(thousands())
        ax.margins(x=0.12)
        ax.set_ylim(-0.6, len(varied) - 0.4)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(
            f"{res.runner_up} − {res.safest}: excess bad requests per bad release (paired)"
        )
        from matplotlib.patches import Patch

        ax.legend(
            handles=[
                Patch(color=_LOW, label="low end of the range"),
                Patch(color=_HIGH, label="high end of the range"),
            ],
            loc="lower right",
            fontsize=9.5,
        )
        ax.set_title(wrap(title, 95), loc="left")

    png = draw_png((WIDTH_IN, 1.6 + 0.55 * len(varied)), draw)
    caption = (
        f"Each bar runs from the key difference as written (black line, {fmt_count(base, True)}) "
        "to its value with one assumption at the low (blue) or high (orange) end of its range, "
        "the rest as written; whiskers: 95 % paired intervals. Past 0 the runner-up is the "
        "safer policy. Rows are ordered by how far the difference moves."
    )
    return Figure("tornado", title, caption, png)


# ---------------------------------------------------------------------------- blocks


def _table(res) -> Table:
    columns = ["Assumption (what is scaled)", "Low end", "As written", "High end"]
    flipped = {(f.assumption, f.end) for f in res.flips}
    rows: list = []

    def cell(r, flip: bool) -> Cell:
        sub = (f"{_factor(r.factor)}: {r.value}", f"safest {r.safest}", f"fastest {r.fastest}")
        return Cell(fmt_count(r.key, True), sub, strong=flip)

    for a in res.varied:
        ends = []
        for end in ("low", "high"):
            ends.append(
                cell(res.reading(a, end), (a, end) in flipped)
                if _has(res, a, end)
                else Cell("—", ("the range ends at ×1",))
            )
        base = Cell(fmt_count(res.base.key, True), (res.base_values.get(a, ""),))
        rows.append([Cell(_cap(_label(a)), (WHERE.get(a, ""),)), ends[0], base, ends[1]])
    return Table(columns, rows)


def section_blocks(res, level: int = 2) -> tuple[list, list[Figure]]:
    """The analysis as report blocks (words, table, tornado, notes) and its figures."""
    blocks: list = [Heading("Sensitivity", level, "sensitivity")]
    blocks += [Para(p) for p in sensitivity_words(res)]
    blocks.append(
        Para(
            "Each assumption is varied alone to each end of its range, the rest of the world "
            "as written, with the same seed (common random numbers: every variant meets the "
            "same releases, so its differences are paired). The *key difference* is "
            f"**{res.runner_up}** − **{res.safest}** (the runner-up and the safest as written) "
            "in excess bad requests per bad release; bold: an end where the safest or the "
            f"fastest policy changes. {_scaling_words()}"
        )
    )
    blocks.append(_table(res))
    figs = [tornado(res)]
    blocks += figs
    if res.notes:
        blocks.append(Bullets(tuple(res.notes), "notes"))
    return blocks, figs


def _scaling_words() -> str:
    return (
        "Fault severity scales each bad class's excess over the old version (error rate "
        "p0 + k·(p − p0), multipliers 1 + k·(m − 1), latency shift k·s); gate noise scales the "
        "old version's error rate, the floor of ordinary errors each gate window holds."
    )


# ---------------------------------------------------------------------------- the folder


def write_sensitivity(res, loaded, out) -> Path:
    """Write report.html (self-contained), report.md, sensitivity.csv and figures/tornado.png
    into ``out``, each file whole or not at all."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = res.frame()
    atomic_write(out / "sensitivity.csv", lambda tmp: frame.to_csv(tmp, index=False))
    blocks: list = [Heading(f"Sensitivity report: {res.scenario}", 1)]
    n = ", ".join(f"{c} {k:,}" for c, k in res.replications.items())
    blocks.append(
        Para(
            f"{loaded.scenario.description.strip()} Would the verdict change if an assumption "
            f"is wrong? Every policy was run on {len(res.readings) + 1} variants of the world "
            f"({n} replications per policy in each).".strip(),
            "lede",
        )
    )
    section, figs = section_blocks(res)
    verdict = Box((Heading("Verdict", 2, "verdict"), *(Para(p) for p in sensitivity_words(res))))
    blocks += [verdict, *section[1 + len(sensitivity_words(res)) :]]
    blocks.append(Footer(_footer(res, loaded)))
    (out / "figures").mkdir(exist_ok=True)
    os.chmod(out / "figures", 0o755)
    for fig in figs:
        atomic_write_bytes(out / "figures" / f"{fig.name}.png", fig.png)
    atomic_write_bytes(out / "report.md", to_markdown(blocks).encode())
    title = f"rolloutsim sensitivity: {res.scenario}"
    atomic_write_bytes(out / "report.html", to_html(blocks, title).encode())
    return out


def _footer(res, loaded) -> tuple[tuple[str, str], ...]:
    path = getattr(loaded, "path", None)
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    try:
        digest = loaded.digest()
    except Exception:  # a hand-made scenario without a digest
        digest = "unknown"
    return (
        ("Scenario", res.scenario + (f" ({path})" if path else "")),
        ("Seed", str(res.seed)),
        ("Replications", ", ".join(f"{c} {k:,}" for c, k in res.replications.items())),
        ("Runs", f"{len(res.readings) + 1} (the scenario as written, each end, each bisection)"),
        ("Digest", digest),
        ("Wall time", fmt_duration(res.wall_time_s)),
        ("Written", created),
        (
            "Files",
            ", ".join(SENSITIVITY_FILES)
            + ", variants/ (each run's replications: --resume reads them back)",
        ),
    )
