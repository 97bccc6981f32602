"""One vocabulary per concept (DESIGN §2): routers, providers, executors and metric sources are
defined once in ``policies.vocabulary``, and every consumer reads them or the one router table."""

from __future__ import annotations

import importlib
from typing import Literal, get_args

import pytest
from pydantic.alias_generators import to_snake

from policies import policy_from_yaml
from policies.canary import TrafficRouting
from policies.errors import NotExpressibleError, PolicyError
from policies.exporters import EXECUTORS, export, promql
from policies.importers import import_manifests
from policies.loading import parse_policy
from policies.vocabulary import (
    ARGO_ROUTERS,
    FLAGGER_PROVIDERS,
    METRIC_SOURCES,
    PLUGIN_ROUTERS,
    ROUTER_FAMILIES,
    ROUTER_KINDS,
    ROUTERS,
    ArgoRouter,
    Executor,
    FlaggerProvider,
    MetricSource,
    RouterFamily,
    RouterKind,
    argo_router_kind,
    provider_router,
    router_of,
    routers_where,
)
from rolloutsim.cli import build_parser

# ----------------------------------------------------------------------------- the vocabularies


@pytest.mark.parametrize(
    ("literal", "names"),
    [
        (ArgoRouter, ARGO_ROUTERS),
        (FlaggerProvider, FLAGGER_PROVIDERS),
        (RouterKind, ROUTER_KINDS),
        (RouterFamily, ROUTER_FAMILIES),
        (Executor, EXECUTORS),
        (MetricSource, METRIC_SOURCES),
    ],
)
def test_tuples_are_the_literals(literal, names):
    assert names == get_args(literal)
    assert len(set(names)) == len(names)


def test_router_kinds_hold_every_router_and_provider():
    assert {argo_router_kind(r, "any/plugin") for r in ARGO_ROUTERS} <= set(ROUTER_KINDS)
    assert {provider_router(p) for p in FLAGGER_PROVIDERS} <= set(ROUTER_KINDS)
    assert provider_router("kubernetes") == "serviceSelector"
    renamed = {"kubernetes": "serviceSelector", "appmesh": "appMesh", "gatewayapi": "gatewayApi"}
    assert all(provider_router(p) == renamed.get(p, p) for p in FLAGGER_PROVIDERS)
    assert argo_router_kind("plugins", "argoproj-labs/gatewayAPI") == "gatewayApi"
    assert argo_router_kind("plugins", "acme/mesh") == "plugin"
    assert set(PLUGIN_ROUTERS.values()) <= set(ROUTER_KINDS)


def test_the_table_covers_every_router_kind_in_order():
    assert tuple(ROUTERS) == ROUTER_KINDS
    for kind, facts in ROUTERS.items():
        assert facts.family in ROUTER_FAMILIES
        assert facts.delay_s > 0 and facts.delay_note.endswith(".")
        assert facts.metrics is None or facts.metrics in METRIC_SOURCES
        assert (facts.family == "weighted") == (kind not in ("serviceSelector", "pods"))
    with pytest.raises(TypeError):
        ROUTERS["envoy"] = ROUTERS["istio"]  # read-only: one table for every consumer


def test_the_table_facts_consumers_read():
    assert routers_where("max_traffic_weight") == ("nginx", "gatewayApi", "plugin")
    assert routers_where("header_routes") == ("istio", "alb", "apisix", "gatewayApi", "plugin")
    assert routers_where("flagger_match") == (
        "nginx",
        "istio",
        "appMesh",
        "gatewayApi",
        "contour",
        "gloo",
    )
    assert {k: f.metrics for k, f in ROUTERS.items() if f.metrics} == {
        "nginx": "nginx",
        "istio": "istio",
        "apisix": "apisix",
        "appMesh": "envoy",
        "traefik": "traefik",
        "linkerd": "linkerd",
        "osm": "osm",
    }


def test_policy_models_speak_the_vocabulary():
    from policies.flagger import FlaggerProvider as ModelProvider

    assert ModelProvider is FlaggerProvider
    assert set(TrafficRouting.model_fields) - {"max_traffic_weight"} == {
        to_snake(r) for r in ARGO_ROUTERS
    }
    assert promql.SOURCES == METRIC_SOURCES


def test_importers_speak_the_vocabulary():
    """The importer knows every Argo router, and ignores exactly the fields of each router
    that Argo's CRD has (the object names); a plugin's configuration is the plugin's own."""
    from policies.exporters import crds
    from policies.importers.argo_steps import ROUTER_NAMES

    assert tuple(ROUTER_NAMES) == ARGO_ROUTERS
    rollout = crds.schema_for("argoproj.io/v1alpha1", "Rollout")
    canary = rollout["properties"]["spec"]["properties"]["strategy"]["properties"]["canary"]
    routing = canary["properties"]["trafficRouting"]["properties"]
    assert set(routing) == {*ARGO_ROUTERS, "maxTrafficWeight", "managedRoutes"}
    for router in ARGO_ROUTERS:
        fields = set(routing[router].get("properties", {})) - {"stickinessConfig"}
        assert set(ROUTER_NAMES[router]) == fields, router


# ----------------------------------------------------------------------------- router_of


def _routing(router: str) -> dict:
    """``trafficRouting`` with one router (a plugin by its name)."""
    return {"plugins": {"argoproj-labs/gatewayAPI": {}}} if router == "plugins" else {router: {}}


def _canary(router: str | None):
    routing = {"trafficRouting": _routing(router)} if router else {}
    return parse_policy({"kind": "Canary", "name": "c", "steps": [{"setWeight": 10}], **routing})


def _flagger(kind: str, provider: str):
    analysis = {"stepWeight": 10, "maxWeight": 50}
    if kind == "ABTest":
        analysis = {"iterations": 2, "match": [{"headers": {"x-canary": {"exact": "yes"}}}]}
    return parse_policy({"kind": kind, "name": "f", "provider": provider, "analysis": analysis})


def _before(policy) -> str:
    """The engine's router_kind before this vocabulary: linkerd, contour and gloo fell to istio."""
    if policy.kind == "Canary":
        return policy.traffic_routing.kinds[0] if policy.traffic_routing else "pods"
    if policy.kind in ("Progressive", "ABTest"):
        if policy.provider == "kubernetes":
            return "serviceSelector"
        return policy.provider if policy.provider in ("nginx", "istio", "smi") else "istio"
    return "serviceSelector" if policy.kind == "BlueGreen" else "pods"


_OTHERS = [
    ("BlueGreen", {"switch": "serviceSelector"}, "serviceSelector"),
    ("BlueGreen", {"switch": "dns", "dnsTtl": "5m"}, "serviceSelector"),
    ("RollingUpdate", {}, "pods"),
    ("BatchRelease", {"batches": [{"replicas": "50%"}, {"replicas": "100%"}]}, "pods"),
]


@pytest.mark.parametrize("router", [*ARGO_ROUTERS, None])
def test_router_of_a_canary_is_its_router_else_pods(router):
    policy = _canary(router)
    kind = argo_router_kind(router, "argoproj-labs/gatewayAPI") if router else "pods"
    assert router_of(policy) == kind == _before(policy)


@pytest.mark.parametrize("kind", ["Progressive", "ABTest"])
@pytest.mark.parametrize("provider", FLAGGER_PROVIDERS)
def test_router_of_a_flagger_policy_is_its_providers_router(kind, provider):
    if kind == "ABTest" and provider == "kubernetes":
        with pytest.raises(PolicyError, match="cannot route by match"):
            _flagger(kind, provider)
        return
    policy = _flagger(kind, provider)
    assert router_of(policy) == provider_router(provider)
    assert router_of(policy) in ROUTERS
    if provider in ("nginx", "istio", "smi", "kubernetes"):  # the others borrowed Istio's entry
        assert router_of(policy) == _before(policy)
    if provider != "skipper":  # the one with a sourced figure of its own (a 3 s poll)
        assert ROUTERS[router_of(policy)].delay_s == ROUTERS[_before(policy)].delay_s


@pytest.mark.parametrize(("kind", "fields", "router"), _OTHERS)
def test_router_of_the_other_kinds(kind, fields, router):
    policy = parse_policy({"kind": kind, "name": "x", **fields})
    assert router_of(policy) == router == _before(policy)


# ----------------------------------------------------------------------------- consumers


@pytest.mark.parametrize("router", ARGO_ROUTERS)
def test_header_routes_and_weight_totals_follow_the_table(router):
    step = {"setHeaderRoute": {"name": "beta", "match": [{"headerName": "x", "headerValue": {}}]}}
    step["setHeaderRoute"]["match"][0]["headerValue"] = {"exact": "1"}
    data = {"kind": "Canary", "name": "c", "trafficRouting": _routing(router), "steps": [step]}
    kind = argo_router_kind(router, "argoproj-labs/gatewayAPI")
    if ROUTERS[kind].header_routes:
        parse_policy(data)
    else:
        with pytest.raises(PolicyError, match="requires istio or alb or apisix"):
            parse_policy(data)
    routing = {**_routing(router), "maxTrafficWeight": 50}
    data = {"kind": "Canary", "name": "c", "trafficRouting": routing}
    if ROUTERS[kind].max_traffic_weight:
        parse_policy(data)
    else:
        with pytest.raises(PolicyError, match="only supported with nginx"):
            parse_policy(data)


@pytest.mark.parametrize("provider", [p for p in FLAGGER_PROVIDERS if p != "kubernetes"])
def test_every_flagger_provider_goes_out_and_comes_back(provider):
    """The exporter writes and the importer reads every provider (smi was missing from the
    importer's list once)."""
    policy = _flagger("Progressive", provider)
    back = import_manifests(export(policy, "flagger").to_yaml()).policy
    assert back.provider == provider and router_of(back) == router_of(policy)


@pytest.mark.parametrize("provider", FLAGGER_PROVIDERS)
def test_flagger_ab_match_follows_the_table(provider):
    if provider == "kubernetes":
        return  # refused by the model itself
    policy = _flagger("ABTest", provider)
    if ROUTERS[provider_router(provider)].flagger_match:
        export(policy, "flagger")
    else:
        with pytest.raises(NotExpressibleError, match="Flagger routes A/B matches with"):
            export(policy, "flagger")


# ----------------------------------------------------------------------------- executors


def _choices(parser, command: str, dest: str):
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return next(a for a in sub._actions if a.dest == dest).choices


def test_cli_executor_choices_are_the_registry():
    parser = build_parser()
    assert list(_choices(parser, "export", "to")) == [*EXECUTORS, "all"]
    assert tuple(_choices(parser, "tune", "exportable_to")) == EXECUTORS


@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_executor_has_its_exporter(executor):
    module = importlib.import_module(f"policies.exporters.{executor}")
    assert executor == module.EXECUTOR and callable(module.export)


def test_unknown_executor_is_refused():
    policy = policy_from_yaml("kind: RollingUpdate\nname: r\n")
    with pytest.raises(PolicyError, match="unknown executor 'helm'"):
        export(policy, "helm")


def test_literal_of_a_tuple_is_the_same_type():
    """sim.tune.space spells ``Literal[EXECUTORS]``: it must mean the Executor type."""
    assert get_args(Literal[EXECUTORS]) == get_args(Executor)
