"""Never lose results (DESIGN §6, STYLE "Failure injection"): once the simulation is done,
results.parquet, summary.csv and the resolved scenario are written before anything is drawn; a
figure or section that cannot be drawn says so in its place and the run exits non-zero with one
line; a replication's error stays recorded, in results.parquet and in the example timelines.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import sim.engine.replication
from rolloutsim.cli import main
from sim.report import write as report_module
from sim.report.write import REPORT_FILES, ReportIncomplete
from sim.runs.options import RunOptions
from sim.runs.sweep import sweep

ROOT = Path(__file__).resolve().parents[1]
SEED_PRACTICE = ROOT / "scenarios" / "seed-practice.yaml"
FLAGS = ["--replications", "4", "--backend", "inprocess", "--no-progress"]


def scenario(tmp_path: Path, horizon="1h", bad_only=False, canary_only=False) -> Path:
    """The seed practice with a few changes: the same world, seconds to run."""
    text = SEED_PRACTICE.read_text().replace("horizon: 6h", f"horizon: {horizon}")
    text = text.replace("file: policies/", f"file: {ROOT / 'scenarios' / 'policies'}/")
    if bad_only:
        text = text.replace("    - {name: good, probability: 0.8}\n", "")
        text = text.replace(
            "{name: fails-5pct, probability: 0.2,", "{name: fails-5pct, probability: 1,"
        )
    if canary_only:
        text = text.replace(f"  - file: {ROOT / 'scenarios' / 'policies'}/bluegreen.yaml\n", "")
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def run_cli(path: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["run", str(path), "-o", str(out), *FLAGS])
    return code, capsys.readouterr().err


def assert_results_written(out: Path, rows: int) -> str:
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert len(pd.read_parquet(out / "results.parquet")) == rows
    assert len(pd.read_csv(out / "summary.csv")) > 0
    assert not out.with_name(out.name + ".checkpoint").exists()
    return (out / "report.md").read_text()


def assert_one_line_error(code: int, err: str, out: Path) -> None:
    assert code in (1, 2)  # 2 until the command line maps ReportIncomplete to 1
    lines = [line for line in err.strip().splitlines() if "rolloutsim: warning:" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err  # the one error, after any warnings
    assert "results written" in lines[0] and str(out / "report.md") in lines[0]


@pytest.mark.parametrize(
    ("case", "changes", "rows"),
    [
        ("a horizon shorter than the pauses", {"horizon": "5m", "canary_only": True}, 2 * 4),
        ("every release rolled back", {"bad_only": True, "canary_only": True}, 4),
    ],
)
def test_no_completed_release_still_writes_everything_and_says_what_is_missing(
    tmp_path: Path, capsys, case, changes, rows
) -> None:
    out = tmp_path / "report"
    code, err = run_cli(scenario(tmp_path, **changes), out, capsys)
    assert_one_line_error(code, err, out)
    assert "Speed against safety" in err
    md = assert_results_written(out, rows)
    assert "**This report is incomplete.**" in md
    what = "the figure “Speed against safety” could not be drawn (no policy fully rolled out"
    assert f"Not shown: {what}" in md
    assert "## Verdict" in md and "**canary-20-first**" in md  # the rest is there
    pngs = {p.stem for p in (out / "figures").glob("*.png")}
    assert "pareto" not in pngs and {"blast-radius", "users-hurt"} <= pngs
    # and the folder is a report folder the next run may replace
    code, _ = run_cli(scenario(tmp_path, **changes), out, capsys)
    assert code in (1, 2) and (out / "results.parquet").is_file()


def test_an_error_in_replication_0_stays_recorded_and_the_timelines_pass_it_over(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    real = sim.engine.replication.Replication.run

    def flaky(self):
        if self.outcome.replication == 0:
            raise RuntimeError("boom in replication 0")
        return real(self)

    monkeypatch.setattr(sim.engine.replication.Replication, "run", flaky)
    out = tmp_path / "report"
    code, err = run_cli(scenario(tmp_path), out, capsys)
    assert code == 0, err
    md = assert_results_written(out, 2 * 2 * 4)
    frame = pd.read_parquet(out / "results.parquet")
    failed = frame[frame["error"] != ""]
    assert set(failed["replication"]) == {0} and len(failed) == 4
    assert failed["error"].str.contains("RuntimeError: boom in replication 0").all()
    assert "4 replications failed and are left out of every number" in md
    assert md.count("Replication #0 of fails-5pct failed (RuntimeError: boom in replication 0") == 2
    assert md.count("Shown: replication #1 of fails-5pct and #1 of good.") == 2  # the next ones
    assert {p.stem for p in (out / "figures").glob("*.png")} >= {"timeline-1", "timeline-2"}


def test_a_timeline_rerun_that_raises_is_named_in_its_place(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("rerun broke")

    monkeypatch.setattr(report_module, "_rerun", broken)
    out = tmp_path / "report"
    code, err = run_cli(scenario(tmp_path), out, capsys)
    assert_one_line_error(code, err, out)
    md = assert_results_written(out, 2 * 2 * 4)
    assert "Not shown: the figure “Example timeline: bluegreen” could not be drawn" in md
    assert "the rerun of fails-5pct #0 raised RuntimeError: rerun broke" in md
    assert {p.stem for p in (out / "figures").glob("*.png")} == {
        "blast-radius",
        "pareto",
        "users-hurt",
    }


def test_a_sweep_goes_on_past_a_cell_whose_report_is_incomplete(tmp_path: Path) -> None:
    path = scenario(tmp_path, canary_only=True)
    out = tmp_path / "sweep"
    options = RunOptions(replications=3, backend="inprocess")
    with pytest.raises(ReportIncomplete, match="1 part") as caught:
        sweep(path, {"world.horizon": ["5m", "1h"]}, options, out=out)
    table = caught.value.result
    assert set(table["world.horizon"]) == {"5m", "1h"}
    assert (out / "sweep.csv").is_file() and (out / "results.parquet").is_file()
    for cell in ("horizon=5m", "horizon=1h"):
        assert (out / "cells" / cell / "results.parquet").is_file()
