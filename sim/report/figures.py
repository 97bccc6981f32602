"""Report figures as PNG bytes: blast radius, Pareto front, timelines, users hurt (DESIGN §6).

Each builder draws on its own Agg figure inside the call (sim/report/plotting.py: nothing happens at
import and pyplot's global state, e.g. a notebook's backend, is never touched). Callers pass the
title, a sentence that says what the reader should see; this module only draws. Every policy
keeps its colour across figures (``policy_colors``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sim.engine.trace import Trace
from sim.report.plotting import (
    DPI,
    WIDTH_IN,
    draw_png,
    duration_tick,
    log_axis,
    note_better,
    place_labels,
    policy_colors,
    thousands,
    time_axis,
    wrap,
)
from sim.report.text import fmt_duration

__all__ = [
    "DPI",
    "blast_radius",
    "duration_tick",
    "pareto_front",
    "policy_colors",
    "timeline",
    "trace_marks",
    "users_hurt",
]

_STABLE = "#7f7f7f"
_MARKS = {  # event kind -> (colour, line style, legend label)
    "detect": ("#C00000", "--", "detected"),
    "rollback": ("#E69F00", "-.", "rollback starts"),
    "mitigated": ("#009E73", "-", "no traffic left on the new version"),
    "promoted": ("#0072B2", ":", "fully promoted"),
}


def blast_radius(
    samples: dict[str, dict[str, np.ndarray]],
    colors: dict[str, str],
    *,
    title: str,
    panel_titles: dict[str, str],
    xlabel: str = "excess bad requests in one release",
) -> bytes:
    """Per panel (release class), the distribution of a blast-radius metric per policy.

    ``samples[panel][policy]``: one value per replication. Box = 25–75 %, whiskers 5–95 %, dots
    are replications, the diamond is the mean (the number the summary reports).
    """
    panels = list(samples)
    policies = list(colors)
    rows = len(policies)
    height = 1.2 + sum(0.9 + 0.55 * rows for _ in panels)

    def draw(fig) -> None:
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        rng = np.random.default_rng(0)  # fixed jitter: the same report every time
        for ax, panel in zip(axes, panels):
            data = [np.asarray(samples[panel].get(p, []), dtype=float) for p in policies]
            pos = np.arange(rows)[::-1]
            shown = [(d, y, p) for d, y, p in zip(data, pos, policies) if d.size]
            if shown:
                box = ax.boxplot(
                    [d for d, _, _ in shown],
                    positions=[y for _, y, _ in shown],
                    orientation="horizontal",
                    widths=0.55,
                    whis=(5, 95),
                    showfliers=False,
                    patch_artist=True,
                    medianprops={"color": "black", "linewidth": 1.5},
                )
                for patch, (_, _, p) in zip(box["boxes"], shown):
                    patch.set_facecolor(colors[p])
                    patch.set_alpha(0.35)
            for d, y, p in shown:
                pts = d if d.size <= 2000 else rng.choice(d, 2000, replace=False)
                jitter = rng.uniform(-0.2, 0.2, pts.size)
                ax.scatter(pts, y + jitter, s=9, color=colors[p], alpha=0.55, lw=0, zorder=3)
                mean = float(d.mean())
                ax.scatter([mean], [y], marker="D", s=42, color="white", ec="black", zorder=4)
                ax.annotate(
                    f"mean {mean:,.0f}",
                    (mean, y + 0.3),
                    fontsize=9.5,
                    ha="center",
                    va="bottom",
                    xytext=(0, 1),
                    textcoords="offset points",
                )
            ax.set_yticks(pos, policies)
            ax.set_ylim(-0.7, rows - 0.2)
            ax.grid(axis="y", visible=False)
            values = np.concatenate(data) if data else np.empty(0)
            log = log_axis(ax, "x", values)
            if not log:
                ax.xaxis.set_major_formatter(thousands())
            ax.set_xlabel(xlabel + (" (log scale)" if log else ""))
            ax.set_title(panel_titles.get(panel, panel), loc="left")
        fig.suptitle(wrap(title, 88), x=0.01, ha="left")

    return draw_png((WIDTH_IN, height), draw)


def pareto_front(
    points,
    front: Sequence[str],
    colors: dict[str, str],
    *,
    title: str,
    xlabel: str = "time to full rollout (mean, when promoted)",
    ylabel: str = "expected excess bad requests per release",
) -> bytes:
    """Policies as labelled points (mean with 95 % CI bars); the Pareto front as a staircase.

    ``points``: a DataFrame indexed by policy with x, x_lo, x_hi, y, y_lo, y_hi. Lower is better
    on both axes: a policy on the front is beaten on both by no other.
    """
    pts = points.dropna(subset=["x", "y"])

    def draw(fig) -> None:
        ax = fig.subplots()
        labels = []
        for name, r in pts.iterrows():
            on = name in front
            xerr = [[max(r.x - r.x_lo, 0)], [max(r.x_hi - r.x, 0)]] if np.isfinite(r.x_lo) else None
            yerr = [[max(r.y - r.y_lo, 0)], [max(r.y_hi - r.y, 0)]] if np.isfinite(r.y_lo) else None
            ax.errorbar(
                [r.x],
                [r.y],
                xerr=xerr,
                yerr=yerr,
                fmt="o",
                ms=11 if on else 8,
                color=colors.get(name, "black"),
                mfc=colors.get(name, "black") if on else "white",
                mec="black" if on else colors.get(name, "black"),
                mew=1.5,
                capsize=4,
                zorder=4,
            )
            labels.append((r.x, r.y, f"{name}\n{fmt_duration(r.x)} · {r.y:,.0f}", on))
        fr = pts.loc[[p for p in pts.index if p in front]].sort_values("x")
        if len(fr) > 1:
            ax.step(fr["x"], fr["y"], where="post", color="black", lw=1.2, ls="--", zorder=2)
        if len(fr):
            ax.plot([], [], color="black", ls="--", label="Pareto front (filled: on the front)")
            ax.legend(loc="upper right")
        xs = np.concatenate([pts["x_lo"], pts["x"], pts["x_hi"]])
        ys = np.concatenate([pts["y_lo"], pts["y"], pts["y_hi"]])
        xlog = log_axis(ax, "x", xs)
        ylog = log_axis(ax, "y", ys)
        ax.margins(x=0.25, y=0.3)
        if not xlog:
            ax.set_xlim(left=0)
        if not ylog:
            ax.yaxis.set_major_formatter(thousands())
            if np.nanmin(ys) >= 0:
                ax.set_ylim(bottom=0)
        lo, hi = ax.get_xlim()
        time_axis(ax.xaxis, max(lo, 1e-9), hi, log=xlog)
        ax.set_xlabel(xlabel + (" (log scale)" if xlog else ""))
        ax.set_ylabel(ylabel + (" (log scale)" if ylog else ""))
        note_better(ax)
        fig.suptitle(wrap(title, 88), x=0.01, ha="left")
        place_labels(fig, ax, labels)

    return draw_png((WIDTH_IN, 5.6), draw)


def _rebin(trace, stop: int, target: int = 160):
    """Sum slots into at most ``target`` bins, so per-slot noise does not drown the signal."""
    k = max(1, math.ceil(stop / target))
    n = math.ceil(stop / k) * k

    def sums(a):
        a = np.asarray(a[:stop], dtype=float)
        return np.pad(a, (0, n - a.size)).reshape(-1, k).sum(axis=1)

    cr, ce = sums(trace.canary_requests), sums(trace.canary_errors)
    sr, se = sums(trace.stable_requests), sums(trace.stable_errors)
    time = trace.time[0] + np.arange(n // k) * k * trace.slot
    share = np.divide(cr, cr + sr, out=np.zeros_like(cr), where=(cr + sr) > 0)
    c_rate = np.divide(ce, cr, out=np.full_like(cr, np.nan), where=cr > 0)
    s_rate = np.divide(se, sr, out=np.full_like(sr, np.nan), where=sr > 0)
    return time, k * trace.slot, share, c_rate, s_rate


def trace_marks(trace) -> list[tuple[float, str, str]]:
    """(time, mark kind, detail) of the events a reader looks for on a timeline."""
    marks = []
    for e in trace.events:
        kind, value, t = e["kind"], str(e["value"]), float(e["time"])
        if kind == "detect":
            marks.append((t, "detect", value))
        elif kind == "mitigated":
            marks.append((t, "mitigated", ""))
        elif kind == "status" and value.startswith("Promoted"):
            marks.append((t, "promoted", ""))
        elif (
            kind == "status"
            and (value.startswith("Aborted") or "Undo:" in value)
            and not any(m[1] == "rollback" for m in marks)
        ):
            marks.append((t, "rollback", value.split(": ", 1)[-1]))
    return marks


def timeline(
    examples: Sequence[tuple[str, Trace]],
    color: str,
    *,
    title: str,
) -> bytes:
    """One column per example trace: the new version's traffic share, then error rates.

    ``examples``: (panel title, Trace). Vertical lines mark detection, rollback start, the
    moment no traffic is left on the new version, and full promotion.
    """
    cols = max(1, len(examples))

    def draw(fig) -> None:
        from matplotlib.lines import Line2D

        axes = fig.subplots(2, cols, squeeze=False, sharex="col", height_ratios=[1, 1.15])
        handles: dict[str, Line2D] = {}
        for j, (panel, trace) in enumerate(examples):
            top, bottom = axes[0, j], axes[1, j]
            marks = trace_marks(trace)
            end_t = float(trace.time[-1] + trace.slot)
            last = max([t for t, _, _ in marks] + [_last_change(trace)], default=end_t)
            xmax = min(end_t, max(last * 1.25, last + 4 * trace.slot, 300.0))
            stop = max(1, min(len(trace.time), math.ceil(xmax / trace.slot)))
            t, width, share, c_rate, s_rate = _rebin(trace, stop)
            edges = np.append(t, t[-1] + width)
            top.stairs(share * 100, edges, color=color, lw=2, fill=True, alpha=0.25)
            top.stairs(share * 100, edges, color=color, lw=2)
            top.set_ylim(0, 105)
            top.set_ylabel("traffic on the new\nversion (%)")
            top.set_title(wrap(panel, 104 // cols - 2), loc="left")
            bottom.stairs(s_rate * 100, edges, color=_STABLE, lw=1.6)
            bottom.stairs(c_rate * 100, edges, color=color, lw=2)
            bottom.set_ylim(bottom=0)
            bottom.set_ylabel(f"failed requests (%)\nper {duration_tick(width)}")
            handles.setdefault("new", Line2D([], [], color=color, lw=2, label="new version"))
            handles.setdefault("old", Line2D([], [], color=_STABLE, lw=1.6, label="old version"))
            for when, kind, detail in marks:
                c, ls, label = _MARKS[kind]
                for ax in (top, bottom):
                    ax.axvline(when, color=c, ls=ls, lw=1.6, zorder=5)
                if kind == "detect":
                    label = f"detected (by {detail})"
                handles.setdefault(label, Line2D([], [], color=c, ls=ls, lw=1.6, label=label))
            bottom.set_xlim(0, xmax)
            time_axis(bottom.xaxis, 0.0, xmax)
            bottom.set_xlabel("time since the release started")
        fig.suptitle(wrap(title, 88), x=0.01, ha="left")
        fig.legend(
            handles=list(handles.values()),
            loc="outside lower center",
            ncol=min(len(handles), 4),
        )

    return draw_png((WIDTH_IN, 5.4), draw)


def _last_change(trace) -> float:
    """When the candidate's traffic share last changed (the rollout's end when nothing else is)."""
    share = trace.canary_share
    if share.size < 2:
        return 0.0
    changed = np.nonzero(np.abs(np.diff(share)) > 0.02)[0]
    return float(trace.time[changed[-1] + 1]) if changed.size else 0.0


def users_hurt(
    table,
    colors: dict[str, str],
    *,
    title: str,
    total_users: int | None = None,
    xlabel: str = "users",
) -> bytes:
    """Per panel, users hurt per policy (bar, 95 % CI whisker) over users exposed (outline).

    ``table``: a DataFrame with columns panel, policy, hurt, hurt_lo, hurt_hi, exposed;
    ``total_users`` draws the whole population as a reference line when it is in range.
    """
    panels = list(dict.fromkeys(table["panel"]))
    policies = list(colors)
    rows = len(policies)
    height = 1.3 + sum(0.8 + 0.5 * rows for _ in panels)

    def draw(fig) -> None:
        axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
        values = table[["hurt", "hurt_hi", "exposed"]].to_numpy(dtype=float).ravel()
        for ax, panel in zip(axes, panels):
            part = table[table["panel"] == panel].set_index("policy")
            pos = np.arange(rows)[::-1]
            for y, p in zip(pos, policies):
                if p not in part.index:
                    continue
                r = part.loc[p]
                ax.barh(y, r.exposed, height=0.62, color="none", ec=colors[p], lw=1.2, ls="--")
                ax.barh(y, r.hurt, height=0.62, color=colors[p])
                if np.isfinite(r.hurt_lo):
                    ax.errorbar(
                        r.hurt,
                        y,
                        xerr=[[max(r.hurt - r.hurt_lo, 0)], [max(r.hurt_hi - r.hurt, 0)]],
                        color="black",
                        capsize=3,
                        lw=1.2,
                    )
                ax.annotate(
                    f"{r.hurt:,.0f} hurt of {r.exposed:,.0f} exposed",
                    (max(r.exposed, r.hurt_hi if np.isfinite(r.hurt_hi) else r.hurt), y),
                    xytext=(6, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=10,
                )
            ax.set_yticks(pos, policies)
            ax.grid(axis="y", visible=False)
            ax.set_title(panel, loc="left")
        # linear on purpose: bar lengths on a log axis would mislead
        top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
        right = max(top, 1.0) * 1.45
        axes[0].set_xlim(0, right)
        axes[0].xaxis.set_major_formatter(thousands())
        if total_users and total_users <= right:
            for ax in axes:
                ax.axvline(total_users, color="#555", lw=1, ls=":", zorder=1)
            axes[0].annotate(
                f"all {total_users:,} users",
                (total_users, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -2),
                textcoords="offset points",
                va="top",
                fontsize=9.5,
                color="#555",
            )
        axes[-1].set_xlabel(xlabel + "; dashed outline: users exposed")
        fig.suptitle(wrap(title, 88), x=0.01, ha="left")

    return draw_png((WIDTH_IN, height), draw)
