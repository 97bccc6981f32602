"""Platform: documented defaults, router-delay overrides, replica resolution, validation."""

from __future__ import annotations

import math

import pytest

from policies.base import load_yaml, validate_model
from policies.errors import PolicyError
from policies.vocabulary import ROUTERS
from sim.world.distributions import Fixed, Uniform
from sim.world.platform import ROUTER_KINDS, Platform, RouterDelays


def platform(text: str = "{}") -> Platform:
    return validate_model(Platform, load_yaml(text))


def test_defaults():
    p = Platform()
    assert p.replicas is None
    assert p.pod_startup == Fixed(value=30.0)
    assert p.capacity_per_pod is None and p.capacity(10) == math.inf
    assert p.scrape_interval == 15.0 and p.scrape_delay == 0.0
    assert p.rule_evaluation_interval == 60.0
    assert {k: p.router_delay_for(k) for k in ROUTER_KINDS} == {
        "nginx": 2.0,
        "istio": 2.0,
        "smi": 2.0,
        "alb": 10.0,
        "ambassador": 2.0,
        "apisix": 2.0,
        "appMesh": 2.0,
        "traefik": 2.0,
        "gatewayApi": 2.0,
        "plugin": 2.0,
        "linkerd": 2.0,
        "contour": 2.0,
        "gloo": 2.0,
        "skipper": 3.0,
        "kuma": 2.0,
        "osm": 2.0,
        "knative": 2.0,
        "serviceSelector": 1.0,
        "pods": 1.0,
    }
    assert p.to_dict() == {} and repr(p) == "Platform()"


def test_router_delay_single_duration_sets_every_kind():
    p = platform("routerDelay: 3s")
    assert all(p.router_delay_for(k) == 3.0 for k in ROUTER_KINDS)


def test_router_delay_mapping_overrides_some():
    p = platform("routerDelay: {istio: 500ms, serviceSelector: 5s}")
    assert p.router_delay_for("istio") == 0.5
    assert p.router_delay_for("serviceSelector") == 5.0
    assert p.router_delay_for("service_selector") == 5.0
    assert p.router_delay_for("nginx") == 2.0  # untouched default
    assert p.router_delay_for(None) == 1.0  # no router: traffic follows pods
    assert p.to_dict() == {"routerDelay": {"istio": 0.5, "serviceSelector": "5s"}}
    assert validate_model(Platform, p.to_dict()) == p


def test_full_yaml_round_trip():
    p = platform(
        """
replicas: 10
podStartup: {uniform: [20s, 40s]}
capacityPerPod: 150
scrapeInterval: 30s
scrapeDelay: 10s
ruleEvaluationInterval: 30s
"""
    )
    assert p.replicas == 10 and p.pod_startup == Uniform(low=20, high=40)
    assert p.capacity(4) == 600.0 and p.capacity(0) == 0.0
    assert validate_model(Platform, p.to_dict()) == p


def test_replicas_resolution():
    assert Platform(replicas=5).resolve_replicas(3) == 5
    assert Platform().resolve_replicas(3) == 3
    with pytest.raises(PolicyError, match=r"platform\.replicas: is not set"):
        Platform().resolve_replicas(None)


def test_last_scrape_honours_interval_and_delay():
    p = platform("scrapeInterval: 15s\nscrapeDelay: 20s")
    assert p.last_scrape(100.0) == 75.0  # 100 − 20 = 80 → last scrape at 75
    assert p.last_scrape(95.0) == 75.0  # exactly on a scrape counts
    assert Platform().last_scrape(29.999) == 15.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("replicas: 0", "replicas"),
        ("capacityPerPod: 0", "capacityPerPod"),
        ("scrapeInterval: 0", "scrapeInterval must be > 0"),
        ("ruleEvaluationInterval: 0", "ruleEvaluationInterval must be > 0"),
        ("scrapeDelay: -1", "scrapeDelay: -1 is negative"),
        ("routerDelay: {envoy: 1s}", "routerDelay.envoy: unknown key"),
        ("routerDelay: {nginx: soon}", "routerDelay.nginx"),
        ("routerDelay: true", "routerDelay"),
        ("podStartup: {normal: 3}", "unknown distribution 'normal'"),
        ("minReadySeconds: 10", "minReadySeconds: unknown key"),
    ],
)
def test_validation(text, needle):
    with pytest.raises(PolicyError, match=needle):
        platform(text)


def test_unknown_router_kind():
    with pytest.raises(ValueError, match="unknown router kind 'envoy'"):
        Platform().router_delay_for("envoy")


def test_router_delays_documented_as_assumptions():
    doc = RouterDelays.__doc__ or ""
    assert "ASSUMPTIONS" in doc
    for kind in ROUTER_KINDS:
        assert f"``{kind}`` {ROUTERS[kind].delay_s:g} s: {ROUTERS[kind].delay_note}" in doc


def test_router_delays_come_from_the_one_table():
    """Every router kind of the table is a field with the table's default, and nothing else."""
    aliases = {f.alias: name for name, f in RouterDelays.model_fields.items()}
    assert list(aliases) == list(ROUTER_KINDS) == list(ROUTERS)
    defaults = RouterDelays()
    for kind, facts in ROUTERS.items():
        assert (
            getattr(defaults, aliases[kind]) == facts.delay_s == Platform().router_delay_for(kind)
        )


@pytest.mark.parametrize("kind", ["linkerd", "contour", "gloo"])
def test_meshes_without_a_sourced_figure_keep_istios_delay(kind):
    """linkerd, contour and gloo were simulated with Istio's delay; their own entries keep it
    and say that no figure is sourced."""
    assert ROUTERS[kind].delay_s == ROUTERS["istio"].delay_s == 2.0
    assert "no sourced figure" in ROUTERS[kind].delay_note
    assert platform(f"routerDelay: {{{kind}: 7s}}").router_delay_for(kind) == 7.0


def test_json_schema_accepts_both_router_delay_forms():
    import jsonschema

    schema = Platform.model_json_schema(by_alias=True, mode="validation")
    for text in ("routerDelay: 3s", "routerDelay: {nginx: 1s}", "podStartup: {uniform: [1s, 2s]}"):
        jsonschema.validate(load_yaml(text), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(load_yaml("routerDelay: {envoy: 1s}"), schema)
