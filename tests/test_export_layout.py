"""``export -o`` writes one layout for one executor or all (issue #16, item 5): ``DIR/<executor>/``
either way, the same files byte for byte. A refusal names what the user can do in the executor
that refused, so following it leads to an export there, never to another executor that points
back; a number in a refusal names the field it comes from. The published JSON schemas describe
the fields without citing files a user does not have (DESIGN, STYLE, reference/).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.errors import NotExpressibleError
from policies.exporters import EXECUTORS, Target, export
from policies.loading import load_policy
from rolloutsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "scenarios" / "policies"
SHIPPED = sorted(POLICIES.glob("*.yaml"))


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refusal(policy: Any, executor: str) -> NotExpressibleError | None:
    try:
        export(policy, executor, Target(service="svc"))
    except NotExpressibleError as exc:
        return exc
    return None


# ------------------------------------------------------------------ one layout


@pytest.mark.parametrize("name", ["canary-nginx", "bluegreen", "progressive"])
def test_one_executor_writes_what_all_writes_for_it(tmp_path, capsys, name):
    """``--to X -o DIR`` gives exactly ``DIR/X/...`` of ``--to all -o DIR``, byte for byte."""
    policy = str(POLICIES / f"{name}.yaml")
    assert main(["export", policy, "--to", "all", "-o", str(tmp_path / "all")]) == 0
    every = tree(tmp_path / "all")
    printed_all = capsys.readouterr().out.splitlines()
    accepted = sorted({path.split("/")[0] for path in every})
    assert len(accepted) >= 2, accepted  # several executors, so the comparison means something
    one: dict[str, bytes] = {}
    for executor in accepted:
        out = tmp_path / executor  # a folder of its own per executor
        assert main(["export", policy, "--to", executor, "-o", str(out)]) == 0
        (line,) = capsys.readouterr().out.splitlines()
        assert line.startswith(f"{executor}: {out / executor / name}.yaml")
        assert line.replace(str(out), str(tmp_path / "all")) in printed_all
        one |= tree(out)
    assert one == every


def test_exporting_one_executor_beside_another_keeps_both(tmp_path, capsys):
    """Two single exports into one folder no longer write one over the other."""
    policy = str(POLICIES / "canary-nginx.yaml")
    for executor in ("argo", "nginx"):
        assert main(["export", policy, "--to", executor, "-o", str(tmp_path)]) == 0
    assert sorted(tree(tmp_path)) == [
        "argo/canary-nginx.yaml",
        "nginx/canary-nginx.yaml",
        "nginx/runbook.json",
        "nginx/runbook.sh",
    ]


def test_printing_without_output_is_unchanged(capsys):
    """Without -o the YAML goes to stdout, nothing else (no folder, no executor line)."""
    assert main(["export", str(POLICIES / "canary-basic.yaml"), "--to", "argo"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["Rollout"]


# ------------------------------------------------------------------ refusals


def every_refusal() -> list[tuple[str, str, NotExpressibleError]]:
    out = []
    for path in SHIPPED:
        policy = load_policy(path)
        for executor in EXECUTORS:
            exc = refusal(policy, executor)
            if exc is not None:
                out.append((path.stem, executor, exc))
    return out


REFUSALS = every_refusal()
NAMED = re.compile(r"the (\w+)(?: and (\w+))? exporters? (?:takes?|writes)")


def test_the_shipped_policies_meet_refusals_of_every_executor():
    assert {executor for _, executor, _ in REFUSALS} == set(EXECUTORS)


@pytest.mark.parametrize(("name", "executor", "exc"), REFUSALS, ids=lambda v: str(v)[:40])
def test_a_refusal_says_what_to_do_and_never_sends_the_user_round(name, executor, exc):
    """Each reason ends with something to do (a remedy after a colon or semicolon); an executor
    it names instead takes the policy as written, so no two refusals point at each other."""
    text = str(exc)
    for old in ("export it to", "route through", "export to", "use the flagger exporter"):
        assert old not in text, text
    assert re.search(r"\b(give|drop|keep|move|end the|write|is its form)\b", exc.reason), text
    policy = load_policy(POLICIES / f"{name}.yaml")
    named_by = NAMED.search(exc.reason)
    for named in filter(None, named_by.groups() if named_by else ()):
        assert named in EXECUTORS and named != executor, text
        assert refusal(policy, named) is None, (named, str(refusal(policy, named)))


def edit(path: Path, change) -> Any:
    data = yaml.safe_load(path.read_text())
    change(data)
    return data


def follow(data: dict, executor: str, remedies: dict[str, Any], tmp_path: Path) -> list[str]:
    """Export ``data`` to ``executor``, applying the remedy each refusal names, until it exports;
    the fields refused on the way."""
    fields: list[str] = []
    for _ in range(len(remedies) + 1):
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(data))
        exc = refusal(load_policy(path), executor)
        if exc is None:
            return fields
        assert exc.field in remedies and exc.field not in fields, (fields, str(exc))
        fields.append(exc.field)
        remedies[exc.field](data, exc.reason)
    raise AssertionError(f"still refused after {fields}")


def test_the_loop_between_kubernetes_and_nginx_is_gone(tmp_path):
    """A gated canary without a router: nginx asks for its router, kubernetes for pauses in
    place of the analysis; each remedy ends in an export by the executor that asked for it."""

    def gated(data):
        data["analysisTemplates"] = [
            {
                "name": "sr",
                "metrics": [
                    {
                        "name": "sr",
                        "interval": "1m",
                        "count": 3,
                        "successCondition": "result[0] >= 0.99",
                        "provider": {"query": {"measure": "successRate", "version": "canary"}},
                    }
                ],
            }
        ]
        data["steps"].insert(2, {"analysis": {"templates": [{"templateName": "sr"}]}})

    base = POLICIES / "canary-basic.yaml"
    assert refusal(load_policy(base), "kubernetes") is None

    def route(data, reason):
        assert "trafficRouting: {nginx: {}}" in reason
        data["trafficRouting"] = {"nginx": {}}

    assert follow(edit(base, gated), "nginx", {"trafficRouting": route}, tmp_path) == [
        "trafficRouting"
    ]

    def pause(data, reason):
        assert "pause" in reason and "nginx" not in reason and "istio" not in reason
        data["steps"][2] = {"pause": {}}

    done = follow(edit(base, gated), "kubernetes", {"steps[2].analysis": pause}, tmp_path)
    assert done == ["steps[2].analysis"]


def test_flagger_refusals_of_an_argo_canary_lead_to_a_flagger_canary(tmp_path):
    """canary-20-first to Flagger: each refusal names its field and fix, the interval refusal
    names where its 600 s comes from (the first pause), and the fixes end in a Canary."""
    path = POLICIES / "canary-20-first.yaml"
    pause = yaml.safe_load(path.read_text())["steps"][1]["pause"]["duration"]
    assert pause == "10m"
    exc = refusal(load_policy(path), "flagger")
    assert exc is not None and exc.field == "analysisTemplates[0].metrics[0].interval"
    assert "steps[1].pause.duration: 600 s" in exc.reason
    assert "not every 60 s" in exc.reason and "interval: 600s" in exc.reason

    def interval(data, reason):
        data["analysisTemplates"][0]["metrics"][0]["interval"] = reason.rsplit("interval: ", 1)[1]

    def starting(data, reason):
        assert "drop startingStep" in reason
        del data["analysis"]["startingStep"]

    def last(data, reason):
        assert "end the steps with a pause" in reason
        data["steps"].append({"pause": {"duration": "10m"}})

    remedies = {
        "analysisTemplates[0].metrics[0].interval": interval,
        "analysis.startingStep": starting,
        f"steps[{len(yaml.safe_load(path.read_text())['steps']) - 1}]": last,
    }
    assert follow(edit(path, lambda d: None), "flagger", remedies, tmp_path)[0] == (
        "analysisTemplates[0].metrics[0].interval"
    )


def test_uneven_pauses_name_the_pause_that_sets_flaggers_interval(tmp_path):
    def uneven(data):
        data["steps"][3]["pause"]["duration"] = "5m"

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(edit(POLICIES / "canary-20-first.yaml", uneven)))
    exc = refusal(load_policy(path), "flagger")
    assert exc is not None and exc.field == "steps[3].pause.duration"
    assert "steps[1].pause.duration: 600 s" in exc.reason and "this pause is 300 s" in exc.reason


@pytest.mark.parametrize(
    ("name", "executor", "change"),
    [
        ("progressive", "istio", {"provider": "istio"}),
        ("ab-test-header", "nginx", {"provider": "nginx"}),
        ("bluegreen-dns", "argo", {"switch": "serviceSelector", "dnsTtl": None}),
        ("bluegreen-dns", "kubernetes", {"switch": "serviceSelector", "dnsTtl": None}),
    ],
)
def test_the_named_field_change_makes_the_same_executor_take_it(tmp_path, name, executor, change):
    path = POLICIES / f"{name}.yaml"
    exc = refusal(load_policy(path), executor)
    assert exc is not None
    for key, value in change.items():
        assert (f"{key}: {value}" if value is not None else f"no {key}") in exc.reason, str(exc)

    def apply(data):
        for key, value in change.items():
            data.pop(key, None) if value is None else data.__setitem__(key, value)

    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(edit(path, apply)))
    assert refusal(load_policy(fixed), executor) is None


# ------------------------------------------------------------------ the published schemas


@pytest.mark.parametrize("kind", ["scenario", "policy"])
def test_the_json_schemas_cite_no_file_a_user_lacks(capsys, kind):
    assert main(["schema", kind]) == 0
    text = capsys.readouterr().out
    schema = json.loads(text)
    assert schema["$defs"]  # the models' descriptions are in it
    found = re.findall(r".{40}(?:DESIGN|STYLE|reference/|simulation-anchors).{20}", text)
    assert found == []
