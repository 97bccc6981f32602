"""ingress-nginx: the main and the canary Ingress, one canary Ingress per step, and the runbook.

ingress-nginx has no rollout controller: whoever runs the release writes the canary
annotations (executors.md §D.1) step by step. So the export is the objects for every step in
order (each canary Ingress named ``<service>-canary``, annotated ``rolloutsim.io/step``) plus
the runbook that applies them with the waits and checks between. This module is the router:
the Ingress objects a weight, a header/cookie match or a switch writes (``NginxRouter``); the
orders are shared with Istio (``sequences`` for Argo's canary and blue-green, ``flagger_loop``
for Flagger's), and the checks query Prometheus over ingress-nginx's own metrics, whose
``canary`` label tells canary from stable (``checks``).
"""

from __future__ import annotations

import re
from typing import Any

from policies.bluegreen import BlueGreen
from policies.canary import Canary
from policies.common import RouteMatch
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

__all__ = ["EXECUTOR", "PREFIX", "NginxRouter", "export", "nginx_match"]

EXECUTOR: Executor = "nginx"
PREFIX = "nginx.ingress.kubernetes.io/"


def nginx_match(matches: tuple[RouteMatch, ...]) -> dict[str, str]:
    """The canary-by-header/-cookie annotations of an A/B match, or a refusal naming the entry.

    ingress-nginx has one header rule and one cookie rule, ORed (header first); so each entry
    holds one condition, and there is at most one header entry and one cookie entry. A header
    pattern is anchored (``ngx.re.match`` searches), which also expresses a prefix exactly.
    """
    out: dict[str, str] = {}
    for i, match in enumerate(matches):
        where = f"analysis.match[{i}]"
        conditions = len(match.headers) + (match.cookie is not None)
        if conditions != 1:
            reason = "ingress-nginx cannot AND conditions: one header or one cookie per entry"
            raise NotExpressibleError(EXECUTOR, where, reason)
        if match.cookie is not None:
            if match.cookie.exact is None or "canary-by-cookie" in out:
                reason = "ingress-nginx takes one cookie, named exactly (its value 'always')"
                raise NotExpressibleError(EXECUTOR, f"{where}.cookie", reason)
            out["canary-by-cookie"] = match.cookie.exact
            continue
        ((name, value),) = match.headers.items()
        if "canary-by-header" in out or name.lower() == "cookie":
            reason = "ingress-nginx takes one canary header (not the whole Cookie header)"
            raise NotExpressibleError(EXECUTOR, f"{where}.headers.{name}", reason)
        out["canary-by-header"] = name
        if value.exact:
            out["canary-by-header-value"] = value.exact
        elif value.exact is not None or value.prefix is not None:
            out["canary-by-header-pattern"] = f"^{re.escape(value.prefix or '')}" + (
                "$" if value.exact is not None else ""
            )
        else:
            out["canary-by-header-pattern"] = f"^(?:{value.regex})$"
    return {PREFIX + k: v for k, v in out.items()}


class NginxRouter:
    """The main Ingress to ``<service>-<stable>`` and the canary Ingress ``<service>-canary``
    to ``<service>-<canary>``: the objects a canary step, an A/B test or a switch writes."""

    executor: Executor = EXECUTOR
    kind: RouterKind = "nginx"

    def __init__(self, target: Target, total: int = 100, sides=("stable", "canary")) -> None:
        self.target, self.total, self.sides = target, total, sides

    def runbook(self, policy, target: Target) -> MetricsRunbook:
        return MetricsRunbook(EXECUTOR, policy, target, "nginx", hashes=self.sides[::-1])

    def _ingress(self, name: str, side: str, annotations: dict[str, str]) -> dict[str, Any]:
        t = self.target
        backend = {"service": {"name": f"{t.service}-{side}", "port": {"number": t.port}}}
        path = {"path": "/", "pathType": "Prefix", "backend": backend}
        spec = {"ingressClassName": "nginx", "rules": [{"host": t.host, "http": {"paths": [path]}}]}
        meta = {"name": name, "namespace": t.namespace, "labels": {"app": t.service}}
        meta |= {"annotations": annotations} if annotations else {}
        head = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress"}
        return head | {"metadata": meta, "spec": spec}

    def _canary(self, annotations: dict[str, str], step: str) -> list[dict[str, Any]]:
        marks = {STEP: step, PREFIX + "canary": "true", **annotations}
        return [self._ingress(f"{self.target.service}-canary", self.sides[1], marks)]

    def objects(self) -> list[dict[str, Any]]:
        svc, t = self.target.service, self.target
        out = [service(t, f"{svc}-{v}", {"app": svc, "version": v}) for v in self.sides]
        return [*out, self._ingress(svc, self.sides[0], {})]

    def weight(self, weight: int, step: str, routes=None) -> list[dict[str, Any]]:
        marks = {PREFIX + "canary-weight": str(weight)}
        if self.total != 100:
            marks[PREFIX + "canary-weight-total"] = str(self.total)
        return self._canary(marks, step)

    def match(self, matches: tuple[RouteMatch, ...], step: str) -> list[dict[str, Any]]:
        return self._canary(nginx_match(matches) | {PREFIX + "canary-weight": "0"}, step)

    def promoted(self) -> list[dict[str, Any]]:
        svc, (stable, canary) = self.target.service, self.sides
        selector = {"app": svc, "version": canary}
        return [service(self.target, f"{svc}-{stable}", selector), *self.weight(0, "promoted")]


class _NginxSwitch:
    """Blue-green on ingress-nginx: the canary Ingress to green flips from weight 0 to 100
    (``random(100) <= 100`` always holds: an exact, instant switch of new requests)."""

    executor = EXECUTOR

    def __init__(self, target: Target) -> None:
        self.router = NginxRouter(target, sides=("blue", "green"))
        self.runbook = self.router.runbook

    def objects(self) -> list[dict[str, Any]]:
        return self.router.objects() + self.manifest("blue")

    def manifest(self, side: str) -> list[dict[str, Any]]:
        return self.router.weight(100 if side == "green" else 0, f"switch to {side}")

    def command(self, side: str) -> str:
        return apply_command(self.router.target, self.manifest(side))


def export(policy, target: Target) -> Export:
    """Objects and runbook on ingress-nginx; refuses what its annotations cannot say."""
    if isinstance(policy, Canary):
        routing = require_router(policy, EXECUTOR, "nginx", "ingress-nginx")
        router = NginxRouter(target, routing.max_traffic_weight)
        return canary_runbook(policy, target, RoutedWeights(router))
    if isinstance(policy, Progressive | ABTest):
        return flagger_runbook(policy, target, NginxRouter(target))
    if isinstance(policy, BlueGreen):
        return bluegreen_runbook(policy, target, _NginxSwitch(target))
    moves = {
        "RollingUpdate": "a rolling update moves pods, not traffic",
        "BatchRelease": "batches are shares of pods behind one Service",
    }[policy.kind]
    routed = ROUTED_KINDS.format(router=EXECUTOR, label="ingress-nginx")
    reason = f"{moves}; {routed} (the kubernetes exporter takes it as written)"
    raise NotExpressibleError(EXECUTOR, "kind", f"{policy.kind}: {reason}")
