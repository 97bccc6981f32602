"""Scenario files: every shipped one loads and matches the published schema, the schema file is
current, and mistakes are one line naming the file, the field and the rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from policies import PolicyError
from policies.base import load_yaml
from sim.runs.scenario import load_scenario, scenario_json_schema

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
QUESTIONS = (
    "seed-practice",
    "subtle-regression",
    "latent-leak",
    "segment-bug",
    "five-replicas",
    "diurnal",
    "dns-bluegreen",
)


def test_schema_file_is_current() -> None:
    """scenarios/schema.json is generated: `rolloutsim schema scenario > scenarios/schema.json`."""
    on_disk = json.loads((ROOT / "scenarios" / "schema.json").read_text())
    assert on_disk == json.loads(json.dumps(scenario_json_schema(), sort_keys=True))


def test_seven_questions_are_shipped() -> None:
    assert {p.stem for p in SCENARIOS} >= set(QUESTIONS)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenario_loads_and_matches_schema(path: Path) -> None:
    loaded = load_scenario(path)
    assert loaded.policies and len(loaded.digest()) == 16
    jsonschema.validate(load_yaml(path.read_text()), scenario_json_schema())
    text = path.read_text()
    assert text.startswith("#")  # documented at its top
    if path.stem in QUESTIONS:
        assert "Answer this scenario shows" in text  # each question states its answer


BAD = {
    "unknown key": (
        "name: x\nworld: {traffic: {rate: 10}}\npolicies: [{file: p.yaml}]\nreplicationz: 3\n",
        "replicationz: unknown key",
    ),
    "no policies": (
        "name: x\nworld: {traffic: {rate: 10}}\npolicies: []\n",
        "policies: needs at least 1 item",
    ),
    "bad world field": (
        "name: x\nworld: {traffic: {rate: 10}, horizon: 10x}\npolicies: [{file: p.yaml}]\n",
        'world.horizon: "10x" is not a duration',
    ),
    "bad inline policy": (
        "name: x\nworld: {traffic: {rate: 10}}\npolicies:\n  - {kind: Canary, name: c,"
        " steps: [{setWeight: 500}]}\n",
        "policies[0].steps[0].setWeight: 500 must be <= 100",
    ),
    "missing policy file": (
        "name: x\nworld: {traffic: {rate: 10}}\npolicies: [{file: nope.yaml}]\n",
        "nope.yaml: cannot read file",
    ),
    "duplicate names": (
        "name: x\nworld: {traffic: {rate: 10}}\npolicies:\n  - {kind: RollingUpdate, name: r}\n"
        "  - {kind: RollingUpdate, name: r}\n",
        "policies[1]: two policies are named 'r'",
    ),
    "unknown release in replications": (
        "name: x\nworld: {traffic: {rate: 10}}\npolicies: [{kind: RollingUpdate, name: r}]\n"
        "replications: {bad: 3}\n",
        "unknown release class 'bad'",
    ),
    "sweep path that does not exist": (
        "name: x\nworld: {traffic: {rate: 10}}\npolicies: [{kind: RollingUpdate, name: r}]\n",
        "world.trafic does not exist",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenarios(case: str, tmp_path: Path) -> None:
    text, expected = BAD[case]
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    overrides = {"world.trafic.startAt": "1h"} if "sweep" in case else None
    with pytest.raises(PolicyError) as info:
        load_scenario(path, overrides)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_cli_validates_scenarios_and_schema_is_printed() -> None:
    run = [sys.executable, "-m", "rolloutsim"]
    out = subprocess.run(
        [*run, "validate", str(ROOT / "scenarios/seed-practice.yaml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "OK (scenario 'seed-practice': canary-20-first, bluegreen)" in out
    schema = json.loads(
        subprocess.run([*run, "schema"], capture_output=True, text=True, check=True).stdout
    )
    assert schema["title"] == "rolloutsim scenario"
