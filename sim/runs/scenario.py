"""Scenario files: a world, the policies to compare, and how many replications to run.

A scenario is data (STYLE): read with the strict safe loader, validated against exact keys,
and any mistake is one ``PolicyError`` naming the file, the field path and the rule. Policies
are given inline (a mapping with ``kind``), by ``file`` (a policy file, relative to the
scenario), or by ``manifest`` (an Argo Rollout or Flagger Canary, imported on load).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from policies.base import Model, load_yaml, read_text_file, read_yaml_file, validate_model
from policies.durations import ambiguous_durations
from policies.errors import PolicyError
from policies.loading import parse_policy
from sim.engine.affinity import check_session_affinity
from sim.runs.options import DEFAULTS
from sim.runs.provenance import run_digest
from sim.runs.scenario_warnings import warnings
from sim.runs.sensitivity_assumptions import SensitivitySpec
from sim.world.model import World
from sim.world.plugins import check_step_plugins
from sim.world.traffic import base_directory

__all__ = ["LoadedScenario", "PolicyRef", "Scenario", "load_scenario", "scenario_json_schema"]


FileBackend = Literal["inprocess", "process"]


class PolicyRef(Model):
    """A policy kept in another file: a policy file, or a live executor's manifest (one file,
    or a list: the Rollout and its template files). ``replicas`` overrides the file's own
    replica count (a manifest's ``spec.replicas``), and the report says so."""

    file: str | None = None
    manifest: str | list[str] | None = None
    name: str | None = None  # rename, e.g. to compare two variants of one file
    map: dict[str, str] = Field(default_factory=dict)  # see MAP_SYNTAX (policies.importers)
    replicas: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> PolicyRef:
        if (self.file is None) == (self.manifest is None):
            raise ValueError("give exactly one of file, manifest")
        if self.map and self.manifest is None:
            raise ValueError("map applies only to a manifest")
        return self


class Scenario(Model):
    """``name``, ``world``, ``policies`` and the run's size; see scenarios/*.yaml."""

    name: str = Field(min_length=1)
    description: str = ""
    world: World
    policies: tuple[dict[str, Any], ...] = Field(min_length=1)
    # the run options a file may set (sim/runs/options.py: the caller's win, DEFAULTS fill in)
    replications: int | dict[str, int] = DEFAULTS.replications
    seed: int = Field(DEFAULTS.seed, ge=0)
    # the machine-local backends only: both run this package's code on this machine, in this
    # process or in spawned copies of it; nothing crosses a network and nothing is unpickled
    # from elsewhere. Dask and its scheduler are the caller's choice (_caller_only).
    backend: FileBackend = cast(FileBackend, DEFAULTS.backend)
    workers: int | None = Field(DEFAULTS.workers, ge=1)
    scheduler: SkipJsonSchema[str | None] = None  # always None: refused by _caller_only
    sweep: dict[str, list[Any]] = Field(default_factory=dict)  # dotted path -> values
    tune: dict[str, Any] = Field(default_factory=dict)  # a search space: see sim/tune/space.py
    sensitivity: SensitivitySpec = Field(default_factory=SensitivitySpec)  # sim/runs/sensitivity.py

    @field_validator("backend", "scheduler", mode="before")
    @classmethod
    def _caller_only(cls, value: Any, info: Any) -> Any:
        """A scenario may be someone else's file, and Dask exchanges pickles: connecting to a
        scheduler runs code it sends. So the command line or the Python call chooses Dask."""
        if info.field_name == "backend" and value != "dask":
            return value
        if info.field_name == "scheduler" and value is None:
            return value
        what = "the dask backend" if info.field_name == "backend" else "a Dask scheduler"
        flag = "--backend dask" if info.field_name == "backend" else "--scheduler ADDRESS"
        raise ValueError(
            f"a scenario file cannot choose {what}: the file may be someone else's, and Dask"
            " exchanges pickles, so a scheduler can run code on the machine that connects;"
            f" give {flag} on the command line (Python: run(..., backend=, scheduler=));"
            " a file may say backend: process or inprocess"
        )

    @model_validator(mode="after")
    def _replications(self) -> Scenario:
        counts = self.replications
        if isinstance(counts, int):
            if counts < 1:
                raise ValueError("replications must be >= 1")
        else:
            unknown = sorted(set(counts) - set(self.world.releases.names))
            if unknown:
                raise ValueError(f"replications names unknown release class {unknown[0]!r}")
            if any(v < 1 for v in counts.values()):
                raise ValueError("replications per class must be >= 1")
        return self


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with its policies resolved to objects, in file order."""

    scenario: Scenario
    policies: dict[str, Any]
    path: Path | None
    notes: tuple[str, ...] = field(default=())
    """What the reader should know about how the policies were read (a replica count the
    scenario overrides), for the report."""

    @property
    def world(self) -> World:
        return self.scenario.world

    def digest(self) -> str:
        """A short hash of everything that determines the numbers (for provenance, resume)."""
        policies = {name: p.to_dict() for name, p in self.policies.items()}
        return run_digest(self.scenario.world.to_dict(), policies, self.scenario.seed)

    def resolved(self) -> dict[str, Any]:
        """The scenario with every policy inlined: what was run, for the report's provenance."""
        data = self.scenario.to_dict()
        data["policies"] = [p.to_dict() | {"name": n} for n, p in self.policies.items()]
        return data


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> LoadedScenario:
    """Read, validate and resolve a scenario file; ``overrides`` sets dotted paths first
    (``{"world.traffic.startAt": "2h"}``), as a sweep cell does."""
    path = Path(path)
    docs = read_yaml_file(path, multi=True)
    data = docs[0] if len(docs) == 1 else None
    if len(docs) > 1:
        kinds = ", ".join(str(d.get("kind")) for d in docs if isinstance(d, dict))
        raise PolicyError(
            f"holds {len(docs)} YAML documents ({kinds}), not one scenario: a scenario names"
            f" manifests in its policies: [{{manifest: {path.name}}}]",
            file=str(path),
        )
    if not isinstance(data, dict):
        raise PolicyError("a scenario is a mapping with name, world and policies", file=str(path))
    _not_a_scenario(data, path)
    for dotted, value in (overrides or {}).items():
        set_path(data, dotted, value, file=str(path))
    problems: list[PolicyError] = []  # every problem of the file, listed together
    scenario: Scenario | None = None
    try:
        with base_directory(path.parent):
            scenario = validate_model(Scenario, data, file=str(path))
    except PolicyError as exc:
        problems.append(exc)
    entries = scenario.policies if scenario is not None else data.get("policies")
    policies: dict[str, Any] = {}
    notes: list[str] = []
    for i, entry in enumerate(entries if isinstance(entries, list | tuple) else ()):
        where = f"policies[{i}]"
        if not isinstance(entry, dict) or (scenario is None and "kind" not in entry):
            continue  # said by the scenario's validation; other files are read once it passes
        try:
            name, policy, raw = _resolve(entry, path, where, notes)
            if name in policies:
                raise PolicyError(
                    f"two policies are named {name!r}; give one a `name:`",
                    path=where,
                    file=str(path),
                )
            if scenario is not None:
                _check_policy(policy, name, scenario, path, where, notes)
        except PolicyError as exc:
            problems.append(exc)
            continue
        policies[name] = policy
        if "kind" in entry:
            notes += _in_file(path, ambiguous_durations(policy, raw, where))
        elif raw is not None:  # a policy file: its own paths, after its name
            notes += _in_file(entry["file"], ambiguous_durations(policy, raw))
    if scenario is not None and not overrides:  # a cell sets its paths: checked as it loads
        problems += _sweep_problems(scenario, data, path)
    if problems or scenario is None:
        raise PolicyError.several(problems)
    notes += _in_file(path, ambiguous_durations(scenario.world, data.get("world"), "world"))
    notes += warnings(scenario, policies)
    return LoadedScenario(scenario, policies, path, tuple(notes))


def _in_file(file: str | Path, warned: list[str]) -> list[str]:
    """Warnings about fields, each naming the file that holds the field, as errors do."""
    return [f"warning: {file}: {w.removeprefix('warning: ')}" for w in warned]


def as_loaded(scenario) -> LoadedScenario:
    """A ``LoadedScenario`` as it is, or the scenario file at that path, loaded."""
    return scenario if isinstance(scenario, LoadedScenario) else load_scenario(scenario)


def _sweep_problems(scenario: Scenario, data: dict[str, Any], path: Path) -> list[PolicyError]:
    """The ``sweep:`` section checked now, as ``validate`` runs it, not at the sweep's first
    cell: each path exists and takes each of its values (the scenario with it set is valid)."""
    problems = []
    for dotted, values in scenario.sweep.items():
        if not values:
            problems.append(
                PolicyError("no values to sweep", path=f"sweep: {dotted}", file=str(path))
            )
        for value in values:
            cell = copy.deepcopy(data)
            cell.pop("sweep", None)
            try:
                set_path(cell, dotted, value, file=str(path))
                with base_directory(path.parent):
                    validate_model(Scenario, cell, file=str(path))
            except PolicyError as exc:  # the first problem of the first value that has one
                first = exc.problems[0]
                if first.path != f"sweep: {dotted}":  # set, but the scenario is then invalid
                    where = f"{first.path}: " if first.path else ""
                    first = PolicyError(
                        f"the value {value!r} makes {where}{first.message}",
                        path=f"sweep: {dotted}",
                        file=str(path),
                    )
                problems.append(first)
                break
    return problems


def _not_a_scenario(data: dict[str, Any], path: Path) -> None:
    """A policy file or a manifest given where a scenario is expected: say what it is and
    how a scenario takes it, rather than listing its keys as unknown."""
    if "world" in data or "kind" not in data:
        return
    if "apiVersion" in data:
        what, how = f"a Kubernetes manifest ({data['kind']})", "manifest"
    else:
        what, how = f"a policy file (kind: {data['kind']})", "file"
    raise PolicyError(
        f"is {what}, not a scenario (name, world, policies): explain or validate it, or name it"
        f" in a scenario's policies: [{{{how}: {path.name}}}]",
        file=str(path),
    )


def _check_policy(
    policy: Any, name: str, scenario: Scenario, path: Path, where: str, notes: list[str]
) -> None:
    """What a policy needs of this scenario's world (routes to segments, step plugins)."""
    _check_matches(policy, scenario.world, path, where)
    check_session_affinity(policy, scenario.world, where=where, file=str(path))
    check_step_plugins(scenario.world.step_plugins, policy, where=where, file=str(path))
    own, world = getattr(policy, "replicas", None), scenario.world.platform.replicas
    if own is not None and world is not None and own != world:
        notes.append(
            f"{name}: runs on {world} replicas (world.platform.replicas), not its own {own}"
        )


def _route_matches(policy) -> list:
    """The header/cookie matches a policy routes to the canary (A/B match, setHeaderRoute)."""
    from policies.common import RouteMatch

    analysis = getattr(policy, "analysis", None)
    matches = list(getattr(analysis, "match", ()) or ())
    for step in getattr(policy, "steps", ()):
        route = step.set_header_route
        if route is not None and route.match:
            matches.append(RouteMatch(headers={h.header_name: h.header_value for h in route.match}))
    return matches


def _check_matches(policy, world: World, path: Path, where: str) -> None:
    """A match route that no user segment satisfies sends the canary no traffic at all, so
    every good release would fail its checks (Flagger counts no data as a failure): refuse it."""
    matches = _route_matches(policy)
    matched = world.users.segments_matched_by(matches) if matches else ()
    if matches and not any(world.users.segments[m].share > 0 for m in matched):
        known = (
            ", ".join(
                f"{name} ({'header ' + seg.header.name if seg.header else ''}"
                f"{'cookie ' + seg.cookie.name if seg.cookie else ''})".replace(" ()", "")
                for name, seg in world.users.segments.items()
            )
            or "none"
        )
        empty = f" ({', '.join(matched)}: 0 % of users)" if matched else ""
        raise PolicyError(
            f"{policy.name}: no user segment of the world sends the headers or cookies its "
            f"match routes need{empty}, so the canary would get no traffic (segments: {known}); "
            "give a segment in world.users.segments a matching header or cookie",
            path=where,
            file=str(path),
        )


def set_path(data: dict[str, Any], dotted: str, value: Any, *, file: str | None = None) -> None:
    """Set ``world.traffic.startAt`` (or ``policies[1].steps[0].setWeight``) in plain data;
    every part but the last must exist, so a typo is an error, not a new key."""
    import re

    parts = [p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]
    node: Any = data
    for i, part in enumerate(parts):
        key: Any = int(part) if part.isdigit() else part
        last = i == len(parts) - 1
        try:
            if last:
                if isinstance(node, dict) or (isinstance(node, list) and key < len(node)):
                    node[key] = value
                    return
                raise KeyError(key)
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise PolicyError(
                f"{'.'.join(parts[: i + 1])} does not exist", path=f"sweep: {dotted}", file=file
            ) from None


def _resolve(entry: dict[str, Any], path: Path, where: str, notes: list[str]):
    """The policy of one ``policies`` entry: its name, the object and its YAML (None for a
    manifest, whose own durations the importer reads)."""
    if "kind" in entry:
        policy = parse_policy(entry, file=str(path), path=where)
        return policy.name, policy, entry
    ref = validate_model(PolicyRef, entry, file=str(path), path=where)
    raw = None
    if ref.file is not None:
        text = _read_named(path, f"{where}.file", ref.file)
        raw = load_yaml(text, file=str(path.parent / ref.file))
        policy = parse_policy(raw, file=str(path.parent / ref.file))
    else:
        from policies.importers import import_manifests

        given = ref.manifest if isinstance(ref.manifest, list) else [cast(str, ref.manifest)]
        for j, name in enumerate(given):
            field = (
                f"{where}.manifest[{j}]" if isinstance(ref.manifest, list) else f"{where}.manifest"
            )
            _read_named(path, field, name)
        try:
            files = [path.parent / f for f in given]
            policy = import_manifests(files, mapping=ref.map or None).policy
        except PolicyError as exc:
            raise PolicyError(
                exc.message, path=exc.path or where, file=exc.file or str(path), more=exc.more
            ) from None
    if ref.name is not None:
        policy = policy.model_copy(update={"name": ref.name})
    if ref.replicas is not None:
        own = getattr(policy, "replicas", None)
        if own is not None and own != ref.replicas:
            notes.append(
                f"{policy.name}: runs on {ref.replicas} replicas ({where}.replicas), not its"
                f" own {own}"
            )
        policy = policy.model_copy(update={"replicas": ref.replicas})
    return policy.name, policy, raw


def _read_named(scenario: Path, field: str, given: str) -> str:
    """The text of a file a scenario names; if it cannot be read, the error names the
    scenario, the field that named the file and the path it was looked for at."""
    target = scenario.parent / given
    try:
        return read_text_file(target)
    except PolicyError as exc:
        raise PolicyError(f"{target}: {exc.message}", path=field, file=str(scenario)) from None


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema of scenario files (policies inline by kind, or by file/manifest)."""
    return copy.deepcopy(_scenario_schema())


@functools.cache
def _scenario_schema() -> dict[str, Any]:
    from pydantic import TypeAdapter

    from policies.loading import Policy

    schema = Scenario.model_json_schema(by_alias=True, mode="validation")
    policy_schema = TypeAdapter(Policy).json_schema(
        by_alias=True, mode="validation", ref_template="#/$defs/{model}"
    )
    ref_schema = PolicyRef.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    defs.update(policy_schema.pop("$defs", {}))
    defs.update(ref_schema.pop("$defs", {}))
    defs["PolicyRef"] = ref_schema
    defs["InlinePolicy"] = policy_schema
    schema["properties"]["policies"]["items"] = {
        "anyOf": [{"$ref": "#/$defs/InlinePolicy"}, {"$ref": "#/$defs/PolicyRef"}]
    }
    schema["title"] = "rolloutsim scenario"
    return schema
