"""``explain``, ``validate`` and ``schema``: the commands that read a file and run nothing.

``explain`` and ``validate`` first tell what a file is (``sniff``): a policy file, a scenario,
an Argo Rollout or Flagger Canary manifest (imported, as ``import`` would), templates alone, or
something else, which is named with the command that takes it, so a file given to the wrong
command is a pointer to the right one rather than a field error.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from rolloutsim.run_commands import say_notes
from rolloutsim.usage import usage

__all__ = ["FileKind", "explain_command", "schema_command", "sniff", "validate_command"]

_ROLLOUTS = {
    ("argoproj.io", "Rollout"): "Argo Rollout",
    ("flagger.app", "Canary"): "Flagger Canary",
}
_TEMPLATES = {
    ("argoproj.io", "AnalysisTemplate"),
    ("argoproj.io", "ClusterAnalysisTemplate"),
    ("flagger.app", "MetricTemplate"),
}
_TAKES = (
    "rolloutsim reads policy files (kind: Canary, BlueGreen, ...), scenarios (world: and"
    " policies:) and Argo Rollout or Flagger Canary manifests (validate, explain, import)"
)


@dataclass(frozen=True)
class FileKind:
    """What a YAML file holds: ``policy``, ``scenario``, ``manifest`` (a Rollout or Canary,
    with or without its templates), ``templates`` (templates alone), and its objects."""

    kind: str
    data: Any = None  # the one document of a policy or scenario
    objects: tuple[str, ...] = ()  # "Argo Rollout/checkout", ... of a manifest file
    rollouts: tuple[tuple[str, str], ...] = ()  # ("Argo Rollout", metadata.name), ...


def sniff(file: str) -> FileKind:
    """Tell what ``file`` holds, or refuse it in one line saying what it looks like and which
    command takes it."""
    from policies.base import read_yaml_file
    from policies.errors import PolicyError

    docs = read_yaml_file(file, multi=True)
    if not docs:
        raise PolicyError(f"is empty (no YAML document): {_TAKES}", file=file)
    items = [i for d in docs for i in (_items(d) if _is_object(d) else [d])]
    if len(docs) > 1 or any(_is_object(d) for d in docs):
        if not all(_is_object(d) for d in items):
            raise PolicyError(
                f"holds {len(docs)} YAML documents that are not all Kubernetes objects"
                f" (apiVersion, kind): a policy file or scenario is one document; {_TAKES}",
                file=file,
            )
        keys = [(_group(d), str(d.get("kind"))) for d in items]
        labels = tuple(f"{_ROLLOUTS.get(k, k[1])}/{_name(d)}" for k, d in zip(keys, items))
        rollouts = tuple((_ROLLOUTS[k], _name(d)) for k, d in zip(keys, items) if k in _ROLLOUTS)
        if rollouts:
            return FileKind("manifest", objects=labels, rollouts=rollouts)
        if any(k in _TEMPLATES for k in keys):
            return FileKind("templates", objects=labels)
        raise PolicyError(
            f"holds {', '.join(labels)}: no Argo Rollout or Flagger Canary; {_TAKES}", file=file
        )
    data = docs[0]
    if not isinstance(data, dict):
        shown = "a list" if isinstance(data, list) else f"a single {type(data).__name__} value"
        raise PolicyError(f"holds {shown}, not a mapping: {_TAKES}", file=file)
    if "kind" in data:
        return FileKind("policy", data)
    if {"world", "policies", "name"} & set(data):
        return FileKind("scenario", data)
    keys = ", ".join(str(k) for k in list(data)[:5])
    raise PolicyError(
        f"is a mapping of {keys}: neither a policy (no kind:) nor a scenario (no world: or"
        f" policies:); {_TAKES}",
        file=file,
    )


def _is_object(doc: Any) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc


def _items(doc: dict) -> list[Any]:
    """A ``kind: List``'s items (as ``kubectl get -o yaml`` writes them), else the object."""
    items = doc.get("items") if doc.get("kind") == "List" else None
    return list(items) if isinstance(items, list) else [doc]


def _group(doc: dict) -> str:
    return str(doc.get("apiVersion", "")).rpartition("/")[0]


def _name(doc: dict) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "?")) if isinstance(meta, dict) else "?"


def _given(args: argparse.Namespace, name: str) -> list[str]:
    value = getattr(args, name)
    return list(value) if isinstance(value, list | tuple) else [value]


def explain_command(args: argparse.Namespace) -> int:
    if args.replicas is not None and args.replicas < 1:
        raise usage(f"--replicas: {args.replicas} must be >= 1")
    files = _given(args, "policy")
    kinds = {f: sniff(f) for f in files}
    first = kinds[files[0]]
    data: dict[str, Any] = {}
    if first.kind in ("manifest", "templates"):
        manifests = [f for f, k in kinds.items() if k.kind == "manifest"]
        if not manifests:
            raise _templates_alone(files[0], first, "explain")
        tables = [_explain_imported(args, kinds, r) for f in manifests for r in kinds[f].rollouts]
    elif len(files) > 1:
        raise usage("explain takes one policy file or scenario (or a manifest and its templates)")
    elif first.kind == "policy":
        tables = [_explain_policy(args, files[0], first.data)]
    else:
        data["scenario"], tables = _explain_scenario(args, files[0])
    texts = [table.pop("text") for table in tables]
    if args.json:
        one = len(tables) == 1 and not data
        print(json.dumps(tables[0] if one else {**data, "policies": tables}, indent=2))
        return 0
    for i, (table, text) in enumerate(zip(tables, texts)):
        head = f"{table['imported']}\n" if "imported" in table else ""
        print(("\n" if i else "") + head + text, end="")
        for note in table["notes"]:
            print(f"note: {note}")
    return 0


def _explain_policy(args: argparse.Namespace, file: str, data: Any) -> dict[str, Any]:
    from policies.durations import ambiguous_durations
    from policies.gate_ranges import unit_mixups
    from policies.loading import parse_policy

    policy = parse_policy(data, file=file)
    warned = ambiguous_durations(policy, data) + unit_mixups(policy)
    _say(f"warning: {file}: {w.removeprefix('warning: ')}" for w in warned)
    return _table(policy, args.replicas, _replica_notes(policy.replicas, args.replicas))


def _explain_scenario(args: argparse.Namespace, file: str) -> tuple[str, list[dict[str, Any]]]:
    """Each policy of a scenario on the scenario's replicas (``world.platform.replicas``)."""
    from sim.runs.scenario import load_scenario

    loaded = say_notes(load_scenario(file))
    world = loaded.world.platform.replicas
    replicas = args.replicas or world
    said = f"explained on the scenario's {world} replicas (world.platform.replicas)"
    notes = [said] if args.replicas is None and world is not None else []
    return loaded.scenario.name, [
        _table(p, replicas, notes + _replica_notes(p.replicas, replicas))
        for p in loaded.policies.values()
    ]


def _say(lines) -> None:
    """Warnings and notes on stderr, as ``say_notes`` prints a scenario's."""
    for line in lines:
        print(f"rolloutsim: {line}", file=sys.stderr)


def _table(policy: Any, replicas: int | None, notes: list[str]) -> dict[str, Any]:
    """The explain table of ``policy`` on ``replicas`` (its own, else 10), as plain data."""
    from dataclasses import asdict

    from policies.explain import explain

    table = explain(policy, replicas or policy.replicas or 10)
    return {"name": policy.name, **asdict(table), "notes": notes, "text": table.to_text()}


def _explain_imported(
    args: argparse.Namespace, kinds: dict[str, FileKind], rollout: tuple[str, str]
) -> dict[str, Any]:
    """A Rollout or Canary explained as the policy it imports as, with what the import noted."""
    result = _import(kinds, rollout, getattr(args, "map", None))
    policy = result.policy
    imported = f"{rollout[0]} {rollout[1]!r} imported as {policy.kind} {policy.name!r}"
    notes = [*result.notes, *_replica_notes(policy.replicas, args.replicas)]
    return {"imported": imported, **_table(policy, args.replicas, notes)}


def _import(kinds: dict[str, FileKind], rollout: tuple[str, str], mapping: Any):
    """Import one Rollout or Canary (``(what, name)``) of the manifest files in ``kinds``,
    its templates read from any of them, as ``rolloutsim import`` would."""
    from pathlib import Path

    from policies.importers import import_manifests

    files = [f for f, k in kinds.items() if k.kind in ("manifest", "templates")]
    many = sum(len(kinds[f].rollouts) for f in files) > 1
    return import_manifests(
        [Path(f) for f in files], mapping=mapping or None, name=rollout[1] if many else None
    )


def _templates_alone(file: str, kind: FileKind, command: str):
    from policies.errors import PolicyError

    return PolicyError(
        f"holds {', '.join(kind.objects)} alone, no Rollout or Canary: give it with the Rollout"
        f" or Canary that uses it: rolloutsim {command} ROLLOUT.yaml {file}",
        file=file,
    )


def _replica_notes(own: int | None, given: int | None) -> list[str]:
    """Say where the replica count came from when it is not the policy's own."""
    if given is not None and own is not None and given != own:
        return [f"explained on {given} replicas (--replicas), not the policy's own {own}"]
    if given is None and own is None:
        return ["the policy gives no replica count: explained on 10 (set it with --replicas)"]
    return []


def validate_command(args: argparse.Namespace) -> int:
    """Check every file given, saying OK (and what it is) for each good one; every problem of
    every bad one is listed (exit 2)."""
    from policies.errors import PolicyError

    files = _given(args, "file")
    problems: dict[str, PolicyError] = {}
    kinds: dict[str, FileKind] = {}
    for file in files:
        try:
            kinds[file] = sniff(file)
        except PolicyError as exc:
            problems[file] = exc
    for file in kinds:
        try:
            print(f"{file}: OK ({_validate(file, kinds, args)})")
        except PolicyError as exc:
            problems[file] = exc
    if problems:
        raise PolicyError.several([problems[f] for f in files if f in problems])
    return 0


def _validate(file: str, kinds: dict[str, FileKind], args: argparse.Namespace) -> str:
    """Validate one file; what it is, for the OK line."""
    kind = kinds[file]
    from sim.runs.files import check_name  # names become folders: OK only if run takes them

    if kind.kind == "policy":
        from policies.durations import ambiguous_durations
        from policies.gate_ranges import unit_mixups
        from policies.loading import parse_policy

        policy = parse_policy(kind.data, file=file)
        check_name(policy.name, "name", file=file)
        warned = ambiguous_durations(policy, kind.data) + unit_mixups(policy)
        _say(f"warning: {file}: {w.removeprefix('warning: ')}" for w in warned)
        return f"{policy.kind} {policy.name!r}"
    if kind.kind == "scenario":
        from sim.runs.scenario import load_scenario
        from sim.runs.sweep import check_names

        loaded = say_notes(check_names(load_scenario(file)))
        return f"scenario {loaded.scenario.name!r}: {', '.join(loaded.policies)}"
    if kind.kind == "templates":
        if not any(k.rollouts for k in kinds.values()):
            raise _templates_alone(file, kind, "validate")
        return f"{', '.join(kind.objects)}: read with the Rollout or Canary given beside it"
    said = []
    for rollout in kind.rollouts:
        result = _import(kinds, rollout, getattr(args, "map", None))
        policy = result.policy
        check_name(policy.name, "metadata.name", file=file)
        _say(f"note: {file}: {note}" for note in result.notes)
        said.append(f"{rollout[0]} {rollout[1]!r} imports as {policy.kind} {policy.name!r}")
    return "; ".join(said)


def schema_command(args: argparse.Namespace) -> int:
    if args.what == "policy":
        from policies.loading import policy_json_schema

        schema = policy_json_schema()
    else:
        from sim.runs.scenario import scenario_json_schema

        schema = scenario_json_schema()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0
