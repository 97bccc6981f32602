"""Live executors' manifests in, policies out: Argo Rollouts and Flagger.

``import_manifests`` reads one or more YAML files or texts (multi-document; AnalysisTemplates,
ClusterAnalysisTemplates and MetricTemplates may sit beside the Rollout or Canary or come in
separate files), finds the one Rollout or Flagger Canary and returns the policy with every
field that affects timing or traffic; an Argo AnalysisTemplate the Rollout does not reference
is listed as ignored, not read. Fields that do not (names, labels, annotations, pod
templates, images, addresses) are ignored on purpose and listed in ``ImportResult.ignored``;
anything the simulator cannot model is refused with a ``PolicyError`` naming the field.

Metrics become simulated queries when their PromQL has a recognised form
(``policies.exporters.promql``). Any other metric needs an explicit mapping, by metric name
(or ``template/metric``): ``mapping={"p95": Query(measure="latency", quantile=0.95)}``, the
CLI's ``--map p95=latency:canary:0.95``, or a YAML file of ``name: measure:version[:quantile]``.

Round trip conventions (``export`` then ``import`` gives the policy back): the policy's name is
the object's name (export with ``Target(service=policy.name)``) and its replicas the Rollout's
(Flagger: the target Deployment's) ``replicas``, so give the policy or the target a replica
count. A query window equal to the metric's interval reads back as None (the same window);
a bare ``result`` in a condition reads back as ``result[0]``; ``<name>-`` is stripped from
template names; a maxSurge string without "%" gains it (Argo reads any string as a percentage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.base import load_yaml
from policies.errors import PolicyError
from policies.importers.argo import import_rollout
from policies.importers.context import (
    MAP_SYNTAX,
    Context,
    Manifests,
    load_mapping,
    map_hint,
    parse_map,
)
from policies.importers.flagger import import_canary

__all__ = [
    "MAP_SYNTAX",
    "Context",
    "ImportResult",
    "Manifests",
    "import_manifests",
    "load_mapping",
    "map_hint",
    "parse_map",
]


@dataclass
class ImportResult:
    """The imported policy, the field paths deliberately ignored, and notes worth reading."""

    policy: Any
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _texts(source: Any) -> list[tuple[str, str | None]]:
    if isinstance(source, list | tuple):
        return [t for item in source for t in _texts(item)]
    if isinstance(source, Path):
        try:
            return [(source.read_text(encoding="utf-8"), str(source))]
        except OSError as exc:
            raise PolicyError(f"cannot read file: {exc.strerror}", file=str(source)) from None
    text = str(source)
    if "\n" not in text and ":" not in text.split("/")[0] and Path(text).suffix:
        return _texts(Path(text))
    return [(text, None)]


def _collect(source: Any) -> Manifests:
    out = Manifests()
    for text, file in _texts(source):
        docs = load_yaml(text, file=file, multi=True)
        stack = list(docs)
        while stack:
            doc = stack.pop(0)
            if not isinstance(doc, dict):
                raise PolicyError("a manifest is a mapping with apiVersion and kind", file=file)
            if doc.get("kind") == "List":
                stack[:0] = doc.get("items") or []
                continue
            kind = doc.get("kind")
            group = str(doc.get("apiVersion", "")).rpartition("/")[0]
            meta = doc.get("metadata") or {}
            if not isinstance(meta, dict):
                raise PolicyError("is not a mapping", path=f"{kind}: metadata", file=file)
            name = str(meta.get("name", ""))
            if group == "argoproj.io" and kind == "Rollout":
                out.rollouts.append((doc, file))
            elif group == "flagger.app" and kind == "Canary":
                out.canaries.append((doc, file))
            elif group == "argoproj.io" and kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
                out.analysis_templates[(kind, name)] = doc
                out.order.append((kind, name))
            elif group == "flagger.app" and kind == "MetricTemplate":
                out.metric_templates[(str(meta.get("namespace", "")), name)] = doc
            else:
                out.others.append(doc)
    return out


def import_manifests(text_or_path: Any, *, mapping: Any = None) -> ImportResult:
    """The policy of the one Argo ``Rollout`` or Flagger ``Canary`` in ``text_or_path``.

    ``text_or_path``: YAML text, a path, or a list of them. ``mapping``: see ``load_mapping``.
    """
    found = _collect(text_or_path)
    ctx = Context(found, load_mapping(mapping))
    total = len(found.rollouts) + len(found.canaries)
    if total != 1:
        what = "no Argo Rollout or Flagger Canary" if not total else f"{total} rollout objects"
        raise PolicyError(f"found {what}: import exactly one Rollout or Canary at a time")
    if found.rollouts:
        doc, ctx.file = found.rollouts[0]
        policy = import_rollout(doc, ctx)
    else:
        doc, ctx.file = found.canaries[0]
        policy = import_canary(doc, ctx)
    for other in found.others:
        name = (other.get("metadata") or {}).get("name", "?")
        ctx.ignored.append(f"{other.get('kind')}/{name}: not a rollout object")
    unused = sorted(set(ctx.mapping) - ctx.used)
    if unused:
        ctx.notes.append(f"mapping for {', '.join(unused)} matched no metric")
    return ImportResult(policy, ctx.ignored, ctx.notes)
