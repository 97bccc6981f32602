"""``export --onto``: a policy written back onto the team's own manifests (issue #19, item 6).

The manifests under tests/data/onto/ are written the way teams write them: comments, odd key
order, multi-document files, a ClusterAnalysisTemplate, a query in percent and one in
milliseconds, a Flagger Canary with a MetricTemplate, webhooks and an autoscalerRef, a
non-default namespace and the team's own service ports. Each edit must change exactly the
fields it names (compared as parsed YAML) and nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import parse_policy
from policies.errors import PolicyError
from policies.importers import import_manifests
from policies.loading import policy_to_yaml
from policies.onto import export_onto
from rolloutsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "onto"
ARGO = [DATA / "argo-rollout.yaml", DATA / "argo-templates.yaml"]
BLUEGREEN = [DATA / "argo-bluegreen.yaml"]
BLUEGREEN_MAP = ["smoke-errors=errorRate:canary", "errors=errorRate:canary"]
FLAGGER = [DATA / "flagger-podinfo.yaml"]


def _data(files: list[Path], mapping: Any = None) -> dict[str, Any]:
    """The imported policy as editable data."""
    return yaml.safe_load(policy_to_yaml(import_manifests(files, mapping=mapping).policy))


def _docs(text: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _diff(a: Any, b: Any, path: str = "") -> set[str]:
    """The paths where two parsed YAML values differ (a whole list when its length does)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for key in {*a, *b}:
            out |= _diff(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return {
            p
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for p in _diff(x, y, f"{path}[{i}]")
        }
    return set() if a == b else {path}


def _changes(files: list[Path], result) -> dict[str, set[str]]:
    """Per file name: the changed paths, each prefixed by the document's index."""
    out = {}
    for f in files:
        old, new = _docs(f.read_text()), _docs(result.files[str(f)])
        out[f.name] = (
            _diff(old, new)
            if len(old) != len(new)
            else {
                f"{i}.{p}"
                for i, (x, y) in enumerate(zip(old, new, strict=True))
                for p in _diff(x, y)
            }
        )
    return out


def _scaled(text: str, factor: float) -> str:
    """A condition with its number multiplied: the edit reads the same in either scale."""
    return re.sub(r"(?<![\w.\[])(\d+\.?\d*)", lambda m: f"{float(m.group(1)) * factor:.9g}", text)


@pytest.mark.parametrize(
    ("files", "mapping"), [(ARGO, None), (BLUEGREEN, BLUEGREEN_MAP), (FLAGGER, None)]
)
def test_unchanged_policy_gives_the_files_back_byte_for_byte(files, mapping) -> None:
    policy = import_manifests(files, mapping=mapping).policy
    result = export_onto(policy, files, mapping=mapping)
    assert result.changed == [] and result.notes == []
    assert result.files == {str(f): f.read_text() for f in files}


def test_argo_edits_change_only_their_fields() -> None:
    data = _data(ARGO)
    data["steps"][0]["setWeight"] = 20
    data["steps"][1]["pause"]["duration"] = "10m"
    metric = data["analysisTemplates"][0]["metrics"][0]
    metric["successCondition"] = _scaled(metric["successCondition"], 0.96)
    data["maxSurge"] = 2
    result = export_onto(parse_policy(data), ARGO)
    rollout = "1.spec.strategy.canary"
    assert _changes(ARGO, result) == {
        "argo-rollout.yaml": {
            f"{rollout}.steps[0].setWeight",
            f"{rollout}.steps[1].pause.duration",
            f"{rollout}.maxSurge",
        },
        "argo-templates.yaml": {"0.spec.metrics[0].successCondition"},
    }
    rollout_doc = _docs(result.files[str(ARGO[0])])[1]["spec"]["strategy"]["canary"]
    assert rollout_doc["steps"][:2] == [{"setWeight": 20}, {"pause": {"duration": "10m"}}]
    assert rollout_doc["maxSurge"] == 2
    # the query returns percent: the new threshold is written in percent, beside the query
    template = _docs(result.files[str(ARGO[1])])[0]["spec"]["metrics"][0]
    assert template["successCondition"] == "result[0] >= 95.04"
    assert import_manifests(list(result.files.values())).policy == parse_policy(data)


def test_a_limit_added_to_a_metric_adds_just_that_key() -> None:
    data = _data(ARGO)
    data["analysisTemplates"][1]["metrics"][0]["inconclusiveLimit"] = 2
    result = export_onto(parse_policy(data), ARGO)
    assert _changes(ARGO, result)["argo-templates.yaml"] == {"1.spec.metrics[0].inconclusiveLimit"}


def test_an_added_step_keeps_the_documents_steps_around_it() -> None:
    data = _data(ARGO)
    data["steps"][4:4] = [{"setWeight": 30}, {"pause": {"duration": "1m"}}]
    result = export_onto(parse_policy(data), ARGO)
    assert _changes(ARGO, result) == {
        "argo-rollout.yaml": {"1.spec.strategy.canary.steps"},
        "argo-templates.yaml": set(),
    }
    text = result.files[str(ARGO[0])]
    steps = _docs(text)[1]["spec"]["strategy"]["canary"]["steps"]
    assert steps[3:6] == [{"setWeight": 50}, {"setWeight": 30}, {"pause": {"duration": "1m"}}]
    # the analysis step and the trailing comments stay the team's, the new pause in flow style
    assert steps[2]["analysis"]["templates"] == [{"templateName": "success-rate-pct"}]
    assert "- pause: {}               # a human looks at the dashboards" in text
    assert "- pause: {duration: 1m}" in text
    assert result.files[str(ARGO[1])] == ARGO[1].read_text()


def test_a_removed_step_leaves_the_comments_on_their_steps() -> None:
    data = _data(ARGO)
    del data["steps"][1]
    data["steps"].insert(0, {"setWeight": 5})
    text = export_onto(parse_policy(data), ARGO).files[str(ARGO[0])]
    assert "      - setWeight: 5\n      - setWeight: 10          # a tenth first\n" in text
    assert "pause: {duration: 5m}" not in text


def test_cluster_template_threshold_in_milliseconds_and_a_note() -> None:
    data = _data(ARGO)
    metric = data["analysisTemplates"][1]["metrics"][0]
    metric["failureCondition"] = _scaled(metric["failureCondition"], 1.6)
    result = export_onto(parse_policy(data), ARGO)
    assert _changes(ARGO, result)["argo-templates.yaml"] == {"1.spec.metrics[0].failureCondition"}
    assert "failureCondition: result[0] > 800   # milliseconds" in result.files[str(ARGO[1])]
    assert any("cluster-wide" in note for note in result.notes)


def test_a_query_window_is_swapped_inside_the_teams_own_query() -> None:
    data = _data(ARGO)
    data["analysisTemplates"][0]["metrics"][0]["provider"]["query"]["window"] = "5m"
    result = export_onto(parse_policy(data), ARGO)
    assert _changes(ARGO, result)["argo-templates.yaml"] == {
        "0.spec.metrics[0].provider.prometheus.query"
    }
    query = _docs(result.files[str(ARGO[1])])[0]["spec"]["metrics"][0]["provider"]["prometheus"]
    old = _docs(ARGO[1].read_text())[0]["spec"]["metrics"][0]["provider"]["prometheus"]
    assert query["query"] == old["query"].replace("[2m]", "[5m]")
    assert query["address"] == "http://thanos-query.monitoring.svc:9090"


def test_a_new_template_is_appended_to_the_rollouts_file() -> None:
    data = _data(ARGO)
    data["analysisTemplates"].append(
        {
            "name": "errors",
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": "1m",
                    "count": 3,
                    "failureCondition": "result[0] > 0.05",
                    "provider": {"query": {"measure": "errorRate"}},
                }
            ],
        }
    )
    data["steps"].insert(3, {"analysis": {"templates": [{"templateName": "errors"}]}})
    result = export_onto(parse_policy(data), ARGO)
    docs = _docs(result.files[str(ARGO[0])])
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Service", "checkout-canary"),
        ("Rollout", "checkout"),
        ("AnalysisTemplate", "checkout-errors"),
    ]
    assert docs[2]["metadata"]["namespace"] == "payments"
    step = docs[1]["spec"]["strategy"]["canary"]["steps"][3]
    assert step["analysis"]["templates"] == [{"templateName": "checkout-errors"}]
    assert any("added" in note for note in result.notes)


def test_a_template_the_policy_drops_is_removed_from_its_file() -> None:
    data = _data(ARGO)
    del data["steps"][2]  # the analysis step
    del data["analysisTemplates"][0]
    result = export_onto(parse_policy(data), ARGO)
    text = result.files[str(ARGO[1])]
    assert text.startswith("# Analysis templates shared by the payments team.\n---\n")
    assert [d["metadata"]["name"] for d in _docs(text)] == ["latency-p95"]
    assert result.notes == [
        f"AnalysisTemplate/success-rate-pct: no longer in the policy; removed from {ARGO[1]}"
    ]


def test_bluegreen_with_a_mapping_and_no_namespace() -> None:
    data = _data(BLUEGREEN, BLUEGREEN_MAP)
    data["scaleDownDelaySeconds"] = 300
    data["analysisTemplates"][1]["metrics"][0]["failureCondition"] = "result[0] > 0.05"
    result = export_onto(parse_policy(data), BLUEGREEN, mapping=BLUEGREEN_MAP)
    bg = "0.spec.strategy.blueGreen"
    assert _changes(BLUEGREEN, result) == {
        "argo-bluegreen.yaml": {f"{bg}.scaleDownDelaySeconds", "2.spec.metrics[0].failureCondition"}
    }
    text = result.files[str(BLUEGREEN[0])]
    assert "  args: [{name: svc}]\n" in text  # ruamel's flow style kept as written
    assert "workloadRef:                      # the pod template lives in a Deployment" in text


def test_flagger_edits_change_only_their_fields() -> None:
    data = _data(FLAGGER)
    analysis = data["analysis"]
    analysis["stepWeight"] = 20
    analysis["threshold"] = 3
    analysis["metrics"][0]["thresholdRange"]["min"] = 98
    analysis["metrics"][2]["thresholdRange"]["max"] *= 2
    data["replicas"] = 5
    result = export_onto(parse_policy(data), FLAGGER)
    a = "2.spec.analysis"
    assert _changes(FLAGGER, result) == {
        "flagger-podinfo.yaml": {
            "0.spec.replicas",
            f"{a}.stepWeight",
            f"{a}.threshold",
            f"{a}.metrics[0].thresholdRange.min",
            f"{a}.metrics[2].thresholdRange.max",
        }
    }
    text = result.files[str(FLAGGER[0])]
    canary = _docs(text)[2]["spec"]
    assert canary["analysis"]["metrics"][2]["thresholdRange"] == {"max": 2}  # percent, as written
    assert canary["service"]["port"] == 9898 and canary["autoscalerRef"]["name"] == "podinfo"
    assert [w["name"] for w in canary["analysis"]["webhooks"]] == ["acceptance-test", "load-test"]
    assert "stepWeight: 20        # percent per tick" in text
    # the webhooks' own indentation (unlike the metrics') is kept
    webhooks = FLAGGER[0].read_text().split("    webhooks:\n")[1]
    assert text.endswith("    webhooks:\n" + webhooks)


def test_flagger_step_weights_and_replicas_without_the_deployment() -> None:
    text = FLAGGER[0].read_text()
    canary = text[text.index("---\napiVersion: flagger.app/v1beta1\nkind: MetricTemplate") :]
    data = _data([canary])
    for key in ("stepWeight", "maxWeight"):
        del data["analysis"][key]
    data["analysis"]["stepWeights"] = [5, 10, 25, 50]
    data["replicas"] = 7
    result = export_onto(parse_policy(data), [canary])
    new = _docs(result.files["manifest-1.yaml"])
    assert _diff(_docs(canary), new) == {
        "[1].spec.analysis.stepWeight",
        "[1].spec.analysis.maxWeight",
        "[1].spec.analysis.stepWeights",
    }
    assert new[1]["spec"]["analysis"]["stepWeights"] == [5, 10, 25, 50]
    assert result.notes == [
        "Deployment/podinfo: changed by the policy, not among the manifests: skipped"
    ]


def test_comments_are_kept() -> None:
    data = _data(FLAGGER)
    data["analysis"]["maxWeight"] = 60
    result = export_onto(parse_policy(data), FLAGGER)

    def comments(text: str) -> list[str]:
        return [line[line.index("#") :] for line in text.splitlines() if "#" in line]

    assert comments(result.files[str(FLAGGER[0])]) == comments(FLAGGER[0].read_text())


def test_a_threshold_given_as_an_argument_is_written_with_its_whole_metric(tmp_path) -> None:
    # neither a number to scale nor E0's text: the metric is written whole, query and all
    text = ARGO[1].read_text().replace("result[0] >= 99", "result[0] >= {{args.floor}}")
    text = text.replace(
        "  - name: service\n  metrics:",
        "  - name: service\n  - name: floor\n    value: '99'\n  metrics:",
        1,
    )
    templates = tmp_path / "argo-templates.yaml"
    templates.write_text(text)
    files = [ARGO[0], templates]
    data = _data(files)
    metric = data["analysisTemplates"][0]["metrics"][0]
    metric["successCondition"] = _scaled(metric["successCondition"], 0.96)
    result = export_onto(parse_policy(data), files)
    assert import_manifests(list(result.files.values())).policy == parse_policy(data)
    written = _docs(result.files[str(templates)])[0]["spec"]
    assert "{{args.floor}}" not in str(written["metrics"])
    assert written["metrics"][0]["provider"]["prometheus"]["address"] == (
        "http://thanos-query.monitoring.svc:9090"
    )


def test_a_change_that_would_not_read_back_is_refused() -> None:
    # the mapping names the metric: a new query written for it would still read as mapped
    data = _data(BLUEGREEN, BLUEGREEN_MAP)
    data["analysisTemplates"][1]["metrics"][0]["provider"]["query"]["measure"] = "successRate"
    data["analysisTemplates"][1]["metrics"][0]["failureCondition"] = "result[0] < 0.98"
    with pytest.raises(PolicyError, match="cannot be written onto the manifests"):
        export_onto(parse_policy(data), BLUEGREEN, mapping=BLUEGREEN_MAP)


def test_export_onto_refuses_the_other_executor() -> None:
    policy = import_manifests(FLAGGER).policy
    with pytest.raises(PolicyError, match="--to flagger, not argo"):
        export_onto(policy, FLAGGER, to="argo")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rolloutsim", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_cli_writes_the_files_under_the_output_folder(tmp_path, capsys) -> None:
    data = _data(FLAGGER)
    data["analysis"]["stepWeight"] = 25
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    code = main(
        ["export", str(policy), "--to", "flagger", "--onto", str(FLAGGER[0]), "-o", str(out)]
    )
    assert code == 0
    written = (out / FLAGGER[0].name).read_text()
    assert written != FLAGGER[0].read_text()
    assert _docs(written)[2]["spec"]["analysis"]["stepWeight"] == 25
    assert str(out / FLAGGER[0].name) in capsys.readouterr().out


def test_cli_prints_the_files_with_separators(tmp_path, capsys) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(_data(ARGO)))
    args = ["export", str(policy), "--to", "argo", "--onto", *map(str, ARGO)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out == "".join(f"# file: {f} (unchanged)\n{f.read_text()}" for f in ARGO)


@pytest.mark.parametrize(
    ("onto", "to", "message"),
    [
        (
            str(ROOT / "scenarios" / "policies" / "canary-basic.yaml"),
            "argo",
            "found no Argo Rollout",
        ),
        (str(FLAGGER[0]), "argo", "--to flagger, not argo"),
    ],
)
def test_cli_refuses_in_one_line(tmp_path, onto, to, message) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(_data(FLAGGER)))
    proc = _cli("export", str(policy), "--to", to, "--onto", onto)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


_EDIT = st.one_of(
    st.tuples(st.just("weight"), st.integers(0, 4), st.integers(1, 100)),
    st.tuples(st.just("pause"), st.integers(0, 4), st.sampled_from(["30s", "2m", "1h", None])),
    st.tuples(st.just("insert"), st.integers(0, 5), st.integers(1, 100)),
    st.tuples(st.just("remove"), st.integers(0, 4), st.just(0)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_EDIT, min_size=1, max_size=3))
def test_edited_steps_come_back_as_the_edited_policy(edits) -> None:
    data = _data(ARGO)
    steps = data["steps"]
    for op, i, value in edits:
        if op == "insert":
            steps.insert(min(i, len(steps)), {"setWeight": value})
            continue
        if not steps:
            continue
        i = min(i, len(steps) - 1)
        if op == "remove" and "analysis" not in steps[i]:  # its template would go unused
            del steps[i]
        elif op == "weight" and "setWeight" in steps[i]:
            steps[i]["setWeight"] = value
        elif op == "pause" and "pause" in steps[i]:
            steps[i]["pause"] = {"duration": value} if value else {}
    edited = parse_policy(data)
    result = export_onto(edited, ARGO)
    assert import_manifests(list(result.files.values())).policy == edited
    # the templates file is the policy's only through the templates: untouched
    assert result.files[str(ARGO[1])] == ARGO[1].read_text()


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 50),
    st.integers(1, 10),
    st.lists(st.integers(1, 100), min_size=1, max_size=5, unique=True),
    st.booleans(),
)
def test_edited_flagger_analysis_comes_back_as_the_edited_policy(step, threshold, weights, use):
    data = _data(FLAGGER)
    analysis = data["analysis"]
    analysis["threshold"] = threshold
    if use:  # stepWeights instead of stepWeight/maxWeight
        del analysis["stepWeight"], analysis["maxWeight"]
        analysis["stepWeights"] = sorted(weights)
    else:
        analysis["stepWeight"] = step
    edited = parse_policy(data)
    result = export_onto(edited, FLAGGER)
    assert import_manifests(list(result.files.values())).policy == edited


def test_onto_writes_the_named_rollout_among_several(tmp_path):
    """A file with two Rollouts: ``name`` picks the one to write; the other stays as it was."""
    one = (
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: NAME}\n"
        "spec:\n  replicas: 3\n  strategy:\n    canary:\n"
        "      steps: [{setWeight: 20}, {pause: {}}]\n"
    )
    path = tmp_path / "two.yaml"
    path.write_text(one.replace("NAME", "first") + "---\n" + one.replace("NAME", "second"))
    policy = import_manifests(path, name="second").policy
    edited = policy.model_copy(update={"progress_deadline_seconds": 900.0})
    (text,) = export_onto(edited, [path], name="second").files.values()
    first, second = text.split("---\n")
    assert first == one.replace("NAME", "first")
    assert "progressDeadlineSeconds: 900" in second
    assert import_manifests(text, name="second").policy == edited
