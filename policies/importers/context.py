"""What one import collects on its way, shared by the Argo and Flagger importers.

``Context`` carries the objects found (``Manifests``), the explicit metric mapping, and the
report (fields ignored on purpose, notes); it labels every error with the object and field.
The mapping of metrics the importer cannot recognise comes from ``load_mapping`` (a dict, a
list of ``METRIC=measure:version[:quantile]`` or a YAML file) and ``map_hint`` says how to
give one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.base import read_yaml_file
from policies.errors import PolicyError
from policies.measures import Query

__all__ = ["MAP_SYNTAX", "Context", "Manifests", "load_mapping", "map_hint", "parse_map"]

MAP_SYNTAX = "--map METRIC=measure:version[:quantile]"
"""How the CLI takes an explicit mapping (measures successRate, errorRate, latency,
requestCount; versions canary, stable; quantile for latency, default 0.99)."""


@dataclass
class Manifests:
    """Objects of one import, by kind, with the file each came from."""

    rollouts: list[tuple[dict, str | None]] = field(default_factory=list)
    canaries: list[tuple[dict, str | None]] = field(default_factory=list)
    analysis_templates: dict[tuple[str, str], dict] = field(default_factory=dict)
    metric_templates: dict[tuple[str, str], dict] = field(default_factory=dict)
    others: list[dict] = field(default_factory=list)
    order: list[tuple[str, str]] = field(default_factory=list)


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

    def open(self, doc: dict, kind: str) -> tuple[dict, dict]:
        """Start on a ``kind`` object: label it by name, note its metadata other than the name
        as ignored; returns (metadata, spec)."""
        meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
        self.label = f"{kind}/{meta.get('name')}"
        for key in sorted(set(meta) - {"name"}):
            self.ignore(f"metadata.{key}")
        return meta, spec

    def ignore(self, path: str, label: str | None = None) -> None:
        self.ignored.append(f"{label or self.label}: {path}")

    def error(self, path: str, message: str, label: str | None = None) -> PolicyError:
        return PolicyError(message, path=f"{label or self.label}: {path}", file=self.file)

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
        f" `{MAP_SYNTAX}` (e.g. --map {metric}=errorRate:canary or"
        f" --map {metric}=latency:canary:0.95; measures successRate, errorRate, latency,"
        " requestCount; versions canary, stable), or from Python"
        f" mapping={{{metric!r}: Query(measure=..., version=...)}}"
    )


def parse_map(text: str) -> tuple[str, Query]:
    """``METRIC=measure:version[:quantile]`` -> (metric, Query)."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip():
        raise PolicyError(f"{text!r} is not {MAP_SYNTAX}")
    return name.strip(), _query(spec.strip(), name.strip())


def _query(value: Any, name: str) -> Query:
    if isinstance(value, Query):
        return value
    try:
        if isinstance(value, dict):
            return Query.model_validate(value)
        parts = str(value).split(":")
        if len(parts) > 3 or not parts[0]:
            raise ValueError("too many or too few parts")
        fields: dict[str, Any] = {"measure": parts[0]}
        if len(parts) > 1:
            fields["version"] = parts[1]
        if len(parts) > 2:
            fields["quantile"] = float(parts[2])
        return Query.model_validate(fields)
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0]
        raise PolicyError(
            f"mapping {name}: {value!r} is not measure:version[:quantile] ({message})"
        ) from None


def load_mapping(mapping: Any) -> dict[str, Query]:
    """A mapping from a dict (values Query, dict or "measure:version[:quantile]"), a list of
    ``METRIC=...`` strings, or a YAML file of ``metric: measure:version[:quantile]``."""
    if mapping is None:
        return {}
    if isinstance(mapping, str | Path):
        mapping = read_yaml_file(mapping)
        if not isinstance(mapping, dict):
            raise PolicyError("a mapping file is metric: measure:version[:quantile] lines")
    if isinstance(mapping, list | tuple):
        return dict(parse_map(item) for item in mapping)
    return {str(k): _query(v, str(k)) for k, v in dict(mapping).items()}
