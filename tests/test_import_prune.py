"""Objects are read as the API server stores them: pruned to their CRD, each dropped path noted,
and refused in one line when what is left breaks the CRD's schema (a type, an enum). Several
Rollouts or Canaries in the files: ``name=`` (``--name``) picks one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from policies.errors import PolicyError
from policies.importers import import_manifests
from policies.importers.prune import check_object

TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  metrics:
  - name: success-rate
    interval: 1m
    count: 3
    maxFailures: 2
    successCondition: result[0] >= 0.95
    provider:
      prometheus:
        query: >-
          sum(rate(istio_requests_total{destination_workload="shop-canary",
          response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{
          destination_workload="shop-canary"}[1m]))
"""
ROLLOUT = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  strategy:
    canary:
      trafficManagement: {linkerd: {}}
      steps:
      - setWeight: 20
      - analysis: {name: old-style, templates: [{templateName: success-rate}]}
"""
PRUNED = "not in Argo's CRD: the API server drops it, and kubectl's strict field validation"


def test_fields_argo_does_not_have_are_pruned_and_noted():
    result = import_manifests(ROLLOUT + "---" + TEMPLATE)
    notes = "\n".join(result.notes)
    for path in (
        "Rollout/shop: spec.strategy.canary.trafficManagement",
        "Rollout/shop: spec.strategy.canary.steps[1].analysis.name",
        "AnalysisTemplate/success-rate: spec.metrics[0].maxFailures",
    ):
        assert f"{path}: {PRUNED}" in notes
    metric = result.policy.analysis_templates[0].metrics[0]
    assert metric.failure_limit == 0  # maxFailures never reached Argo: its default holds


def test_an_unused_template_is_neither_noted_nor_checked():
    unused = TEMPLATE.replace("success-rate}", "other}").replace("interval: 1m", "interval: 5")
    result = import_manifests(ROLLOUT + "---" + TEMPLATE + "---" + unused)
    assert not any("AnalysisTemplate/other" in note for note in result.notes)


def test_a_wrong_type_is_refused_naming_the_field_and_the_crd_rule():
    with pytest.raises(PolicyError) as info:
        import_manifests(ROLLOUT + "---" + TEMPLATE.replace("interval: 1m", "interval: 60"))
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "AnalysisTemplate/success-rate: spec.metrics[0].interval: 60 is not of type 'string'"
        " (its type rule), by Argo's CRD"
    )


def test_an_enum_is_refused_naming_the_allowed_values():
    canary = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: StatefulSet, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m, threshold: 5, maxWeight: 50, stepWeight: 10}
"""
    with pytest.raises(PolicyError, match=r"spec\.targetRef\.kind: 'StatefulSet' is not one of"):
        import_manifests(canary)


def test_an_error_at_a_pruned_field_names_it():
    unknown = ROLLOUT.replace("- setWeight: 20", "- weightToSet: 20")
    with pytest.raises(PolicyError) as info:
        import_manifests(unknown + "---" + TEMPLATE)
    assert "steps[0].weightToSet is not in Argo's CRD" in str(info.value)


# near misses of a declared field: the executor would run that field's default in their place
TYPOS = [
    (ROLLOUT.replace("- setWeight: 20", "- setWieght: 20"), "", "steps[0].setWieght", "setWeight"),
    (ROLLOUT, TEMPLATE.replace("interval: 1m", "Interval: 1m"), "metrics[0].Interval", "interval"),
    (ROLLOUT, TEMPLATE.replace("maxFailures", "failurLimit"), "failurLimit", "failureLimit"),
]


@pytest.mark.parametrize("rollout, template, path, meant", TYPOS)
def test_a_misspelt_field_is_refused_naming_the_field_meant(
    tmp_path, rollout, template, path, meant
):
    """One line, in the file that holds it (a template's own file), exit 2 from the CLI."""
    files = [tmp_path / "rollout.yaml", tmp_path / "templates.yaml"]
    files[0].write_text(rollout + ("" if template else "---" + TEMPLATE))
    files[1].write_text(template or "")
    with pytest.raises(PolicyError) as info:
        import_manifests([f for f in files if f.read_text()])
    message = str(info.value)
    assert "\n" not in message and f"{path}: unknown field, did you mean {meant}?" in message
    assert info.value.file == str(files[1] if template else files[0])
    run = [sys.executable, "-m", "rolloutsim", "validate", *map(str, files)]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"did you mean {meant}?" in done.stderr


def test_notes_about_a_template_name_its_file(tmp_path):
    rollout, template = tmp_path / "rollout.yaml", tmp_path / "t.yaml"
    rollout.write_text(ROLLOUT)
    template.write_text(TEMPLATE)
    notes = "\n".join(import_manifests([rollout, template]).notes)
    assert f"AnalysisTemplate/success-rate (in {template}): spec.metrics[0].maxFailures" in notes
    assert "Rollout/shop: spec.strategy.canary.trafficManagement" in notes  # its own file


def test_a_form_the_crd_does_not_allow_says_why_not_the_object():
    canary = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m, maxWeight: 50, stepWeight: 10}
"""
    with pytest.raises(PolicyError) as info:
        import_manifests(canary)
    assert str(info.value) == (
        "Canary/podinfo: spec.analysis: fits none of the forms its oneOf rule allows"
        " ('threshold' is a required property), by Flagger's CRD"
    )


def test_pruning_keeps_what_the_schema_preserves_and_placeholders():
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "x"},
        "spec": {
            "strategy": {"canary": {"steps": {"setWeight": 20}}},  # a wrong type: not emptied
            "bogus": 1,
        },
    }
    checked = check_object(doc)
    assert checked.dropped == ["spec.bogus"]
    assert checked.doc["spec"]["strategy"]["canary"]["steps"] == {"setWeight": 20}
    assert checked.problem is not None and "is not of type 'array'" in checked.problem
    other = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"a": 1}}
    assert check_object(other).doc is other  # no CRD: left alone


TWO = ROLLOUT + "---" + ROLLOUT.replace("name: shop", "name: cart") + "---" + TEMPLATE


def test_name_picks_one_rollout_among_several():
    with pytest.raises(PolicyError) as info:
        import_manifests(TWO)
    message = str(info.value)
    assert "found 2 rollout objects (Rollout/shop, Rollout/cart)" in message
    assert "--name" in message
    result = import_manifests(TWO, name="cart")
    assert result.policy.name == "cart"
    assert "Rollout/shop: not the one chosen by name" in result.ignored
    with pytest.raises(PolicyError, match=r"no Rollout or Canary named 'nope' \(found: "):
        import_manifests(TWO, name="nope")


def test_the_cli_takes_name(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(TWO)
    run = [sys.executable, "-m", "rolloutsim", "import", str(path)]
    refused = subprocess.run(run, capture_output=True, text=True)
    assert refused.returncode != 0 and "--name" in refused.stderr
    assert "Traceback" not in refused.stderr
    chosen = subprocess.run([*run, "--name", "cart"], capture_output=True, text=True)
    assert chosen.returncode == 0, chosen.stderr
    assert "name: cart" in chosen.stdout


def test_a_file_with_no_rollout_is_named(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(PolicyError) as info:
        import_manifests([empty])
    assert str(info.value).startswith(f"{empty}: found no Argo Rollout or Flagger Canary")
