"""A scenario that reads a team's manifests: several files per policy, and a replica count that
is the manifest's unless the scenario overrides it, in which case the report and ``explain``
say so (issue #19, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies.errors import PolicyError
from rolloutsim.cli import main
from sim import load_scenario

ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: checkout}
spec:
  replicas: 3
  strategy:
    canary:
      trafficRouting: {nginx: {stableIngress: checkout}}
      steps:
        - setWeight: 10
        - analysis: {templates: [{templateName: success-rate}]}
"""
TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  metrics:
    - name: success-rate
      interval: 1m
      count: 2
      successCondition: result[0] >= 0.95
      provider:
        prometheus:
          query: >-
            sum(rate(nginx_ingress_controller_requests{ingress="checkout", canary!="",
            status!~"5.."}[1m])) / sum(rate(nginx_ingress_controller_requests{ingress="checkout",
            canary!=""}[1m]))
"""
WORLD = """\
world:
  horizon: 1h
  traffic: {rate: 50}
  users: {count: 100}
  releases: [{name: good, probability: 1}]
"""


def _scenario(tmp_path: Path, policies: str, platform: str = "") -> Path:
    (tmp_path / "rollout.yaml").write_text(ROLLOUT)
    (tmp_path / "templates.yaml").write_text(TEMPLATE)
    text = f"name: s\n{WORLD}{platform}policies:\n{policies}"
    (tmp_path / "s.yaml").write_text(text)
    return tmp_path / "s.yaml"


def test_a_manifest_may_be_several_files_and_keeps_its_replicas(tmp_path):
    path = _scenario(tmp_path, "  - manifest: [rollout.yaml, templates.yaml]\n")
    loaded = load_scenario(path)
    policy = loaded.policies["checkout"]
    assert policy.replicas == 3 and policy.analysis_templates[0].name == "success-rate"
    assert loaded.notes == ()


def test_without_its_template_file_the_import_names_the_missing_template(tmp_path):
    path = _scenario(tmp_path, "  - manifest: rollout.yaml\n")
    with pytest.raises(PolicyError, match="'success-rate' is not among the manifests"):
        load_scenario(path)


def test_a_scenario_override_of_the_replicas_is_said(tmp_path):
    path = _scenario(tmp_path, "  - {manifest: [rollout.yaml, templates.yaml], replicas: 10}\n")
    loaded = load_scenario(path)
    assert loaded.policies["checkout"].replicas == 10
    assert loaded.notes == ("checkout: runs on 10 replicas (policies[0].replicas), not its own 3",)


def test_the_worlds_replicas_overriding_the_manifests_are_said(tmp_path):
    platform = "  platform: {replicas: 10}\n"
    path = _scenario(tmp_path, "  - manifest: [rollout.yaml, templates.yaml]\n", platform)
    loaded = load_scenario(path)
    assert loaded.notes == (
        "checkout: runs on 10 replicas (world.platform.replicas), not its own 3",
    )


def test_the_report_says_the_override(tmp_path):
    path = _scenario(tmp_path, "  - {manifest: [rollout.yaml, templates.yaml], replicas: 10}\n")
    out = tmp_path / "report"
    code = main(["run", str(path), "--replications", "4", "-o", str(out), "--no-progress"])
    assert code == 0
    said = "checkout: runs on 10 replicas (policies[0].replicas), not its own 3"
    assert said in (out / "report.html").read_text()
    assert said.replace("[", "\\[").replace("]", "\\]") in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "note"),
    [
        (["-n", "10"], "explained on 10 replicas (--replicas), not the policy's own 3"),
        ([], None),
    ],
)
def test_explain_says_where_the_replicas_came_from(tmp_path, capsys, args, note):
    policy = tmp_path / "p.yaml"
    policy.write_text("kind: Canary\nname: p\nreplicas: 3\nsteps: [{setWeight: 10}]\n")
    assert main(["explain", str(policy), "--json", *args]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert notes == ([note] if note else [])


def test_explain_of_a_policy_without_replicas_says_it_used_ten(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("kind: Canary\nname: p\nsteps: [{setWeight: 10}]\n")
    assert main(["explain", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "note: the policy gives no replica count: explained on 10" in out
