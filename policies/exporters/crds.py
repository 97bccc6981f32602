"""Validation of exported custom resources against the executors' own CRD schemas.

The schemas are the ``openAPIV3Schema`` of the executors' CRDs (Argo Rollouts, Flagger, Istio),
shipped unchanged with the package in ``policies/exporters/schemas/`` with their licences and
sources (``SOURCE.md``), so ``export`` validates from an installed wheel anywhere;
``$ROLLOUTSIM_ANCHORS`` points at another copy instead (for example newer CRDs). A missing folder
or file raises ``AnchorsMissingError``: a check that cannot run must never pass.

Two things are stricter than plain JSON Schema on the CRD, because the apiserver would silently
*prune* what this module rejects and an exported setting would vanish without a word: an
unknown field is an error (unless the schema preserves unknown fields), and ``int32``/``int64``
values must fit. ``nullable`` and ``x-kubernetes-int-or-string`` keep their Kubernetes meaning.
Every error is reported, not only the first.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from policies.errors import RolloutsimError
from policies.names import DNS1123_SUBDOMAIN

__all__ = [
    "ANCHORS_ENV",
    "CRD_FILES",
    "SCHEMAS_DIR",
    "AnchorsMissingError",
    "CRDValidationError",
    "anchors_dir",
    "check",
    "schema_for",
    "validate",
    "validate_all",
]

ANCHORS_ENV = "ROLLOUTSIM_ANCHORS"

CRD_FILES: dict[tuple[str, str], str] = {
    ("argoproj.io", "Rollout"): "argo-rollouts/rollout-crd.yaml",
    ("argoproj.io", "AnalysisTemplate"): "argo-rollouts/analysis-template-crd.yaml",
    ("argoproj.io", "ClusterAnalysisTemplate"): "argo-rollouts/cluster-analysis-template-crd.yaml",
    ("argoproj.io", "AnalysisRun"): "argo-rollouts/analysis-run-crd.yaml",
    ("flagger.app", "Canary"): "flagger/crd.yaml",
    ("flagger.app", "MetricTemplate"): "flagger/crd.yaml",
    ("flagger.app", "AlertProvider"): "flagger/crd.yaml",
    ("networking.istio.io", "VirtualService"): "istio/crd-all.gen.yaml",
    ("networking.istio.io", "DestinationRule"): "istio/crd-all.gen.yaml",
}
"""(API group, kind) -> CRD file under the anchors folder."""

_INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class AnchorsMissingError(RolloutsimError):
    """The CRD schemas cannot be found: validation cannot run, so it must not pass."""


class CRDValidationError(RolloutsimError):
    """One or more exported objects do not validate; ``errors`` lists every problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} CRD validation error(s):\n  " + "\n  ".join(errors))


SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
"""The CRDs shipped with the package (package data)."""


def anchors_dir() -> Path:
    """The CRD folder: ``$ROLLOUTSIM_ANCHORS`` if set, else the package's own ``schemas/``."""
    env = os.environ.get(ANCHORS_ENV)
    path, where = (Path(env), f"${ANCHORS_ENV}={env}") if env else (SCHEMAS_DIR, str(SCHEMAS_DIR))
    if not path.is_dir():
        raise AnchorsMissingError(
            f"CRD schemas folder not found ({where}): set {ANCHORS_ENV} to a folder holding"
            " argo-rollouts/, flagger/ and istio/, or reinstall rolloutsim"
        )
    return path


@lru_cache(maxsize=8)
def _crd_documents(path: str) -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as handle:
        return tuple(d for d in yaml.load_all(handle, Loader=loader) if d)


def _load_crd(group: str, kind: str) -> dict[str, Any]:
    try:
        relative = CRD_FILES[(group, kind)]
    except KeyError:
        raise CRDValidationError([f"no CRD known for {group} {kind}"]) from None
    path = anchors_dir() / relative
    if not path.is_file():
        raise AnchorsMissingError(f"CRD file missing: {path}")
    for doc in _crd_documents(str(path)):
        spec = doc.get("spec") or {}
        if spec.get("group") == group and (spec.get("names") or {}).get("kind") == kind:
            return doc
    raise AnchorsMissingError(f"{path} holds no CRD for {group} {kind}")


def _strict(schema: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema that refuses what the apiserver prunes."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=16)
def _validator(api_version: str, kind: str) -> jsonschema.Validator:
    group, _, version = api_version.rpartition("/")
    crd = _load_crd(group, kind)
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            if not entry.get("served", True):
                raise CRDValidationError([f"{api_version} {kind} is not served"])
            schema = copy.deepcopy(entry["schema"]["openAPIV3Schema"])
            break
    else:
        known = ", ".join(v["name"] for v in crd["spec"]["versions"])
        raise CRDValidationError([f"{kind}: version {version!r} not in the CRD ({known})"])
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN.pattern},
            "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_SUBDOMAIN.pattern},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schema.setdefault("required", [])
    schema["required"] = sorted({*schema["required"], "apiVersion", "kind", "metadata"})
    checker = jsonschema.FormatChecker(formats=())
    for name, (low, high) in _INT_RANGE.items():
        checker.checks(name)(
            lambda v, lo=low, hi=high: (
                not isinstance(v, int) or isinstance(v, bool) or lo <= v <= hi
            )
        )
    cls = jsonschema.Draft7Validator
    return cls(_strict(schema), format_checker=checker)


def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    """The (strict) JSON Schema an object of this kind is checked against."""
    return _validator(api_version, kind).schema


def _path(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown field(s) {', '.join(extra)} (the apiserver would drop them)"
    if error.validator == "oneOf":
        forms = [sorted(branch.get("required", [])) or branch for branch in error.validator_value]
        how = "none" if error.context else "more than one"
        return f"matches {how} of the exclusive forms {forms}"[:400]
    return error.message[:400]


def validate(obj: dict[str, Any]) -> list[str]:
    """Every problem of one custom resource as ``Kind/name: path: message`` ([] = valid)."""
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    name = (obj.get("metadata") or {}).get("name", "?")
    label = f"{kind}/{name}"
    if not isinstance(kind, str) or not isinstance(api_version, str) or "/" not in api_version:
        return [f"{label}: apiVersion (group/version) and kind are required"]
    try:
        validator = _validator(api_version, kind)
    except CRDValidationError as exc:
        return [f"{label}: {e}" for e in exc.errors]
    found = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{label}: {_path(e)}: {_message(e)}" for e in found]


def validate_all(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Every problem of every custom resource in ``objects``."""
    return [error for obj in objects for error in validate(obj)]


def check(objects: Iterable[dict[str, Any]]) -> None:
    """Raise ``CRDValidationError`` listing every problem, if there is any."""
    errors = validate_all(objects)
    if errors:
        raise CRDValidationError(errors)
