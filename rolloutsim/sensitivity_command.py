"""``sensitivity``: would the verdict change if an assumption is wrong? And ``run
--sensitivity``: the same analysis as a section of the run's report."""

from __future__ import annotations

import argparse

from rolloutsim.run_commands import (
    add_run_options,
    output_folder,
    run_command,
    run_options,
    say_notes,
)
from rolloutsim.usage import usage

__all__ = [
    "add_run_sensitivity",
    "add_sensitivity_parser",
    "run_with_sensitivity_command",
    "sensitivity_command",
]

_NAMES = (
    "faultSeverity, traffic, podStartup, routerDelay, humanDetection, acknowledgement, gateNoise"
)


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="NAME=LOW,HIGH",
        help=f"the factors to vary an assumption over (repeatable; {_NAMES}); over the"
        " scenario's sensitivity: section",
    )
    p.add_argument(
        "--skip", action="append", default=[], metavar="NAME", help="leave an assumption out"
    )
    p.add_argument(
        "--bisect", type=int, default=None, help="extra runs to locate each flip (default 4)"
    )


def add_sensitivity_parser(sub) -> None:
    """The ``sensitivity`` subcommand (rolloutsim/cli.py calls this)."""
    p = sub.add_parser(
        "sensitivity",
        help="vary each key assumption of a scenario one at a time: what flips the verdict?",
    )
    p.add_argument("scenario", help="a scenario YAML file (e.g. scenarios/seed-practice.yaml)")
    _add_analysis_options(p)
    add_run_options(p)
    p.set_defaults(func=sensitivity_command)


def add_run_sensitivity(p: argparse.ArgumentParser) -> None:
    """``run --sensitivity`` (and its --range/--skip/--bisect) on the ``run`` parser."""
    p.add_argument(
        "--sensitivity",
        action="store_true",
        help="add a Sensitivity section to the report: each key assumption varied alone",
    )
    _add_analysis_options(p)
    p.set_defaults(func=run_with_sensitivity_command)


def _analysis(args: argparse.Namespace) -> dict:
    ranges = {}
    for item in args.range:
        name, sep, values = item.partition("=")
        parts = values.split(",")
        if not sep or len(parts) != 2:
            raise usage(f"--range {item!r}: use NAME=LOW,HIGH (e.g. traffic=0.5,2)")
        try:
            ranges[name.strip()] = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise usage(f"--range {item!r}: LOW and HIGH are numbers (factors)") from None
    return {"ranges": ranges, "skip": tuple(args.skip), "bisect": args.bisect}


def sensitivity_command(args: argparse.Namespace) -> int:
    from sim.report.sensitivity_report import sensitivity_words as words
    from sim.runs.scenario import load_scenario
    from sim.runs.sensitivity import sensitivity

    options = run_options(args)
    analysis = _analysis(args)
    loaded = say_notes(load_scenario(args.scenario))
    folder = output_folder(args, loaded, "sensitivity", "-sensitivity")
    result = sensitivity(loaded, options, folder, **analysis)
    say_notes(result)
    print("\n\n".join(words(result)))
    print(f"\nsensitivity report: {folder / 'report.html'}")
    return 0


def run_with_sensitivity_command(args: argparse.Namespace) -> int:
    """``run``, with the Sensitivity section when ``--sensitivity`` is given."""
    if not args.sensitivity:
        if args.range or args.skip or args.bisect is not None:
            raise usage("--range, --skip and --bisect go with --sensitivity")
        return run_command(args)
    from sim.runs.scenario import load_scenario
    from sim.runs.sensitivity import run_with_sensitivity

    options = run_options(args)
    analysis = _analysis(args)
    loaded = say_notes(load_scenario(args.scenario))
    folder = output_folder(args, loaded, "report", "")
    result, _ = run_with_sensitivity(loaded, options, folder, **analysis)
    say_notes(result)
    verdict = (folder / "report.md").read_text().split("\n## ", 1)[0]
    print(verdict.strip())
    print(f"\nreport: {folder / 'report.html'} (with a Sensitivity section)")
    return 0
