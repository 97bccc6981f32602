"""What the API server keeps of a custom resource: structural pruning, then the CRD's schema.

Kubernetes drops every field a CRD's ``openAPIV3Schema`` does not declare (unless the schema
says ``x-kubernetes-preserve-unknown-fields``) before storing the object, so the executor never
sees it; ``kubectl apply`` with strict field validation (its default since 1.27) refuses the
file instead. The importer reads what the executor reads: it prunes each Rollout, analysis
template, Canary and MetricTemplate against its shipped CRD (``policies.exporters.crds``) and
notes each dropped path, rather than refusing a field the executor would never see (old
examples' ``analysis.name``, ``trafficManagement``, ``maxFailures``). A dropped key that is a
near miss of a declared one (``maxweight``, ``failurLimit``) is a typo, not an old field: the
executor would run the default in its place, so the importer refuses it, naming the field
meant. What is left must then validate against the schema (types, enums, required fields), as
the API server checks it.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

from policies.base import FlowKey
from policies.exporters import crds

__all__ = ["PRUNED", "Checked", "check_object", "crd_name"]

PRUNED = (
    "not in {crd}'s CRD: the API server drops it, and kubectl's strict field validation"
    " refuses the file"
)
"""The note for each pruned path (``crd``: Argo or Flagger)."""

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_CRD_OF = {"argoproj.io": "Argo", "flagger.app": "Flagger"}
_ROOT = ("apiVersion", "kind", "metadata")


class Checked:
    """One object after pruning: the document the executor sees, the dropped paths (and of
    them the near misses of a declared field: path -> that field), and the first schema
    violation left (None: valid)."""

    def __init__(
        self, doc: dict, dropped: list[str], problem: str | None, typos: dict[str, str]
    ) -> None:
        self.doc, self.dropped, self.problem, self.typos = doc, dropped, problem, typos


@lru_cache(maxsize=16)
def _schema(api_version: str, kind: str) -> dict[str, Any] | None:
    group, _, version = api_version.rpartition("/")
    try:
        crd = crds._load_crd(group, kind)
    except crds.RolloutsimError:
        return None
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    return None


def _path(parent: str, key: Any) -> str:
    return f"{parent}[{key}]" if isinstance(key, int) else f"{parent}.{key}" if parent else str(key)


def _near_miss(key: str, declared) -> str | None:
    """The declared field ``key`` misspells: the same but for case, or close by difflib."""
    folded = {name.lower(): name for name in declared}
    if key.lower() in folded:
        return folded[key.lower()]
    close = difflib.get_close_matches(key, list(declared), n=1, cutoff=0.8)
    return close[0] if close else None


def _prune(value: Any, schema: dict, path: str, dropped: list[str], typos: dict) -> Any:
    """``value`` without the fields ``schema`` does not declare (Kubernetes' pruning rules)."""
    kind = schema.get("type")
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict) and kind in (None, "array"):
            return [_prune(v, items, _path(path, i), dropped, typos) for i, v in enumerate(value)]
        return value
    if not isinstance(value, dict) or kind not in (None, "object"):
        return value  # a wrong type is the schema's to refuse, not pruning's to empty
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    out = {}
    for key, item in value.items():
        if isinstance(key, FlowKey):  # an unquoted {{...}}: the importer refuses it if read
            out[key] = item
        elif key in props:
            out[key] = _prune(item, props[key], _path(path, key), dropped, typos)
        elif isinstance(extra, dict):
            out[key] = _prune(item, extra, _path(path, key), dropped, typos)
        elif schema.get(_PRESERVE) or extra is True:
            out[key] = item
        else:
            dropped.append(_path(path, key))
            meant = _near_miss(str(key), props)
            if meant is not None and meant not in value:
                typos[_path(path, key)] = meant
    return out


def _placeholder(error: Any) -> bool:
    """An error about an unquoted ``{{...}}`` (a Helm or Argo placeholder, a YAML flow
    mapping): the file is a template, not what the API server is given; where the importer
    reads such a field it refuses it itself, and elsewhere (a pod template) it is ignored."""
    instance = error.instance
    return isinstance(instance, dict) and any(isinstance(k, FlowKey) for k in instance)


def _rule(error: Any) -> str:
    """The CRD rule an error breaks, in words."""
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {error.validator_value}"
    if error.validator == "required":
        return error.message
    if error.validator in ("oneOf", "anyOf") and error.context:  # say why, not the instance
        best = min(error.context, key=lambda e: (len(e.message), e.message))
        return f"fits none of the forms its {error.validator} rule allows ({best.message[:120]})"
    return f"{error.message[:200]} (its {error.validator} rule)"


def check_object(doc: dict) -> Checked:
    """``doc`` as the API server stores it: pruned, then validated on everything but metadata
    (a document without a known CRD is returned unchanged)."""
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    schema = _schema(api_version, kind)
    if schema is None:
        return Checked(doc, [], None, {})
    dropped: list[str] = []
    typos: dict[str, str] = {}
    body = {k: v for k, v in doc.items() if k not in _ROOT}
    pruned = _prune(body, schema, "", dropped, typos)
    out = {**{k: doc[k] for k in _ROOT if k in doc}, **pruned}
    problem = None
    try:
        validator = crds._validator(api_version, kind)
    except crds.RolloutsimError:
        validator = None
    if validator is not None:
        probe = {**out, "metadata": {"name": "x"}}  # metadata is the API server's (ObjectMeta)
        found = (e for e in validator.iter_errors(probe) if not _placeholder(e))
        errors = sorted(found, key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            where = crds._path(errors[0])
            problem = f"{where}: {_rule(errors[0])}, by {crd_name(api_version)}'s CRD"
    return Checked(out, dropped, problem, typos)


def crd_name(group: str) -> str:
    """Argo or Flagger, by API group (or apiVersion)."""
    key = group.partition("/")[0]
    return _CRD_OF.get(key, key)
