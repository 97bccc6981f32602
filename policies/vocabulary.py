"""Every name a policy, the world and the exporters share, defined once (DESIGN §2).

The vocabularies are ``Literal`` types; their tuples are derived from them (``get_args``), so
a name added to a type is in its tuple too:

- ``ArgoRouter``: the routers of an Argo Rollouts canary's ``trafficRouting``;
- ``FlaggerProvider``: the ``provider`` of a Flagger canary (``kubernetes`` is no router: it
  switches a Service selector);
- ``RouterKind``: every way a change of traffic reaches the requests, the key of ``ROUTERS``;
- ``Executor``: the export targets (``policies.exporters`` has one module per name);
- ``MetricSource``: whose Prometheus metrics a query reads (``policies.exporters.promql``).

``ROUTERS`` is the one table of per-router facts: the family, the world's default propagation
delay with why it is that number (``sim.world.platform.RouterDelays`` is built from it), and
what each executor can route through it. ``router_of(policy)`` says which router a policy's
traffic changes go through. Pure: typing and dataclasses only, cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, cast, get_args

__all__ = [
    "ARGO_ROUTERS",
    "EXECUTORS",
    "FLAGGER_PROVIDERS",
    "METRIC_SOURCES",
    "PLUGIN_ROUTERS",
    "ROUTERS",
    "ROUTER_FAMILIES",
    "ROUTER_KINDS",
    "ArgoRouter",
    "Executor",
    "FlaggerProvider",
    "MetricSource",
    "RouterFacts",
    "RouterFamily",
    "RouterKind",
    "argo_router_kind",
    "provider_router",
    "router_of",
    "routers_of",
    "routers_where",
]

ArgoRouter = Literal[
    "nginx", "istio", "smi", "alb", "ambassador", "apisix", "appMesh", "traefik", "plugins"
]
"""An Argo Rollouts canary's ``trafficRouting`` router, as its key in the manifest (none: the
canary splits by pods). ``plugins`` are traffic-router plugins, by name (``PLUGIN_ROUTERS``)."""
FlaggerProvider = Literal[
    "istio",
    "nginx",
    "kubernetes",
    "linkerd",
    "smi",
    "contour",
    "gloo",
    "appmesh",
    "skipper",
    "traefik",
    "apisix",
    "kuma",
    "osm",
    "knative",
    "gatewayapi",
]
"""A Flagger canary's ``provider`` without its version suffix (``gatewayapi:v1`` is
``gatewayapi``, ``smi:v1alpha3`` is ``smi``); ``kubernetes`` routes by Service selector."""
RouterKind = Literal[
    "nginx",
    "istio",
    "smi",
    "alb",
    "ambassador",
    "apisix",
    "appMesh",
    "traefik",
    "gatewayApi",
    "plugin",
    "linkerd",
    "contour",
    "gloo",
    "skipper",
    "kuma",
    "osm",
    "knative",
    "serviceSelector",
    "pods",
]
"""How a traffic change reaches the requests: a weighted router, a Service selector, or pods."""
RouterFamily = Literal["weighted", "serviceSelector", "pods"]
"""A router that carries a weight; a Service whose selector flips; no router (traffic follows
the ready pods behind one Service)."""
Executor = Literal["argo", "flagger", "kubernetes", "nginx", "istio"]
"""An export target: the live executor a policy's manifests are written for."""
MetricSource = Literal["nginx", "istio", "haproxy", "linkerd", "envoy", "traefik", "apisix", "osm"]
"""Whose Prometheus metrics an exported query reads: ingress-nginx's, Istio's, HAProxy's,
Linkerd's, a sidecar Envoy's (App Mesh), Traefik's, APISIX's or Open Service Mesh's.
``promql`` recognises more families than it writes."""

ARGO_ROUTERS: tuple[ArgoRouter, ...] = get_args(ArgoRouter)
FLAGGER_PROVIDERS: tuple[FlaggerProvider, ...] = get_args(FlaggerProvider)
ROUTER_KINDS: tuple[RouterKind, ...] = get_args(RouterKind)
ROUTER_FAMILIES: tuple[RouterFamily, ...] = get_args(RouterFamily)
EXECUTORS: tuple[Executor, ...] = get_args(Executor)
METRIC_SOURCES: tuple[MetricSource, ...] = get_args(MetricSource)


@dataclass(frozen=True)
class RouterFacts:
    """What the world and the exporters know of one router kind.

    - ``family``: weighted router, Service selector, or pods.
    - ``delay_s``: seconds from a routing change being written to it taking effect, the
      world's default (``routerDelay`` overrides it); ``delay_note`` says why that number.
    - ``max_traffic_weight``: Argo honours a ``maxTrafficWeight`` other than 100 with it.
    - ``header_routes``: Argo's ``setHeaderRoute`` steps work with it.
    - ``flagger_match``: Flagger's A/B test routes matched requests through it.
    - ``metrics``: the router's own Prometheus metrics, when ``promql`` can write them.
    """

    family: RouterFamily
    delay_s: float
    delay_note: str
    max_traffic_weight: bool = False
    header_routes: bool = False
    flagger_match: bool = False
    metrics: MetricSource | None = None


_NO_FIGURE = (
    "no sourced figure: taken to behave like Istio, the delay it was simulated with before it"
    " had an entry of its own."
)

ROUTERS: MappingProxyType[RouterKind, RouterFacts] = MappingProxyType(
    {
        "nginx": RouterFacts(
            "weighted",
            2.0,
            "ingress-nginx applies weight and endpoint changes without a reload; its Lua"
            " balancer polls the backends every 1 s (``BACKENDS_SYNC_INTERVAL = 1`` in"
            " ``balancer.lua``) after the controller's sync, which is rate-limited to 0.3/s"
            " (``--sync-rate-limit``), so 1–4 s.",
            max_traffic_weight=True,
            flagger_match=True,
            metrics="nginx",
        ),
        "istio": RouterFacts(
            "weighted",
            2.0,
            "istiod debounces config events for at least 100 ms and at most 10 s"
            " (``PILOT_DEBOUNCE_AFTER``/``PILOT_DEBOUNCE_MAX``), then pushes xDS to every proxy.",
            header_routes=True,
            flagger_match=True,
            metrics="istio",
        ),
        "smi": RouterFacts(
            "weighted",
            2.0,
            "an SMI TrafficSplit is applied by the mesh's control plane (Linkerd, OSM): taken to"
            " behave like Istio; no sourced figure.",
        ),
        "alb": RouterFacts(
            "weighted",
            10.0,
            "the AWS Load Balancer Controller reconciles the Ingress and calls the ELB API,"
            " which is eventually consistent; no sourced figure.",
            header_routes=True,
        ),
        "ambassador": RouterFacts(
            "weighted",
            2.0,
            "Emissary-ingress (Ambassador) watches the canary Mapping's weight and reconfigures"
            " its Envoy over xDS; " + _NO_FIGURE,
        ),
        "apisix": RouterFacts(
            "weighted",
            2.0,
            "the APISIX ingress controller writes the route's upstream weights to APISIX's admin"
            " API, from which every APISIX node reloads the route; " + _NO_FIGURE,
            header_routes=True,
            metrics="apisix",
        ),
        "appMesh": RouterFacts(
            "weighted",
            2.0,
            "App Mesh's control plane pushes the route's weighted targets to the Envoy proxies"
            " (an eventually consistent AWS API); " + _NO_FIGURE,
            flagger_match=True,
            metrics="envoy",
        ),
        "traefik": RouterFacts(
            "weighted",
            2.0,
            "Traefik's Kubernetes CRD provider applies TraefikService weights after"
            " ``providers.providersThrottleDuration`` (default 2 s).",
            metrics="traefik",
        ),
        "gatewayApi": RouterFacts(
            "weighted",
            2.0,
            "an HTTPRoute's backendRef weights are applied by the Gateway's implementation"
            " (Envoy Gateway, Istio, Contour, ...) through its own control plane; " + _NO_FIGURE,
            max_traffic_weight=True,
            header_routes=True,
            flagger_match=True,
        ),
        "plugin": RouterFacts(
            "weighted",
            2.0,
            "an Argo Rollouts traffic-router plugin writes the weight to whatever it manages;"
            " its delay is the scenario's (``routerDelay.plugin``); " + _NO_FIGURE,
            max_traffic_weight=True,
            header_routes=True,
        ),
        "linkerd": RouterFacts(
            "weighted",
            2.0,
            "Linkerd's destination controller streams the new split to the proxies; " + _NO_FIGURE,
            metrics="linkerd",
        ),
        "contour": RouterFacts(
            "weighted",
            2.0,
            "Contour turns HTTPProxy weights into Envoy configuration served over xDS; "
            + _NO_FIGURE,
            flagger_match=True,
        ),
        "gloo": RouterFacts(
            "weighted",
            2.0,
            "Gloo Edge turns its routes into Envoy configuration served over xDS; " + _NO_FIGURE,
            flagger_match=True,
        ),
        "skipper": RouterFacts(
            "weighted",
            3.0,
            "Skipper polls the Kubernetes API for Ingress changes every"
            " ``-source-poll-timeout`` (default 3000 ms).",
        ),
        "kuma": RouterFacts(
            "weighted",
            2.0,
            "Kuma's control plane turns the route into Envoy configuration served over xDS; "
            + _NO_FIGURE,
        ),
        "osm": RouterFacts(
            "weighted",
            2.0,
            "Open Service Mesh applies an SMI TrafficSplit through its Envoy control plane; "
            + _NO_FIGURE,
            metrics="osm",
        ),
        "knative": RouterFacts(
            "weighted",
            2.0,
            "Knative Serving's route controller programs its ingress (Kourier, Istio, Contour)"
            " with the revisions' traffic percentages; " + _NO_FIGURE,
        ),
        "serviceSelector": RouterFacts(
            "serviceSelector",
            1.0,
            "a Service selector switch reaches the nodes through EndpointSlices and kube-proxy,"
            " whose ``iptables.minSyncPeriod`` default is 1 s.",
        ),
        "pods": RouterFacts(
            "pods",
            1.0,
            "a pod that became ready joins the endpoints the same way (no traffic router:"
            " traffic follows pods).",
        ),
    }
)
"""The one table of per-router facts, in ``ROUTER_KINDS`` order."""


def routers_where(fact: str) -> tuple[RouterKind, ...]:
    """The router kinds, in table order, whose ``fact`` is true (``"header_routes"``)."""
    return tuple(kind for kind, facts in ROUTERS.items() if getattr(facts, fact))


PLUGIN_ROUTERS: MappingProxyType[str, RouterKind] = MappingProxyType(
    {"argoproj-labs/gatewayAPI": "gatewayApi", "argoproj-labs/contour": "contour"}
)
"""Argo traffic-router plugins whose router has an entry of its own; any other plugin is
``plugin`` (a weighted router with the scenario's delay)."""

_PROVIDER_ROUTER: dict[str, RouterKind] = {
    "kubernetes": "serviceSelector",
    "appmesh": "appMesh",
    "gatewayapi": "gatewayApi",
}


def provider_router(provider: FlaggerProvider) -> RouterKind:
    """The router a Flagger provider shifts traffic with: its own, or for ``kubernetes`` (no
    router: Flagger's blue/green) the Service selector."""
    return _PROVIDER_ROUTER.get(provider) or cast(RouterKind, provider)


def argo_router_kind(router: ArgoRouter, plugin: str | None = None) -> RouterKind:
    """The router kind of an Argo ``trafficRouting`` key (of a plugin, by its name)."""
    if router == "plugins":
        return PLUGIN_ROUTERS.get(plugin or "", "plugin")
    return router


def router_of(policy) -> RouterKind:
    """Which router a policy's weight and route changes go through (and wait for).

    An Argo canary: its ``trafficRouting`` router (the first of several), else pods (a
    replica-ratio canary). A Flagger canary or A/B test: its provider's router. A blue-green
    switch: the Service selector (a DNS switch's TTL is the world's, apart from this). A
    rolling update or a batch release: pods.
    """
    return routers_of(policy)[0]


def routers_of(policy) -> tuple[RouterKind, ...]:
    """Every router a policy's weight changes go through: Argo sets the weight on each of a
    canary's routers (``trafficRouting`` may name several); one router otherwise."""
    if policy.kind == "Canary":
        return policy.traffic_routing.kinds if policy.traffic_routing else ("pods",)
    if policy.kind in ("Progressive", "ABTest"):
        return (provider_router(policy.provider),)
    return ("serviceSelector",) if policy.kind == "BlueGreen" else ("pods",)
