"""A sweep's ``--resume`` redoes no finished cell (DESIGN §6): a cell whose folder holds a whole
report of this very cell is read back, an interrupted sweep resumes with identical numbers, and
a cell made from anything else (another seed, other replications, a damaged file) runs again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_sweep import small_scenario

import sim
import sim.runs.runner as runner
from rolloutsim.cli import main
from sim.runs.options import RunOptions
from sim.runs.scenario import load_scenario
from sim.runs.sweep import finished_cell

GRID = {"world.traffic.rate": [100, 200, 400]}
FAST = RunOptions(replications=4, backend="inprocess")
RESUME = RunOptions(replications=4, backend="inprocess", resume=True)
CELLS = ("rate=100", "rate=200", "rate=400")
REAL_RUN = runner.run


class Counted:
    """``sim.runs.runner.run`` that counts its calls and raises on the ``fail_at``-th one."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("interrupted in the middle of a cell")
        return REAL_RUN(*args, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    """An uninterrupted 3-cell sweep: its scenario, its folder and its table."""
    root = tmp_path_factory.mktemp("reference")
    scenario = small_scenario(root)
    out = root / "sweep"
    return scenario, out, sim.sweep(scenario, GRID, FAST, out)


def _same_numbers(out: Path, reference_out: Path) -> None:
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "results.parquet"), pd.read_parquet(reference_out / "results.parquet")
    )
    assert (out / "sweep.csv").read_bytes() == (reference_out / "sweep.csv").read_bytes()


def test_an_interrupted_sweep_resumes_with_identical_numbers(
    tmp_path: Path, monkeypatch, reference
) -> None:
    scenario, reference_out, table = reference
    out = tmp_path / "sweep"
    interrupted = Counted(fail_at=2)  # the first cell finishes, the second is cut short
    monkeypatch.setattr(runner, "run", interrupted)
    with pytest.raises(RuntimeError, match="interrupted"):
        sim.sweep(scenario, GRID, FAST, out)
    assert (out / "cells" / "rate=100" / "report.html").is_file()
    assert not (out / "cells" / "rate=200").exists()

    resumed = Counted()
    monkeypatch.setattr(runner, "run", resumed)
    done: list[tuple[str, bool]] = []
    again = sim.sweep(
        scenario, GRID, RESUME, out, on_cell=lambda i, n, name, reused: done.append((name, reused))
    )
    assert resumed.calls == 2  # the finished cell was read back, not simulated
    assert done == [("rate=100", True), ("rate=200", False), ("rate=400", False)]
    pd.testing.assert_frame_equal(again, table)
    _same_numbers(out, reference_out)
    assert "1 of 3 cells were read back from an earlier run" in (out / "report.md").read_text()


def test_a_second_resume_simulates_nothing(tmp_path: Path, monkeypatch, reference, capsys) -> None:
    scenario, reference_out, _ = reference
    out = shutil.copytree(reference_out, tmp_path / "sweep")
    args = ["--replications", "4", "--backend", "inprocess", "--no-progress", "-o", str(out)]
    never = Counted(fail_at=1)  # any simulation at all fails the test
    monkeypatch.setattr(runner, "run", never)
    assert (
        main(
            ["sweep", str(scenario), "--param", "world.traffic.rate=100,200,400", *args, "--resume"]
        )
        == 0
    )
    assert never.calls == 0
    printed = capsys.readouterr()
    assert "read back (finished before)" in printed.err and "cell 3/3 rate=400" in printed.err
    assert "Verdict across the cells" in printed.out
    assert f"report: {out / 'report.html'}" in printed.out
    _same_numbers(out, reference_out)


def test_a_damaged_or_different_cell_runs_again(tmp_path: Path, monkeypatch, reference) -> None:
    scenario, reference_out, table = reference
    out = shutil.copytree(reference_out, tmp_path / "sweep")
    (out / "cells" / "rate=200" / "results.parquet").write_bytes(b"not a parquet file")
    (out / "cells" / "rate=400" / "report.md").unlink()
    counted = Counted()
    monkeypatch.setattr(runner, "run", counted)
    pd.testing.assert_frame_equal(sim.sweep(scenario, GRID, RESUME, out), table)
    assert counted.calls == 2  # the damaged cell and the one missing a report file
    _same_numbers(out, reference_out)


def test_only_a_report_of_this_very_cell_is_read_back(reference) -> None:
    """The digest of world, policies and seed, the replications and the version must match."""
    scenario, out, _ = reference
    cell_dir = out / "cells" / "rate=200"
    loaded = load_scenario(scenario, {"world.traffic.rate": 200})
    back = finished_cell(loaded, FAST.resolve(loaded), cell_dir)
    assert back is not None and back.replications == {"good": 4, "fails-5pct": 4}
    pd.testing.assert_frame_equal(back.frame, pd.read_parquet(cell_dir / "results.parquet"))
    for other in (
        RunOptions(replications=4, seed=2),  # another seed
        RunOptions(replications=3),  # other replications
        RunOptions(replications={"good": 4, "fails-5pct": 5}),
    ):
        assert finished_cell(loaded, other.resolve(loaded), cell_dir) is None
    elsewhere = load_scenario(scenario, {"world.traffic.rate": 400})  # another cell's world
    assert finished_cell(elsewhere, FAST.resolve(elsewhere), cell_dir) is None


def test_a_cell_whose_report_was_incomplete_gets_it_again_without_a_simulation(
    tmp_path: Path, monkeypatch, reference
) -> None:
    scenario, reference_out, _ = reference
    out = shutil.copytree(reference_out, tmp_path / "sweep")
    md = out / "cells" / "rate=100" / "report.md"
    md.write_text("**This report is incomplete.** Not drawn: a figure.\n")
    never = Counted(fail_at=1)
    monkeypatch.setattr(runner, "run", never)
    sim.sweep(scenario, GRID, RESUME, out)
    assert never.calls == 0
    assert "This report is incomplete" not in md.read_text()
    assert "## Verdict" in md.read_text()
    _same_numbers(out, reference_out)
