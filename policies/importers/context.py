"""What one import collects on its way, shared by the Argo and Flagger importers.

``Context`` carries the objects found (``Manifests``), the explicit metric mapping, and the
report (fields ignored on purpose, notes); it labels every error with the object and field.
The mapping of metrics the importer cannot recognise comes from ``load_mapping`` (a dict, a
list of ``METRIC=measure:version[:quantile][:unit]`` or a YAML file; a scenario's ``map:`` goes
through the same parser) and ``map_hint`` says how to give one. The unit is the scale the
manifest's query returns (``percent`` or ``fraction`` for a rate, ``ms`` or ``s`` for a
latency): the metric's conditions and thresholds are then compared in it, as the executor does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policies.base import brief, read_yaml_file
from policies.errors import PolicyError
from policies.measures import Query
from policies.names import check_name

__all__ = ["MAP_SYNTAX", "Context", "Manifests", "load_mapping", "map_hint", "parse_map"]

MAP_SYNTAX = "--map METRIC=measure:version[:quantile][:unit]"
"""How the CLI takes an explicit mapping (measures successRate, errorRate, latency,
requestCount; versions canary, stable; quantile for latency, default 0.99; unit percent or
fraction for a rate, ms or s for a latency, default fraction and s)."""
_SPEC = "measure:version[:quantile][:unit]"
_UNIT_NAMES = {
    "fraction": "fraction",
    "percent": "percent",
    "%": "percent",
    "seconds": "seconds",
    "s": "seconds",
    "milliseconds": "milliseconds",
    "ms": "milliseconds",
}
"""The unit spellings a mapping accepts, and the ``Query.unit`` each stands for."""


@dataclass
class Manifests:
    """Objects of one import, by kind, with the file each came from."""

    rollouts: list[tuple[dict, str | None]] = field(default_factory=list)
    canaries: list[tuple[dict, str | None]] = field(default_factory=list)
    analysis_templates: dict[tuple[str, str], dict] = field(default_factory=dict)
    metric_templates: dict[tuple[str, str], dict] = field(default_factory=dict)
    others: list[dict] = field(default_factory=list)
    order: list[tuple[str, str]] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    """Per object (``Kind/name``): the paths the API server prunes (not in the CRD)."""
    invalid: dict[str, str] = field(default_factory=dict)
    """Per object: the first rule of its CRD's schema it breaks, once pruned."""
    typos: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per object: its dropped paths that misspell a declared field (path -> that field)."""
    files: dict[str, str | None] = field(default_factory=dict)
    """Per object: the file it came from (None: given as text)."""
    sources: list[str | None] = field(default_factory=list)
    """Every file read, in order (None: a text)."""


@dataclass
class Context:
    """What one import collects on its way: the objects, the mapping, and the report."""

    manifests: Manifests
    mapping: dict[str, Query]
    label: str = ""
    file: str | None = None
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    read: set[str] = field(default_factory=set)
    """The templates read (``Kind/name``): their pruned fields are noted, their CRD checked."""

    def open(self, doc: dict, kind: str) -> tuple[dict, dict]:
        """Start on a ``kind`` object: label it by name, note its metadata other than the name
        as ignored; returns (metadata, spec)."""
        meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
        self.label = f"{kind}/{meta.get('name') if isinstance(meta, dict) else '?'}"
        for where, value in (("metadata", meta), ("spec", spec)):
            if not isinstance(value, dict):
                raise self.error(where, f"{brief(value)} is not a mapping")
        try:  # the API server refuses any other name (an example's placeholder, upper case)
            check_name(meta.get("name"), "metadata.name")
        except PolicyError as exc:
            raise self.error("metadata.name", exc.message) from None
        for key in sorted(set(meta) - {"name"}):
            self.ignore(f"metadata.{key}")
        return meta, spec

    def ignore(self, path: str, label: str | None = None) -> None:
        self.ignored.append(f"{label or self.label}: {path}")

    def error(self, path: str, message: str, label: str | None = None) -> PolicyError:
        return PolicyError(message, path=f"{label or self.label}: {path}", file=self.file)

    def check_scale(self, metric: str, query: Query, bounds: Sequence[float | None]) -> None:
        """Note a mapped rate or latency compared with numbers beyond its unit (99 with a
        fraction, 500 with seconds): the query likely returns percent or ms, unsaid in the map."""
        big = max((b for b in bounds if b is not None), default=0.0)
        limit = {"fraction": 1.0, "seconds": 60.0}.get(str(query.scale))
        if limit is not None and big > limit:
            other = "percent" if query.scale == "fraction" else "ms"
            self.notes.append(
                f"metric {metric}: its conditions compare with {big:g}, not a {query.scale}"
                f" value: add :{other} to the mapping if the query returns it"
            )

    def mapped(self, *keys: str) -> Query | None:
        for key in keys:
            if key in self.mapping:
                self.used.add(key)
                return self.mapping[key]
        return None


def map_hint(metric: str | None, why: str) -> str:
    """The refusal for a metric the importer cannot map, saying how to map it (None: the
    manifest names no metric)."""
    return (
        f"metric {metric!r}: {why}; map it to a simulated query with"
        f" `{MAP_SYNTAX}` or a scenario's `map:` (e.g. --map {metric}=errorRate:canary,"
        f" --map {metric}=successRate:canary:percent or --map {metric}=latency:canary:0.95:ms;"
        " measures successRate, errorRate, latency, requestCount; versions canary, stable;"
        " the unit the query returns: fraction or percent, s or ms, conditions being compared"
        f" in it), or from Python mapping={{{metric!r}: Query(measure=..., version=...)}}"
    )


def parse_map(text: str) -> tuple[str, Query]:
    """``METRIC=measure:version[:quantile][:unit]`` -> (metric, Query)."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip():
        raise PolicyError(f"{text!r} is not {MAP_SYNTAX}")
    return name.strip(), _query(spec.strip(), name.strip())


def _query(value: Any, name: str) -> Query:
    if isinstance(value, Query):
        return value
    try:
        if isinstance(value, dict):
            data = dict(value)
            if isinstance(data.get("unit"), str):
                data["unit"] = _UNIT_NAMES.get(data["unit"], data["unit"])
            return Query.model_validate(data)
        return Query.model_validate(_fields(str(value)))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = (f"{where}: " if where else "") + error["msg"].removeprefix("Value error, ")
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0]
    raise PolicyError(f"mapping {name}: {value!r} is not {_SPEC} ({message})")


def _fields(text: str) -> dict[str, Any]:
    """The fields of ``measure:version[:quantile][:unit]``: after the version, a number is the
    quantile and a name the unit (``latency:canary:ms`` keeps the default quantile)."""
    parts = text.split(":")
    if len(parts) > 4 or not parts[0]:
        raise ValueError("too many or too few parts")
    fields: dict[str, Any] = {"measure": parts[0]}
    if len(parts) > 1:
        fields["version"] = parts[1]
    for part in parts[2:]:
        key = "unit" if part in _UNIT_NAMES else "quantile"
        if key in fields:
            raise ValueError(f"{key} given twice")
        fields[key] = _UNIT_NAMES[part] if key == "unit" else _number(part)
    return fields


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        units = ", ".join(_UNIT_NAMES)
        raise ValueError(f"{text!r} is neither a quantile nor a unit ({units})") from None


def load_mapping(mapping: Any) -> dict[str, Query]:
    """A mapping from a dict (values Query, dict or "measure:version[:quantile][:unit]"), a list
    of ``METRIC=...`` strings, or a YAML file of ``metric: measure:version[:quantile][:unit]``."""
    if mapping is None:
        return {}
    if isinstance(mapping, str | Path):
        mapping = read_yaml_file(mapping)
        if not isinstance(mapping, dict):
            raise PolicyError(f"a mapping file is metric: {_SPEC} lines")
    if isinstance(mapping, list | tuple):
        return dict(parse_map(item) for item in mapping)
    return {str(k): _query(v, str(k)) for k, v in dict(mapping).items()}
