"""Istio export: one VirtualService per step, match routes first (first match wins), every
object valid against the anchored Istio CRD, and refusals that name their field."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from policies import load_policy, policy_from_yaml
from policies.errors import NotExpressibleError
from policies.exporters import Target, export
from policies.exporters.istio import API_VERSION, validate, validate_all
from policies.exporters.manifests import STEP

POLICIES = Path(__file__).resolve().parents[1] / "scenarios" / "policies"
REFUSED = {
    "batch-release": "kind",
    "bluegreen-dns": "switch",
    "canary-20-first": "trafficRouting",
    "canary-basic": "trafficRouting",
    "canary-kayenta": "analysisTemplates[0].metrics[0].provider.kayenta",
    "canary-nginx": "trafficRouting",
    "canary-sprt": "trafficRouting",
    "progressive": "provider",  # Flagger would route it through ingress-nginx
    "rolling-update": "kind",
}
HEADER_CANARY = """
kind: Canary
name: c
trafficRouting: {istio: {}}
steps:
  - setHeaderRoute: {name: beta, match: [{headerName: X-Beta, headerValue: {exact: "yes"}},
                                        {headerName: x-tier, headerValue: {prefix: gold}}]}
  - setWeight: 10
  - pause: {duration: 1m}
  - setWeight: 40
  - setHeaderRoute: {name: beta}
"""


def virtual_services(manifests) -> list[dict]:
    return [m for m in manifests if m["kind"] == "VirtualService"]


def weights(vs: dict) -> list[int | None]:
    return [d.get("weight") for d in vs["spec"]["http"][-1]["route"]]


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_policy_exports_or_is_refused_by_field(path):
    policy = load_policy(path)
    if path.stem in REFUSED:
        with pytest.raises(NotExpressibleError) as refused:
            export(policy, "istio")
        assert (refused.value.executor, refused.value.field) == ("istio", REFUSED[path.stem])
        return
    exported = export(policy, "istio", Target(replicas=4))
    assert virtual_services(exported.manifests)
    assert validate_all(exported.manifests) == []  # Istio CRD and offline core schemas
    script = exported.files["runbook.sh"]
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    steps = json.loads(exported.files["runbook.json"])
    assert all(s["command"] in script and s["wait"] in script for s in steps)


def test_the_api_version_is_served_by_the_anchored_crd():
    assert API_VERSION == "networking.istio.io/v1"
    vs = {
        "apiVersion": "networking.istio.io/v1alpha9",
        "kind": "VirtualService",
        "metadata": {"name": "x"},
        "spec": {},
    }
    assert validate(vs) == [
        "VirtualService/x: VirtualService: version 'v1alpha9' not in the"
        " CRD (v1, v1alpha3, v1beta1)"
    ]


def test_ab_test_virtual_service_has_the_match_route_first():
    exported = export(load_policy(POLICIES / "ab-test-header.yaml"), "istio", Target(replicas=2))
    ab = next(
        v
        for v in virtual_services(exported.manifests)
        if v["metadata"]["annotations"][STEP] == "A/B"
    )
    first, default = ab["spec"]["http"]
    assert first["match"] == [{"headers": {"x-canary": {"exact": "insider"}}}]
    assert [(d["destination"]["subset"], d["weight"]) for d in first["route"]] == [
        ("stable", 0),
        ("canary", 100),
    ]
    assert default == {
        "name": "primary",
        "route": [{"destination": {"host": "app", "subset": "stable"}}],
    }
    assert exported.files["runbook.sh"].count("rs_tick 60 2 rs_checks") == 10  # iterations


def test_ab_matches_and_within_an_entry_or_across_entries():
    policy = policy_from_yaml(
        "kind: ABTest\nname: ab\nanalysis:\n  iterations: 1\n  match:\n"
        "    - headers: {X-Beta: {exact: 'true'}, x-region: {regex: 'eu-.*'}}\n"
        "    - cookie: {exact: canary}\n"
        "  metrics: [{name: request-duration, thresholdRange: {max: 500}}]\n"
    )
    exported = export(policy, "istio")
    assert validate_all(exported.manifests) == []
    ab = virtual_services(exported.manifests)[1]["spec"]["http"][0]
    assert ab["match"] == [
        {"headers": {"x-beta": {"exact": "true"}, "x-region": {"regex": "eu-.*"}}},
        {"headers": {"cookie": {"regex": r"^(.*?;\s*)?canary=always(;.*)?$"}}},
    ]


@pytest.mark.parametrize(
    ("match", "field"),
    [
        ("[{headers: {x-a: {exact: ''}}}]", "analysis.match[0].headers.x-a"),
        ("[{cookie: {prefix: can}}]", "analysis.match[0].cookie"),
        ("[{headers: {cookie: {exact: 'a=b'}}, cookie: {exact: c}}]", "analysis.match[0].cookie"),
    ],
)
def test_matches_istio_cannot_express_are_refused(match, field):
    text = (
        f"kind: ABTest\nname: ab\nanalysis:\n  iterations: 1\n  match: {match}\n"
        "  metrics: [{name: request-success-rate, thresholdRange: {min: 99}}]\n"
    )
    with pytest.raises(NotExpressibleError) as refused:
        export(policy_from_yaml(text), "istio")
    assert refused.value.field == field


def test_canary_virtual_service_per_step_with_header_routes_first():
    exported = export(policy_from_yaml(HEADER_CANARY), "istio", Target(replicas=10))
    assert validate_all(exported.manifests) == []
    services = virtual_services(exported.manifests)
    assert [v["metadata"]["annotations"][STEP] for v in services] == [
        "initial",
        "steps[0]: setHeaderRoute",
        "steps[1]: setWeight 10",
        "steps[3]: setWeight 40",
        "steps[4]: setHeaderRoute",
        "end of steps",
        "promoted",
    ]
    assert [weights(v) for v in services] == [
        [100, 0],
        [100, 0],
        [90, 10],
        [60, 40],
        [60, 40],
        [0, 100],
        [100, 0],
    ]
    header = services[2]["spec"]["http"][0]
    assert header["name"] == "beta" and len(services[2]["spec"]["http"]) == 2
    assert header["match"] == [
        {"headers": {"x-beta": {"exact": "yes"}, "x-tier": {"prefix": "gold"}}}
    ]
    assert header["route"] == [{"destination": {"host": "app", "subset": "canary"}, "weight": 100}]
    assert len(services[4]["spec"]["http"]) == 1  # the route without match is removed
    rules = [m for m in exported.manifests if m["kind"] == "DestinationRule"]
    assert [[s["labels"]["version"] for s in r["spec"]["subsets"]] for r in rules] == [
        ["stable", "canary"],
        ["canary", "canary"],  # promotion: the stable subset is the new pods
    ]


def test_progressive_on_istio_has_one_virtual_service_per_weight():
    policy = policy_from_yaml(
        "kind: Progressive\nname: p\nprovider: istio\nanalysis:\n  interval: 30s\n"
        "  stepWeights: [5, 25, 50]\n  stepWeightPromotion: 30\n"
        "  metrics: [{name: request-success-rate, thresholdRange: {min: 99}}]\n"
    )
    exported = export(policy, "istio")
    assert validate_all(exported.manifests) == []
    canary = [weights(v)[1] for v in virtual_services(exported.manifests)]
    assert canary == [0, *policy.weight_schedule(), 20, 0]  # promotion shifts 30 per tick
    assert "rs_tick 30 1 rs_checks" in exported.files["runbook.sh"]


def test_bluegreen_flips_the_virtual_service_weights():
    exported = export(load_policy(POLICIES / "bluegreen.yaml"), "istio", Target(replicas=3))
    services = virtual_services(exported.manifests)
    routes = [
        [(d["destination"]["subset"], d["weight"]) for d in v["spec"]["http"][0]["route"]]
        for v in services
    ]
    assert routes == [[("blue", 100), ("green", 0)], [("blue", 0), ("green", 100)]]
    rule = next(m for m in exported.manifests if m["kind"] == "DestinationRule")
    assert [s["labels"] for s in rule["spec"]["subsets"]] == [
        {"version": "blue"},
        {"version": "green"},
    ]


def test_a_broken_virtual_service_is_caught_with_every_error_listed():
    vs = copy.deepcopy(
        virtual_services(export(policy_from_yaml(HEADER_CANARY), "istio").manifests)[2]
    )
    vs["spec"]["http"][1]["route"][0]["weight"] = "ninety"
    vs["spec"]["http"][1]["route"][1]["destination"].pop("host")
    vs["spec"]["http"][0]["match"][0]["headers"]["x-beta"] = {"exact": "a", "prefix": "b"}
    vs["spec"]["http"][0]["retry"] = {"attempts": 3}  # a typo of "retries"
    vs["metadata"]["name"] = "Bad_Name"
    errors = validate(vs)
    wanted = [
        "spec.http[1].route[0].weight",
        "'host' is a required property",
        "x-beta",
        "unknown field(s) retry",
        "metadata.name",
    ]
    assert len(errors) == len(wanted), errors
    for piece in wanted:
        assert any(piece in e for e in errors), (piece, errors)
