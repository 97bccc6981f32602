"""Report figures as PNG bytes: blast radius, Pareto front, timelines, users hurt (DESIGN §6).

Each builder draws on its own Agg figure inside the call (sim/report/plotting.py: nothing happens at
import and pyplot's global state, e.g. a notebook's backend, is never touched). Callers pass the
title, a sentence that says what the reader should see; this module only draws. Every policy
keeps its colour across figures (``policy_colors``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from sim.engine.trace import Trace
from sim.report.plotting import (
    DPI,
    PT,
    WIDTH_IN,
    draw_png,
    duration_tick,
    fix_ticks,
    label_in,
    log_axis,
    note_better,
    place,
    place_labels,
    policy_colors,
    suptitle,
    text_overhang,
    thousands,
    time_axis,
    title_in,
    wrap,
    xaxis_in,
    xoverhang,
    ytick_width,
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
            _boxes(ax, shown, colors)
            for d, y, p in shown:
                pts = d if d.size <= 2000 else rng.choice(d, 2000, replace=False)
                jitter = rng.uniform(-0.2, 0.2, pts.size)
                ax.scatter(pts, y + jitter, s=9, color=colors[p], alpha=0.55, lw=0, zorder=3)
            means = [float(d.mean()) for d, _, _ in shown]
            ax.scatter(
                means,
                [y for _, y, _ in shown],
                marker="D",
                s=42,
                color="white",
                ec="black",
                zorder=4,
            )
            for mean, (_, y, _) in zip(means, shown):
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
            ax.set_title(panel_titles.get(panel, panel), loc="left", y=1.0)
        _stack(fig, axes, suptitle(fig, wrap(title, 88)))

    return draw_png((WIDTH_IN, height), draw, fixed=True)


def _boxes(ax, shown, colors, width: float = 0.55) -> None:
    """Horizontal boxes (25–75 %), whiskers (to the last value inside 5–95 %) and medians, as
    ``boxplot`` draws them, in three collections instead of six artists per box."""
    if not shown:
        return
    from matplotlib.cbook import boxplot_stats
    from matplotlib.collections import LineCollection, PolyCollection

    stats = boxplot_stats([d for d, _, _ in shown], whis=(5, 95))
    h, c = width / 2, width / 4  # the box's and the caps' half heights
    boxes, whiskers, medians = [], [], []
    for st, (_, y, _) in zip(stats, shown):
        lo, q1, med, q3, hi = (st[k] for k in ("whislo", "q1", "med", "q3", "whishi"))
        boxes.append([(q1, y - h), (q3, y - h), (q3, y + h), (q1, y + h)])
        whiskers += [[(lo, y), (q1, y)], [(q3, y), (hi, y)]]
        whiskers += [[(lo, y - c), (lo, y + c)], [(hi, y - c), (hi, y + c)]]
        medians.append([(med, y - h), (med, y + h)])
    faces = [colors[p] for _, _, p in shown]
    ax.add_collection(PolyCollection(boxes, facecolors=faces, edgecolors="black", alpha=0.35))
    ax.add_collection(LineCollection(whiskers, colors="black", linewidths=1.0))
    ax.add_collection(LineCollection(medians, colors="black", linewidths=1.5))


def _stack(fig, axes, top: float, *, shared: bool = False) -> None:
    """Place panels stacked one per row, each with its title above and its x axis below
    (``shared``: only the last panel's x axis has labels)."""
    pad = 6 * PT
    grid = [[ax] for ax in axes]
    gaps = [
        (3.5 * PT if shared else xaxis_in(fig, a)) + title_in(fig, b) + pad
        for a, b in itertools.pairwise(axes)
    ]
    top += title_in(fig, axes[0])
    bottom = xaxis_in(fig, axes[-1]) + pad / 2
    place(fig, grid, left=1.0, right=0.3, top=top, bottom=bottom, hgaps=gaps)  # which ticks fit
    left = max(ytick_width(fig, ax) + label_in(fig, ax.get_ylabel()) for ax in axes) + pad
    right = max(xoverhang(fig, ax, fig.get_figwidth() - left) for ax in axes) + 2 * pad
    place(fig, grid, left=left, right=right, top=top, bottom=bottom, hgaps=gaps)
    more = text_overhang(fig, axes)
    if more > 0:
        place(fig, grid, left=left, right=right + more + pad, top=top, bottom=bottom, hgaps=gaps)
    fix_ticks(axes)


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
        _stack(fig, [ax], suptitle(fig, wrap(title, 88)))
        place_labels(fig, ax, labels, placed=True)

    return draw_png((WIDTH_IN, 5.6), draw, fixed=True)


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
        from matplotlib.collections import PolyCollection
        from matplotlib.lines import Line2D

        axes = fig.subplots(2, cols, squeeze=False, sharex="col")
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
            x, y = _stairs(share * 100, edges)
            fill = PolyCollection([np.column_stack([x, y])], facecolors=color, edgecolors=color)
            fill.set(alpha=0.25, linewidth=2, joinstyle="miter", capstyle="butt")
            top.add_collection(fill)
            _step_line(top, x, y, color=color, lw=2)
            top.set_ylim(0, 105)
            top.set_ylabel("traffic on the new\nversion (%)")
            top.set_title(wrap(panel, 104 // cols - 2), loc="left", y=1.0)
            _step_line(bottom, *_stairs(s_rate * 100, edges), color=_STABLE, lw=1.6)
            _step_line(bottom, *_stairs(c_rate * 100, edges), color=color, lw=2)
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
        head = suptitle(fig, wrap(title, 88))
        legend = fig.legend(
            handles=list(handles.values()),
            loc="lower center",
            bbox_to_anchor=(0.5, 2 * PT / fig.get_figheight()),
            ncol=min(len(handles), 4),
        )
        _columns(fig, axes, head, legend)

    return draw_png((WIDTH_IN, 5.4), draw, fixed=True)


def _stairs(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The outline ``Axes.stairs`` draws (from 0 up and back down to 0 around each run of
    non-NaN values), as one NaN-separated polyline: a Line2D, cheaper than a StepPatch."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    gap = np.array([np.nan])
    ok = np.concatenate([[0], ~np.isnan(values), [0]]).astype(np.int8)
    bounds = np.flatnonzero(np.diff(ok))
    for a, b in zip(bounds[::2], bounds[1::2]):
        xs += [np.repeat(edges[a : b + 1], 2), gap]
        ys += [np.concatenate([[0.0], np.repeat(values[a:b], 2), [0.0]]), gap]
    if not xs:
        return np.empty(0), np.empty(0)
    return np.concatenate(xs)[:-1], np.concatenate(ys)[:-1]


def _step_line(ax, x, y, **style) -> None:
    ax.plot(x, y, solid_joinstyle="miter", solid_capstyle="butt", **style)


def _columns(fig, axes, head: float, legend) -> None:
    """Place the timeline's grid: titles above, shared x axis below, the legend at the bottom."""
    pad = 6 * PT
    renderer = fig.canvas.get_renderer()
    legend_h = legend.get_window_extent(renderer).height / fig.dpi
    grid = [list(row) for row in axes]
    box = {
        "top": head + max(title_in(fig, ax) for ax in axes[0]),
        "bottom": legend_h + xaxis_in(fig, axes[1, 0]) + 2 * pad,
        "hgaps": [2 * pad],
        "heights": [1, 1.15],
    }
    place(fig, grid, left=1.0, right=0.3, wgap=1.0, **box)  # to tell which ticks fit
    lefts = [
        max(ytick_width(fig, ax) + label_in(fig, ax.get_ylabel()) for ax in axes[:, j]) + pad
        for j in range(axes.shape[1])
    ]
    width = fig.get_figwidth()
    cw = (width - sum(lefts)) / axes.shape[1]
    over = [xoverhang(fig, ax, cw) for ax in axes[1]]
    wgap = max([a + b for a, b in zip(over[:-1], lefts[1:])], default=0.0)
    place(fig, grid, left=lefts[0], right=over[-1] + 2 * pad, wgap=wgap + pad, **box)
    fix_ticks(axes.ravel())


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
            ax.set_title(panel, loc="left", y=1.0)
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
        _stack(fig, axes, suptitle(fig, wrap(title, 88)), shared=True)

    return draw_png((WIDTH_IN, height), draw, fixed=True)
