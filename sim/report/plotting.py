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


def draw_png(figsize: tuple[float, float], draw: Callable, *, fixed: bool = False) -> bytes:
    """Run ``draw(fig)`` on a fresh Agg figure under the report style; return PNG bytes.

    ``fixed``: ``draw`` places its axes itself (``place``), so no layout engine runs: a
    constrained layout measures every tick and text twice before the figure is drawn once.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=figsize, dpi=DPI, layout=None if fixed else "constrained")
        canvas = FigureCanvasAgg(fig)
        draw(fig)
        canvas.draw()
        return _png(np.asarray(canvas.buffer_rgba()))


def _png(rgba: np.ndarray) -> bytes:
    """Opaque RGB at zlib level 3: half the encoding time of savefig's RGBA at level 6, and a
    smaller file (the figure has no transparency, so the pixels are the same)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(
        buf, format="png", compress_level=3, dpi=(DPI, DPI)
    )
    return buf.getvalue()


PT = 1 / 72
"""Inches per point: margins are computed in points of the report style's fonts."""
_TICK = 3.5 + 3.5  # major tick length + pad (points)
_LINE = 1.4  # a further line of text, in font sizes (matplotlib's 1.2 spacing, plus descent)


def text_in(fig, text: str, size: float, weight: str = "normal") -> tuple[float, float]:
    """Width and height (inches) of ``text`` (lines split on newlines) in the report font."""
    from matplotlib.font_manager import FontProperties

    renderer = fig.canvas.get_renderer()
    prop = FontProperties(size=size, weight=weight)
    lines = str(text).split("\n")
    width = max(_metrics(renderer, s, prop, fig.dpi)[0] for s in lines)
    return width / fig.dpi, size * (1 + _LINE * (len(lines) - 1)) * PT


def _metrics(renderer, text: str, prop, dpi: float) -> tuple[float, float, float]:
    """Text extents through matplotlib's own cache when it has one, so drawing the same
    label later measures nothing again."""
    from matplotlib import text as mtext

    cached = getattr(mtext, "_get_text_metrics_with_cache", None)  # private: may change
    try:
        if cached is not None:
            return cached(renderer, text, prop, False, dpi)
    except TypeError:  # another signature in another matplotlib: measure directly
        pass
    return renderer.get_text_width_height_descent(text, prop, ismath=False)


def tick_labels(axis) -> list[tuple[float, str]]:
    """(position, label) of the major ticks an axis will draw, without making its ticks."""
    locs = _in_view(axis)
    return list(zip(locs, axis.get_major_formatter().format_ticks(locs)))


def _in_view(axis) -> list[float]:
    lo, hi = sorted(axis.get_view_interval())
    eps = (hi - lo) * 1e-9
    return [x for x in axis.get_majorticklocs() if lo - eps <= x <= hi + eps]


def ytick_width(fig, ax) -> float:
    """Inches left of the axes taken by the y tick labels and ticks."""
    size = _size("ytick.labelsize")
    labels = [s for _, s in tick_labels(ax.yaxis) if s]
    width = max((text_in(fig, s, size)[0] for s in labels), default=0.0)
    return width + _TICK * PT


def label_in(fig, text: str) -> float:
    """Inches taken by an axis label (its lines) and its pad."""
    return text_in(fig, text, _size("axes.labelsize"))[1] + 4 * PT if text else 0.0


def xaxis_in(fig, ax) -> float:
    """Inches below the axes taken by the x tick labels and the x label."""
    return (_TICK + _size("xtick.labelsize")) * PT + label_in(fig, ax.get_xlabel())


def title_in(fig, ax) -> float:
    """Inches above the axes taken by its left title."""
    title = ax.get_title(loc="left")
    return text_in(fig, title, _size("axes.titlesize"))[1] + 6 * PT if title else 0.0


def suptitle(fig, text: str) -> float:
    """The figure's title at the top left; returns the inches it takes."""
    size = _size("figure.titlesize")
    fig.suptitle(text, x=0.01, y=1 - 4 * PT / fig.get_figheight(), ha="left", va="top")
    return text_in(fig, text, size, "bold")[1] + 8 * PT


def xoverhang(fig, ax, width: float) -> float:
    """Inches the last x tick label reaches right of an axes ``width`` inches wide."""
    ticks = tick_labels(ax.xaxis)
    if not ticks:
        return 0.0
    loc, label = ticks[-1]
    scale = ax.xaxis.get_transform()
    lo, hi, at = scale.transform([*sorted(ax.get_xlim()), loc])
    room = (hi - at) / (hi - lo) * width if hi > lo else 0.0
    return max(text_in(fig, label, _size("xtick.labelsize"))[0] / 2 - room, 0.0)


def text_overhang(fig, axes) -> float:
    """Inches the axes' texts (annotations) reach beyond the figure's right edge."""
    renderer = fig.canvas.get_renderer()
    right = max(
        (t.get_window_extent(renderer).x1 for ax in axes for t in ax.texts if t.get_visible()),
        default=0.0,
    )
    return max(right / fig.dpi - fig.get_figwidth(), 0.0)


def fix_ticks(axes) -> None:
    """Fix the major ticks to those in view, once the axes are placed (how many fit depends on
    their size) and the limits final: a locator's ticks beyond the limits become Tick objects
    (~1 ms each) that are never drawn."""
    from matplotlib.ticker import FixedLocator

    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            if not isinstance(axis.get_major_locator(), FixedLocator):
                axis.set_major_locator(FixedLocator(_in_view(axis)))


def _size(key: str) -> float:
    import matplotlib
    from matplotlib.font_manager import FontProperties

    rc: Any = matplotlib.rcParams
    return float(FontProperties(size=rc[key]).get_size_in_points())


def place(fig, grid, *, left, right, top, bottom, hgaps=(), wgap=0.0, heights=None) -> None:
    """Put a grid of axes (rows of axes) at fixed margins in inches: ``hgaps`` between rows,
    ``wgap`` between columns, ``heights`` the rows' relative heights."""
    w, h = fig.get_figwidth(), fig.get_figheight()
    rows, cols = len(grid), len(grid[0])
    heights = list(heights or [1.0] * rows)
    gaps = list(hgaps) or [0.0] * (rows - 1)
    free = max(h - top - bottom - sum(gaps), 0.1 * h)
    cw = max((w - left - right - wgap * (cols - 1)) / cols, 0.1 * w)
    y = h - top
    for i, row in enumerate(grid):
        rh = free * heights[i] / sum(heights)
        y -= rh
        for j, ax in enumerate(row):
            ax.set_position([(left + j * (cw + wgap)) / w, y / h, cw / w, rh / h])
        if i < rows - 1:
            y -= gaps[i]


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
    minor_marks(ax, axis)
    return True


def minor_marks(ax, axis: str) -> None:
    """The axis' minor ticks as one line of tick markers placed at draw time: the same marks,
    without a Tick object (two lines and two texts, ~1 ms) per mark."""
    import matplotlib
    from matplotlib.markers import TICKDOWN, TICKLEFT
    from matplotlib.ticker import NullLocator

    which = ax.xaxis if axis == "x" else ax.yaxis
    locator = which.get_minor_locator()
    if isinstance(locator, NullLocator):
        return
    held = NullLocator()  # while the axis holds this one, the marks stand in for its ticks
    which.set_minor_locator(held)
    rc: Any = matplotlib.rcParams
    marks = _marks_class()(
        which,
        locator,
        held,
        marker=TICKDOWN if axis == "x" else TICKLEFT,
        markersize=rc[f"{axis}tick.minor.size"],
        markeredgewidth=rc[f"{axis}tick.minor.width"],
        color=rc[f"{axis}tick.color"],
        linestyle="none",
        transform=ax.get_xaxis_transform() if axis == "x" else ax.get_yaxis_transform(),
        clip_on=False,
        zorder=which.get_zorder(),
    )
    marks.set_in_layout(False)  # empty until drawn: a layout engine would measure nothing
    ax.add_artist(marks)


_MARKS: list = []


def _marks_class():
    """``MinorMarks`` (a Line2D subclass, made on first use: matplotlib loads only to draw)."""
    if not _MARKS:
        from matplotlib.lines import Line2D

        class MinorMarks(Line2D):
            def __init__(self, axis, locator, held, **style) -> None:
                super().__init__([], [], **style)
                self._axis, self._locator, self._held = axis, locator, held

            def draw(self, renderer) -> None:
                if self._axis.get_minor_locator() is not self._held:
                    return  # replaced since (e.g. ``time_axis``): the axis draws its own
                locs = _minor_locs(self._axis, self._locator)
                zero = np.zeros(locs.size)
                self.set_data((locs, zero) if self._axis.axis_name == "x" else (zero, locs))
                super().draw(renderer)

        _MARKS.append(MinorMarks)
    return _MARKS[0]


def _minor_locs(axis, locator) -> np.ndarray:
    """What ``Axis.get_minorticklocs`` draws: in view, minus those on a major tick."""
    transform = axis.get_transform()
    lo, hi = sorted(axis.get_view_interval())
    locs = np.asarray(locator(), dtype=float)
    locs = locs[(locs >= lo - (hi - lo) * 1e-9) & (locs <= hi + (hi - lo) * 1e-9)]
    major = np.asarray(axis.get_majorticklocs(), dtype=float)
    if locs.size and major.size:
        tr_lo, tr_hi = sorted(transform.transform([lo, hi]))
        tol = (tr_hi - tr_lo) * 1e-5
        apart = transform.transform(locs)[:, None] - transform.transform(major)[None, :]
        locs = locs[~(np.abs(apart) <= tol).any(axis=1)]
    return locs


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


def place_labels(fig, ax, labels, *, placed: bool = False) -> None:
    """Put each label where it overlaps no other label, point or the axes' edge (greedy).

    ``placed``: the axes are where they will be drawn (``place``), so no layout is settled
    first (a draw without pixels, as costly as most of a draw)."""
    from matplotlib.transforms import Bbox

    if placed:
        ax.get_xlim()  # only the autoscaled limits are pending
    else:
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
