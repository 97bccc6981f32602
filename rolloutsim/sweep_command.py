"""``sweep``: a scenario over a grid of parameters, with one report across its cells."""

from __future__ import annotations

import argparse
import sys

from rolloutsim.run_commands import output_folder, run_options, say_notes

__all__ = ["sweep_command"]


def sweep_command(args: argparse.Namespace) -> int:
    from sim.runs.scenario import load_scenario
    from sim.runs.sweep import sweep

    options = run_options(args)
    loaded = say_notes(load_scenario(args.scenario))
    folder = output_folder(args, loaded, "sweep", "-sweep")

    def on_cell(i: int, n: int, name: str, reused: bool) -> None:
        how = "read back (finished before)" if reused else "done"
        print(f"rolloutsim: cell {i + 1}/{n} {name}: {how}", file=sys.stderr)

    sweep(loaded, args.param, options, folder, on_cell=on_cell)
    verdict = (folder / "report.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    print(verdict.strip())
    print(f"\nreport: {folder / 'report.html'}")
    print(f"sweep: {folder / 'sweep.csv'} (a report per cell in {folder / 'cells'})")
    return 0
