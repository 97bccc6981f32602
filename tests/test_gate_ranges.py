"""A rate gate whose conditions fail every value its query can return, or only an outage's,
is warned of at import, validate and load: a percent written for a fraction, or the reverse."""

from __future__ import annotations

import pytest

from policies import policy_from_yaml
from policies.gate_ranges import unit_mixups
from policies.importers import import_manifests


def argo(condition: str, unit: str = "") -> str:
    scale = f", unit: {unit}" if unit else ""
    return (
        "kind: Canary\nname: c\ntrafficRouting: {nginx: {}}\n"
        "steps: [{setWeight: 20}, {analysis: {templates: [{templateName: gate}]}}]\n"
        "analysisTemplates:\n- name: gate\n  metrics:\n  - name: sr\n"
        f"    successCondition: '{condition}'\n"
        f"    provider: {{query: {{measure: successRate, version: canary{scale}}}}}\n"
    )


def flagger(low: float) -> str:
    return (
        "kind: Progressive\nname: f\nprovider: istio\n"
        "analysis: {interval: 1m, threshold: 2, maxWeight: 50, stepWeight: 10, metrics:\n"
        f"  [{{name: request-success-rate, thresholdRange: {{min: {low}}}}}]}}\n"
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (argo("result[0] >= 99"), "returns a fraction (0 to 1) and its conditions fail every"),
        (argo("result[0] >= 0.99", "percent"), "percent (0 to 100) and its conditions fail no"),
        (argo("result[0] <= 5"), "fail no value above 0.01: only an outage fails the gate"),
        (flagger(0.99), "'request-success-rate': its query returns a percent (0 to 100)"),
    ],
)
def test_a_gate_written_for_the_other_unit_is_warned_of(text, said):
    (warning,) = unit_mixups(policy_from_yaml(text))
    assert said in warning


@pytest.mark.parametrize(
    "text",
    [argo("result[0] >= 0.99"), argo("result[0] >= 99", "percent"), flagger(99), flagger(1.5)],
)
def test_a_gate_in_its_own_unit_is_not(text):
    assert unit_mixups(policy_from_yaml(text)) == []


def test_an_imported_gate_notes_it():
    rollout = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  strategy:
    canary:
      steps: [{setWeight: 20}, {analysis: {templates: [{templateName: sr}]}}]
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: sr}
spec:
  metrics:
  - name: sr
    successCondition: result[0] >= 99
    provider:
      prometheus:
        query: >-
          sum(rate(istio_requests_total{destination_workload="shop-canary",
          response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{
          destination_workload="shop-canary"}[1m]))
"""
    notes = import_manifests(rollout).notes
    assert any("metric 'sr': its query returns a fraction" in note for note in notes)


def test_a_scenario_warns_of_it_at_load(tmp_path):
    from sim.runs.scenario import load_scenario

    (tmp_path / "c.yaml").write_text(argo("result[0] >= 99"))
    (tmp_path / "s.yaml").write_text(
        "name: s\nworld:\n  horizon: 1h\n  traffic: {rate: 50}\n  users: {count: 100}\n"
        "  releases: [{name: good, probability: 1}]\npolicies:\n  - file: c.yaml\n"
    )
    notes = load_scenario(tmp_path / "s.yaml").notes
    assert any(n.startswith("warning: c: analysisTemplates 'gate' metric 'sr'") for n in notes)
