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

from policies.base import brief, load_yaml, read_text_file
from policies.errors import PolicyError
from policies.gate_ranges import unit_mixups
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
from policies.importers.prune import PRUNED, check_object, crd_name

__all__ = [
    "MAP_SYNTAX",
    "Context",
    "ImportResult",
    "Manifests",
    "import_manifests",
    "is_path",
    "load_mapping",
    "map_hint",
    "parse_map",
]


_ARGO_KINDS = ("Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate")
_KINDS = (*_ARGO_KINDS, "Canary", "MetricTemplate")
_GROUPS = ("argoproj.io", "flagger.app")


@dataclass
class ImportResult:
    """The imported policy, the field paths deliberately ignored, and notes worth reading."""

    policy: Any
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_path(source: Any) -> bool:
    """Whether a manifest source names a file (a ``Path``, or one line with a suffix and no
    ``key:`` before its first ``/``) rather than holding YAML text."""
    if isinstance(source, Path):
        return True
    text = str(source)
    return "\n" not in text and ":" not in text.split("/")[0] and bool(Path(text).suffix)


def _texts(source: Any) -> list[tuple[str, str | None]]:
    if isinstance(source, list | tuple):
        return [t for item in source for t in _texts(item)]
    if is_path(source):
        return [(read_text_file(Path(source)), str(source))]
    return [(str(source), None)]


def _collect(source: Any) -> Manifests:
    out = Manifests()
    for text, file in _texts(source):
        out.sources.append(file)
        docs = load_yaml(text, file=file, multi=True)
        stack = list(docs)
        while stack:
            doc = stack.pop(0)
            if not isinstance(doc, dict):
                raise PolicyError("a manifest is a mapping with apiVersion and kind", file=file)
            if doc.get("kind") == "List":
                items = doc.get("items") or []
                if not isinstance(items, list):
                    raise PolicyError(
                        f"{brief(items)} is not a list", path="List: items", file=file
                    )
                stack[:0] = items
                continue
            kind = doc.get("kind")
            group = str(doc.get("apiVersion", "")).rpartition("/")[0]
            meta = doc.get("metadata") or {}
            if not isinstance(meta, dict):
                raise PolicyError("is not a mapping", path=f"{kind}: metadata", file=file)
            name = str(meta.get("name", ""))
            if group in _GROUPS and kind in _KINDS:  # what the executor sees of it
                checked = check_object(doc)
                doc = checked.doc
                out.dropped[f"{kind}/{name}"] = checked.dropped
                out.typos[f"{kind}/{name}"] = checked.typos
                out.files[f"{kind}/{name}"] = file
                if checked.problem:
                    out.invalid[f"{kind}/{name}"] = checked.problem
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


def _label(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def _choose(found: Manifests, name: str | None, ctx: Context) -> tuple[dict, str | None]:
    """The one Rollout or Canary to import: the only one, or the one named ``name``."""
    candidates = [*found.rollouts, *found.canaries]
    if name is not None:
        chosen = [c for c in candidates if (c[0].get("metadata") or {}).get("name") == name]
        listed = ", ".join(_label(d) for d, _ in candidates) or "none"
        if not chosen:
            raise PolicyError(f"no Rollout or Canary named {name!r} (found: {listed})")
        if len(chosen) > 1:
            raise PolicyError(f"{len(chosen)} rollout objects are named {name!r} ({listed})")
        for doc, _ in candidates:
            if doc is not chosen[0][0]:
                ctx.ignored.append(f"{_label(doc)}: not the one chosen by name")
        return chosen[0]
    if len(candidates) != 1:
        if not candidates:
            read = [f for f in found.sources if f is not None]
            raise PolicyError(
                "found no Argo Rollout or Flagger Canary: import exactly one Rollout or Canary"
                " at a time",
                file=", ".join(read) or None,
            )
        listed = ", ".join(_label(d) for d, _ in candidates)
        raise PolicyError(
            f"found {len(candidates)} rollout objects ({listed}): pick one with --name NAME"
            " (import_manifests(..., name=NAME))"
        )
    return candidates[0]


def _pruned_hint(exc: PolicyError, found: Manifests) -> PolicyError:
    """An error at or above a pruned field says so: the executor never saw the field."""
    label, _, path = exc.path.partition(": ")
    near = [p for p in found.dropped.get(label, []) if path and p.startswith(path)]
    if not near:
        return exc
    what = f"{near[0]} is {PRUNED.format(crd=_crd(label))}"
    return PolicyError(f"{exc.message} ({what})", path=exc.path, file=exc.file)


def _typo_problem(found: Manifests, objects: tuple, file: str | None) -> PolicyError | None:
    """A misspelt field of the first of ``objects`` (``Kind/name``) that has one, in the file
    that object came from: the executor would run the default of the field meant."""
    for read in objects:
        for path, meant in found.typos.get(read, {}).items():
            return PolicyError(
                f"unknown field, did you mean {meant}? (the API server drops it, leaving"
                f" {meant} at its default; kubectl's strict field validation refuses the file)",
                path=f"{read}: {path}",
                file=found.files.get(read, file),
            )
    return None


def _crd_problem(found: Manifests, objects: tuple, file: str | None) -> PolicyError | None:
    """A misspelt field of ``objects``, else the CRD's rule the first of them breaks, if any."""
    problem = _typo_problem(found, objects, file)
    for read in objects:
        if problem is None and read in found.invalid:
            problem = PolicyError(found.invalid[read], path=read, file=found.files.get(read, file))
    return problem


def _in_its_file(exc: PolicyError, found: Manifests) -> PolicyError:
    """An error about a template names the template's file, not the Rollout's."""
    label = exc.path.partition(": ")[0]
    file = found.files.get(label, exc.file)
    if file == exc.file:
        return exc
    return PolicyError(exc.message, path=exc.path, file=file)


def _noted_with_file(note: str, found: Manifests, main: str | None) -> str:
    """A note about an object of another file than the Rollout's says which."""
    label, sep, rest = note.partition(": ")
    head, space, tail = label.partition(" ")  # "AnalysisTemplate/x metric y: ..."
    file = found.files.get(head)
    if not sep or file is None or file == main:
        return note
    return f"{head} (in {file}){space}{tail}{sep}{rest}"


def _crd(label: str) -> str:
    """Argo or Flagger, by the kind in ``Kind/name``."""
    return crd_name("argoproj.io" if label.split("/")[0] in _ARGO_KINDS else "flagger.app")


def import_manifests(
    text_or_path: Any, *, mapping: Any = None, name: str | None = None
) -> ImportResult:
    """The policy of the one Argo ``Rollout`` or Flagger ``Canary`` in ``text_or_path`` (or of
    the one named ``name`` among several).

    ``text_or_path``: YAML text, a path, or a list of them. ``mapping``: see ``load_mapping``.
    Each object is read as the API server stores it: pruned to its CRD (each dropped path is
    noted) and refused if it breaks the CRD's schema otherwise.
    """
    found = _collect(text_or_path)
    ctx = Context(found, load_mapping(mapping))
    doc, ctx.file = _choose(found, name, ctx)
    label = _label(doc)
    try:
        if doc.get("kind") == "Rollout":
            policy = import_rollout(doc, ctx)
        else:
            policy = import_canary(doc, ctx)
    except PolicyError as exc:  # a misspelt field read so far is the likelier cause
        typo = _typo_problem(found, (label, *sorted(ctx.read)), ctx.file)
        raise typo or _in_its_file(_pruned_hint(exc, found), found) from None
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
        # a field of the wrong shape the importer met before the CRD check: say the CRD's rule
        problem = _crd_problem(found, (label, *sorted(ctx.read)), ctx.file)
        raise problem or PolicyError(
            f"a field has a shape neither the CRD nor rolloutsim reads ({type(exc).__name__})",
            path=ctx.label or label,
            file=ctx.file,
        ) from None
    # what the importer accepted must pass the CRD too (its own errors, more precise, first)
    objects = (label, *sorted(ctx.read))
    problem = _crd_problem(found, objects, ctx.file)
    if problem is not None:
        raise problem
    for where in objects:
        for path in found.dropped.get(where, []):
            ctx.notes.append(f"{where}: {path}: {PRUNED.format(crd=_crd(where))}")
    for other in found.others:
        name = (other.get("metadata") or {}).get("name", "?")
        ctx.ignored.append(f"{other.get('kind')}/{name}: not a rollout object")
    unused = sorted(set(ctx.mapping) - ctx.used)
    if unused:
        ctx.notes.append(f"mapping for {', '.join(unused)} matched no metric")
    ctx.notes += unit_mixups(policy)
    notes = [_noted_with_file(note, found, ctx.file) for note in ctx.notes]
    notes = list(dict.fromkeys(notes))  # a template used several times says it once
    return ImportResult(policy, ctx.ignored, notes)
