"""``sim.sweep`` and ``sim.RunOptions``: the sweep from Python is what ``rolloutsim sweep`` writes,
and every run option comes from the caller, else the scenario file, else ``DEFAULTS``."""

from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd
import pytest

import sim
from policies.errors import PolicyError
from rolloutsim.cli import main
from sim.runs.options import DEFAULTS, RunOptions, checkpoint_beside
from sim.runs.scenario import Scenario, load_scenario
from sim.runs.sweep import cells, parse_params, run_scenario, sweep_grid

ROOT = Path(__file__).resolve().parents[1]
SEED_PRACTICE = ROOT / "scenarios" / "seed-practice.yaml"
FAST = RunOptions(replications=4, backend="inprocess")


def small_scenario(tmp_path: Path, extra: str = "") -> Path:
    """The seed practice, shortened to an hour (seconds to run), with its policies found."""
    text = SEED_PRACTICE.read_text().replace("horizon: 6h", "horizon: 1h")
    text = text.replace("file: policies/", f"file: {ROOT / 'scenarios' / 'policies'}/")
    path = tmp_path / "seed.yaml"
    path.write_text(text + extra)
    return path


# --------------------------------------------------------------------------- the sweep


def test_the_sweep_from_python_is_what_the_command_line_writes(tmp_path: Path) -> None:
    scenario = small_scenario(tmp_path)
    cli = tmp_path / "cli"
    flags = ["--replications", "4", "--backend", "inprocess", "--no-progress", "-o", str(cli)]
    assert main(["sweep", str(scenario), "--param", "world.traffic.rate=100,400", *flags]) == 0

    out = tmp_path / "py"
    table = sim.sweep(scenario, {"world.traffic.rate": [100, 400]}, FAST, out=out)
    assert (out / "sweep.csv").read_bytes() == (cli / "sweep.csv").read_bytes()
    written = pd.read_csv(cli / "sweep.csv")
    pd.testing.assert_frame_equal(table, written)
    assert list(table.columns[:2]) == ["world.traffic.rate", "policy"]
    assert len(table) == 2 * 2  # cells x policies
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["rate=100", "rate=400"]
    for name in ("rate=100", "rate=400"):
        assert (out / "cells" / name / "report.html").is_file()
        assert not (out / "cells" / f"{name}.checkpoint").exists()  # removed once written
    ours, theirs = (
        pd.read_parquet(out / "results.parquet"),
        pd.read_parquet(cli / "results.parquet"),
    )
    cols = [c for c in ours.columns if c != "wall_time"]
    pd.testing.assert_frame_equal(ours[cols], theirs[cols])
    assert set(ours["world.traffic.rate"]) == {"100", "400"} and len(ours) == 2 * 2 * 2 * 4

    # without a folder nothing is written, and a loaded scenario or "PATH=V" strings do as well
    again = sim.sweep(load_scenario(scenario), ["world.traffic.rate=100,400"], FAST)
    pd.testing.assert_frame_equal(again, table)


def test_a_sweep_by_class_gives_each_release_class_and_the_mixture(tmp_path: Path) -> None:
    scenario = small_scenario(tmp_path)
    mixture = sim.sweep(scenario, {"world.traffic.rate": [100, 400]}, FAST)
    table = sim.sweep(scenario, {"world.traffic.rate": [100, 400]}, FAST, by_class=True)
    assert list(table.columns[:3]) == ["world.traffic.rate", "policy", "release_class"]
    own = run_scenario(load_scenario(scenario, {"world.traffic.rate": 400}), FAST).summary()
    rows = table[table["world.traffic.rate"] == 400].drop(columns="world.traffic.rate")
    pd.testing.assert_frame_equal(rows.reset_index(drop=True), own.reset_index(), check_dtype=False)
    kept = table[table["release_class"] == "mixture"].drop(columns="release_class")
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), mixture)


def test_the_scenario_sweep_section_and_params_make_the_grid(tmp_path: Path) -> None:
    loaded = load_scenario(small_scenario(tmp_path, "sweep:\n  world.traffic.rate: [100, 400]\n"))
    assert sweep_grid(loaded) == {"world.traffic.rate": [100, 400]}
    grid = sweep_grid(loaded, {"world.traffic.rate": [50], "seed": (1, 2)})
    assert grid == {"world.traffic.rate": [50], "seed": [1, 2]}  # params win on a shared path
    assert cells(grid) == [
        {"world.traffic.rate": 50, "seed": 1},
        {"world.traffic.rate": 50, "seed": 2},
    ]
    assert parse_params(["a.b=1h, 2", "c=x"]) == {"a.b": ["1h", 2], "c": ["x"]}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (None, "seed.yaml: nothing to sweep"),
        (["no-equals-sign"], "use PATH=VALUE"),
        ({"world.traffic.rate": []}, "sweep: world.traffic.rate: no values to sweep"),
        ({"world.trafic.rate": [1]}, "world.trafic does not exist"),
    ],
)
def test_a_bad_grid_is_one_line(tmp_path: Path, params, message) -> None:
    with pytest.raises(PolicyError, match=message) as err:
        sim.sweep(small_scenario(tmp_path), params, FAST)
    assert "\n" not in str(err.value)


def test_the_sweep_section_is_checked_when_the_scenario_loads(tmp_path: Path, capsys) -> None:
    """`validate` says what the sweep would refuse: every path, every value, before any run."""
    section = "sweep:\n  world.trafic.rate: [1, 2]\n  world.traffic.rate: [10, -5]\n  x: []\n"
    path = small_scenario(tmp_path, section)
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"rolloutsim: error: {path}: sweep: world.trafic.rate: world.trafic does not exist",
        f"rolloutsim: error: {path}: sweep: world.traffic.rate: the value -5 makes"
        " world.traffic.rate: constant.rate: Input should be greater than or equal to 0",
        f"rolloutsim: error: {path}: sweep: x: no values to sweep",
    ]
    assert main(["validate", str(small_scenario(tmp_path, "sweep: {seed: [1, 2]}\n"))]) == 0


# --------------------------------------------------------------------------- the options


def test_options_come_from_the_caller_then_the_file_then_the_defaults(tmp_path: Path) -> None:
    loaded = load_scenario(small_scenario(tmp_path))  # the file: replications 100, seed 1
    assert RunOptions().resolve(loaded) == RunOptions(
        replications=100, seed=1, backend="process", progress=False, resume=False
    )
    given = RunOptions(seed=9, backend="inprocess", workers=2, progress=True)
    assert given.resolve(loaded) == RunOptions(
        replications=100, seed=9, backend="inprocess", workers=2, progress=True, resume=False
    )
    assert RunOptions().resolve() == DEFAULTS
    assert RunOptions(replications={"good": 1}).resolve(
        RunOptions(replications=3)
    ).replications == {"good": 1}
    # a file silent on an option gets the default, the same one sim.run and Scenario use
    bare = Scenario.model_validate(
        {"name": "x", "world": {"traffic": {"rate": 1}}, "policies": [{"kind": "BlueGreen"}]}
    )
    assert RunOptions().resolve(bare) == DEFAULTS
    defaults = inspect.signature(sim.run).parameters
    assert {k: defaults[k].default for k in DEFAULTS.run_kwargs()} == DEFAULTS.run_kwargs()


def test_a_sweep_cell_sets_options_the_caller_leaves_open(tmp_path: Path) -> None:
    """A cell is a scenario file: a swept ``seed`` is the file's seed, unless the caller gives
    one. (``sweep.csv`` and the sweep's ``results.parquet`` show the cell's value; each cell's own
    report shows the seed that ran.)"""
    scenario = small_scenario(tmp_path)
    for seed, ran in ((None, {"seed=2": 2, "seed=3": 3}), (5, {"seed=2": 5, "seed=3": 5})):
        out = tmp_path / f"out-{seed}"
        options = RunOptions(replications=1, seed=seed, backend="inprocess")
        table = sim.sweep(scenario, {"seed": [2, 3]}, options, out)
        assert list(table["seed"]) == [2, 2, 3, 3]
        for cell, expected in ran.items():
            frame = pd.read_parquet(out / "cells" / cell / "results.parquet")
            assert set(frame["seed"]) == {expected}


def test_a_checkpoint_is_kept_only_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "report"
    stale = tmp_path / "report.checkpoint"
    stale.mkdir()
    assert checkpoint_beside(out, resume=True) == stale and stale.is_dir()
    assert checkpoint_beside(out, resume=False) == stale and not stale.exists()


def test_tune_takes_the_file_options_under_the_callers(tmp_path: Path) -> None:
    from sim.tune.search import load_tune_scenario

    tuned = load_tune_scenario(ROOT / "scenarios" / "tune-canary.yaml")
    assert tuned.options.resolve() == RunOptions(
        replications=200, seed=7, backend="process", progress=False, resume=False
    )
    assert RunOptions(seed=1).resolve(tuned.options).seed == 1


def test_options_show_what_they_give() -> None:
    assert repr(RunOptions(seed=3, backend="dask")) == "RunOptions(seed=3, backend='dask')"
    assert repr(RunOptions()) == "RunOptions()"
