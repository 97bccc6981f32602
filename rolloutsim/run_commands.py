"""``run`` and ``tune``, and what every long job shares: its options and its output folder."""

from __future__ import annotations

import argparse
import sys

from rolloutsim.usage import usage

__all__ = [
    "add_job_options",
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
    add_job_options(p, "run")
    p.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE)


def add_job_options(p: argparse.ArgumentParser, job: str) -> None:
    """What every long job takes: --resume or --overwrite for an earlier output, and progress."""
    earlier = p.add_mutually_exclusive_group()
    earlier.add_argument(
        "--resume",
        action="store_true",
        help=f"continue an interrupted {job} from its checkpoint (nothing finished is redone)",
    )
    earlier.add_argument(
        "--overwrite", action="store_true", help=f"replace an earlier {job}'s output: start over"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr: a bar on a terminal, else a line every 5 %% of the work (at"
        " most one every 5 s) with the rate and the time left (default: on)",
    )


_ALLOW_LARGE = "run a plan beyond the work and memory budget (sim/runs/budget.py)"


def run_options(args: argparse.Namespace):
    """The run options given on the command line (sim/runs/options.py puts them over the
    scenario file's); an option left out is None, and progress shows unless --no-progress (a
    bar on a terminal, lines in a log)."""
    from sim.runs.budget import Budget
    from sim.runs.options import RunOptions

    replications = getattr(args, "replications", None)  # tune sizes its own stages
    if args.workers is not None and args.workers < 1:
        raise usage(f"-j: {args.workers} must be >= 1")
    if replications is not None and replications < 1:
        raise usage(f"--replications: {replications} must be >= 1")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise usage(f"--seed: {args.seed} must be a whole number in [0, 2**63)")
    return RunOptions(
        replications=replications,
        seed=args.seed,
        backend=args.backend,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=args.progress is not False,
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
    refuse_earlier(args, folder, kind)
    args.resumable = folder
    return folder


def refuse_earlier(args: argparse.Namespace, folder, kind: str) -> None:
    """Refuse an output folder an earlier ``kind`` of run left (its output, or the checkpoint
    of an interrupted one) unless --resume or --overwrite says what to do with it."""
    from sim.runs.files import OutputRefused, earlier_output, output_lock

    if getattr(args, "resume", False) or getattr(args, "overwrite", False):
        return
    what = earlier_output(folder, kind)
    if what is None:
        return
    with output_lock(folder):  # a run writing it now is named first: wait for it, not resume
        pass
    raise OutputRefused(
        f"{what}: add --resume to continue it (nothing finished is redone) or --overwrite to"
        " start over",
        file=str(folder),
    )


def run_command(args: argparse.Namespace) -> int:
    from sim.runs.scenario import load_scenario
    from sim.runs.sweep import run_scenario

    options = run_options(args)
    loaded = say_notes(load_scenario(args.scenario))
    folder = output_folder(args, loaded, "report", "")
    if not (args.resume and _finished(loaded, options, folder)):
        say_notes(run_scenario(loaded, options, folder))
    verdict = (folder / "report.md").read_text().split("\n## ", 1)[0]
    print(verdict.strip())
    print(f"\nreport: {folder / 'report.html'}")
    return 0


def _finished(loaded, options, folder) -> bool:
    """Whether --resume finds this very run finished in ``folder`` (no checkpoint beside it
    left to continue): then nothing is simulated and the verdict is printed again. A finished
    report of other inputs is refused: resuming it would replace it."""
    from sim.runs.files import OutputRefused
    from sim.runs.options import checkpoint_beside
    from sim.runs.sweep import differences, finished_cell

    if checkpoint_beside(folder, True).exists():
        return False  # an interrupted rerun: the checkpoint continues it
    opts = options.resolve(loaded)
    if finished_cell(loaded, opts, folder) is not None:
        note = f"rolloutsim: note: {folder} holds this run finished: nothing to simulate"
        print(note, file=sys.stderr)
        return True
    differ = differences(loaded, opts, folder)
    if differ:
        raise OutputRefused(
            f"holds a finished report of other inputs ({', '.join(differ)} differ): --resume"
            " continues only the same run; give --overwrite instead to start over",
            file=str(folder),
        )
    return False  # no whole report of this run there (damaged, another version): run it


def say_notes(loaded_or_result):
    """Print what a scenario's reading or a run noted (warnings, overrides) on stderr."""
    for note in getattr(loaded_or_result, "notes", ()):
        print(f"rolloutsim: {note}", file=sys.stderr)
    return loaded_or_result


def tune_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim.runs.files import check_name, check_output, folder_for
    from sim.tune.report import tune_scenario
    from sim.tune.search import load_tune_scenario

    options = run_options(args)
    scenario = load_tune_scenario(args.scenario)
    check_name(scenario.name, "name", file=str(scenario.path))
    if args.output:
        folder = Path(args.output)
    else:
        folder = folder_for("reports", scenario.name, "name", "-tune")
    check_output(folder, "tune")
    refuse_earlier(args, folder, "tune")
    args.resumable = folder
    best = _tune_finished(args, scenario, folder) if args.resume else None
    if best is None:
        folder, result = tune_scenario(
            scenario,
            folder,
            exportable_to=args.exportable_to,
            backend=options.backend,
            workers=options.workers,
            scheduler=options.scheduler,
            seed=options.seed,
            resume=options.resume,
            progress=options.progress,
        )
        best = result.recommended.name if result.recommended is not None else ""
    print(f"recommended: {best}" if best else "no candidate meets the constraints")
    print(f"tune report: {folder}")
    return 0


def _tune_finished(args: argparse.Namespace, scenario, folder) -> str | None:
    """The recommendation (or "" for none) when --resume finds this very tune finished in
    ``folder`` (no checkpoint beside it left to continue): then nothing is simulated."""
    from sim.runs.options import checkpoint_beside
    from sim.tune.report import finished_tune

    if checkpoint_beside(folder, True).exists():
        return None
    facts = finished_tune(folder, scenario, seed=args.seed, exportable_to=args.exportable_to)
    if facts is None:
        return None
    print(
        f"rolloutsim: note: {folder} holds this tune finished: nothing to simulate", file=sys.stderr
    )
    return facts.get("recommended") or ""
