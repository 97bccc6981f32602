"""Offline validation of the core Kubernetes objects the exporters write (Deployment, Service,
Ingress), so a malformed manifest fails in the test suite instead of at ``kubectl apply``.

It uses the OpenAPI-derived JSON schemas that ``kubernetes_validate`` ships, in strict mode (an
unknown field is an error, as with ``kubectl apply --validate=strict``), pinned to one Kubernetes
version, and reports every error, not only the first. A few apiserver rules no schema carries
(object names, label values, a Deployment's selector matching its pod labels, maxSurge and
maxUnavailable not both 0) are checked as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import jsonschema
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

from policies.names import DNS1123_SUBDOMAIN

__all__ = ["KUBERNETES_VERSION", "validate", "validate_all"]

KUBERNETES_VERSION = "1.33.0"
"""The schema set used: a release every managed offering still supports (CCE, GKE, EKS, AKS)."""

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@lru_cache(maxsize=16)
def _validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator | None:
    """The strict schema of one kind (``kubernetes_validate``'s layout and registry)."""
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
    try:
        schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        return None
    defs = kv.schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def _semantic(obj: dict[str, Any]) -> list[str]:
    """apiserver validation rules that are not in the OpenAPI schema."""
    errors = []
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        errors.append("metadata.name: is required")
    elif kind == "Service" and (len(name) > 63 or not _DNS1035_LABEL.fullmatch(name)):
        errors.append(f"metadata.name: {name!r} is not a DNS-1035 label (a Service name)")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        errors.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    labels = [("metadata.labels", meta.get("labels") or {})]
    spec = obj.get("spec") or {}
    if kind == "Deployment":
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        labels.append(("spec.template.metadata.labels", template_labels))
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        for key, value in selector.items():
            if template_labels.get(key) != value:
                errors.append(
                    f"spec.template.metadata.labels: selector {key}={value} does not match the"
                    " pod labels"
                )
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        if rolling.get("maxSurge") in (0, "0%") and rolling.get("maxUnavailable") in (0, "0%"):
            errors.append(
                "spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0"
            )
    if kind == "Service":
        labels.append(("spec.selector", spec.get("selector") or {}))
    for where, mapping in labels:
        for key, value in mapping.items():
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                errors.append(f"{where}.{key}: {value!r} is not a valid label value")
    return errors


def validate(obj: dict[str, Any]) -> list[str]:
    """Every problem of one object, as ``Kind/name: path: message`` strings ([] = valid)."""
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    name = (obj.get("metadata") or {}).get("name", "?")
    label = f"{kind}/{name}"
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return [f"{label}: apiVersion and kind are required"]
    validator = _validator(kind, api_version)
    if validator is None:
        return [f"{label}: no Kubernetes {KUBERNETES_VERSION} schema for {api_version} {kind}"]
    found = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    errors = [f"{label}: {_where(e)}: {e.message}" for e in found]
    return errors + [f"{label}: {message}" for message in _semantic(obj)]


def validate_all(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Every problem of every object (the core kinds only; pass CRD objects elsewhere)."""
    return [error for obj in objects for error in validate(obj)]
