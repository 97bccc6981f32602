"""The house style of report figures: one Agg canvas per figure, colours, time axes, labels.

Everything here is mechanics shared by sim/report/figures.py: a figure is drawn on its own
``matplotlib.figure.Figure`` with the Agg canvas inside ``draw_png`` (nothing at import, pyplot's
global state untouched, style in a local ``rc_context``), time axes tick on round durations, and
point labels are placed where they overlap nothing.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # matplotlib itself is imported only when a figure is drawn
    from matplotlib.typing import RcKeyType

__all__ = [
    "DPI",
    "WIDTH_IN",
    "draw_png",
    "duration_tick",
    "log_axis",
    "note_better",
    "place_labels",
    "policy_colors",
    "thousands",
    "time_axis",
    "wrap",
]

DPI = 100
"""10-inch figures are 1000 px wide: shown 1:1 in the report, text is ~15 px at 100 % zoom."""
WIDTH_IN = 10.0
_OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_STYLE: dict[RcKeyType, Any] = {
    "font.size": 11,
    "axes.titlesize": 11.5,
    "axes.labelsize": 11,
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    # names are shown as written: a policy called "$x$" or "a_{b}" is text, not TeX
    "text.parse_math": False,
    "text.usetex": False,
}


def policy_colors(policies: Sequence[str]) -> dict[str, str]:
    """One colour per policy, in order (Okabe-Ito: distinguishable with colour blindness)."""
    extra = ("#882255", "#44AA99", "#999933", "#AA4499", "#332288", "#DDCC77")
    palette = _OKABE_ITO + extra
    return {p: palette[i % len(palette)] for i, p in enumerate(policies)}


_TICK_STEPS = (
    *(1, 2, 5, 10, 15, 30),  # seconds
    *(60 * m for m in (1, 2, 5, 10, 15, 30)),  # minutes
    *(3600 * h for h in (1, 2, 3, 6, 12, 24, 48, 168)),  # hours, days, a week
)
"""Round durations for time axes: 30 s, 5 min, 1 h, … never 1.67m."""


def duration_tick(seconds: float, _pos=None) -> str:
    """A time-axis label: 0, 45 s, 2 min, 1m 30s, 1 h, 1h 30m, 2 d."""
    s = round(float(seconds))
    if s <= 0:
        return "0"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min" if r == 0 else f"{m}m {r:02d}s"
    if s < 86400:
        h, r = divmod(s, 3600)
        return f"{h} h" if r == 0 else f"{h}h {r // 60:02d}m"
    d, r = divmod(s, 86400)
    return f"{d} d" if r == 0 else f"{d}d {r // 3600:02d}h"


def time_axis(axis, lo: float, hi: float, log: bool = False) -> None:
    """Ticks on round durations, labelled as durations, on a linear or log axis."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MultipleLocator, NullLocator

    if log:
        ticks: list[float] = [s for s in _TICK_STEPS if lo <= s <= hi] or [lo, hi]
        while len(ticks) > 7:
            ticks = ticks[::2]
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_locator(NullLocator())
    else:
        span = max(hi - lo, 1.0)
        step = next((s for s in _TICK_STEPS if span / s <= 7), _TICK_STEPS[-1])
        axis.set_major_locator(MultipleLocator(step))
    axis.set_major_formatter(FuncFormatter(duration_tick))


def wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def load() -> None:
    """Import what ``draw_png`` needs (a worker does it while the report's facts are made)."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401


def draw_png(figsize: tuple[float, float], draw: Callable) -> bytes:
    """Run ``draw(fig)`` on a fresh Agg figure under the report style; return PNG bytes."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _wide(values: np.ndarray) -> bool:
    """Whether positive values span enough decades to need a log axis."""
    v = values[np.isfinite(values)]
    if v.size == 0 or v.max() <= 0:
        return False
    low = max(float(np.min(v[v > 0])) if (v > 0).any() else 1.0, 1.0)
    return float(v.max()) / low >= 30


def log_axis(ax, axis: str, values: np.ndarray) -> bool:
    """Log (or symlog, if anything is ≤ 0) scale when the values span a wide range."""
    if not _wide(values):
        return False
    from matplotlib.ticker import FuncFormatter, NullFormatter

    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    v = values[np.isfinite(values)]
    if (v <= 0).any():
        setter("symlog", linthresh=1.0)
    else:
        setter("log")
    fmt = FuncFormatter(lambda x, _p: f"{x:,.0f}" if abs(x) >= 1 else f"{x:g}")
    which = ax.xaxis if axis == "x" else ax.yaxis
    which.set_major_formatter(fmt)
    which.set_minor_formatter(NullFormatter())  # the default one writes TeX, shown raw here
    return True


_OFFSETS = (  # points: (dx, dy, ha, va), tried in order
    (9, 5, "left", "bottom"),
    (9, -5, "left", "top"),
    (-9, 5, "right", "bottom"),
    (-9, -5, "right", "top"),
    (0, 12, "center", "bottom"),
    (0, -12, "center", "top"),
    (12, 24, "left", "bottom"),
    (12, -24, "left", "top"),
    (-12, 24, "right", "bottom"),
    (-12, -24, "right", "top"),
    (0, 34, "center", "bottom"),
    (0, -34, "center", "top"),
)


def note_better(ax, where: str = "down and left") -> None:
    """Say in the lower-left corner, in small grey italics, which way is better."""
    style = {"color": "#555", "style": "italic", "fontsize": 10}
    ax.text(0.01, 0.02, f"better: {where}", transform=ax.transAxes, **style)


def place_labels(fig, ax, labels) -> None:
    """Put each label where it overlaps no other label, point or the axes' edge (greedy)."""
    from matplotlib.transforms import Bbox

    fig.draw_without_rendering()  # settle the layout (no pixels), so positions are final
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for x, y, _, _ in labels:
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_bounds(px - 9, py - 9, 18, 18))
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))

    def cost(box) -> float:
        inside = Bbox.intersection(box, frame)
        outside = box.width * box.height - (inside.width * inside.height if inside else 0)
        hits = 0.0
        for other in taken:
            both = Bbox.intersection(box, other)
            hits += both.width * both.height if both else 0.0
        return hits + 3 * outside

    for x, y, text, bold in labels:
        best = None
        for dx, dy, ha, va in _OFFSETS:
            ann = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=10.5,
                fontweight="bold" if bold else "normal",
                zorder=5,
                annotation_clip=False,
            )
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer)
            c = cost(box)
            if best is None or c < best[0]:
                if best is not None:
                    best[1].remove()
                best = (c, ann, box)
            else:
                ann.remove()
            if c == 0:
                break
        assert best is not None  # _OFFSETS is not empty: some place was tried
        taken.append(best[2])
    # the labels stay out of the layout, which is settled: savefig need not run it again
    fig.set_layout_engine("none")


def thousands():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _p: f"{v:,.0f}" if abs(v) >= 1 or v == 0 else f"{v:g}")
