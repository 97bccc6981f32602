"""``rolloutsim``: explain, validate and (as they land) run, export and tune release policies.

Heavy libraries are imported only inside the subcommand that needs them, so ``--help`` is
instant. Bad input exits 2 with one line naming the file, the field and the rule.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence

from rolloutsim import __version__
from rolloutsim.check_commands import explain_command, schema_command, validate_command
from rolloutsim.manifest_commands import export_command, import_command
from rolloutsim.run_commands import add_run_options, run_command, tune_command
from rolloutsim.sweep_command import sweep_command
from rolloutsim.usage import UsageError as _UsageError

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
    p.set_defaults(func=explain_command)

    p = sub.add_parser("run", help="run every policy of a scenario and write its report folder")
    p.add_argument("scenario", help="a scenario YAML file (e.g. scenarios/seed-practice.yaml)")
    add_run_options(p)
    p.set_defaults(func=run_command)

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
    add_run_options(p)
    p.set_defaults(func=sweep_command)

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
    p.set_defaults(func=tune_command)

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
    p.set_defaults(func=validate_command)

    from live.cli import register as register_live  # stdlib only at import: --help stays fast

    register_live(sub)

    p = sub.add_parser("schema", help="print the JSON Schema of scenario or policy files")
    p.add_argument("what", nargs="?", default="scenario", choices=["scenario", "policy"])
    p.set_defaults(func=schema_command)
    return parser


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
