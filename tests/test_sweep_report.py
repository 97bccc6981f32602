"""A sweep's own report (DESIGN §6): every metric against the swept values, a verdict that says
where the answer changes (with the paired differences at both neighbouring cells), a warning
for a swept path that changes nothing, links to each cell's report; and common random numbers
across cells, so a cell pair differing only in what a release class never meets gives that
class identical rows."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from test_sweep import small_scenario

import sim
from sim.report.sweep_facts import _crossing
from sim.report.sweep_report import write_sweep_report
from sim.runs.options import RunOptions
from sim.runs.scenario import load_scenario
from sim.runs.sweep import SweptCell, read_result

FAST = RunOptions(replications=4, backend="inprocess")
APS, RATE = "policies[1].autoPromotionSeconds", "world.releases[1].fault.errorRate"
CROSS = """
name: cross
world:
  horizon: 2h
  traffic: {rate: 200}
  users: {count: 5000}
  baseline: {errorRate: 0.001}
  releases:
    - {name: good, probability: 0.8}
    - {name: bad, probability: 0.2, fault: {errorRate: 0.05}}
  platform: {replicas: 4, podStartup: {uniform: [5s, 10s]}}
  operators: {slo: {target: 99.9%}, acknowledgement: 5m, humanDetection: {exponential: {mean: 2h}}}
policies:
  - kind: Canary
    name: canary
    steps: [{setWeight: 25}, {pause: {duration: 2m}}, {setWeight: 50}, {pause: {duration: 2m}}]
  - {kind: BlueGreen, name: bluegreen, autoPromotionSeconds: 30}
seed: 3
"""
"""A canary of about 4.5 minutes against a blue-green switch promoted after
``autoPromotionSeconds``: blue-green is the faster at 30 s, the canary at 600 s."""


@pytest.fixture(scope="module")
def two_paths(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("two-paths")
    scenario = root / "cross.yaml"
    scenario.write_text(CROSS)
    out = root / "sweep"
    table = sim.sweep(scenario, {APS: [30, 600], RATE: [0.002, 0.05]}, FAST, out)
    return scenario, out, table


def _rows(frame: pd.DataFrame, aps: str, rate: str, **match) -> pd.DataFrame:
    keep = (frame[APS] == aps) & (frame[RATE] == rate)
    for column, value in match.items():
        keep &= frame[column] == value
    return frame[keep].drop(columns=[APS, RATE]).reset_index(drop=True)


def test_cells_share_their_random_numbers(two_paths) -> None:
    _, out, _ = two_paths
    frame = pd.read_parquet(out / "results.parquet")
    # the bad class's error rate never touches a good release: its rows are the same, number
    # for number, under every policy
    for aps in ("30", "600"):
        good = [_rows(frame, aps, rate, release_class="good") for rate in ("0.002", "0.05")]
        assert len(good[0]) == 2 * 4
        pd.testing.assert_frame_equal(*good)
        bad = [_rows(frame, aps, rate, release_class="bad") for rate in ("0.002", "0.05")]
        assert not bad[0]["excess_bad_requests"].equals(bad[1]["excess_bad_requests"])
    # blue-green's promotion delay never touches the canary: its rows are the same too
    for rate in ("0.002", "0.05"):
        canary = [_rows(frame, aps, rate, policy="canary") for aps in ("30", "600")]
        pd.testing.assert_frame_equal(*canary)


def test_the_sweep_report_says_where_the_answer_changes(two_paths) -> None:
    _, out, table = two_paths
    assert set(table.columns[:3]) == {APS, RATE, "policy"} and len(table) == 4 * 2
    md = (out / "report.md").read_text()
    verdict = md.split("\n## ", 1)[0]
    assert "Verdict across the cells" in verdict and "Warning" not in verdict
    # the fastest changes between the two promotion delays, the same at every error rate, and
    # both neighbouring cells' paired differences are significant
    assert (
        "Between autoPromotionSeconds = 30 and 600 (at every errorRate) it changes from "
        "**bluegreen** to **canary**" in verdict
    )
    assert "so the crossover lies between them" in verdict
    crossing = re.search(r"crosses zero near autoPromotionSeconds ≈ (\d+)", verdict)
    assert crossing and 30 < int(crossing.group(1)) < 600
    # a 0.2 % fault is caught by no gate or alert; a 5 % one by the canary's alert
    assert "**No policy catches most bad releases in 2 of 4 cells" in verdict
    assert (
        "Whether any policy catches the bug changes between errorRate = 0.002 and 0.05"
        " (at every autoPromotionSeconds)" in (verdict)
    )


def test_the_sweep_report_has_its_figures_tables_and_links(two_paths) -> None:
    _, out, _ = two_paths
    assert {p.stem for p in (out / "figures").glob("*.png")} == {
        "sweep-winners",
        "sweep-excess-bad-requests",
        "sweep-users-hurt",
        "sweep-rollout-duration",
        "sweep-false-rollback",
    }
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 5
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    links = re.findall(r'<a href="(cells/[^"]+/report\.html)">', page)
    assert len(links) == 4
    for link in links:
        assert (out / link).is_file()
    md = (out / "report.md").read_text()
    assert (
        "[autoPromotionSeconds=30,errorRate=0.002](cells/autoPromotionSeconds=30,errorRate=0.002/report.md)"
        in md
    )
    for heading in (
        "## Cells",
        "### Excess bad requests per bad release",
        "### Time to full rollout",
    ):
        assert heading in md


def test_a_path_that_changes_nothing_is_a_warning(tmp_path: Path) -> None:
    """The README's own example: a constant rate has no start time that matters."""
    scenario = small_scenario(tmp_path)
    out = tmp_path / "sweep"
    sim.sweep(
        scenario,
        {"world.traffic.startAt": ["2h", "14h"]},
        RunOptions(replications=2, backend="inprocess"),
        out,
    )
    verdict = (out / "report.md").read_text().split("\n## ", 1)[0]
    assert "**Warning: world.traffic.startAt changes nothing in the simulated world.**" in verdict
    assert "the scenario differs, but nothing it changes reaches the simulation" in verdict
    assert "Every cell is the same simulation" in verdict


def test_more_than_two_paths_are_tables(two_paths, tmp_path: Path) -> None:
    """Three paths give no figure; cells that are the very same run warn on every path."""
    scenario, out, _ = two_paths
    result = read_result(
        out / "cells" / "autoPromotionSeconds=30,errorRate=0.05" / "results.parquet"
    )
    grid = {"a.x": [1, 2], "a.y": ["u", "v"], "a.z": [0.5, 1.5]}
    swept = [
        SweptCell({"a.x": x, "a.y": y, "a.z": z}, f"x{x}-{y}-{z}", result)
        for x in grid["a.x"]
        for y in grid["a.y"]
        for z in grid["a.z"]
    ]
    target = tmp_path / "three"
    target.mkdir()
    assert write_sweep_report(load_scenario(scenario), grid, swept, target) == []
    md = (target / "report.md").read_text()
    assert "With 3 swept paths the tables above are the figures" in md
    assert md.count("changes nothing in the simulated world") == 3
    assert "every value resolves to the same scenario" in md
    assert not list((target / "figures").glob("*.png"))


def test_the_crossover_is_interpolated_between_the_cells() -> None:
    assert _crossing(0.0, 10.0, 3.0, -1.0) == pytest.approx(7.5)
    assert _crossing(0.0, 10.0, 3.0, 1.0) != _crossing(0.0, 10.0, 3.0, 1.0)  # no sign change
