"""Every Flagger provider of Flagger's documentation in and out, and the provider Flagger picks
when the Canary names none (reference/executors.md §A; fluxcd/flagger docs/gitbook/tutorials).

The manifests below follow the tutorials' Canary specs: each provider with the reference its
router reads (``ingressRef`` for nginx and skipper, ``routeRef`` for apisix,
``service.gatewayRefs`` for the Gateway API, a Knative Service as the target for knative).
"""

from __future__ import annotations

import pytest
import yaml

from policies.errors import PolicyError
from policies.exporters import Target, crds, export
from policies.importers import import_manifests
from policies.vocabulary import FLAGGER_PROVIDERS, provider_router, router_of

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: test}
spec:
  replicas: 3
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec: {containers: [{name: podinfod, image: "ghcr.io/stefanprodan/podinfo:6.0.0"}]}
"""
KNATIVE = """apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: podinfo, namespace: test}
spec:
  template:
    metadata:
      annotations: {autoscaling.knative.dev/min-scale: "2", autoscaling.knative.dev/max-scale: "2"}
    spec: {containers: [{image: "ghcr.io/stefanprodan/podinfo:6.0.0"}]}
"""
REFS = {
    "nginx": "  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}\n",
    "skipper": "  ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: podinfo}\n",
    "apisix": "  routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}\n",
}
SERVICE = {
    "gatewayapi": "    gatewayRefs: [{name: gateway, namespace: istio-ingress}]\n",
    "appmesh": "    meshName: global\n",
}
SPELLED = {  # spec.provider as the tutorials write it
    "gatewayapi": "gatewayapi:v1",
    "smi": "smi:v1alpha3",
    "appmesh": "appmesh:v1beta2",
}


def canary(provider: str | None, *, analysis: str = "", service=None, refs=None) -> str:
    name = "" if provider is None else provider.partition(":")[0]
    target = "{apiVersion: apps/v1, kind: Deployment, name: podinfo}"
    if name == "knative":
        target = "{apiVersion: serving.knative.dev/v1, kind: Service, name: podinfo}"
    head = f"  provider: {provider}\n" if provider else ""
    return (
        "apiVersion: flagger.app/v1beta1\nkind: Canary\n"
        "metadata: {name: podinfo, namespace: test}\n"
        f"spec:\n{head}  targetRef: {target}\n{REFS.get(name, '') if refs is None else refs}"
        f"  service:\n    port: 9898\n{SERVICE.get(name, '') if service is None else service}"
        "  analysis:\n    interval: 30s\n    threshold: 5\n"
        + (analysis or "    maxWeight: 50\n    stepWeight: 10\n")
        + "    metrics:\n"
        + "    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}\n"
    )


def manifests(provider: str | None, **kw) -> str:
    workload = KNATIVE if provider == "knative" else DEPLOYMENT
    return workload + "---\n" + canary(provider, **kw)


DOCUMENTED = [SPELLED.get(p, p) for p in FLAGGER_PROVIDERS if p != "kubernetes"]
DOCUMENTED += ["gatewayapi:v1beta1", "appmesh", "smi:v1alpha2"]


@pytest.mark.parametrize("spelled", DOCUMENTED)
def test_every_documented_provider_imports_and_exports_back(spelled):
    result = import_manifests(manifests(spelled))
    policy = result.policy
    name = spelled.partition(":")[0]
    assert policy.provider == name and policy.flagger_provider == spelled
    assert router_of(policy) == provider_router(name)
    assert policy.replicas == (2 if name == "knative" else 3)
    out = export(policy, "flagger", Target(service="podinfo", namespace="test"))
    assert (
        crds.validate_all(m for m in out.manifests if m["apiVersion"].startswith("flagger")) == []
    )
    spec = out.manifests[-1]["spec"]
    assert spec["provider"] == spelled
    written = yaml.safe_load(canary(spelled))["spec"]
    for ref in ("ingressRef", "routeRef"):  # the reference the provider's router reads
        assert (ref in spec) == (ref in written)
    assert ("gatewayRefs" in spec["service"]) == (name == "gatewayapi")
    assert spec["targetRef"]["kind"] == written["targetRef"]["kind"]
    assert import_manifests(out.to_yaml()).policy == policy.model_copy(update={"name": "podinfo"})


@pytest.mark.parametrize(
    ("refs", "service", "provider"),
    [
        ("", "", "istio"),
        (REFS["nginx"], "", "nginx"),
        ("", SERVICE["gatewayapi"], "gatewayapi"),
        (REFS["apisix"], "", "apisix"),
    ],
)
def test_without_a_provider_flagger_uses_its_flag_which_the_references_reveal(
    refs, service, provider
):
    result = import_manifests(manifests(None, refs=refs, service=service))
    assert result.policy.provider == provider
    note = next(n for n in result.notes if n.startswith("spec.provider absent"))
    assert "-mesh-provider" in note and (provider == "istio") == ("default, istio" in note)
    out = export(result.policy, "flagger", Target(service="podinfo"))
    spec = out.manifests[-1]["spec"]
    assert spec["provider"].partition(":")[0] == provider  # the export says it explicitly
    assert ("ingressRef" in spec) == (provider == "nginx")
    assert ("gatewayRefs" in spec["service"]) == (provider == "gatewayapi")


@pytest.mark.parametrize(
    ("spelled", "said"),
    [
        ("gatewayapi", "gatewayapi:v1, gatewayapi:v1beta1"),
        ("smi", "smi:v1alpha3"),
        ("gatewayapi:v2", "gatewayapi:v1"),
        ("envoy", "Flagger's providers are"),
        ("istio:v1", "not in Flagger's CRD"),
    ],
)
def test_a_provider_flagger_does_not_accept_is_refused_in_one_line(spelled, said):
    with pytest.raises(PolicyError, match=r"spec\.provider") as info:
        import_manifests(manifests(spelled))
    assert said in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("provider", ["appmesh:v1beta2", "gatewayapi:v1"])
def test_ab_tests_route_through_the_providers_flagger_documents(provider):
    ab = "    iterations: 5\n    match: [{headers: {x-canary: {exact: insider}}}]\n"
    policy = import_manifests(manifests(provider, analysis=ab)).policy
    assert policy.kind == "ABTest"
    out = export(policy, "flagger", Target(service="podinfo"))
    assert out.manifests[-1]["spec"]["analysis"]["match"] == [
        {"headers": {"x-canary": {"exact": "insider"}}}
    ]
