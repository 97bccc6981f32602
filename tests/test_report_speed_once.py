"""The report does each costly thing once: every figure drawn once (not once per format), the
users and cells of the run reused for the example timelines, and the point labels placed on a
layout that is settled once."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import sim.runs.runner as runner
from sim.report import figures, plotting
from sim.report.write import write_report
from sim.runs import pool
from sim.runs.runner import run
from sim.runs.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "seed-practice.yaml"


@pytest.fixture(scope="module")
def loaded():
    full = load_scenario(SCENARIO)
    world = full.world.model_copy(update={"horizon": 3600.0})
    return dataclasses.replace(full, scenario=full.scenario.model_copy(update={"world": world}))


def test_each_figure_is_drawn_once_and_the_run_is_not_rebuilt(loaded, tmp_path, monkeypatch):
    pool.shutdown()  # drawn here, where the count can see them
    result = run(loaded.world, loaded.policies, replications=6, seed=2, backend="inprocess")
    drawn: list[tuple] = []
    real_draw = figures.draw_png
    monkeypatch.setattr(figures, "draw_png", lambda *a, **k: drawn.append(a) or real_draw(*a, **k))
    built: list[int] = []
    real_parts = runner.shared_parts
    monkeypatch.setattr(runner, "shared_parts", lambda *a: built.append(1) or real_parts(*a))
    out = write_report(result, loaded, tmp_path / "r")
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(drawn) == len(pngs) == 5  # one draw per figure, shared by report.md and .html
    html = (out / "report.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == len(pngs)
    assert built == []  # the timelines rerun on the run's own compiled world and users


def test_labels_are_placed_on_a_settled_layout() -> None:
    def draw(fig) -> None:
        ax = fig.subplots()
        ax.plot([1, 2, 3], [3, 1, 2], "o")
        plotting.place_labels(fig, ax, [(1, 3, "a", False), (2, 1, "b", True), (3, 2, "c", False)])
        texts = [t.get_text() for t in ax.texts]
        assert texts == ["a", "b", "c"]  # one label per point: the rejected places are gone
        assert fig.get_layout_engine() is None or type(fig.get_layout_engine()).__name__ in {
            "PlaceHolderLayoutEngine"
        }

    png = plotting.draw_png((4.0, 3.0), draw)
    assert png.startswith(b"\x89PNG")


def test_figures_drawn_in_the_warm_pool_are_the_same_figures(loaded, tmp_path) -> None:
    kwargs = {"replications": 6, "seed": 2, "workers": 2}
    pool.shutdown()
    result = run(loaded.world, loaded.policies, backend="inprocess", **kwargs)
    here = write_report(result, loaded, tmp_path / "here")
    warm = run(loaded.world, loaded.policies, backend="process", **kwargs)
    assert pool.warm_executor() is not None
    there = write_report(warm, loaded, tmp_path / "there")
    pool.shutdown()
    names = sorted(p.name for p in (here / "figures").glob("*.png"))
    assert names == sorted(p.name for p in (there / "figures").glob("*.png")) and len(names) == 5
    for name in names:
        assert (here / "figures" / name).read_bytes() == (there / "figures" / name).read_bytes()
    html = (there / "report.html").read_text()
    assert "could not be drawn" not in html and "incomplete" not in html
