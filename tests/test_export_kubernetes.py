"""Plain Kubernetes export: objects validate offline, pod counts follow the controllers'
arithmetic, refusals name their field, and the runbook runs (against stubbed kubectl/curl)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from policies import load_policy, policy_from_yaml
from policies.errors import NotExpressibleError
from policies.exporters import Target, export
from policies.exporters.k8s_validate import KUBERNETES_VERSION, validate, validate_all
from policies.replicas import basic_canary_trajectory

POLICIES = Path(__file__).resolve().parents[1] / "scenarios" / "policies"
REFUSED = {  # shipped policy -> the field the refusal names
    "ab-test-header": "kind",
    "bluegreen-dns": "switch",
    "canary-20-first": "trafficRouting",
    "canary-kayenta": "trafficRouting",
    "canary-nginx": "trafficRouting",
    "canary-sprt": "trafficRouting",
    "progressive": "kind",
}
STUBS = {
    "kubectl": 'echo "kubectl $*" >> "$RS_LOG"; [ "$3" != apply ] || cat > /dev/null',
    "curl": 'echo "{\\"data\\":{\\"resultType\\":\\"vector\\",\\"result\\":'
    '[{\\"value\\":[1,\\"${FAKE_VALUE:-1}\\"]}]}}"',
    "sleep": "exit 0",
}


def run_runbook(script: str, tmp_path: Path, stdin: str = "", **env: str):
    """Run a runbook with kubectl, curl and sleep stubbed; (exit code, kubectl calls, output)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "runbook.sh").write_text(script)
    log = tmp_path / "kubectl.log"
    log.write_text("")
    full_env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RS_LOG": str(log)} | env
    done = subprocess.run(
        ["bash", str(tmp_path / "runbook.sh")],
        input=stdin,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, log.read_text().splitlines(), done.stdout + done.stderr


def check_runbook(exported) -> list[dict]:
    """bash -n passes; runbook.json parses and holds exactly the script's steps."""
    script, steps = exported.files["runbook.sh"], json.loads(exported.files["runbook.json"])
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    assert script.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in script
    assert steps[0]["action"] == "setup" and [s["action"] for s in steps].count("done") == 1
    for i, step in enumerate(steps):
        assert set(step) == {"action", "command", "wait", "check", "notes"}
        for part in (step["command"], step["wait"], step["check"]):
            assert part in script
        if step["action"] not in ("setup", "abort"):
            assert f"rs_step {i + 1}/{len(steps)} " in script  # each step is echoed
    return steps


def shares(script: str) -> list[str]:
    return re.findall(r"^echo '(.*)'$", script, flags=re.M)


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_policy_exports_or_is_refused_by_field(path):
    policy = load_policy(path)
    if path.stem in REFUSED:
        with pytest.raises(NotExpressibleError) as refused:
            export(policy, "kubernetes")
        assert refused.value.executor == "kubernetes"
        assert refused.value.field == REFUSED[path.stem]
        return
    for replicas in (1, 3, 10):
        exported = export(policy, "kubernetes", Target(replicas=replicas))
        assert exported.executor == "kubernetes"
        assert validate_all(exported.manifests) == []
        check_runbook(exported)


def test_offline_validation_uses_a_pinned_shipped_version():
    from kubernetes_validate.utils import all_versions

    assert KUBERNETES_VERSION in all_versions()


def test_rolling_update_is_one_deployment_with_the_exact_fences():
    policy = policy_from_yaml(
        "kind: RollingUpdate\nname: r\nmaxSurge: 2\nmaxUnavailable: 10%\n"
        "minReadySeconds: 15\nprogressDeadlineSeconds: 300\nreplicas: 7\n"
    )
    exported = export(policy, "kubernetes", Target(image="reg/app:v2"))
    deployment, svc = exported.manifests
    spec = deployment["spec"]
    assert spec["replicas"] == 7  # the policy's replica count when the target names none
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 2, "maxUnavailable": "10%"},
    }
    assert (spec["minReadySeconds"], spec["progressDeadlineSeconds"]) == (15, 300)
    assert spec["template"]["spec"]["containers"][0]["image"] == "reg/app:v2"
    assert svc["spec"]["selector"] == {"app": "app"}
    assert export(policy, "kubernetes", Target(replicas=4)).manifests[0]["spec"]["replicas"] == 4


@pytest.mark.parametrize(
    ("replicas", "line"),
    [(3, "1 canary / 3 stable pods = 25 %"), (5, "1 canary / 5 stable pods = 17 %")],
)
def test_basic_canary_pod_counts_follow_argos_rule(replicas, line):
    policy = load_policy(POLICIES / "canary-basic.yaml")
    exported = export(policy, "kubernetes", Target(replicas=replicas))
    assert any(line in s for s in shares(exported.files["runbook.sh"]))
    scaled = {"app-canary": 0, "app-stable": replicas}  # replay the scale steps in order
    seen = [(0, replicas)]
    for step in json.loads(exported.files["runbook.json"]):
        if step["action"] == "scale":
            name, count = re.search(r"deployment/(\S+) --replicas=(\d+)", step["command"]).groups()
            scaled[name] = int(count)
            seen.append((scaled["app-canary"], scaled["app-stable"]))
    assert seen == basic_canary_trajectory(replicas, [5, 50])  # every stage, promotion included


def test_basic_canary_runbook_runs_and_aborts_back_along_the_walk(tmp_path):
    policy = policy_from_yaml(
        "kind: Canary\nname: c\nsteps: [{setWeight: 50}, {pause: {}}, {setWeight: 80}]\n"
    )
    script = export(policy, "kubernetes", Target(replicas=4)).files["runbook.sh"]
    code, calls, out = run_runbook(script, tmp_path, stdin="promote\n")
    assert code == 0, out
    assert calls[-2:] == [
        "kubectl -n default scale deployment/app-stable --replicas=0",
        "kubectl -n default rollout status deployment/app-stable",
    ]
    code, calls, out = run_runbook(script, tmp_path, stdin="no\n")  # the pause is refused
    assert code != 0 and "aborting" in out
    pods, states = {"app-canary": 0, "app-stable": 4}, []
    for call in calls:
        if found := re.search(r"scale deployment/(\S+) --replicas=(\d+)", call):
            pods[found[1]] = int(found[2])
            states.append((pods["app-canary"], pods["app-stable"]))
    at_pause = states.index((2, 2))  # setWeight 50 on 4 pods, then the refused pause
    assert states[at_pause + 1 :] == [(2, 3), (0, 3), (0, 4)]  # Argo's walk back to weight 0


def test_bluegreen_switches_by_selector_patch_then_scales_blue_down(tmp_path):
    policy = policy_from_yaml(
        "kind: BlueGreen\nname: bg\nautoPromotionEnabled: false\npreviewReplicaCount: 1\n"
        "scaleDownDelaySeconds: 45\n"
    )
    exported = export(policy, "kubernetes", Target(replicas=3))
    steps = check_runbook(exported)
    main = [s for s in steps if s["action"] not in ("setup", "abort")]
    assert [s["action"] for s in main] == [
        "apply",
        "scale",
        "approve",
        "scale",
        "switch",
        "promote",
        "pause",
        "scale",
        "done",
    ]
    patch = (
        """kubectl -n default patch service/app -p '{"spec":{"selector":{"version":"green"}}}'"""
    )
    assert main[4]["command"].startswith(patch)
    assert main[6]["wait"] == "rs_sleep 45"
    assert main[7]["command"].endswith("deployment/app-blue --replicas=0")
    blue, green, svc = exported.manifests
    assert svc["spec"]["selector"] == {"app": "app", "version": "blue"}
    assert (blue["spec"]["replicas"], green["spec"]["replicas"]) == (3, 0)
    code, calls, out = run_runbook(exported.files["runbook.sh"], tmp_path, stdin="promote\n")
    assert code == 0, out
    assert any('"version":"green"' in c for c in calls)


def test_bluegreen_abort_after_the_switch_flips_back(tmp_path):
    policy = policy_from_yaml("kind: BlueGreen\nname: bg\nprogressDeadlineAbort: true\n")
    script = export(policy, "kubernetes", Target(replicas=2)).files["runbook.sh"]
    script = script.replace("RS_STATE=switched\n", "RS_STATE=switched\nfalse\n")  # then fail
    code, calls, out = run_runbook(script, tmp_path)
    assert code != 0 and "abort from state switched" in out
    patches = [c for c in calls if " patch " in c]
    assert ['"version":"green"' in patches[0], '"version":"blue"' in patches[1]] == [True, True]


def test_batch_release_new_pods_equal_the_batches():
    policy = load_policy(POLICIES / "batch-release.yaml")
    for replicas in (3, 7, 10):
        script = export(policy, "kubernetes", Target(replicas=replicas)).files["runbook.sh"]
        counts = [int(m) for m in re.findall(r"^echo 'batches\[\d\]: (\d+) of", script, re.M)]
        assert counts == policy.batch_pods(replicas)
        assert "rs_sleep 600" in script and "rs_approve 'batches[1].pause" in script


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("kind: Canary\nname: c\nminReadySeconds: 1.5\n", "minReadySeconds"),
        ("kind: Canary\nname: c\nrollbackWindow: {revisions: 2}\n", "rollbackWindow"),
        (
            "kind: BlueGreen\nname: b\nanalysisTemplates: [{name: t, metrics: [{name: m,"
            " provider: {query: {measure: errorRate}}}]}]\n"
            "prePromotionAnalysis: {templates: [{templateName: t}]}\n",
            "prePromotionAnalysis",
        ),
        (
            "kind: BatchRelease\nname: b\nanalysisTemplates: [{name: t, metrics: [{name: m,"
            " provider: {query: {measure: errorRate}}}]}]\n"
            "batches: [{replicas: 50%, analysis: {templates: [{templateName: t}]}},"
            " {replicas: 100%}]\n",
            "batches[0].analysis",
        ),
        (
            "kind: RollingUpdate\nname: r\nprogressDeadlineSeconds: 90.5\n",
            "progressDeadlineSeconds",
        ),
    ],
)
def test_refusals_name_the_field(text, field):
    with pytest.raises(NotExpressibleError) as refused:
        export(policy_from_yaml(text), "kubernetes")
    assert refused.value.field == field and refused.value.reason


def test_a_broken_object_is_caught_with_every_error_listed():
    exported = export(load_policy(POLICIES / "rolling-update.yaml"), "kubernetes")
    broken = json.loads(json.dumps(exported.manifests[0]))
    broken["spec"]["replicas"] = "three"
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 7
    broken["spec"]["template"]["spec"]["containers"][0]["colour"] = "blue"
    broken["spec"]["selector"]["matchLabels"]["tier"] = "web"
    broken["metadata"]["name"] = "Not_A_Name"
    errors = validate(broken)
    wanted = [
        "spec.replicas",
        "imagePullPolicy",
        "'colour' was unexpected",
        "selector tier=web",
        "metadata.name",
    ]
    assert len(errors) == len(wanted)
    for piece in wanted:
        assert any(piece in e for e in errors), (piece, errors)
    assert all(e.startswith("Deployment/Not_A_Name: ") for e in errors)
