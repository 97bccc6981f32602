"""The orders a runbook follows for Argo's strategies, whatever carries the traffic.

``canary_runbook`` walks an Argo canary's steps (setWeight, pause, analysis, setCanaryScale,
setHeaderRoute, the background analysis from its startingStep, then promotion); what a weight
means is left to ``weights``: ``kubernetes.BasicWeights`` scales pods behind one Service (Argo's
N / N+1 rule), ``RoutedWeights`` scales the canary and has a router (an ingress-nginx canary
Ingress, an Istio VirtualService) carry the weight. ``bluegreen_runbook`` runs Argo's blue-green
order; ``switch`` flips the traffic (a Service selector patch, a router's weight 0 -> 100).

The duck-typed parts, each a small object of its executor's module:

- weights: ``runbook(policy, target)``, ``bind(book, policy, n)``, ``objects()``,
  ``set_weight(weight, what)``, ``set_canary_scale(scale, what)``,
  ``header_route(route, what)``, ``promote(background)`` (the last two only under a router:
  ``Canary`` refuses them without one);
- a router: ``executor``, ``runbook(policy, target)``, ``objects()``,
  ``weight(weight, step, routes)``, ``match(matches, step)``, ``promoted()``;
- a switch: ``executor``, ``runbook(policy, target)``, ``objects()``, ``manifest(side)``,
  ``command(side)``.

Also here, for the Argo Rollout's export: each Argo router's ``trafficRouting`` fields
(``router_config``), the objects it routes through, named after the service.
"""

from __future__ import annotations

from typing import Any, assert_never

from policies.bluegreen import BlueGreen
from policies.canary import (
    Canary,
    Experiment,
    Pause,
    PluginStep,
    SetCanaryScale,
    SetHeaderRoute,
    SetMirrorRoute,
    TrafficRouting,
)
from policies.common import HeaderMatch, RolloutAnalysis
from policies.errors import NotExpressibleError
from policies.exporters import Export, Target
from policies.exporters.checks import MetricsRunbook
from policies.exporters.manifests import deployment, deployment_timing
from policies.exporters.runbook import Runbook, refuse_unrunnable, secs
from policies.replicas import traffic_routed_counts
from policies.vocabulary import PLUGIN_ROUTERS, ArgoRouter, Executor

__all__ = [
    "ROUTED_KINDS",
    "RoutedWeights",
    "bluegreen_runbook",
    "canary_runbook",
    "plugin_config",
    "plugin_notes",
    "require_router",
    "router_config",
]

ROUTED_KINDS = (
    "{label} shifts traffic between two Services: a Canary with trafficRouting: {{{router}: {{}}}},"
    " a Progressive or ABTest with provider: {router}, or a BlueGreen is its form"
)
"""What a router's runbook runs, for the refusals of the kinds it cannot (``str.format``)."""


def canary_runbook(policy: Canary, target: Target, weights) -> Export:
    """Argo's canary steps in order; ``weights`` turns a weight into pods and routes
    (``kubernetes.BasicWeights`` without a router, ``RoutedWeights`` with one)."""
    book = weights.runbook(policy, target)
    refuse_unrunnable(book.executor, policy)
    book.mode = "abort" if policy.progress_deadline_abort else "wait"
    n, kw = target.replicas_for(policy), deployment_timing(book.executor, policy)
    weights = weights.bind(book, policy, n)
    objects = [deployment(target, "stable", target.stable_image, n, **kw)]
    objects += [deployment(target, "canary", target.image, 0, **kw), *weights.objects()]
    book.apply(objects, f"Stable at {n} pods, canary at 0, and what routes to them.")
    background = policy.analysis
    for i, step in enumerate((*policy.steps, None)):
        what = f"steps[{i}]"
        if background is not None and i == background.starting_step:
            run = book.analysis(background, "background", "analysis")
            book.add("analysis", f"rs_bg_start {run}", notes="The background analysis starts.")
        if step is None:
            break
        if step.analysis is not None and step.action != "analysis":
            raise NotExpressibleError(
                book.executor,
                f"{what}.analysis",
                f"Argo ends this step on its {step.action} and cancels the analysis it started;"
                " a runbook gates on an analysis to its end: give the analysis its own step",
            )
        for op in sorted(step.operations, key=_effect_order):
            match op:
                case int() as weight:
                    weights.set_weight(weight, f"{what}: setWeight {weight}")
                case Pause(duration=duration):
                    book.pause(duration, what)
                case RolloutAnalysis() as analysis:
                    book.gate(analysis, f"step{i}", f"{what}.analysis")
                case SetCanaryScale() as scale:
                    weights.set_canary_scale(scale, f"{what}: setCanaryScale")
                case SetHeaderRoute() as route:
                    weights.header_route(route, f"{what}: setHeaderRoute")
                case Experiment() | SetMirrorRoute():
                    name = "experiment" if isinstance(op, Experiment) else "setMirrorRoute"
                    raise NotExpressibleError(
                        book.executor,
                        f"{what}.{name}",
                        "a runbook runs the canary's own Deployments and routes; an Argo"
                        " experiment's ReplicaSets and a mirror route are the Argo controller's:"
                        " drop the step to run the rest here (the argo exporter takes it)",
                    )
                case PluginStep() as plugin:
                    raise NotExpressibleError(
                        book.executor,
                        f"{what}.plugin",
                        f"the step plugin {plugin.name} runs inside the Argo controller, which"
                        " a runbook does not have: drop the step to run the rest here (the argo"
                        " exporter takes it)",
                    )
                case never:
                    assert_never(never)
    weights.promote(background is not None)
    return book.export()


_EFFECTS = (
    SetHeaderRoute,
    SetMirrorRoute,
    SetCanaryScale,
    int,
    Experiment,
    RolloutAnalysis,
    Pause,
    PluginStep,
)


def _effect_order(op) -> int:
    """A step's actions as Argo's reconcile applies them: routes and pods first, then the
    weight, then what the step waits on (its analysis or pause)."""
    return next(i for i, kind in enumerate(_EFFECTS) if isinstance(op, kind))


class RoutedWeights:
    """The Argo canary under a router: the canary gets ceil(w·N/M) pods (minPodsPerReplicaSet,
    setCanaryScale), the stable stays at N, the router carries the weight; at the end the
    stable route selects the new pods, and the old ones go after scaleDownDelaySeconds."""

    def __init__(self, router) -> None:
        self.router, self.executor = router, router.executor
        self.weight, self.pods, self.scale = 0, 0, None
        self.routes: dict[str, tuple[HeaderMatch, ...]] = {}  # managed header routes: name -> match

    def runbook(self, policy, target: Target) -> MetricsRunbook:
        return self.router.runbook(policy, target)

    def bind(self, book: Runbook, policy: Canary, n: int) -> RoutedWeights:
        self.book, self.policy, self.n = book, policy, n
        self.names = (f"{book.target.service}-canary", f"{book.target.service}-stable")
        return self

    def objects(self) -> list[dict[str, Any]]:
        return self.router.objects()

    def _abort(self, canary: int) -> list[str]:
        book, delay = self.book, self.policy.effective_abort_scale_down_delay_s
        commands = [book.apply_command(self.router.weight(0, "abort"))]
        commands.append(f"rs_ready {self.names[1]} wait")
        if canary and delay > 0:
            commands += [f"rs_sleep {secs(delay)}", book.scale_command(self.names[0], 0)]
        elif canary and self.scale is None:  # 0 keeps the canary only under a setCanaryScale
            commands.append(book.scale_command(self.names[0], 0))
        return commands

    def _update(self, what: str, route: bool, canary: int | None = None) -> None:
        kw: dict[str, Any] = {"min_pods_per_replica_set": self.policy.min_pods_per_replica_set}
        if self.scale is not None:
            kw |= {"canary_scale_replicas": self.scale.replicas}
            kw |= {"canary_scale_weight": self.scale.weight}
        if canary is None:
            canary = traffic_routed_counts(self.n, self.weight, self.policy.max_weight, **kw)[0]
        state = f"{canary}/{self.n}@{self.weight}" + ("+scale" if self.scale else "")
        state += "".join(f"+{name}" for name in self.routes)
        scale = (self.names[0], canary)
        notes = f"{what}: canary to {canary} pods, stable stays at {self.n}."
        if canary > self.pods:
            self.book.scale(*scale, notes=notes, state=state)
        if route:
            objects = self.router.weight(self.weight, what, self.routes)
            self.book.apply(objects, f"{what}: canary weight {self.weight}.", state=state)
        if canary < self.pods:
            self.book.scale(*scale, notes=notes, state=state)
        self.book.aborts[state], self.pods = self._abort(canary), canary

    def set_weight(self, weight: int, what: str) -> None:
        self.weight = weight
        self._update(what, True)

    def set_canary_scale(self, scale, what: str) -> None:
        self.scale = None if scale.match_traffic_weight else scale
        self._update(what, False)

    def header_route(self, route, what: str) -> None:  # a route keeps its first place
        if route.match:
            self.routes[route.name] = route.match
        else:
            self.routes.pop(route.name, None)
        self._update(what, True)

    def promote(self, background: bool) -> None:
        self.weight = self.policy.max_weight  # once the canary is at N, it gets all traffic
        self._update("end of steps", True, canary=self.n)
        if background:
            self.book.add("analysis", "rs_bg_stop", notes="Promoted: the background run ends.")
        notes = "Promotion: the stable route selects the new pods; the canary weight is 0."
        self.book.apply(self.router.promoted(), notes, state="promoted")
        if delay := self.policy.effective_scale_down_delay_s:
            self.book.pause(delay, "scaleDownDelaySeconds before the old pods go")
        self.book.scale(self.names[1], 0, notes="The old pods go; the canary Deployment is stable.")


def require_router(policy: Canary, executor: Executor, router: ArgoRouter, label: str):
    """A canary's weights must go through ``router``, this executor's (else it is another's)."""
    routing = policy.traffic_routing
    if routing is None or routing.router != router:
        reason = "the canary splits by pods behind one Service"
        if routing is not None:
            reason = f"its weights go through {routing.router}, not {label}"
        reason += f": give trafficRouting: {{{router}: {{}}}} for {label} to shift its weight"
        raise NotExpressibleError(executor, "trafficRouting", reason)
    return routing


def bluegreen_runbook(policy: BlueGreen, target: Target, switch) -> Export:
    """Argo's blue-green order: green beside blue, pre-promotion analysis, the pause, one
    instant switch (``switch`` says how), post-promotion analysis, blue down after the delay."""
    book = switch.runbook(policy, target)
    if policy.switch == "dns":
        reason = (
            "a DNS switch is not a Kubernetes object: the record and its TTL live in DNS; give"
            " switch: serviceSelector (no dnsTtl)"
        )
        raise NotExpressibleError(book.executor, "switch", reason)
    refuse_unrunnable(book.executor, policy)
    book.mode = "abort" if policy.progress_deadline_abort else "wait"
    n, svc = target.replicas_for(policy), target.service
    kw = deployment_timing(book.executor, policy)
    blue, green = f"{svc}-blue", f"{svc}-green"
    preview = n if policy.preview_replica_count is None else min(policy.preview_replica_count, n)
    objects = [deployment(target, "blue", target.stable_image, n, **kw)]
    objects += [deployment(target, "green", target.image, 0, **kw), *switch.objects()]
    book.apply(objects, "Blue (serving) at N pods, green at 0, and what routes to blue.")
    for state in ("preview", "switched"):
        book.aborts[state] = [switch.command("blue")] if state == "switched" else []
        book.aborts[state].append(f"rs_ready {blue} wait")
        if policy.abort_scale_down_delay_seconds > 0:  # 0 keeps the preview (Argo)
            book.aborts[state].append(f"rs_sleep {secs(policy.abort_scale_down_delay_seconds)}")
            book.aborts[state].append(book.scale_command(green, 0))
    book.scale(green, preview, state="preview", notes=f"Green (preview) to {preview} pods.")
    if policy.pre_promotion_analysis is not None:
        book.gate(policy.pre_promotion_analysis, "pre", "prePromotionAnalysis")
    if not policy.auto_promotion_enabled:
        book.pause(None, "autoPromotionEnabled: false")
    elif policy.auto_promotion_seconds > 0:
        book.pause(policy.auto_promotion_seconds, "autoPromotionSeconds")
    if preview < n:
        book.scale(green, n, state="preview", notes="Green to N pods before the switch.")
    book.manifests.extend(switch.manifest("green"))
    book.add("switch", switch.command("green"), state="switched", notes="All traffic to green.")
    if policy.post_promotion_analysis is not None:
        book.gate(policy.post_promotion_analysis, "post", "postPromotionAnalysis")
    book.add("promote", state="promoted", notes="Promoted: green is the stable side now.")
    book.pause(policy.scale_down_delay_seconds, "scaleDownDelaySeconds before blue goes")
    book.scale(blue, 0, notes="Blue goes; for the next release the colours swap.")
    return book.export()


def plugin_config(name: str, target: Target) -> dict[str, Any]:
    """A traffic-router plugin's configuration: the objects it manages, where the plugin is
    known (Gateway API: an HTTPRoute; Contour: an HTTPProxy), else empty (listed in NOTES)."""
    if name == "argoproj-labs/gatewayAPI":
        return {"httpRoute": target.service, "namespace": target.namespace}
    if name == "argoproj-labs/contour":
        return {"httpProxy": target.service, "namespace": target.namespace}
    return {}


def router_config(router: ArgoRouter, routing: TrafficRouting, target: Target) -> Any:
    """One router's fields as its CRD requires them, naming objects after the service."""
    svc = target.service
    match router:
        case "nginx":
            return {"stableIngress": svc}
        case "istio":
            return {
                "virtualService": {"name": svc, "routes": ["primary"]},
                "destinationRule": {
                    "name": svc,
                    "canarySubsetName": "canary",
                    "stableSubsetName": "stable",
                },
            }
        case "smi":
            return {"trafficSplitName": svc}
        case "alb":
            return {"ingress": svc, "servicePort": target.port}
        case "ambassador":
            return {"mappings": [svc]}
        case "apisix":
            return {"route": {"name": svc, "rules": [svc]}}
        case "appMesh":
            return {
                "virtualService": {"name": svc, "routes": ["primary"]},
                "virtualNodeGroup": {
                    "canaryVirtualNodeRef": {"name": f"{svc}-canary"},
                    "stableVirtualNodeRef": {"name": f"{svc}-stable"},
                },
            }
        case "traefik":
            return {"weightedTraefikServiceName": svc}
        case "plugins":
            return {name: plugin_config(name, target) for name in routing.plugins or {}}
        case never:
            assert_never(never)


def plugin_notes(policy: Canary) -> dict[str, str]:
    plugins = policy.traffic_routing.plugins if policy.traffic_routing else None
    unknown = [f"- `{n}`" for n in plugins or {} if n not in PLUGIN_ROUTERS]
    head = "Fill in these traffic-router plugins' configuration (the objects they manage):"
    return {"NOTES.md": "\n".join([head, *unknown]) + "\n"} if unknown else {}
