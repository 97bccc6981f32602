"""``rolloutsim``: explain, validate and (as they land) run, export and tune release policies.

Heavy libraries are imported only inside the subcommand that needs them, so ``--help`` is
instant. Bad input exits 2 with one line naming the file, the field and the rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rolloutsim import __version__

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
    p.set_defaults(func=_export)

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
    p.add_argument("--verbose", "-v", action="store_true", help="list what was ignored and why")
    p.set_defaults(func=_import)

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


def _options(args: argparse.Namespace):
    """The run options given on the command line (sim/runs/options.py puts them over the
    scenario file's); an option left out is None, and progress shows on a terminal."""
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
    )


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim.runs.scenario import load_scenario
    from sim.runs.sweep import run_scenario

    options = _options(args)
    loaded = load_scenario(args.scenario)
    folder = Path(args.output or Path("reports") / loaded.scenario.name)
    run_scenario(loaded, options, folder)
    verdict = (folder / "report.md").read_text().split("\n## ", 1)[0]
    print(verdict.strip())
    print(f"\nreport: {folder / 'report.html'}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim.runs.scenario import load_scenario
    from sim.runs.sweep import sweep

    options = _options(args)
    loaded = load_scenario(args.scenario)
    folder = Path(args.output or Path("reports") / f"{loaded.scenario.name}-sweep")
    sweep(loaded, args.param, options, folder)
    print(f"sweep: {folder / 'sweep.csv'} (a report per cell in {folder / 'cells'})")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from sim.tune.report import tune_scenario

    options = _options(args)
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


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from policies.errors import NotExpressibleError
    from policies.exporters import EXECUTORS, Target, export
    from policies.loading import load_policy

    policy = load_policy(args.policy)
    if args.onto:
        from policies.onto import export_onto

        given = [o for o in ("service", "namespace", "replicas", "image") if getattr(args, o)]
        if given:
            raise _usage(
                f"--{given[0]}: --onto takes names, namespace and replicas from the manifests"
            )
        if args.to == "all":
            raise _usage("--onto: give --to argo for a Rollout or --to flagger for a Canary")
        onto = export_onto(
            policy, [Path(m) for m in args.onto], mapping=args.map or None, to=args.to
        )
        if args.output is None:
            for name, text in onto.files.items():
                state = "" if name in onto.changed else " (unchanged)"
                print(f"# file: {name}{state}")
                print(text, end="" if text.endswith("\n") or not text else "\n")
        else:
            from functools import partial

            from sim.runs.files import atomic_write

            def write(tmp: str, text: str) -> None:
                Path(tmp).write_text(text, encoding="utf-8")

            folder = Path(args.output)
            names = [Path(name).name for name in onto.files]
            if len(set(names)) != len(names):
                raise _usage(
                    "--onto: two manifests share a file name; -o would write one over the other"
                )
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in onto.files.items():
                out = folder / Path(name).name
                atomic_write(out, partial(write, text=text))
                print(f"{out}" + ("" if name in onto.changed else " (unchanged)"))
        for note in onto.notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    if args.map:
        raise _usage("--map: only with --onto (the mapping the manifests' import needed)")
    target = Target(
        service=args.service or policy.name,
        namespace=args.namespace or "default",
        replicas=args.replicas,
        **({"image": args.image} if args.image else {}),
    )
    executors = EXECUTORS if args.to == "all" else (args.to,)
    refused = []
    for executor in executors:
        try:
            result = export(policy, executor, target)
        except NotExpressibleError as exc:
            if args.to != "all":
                raise
            refused.append(str(exc))
            continue
        if args.output is None:
            print(result.to_yaml(), end="")
            continue
        from sim.runs.files import atomic_write

        folder = Path(args.output) / (executor if args.to == "all" else "")
        folder.mkdir(parents=True, exist_ok=True)
        text = result.to_yaml()
        atomic_write(folder / f"{target.service}.yaml", lambda tmp, t=text: Path(tmp).write_text(t))
        for name, content in result.files.items():
            atomic_write(folder / name, lambda tmp, c=content: Path(tmp).write_text(c))
        print(
            f"{executor}: {folder / f'{target.service}.yaml'}"
            + (f" (+ {', '.join(result.files)})" if result.files else "")
        )
    for reason in refused:
        print(f"refused: {reason}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from policies.importers import import_manifests
    from policies.loading import policy_to_yaml

    source = [Path(m) for m in args.manifest]
    result = import_manifests(source, mapping=args.map or None)
    text = policy_to_yaml(result.policy)
    if args.output:
        from sim.runs.files import atomic_write

        atomic_write(args.output, lambda tmp: Path(tmp).write_text(text))
        print(f"{args.output}: {result.policy.kind} {result.policy.name!r}")
    else:
        print(text, end="")
    if args.verbose:
        for item in result.ignored:
            print(f"ignored: {item}", file=sys.stderr)
        for note in getattr(result, "notes", ()):
            print(f"note: {note}", file=sys.stderr)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from policies.base import read_yaml_file
    from policies.loading import load_policy

    for file in args.file:
        data = read_yaml_file(file)
        if isinstance(data, dict) and "kind" in data:
            policy = load_policy(file)
            print(f"{file}: OK ({policy.kind} {policy.name!r})")
        else:
            from sim.runs.scenario import load_scenario

            loaded = load_scenario(file)
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


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from policies.errors import RolloutsimError

    try:
        return args.func(args)
    except (RolloutsimError, _UsageError) as exc:
        print(f"rolloutsim: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # bad input 2; a report written incomplete 1
    except KeyboardInterrupt:
        print("rolloutsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
