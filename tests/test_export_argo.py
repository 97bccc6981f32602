"""Argo Rollouts export: every shipped policy Argo can express validates against the CRDs with
zero errors; the others are refused with the field and a reason; CRD validation itself lists
every error and fails loudly without its anchors."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import load_policy, parse_policy
from policies.errors import NotExpressibleError
from policies.exporters import Target, argo, crds, export, promql

SHIPPED = Path(__file__).parent.parent / "scenarios" / "policies"
POLICIES = sorted(SHIPPED.glob("*.yaml"))
REFUSED = {
    "ab-test-header": "kind",
    "bluegreen-dns": "switch",
    "canary-kayenta": "analysisTemplates[0].metrics[0].provider.kayenta",
    "canary-sprt": "analysisTemplates[0].metrics[0].provider.sequential",
    "progressive": "kind",
    "rolling-update": "kind",
}


def by_kind(manifests, kind):
    return [m for m in manifests if m["kind"] == kind]


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_shipped_policy_exports_or_is_refused(path):
    policy = load_policy(path)
    target = Target(service=policy.name, namespace="shop")
    if path.stem in REFUSED:
        with pytest.raises(NotExpressibleError) as info:
            export(policy, "argo", target)
        assert info.value.executor == "argo"
        assert info.value.field == REFUSED[path.stem]
        assert len(info.value.reason) > 20  # a reason a user can act on, not just a field
        return
    out = export(policy, "argo", target)
    assert crds.validate_all(out.manifests) == []
    assert out.manifests[-1]["kind"] == "Rollout"  # templates first: apply order
    assert all(m["metadata"]["namespace"] == "shop" for m in out.manifests)
    rollout = out.manifests[-1]
    assert rollout["metadata"]["name"] == policy.name
    assert rollout["spec"]["template"]["spec"]["containers"][0]["image"] == target.image
    assert rollout["spec"]["selector"]["matchLabels"] == {"app": policy.name}


def test_canary_nginx_fields():
    policy = load_policy(SHIPPED / "canary-nginx.yaml")
    out = export(policy, "argo", Target(service="shop", replicas=7))
    template, rollout = out.manifests
    assert template["metadata"]["name"] == "shop-success-rate"
    canary = rollout["spec"]["strategy"]["canary"]
    assert rollout["spec"]["replicas"] == 7
    assert canary["stableService"] == "shop-stable" and canary["canaryService"] == "shop-canary"
    assert canary["trafficRouting"] == {"nginx": {"stableIngress": "shop"}}
    assert canary["analysis"]["templates"] == [{"templateName": "shop-success-rate"}]
    assert {a["name"]: a["value"] for a in canary["analysis"]["args"]} == {
        "service-name": "shop",
        "namespace": "default",
    }
    assert canary["steps"][1] == {"pause": {"duration": "10m"}}
    metric = template["spec"]["metrics"][0]
    assert metric["successCondition"] == "result[0] >= 0.99"
    assert metric["failureLimit"] == 2 and metric["interval"] == "1m"
    query = metric["provider"]["prometheus"]["query"]
    assert "{{args.service-name}}" in query and query.endswith(">= 0")  # NaN -> Error, as simulated
    found = promql.recognise_form(query)
    assert found.query.measure == "successRate" and found.query.version == "canary"
    assert found.query.window == 60 and found.nan_filter


def test_istio_router_and_hash_args():
    policy = parse_policy(
        {
            "kind": "Canary",
            "name": "web",
            "trafficRouting": {"istio": {}},
            "analysisTemplates": [
                {
                    "name": "latency",
                    "metrics": [
                        {
                            "name": "p95",
                            "interval": 30,
                            "count": 4,
                            "successCondition": "result <= 0.3",
                            "provider": {"query": {"measure": "latency", "quantile": 0.95}},
                        }
                    ],
                }
            ],
            "steps": [
                {"setWeight": 10},
                {
                    "setHeaderRoute": {
                        "name": "beta",
                        "match": [{"headerName": "x-beta", "headerValue": {"exact": "1"}}],
                    }
                },
                {"analysis": {"templates": [{"templateName": "latency"}]}},
                {"setCanaryScale": {"weight": 50}},
            ],
        }
    )
    out = export(policy, "argo", Target(service="web"))
    assert crds.validate_all(out.manifests) == []
    canary = out.manifests[-1]["spec"]["strategy"]["canary"]
    istio = canary["trafficRouting"]["istio"]
    assert istio["virtualService"] == {"name": "web", "routes": ["primary"]}
    assert istio["destinationRule"]["stableSubsetName"] == "stable"
    assert canary["trafficRouting"]["managedRoutes"] == [{"name": "beta"}]
    args = {a["name"]: a for a in canary["steps"][2]["analysis"]["args"]}
    assert args["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
    assert args["stable-hash"]["valueFrom"] == {"podTemplateHashValue": "Stable"}
    metric = out.manifests[0]["spec"]["metrics"][0]
    assert metric["successCondition"] == "result[0] <= 0.3"  # a vector result: index 0
    assert "{{args.canary-hash}}" in metric["provider"]["prometheus"]["query"]
    assert "/ 1000" in metric["provider"]["prometheus"]["query"]  # Istio ms -> seconds


def test_durations_are_go_durations_and_whole_seconds():
    assert argo.go_duration("f", 2 * 86400) == "48h"  # Go has no "d"
    assert argo.go_duration("f", 90) == "90s"
    assert argo.go_duration("f", 0) == "0s"
    assert argo.go_duration("f", 1.5, millis=True) == "1500ms"
    with pytest.raises(NotExpressibleError, match="whole number"):
        argo.go_duration("steps[1].pause.duration", 1.5)
    policy = parse_policy(
        {
            "kind": "Canary",
            "name": "x",
            "trafficRouting": {"nginx": {}},
            "scaleDownDelaySeconds": 2.5,
            "steps": [{"setWeight": 5}],
        }
    )
    with pytest.raises(NotExpressibleError) as info:
        export(policy, "argo")
    assert info.value.field == "scaleDownDelaySeconds"
    days = parse_policy(
        {"kind": "Canary", "name": "x", "steps": [{"setWeight": 5}, {"pause": {"duration": "1d"}}]}
    )
    steps = export(days, "argo").manifests[-1]["spec"]["strategy"]["canary"]["steps"]
    assert steps[1] == {"pause": {"duration": "24h"}}


def test_bluegreen_fields():
    policy = parse_policy(
        {
            "kind": "BlueGreen",
            "name": "pay",
            "autoPromotionEnabled": False,
            "previewReplicaCount": 2,
            "scaleDownDelaySeconds": "1h",
            "analysisTemplates": [
                {
                    "name": "smoke",
                    "metrics": [
                        {
                            "name": "errors",
                            "count": 3,
                            "interval": "1m",
                            "failureCondition": "result[0] > 0.05",
                            "provider": {"query": {"measure": "errorRate"}},
                        }
                    ],
                }
            ],
            "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
        }
    )
    out = export(policy, "argo", Target(service="pay"))
    assert crds.validate_all(out.manifests) == []
    bg = out.manifests[-1]["spec"]["strategy"]["blueGreen"]
    assert bg["activeService"] == "pay" and bg["previewService"] == "pay-preview"
    assert bg["autoPromotionEnabled"] is False and bg["previewReplicaCount"] == 2
    assert bg["scaleDownDelaySeconds"] == 3600 and bg["abortScaleDownDelaySeconds"] == 30
    assert bg["prePromotionAnalysis"]["templates"] == [{"templateName": "pay-smoke"}]


def test_batch_release_becomes_basic_canary_with_a_note():
    policy = load_policy(SHIPPED / "batch-release.yaml")
    out = export(policy, "argo", Target(service="batch", replicas=3))
    canary = out.manifests[-1]["spec"]["strategy"]["canary"]
    assert "trafficRouting" not in canary
    assert canary["steps"] == [
        {"setWeight": 20},
        {"pause": {"duration": "10m"}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    note = out.files["NOTES.md"]
    assert "N / N+1" in note
    assert "| 1 (20 %) | 1/2 | 1/3 |" in note  # 3 replicas: the batch keeps 3 pods, Argo 4
    odd = parse_policy(
        {"kind": "BatchRelease", "name": "odd", "batches": [{"replicas": 1}, {"replicas": "100%"}]}
    )
    with pytest.raises(NotExpressibleError) as info:
        export(odd, "argo", Target(replicas=3))
    assert info.value.field == "batches[0].replicas"


def test_invalid_template_name_is_refused():
    policy = parse_policy(
        {
            "kind": "Canary",
            "name": "x",
            "analysisTemplates": [
                {
                    "name": "Bad_Name",
                    "metrics": [{"name": "m", "provider": {"query": {"measure": "errorRate"}}}],
                }
            ],
        }
    )
    with pytest.raises(NotExpressibleError) as info:
        export(policy, "argo")
    assert info.value.field == "analysisTemplates[0].name"


def test_crd_validation_lists_every_error():
    out = export(load_policy(SHIPPED / "canary-nginx.yaml"), "argo")
    template, rollout = out.manifests
    rollout["spec"]["replicas"] = "ten"
    rollout["spec"]["strategy"]["canary"]["steps"][0]["setWeigth"] = 5
    rollout["spec"]["strategy"]["canary"]["scaleDownDelaySeconds"] = 2**40
    del template["spec"]["metrics"][0]["provider"]
    errors = crds.validate_all([template, rollout])
    assert len(errors) == 4, errors
    joined = "\n".join(errors)
    assert "spec.replicas: 'ten' is not of type 'integer'" in joined
    assert "steps[0]: unknown field(s) setWeigth" in joined
    assert "scaleDownDelaySeconds" in joined
    assert "'provider' is a required property" in joined
    with pytest.raises(crds.CRDValidationError) as info:
        crds.check([template, rollout])
    assert info.value.errors == errors


def test_flagger_canary_validation_sees_oneof():
    bad = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "x"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "analysis": {"interval": "1h", "threshold": 1, "stepWeight": 5, "iterations": 2},
        },
    }
    errors = crds.validate(bad)
    assert any("spec.analysis: matches more than one of the exclusive forms" in e for e in errors)
    assert any("spec.analysis.interval" in e for e in errors)


def test_missing_anchors_fail_loudly(monkeypatch, tmp_path):
    crds._validator.cache_clear()
    monkeypatch.setenv(crds.ANCHORS_ENV, str(tmp_path / "nowhere"))
    try:
        with pytest.raises(crds.AnchorsMissingError, match=crds.ANCHORS_ENV):
            crds.validate(
                {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "x"}}
            )
        (tmp_path / "empty").mkdir()
        monkeypatch.setenv(crds.ANCHORS_ENV, str(tmp_path / "empty"))
        with pytest.raises(crds.AnchorsMissingError, match="CRD file missing"):
            export(load_policy(SHIPPED / "canary-basic.yaml"), "argo")
    finally:
        crds._validator.cache_clear()


def test_the_crds_ship_with_the_package(monkeypatch):
    monkeypatch.delenv(crds.ANCHORS_ENV, raising=False)
    folder = crds.anchors_dir()
    assert folder == Path(crds.__file__).resolve().parent / "schemas" == crds.SCHEMAS_DIR
    for relative in set(crds.CRD_FILES.values()):
        assert (folder / relative).is_file()
    for executor in ("argo-rollouts", "flagger", "istio"):  # the licence and the source go along
        assert (folder / executor / "LICENSE").is_file()
        assert (folder / executor / "SOURCE.md").is_file()


SHARED_ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors"


@pytest.mark.skipif(not SHARED_ANCHORS.is_dir(), reason="no shared/anchors beside the checkout")
def test_the_shipped_crds_are_the_anchors_unchanged():
    """The package's copy is byte for byte the project's anchors (CI has them beside the clone)."""
    for path in sorted(crds.SCHEMAS_DIR.rglob("*")):
        if path.is_file():
            anchor = SHARED_ANCHORS / path.relative_to(crds.SCHEMAS_DIR)
            assert anchor.read_bytes() == path.read_bytes(), path


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
        assert verdicts["argo"] is None
    else:
        assert verdicts["argo"].startswith(f"argo cannot express {field}: ")
