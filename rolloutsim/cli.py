"""``rolloutsim``: explain, validate and (as they land) run, export and tune release policies.

Heavy libraries are imported only inside the subcommand that needs them, so ``--help`` is
instant. Bad input exits 2 with one line naming the file, the field and the rule.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from rolloutsim import __version__
from rolloutsim.check_commands import explain_command, schema_command, validate_command
from rolloutsim.fit_command import add_fit_parser
from rolloutsim.manifest_commands import export_command, import_command
from rolloutsim.run_commands import add_job_options, add_run_options, tune_command
from rolloutsim.sensitivity_command import add_run_sensitivity, add_sensitivity_parser
from rolloutsim.sweep_command import sweep_command
from rolloutsim.usage import UsageError as _UsageError

__all__ = ["build_parser", "main", "resume_command"]


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
    p.add_argument(
        "policy",
        nargs="+",
        help="a policy file, a scenario, or an Argo Rollout / Flagger Canary manifest and its"
        " template files",
    )
    p.add_argument(
        "--replicas",
        "-n",
        type=int,
        default=None,
        help="pods of the service (default: the policy's replicas, else 10)",
    )
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    _add_map(p, "with a manifest: " + _MAP_HELP)
    p.set_defaults(func=explain_command)

    p = sub.add_parser("run", help="run every policy of a scenario and write its report folder")
    p.add_argument("scenario", help="a scenario YAML file (e.g. scenarios/seed-practice.yaml)")
    add_run_options(p)
    add_run_sensitivity(p)

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

    add_sensitivity_parser(sub)

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
    add_job_options(p, "tune")
    p.set_defaults(func=tune_command)

    p = sub.add_parser("export", help="a policy as the live executor's manifests")
    p.add_argument("policy", help="a policy YAML file")
    p.add_argument("--to", required=True, choices=[*EXECUTORS, "all"])
    p.add_argument(
        "-o",
        "--output",
        help="a folder: each executor's files in DIR/<executor>/, for one executor as for all"
        " (default: print YAML); with --onto, the team's own files under their own names in DIR",
    )
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
    _add_map(p, "with --onto: the mapping the manifests' import needed (repeatable)")
    p.add_argument("--name", help="with --onto: the Rollout or Canary to write, among several")
    p.set_defaults(func=export_command)

    p = sub.add_parser("import", help="an Argo Rollout or Flagger Canary manifest as a policy")
    p.add_argument("manifest", nargs="+", help="YAML files (a Rollout and its AnalysisTemplates)")
    p.add_argument("-o", "--output", help="write the policy YAML here (default: print it)")
    _add_map(p)
    p.add_argument(
        "--name",
        metavar="NAME",
        help="the Rollout or Canary to import when the files hold several (its metadata.name)",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="list what was ignored and why")
    p.set_defaults(func=import_command)

    p = sub.add_parser(
        "validate", help="check scenario, policy or manifest files; prints OK or every problem"
    )
    p.add_argument("file", nargs="+")
    _add_map(p, "with a manifest: " + _MAP_HELP)
    p.set_defaults(func=validate_command)

    add_fit_parser(sub)

    from live.cli import register as register_live  # stdlib only at import: --help stays fast

    register_live(sub)

    p = sub.add_parser("schema", help="print the JSON Schema of scenario or policy files")
    p.add_argument("what", nargs="?", default="scenario", choices=["scenario", "policy"])
    p.set_defaults(func=schema_command)
    return parser


_MAP_HELP = "how to simulate a metric whose query is not a recognised form (repeatable)"


def _add_map(p: argparse.ArgumentParser, help: str = _MAP_HELP) -> None:
    """``--map METRIC=...``: what an import needs for a query it cannot read (one spelling)."""
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="METRIC=measure:version[:quantile][:unit]",
        help=help,
    )


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


def _interrupted(args: argparse.Namespace, argv: Sequence[str], exc: KeyboardInterrupt) -> int:
    signum = getattr(exc, "signum", signal.SIGINT)
    how = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    text = f"rolloutsim: interrupted{how}"
    if hasattr(args, "resume"):  # run, sweep, tune: their finished work is in a checkpoint
        where = getattr(args, "resumable", None)
        text += "; the finished work is kept" + (f" beside {where}" if where else "")
        text += f"; continue it (nothing finished is redone) with:\n  {resume_command(argv)}"
    print(text, file=sys.stderr)
    return 128 + int(signum)


def resume_command(argv: Sequence[str]) -> str:
    """The command line that continues ``argv``: the same words (shell-quoted), without
    --overwrite (it would start over) and with --resume."""
    words = [w for w in argv if not (len(w) > 3 and "--overwrite".startswith(w))]
    resume = any(len(w) > 4 and "--resume".startswith(w) for w in words)
    if not resume:  # before a "--" that ends the options, else last
        at = words.index("--") if "--" in words else len(words)
        words.insert(at, "--resume")
    return shlex.join(["rolloutsim", *words])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    from policies.errors import RolloutsimError

    try:
        with _stop_on_signals():
            return args.func(args)
    except (RolloutsimError, _UsageError) as exc:
        for line in str(exc).splitlines() or [""]:  # several problems: one line each
            print(f"rolloutsim: error: {line}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # bad input 2; a report written incomplete 1
    except KeyboardInterrupt as exc:
        return _interrupted(args, argv, exc)
    except BrokenPipeError:  # e.g. piped into head
        return 0
    except OSError as exc:  # a full disk, a folder removed under us: the machine, not the input
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rolloutsim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
