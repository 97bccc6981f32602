"""``sweep``: a scenario over a grid of parameters."""

from __future__ import annotations

import argparse

from rolloutsim.run_commands import output_folder, run_options, say_notes

__all__ = ["sweep_command"]


def sweep_command(args: argparse.Namespace) -> int:
    from sim.runs.scenario import load_scenario
    from sim.runs.sweep import sweep

    options = run_options(args)
    loaded = say_notes(load_scenario(args.scenario))
    folder = output_folder(args, loaded, "sweep", "-sweep")
    sweep(loaded, args.param, options, folder)
    print(f"sweep: {folder / 'sweep.csv'} (a report per cell in {folder / 'cells'})")
    return 0
