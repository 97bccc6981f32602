"""``run`` and ``tune``, and what every long job shares: its options and its output folder."""

from __future__ import annotations

import argparse
import sys

from rolloutsim.usage import usage

__all__ = [
    "add_run_options",
    "output_folder",
    "run_command",
    "run_options",
    "say_notes",
    "tune_command",
]


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="the report folder (default: reports/<scenario>)")
    p.add_argument("-j", "--workers", type=int, default=None, help="worker processes")
    p.add_argument("--backend", choices=["inprocess", "process", "dask"], default=None)
    p.add_argument("--scheduler", default=None, help="a Dask scheduler address (--backend dask)")
    p.add_argument("--replications", type=int, default=None, help="per release class")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE)


_ALLOW_LARGE = "run a plan beyond the work and memory budget (sim/runs/budget.py)"


def run_options(args: argparse.Namespace):
    """The run options given on the command line (sim/runs/options.py puts them over the
    scenario file's); an option left out is None, and progress shows on a terminal."""
    from sim.runs.budget import Budget
    from sim.runs.options import RunOptions

    replications = getattr(args, "replications", None)  # tune sizes its own stages
    if args.workers is not None and args.workers < 1:
        raise usage(f"-j: {args.workers} must be >= 1")
    if replications is not None and replications < 1:
        raise usage(f"--replications: {replications} must be >= 1")
    return RunOptions(
        replications=replications,
        seed=args.seed,
        backend=args.backend,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        resume=args.resume,
        budget=Budget.unlimited() if getattr(args, "allow_large", False) else None,
    )


def output_folder(args: argparse.Namespace, loaded, kind: str, suffix: str):
    """The output folder, checked before any work: names are Kubernetes names (the default is
    reports/<name><suffix>), the folder is new, empty or an earlier one of ``kind``, writable."""
    from pathlib import Path

    from sim.runs.files import check_output, folder_for
    from sim.runs.sweep import check_names

    check_names(loaded)
    name = loaded.scenario.name
    folder = Path(args.output) if args.output else folder_for("reports", name, "name", suffix)
    check_output(folder, kind)
    args.resumable = folder
    return folder


def run_command(args: argparse.Namespace) -> int:
    from sim.runs.scenario import load_scenario
    from sim.runs.sweep import run_scenario

    options = run_options(args)
    loaded = say_notes(load_scenario(args.scenario))
    folder = output_folder(args, loaded, "report", "")
    say_notes(run_scenario(loaded, options, folder))
    verdict = (folder / "report.md").read_text().split("\n## ", 1)[0]
    print(verdict.strip())
    print(f"\nreport: {folder / 'report.html'}")
    return 0


def say_notes(loaded_or_result):
    """Print what a scenario's reading or a run noted (warnings, overrides) on stderr."""
    for note in getattr(loaded_or_result, "notes", ()):
        print(f"rolloutsim: {note}", file=sys.stderr)
    return loaded_or_result


def tune_command(args: argparse.Namespace) -> int:
    from sim.tune.report import tune_scenario

    options = run_options(args)
    args.resumable = args.output
    folder, result = tune_scenario(
        args.scenario,
        args.output,
        exportable_to=args.exportable_to,
        backend=options.backend,
        workers=options.workers,
        scheduler=options.scheduler,
        seed=options.seed,
        resume=options.resume,
        progress=options.progress,
    )
    best = result.recommended
    print(f"recommended: {best.name}" if best is not None else "no candidate meets the constraints")
    print(f"tune report: {folder}")
    return 0
