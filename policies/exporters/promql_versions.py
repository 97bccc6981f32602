"""Which version a PromQL selector measures, read from the labels that name what it measures.

A version is read from the label that names it: Flagger's ``-canary``/``-primary`` names (a
Service, cluster, route or workload), its canary pod pattern
``<target>-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)``, Argo's ReplicaSet-hash arguments, ingress-nginx's
``canary`` label, HAProxy's server names; for an application's own metrics (which label names
what is up to the team) any label's value: ``canary`` or ``preview`` in it is the canary,
``stable``, ``primary`` or ``active`` the stable, an unresolved ``{{args.x}}`` by the
argument's name. A selector whose naming labels name both versions or neither (an Istio
``destination_service`` of the whole Service, an nginx query over the whole Ingress) measures
``all``, both versions together.
"""

from __future__ import annotations

import re

__all__ = [
    "ARG",
    "ARG_CANARY_HASH",
    "ARG_NAMESPACE",
    "ARG_SERVICE",
    "ARG_STABLE_HASH",
    "BOTH",
    "GENERIC_FAMILIES",
    "STATUS_LABELS",
    "argo_arg",
    "version_of",
]

ARG_SERVICE, ARG_NAMESPACE = "service-name", "namespace"
ARG_CANARY_HASH, ARG_STABLE_HASH = "canary-hash", "stable-hash"


def argo_arg(name: str) -> str:
    """``{{args.name}}``: an Argo AnalysisTemplate argument, resolved when the run starts."""
    return "{{args." + name + "}}"


_FLAGGER_POD = "-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
"""Flagger's canary pod pattern: one ReplicaSet hash and one pod suffix after the target's name
(the primary's pods carry ``-primary-`` before them, so the anchored regex leaves them out)."""
_END = r"(?=$|[-_.@/(\[\\*+])"
_CANARY = re.compile(r"[-_](canary|preview)" + _END)
_STABLE = re.compile(r"[-_](stable|primary|active)" + _END)
ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
"""An Argo AnalysisTemplate argument, ``{{args.name}}``, as Argo substitutes it."""
_REVISION = re.compile(r"-\d{5}$")
BOTH = frozenset({"canary", "stable"})


def _tag(value: str) -> str | None:
    """canary/stable from a name: a ReplicaSet-hash argument, a -canary/-preview or
    -stable/-primary/-active part (``_`` too: Envoy clusters and Skipper routes), Flagger's
    canary pod pattern, or an unresolved argument whose name says canary or stable/primary."""
    if argo_arg(ARG_CANARY_HASH) in value or _CANARY.search(value):
        return "canary"
    if argo_arg(ARG_STABLE_HASH) in value or _STABLE.search(value):
        return "stable"
    if value.endswith(_FLAGGER_POD):
        return "canary"
    names = " ".join(ARG.findall(value))
    return (
        "canary" if "canary" in names else "stable" if re.search("stable|primary", names) else None
    )


def _alternatives(op: str, value: str) -> list[str]:
    """A regex matcher's top-level alternatives (``a|b``); an equality's one value."""
    return re.split(r"(?<!\\)\|", value) if op == "=~" else [value]


def _tags(op: str, value: str) -> frozenset[str]:
    """The versions a name (or an alternation of names) selects: both when it tells none."""
    out: set[str] = set()
    for part in _alternatives(op, value):
        if _REVISION.search(part):  # one Knative revision: one version, but not which
            return frozenset()
        tag = _tag(part)
        out |= {tag} if tag else BOTH
    return frozenset(out)


_NAME_LABELS = {
    "pod",
    "destination_service_name",
    "destination_pod",
    "envoy_cluster_name",
    "kubernetes_pod_name",
    "service",
    "exported_service",
    "route",
    "proxy",
    "ingress",
    "destination_app",
}
"""Labels whose value names one version's pods, Service, cluster or route (or the whole)."""
_WORKLOAD_LABELS = {"destination_workload", "deployment", "dst_deployment", "destination_name"}
"""Labels naming a workload: Flagger's primary is ``<target>-primary``, the canary ``<target>``."""
_VERSION_LABELS = {"destination_canonical_revision", "destination_version", "server"}
GENERIC_FAMILIES = ("http", "application")
"""Families of application metrics: any label may name the version, any status label count."""
STATUS_LABELS = frozenset(
    {
        "code",
        "status",
        "status_code",
        "response_code",
        "http_status",
        "http_code",
        "http_status_code",
        "status_class",
        "nginx_status_range",
    }
)
"""The labels an application's request counter carries its response status in."""


def _selects(label: str, op: str, value: str, family: str) -> frozenset[str] | None:
    """The versions one matcher lets through; None when its label names nothing measured."""
    if label == "canary" and family == "nginx":  # ingress-nginx's canary label
        if (op, value) in (("!=", ""), ("=~", ".+")) or (op == "=" and value):
            return frozenset({"canary"})
        return frozenset({"stable"}) if (op, value) == ("=", "") else None
    if op not in ("=", "=~") or label in ("le", "namespace") or label in STATUS_LABELS:
        return None
    if label in _NAME_LABELS:
        return _tags(op, value)
    if label == "destination_service":  # host names: their first label
        hosts = [v if v.startswith("{{") else v.split(".")[0] for v in _alternatives(op, value)]
        return _tags(op, "|".join(hosts))
    if label in _WORKLOAD_LABELS:
        parts = _alternatives(op, value)
        return frozenset("stable" if v.endswith("-primary") else "canary" for v in parts)
    if label in _VERSION_LABELS:
        return frozenset({value}) if op == "=" and value in BOTH else None
    generic = family in GENERIC_FAMILIES and not label.endswith("namespace")
    return _tags(op, value) if generic else None


def version_of(matchers: tuple, family: str) -> tuple[str, str] | None:
    """Which version a selector picks out, and the labels that say so: one version, ``all``
    when the labels naming what is measured name both or neither (the whole Service), None
    when nothing is named or the labels disagree."""
    selected, named = set(BOTH), []
    for label, op, value in matchers:
        versions = _selects(label, op, value, family)
        if versions is not None:
            selected &= versions
            named.append(f'{label}{op}"{value}"')
    if not named or not selected:
        return None
    version = selected.pop() if len(selected) == 1 else "all"
    return version, ", ".join(named)
