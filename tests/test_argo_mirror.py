"""Argo ``setMirrorRoute`` steps (reference/argo-rollouts.md §1): a mirror route copies a share
of the matching requests to the canary (Istio's ``mirror`` with ``mirrorPercentage``, nil ->
100, ``createMirrorRoute``); a step with only a name removes it (a nil match, Argo's
``reconcileVirtualServiceMirrorRoutes``); all managed routes go at promotion and abort
(``RemoveManagedRoutes``). The step completes at once. Argo's validation accepts it with
istio or a traffic-router plugin. The world's requests have headers (user segments) but no
method or path, so a match on those is refused naming why."""

from __future__ import annotations

import pytest
import yaml
from harness import Driver, failing

from policies import parse_policy, policy_from_yaml
from policies.common import RouteMatch, StringMatch
from policies.controller import SetMirror, StatusChanged
from policies.errors import PolicyError
from policies.explain import explain
from policies.exporters import Target, crds, export
from policies.importers import import_manifests
from policies.loading import policy_to_yaml
from policies.onto import export_onto

TEMPLATE = """
analysisTemplates:
  - name: err
    metrics:
      - name: err
        interval: 60s
        count: 3
        failureCondition: result > 0.10
        provider: {query: {measure: errorRate}}
"""
MIRROR = (
    "  - setMirrorRoute:\n"
    "      name: shadow\n"
    "      percentage: 40\n"
    "      match: [{headers: {x-beta: {exact: 'true'}}}]\n"
)


def canary(steps: str, routing: str = "trafficRouting: {istio: {}}"):
    return policy_from_yaml(f"kind: Canary\nname: c\n{routing}\nsteps:\n{steps}{TEMPLATE}")


def mirrors(d: Driver) -> list[tuple[float, str, float, tuple]]:
    return [(t, a.name, a.percent, a.match) for t, a in d.actions(SetMirror)]


BETA = (RouteMatch(headers={"x-beta": StringMatch(exact="true")}),)

# --------------------------------------------------------------------------- the policy


def test_percentage_absent_is_argos_100_and_kept_absent():
    policy = canary("  - setMirrorRoute: {name: m, match: [{headers: {x: {exact: a}}}]}\n")
    step = policy.steps[0].set_mirror_route
    assert step.percentage is None and step.percent == 100
    assert "percentage" not in policy.to_dict()["steps"][0]["setMirrorRoute"]


@pytest.mark.parametrize(
    ("match", "words"),
    [
        ("[{method: {exact: POST}}]", "HTTP method is not modelled"),
        ("[{path: {prefix: /color}}]", "only {prefix: /} (every request)"),
        ("[{path: {exact: /}}]", "only {prefix: /} (every request)"),
    ],
)
def test_a_match_the_world_cannot_evaluate_is_refused_naming_why(match, words):
    with pytest.raises(PolicyError) as info:
        canary(f"  - setMirrorRoute: {{name: m, match: {match}}}\n")
    assert words in str(info.value) and "setMirrorRoute.match[0]" in str(info.value)


def test_path_prefix_slash_and_an_empty_list_copy_every_request():
    every = canary("  - setMirrorRoute: {name: m, match: [{path: {prefix: /}}]}\n")
    assert every.steps[0].set_mirror_route.copied == ()
    empty = canary("  - setMirrorRoute: {name: m, match: []}\n")
    assert empty.steps[0].set_mirror_route.copied == ()
    assert empty.steps[0].set_mirror_route.match == ()  # not None: Go's non-nil empty slice
    headers = canary(MIRROR)
    assert headers.steps[0].set_mirror_route.copied == BETA


@pytest.mark.parametrize(
    ("routing", "ok"),
    [
        ("trafficRouting: {istio: {}}", True),
        ("trafficRouting: {plugins: {argoproj-labs/gatewayAPI: {}}}", True),
        ("trafficRouting: {nginx: {}, istio: {}}", True),
        ("trafficRouting: {nginx: {}}", False),
        ("trafficRouting: {alb: {}}", False),
        ("", False),
    ],
)
def test_routers_are_argos_validation(routing, ok):
    if ok:
        canary(MIRROR, routing)
        return
    with pytest.raises(PolicyError, match=r"setMirrorRoute requires istio or plugins"):
        canary(MIRROR, routing)


# --------------------------------------------------------------------------- the controller


def test_mirror_is_set_when_its_step_is_reached_and_the_step_completes_at_once():
    steps = "  - setWeight: 10\n" + MIRROR + "  - pause: {duration: 60}\n"
    d = Driver(canary(steps), 10, startup=20).start().run(1000)
    assert mirrors(d)[0] == (20.0, "shadow", 40.0, BETA)
    assert (20.0, "Paused", "CanaryPauseStep") in d.statuses  # the next step, same instant


def test_a_step_with_only_a_name_removes_the_route():
    steps = MIRROR + "  - pause: {duration: 60}\n  - setMirrorRoute: {name: shadow}\n"
    steps += "  - pause: {}\n"
    d = Driver(canary(steps), 10).start().run(1000)
    assert mirrors(d) == [(0.0, "shadow", 40.0, BETA), (60.0, "shadow", 0.0, ())]


def test_managed_routes_are_removed_at_promotion():
    steps = MIRROR + "  - setWeight: 50\n"
    d = Driver(canary(steps), 4, startup=10).start().run(1000)
    promoted = d.status_at("RolloutCompleted")
    assert mirrors(d)[-1] == (promoted, "shadow", 0.0, ())


def test_managed_routes_are_removed_at_abort():
    steps = MIRROR + "  - setWeight: 20\n  - analysis: {templates: [{templateName: err}]}\n"
    d = Driver(canary(steps), 4, startup=10, observe=failing).start().run(1000)
    aborted = next(t for t, a in d.actions(StatusChanged) if a.status == "Aborted")
    assert mirrors(d) == [(0.0, "shadow", 40.0, BETA), (aborted, "shadow", 0.0, ())]


def test_percentage_zero_copies_nothing():
    d = Driver(canary("  - setMirrorRoute: {name: m, percentage: 0, match: []}\n"), 4)
    assert mirrors(d.start().run(100)) == []


# --------------------------------------------------------------------------- in and out

ROLLOUT = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop-stable
      trafficRouting:
        managedRoutes: [{name: shadow}]
        istio: {virtualService: {name: shop, routes: [primary]}}
      steps:
        - setWeight: 10
        - setMirrorRoute:
            name: shadow
            percentage: 30
            match:
              - headers: {x-beta: {exact: "true"}}
                path: {prefix: /}
        - pause: {duration: 10m}
        - setMirrorRoute: {name: shadow}
        - setWeight: 50
"""


def test_import_export_and_round_trip(tmp_path):
    policy = import_manifests(ROLLOUT).policy
    route = policy.steps[1].set_mirror_route
    assert (route.percent, route.copied) == (30, BETA)
    assert policy.steps[3].set_mirror_route.match is None
    out = export(policy, "argo", Target(service="shop"))
    crds.check(out.manifests)
    canary_spec = out.manifests[-1]["spec"]["strategy"]["canary"]
    assert canary_spec["trafficRouting"]["managedRoutes"] == [{"name": "shadow"}]
    assert canary_spec["steps"][3] == {"setMirrorRoute": {"name": "shadow"}}
    again = import_manifests(yaml.safe_dump_all(out.manifests)).policy
    assert again.steps == policy.steps
    assert parse_policy(yaml.safe_load(policy_to_yaml(policy))) == policy
    source = tmp_path / "rollout.yaml"
    source.write_text(ROLLOUT)
    onto = export_onto(policy, [source])  # unchanged: the same document
    assert list(yaml.safe_load_all(onto.files[str(source)])) == [yaml.safe_load(ROLLOUT)]


def test_the_method_match_of_argos_istio_example_is_refused_in_one_line():
    text = ROLLOUT.replace("path: {prefix: /}", "method: {exact: GET}")
    with pytest.raises(PolicyError) as info:
        import_manifests(text)
    message = str(info.value)
    assert "\n" not in message and "HTTP method is not modelled" in message


def test_explain_shows_the_mirror():
    rows = explain(import_manifests(ROLLOUT).policy, 4).rows
    assert "setMirrorRoute shadow (30 % of x-beta copied)" in rows[1].action
    assert "setMirrorRoute shadow (removed)" in rows[3].action
