"""The run report's figures place their axes themselves (no layout engine, sim/report/plotting.py
``place``): every label stays inside the figure and clear of the others, and the cheap stand-ins
draw what matplotlib's own artists would (stairs as one line, minor ticks as one line of marks)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

from sim.report import figures, plotting
from sim.report.write import write_report
from sim.runs import pool
from sim.runs.runner import run
from sim.runs.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _short(path: Path, hours: float):
    full = load_scenario(path)
    world = full.world.model_copy(update={"horizon": hours * 3600.0})
    return dataclasses.replace(full, scenario=full.scenario.model_copy(update={"world": world}))


def _texts(fig):
    """(owner, window extent) of every visible, non-empty text that a layout must keep apart."""
    renderer = fig.canvas.get_renderer()
    out = []
    if fig._suptitle is not None:
        out.append(("suptitle", fig._suptitle))
    for i, ax in enumerate(fig.axes):
        out += [(f"title {i}", ax._left_title), (f"xlabel {i}", ax.xaxis.label)]
        out.append((f"ylabel {i}", ax.yaxis.label))
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            out += [(f"{name}ticks {i}", t.label1) for t in axis.get_major_ticks()]
    for legend in fig.legends:
        out += [("legend", t) for t in legend.get_texts()]
    shown = [(o, t) for o, t in out if t.get_visible() and t.get_text()]
    return [(o, t.get_window_extent(renderer)) for o, t in shown]


@pytest.mark.parametrize(("scenario", "hours"), [("seed-practice.yaml", 2), ("diurnal.yaml", 4)])
def test_every_label_is_inside_the_figure_and_clear_of_the_others(
    scenario, hours, tmp_path, monkeypatch
) -> None:
    loaded = _short(ROOT / "scenarios" / scenario, hours)
    pool.shutdown()  # drawn here, where the figures can be looked at
    result = run(loaded.world, loaded.policies, replications=6, seed=3, backend="inprocess")
    drawn: list = []
    real = figures.draw_png

    def keep(figsize, draw, **kwargs):
        return real(figsize, lambda fig: (draw(fig), drawn.append(fig)), **kwargs)

    monkeypatch.setattr(figures, "draw_png", keep)
    write_report(result, loaded, tmp_path / "r")
    assert len(drawn) == 5
    for fig in drawn:
        width, height = fig.bbox.width, fig.bbox.height
        texts = _texts(fig)
        for owner, box in texts:
            inside = box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1
            assert inside and box.y1 <= height + 1, (owner, box, fig._suptitle.get_text())
        for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
            if a == b:  # tick labels of one axis: the locator's business, as before
                continue
            both = box_a.intersection(box_a, box_b)
            overlap = both.width * both.height if both is not None else 0.0
            assert overlap < 2.0, (a, b, fig._suptitle.get_text())


def test_stairs_are_drawn_as_matplotlib_draws_them() -> None:
    values = np.array([np.nan, 1.0, 2.0, np.nan, np.nan, 3.0, 0.5, np.nan, 4.0])
    edges = np.arange(values.size + 1, dtype=float)

    def draw(fig) -> None:
        ax = fig.subplots()
        patch = ax.stairs(values, edges)
        ours = np.column_stack(figures._stairs(values, edges))  # runs apart by a NaN row
        theirs = patch.get_path().vertices  # runs apart by MOVETO
        assert np.array_equal(ours[np.isfinite(ours[:, 0])], theirs[np.isfinite(theirs[:, 0])])

    plotting.draw_png((3.0, 2.0), draw)


def test_minor_marks_are_the_minor_ticks_matplotlib_would_draw() -> None:
    def draw(fig) -> None:
        ax = fig.subplots()
        ax.plot([3.0, 40_000.0], [1.0, 2.0])
        ax.set_xscale("log")
        locator = ax.xaxis.get_minor_locator()
        fig.draw_without_rendering()
        expected = ax.xaxis.get_minorticklocs()
        lo, hi = sorted(ax.xaxis.get_view_interval())
        expected = expected[(expected >= lo) & (expected <= hi)]
        assert np.allclose(plotting._minor_locs(ax.xaxis, locator), expected)
        plotting.log_axis(ax, "x", np.array([3.0, 40_000.0]))
        assert len(ax.xaxis.get_minorticklocs()) == 0  # no Tick objects: the marks stand in
        assert any(type(a).__name__ == "MinorMarks" for a in ax.get_children())

    plotting.draw_png((4.0, 3.0), draw)
