"""Istio: a DestinationRule with subsets and one VirtualService per step, plus the runbook.

Istio routes by the VirtualService's ordered ``http`` routes, first match wins (executors.md
§D.2); nothing in Istio moves the weights, so the export is every step's VirtualService in order
(annotated ``rolloutsim.io/step``) and the runbook that applies them between the waits and
checks. Argo's header routes and Flagger's A/B match become match routes placed before the
weighted route. This module is the router (``IstioRouter``); the orders are shared with
ingress-nginx (``sequences``, ``flagger_loop``) and the checks query Istio's metrics, telling
the versions apart by pod (``checks``). Every object is checked against the Istio CRD schema
copied into the anchors (``validate``).
"""

from __future__ import annotations

import re
from typing import Any

from policies.bluegreen import BlueGreen
from policies.canary import Canary
from policies.common import HeaderMatch, RouteMatch, StringMatch
from policies.errors import NotExpressibleError
from policies.exporters import Export, Target
from policies.exporters.checks import MetricsRunbook
from policies.exporters.flagger_loop import flagger_runbook
from policies.exporters.manifests import STEP, service
from policies.exporters.runbook import apply_command
from policies.exporters.sequences import (
    ROUTED_KINDS,
    RoutedWeights,
    bluegreen_runbook,
    canary_runbook,
    require_router,
)
from policies.flagger import ABTest, Progressive
from policies.vocabulary import Executor, RouterKind

__all__ = [
    "API_VERSION",
    "EXECUTOR",
    "IstioRouter",
    "export",
    "istio_match",
    "validate",
    "validate_all",
]

EXECUTOR: Executor = "istio"
API_VERSION = "networking.istio.io/v1"


# ----------------------------------------------------------------------------- matches


def _string(value: StringMatch, field: str) -> dict[str, str]:
    if value.exact == "":
        reason = "Istio reads an empty exact value as 'the header is present'"
        raise NotExpressibleError(EXECUTOR, field, reason)
    return value.to_dict()


def cookie_regex(name: str) -> str:
    """The Cookie header holds ``<name>=always`` (ingress-nginx's cookie rule, RE2)."""
    return rf"^(.*?;\s*)?{re.escape(name)}=always(;.*)?$"


def istio_match(matches: tuple[RouteMatch, ...]) -> list[dict[str, Any]]:
    """Flagger's match as Istio ``HTTPMatchRequest`` entries: conditions inside an entry are
    ANDed, entries ORed; header names lower-cased (Istio's rule, HTTP's case-insensitivity)."""
    out = []
    for i, match in enumerate(matches):
        where = f"analysis.match[{i}]"
        headers = {k.lower(): _string(v, f"{where}.headers.{k}") for k, v in match.headers.items()}
        if match.cookie is not None:
            if match.cookie.exact is None or "cookie" in headers:
                reason = "one cookie, named exactly (its value 'always'), and no cookie header"
                raise NotExpressibleError(EXECUTOR, f"{where}.cookie", reason)
            headers["cookie"] = {"regex": cookie_regex(match.cookie.exact)}
        out.append({"headers": headers})
    return out


def _header_route(name: str, match: tuple[HeaderMatch, ...]) -> list[dict[str, Any]]:
    """Argo's setHeaderRoute: one entry, its headers ANDed."""
    where = f"setHeaderRoute {name}"
    return [{"headers": {h.header_name.lower(): _string(h.header_value, where) for h in match}}]


# ----------------------------------------------------------------------------- objects


class IstioRouter:
    """One Service over both versions, a DestinationRule with a subset per version (label
    ``version``), and the VirtualService whose routes a step rewrites."""

    executor: Executor = EXECUTOR
    kind: RouterKind = "istio"

    def __init__(self, target: Target, sides: tuple[str, str] = ("stable", "canary")) -> None:
        self.target, self.sides = target, sides

    def runbook(self, policy, target: Target) -> MetricsRunbook:
        return MetricsRunbook(EXECUTOR, policy, target, "istio", hashes=self.sides[::-1])

    def _meta(self, step: str | None = None) -> dict[str, Any]:
        t = self.target
        meta = {"name": t.service, "namespace": t.namespace, "labels": {"app": t.service}}
        return meta | ({"annotations": {STEP: step}} if step else {})

    def _to(self, side: int, weight: int | None = None) -> dict[str, Any]:
        route = {"destination": {"host": self.target.service, "subset": self.sides[side]}}
        return route | ({"weight": weight} if weight is not None else {})

    def destination_rule(self, labels: tuple[str, str] | None = None) -> dict[str, Any]:
        labels = labels or self.sides
        subsets = [{"name": s, "labels": {"version": v}} for s, v in zip(self.sides, labels)]
        spec = {"host": self.target.service, "subsets": subsets}
        return {"apiVersion": API_VERSION, "kind": "DestinationRule", "metadata": self._meta()} | {
            "spec": spec
        }

    def virtual_service(self, http: list[dict[str, Any]], step: str) -> dict[str, Any]:
        spec = {"hosts": [self.target.service], "http": http}
        meta = self._meta(step)
        return {"apiVersion": API_VERSION, "kind": "VirtualService", "metadata": meta, "spec": spec}

    def objects(self) -> list[dict[str, Any]]:
        svc = self.target.service
        own = [service(self.target, svc, {"app": svc}), self.destination_rule()]
        return [*own, *self.weight(0, "initial")]

    def weight(self, weight: int, step: str, routes=None) -> list[dict[str, Any]]:
        """Header routes first (Argo's managed routes, in order), then the weighted route."""
        http = [
            {"name": name, "match": _header_route(name, match), "route": [self._to(1, 100)]}
            for name, match in (routes or {}).items()
        ]
        http.append({"name": "primary", "route": [self._to(0, 100 - weight), self._to(1, weight)]})
        return [self.virtual_service(http, step)]

    def match(self, matches: tuple[RouteMatch, ...], step: str) -> list[dict[str, Any]]:
        """Flagger's A/B routes: the match route to the canary first, the rest to the primary."""
        ab = {"name": "ab", "match": istio_match(matches)}
        ab["route"] = [self._to(0, 0), self._to(1, 100)]
        return [self.virtual_service([ab, {"name": "primary", "route": [self._to(0)]}], step)]

    def promoted(self) -> list[dict[str, Any]]:
        """Argo's promotion at subset level: the stable subset selects the new pods."""
        rule = self.destination_rule((self.sides[1], self.sides[1]))
        return [rule, *self.weight(0, "promoted")]


class _IstioSwitch:
    """Blue-green on Istio: the VirtualService flips blue 100 / green 0 to 0 / 100."""

    executor = EXECUTOR

    def __init__(self, target: Target) -> None:
        self.router = IstioRouter(target, ("blue", "green"))
        self.runbook = self.router.runbook

    def objects(self) -> list[dict[str, Any]]:
        return self.router.objects()

    def manifest(self, side: str) -> list[dict[str, Any]]:
        return self.router.weight(100 if side == "green" else 0, f"switch to {side}")

    def command(self, side: str) -> str:
        return apply_command(self.router.target, self.manifest(side))


# ----------------------------------------------------------------------------- validation


def validate(obj: dict[str, Any]) -> list[str]:
    """Every problem of one Istio object against the anchored CRD, ``Kind/name: path: msg``."""
    from policies.exporters import crds  # jsonschema and the CRDs: only when validating

    return crds.validate(obj)


def validate_all(objects) -> list[str]:
    """Istio objects against the CRD, core objects offline (``k8s_validate``): every error."""
    from policies.exporters import k8s_validate  # kubernetes_validate: only when validating

    return [
        error
        for obj in objects
        for error in (
            validate(obj) if "istio.io" in obj.get("apiVersion", "") else k8s_validate.validate(obj)
        )
    ]


def export(policy, target: Target) -> Export:
    """VirtualServices, DestinationRule and the runbook; refuses what Istio cannot route."""
    if isinstance(policy, Canary):
        require_router(policy, EXECUTOR, "istio", "Istio")
        return canary_runbook(policy, target, RoutedWeights(IstioRouter(target)))
    if isinstance(policy, Progressive | ABTest):
        return flagger_runbook(policy, target, IstioRouter(target))
    if isinstance(policy, BlueGreen):
        return bluegreen_runbook(policy, target, _IstioSwitch(target))
    moves = {
        "RollingUpdate": "a rolling update moves pods, not traffic",
        "BatchRelease": "batches are shares of pods behind one Service",
    }[policy.kind]
    routed = ROUTED_KINDS.format(router=EXECUTOR, label="Istio")
    reason = f"{moves}; {routed} (the kubernetes exporter takes it as written)"
    raise NotExpressibleError(EXECUTOR, "kind", f"{policy.kind}: {reason}")
