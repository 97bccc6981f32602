"""A command line that guides (issue #16, item 3): ``validate`` and ``explain`` tell a policy,
a scenario and a manifest apart and do the right thing with each; every problem of a file is
listed, one line each naming the file and field, an unknown key with the closest valid one;
a bare number that is probably not seconds is a warning; a missing referenced file names the
scenario and the field that referenced it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies.durations import AMBIGUOUS_OVER
from policies.errors import MAX_PROBLEMS, PolicyError
from policies.loading import parse_policy
from rolloutsim.cli import main
from sim.runs.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
ROLLOUT = ROOT / "tests" / "manifests" / "argo" / "background-analysis.yaml"

POLICY = "kind: Canary\nname: c\nsteps: [{setWeight: 20}, {pause: {duration: 1m}}]\n"
WORLD = "world: {traffic: {rate: 10}, platform: {replicas: 4}}\n"


def scenario(policies: str, world: str = WORLD) -> str:
    return f"name: s\n{world}policies:\n{policies}replications: 4\n"


def cli(tmp_path: Path, files: dict[str, str], *argv: str, capsys) -> tuple[int, str, str]:
    """Write ``files`` into ``tmp_path`` and run the CLI there, in-process."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    cwd = Path.cwd()
    try:
        import os

        os.chdir(tmp_path)
        code = main(list(argv))
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------ bad input: the exact lines

BAD = {
    "unknown key, top level": (
        {"p.yaml": POLICY + "stepz: []\n"},
        ["validate", "p.yaml"],
        ["p.yaml: stepz: unknown key (did you mean steps?)"],
    ),
    "unknown key, nested in a list": (
        {"p.yaml": "kind: Canary\nname: c\nsteps: [{setWeigth: 5}]\n"},
        ["validate", "p.yaml"],
        ["p.yaml: steps[0].setWeigth: unknown key (did you mean setWeight?)"],
    ),
    "unknown key in a query": (
        {
            "p.yaml": "kind: Canary\nname: c\nanalysisTemplates:\n  - name: t\n    metrics:\n"
            "      - {name: m, provider: {query: {measure: errorRate, windw: 1m}}}\n"
        },
        ["validate", "p.yaml"],
        [
            "p.yaml: analysisTemplates[0].metrics[0].provider.query.windw: unknown key"
            " (did you mean window?)"
        ],
    ),
    "snake_case key": (
        {"p.yaml": POLICY + "scaledowndelayseconds: 30\n"},
        ["validate", "p.yaml"],
        ["p.yaml: scaledowndelayseconds: unknown key (did you mean scaleDownDelaySeconds?)"],
    ),
    "a mapping that takes no keys": (
        {"p.yaml": POLICY + "trafficRouting: {nginx: {stableIngress: web}}\n"},
        ["validate", "p.yaml"],
        ["p.yaml: trafficRouting.nginx.stableIngress: unknown key (this mapping takes no keys)"],
    ),
    "every problem listed": (
        {"p.yaml": "kind: Canary\nname: c\nsteps: [{setWeight: 500}, {pause: {duraton: 5}}]\n"},
        ["validate", "p.yaml"],
        [
            "p.yaml: steps[0].setWeight: 500 must be <= 100",
            "p.yaml: steps[1].pause.duraton: unknown key (did you mean duration?)",
        ],
    ),
    "a scenario key one level too high": (
        {
            "s.yaml": scenario(
                "  - {kind: RollingUpdate, name: r}\n",
                "world: {traffic: {diurnal: {mean: 5, amplitude: 0.5}}}\n",
            )
        },
        ["validate", "s.yaml"],
        [
            "s.yaml: world.traffic.rate: is required",
            "s.yaml: world.traffic.diurnal: unknown key"
            " (it goes under rate: write rate: {diurnal: ...})",
        ],
    ),
    "a world key misspelt": (
        {
            "s.yaml": scenario(
                "  - {kind: RollingUpdate, name: r}\n",
                "world: {traffic: {rate: 5}, latencyObjectiv: 1s}\n",
            )
        },
        ["validate", "s.yaml"],
        ["s.yaml: world.latencyObjectiv: unknown key (did you mean latencyObjective?)"],
    ),
    "several policies, each problem": (
        {
            "s.yaml": scenario(
                "  - {kind: Canary, name: a, steps: [{setWeight: 101}]}\n"
                "  - {kind: RollingUpdate, name: b, maxSurg: 1}\n"
            )
        },
        ["validate", "s.yaml"],
        [
            "s.yaml: policies[0].steps[0].setWeight: 101 must be <= 100",
            "s.yaml: policies[1].maxSurg: unknown key (did you mean maxSurge?)",
        ],
    ),
    "an Argo provider in a policy file": (
        {
            "p.yaml": "kind: Canary\nname: c\nanalysisTemplates:\n  - name: t\n    metrics:\n"
            "      - {name: m, provider: {prometheus: {query: up}}}\n"
        },
        ["validate", "p.yaml"],
        [
            "p.yaml: analysisTemplates[0].metrics[0].provider: prometheus is an Argo provider,"
            " which a policy file does not read: simulate the metric with provider: {query:"
            " {measure: errorRate, version: canary}} (measures successRate, errorRate, latency"
            " with quantile, requestCount), or keep the Rollout's own query by importing its"
            " manifest: rolloutsim import rollout.yaml --map"
            " METRIC=measure:version[:quantile][:unit]"
        ],
    ),
    "a missing policy file": (
        {"s.yaml": scenario("  - {kind: RollingUpdate, name: r}\n  - file: policies/nope.yaml\n")},
        ["validate", "s.yaml"],
        [
            "s.yaml: policies[1].file: policies/nope.yaml: cannot read file:"
            " No such file or directory"
        ],
    ),
    "a missing manifest of a list": (
        {"s.yaml": scenario("  - manifest: [rollout.yaml, gone.yaml]\n"), "rollout.yaml": ""},
        ["validate", "s.yaml"],
        ["s.yaml: policies[0].manifest[1]: gone.yaml: cannot read file: No such file or directory"],
    ),
    "a misspelt kind": (
        {"p.yaml": "kind: Canry\nname: c\n"},
        ["validate", "p.yaml"],
        [
            "p.yaml: kind: 'Canry' is not a policy kind (Canary, BlueGreen, RollingUpdate, ABTest,"
            " Progressive, BatchRelease); did you mean Canary?"
        ],
    ),
    "a Rollout without apiVersion": (
        {"p.yaml": "kind: Rollout\nname: c\n"},
        ["validate", "p.yaml"],
        [
            "p.yaml: kind: 'Rollout' is not a policy kind (Canary, BlueGreen, RollingUpdate,"
            " ABTest, Progressive, BatchRelease): a Rollout is an executor's manifest; with its"
            " apiVersion it is imported (rolloutsim import FILE, or manifest: in a scenario)"
        ],
    ),
    "templates alone": (
        {"t.yaml": ROLLOUT.read_text().split("---\n")[1]},
        ["validate", "t.yaml"],
        [
            "t.yaml: holds AnalysisTemplate/success-rate alone, no Rollout or Canary: give it with"
            " the Rollout or Canary that uses it: rolloutsim validate ROLLOUT.yaml t.yaml"
        ],
    ),
    "a Deployment": (
        {"d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"},
        ["explain", "d.yaml"],
        [
            "d.yaml: holds Deployment/web: no Argo Rollout or Flagger Canary; rolloutsim reads"
            " policy files (kind: Canary, BlueGreen, ...), scenarios (world: and policies:) and"
            " Argo Rollout or Flagger Canary manifests (validate, explain, import)"
        ],
    ),
    "neither a policy nor a scenario": (
        {"x.yaml": "replicas: 3\n"},
        ["explain", "x.yaml"],
        [
            "x.yaml: is a mapping of replicas: neither a policy (no kind:) nor a scenario (no"
            " world: or policies:); rolloutsim reads policy files (kind: Canary, BlueGreen, ...),"
            " scenarios (world: and policies:) and Argo Rollout or Flagger Canary manifests"
            " (validate, explain, import)"
        ],
    ),
    "two policies in one file": (
        {"p.yaml": POLICY + "---\n" + POLICY},
        ["validate", "p.yaml"],
        [
            "p.yaml: holds 2 YAML documents that are not all Kubernetes objects (apiVersion, kind):"
            " a policy file or scenario is one document; rolloutsim reads policy files (kind:"
            " Canary, BlueGreen, ...), scenarios (world: and policies:) and Argo Rollout or"
            " Flagger Canary manifests (validate, explain, import)"
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_these_lines(case: str, tmp_path: Path, capsys) -> None:
    files, argv, expected = BAD[case]
    code, out, err = cli(tmp_path, files, *argv, capsys=capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("rolloutsim: error: ")
    assert [line.removeprefix("rolloutsim: error: ") for line in lines] == expected


def test_one_problem_is_one_line_as_before(tmp_path: Path, capsys) -> None:
    """A single problem keeps the one line it always had (tests match it)."""
    code, _, err = cli(
        tmp_path, {"p.yaml": POLICY + "stepz: []\n"}, "validate", "p.yaml", capsys=capsys
    )
    assert code == 2 and err.count("\n") == 1 and err.startswith("rolloutsim: error: p.yaml: stepz")


def test_problems_are_listed_up_to_the_bound_then_counted() -> None:
    data = {"kind": "Canary", "name": "c", **{f"key{i}": 1 for i in range(MAX_PROBLEMS + 5)}}
    with pytest.raises(PolicyError) as info:
        parse_policy(data, file="p.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1 and len(info.value.problems) == MAX_PROBLEMS + 5
    assert lines[-1] == f"p.yaml: 5 more problems not listed (at most {MAX_PROBLEMS} are)"
    assert all(line.startswith("p.yaml: key") for line in lines[:-1])


def test_a_policy_file_given_to_run_says_what_it_is(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    with pytest.raises(PolicyError) as info:
        load_scenario(tmp_path / "p.yaml")
    assert str(info.value).endswith(
        "p.yaml: is a policy file (kind: Canary), not a scenario (name, world, policies): explain"
        " or validate it, or name it in a scenario's policies: [{file: p.yaml}]"
    )


# ------------------------------------------------------------- recognising what a file is


def test_validate_imports_a_manifest_and_says_what_it_imports_as(capsys) -> None:
    assert main(["validate", str(ROLLOUT)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{ROLLOUT}: OK (Argo Rollout 'guestbook' imports as Canary 'guestbook')\n"
    assert f"rolloutsim: note: {ROLLOUT}: AnalysisTemplate/success-rate" in err  # the notes


def test_validate_reads_templates_from_a_file_beside_the_rollout(tmp_path: Path, capsys) -> None:
    rollout, templates = ROLLOUT.read_text().split("---\n")
    files = {"rollout.yaml": rollout, "templates.yaml": templates}
    code, out, _ = cli(tmp_path, files, "validate", "rollout.yaml", "templates.yaml", capsys=capsys)
    assert code == 0
    assert out.splitlines() == [
        "rollout.yaml: OK (Argo Rollout 'guestbook' imports as Canary 'guestbook')",
        "templates.yaml: OK (AnalysisTemplate/success-rate: read with the Rollout or Canary"
        " given beside it)",
    ]
    code, _, err = cli(tmp_path, {}, "validate", "rollout.yaml", capsys=capsys)
    assert code == 2 and "AnalysisTemplate 'success-rate' is not among the manifests" in err


def test_explain_takes_a_rollout_with_its_template_file(tmp_path: Path, capsys) -> None:
    """``explain ROLLOUT TEMPLATES`` (the command line's ``policy`` as a list of files)."""
    import argparse

    from rolloutsim.check_commands import explain_command

    rollout, templates = ROLLOUT.read_text().split("---\n")
    (tmp_path / "r.yaml").write_text(rollout)
    (tmp_path / "t.yaml").write_text(templates)
    files = [str(tmp_path / "r.yaml"), str(tmp_path / "t.yaml")]
    args = argparse.Namespace(policy=files, replicas=3, json=False, map=None)
    assert explain_command(args) == 0
    out = capsys.readouterr().out
    assert 'Canary "guestbook" on 3 replicas' in out
    assert "note: explained on 3 replicas (--replicas), not the policy's own 5" in out


def test_explain_a_manifest_explains_the_imported_policy(capsys) -> None:
    assert main(["explain", str(ROLLOUT)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Argo Rollout 'guestbook' imported as Canary 'guestbook'\n")
    assert 'Canary "guestbook" on 5 replicas' in out  # spec.replicas
    assert "\n0     setWeight 20" in out


def test_explain_a_scenario_explains_each_policy_on_its_replicas(tmp_path: Path, capsys) -> None:
    policies = (
        "  - {kind: Canary, name: c, steps: [{setWeight: 10}]}\n  - {kind: BlueGreen, name: b}\n"
    )
    files = {"s.yaml": scenario(policies)}
    code, out, _ = cli(tmp_path, files, "explain", "s.yaml", capsys=capsys)
    assert code == 0
    assert 'Canary "c" on 4 replicas' in out and 'BlueGreen "b" on 4 replicas' in out
    assert "1 / 4               20 %  (asked 10 %)" in out  # Argo's N / N+1 on the world's 4
    assert out.count("note: explained on the scenario's 4 replicas (world.platform.replicas)") == 2
    code, out, _ = cli(tmp_path, {}, "explain", "s.yaml", "--json", "-n", "9", capsys=capsys)
    data = json.loads(out)
    assert data["scenario"] == "s" and [p["name"] for p in data["policies"]] == ["c", "b"]
    assert all("on 9 replicas" in p["title"] for p in data["policies"])


# --------------------------------------------------------------------------------- units


def _warnings(tmp_path: Path, world: str, policies: str = "  - {kind: RollingUpdate, name: r}\n"):
    (tmp_path / "s.yaml").write_text(scenario(policies, world))
    return [n for n in load_scenario(tmp_path / "s.yaml").notes if "is read as" in n]


def test_a_bare_latency_objective_of_1000_is_a_warning(tmp_path: Path) -> None:
    (warning,) = _warnings(tmp_path, "world: {traffic: {rate: 5}, latencyObjective: 1000}\n")
    assert warning == (
        f"warning: {tmp_path / 's.yaml'}: world.latencyObjective: 1000 is read as 1000 seconds"
        " (16.7 minutes), long for a request latency written without a unit (over 10 seconds):"
        ' write "1000ms" if you meant milliseconds, or "1000s" to keep it'
    )
    assert not _warnings(tmp_path, 'world: {traffic: {rate: 5}, latencyObjective: "1000s"}\n')
    assert not _warnings(tmp_path, "world: {traffic: {rate: 5}, latencyObjective: 2}\n")


def test_latency_distributions_and_shifts_use_the_latency_threshold(tmp_path: Path) -> None:
    world = (
        "world:\n  traffic: {rate: 5}\n"
        "  baseline: {latency: {lognormal: {median: 80, sigma: 0.5}}}\n"
        "  releases: [{name: good, probability: 0.5},"
        " {name: slow, probability: 0.5, fault: {latencyShift: 200}}]\n"
        "  platform: {replicas: 4, podStartup: {uniform: [20, 40]}}\n"  # pod start-up: seconds
    )
    paths = [w.split(": ")[2] for w in _warnings(tmp_path, world)]
    assert paths == ["world.baseline.latency.median", "world.releases[1].fault.latencyShift"]


def test_other_durations_warn_only_beyond_a_day(tmp_path: Path) -> None:
    day = AMBIGUOUS_OVER["duration"]
    pauses = ", ".join(f"{{pause: {{duration: {d:.0f}}}}}" for d in (3600, day, day + 1))
    policies = f"  - {{kind: Canary, name: c, steps: [{pauses}]}}\n"
    world = f"world: {{traffic: {{rate: 5}}, horizon: {3 * day:.0f}}}\n"
    paths = [w.split(": ")[2] for w in _warnings(tmp_path, world, policies)]
    assert paths == ["policies[0].steps[2].pause.duration", "world.horizon"]


def test_a_policy_file_warns_naming_itself(tmp_path: Path, capsys) -> None:
    files = {"p.yaml": "kind: Canary\nname: c\nsteps: [{pause: {duration: 100000}}]\n"}
    code, out, err = cli(tmp_path, files, "validate", "p.yaml", capsys=capsys)
    assert code == 0 and out == "p.yaml: OK (Canary 'c')\n"
    assert err.startswith("rolloutsim: warning: p.yaml: steps[0].pause.duration: 100000 is read as")
    files["s.yaml"] = scenario("  - file: p.yaml\n")
    code, _, err = cli(tmp_path, files, "validate", "s.yaml", capsys=capsys)
    assert code == 0 and "rolloutsim: warning: p.yaml: steps[0].pause.duration: 100000" in err


def test_ambiguous_durations_reads_the_short_forms(tmp_path: Path) -> None:
    """A distribution's one-key form, a bare value and a pair map onto their fields."""
    for raw in ("{exponential: {mean: 50}}", "{exponential: 50}", "50", "{uniform: [1, 50]}"):
        world = f"world: {{traffic: {{rate: 5}}, baseline: {{latency: {raw}}}}}\n"
        (warning,) = _warnings(tmp_path, world)
        assert warning.startswith(f"warning: {tmp_path / 's.yaml'}: world.baseline.latency")
        assert "50 is read as" in warning
