"""``explain``, ``validate`` and ``schema``: the commands that read a file and run nothing."""

from __future__ import annotations

import argparse
import json

from rolloutsim.run_commands import say_notes
from rolloutsim.usage import usage

__all__ = ["explain_command", "schema_command", "validate_command"]


def explain_command(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from policies.explain import explain
    from policies.loading import load_policy

    policy = load_policy(args.policy)
    replicas = args.replicas if args.replicas is not None else (policy.replicas or 10)
    if replicas < 1:
        raise usage(f"--replicas: {replicas} must be >= 1")
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


def validate_command(args: argparse.Namespace) -> int:
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

            loaded = say_notes(check_names(load_scenario(file)))
            names = ", ".join(loaded.policies)
            print(f"{file}: OK (scenario {loaded.scenario.name!r}: {names})")
    return 0


def schema_command(args: argparse.Namespace) -> int:
    if args.what == "policy":
        from policies.loading import policy_json_schema

        schema = policy_json_schema()
    else:
        from sim.runs.scenario import scenario_json_schema

        schema = scenario_json_schema()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0
