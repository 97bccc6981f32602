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

    p = sub.add_parser(
        "validate", help="check scenario or policy files; prints OK or the first problem"
    )
    p.add_argument("file", nargs="+")
    p.set_defaults(func=_validate)

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
    if args.json:
        print(json.dumps({**asdict(table)}, indent=2))
    else:
        print(table.to_text(), end="")
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
            from sim.scenario import load_scenario

            loaded = load_scenario(file)
            names = ", ".join(loaded.policies)
            print(f"{file}: OK (scenario {loaded.scenario.name!r}: {names})")
    return 0


def _schema(args: argparse.Namespace) -> int:
    if args.what == "policy":
        from policies.loading import policy_json_schema

        schema = policy_json_schema()
    else:
        from sim.scenario import scenario_json_schema

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
        return 2
    except KeyboardInterrupt:
        print("rolloutsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
