"""``rolloutsim``: explain, validate and (as they land) run, export and tune release policies.

Heavy libraries are imported only inside the subcommand that needs them, so ``--help`` is
instant. Bad input exits 2 with one line naming the file, the field and the rule.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Sequence

from rolloutsim import __version__
from rolloutsim.manifest_commands import export_command, import_command
from rolloutsim.usage import UsageError as _UsageError
from rolloutsim.usage import usage as _usage

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from policies.exporters import EXECUTORS  # the exporter registry: stdlib only at import

    parser = argparse.ArgumentParser(
        prog="rolloutsim",
        description="Compare release policies by blast radius before adopting one.",
    )
    parser.add_argument("--version", action="version", version=f"rolloutsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "explain",
        help="show a policy's steps, gates, pods and real traffic share on N replicas",
    )
    p.add_argument("policy", help="a policy YAML file (e.g. scenarios/policies/canary.yaml)")
    p.add_argument(
        "--replicas",
        "-n",
        type=int,
        default=None,
        help="pods of the service (default: the policy's replicas, else 10)",
    )
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=_explain)

    p = sub.add_parser("run", help="run every policy of a scenario and write its report folder")
    p.add_argument("scenario", help="a scenario YAML file (e.g. scenarios/seed-practice.yaml)")
    _run_options(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("sweep", help="run a scenario over a grid of parameters")
    p.add_argument("scenario")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="PATH=V1,V2",
        help="a dotted path of the scenario and its values (repeatable), e.g. "
        "world.traffic.startAt=2h,14h; adds to the scenario's own sweep: section",
    )
    _run_options(p)
    p.set_defaults(func=_sweep)

    p = sub.add_parser(
        "tune", help="search a scenario's tune: space for the best policy under its constraints"
    )
    p.add_argument(
        "scenario", help="a scenario with a tune: section (e.g. scenarios/tune-canary.yaml)"
    )
    p.add_argument(
        "--exportable-to",
        choices=EXECUTORS,
        help="search only policies this executor can express",
    )
    p.add_argument("-o", "--output", help="the output folder (default: reports/<scenario>-tune)")
    p.add_argument("-j", "--workers", type=int, default=None)
    p.add_argument("--backend", choices=["inprocess", "process", "dask"], default=None)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue an interrupted search")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.set_defaults(func=_tune)

    p = sub.add_parser("export", help="a policy as the live executor's manifests")
    p.add_argument("policy", help="a policy YAML file")
    p.add_argument("--to", required=True, choices=[*EXECUTORS, "all"])
    p.add_argument("-o", "--output", help="a folder for the files (default: print YAML)")
    p.add_argument("--service", default=None, help="service name (default: the policy's name)")
    p.add_argument("--namespace", default=None, help="default: default")
    p.add_argument("--replicas", "-n", type=int, default=None)
    p.add_argument("--image", default=None, help="the new version's container image")
    p.add_argument(
        "--onto",
        nargs="+",
        metavar="MANIFEST",
        help="the team's own files (a Rollout or Canary and its templates): write them back"
        " with only the policy's fields changed, comments and key order kept",
    )
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="METRIC=measure:version[:quantile][:unit]",
        help="with --onto: the mapping the manifests' import needed (repeatable)",
    )
    p.add_argument("--name", help="with --onto: the Rollout or Canary to write, among several")
    p.set_defaults(func=export_command)

    p = sub.add_parser("import", help="an Argo Rollout or Flagger Canary manifest as a policy")
    p.add_argument("manifest", nargs="+", help="YAML files (a Rollout and its AnalysisTemplates)")
    p.add_argument("-o", "--output", help="write the policy YAML here (default: print it)")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="METRIC=measure:version[:quantile][:unit]",
        help="how to simulate a metric whose query is not a recognised form (repeatable)",
    )
    p.add_argument(
        "--name",
        metavar="NAME",
        help="the Rollout or Canary to import when the files hold several (its metadata.name)",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="list what was ignored and why")
    p.set_defaults(func=import_command)

    p = sub.add_parser(
        "validate", help="check scenario or policy files; prints OK or the first problem"
    )
    p.add_argument("file", nargs="+")
    p.set_defaults(func=_validate)

    from live.cli import register as register_live  # stdlib only at import: --help stays fast

    register_live(sub)

    p = sub.add_parser("schema", help="print the JSON Schema of scenario or policy files")
    p.add_argument("what", nargs="?", default="scenario", choices=["scenario", "policy"])
    p.set_defaults(func=_schema)
    return parser


def _explain(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from policies.explain import explain
    from policies.loading import load_policy

    policy = load_policy(args.policy)
    replicas = args.replicas if args.replicas is not None else (policy.replicas or 10)
    if replicas < 1:
        raise _usage(f"--replicas: {replicas} must be >= 1")
    table = explain(policy, replicas)
    notes = _replica_notes(policy.replicas, args.replicas)
    if args.json:
        print(json.dumps({**asdict(table), "notes": notes}, indent=2))
    else:
        print(table.to_text(), end="")
        for note in notes:
            print(f"note: {note}")
    return 0


def _replica_notes(own: int | None, given: int | None) -> list[str]:
    """Say where the replica count came from when it is not the policy's own."""
    if given is not None and own is not None and given != own:
        return [f"explained on {given} replicas (--replicas), not the policy's own {own}"]
    if given is None and own is None:
        return ["the policy gives no replica count: explained on 10 (set it with --replicas)"]
    return []


def _run_options(p: argparse.ArgumentParser) -> None:
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


def _options(args: argparse.Namespace):
    """The run options given on the command line (sim/runs/options.py puts them over the
    scenario file's); an option left out is None, and progress shows on a terminal."""
    from sim.runs.budget import Budget
    from sim.runs.options import RunOptions

    replications = getattr(args, "replications", None)  # tune sizes its own stages
    if args.workers is not None and args.workers < 1:
        raise _usage(f"-j: {args.workers} must be >= 1")
    if replications is not None and replications < 1:
        raise _usage(f"--replications: {replications} must be >= 1")
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


def _output(args: argparse.Namespace, loaded, kind: str, suffix: str):
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


def _run(args: argparse.Namespace) -> int:
    from sim.runs.scenario import load_scenario
    from sim.runs.sweep import run_scenario

    options = _options(args)
    loaded = _say_notes(load_scenario(args.scenario))
    folder = _output(args, loaded, "report", "")
    _say_notes(run_scenario(loaded, options, folder))
    verdict = (folder / "report.md").read_text().split("\n## ", 1)[0]
    print(verdict.strip())
    print(f"\nreport: {folder / 'report.html'}")
    return 0


def _say_notes(loaded_or_result):
    """Print what a scenario's reading or a run noted (warnings, overrides) on stderr."""
    for note in getattr(loaded_or_result, "notes", ()):
        print(f"rolloutsim: {note}", file=sys.stderr)
    return loaded_or_result


def _sweep(args: argparse.Namespace) -> int:
    from sim.runs.scenario import load_scenario
    from sim.runs.sweep import sweep

    options = _options(args)
    loaded = _say_notes(load_scenario(args.scenario))
    folder = _output(args, loaded, "sweep", "-sweep")
    sweep(loaded, args.param, options, folder)
    print(f"sweep: {folder / 'sweep.csv'} (a report per cell in {folder / 'cells'})")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from sim.tune.report import tune_scenario

    options = _options(args)
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


def _validate(args: argparse.Namespace) -> int:
    from policies.base import read_yaml_file
    from policies.loading import load_policy
    from sim.runs.files import check_name  # names become folders: OK only if run takes them

    for file in args.file:
        data = read_yaml_file(file)
        if isinstance(data, dict) and "kind" in data:
            policy = load_policy(file)
            check_name(policy.name, "name", file=file)
            print(f"{file}: OK ({policy.kind} {policy.name!r})")
        else:
            from sim.runs.scenario import load_scenario
            from sim.runs.sweep import check_names

            loaded = _say_notes(check_names(load_scenario(file)))
            names = ", ".join(loaded.policies)
            print(f"{file}: OK (scenario {loaded.scenario.name!r}: {names})")
    return 0


def _schema(args: argparse.Namespace) -> int:
    if args.what == "policy":
        from policies.loading import policy_json_schema

        schema = policy_json_schema()
    else:
        from sim.runs.scenario import scenario_json_schema

        schema = scenario_json_schema()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C's KeyboardInterrupt would be: the same stop (the
    pool shut down, the checkpoint kept, live traffic moved to the stable)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals():
    """While a command runs, SIGTERM and SIGHUP stop it like Ctrl-C (a second one is ignored,
    so the clean-up it started is not cut short)."""
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum: int, _frame) -> None:
        for s in wanted:
            signal.signal(s, signal.SIG_IGN)
        raise _Stopped(signum)

    old = {s: signal.signal(s, stop) for s in wanted}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _interrupted(args: argparse.Namespace, exc: KeyboardInterrupt) -> int:
    signum = getattr(exc, "signum", signal.SIGINT)
    how = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    text = f"rolloutsim: interrupted{how}"
    if hasattr(args, "resume"):  # run, sweep, tune: their finished work is in a checkpoint
        where = getattr(args, "resumable", None)
        text += "; the finished work is kept" + (f" beside {where}" if where else "")
        text += ": rerun the same command with --resume to continue"
    print(text, file=sys.stderr)
    return 128 + int(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from policies.errors import RolloutsimError

    try:
        with _stop_on_signals():
            return args.func(args)
    except (RolloutsimError, _UsageError) as exc:
        print(f"rolloutsim: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # bad input 2; a report written incomplete 1
    except KeyboardInterrupt as exc:
        return _interrupted(args, exc)
    except BrokenPipeError:  # e.g. piped into head
        return 0
    except OSError as exc:  # a full disk, a folder removed under us: the machine, not the input
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rolloutsim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
