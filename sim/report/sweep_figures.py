"""Sweep figures as PNG bytes: each metric against the swept values, and the winner per cell.

Drawn in the house style of the run report (sim/report/plotting.py: one Agg figure per call,
nothing at import, Okabe-Ito colours that follow a policy across figures). Callers pass the
titles, sentences that say what to see; this module only draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.report.plotting import WIDTH_IN, draw_png, log_axis, thousands, time_axis, wrap

__all__ = ["Panel", "against", "winner_map"]

_NONE = "#bdbdbd"
"""A cell where no policy catches most bad releases."""


@dataclass(frozen=True)
class Panel:
    """One panel: per policy a line of means over ``x`` with its 95 % band.

    ``x``: positions (the values on a numeric axis, else 0..n-1), ``ticks``: their labels;
    ``series[policy]``: (means, lows, highs), NaN where undefined; ``kind``: "count",
    "duration" or "share" (the y axis's format)."""

    title: str
    x: tuple[float, ...]
    ticks: tuple[str, ...]
    xlabel: str
    series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]]
    kind: str = "count"
    log_x: bool = False


def against(panels: Sequence[Panel], colors: dict[str, str], *, title: str) -> bytes:
    """Panels side by side (two per row): each policy's mean and 95 % band per swept value."""
    cols = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / cols)

    def draw(fig) -> None:
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, panel in zip(axes, panels):
            _panel(ax, panel, colors)
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        handles = [axes[0].plot([], [], color=colors[p], marker="o", label=p)[0] for p in colors]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)))
        fig.suptitle(wrap(title, 88), x=0.01, ha="left")

    return draw_png((WIDTH_IN, 0.9 + 3.4 * rows), draw)


def _panel(ax, panel: Panel, colors: dict[str, str]) -> None:
    x = np.asarray(panel.x, dtype=float)
    values = []
    for policy, given in panel.series.items():
        mean, lo, hi = (np.asarray(v, dtype=float) for v in given)
        color = colors.get(policy, "#000000")
        band = ~(np.isnan(lo) | np.isnan(hi))
        if band.any():
            ax.fill_between(x, lo, hi, where=band, color=color, alpha=0.18, lw=0, interpolate=True)
        ax.plot(x, mean, color=color, marker="o", lw=1.8, ms=5, zorder=3)
        values += [mean, lo, hi]
    if panel.log_x:
        ax.set_xscale("log")
    ax.set_xticks(x, panel.ticks)
    if panel.log_x:
        ax.minorticks_off()
    ax.set_xlabel(panel.xlabel)
    ax.set_title(wrap(panel.title, 46), loc="left")
    every = np.concatenate(values) if values else np.empty(0)
    finite = every[np.isfinite(every)]
    if panel.kind == "duration":
        top = float(finite.max()) if finite.size else 60.0
        ax.set_ylim(bottom=0)
        time_axis(ax.yaxis, 0.0, max(top, 1.0))
    elif panel.kind == "share":
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylim(-0.02, max(0.1, float(finite.max()) * 1.1) if finite.size else 1.0)
    elif not log_axis(ax, "y", finite):
        ax.yaxis.set_major_formatter(thousands())
    else:
        ax.set_ylabel("log scale")


def winner_map(
    rows: Sequence[str],
    cols: Sequence[str],
    maps: Sequence[tuple[str, list[list[str]], list[list[bool]]]],
    colors: dict[str, str],
    *,
    title: str,
    ylabel: str,
    xlabel: str,
) -> bytes:
    """One heatmap per (title, winner names[r][c], significant[r][c]): each cell coloured by its
    winner, solid when it wins significantly, hatched when not; "" marks a cell where no policy
    catches most bad releases (grey)."""

    def draw(fig) -> None:
        from matplotlib.patches import Patch, Rectangle

        axes = fig.subplots(1, len(maps), squeeze=False)[0]
        for ax, (name, winners, strong) in zip(axes, maps):
            for r in range(len(rows)):
                for c in range(len(cols)):
                    w = winners[r][c]
                    face = colors.get(w, _NONE) if w else _NONE
                    sure = bool(strong[r][c])
                    ax.add_patch(
                        Rectangle(
                            (c - 0.5, r - 0.5),
                            1,
                            1,
                            facecolor=face,
                            alpha=0.85 if sure else 0.35,
                            hatch="" if sure else "//",
                            edgecolor="white",
                            lw=2,
                        )
                    )
                    label = wrap(w, 14) if w else "none\ncatches"
                    ax.text(c, r, label, ha="center", va="center", fontsize=9)
            ax.set_xlim(-0.5, len(cols) - 0.5)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_xticks(range(len(cols)), cols)
            ax.set_yticks(range(len(rows)), rows)
            ax.grid(False)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(name, loc="left")
        handles = [Patch(color=colors[p], alpha=0.85, label=p) for p in colors]
        handles.append(
            Patch(facecolor="white", edgecolor="#555", hatch="//", label="not significant")
        )
        fig.legend(handles=handles, loc="outside lower center", ncols=min(5, len(handles)))
        fig.suptitle(wrap(title, 88), x=0.01, ha="left")

    height = 1.6 + 0.75 * max(len(rows), 2)
    return draw_png((WIDTH_IN, height), draw)
