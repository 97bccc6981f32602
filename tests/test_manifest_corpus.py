"""Our corpus of manifests written from the executors' documentation (tests/manifests/): every
Argo router and step type, every Flagger provider and feature, templated and multi-document
shapes. Each file says what rolloutsim must do with it (``# expect: import`` or ``# expect:
refuse <words>``); an imported one must also explain, simulate, export to its executor, come
back through import as the same policy, and come back byte for byte through ``export --onto``
(issue #19)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

import sim
from policies.errors import PolicyError
from policies.explain import explain
from policies.exporters import Target, export
from policies.importers import import_manifests
from policies.onto import export_onto

CORPUS = Path(__file__).parent / "manifests"
FILES = sorted(CORPUS.glob("*/*.yaml"))
WORLD = {
    "horizon": "2h",
    "traffic": {"rate": 20},
    "users": {"count": 200},
    "releases": [
        {"name": "good", "probability": 0.5},
        {"name": "bad", "probability": 0.5, "fault": {"errorRate": 0.2}},
    ],
    "stepPlugins": {  # how the k6 step of argo/step-plugin.yaml behaves where it runs
        "jmichalek132/k6-step": {
            "duration": "5m",
            "failure": {"badRelease": 0.9, "goodRelease": 0.02},
        }
    },
}


def _expect(path: Path) -> tuple[str, str]:
    found = re.search(r"^# expect: (import|refuse)\s*(.*)$", path.read_text(), re.M)
    assert found, f"{path.name} says what to expect"
    return found.group(1), found.group(2).strip()


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_the_corpus_covers_the_executors():
    argo = " ".join(p.read_text() for p in FILES if p.parent.name == "argo")
    flagger = " ".join(p.read_text() for p in FILES if p.parent.name == "flagger")
    for router in ("nginx:", "istio:", "smi:", "alb:", "ambassador:", "apisix:", "appMesh:"):
        assert router in argo
    for router in ("traefik:", "plugins:"):
        assert router in argo
    for step in ("setWeight", "pause", "analysis", "setCanaryScale", "setHeaderRoute"):
        assert f"- {step}:" in argo or f"{step}:" in argo
    providers = re.findall(r"provider: (\S+)", flagger)
    for provider in ("istio", "linkerd", "nginx", "contour", "gloo", "skipper", "traefik"):
        assert provider in providers
    for provider in ("apisix", "kuma", "osm", "knative", "kubernetes"):
        assert provider in providers
    assert any(p.startswith("appmesh") for p in providers)
    assert any(p.startswith("gatewayapi") for p in providers)


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_each_manifest_does_what_it_says(path):
    expect, words = _expect(path)
    if expect == "refuse":
        with pytest.raises(PolicyError) as raised:
            import_manifests(path)
        message = str(raised.value)
        assert "\n" not in message
        assert words.lower() in message.lower(), message
        return
    result = import_manifests(path)
    policy = result.policy
    executor = "argo" if policy.kind in ("Canary", "BlueGreen") else "flagger"
    replicas = getattr(policy, "replicas", None) or 3
    assert explain(policy, replicas).rows
    world = dict(WORLD, platform={"replicas": replicas})
    run = sim.run(world, {policy.name: policy}, replications=2, seed=1, backend="inprocess")
    assert (run.frame["outcome"] != "error").all()
    exported = export(policy, executor, Target(service=policy.name))
    back = import_manifests(exported.to_yaml()).policy.to_dict()
    if policy.replicas is None:  # the export writes the target's Deployment with a count
        back.pop("replicas")
    assert back == policy.to_dict()
    onto = export_onto(policy, [path])
    assert list(onto.files.values()) == [path.read_text()]  # unchanged: byte for byte
    # a changed field: only it changes, and the edited file imports as the edited policy
    deadline = policy.progress_deadline_seconds + 60
    edited = policy.model_copy(update={"progress_deadline_seconds": deadline})
    (text,) = export_onto(edited, [path]).files.values()
    assert text != path.read_text()
    diff = difflib.ndiff(path.read_text().splitlines(), text.splitlines())
    changed = [line for line in diff if line[:2] in ("- ", "+ ")]
    assert all("progressDeadlineSeconds" in line for line in changed), changed
    assert import_manifests(text).policy.progress_deadline_seconds == deadline
