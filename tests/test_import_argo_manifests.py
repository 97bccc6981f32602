"""Argo Rollouts as teams write them: templated files, unused templates, every traffic router
and plugin, steps with several actions, validation exactly as strict as Argo's, and one-line
refusals (never a traceback) for what is malformed or not modelled."""

from __future__ import annotations

import pytest
from test_import import SUCCESS_RATE_TEMPLATE

from policies import parse_policy
from policies.errors import PolicyError
from policies.exporters import Target, crds, export
from policies.importers import import_manifests
from policies.vocabulary import ARGO_ROUTERS

HEAD = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  strategy:
    canary:
"""
TEMPLATE = SUCCESS_RATE_TEMPLATE  # Argo's documentation, named success-rate
# a step's analysis must end (Argo marks a Rollout whose step analysis runs indefinitely
# InvalidSpec): the documentation's background template with a count
STEP_TEMPLATE = TEMPLATE.replace("    interval: 5m\n", "    interval: 5m\n    count: 3\n")
ANALYSIS = (
    "{templates: [{templateName: success-rate}],"
    " args: [{name: service-name, value: shop-canary.default.svc.cluster.local}]}"
)
# an AnalysisTemplate of the same repository that the Rollout does not use: an unquoted
# placeholder (a flow mapping as a key) and a provider the simulator has no model of
UNUSED = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: load-test}
spec:
  metrics:
  - name: k6
    provider:
      job:
        spec:
          template:
            spec:
              containers:
              - name: k6
                args: [run, {{args.script}}]
"""


def rollout(canary: str, head: str = HEAD) -> str:
    return head + "".join(f"      {line}\n" for line in canary.strip("\n").splitlines())


def imported(canary: str, *more: str, head: str = HEAD):
    return import_manifests("---".join([rollout(canary, head), *more]))


def refusal(canary: str, *more: str, head: str = HEAD) -> str:
    with pytest.raises(PolicyError) as info:
        imported(canary, *more, head=head)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --------------------------------------------------------------------------- parsing


def test_an_unused_template_with_a_flow_mapping_key_and_no_model_does_not_stop_the_import():
    result = imported("steps: [{setWeight: 50}, {pause: {}}]", TEMPLATE, UNUSED)
    assert result.policy.analysis_templates == ()  # only what the Rollout references
    assert "AnalysisTemplate/success-rate: not referenced by Rollout/shop" in result.ignored
    assert "AnalysisTemplate/load-test: not referenced by Rollout/shop" in result.ignored


def test_a_used_template_with_a_flow_mapping_key_is_refused_in_one_line():
    steps = "steps:\n- setWeight: 50\n- analysis: {templates: [{templateName: load-test}]}"
    message = refusal(steps, UNUSED)
    assert "AnalysisTemplate/load-test" in message and "{args.script}" in message
    assert "quote it" in message


def test_referenced_templates_are_imported_in_the_given_order():
    steps = f"steps:\n- setWeight: 50\n- analysis: {ANALYSIS}"
    result = imported(steps, UNUSED, STEP_TEMPLATE)
    assert [t.name for t in result.policy.analysis_templates] == ["success-rate"]
    assert "AnalysisTemplate/load-test: not referenced by Rollout/shop" in result.ignored


@pytest.mark.parametrize(
    ("canary", "field", "rule"),
    [
        ("steps: {setWeight: 20}", "spec.strategy.canary.steps", "not a mapping"),
        ("steps: [setWeight]", "steps[0]", "is not a step"),
        ("steps: [{setWeight: '20'}]", "steps[0].setWeight", "is not an integer"),
        ("steps: [{setWeight: 20.5}]", "steps[0].setWeight", "is not an integer"),
        ("steps: [{setWeight: true}]", "steps[0].setWeight", "is not an integer"),
        ("steps: [{setWeight: 120}]", "steps[0].setWeight", "must be <= 100"),
        ("steps: [{}]", "steps[0]", "needs an action"),
        ("steps: [{pause: 5}]", "steps[0].pause", "is not a mapping"),
        ("steps: [{pause: {duration: [1]}}]", "steps[0].pause.duration", "is not a duration"),
        ("steps: [{setWeight: 20, pause: {}}]", "steps[0]", "at most one of setWeight"),
        ("steps: [{analysis: [x]}]", "steps[0].analysis", "is not a mapping"),
        ("trafficRouting: [nginx]", "trafficRouting", "is not a mapping"),
        ("trafficRouting: {nginx: 5}", "trafficRouting.nginx", "is not a mapping"),
        ("trafficRouting: {plugins: {}}", "trafficRouting.plugins", "names no plugin"),
        ("maxSurge: [1]", "maxSurge", ""),
        ("minPodsPerReplicaSet: two", "minPodsPerReplicaSet", "is not an integer"),
    ],
)
def test_malformed_fields_are_one_line_naming_the_field(canary, field, rule):
    message = refusal(canary)
    assert field in message and rule in message


def test_a_step_whose_only_action_argo_lacks_is_refused_naming_it():
    message = refusal("steps: [{bogus: 1}]")
    assert "steps[0]: a step needs an action" in message
    assert "steps[0].bogus is not in Argo's CRD" in message


@pytest.mark.parametrize(
    ("canary", "field"),
    [
        ("trafficRouting: {linkerd: {}}\nsteps: [{setWeight: 10}]", "trafficRouting.linkerd"),
        ("trafficRouting: {nginx: {bogus: x}}\nsteps: [{setWeight: 10}]", "nginx.bogus"),
        ("canaryService: x\nsteps:\n  - setWeight: 20\n  - {pause: {}}\nfoo: 1", "canary.foo"),
    ],
)
def test_fields_argos_crd_lacks_are_dropped_as_the_api_server_does(canary, field):
    notes = imported(canary).notes
    assert any(field in note and "not in Argo's CRD" in note for note in notes)


def test_malformed_objects_are_one_line():
    for text in (
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: [x]\nspec: {}\n",
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: [x]\n",
        HEAD.replace("    canary:\n", "    canary: 5\n"),
        HEAD.replace("  strategy:\n    canary:\n", "  strategy: [canary]\n"),
    ):
        with pytest.raises(PolicyError) as info:
            import_manifests(text)
        assert "\n" not in str(info.value)


def test_missing_replicas_is_argos_one():
    head = HEAD.replace("  replicas: 4\n", "")
    result = imported("steps: [{setWeight: 50}]", head=head)
    assert result.policy.replicas == 1
    assert any("Argo runs 1 replica" in note for note in result.notes)


# --------------------------------------------------------------------------- validation as Argo's


def test_abort_delay_and_min_pods_without_a_router_are_accepted_and_ignored_as_argo_does():
    canary = "abortScaleDownDelaySeconds: 60\nminPodsPerReplicaSet: 2\nsteps: [{setWeight: 50}]"
    result = imported(canary)
    assert result.policy.abort_scale_down_delay_seconds == 60
    assert result.policy.effective_abort_scale_down_delay_s == 0.0  # Argo: nil without a router
    notes = "\n".join(result.notes)
    assert "minPodsPerReplicaSet: Argo ignores it" in notes
    assert "abortScaleDownDelaySeconds: Argo ignores it" in notes


def test_what_argo_refuses_without_a_router_stays_refused():
    assert "scaleDownDelaySeconds requires trafficRouting" in refusal(
        "scaleDownDelaySeconds: 30\nsteps: [{setWeight: 50}]"
    )
    assert "dynamicStableScale requires trafficRouting" in refusal(
        "dynamicStableScale: true\nsteps: [{setWeight: 50}]"
    )


ROUTE = "setHeaderRoute: {name: beta, match: [{headerName: x-beta, headerValue: {exact: 'y'}}]}"


@pytest.mark.parametrize(
    "routing",
    [
        "istio: {virtualService: {name: vs}}",
        "alb: {ingress: ing, servicePort: 80}",
        "apisix: {route: {name: r}}",
        "plugins: {argoproj-labs/gatewayAPI: {httpRoute: r, namespace: ns}}",
        "plugins: {acme/custom: {}}",
        "nginx: {stableIngress: ing}\n  istio: {virtualService: {name: vs}}",  # one of them
    ],
)
def test_set_header_route_is_accepted_where_argo_accepts_it(routing):
    canary = f"trafficRouting:\n  {routing}\n  managedRoutes: [{{name: beta}}]\nsteps:\n"
    canary += f"- setWeight: 10\n- {ROUTE}\n- pause: {{}}"
    policy = imported(canary).policy
    assert policy.steps[1].set_header_route.name == "beta"


@pytest.mark.parametrize("routing", ["nginx: {stableIngress: i}", "smi: {}", "traefik: {}"])
def test_set_header_route_is_refused_where_argo_refuses_it(routing):
    canary = f"trafficRouting: {{{routing}}}\nsteps:\n- setWeight: 10\n- {ROUTE}"
    assert "setHeaderRoute requires" in refusal(canary)


def test_max_traffic_weight_needs_nginx_or_a_plugin_among_the_routers():
    canary = "trafficRouting: {nginx: {}, istio: {}, maxTrafficWeight: 1000}\nsteps: []"
    assert imported(canary).policy.max_weight == 1000
    canary = "trafficRouting: {plugins: {acme/x: {}}, maxTrafficWeight: 1000}\nsteps: []"
    assert imported(canary).policy.max_weight == 1000
    assert "maxTrafficWeight" in refusal("trafficRouting: {istio: {}, maxTrafficWeight: 10}")


def test_steps_with_several_actions_import_as_argo_accepts_them():
    canary = (
        "trafficRouting: {istio: {}}\nsteps:\n"
        f"- setWeight: 10\n  {ROUTE}\n"
        "- setCanaryScale: {replicas: 2}\n  pause: {duration: 30s}\n"
        f"- analysis: {ANALYSIS}\n  setCanaryScale: {{weight: 40}}"
    )
    steps = imported(canary, STEP_TEMPLATE).policy.steps
    assert [s.actions for s in steps] == [
        ("set_weight", "set_header_route"),
        ("pause", "set_canary_scale"),
        ("set_canary_scale", "analysis"),  # Argo's switch: setCanaryScale decides
    ]


# --------------------------------------------------------------------------- routers


def routing_of(router: str) -> dict:
    if router == "plugins":
        return {"plugins": {"argoproj-labs/gatewayAPI": {}, "acme/mesh": {}}}
    return {router: {}}


@pytest.mark.parametrize("router", ARGO_ROUTERS)
def test_every_router_goes_out_valid_and_comes_back(router):
    """Export writes the fields each router's CRD requires; import reads the same policy."""
    header = router in ("istio", "alb", "apisix", "plugins")
    steps: list[dict] = [{"setWeight": 20}, {"pause": {"duration": 60}}]
    if header:
        match = [{"headerName": "x-beta", "headerValue": {"exact": "yes"}}]
        steps.insert(1, {"setWeight": 40, "setHeaderRoute": {"name": "beta", "match": match}})
    policy = parse_policy(
        {
            "kind": "Canary",
            "name": "shop",
            "replicas": 5,
            "trafficRouting": routing_of(router),
            "steps": steps,
        }
    )
    out = export(policy, "argo", Target(service="shop", namespace="prod"))
    assert crds.validate_all(out.manifests) == []
    canary = out.manifests[-1]["spec"]["strategy"]["canary"]
    assert canary["stableService"] == "shop-stable" and canary["canaryService"] == "shop-canary"
    assert set(canary["trafficRouting"]) - {"managedRoutes"} == {router}
    back = import_manifests(out.to_yaml())
    assert back.policy == policy
    assert any(f"trafficRouting.{router}" in item for item in back.ignored)


def test_unknown_plugins_leave_a_note_to_fill_in_their_configuration():
    policy = parse_policy(
        {"kind": "Canary", "name": "shop", "trafficRouting": routing_of("plugins"), "steps": []}
    )
    out = export(policy, "argo", Target(service="shop", namespace="prod"))
    plugins = out.manifests[-1]["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"]
    assert plugins == {
        "argoproj-labs/gatewayAPI": {"httpRoute": "shop", "namespace": "prod"},
        "acme/mesh": {},
    }
    assert "acme/mesh" in out.files["NOTES.md"]
    assert "gatewayAPI" not in out.files["NOTES.md"]


def test_several_routers_at_once_each_carry_the_weight():
    canary = (
        "trafficRouting:\n  nginx: {stableIngress: shop}\n"
        "  plugins: {argoproj-labs/gatewayAPI: {httpRoute: shop, namespace: prod}}\n"
        "steps: [{setWeight: 25}]"
    )
    result = imported(canary)
    routing = result.policy.traffic_routing
    assert routing.routers == ("nginx", "plugins")
    assert routing.kinds == ("nginx", "gatewayApi")
    assert any("gatewayAPI: a weighted router (gatewayApi)" in n for n in result.notes)
    out = export(result.policy, "argo", Target(service="shop"))
    assert crds.validate_all(out.manifests) == []
    assert import_manifests(out.to_yaml()).policy == result.policy


def test_docs_routers_read_with_their_object_names_ignored():
    """The routers' fields as Argo's documentation writes them (features/traffic-management)."""
    for routing in (
        "ambassador: {mappings: [stable-mapping]}",
        "apisix: {route: {name: rollouts-apisix-route, rules: [rollouts-apisix]}}",
        "appMesh:\n    virtualService: {name: my-svc, routes: [primary]}\n"
        "    virtualNodeGroup:\n      canaryVirtualNodeRef: {name: my-vn-canary}\n"
        "      stableVirtualNodeRef: {name: my-vn-stable}",
        "traefik: {weightedTraefikServiceName: traefik-service}",
    ):
        router = routing.split(":")[0]
        result = imported(f"trafficRouting:\n  {routing}\nsteps: [{{setWeight: 5}}]")
        assert result.policy.traffic_routing.routers == (router,)
        assert any(f"trafficRouting.{router}." in item for item in result.ignored)


def test_a_flow_mapping_in_the_ignored_pod_template_does_not_stop_the_import():
    head = HEAD.replace(
        "  strategy:\n",
        "  template:\n    spec:\n      containers: [{name: app, image: {{.Values.image}}}]\n"
        "  strategy:\n",
    )
    assert imported("steps: [{setWeight: 50}]", head=head).policy.replicas == 4
    message = refusal("steps: [{setWeight: {{.Values.weight}}}]")
    assert "steps[0].setWeight" in message and "quote it" in message


def test_yaml_with_a_mapping_as_a_key_or_merge_keys_loads():
    from policies.base import FlowKey, find_flow_key, load_yaml  # the loader, not the importer

    doc = load_yaml("a:\n  q: {{args.x}}\nbase: &b {k: 1, j: 1}\nm:\n  <<: *b\n  k: 2\n")
    assert doc["m"] == {"k": 2, "j": 1}  # merged, then overridden
    assert isinstance(next(iter(doc["a"]["q"])), FlowKey)
    assert find_flow_key(doc) == "a.q.{args.x}"
    with pytest.raises(PolicyError, match="duplicate key 'a'"):
        load_yaml("a: 1\na: 2\n")


@pytest.mark.parametrize("condition", ["result >= 0.95", "isNaN(result) || result[0] > 1"])
def test_a_bare_result_on_a_prometheus_metric_is_refused_as_argo_errors_on_it(condition):
    message = refusal(
        f"steps:\n- setWeight: 50\n- analysis: {ANALYSIS}",
        TEMPLATE.replace("result[0] >= 0.95", condition),
    )
    assert "Argo hands a Prometheus condition the query's vector" in message
