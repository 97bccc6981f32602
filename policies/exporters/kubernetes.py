"""Plain Kubernetes: Deployments, Services, and a kubectl runbook for what no controller runs.

Kubernetes itself runs only a Deployment's rolling update. The CCE-style releases — a
replica-ratio canary behind one Service, a blue-green switch by Service selector, a batch
release with pauses — need someone to scale, wait, check and switch in order, so their export
is the objects plus that order (``runbook.Runbook``, rendered as ``runbook.sh`` and
``runbook.json``). The canary and blue-green orders are shared with ingress-nginx and Istio
(``sequences``); what is Kubernetes' own is here: weights as pods behind one Service
(``BasicWeights``), the Service selector switch, the batch release and the rolling update. Pod
counts are the controllers' own arithmetic (``policies.replicas``), so the runbook scales to
exactly what the simulator simulated.
"""

from __future__ import annotations

import json
from typing import Any

from policies.batch import BatchRelease
from policies.bluegreen import BlueGreen
from policies.canary import Canary
from policies.errors import NotExpressibleError
from policies.exporters import Export, Target
from policies.exporters.manifests import deployment, deployment_timing, service
from policies.exporters.runbook import Runbook, quote, refuse_unrunnable, share
from policies.exporters.sequences import bluegreen_runbook, canary_runbook
from policies.replicas import basic_canary_scale, resolve_fenceposts, rolling_update_sync
from policies.rolling import RollingUpdate
from policies.vocabulary import Executor

__all__ = ["EXECUTOR", "BasicWeights", "ServiceSwitch", "export"]

EXECUTOR: Executor = "kubernetes"


class BasicWeights:
    """How a basic canary's weight becomes pods: Argo's N / N+1 rule, one scaling stage per
    reconcile within maxSurge/maxUnavailable; the abort is the same walk back to weight 0."""

    executor = EXECUTOR

    def runbook(self, policy, target: Target) -> Runbook:
        return Runbook(EXECUTOR, policy, target)

    def bind(self, book: Runbook, policy: Canary, n: int) -> BasicWeights:
        self.book, self.n, self.pods = book, n, (0, n)
        self.fences = resolve_fenceposts(policy.max_surge, policy.max_unavailable, n)
        svc = book.target.service
        self.names = (f"{svc}-canary", f"{svc}-stable")
        return self

    def objects(self) -> list[dict[str, Any]]:
        svc = self.book.target.service
        return [service(self.book.target, svc, {"app": svc})]

    def _move(self, weight: int):
        return lambda c, s: basic_canary_scale(self.n, weight, *self.fences, c, c, s, s)[:2]

    def set_weight(self, weight: int, what: str) -> None:
        self.pods = self.book.walk(self.pods, self._move(weight), self._move(0), self.names, what)
        note = f"{what}: {self.pods[0]} canary / {self.pods[1]} stable pods"
        note += f" = {share(*self.pods)} of traffic"
        self.book.add("setWeight", f"echo {quote(note)}", notes=f"{note} (Argo's N / N+1 rule).")

    def promote(self, background: bool) -> None:
        self.set_weight(100, "promotion: end of steps")
        if background:
            self.book.add("analysis", "rs_bg_stop", notes="Promoted: the background run ends.")
        self.book.add("promote", state="promoted", notes="The canary Deployment serves all.")


class ServiceSwitch:
    """Blue-green by Service selector (CCE): one Service whose ``version`` a patch flips."""

    executor = EXECUTOR

    def __init__(self, target: Target) -> None:
        self.target = target

    def objects(self) -> list[dict[str, Any]]:
        svc = self.target.service
        return [service(self.target, svc, {"app": svc, "version": "blue"})]

    def command(self, side: str) -> str:
        patch = json.dumps({"spec": {"selector": {"version": side}}}, separators=(",", ":"))
        ns = quote(self.target.namespace)
        return f"kubectl -n {ns} patch service/{self.target.service} -p {quote(patch)}"

    def manifest(self, side: str) -> list[dict[str, Any]]:
        return []  # a patch, not an object

    def runbook(self, policy, target: Target) -> Runbook:
        return Runbook(EXECUTOR, policy, target)


def _batch(policy: BatchRelease, target: Target) -> Export:
    """Two Deployments behind one Service, each batch moved by the Deployment controller's own
    sync with the batch as partition (``rolling_update_sync``), so the new pods equal the batch
    counts exactly; ``kubectl rollout pause`` would stop a live update wherever it was."""
    refuse_unrunnable(EXECUTOR, policy)
    n, svc, kw = target.replicas_for(policy), target.service, deployment_timing(EXECUTOR, policy)
    book = Runbook(EXECUTOR, policy, target)
    objects = [deployment(target, "stable", target.stable_image, n, **kw)]
    objects += [deployment(target, "canary", target.image, 0, **kw)]
    book.apply([*objects, service(target, svc, {"app": svc})], "Old pods at N, new at 0.")
    surge, unav = resolve_fenceposts(policy.max_surge, policy.max_unavailable, n)
    pods, names = (0, n), (f"{svc}-canary", f"{svc}-stable")

    def back(c: int, s: int) -> tuple[int, int]:  # the controller's rollback: the same sync
        stable, canary = rolling_update_sync(n, surge, unav, s, s, c, c)  # stable is "new" here
        return canary, stable

    for b, (batch, want) in enumerate(zip(policy.batches, policy.batch_pods(n))):

        def move(c: int, s: int, want: int = want) -> tuple[int, int]:
            return rolling_update_sync(n, surge, unav, c, c, s, s, partition=want)

        pods = book.walk(pods, move, back, names, f"batches[{b}]")
        note = f"batches[{b}]: {pods[0]} of {n} pods new = {share(*pods)} of traffic"
        book.add("batch", f"echo {quote(note)}", notes=note)
        if b == len(policy.batches) - 1:
            break  # the last batch completes the release
        if batch.analysis is not None:
            book.gate(batch.analysis, f"batch{b}", f"batches[{b}].analysis")
        if batch.pause is not None:
            book.pause(batch.pause.duration, f"batches[{b}].pause")
    book.add("promote", state="promoted", notes="All batches released.")
    return book.export()


def _rolling(policy: RollingUpdate, target: Target) -> Export:
    """One Deployment: applying the new image starts the controller's own rolling update. The
    progress deadline only reports; Kubernetes never rolls back (``kubectl rollout undo``)."""
    fences, svc = (policy.max_surge, policy.max_unavailable), target.service
    kw = deployment_timing(EXECUTOR, policy)
    dep = deployment(target, None, target.image, target.replicas_for(policy), fences=fences, **kw)
    book = Runbook(EXECUTOR, policy, target)
    notes = "The new image: the Deployment controller rolls it out (maxSurge/maxUnavailable)."
    book.apply([dep, service(target, svc, {"app": svc})], notes, wait=f"rs_ready {svc} wait")
    return book.export()


_ROUTER_ONLY = {
    "Progressive": "its weights need a traffic router; behind one Service traffic follows pods"
    " (Flagger's kubernetes provider runs it as blue/green)",
    "ABTest": "routing requests by header or cookie needs a traffic router",
}
_PODS_ONLY = (
    "Kubernetes alone splits traffic by pods: a Canary without trafficRouting (each setWeight"
    " a share of pods), a BlueGreen, a BatchRelease or a RollingUpdate is its form"
)


def export(policy, target: Target) -> Export:
    """Deployments, Services and the runbook for ``policy``; refuses what needs a router."""
    if isinstance(policy, RollingUpdate):
        return _rolling(policy, target)
    if isinstance(policy, Canary):
        if policy.traffic_routing is not None:
            router = policy.traffic_routing.router
            reason = (
                f"its weights go through {router}; a Service only splits by pod count: drop"
                " trafficRouting for a canary of pod shares"
            )
            raise NotExpressibleError(EXECUTOR, "trafficRouting", reason)
        return canary_runbook(policy, target, BasicWeights())
    if isinstance(policy, BlueGreen):
        return bluegreen_runbook(policy, target, ServiceSwitch(target))
    if isinstance(policy, BatchRelease):
        return _batch(policy, target)
    reason = f"{_ROUTER_ONLY[policy.kind]}; {_PODS_ONLY} (the flagger exporter takes it as written)"
    raise NotExpressibleError(EXECUTOR, "kind", f"{policy.kind}: {reason}")
