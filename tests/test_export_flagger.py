"""Flagger export: shipped policies Flagger can express validate against its CRD (and the target
Deployment against Kubernetes' schema); everything else is refused with field and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import load_policy, parse_policy
from policies.errors import NotExpressibleError
from policies.exporters import Target, crds, export, flagger, k8s_validate
from policies.importers import import_manifests

SHIPPED = Path(__file__).parent.parent / "scenarios" / "policies"
POLICIES = sorted(SHIPPED.glob("*.yaml"))
REFUSED = {
    "batch-release": "batches",
    "bluegreen": "switch",
    "bluegreen-dns": "switch",
    "canary-20-first": "analysisTemplates[0].metrics[0].interval",
    "canary-basic": "trafficRouting",
    "canary-kayenta": "steps[2].analysis",
    "canary-nginx": "analysisTemplates[0].metrics[0].interval",
    "canary-sprt": "analysisTemplates[0].metrics[0].provider.sequential",
    "rolling-update": "kind",
}


def check_valid(manifests):
    custom = [m for m in manifests if m["apiVersion"] == flagger.API_VERSION]
    core = [m for m in manifests if m["apiVersion"] != flagger.API_VERSION]
    assert crds.validate_all(custom) == []
    assert k8s_validate.validate_all(core) == []
    assert [m["kind"] for m in manifests][-2:] == ["Deployment", "Canary"]  # apply order


def canary(steps, **extra):
    data = {"kind": "Canary", "name": "web", "trafficRouting": {"istio": {}}, "steps": steps}
    return parse_policy(data | extra)


def pairs(*weights, pause="5m"):
    return [s for w in weights for s in ({"setWeight": w}, {"pause": {"duration": pause}})]


def refused(policy) -> NotExpressibleError:
    with pytest.raises(NotExpressibleError) as info:
        export(policy, "flagger", Target(service="web"))
    assert info.value.executor == "flagger" and len(info.value.reason) > 20
    return info.value


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_shipped_policy_exports_or_is_refused(path):
    policy = load_policy(path)
    if path.stem in REFUSED:
        assert refused(policy).field == REFUSED[path.stem]
        return
    out = export(policy, "flagger", Target(service=policy.name, namespace="shop", replicas=4))
    check_valid(out.manifests)
    deployment, spec = out.manifests[-2], out.manifests[-1]["spec"]
    assert deployment["spec"]["replicas"] == 4
    assert spec["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": policy.name}
    assert spec["provider"] == policy.provider


def test_progressive_nginx_keeps_its_built_in_metrics():
    """Since Flagger 1.15 the ingress-nginx built-in success rate selects the canary's requests
    only (``canary!=""``, fluxcd/flagger#1023), and its built-in duration is the canary's mean,
    which the simulator judges too (``policies.flagger.duration_read``): both stay built in."""
    policy = load_policy(SHIPPED / "progressive.yaml")
    out = export(policy, "flagger", Target(service="podinfo"))
    check_valid(out.manifests)
    spec = out.manifests[-1]["spec"]
    assert spec["ingressRef"]["name"] == "podinfo"
    assert spec["analysis"]["interval"] == "1m" and spec["analysis"]["stepWeight"] == 20
    metrics = {m["name"]: m for m in spec["analysis"]["metrics"]}
    assert set(metrics) == {"request-success-rate", "request-duration"}
    assert not any("templateRef" in m for m in metrics.values())
    assert not [m for m in out.manifests if m["kind"] == "MetricTemplate"]
    assert metrics["request-duration"]["thresholdRange"] == {"max": 500.0}
    back = import_manifests(out.to_yaml()).policy
    assert back == policy.model_copy(update={"replicas": 10, "name": "podinfo"})


def test_istio_keeps_builtins():
    policy = parse_policy(
        {
            "kind": "Progressive",
            "name": "web",
            "provider": "istio",
            "analysis": {
                "interval": "1h",
                "stepWeights": [1, 5, 50],
                "metrics": [{"name": "request-success-rate", "threshold": 99}],
            },
        }
    )
    out = export(policy, "flagger", Target(service="web"))
    check_valid(out.manifests)
    analysis = out.manifests[-1]["spec"]["analysis"]
    assert analysis["interval"] == "60m"  # Flagger's pattern has no "h"
    assert analysis["metrics"] == [
        {"name": "request-success-rate", "interval": "1m", "threshold": 99.0}
    ]
    assert len(out.manifests) == 2


def test_ab_test_match_per_router():
    def ab(provider, match):
        return parse_policy(
            {
                "kind": "ABTest",
                "name": "web",
                "provider": provider,
                "analysis": {"iterations": 5, "match": match},
            }
        )

    both = [{"headers": {"x-beta": {"exact": "on"}}}, {"cookie": {"exact": "canary"}}]
    istio = export(ab("istio", both), "flagger", Target(service="web"))
    check_valid(istio.manifests)
    match = istio.manifests[-1]["spec"]["analysis"]["match"]
    assert match[1] == {"headers": {"cookie": {"regex": flagger.cookie_regex("canary")}}}
    nginx = export(ab("nginx", both), "flagger", Target(service="web"))
    assert nginx.manifests[-1]["spec"]["analysis"]["match"][1] == {
        "headers": {"cookie": {"exact": "canary"}}
    }
    anded = [{"headers": {"x-beta": {"exact": "on"}}, "cookie": {"exact": "canary"}}]
    assert refused(ab("nginx", anded)).field == "analysis.match[0]"
    prefix = [{"headers": {"x-beta": {"prefix": "o"}}}]
    assert refused(ab("nginx", prefix)).field == "analysis.match[0].headers.x-beta"
    # Flagger's ingress router writes a regex as canary-by-header-pattern, which ingress-nginx
    # searches (unanchored PCRE): the export anchors it to the whole value, as Envoy matches
    agent = [{"headers": {"user-agent": {"regex": "Firefox/1.*"}}}]
    regex = export(ab("nginx", agent), "flagger", Target(service="web"))
    anchored = [{"headers": {"user-agent": {"regex": "^(?:Firefox/1.*)$"}}}]
    assert regex.manifests[-1]["spec"]["analysis"]["match"] == anchored
    assert (
        import_manifests(regex.to_yaml()).policy.analysis.match == ab("nginx", agent).analysis.match
    )
    # a team's unanchored pattern matches anywhere in the value, as ingress-nginx searches it
    team = regex.to_yaml().replace("^(?:Firefox/1.*)$", "Firefox")
    read = import_manifests(team).policy.analysis.match[0].headers["user-agent"].regex
    assert read == ".*(?:Firefox).*"
    two = [{"headers": {"x-a": {"exact": "1"}}}, {"headers": {"x-b": {"exact": "1"}}}]
    assert refused(ab("nginx", two)).field == "analysis.match[1]"
    assert refused(ab("linkerd", both)).field == "provider"


def test_progressive_refusals():
    base = {"kind": "Progressive", "name": "web", "analysis": {"stepWeight": 10}}
    sub = parse_policy(base | {"analysis": {"stepWeight": 10, "interval": 1.5}})
    assert refused(sub).field == "analysis.interval"
    custom = {
        "name": "request-success-rate",
        "thresholdRange": {"min": 0.99},
        "query": {"measure": "successRate"},
    }
    named = parse_policy(base | {"analysis": {"stepWeight": 10, "metrics": [custom]}})
    assert refused(named).field == "analysis.metrics[0].name"
    skipper = parse_policy(
        base
        | {
            "provider": "skipper",
            "analysis": {"stepWeight": 10, "metrics": [custom | {"name": "sr"}]},
        }
    )
    assert refused(skipper).field == "analysis.metrics[0].query"
    assert "non-word character" in refused(skipper).reason
    assert "traefik, apisix, osm, gatewayapi" in refused(skipper).reason  # what is written


def test_canary_with_even_pauses_becomes_step_weights():
    policy = canary(
        pairs(5, 20, 50),
        replicas=3,
        minReadySeconds=10,
        analysisTemplates=[
            {
                "name": "errors",
                "metrics": [
                    {
                        "name": "errors",
                        "interval": "5m",
                        "failureLimit": 2,
                        "failureCondition": "result[0] > 0.01 || result[0] < 0",
                        "provider": {"query": {"measure": "errorRate"}},
                    }
                ],
            }
        ],
        analysis={"templates": [{"templateName": "errors"}]},
    )
    out = export(policy, "flagger", Target(service="web"))
    check_valid(out.manifests)
    analysis = out.manifests[-1]["spec"]["analysis"]
    assert analysis["stepWeights"] == [5, 20, 50]
    assert analysis["interval"] == "5m"
    assert analysis["threshold"] == 3  # failureLimit 2: the third failure aborts
    assert analysis["metrics"][0]["thresholdRange"] == {"max": 0.01, "min": 0.0}
    assert out.manifests[-2]["spec"]["minReadySeconds"] == 10


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        (
            [*pairs(5, 20), {"setWeight": 50}, {"pause": {"duration": "10m"}}],
            "steps[5].pause.duration",
        ),
        ([{"setWeight": 5}, {"setWeight": 10}], "steps[1]"),
        ([*pairs(5), {"setWeight": 50}], "steps[2]"),
        ([*pairs(5), {"setCanaryScale": {"replicas": 1}}], "steps[2].setCanaryScale"),
        ([{"setWeight": 5}, {"pause": {}}], "steps[1].pause"),
        (pairs(20, 10), "steps[2].setWeight"),
        ([], "steps"),
    ],
)
def test_canary_steps_flagger_cannot_tick(steps, field):
    assert refused(canary(steps)).field == field


def test_canary_settings_flagger_lacks():
    assert refused(canary(pairs(5), scaleDownDelaySeconds=60)).field == "scaleDownDelaySeconds"
    basic = parse_policy({"kind": "Canary", "name": "web", "steps": pairs(5)})
    assert refused(basic).field == "trafficRouting"
    metric = {
        "name": "a",
        "interval": "5m",
        "successCondition": "result[0] > 0.9",
        "provider": {"query": {"measure": "successRate"}},
    }
    strict = canary(
        pairs(5),
        analysisTemplates=[{"name": "t", "metrics": [metric]}],
        analysis={"templates": [{"templateName": "t"}]},
    )
    assert refused(strict).field == "analysisTemplates[0].metrics[0].successCondition"
    two = [
        metric | {"successCondition": "result[0] >= 0.9", "failureLimit": 1},
        metric | {"name": "b", "successCondition": "result[0] >= 0.9"},
    ]
    several = canary(
        pairs(5),
        analysisTemplates=[{"name": "t", "metrics": two}],
        analysis={"templates": [{"templateName": "t"}]},
    )
    assert "failureLimit" in refused(several).field


def test_intervals():
    assert flagger.flagger_interval("f", 3600) == "60m"
    assert flagger.flagger_interval("f", 90) == "90s"
    for bad in (0.5, 1.5):
        with pytest.raises(NotExpressibleError):
            flagger.flagger_interval("f", bad)


def test_threshold_ranges():
    rng = flagger.threshold_range
    assert rng("result[0] >= 0.99", True) == {"min": 0.99}
    assert rng("result >= 0.1 && result <= 0.9", True) == {"min": 0.1, "max": 0.9}
    assert rng("0.5 >= result", True) == {"max": 0.5}
    assert rng("result[0] > 0.05", False) == {"max": 0.05}
    assert rng("result[0] > 0.99", True) is None  # strict: Flagger's min passes equality
    assert rng("isNaN(result)", False) is None


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_executors_for_reports_the_refusals(path):
    from policies.exporters import executors_for

    policy = load_policy(path)
    try:
        verdicts = executors_for(policy)
    except ImportError as exc:  # another executor's module is not there yet
        pytest.skip(f"executors_for needs every exporter: {exc}")
    field = REFUSED.get(path.stem)
    if field is None:
        assert verdicts["flagger"] is None
    else:
        assert verdicts["flagger"].startswith(f"flagger cannot express {field}: ")


@pytest.mark.parametrize(
    ("routing", "provider"),
    [
        ({"appMesh": {}}, "appmesh"),
        ({"apisix": {}}, "apisix"),
        ({"traefik": {}}, "traefik"),
        ({"plugins": {"argoproj-labs/gatewayAPI": {}}}, "gatewayapi:v1"),
    ],
)
def test_an_argo_canary_goes_to_the_flagger_provider_of_its_router(routing, provider):
    policy = canary(pairs(10, 50), trafficRouting=routing)
    out = export(policy, "flagger", Target(service="web"))
    check_valid(out.manifests)
    assert out.manifests[-1]["spec"]["provider"] == provider


def test_an_argo_canary_on_two_routers_or_one_flagger_lacks_is_refused():
    two = canary(pairs(10, 50), trafficRouting={"nginx": {}, "istio": {}})
    assert refused(two).field == "trafficRouting"
    assert "one provider" in refused(two).reason
    assert refused(canary(pairs(10), trafficRouting={"alb": {}})).field == "trafficRouting"


def test_the_flagger_runbook_prompts_for_confirm_rollout_and_refuses_the_waiting_gates():
    base = {"kind": "Progressive", "name": "web", "provider": "nginx"}
    rollout = parse_policy(base | {"analysis": {"stepWeight": 50, "gates": ["confirm-rollout"]}})
    script = export(rollout, "nginx", Target(service="web")).files["runbook.sh"]
    body = script.split("rs_approve()", 1)[1]
    assert body.index("confirm-rollout") < body.index("--replicas=10")  # before the scale-up
    for gate in ("confirm-traffic-increase", "confirm-promotion"):
        gated = parse_policy(base | {"analysis": {"stepWeight": 50, "gates": [gate]}})
        with pytest.raises(NotExpressibleError, match="keeps analysing") as info:
            export(gated, "nginx", Target(service="web"))
        assert info.value.field == "analysis.gates"


# --------------------------------------------------------------------------- blue/green and co.


def round_trip(data: dict, target: Target | None = None):
    policy = parse_policy(data)
    out = export(policy, "flagger", target or Target(service="web", namespace="shop", port=9898))
    check_valid(out.manifests)
    back = import_manifests(out.to_yaml()).policy
    assert back.model_dump(exclude={"replicas"}) == policy.model_dump(exclude={"replicas"})
    return out.manifests[-1]["spec"]


METRIC = {"name": "request-success-rate", "thresholdRange": {"min": 99}}


def test_blue_green_mirror_and_load_test_export_and_come_back():
    spec = round_trip(
        {
            "kind": "Progressive",
            "name": "web",
            "analysis": {
                "iterations": 5,
                "mirror": True,
                "mirrorWeight": 50,
                "loadTest": {"rate": 20, "concurrency": 2},
                "metrics": [METRIC],
            },
        }
    )
    analysis = spec["analysis"]
    assert analysis["iterations"] == 5 and analysis["mirror"] is True
    assert analysis["mirrorWeight"] == 50
    assert analysis["webhooks"] == [
        {
            "name": "load-test",
            "type": "rollout",
            "url": "http://flagger-loadtester.shop/",
            "metadata": {"cmd": "hey -z 1m -q 10 -c 2 http://web-canary.shop:9898/"},
        }
    ]


def test_kubernetes_blue_green_and_pre_rollout_load_test():
    spec = round_trip(
        {
            "kind": "Progressive",
            "name": "web",
            "provider": "kubernetes",
            "analysis": {
                "iterations": 3,
                "loadTest": {"rate": 5, "duration": 90, "type": "pre-rollout", "name": "hey"},
                "metrics": [METRIC],
            },
        }
    )
    assert spec["provider"] == "kubernetes" and "ingressRef" not in spec
    assert spec["analysis"]["webhooks"][0]["metadata"]["cmd"].startswith("hey -z 90s -q 5 -c 1")


def test_session_affinity_exports_with_its_max_age():
    spec = round_trip(
        {
            "kind": "Progressive",
            "name": "web",
            "provider": "gatewayapi",
            "analysis": {
                "stepWeight": 10,
                "sessionAffinity": {"cookieName": "flagger-cookie", "maxAge": 21600},
                "metrics": [METRIC],
            },
        }
    )
    assert spec["analysis"]["sessionAffinity"] == {"cookieName": "flagger-cookie", "maxAge": 21600}


def test_gateway_api_custom_queries_read_the_gateways_envoy_clusters():
    """The corpus's Gateway API canaries (Envoy MetricTemplates) exported: the query selects the
    canary's Envoy upstream cluster as Flagger's Gateway API tutorial does, and comes back."""
    query = {"measure": "errorRate", "unit": "percent"}
    policy = parse_policy(
        {
            "kind": "Progressive",
            "name": "web",
            "provider": "gatewayapi",
            "analysis": {
                "stepWeight": 10,
                "metrics": [{"name": "error-rate", "thresholdRange": {"max": 1}, "query": query}],
            },
        }
    )
    out = export(policy, "flagger", Target(service="web", namespace="shop"))
    check_valid(out.manifests)
    text = out.manifests[0]["spec"]["query"]
    assert 'envoy_cluster_name=~"{{ namespace }}_{{ target }}-canary_[0-9a-zA-Z-]+"' in text
    assert import_manifests(out.to_yaml()).policy.analysis == policy.analysis


_OWN_METRICS = {
    # provider: what its custom query selects the canary by (Flagger's own observers' selector)
    "traefik": 'service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd"',
    "apisix": 'route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"',
    "osm": 'destination_kind="Deployment", destination_name="{{ target }}"',
}


@pytest.mark.parametrize("provider", sorted(_OWN_METRICS))
def test_custom_queries_read_the_providers_own_metrics_and_come_back(provider):
    """The corpus's Traefik, APISIX and OSM tutorials' custom metrics: written over the
    provider's own metrics as Flagger's built-ins select the canary, a metric name that is no
    object name spelt as one, and read back as the same analysis."""
    metrics = [
        {"name": "404s percentage", "thresholdRange": {"max": 5}, "query": q}
        for q in (
            {"measure": "errorRate", "unit": "percent", "errors": "404"},
            {"measure": "latency", "quantile": 0.95, "unit": "milliseconds"},
        )
    ]
    metrics[1]["name"] = "p95"
    policy = parse_policy(
        {
            "kind": "Progressive",
            "name": "web",
            "provider": provider,
            "analysis": {"stepWeight": 10, "metrics": metrics},
        }
    )
    out = export(policy, "flagger", Target(service="web", namespace="shop"))
    check_valid(out.manifests)
    names = [m["metadata"]["name"] for m in out.manifests[:2]]
    assert names == ["web-404s-percentage", "web-p95"]
    refs = [m["templateRef"]["name"] for m in out.manifests[-1]["spec"]["analysis"]["metrics"]]
    assert refs == names
    for template in out.manifests[:2]:
        assert _OWN_METRICS[provider] in template["spec"]["query"]
    assert import_manifests(out.to_yaml()).policy.analysis == policy.analysis


def test_apisix_refuses_a_query_of_the_primary_and_names_clash():
    query = {"measure": "errorRate", "version": "stable"}
    base = {"kind": "Progressive", "name": "web", "provider": "apisix"}
    stable = parse_policy(
        base
        | {
            "analysis": {
                "stepWeight": 10,
                "metrics": [{"name": "e", "thresholdRange": {"max": 1}, "query": query}],
            }
        }
    )
    assert refused(stable).field == "analysis.metrics[0].query"
    assert "only the canary" in refused(stable).reason
    twice = [
        {"name": n, "thresholdRange": {"max": 1}, "query": {"measure": "errorRate"}}
        for n in ("a b", "a-b")
    ]
    clash = parse_policy(base | {"analysis": {"stepWeight": 10, "metrics": twice}})
    assert refused(clash).field == "analysis.metrics[1].name"
