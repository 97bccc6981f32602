"""Policy models: shipped files load, round-trip through YAML, match the JSON Schema, and bad
input is refused with one line naming the file, the field path and the rule."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import policies
from policies import (
    Canary,
    PolicyError,
    load_policy,
    parse_duration,
    policy_from_yaml,
    policy_json_schema,
    policy_to_yaml,
)
from policies.base import load_yaml
from policies.durations import format_duration

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "scenarios" / "policies").glob("*.yaml"))


def test_every_kind_is_shipped() -> None:
    kinds = {load_policy(p).kind for p in SHIPPED}
    assert kinds == set(policies.POLICY_KINDS)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_policy_round_trips_and_matches_schema(path: Path) -> None:
    policy = load_policy(path)
    text = policy_to_yaml(policy)
    assert policy_from_yaml(text) == policy
    assert text.startswith(f"kind: {policy.kind}\nname: {policy.name}\n")
    jsonschema.validate(load_yaml(path.read_text()), policy_json_schema())


def test_schema_rejects_unknown_keys_like_the_loader() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "Canary", "name": "x", "stepz": []}, policy_json_schema())


def test_defaults_are_the_executors() -> None:
    canary = Canary(name="c")
    assert (canary.max_surge, canary.max_unavailable) == ("25%", "25%")
    assert canary.progress_deadline_seconds == 600 and not canary.progress_deadline_abort
    assert canary.effective_scale_down_delay_s == 0  # ignored for a basic canary
    routed = policy_from_yaml("kind: Canary\nname: r\ntrafficRouting: {istio: {}}\n")
    assert routed.effective_scale_down_delay_s == 30
    assert routed.effective_abort_scale_down_delay_s == 30
    bg = policy_from_yaml("kind: BlueGreen\nname: b\n")
    assert bg.auto_promotion_enabled and bg.auto_promotion_seconds == 0
    assert bg.scale_down_delay_seconds == 30 and bg.abort_scale_down_delay_seconds == 30
    metric = (
        policy_from_yaml(
            "kind: Canary\nname: m\nanalysisTemplates:\n- name: t\n  metrics:\n"
            "  - name: x\n    interval: 1m\n    provider: {query: {measure: errorRate}}\n"
        )
        .analysis_templates[0]
        .metrics[0]
    )
    assert (metric.failure_limit, metric.inconclusive_limit) == (0, 0)
    assert metric.consecutive_error_limit == 4 and metric.effective_count is None
    prog = load_policy(ROOT / "scenarios/policies/progressive.yaml")
    assert prog.analysis.effective_max_weight == 50
    assert prog.weight_schedule() == [20, 40, 60]


def test_repr_shows_only_what_differs_from_defaults() -> None:
    assert repr(Canary(name="c", max_surge=1)) == "Canary(name='c', max_surge=1)"


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        ("30", 30.0),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1h30m", 5400.0),
        ("80ms", 0.08),
        (0, 0.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10x", "", "m", "-5s", -1, True, "1h-", None, "nan"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_format_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# ----------------------------------------------------------------------------- bad input

BAD = {
    "invalid YAML": (
        "kind: Canary\nname: x\nsteps:\n  - setWeight: 5\n   pause: {}\n",
        "line 5: invalid YAML",
    ),
    "unknown key": ("kind: Canary\nname: x\nstepz: []\n", "stepz: unknown key"),
    "malformed duration": (
        "kind: Canary\nname: x\nsteps:\n  - pause: {duration: 10x}\n",
        'steps[0].pause.duration: "10x" is not a duration',
    ),
    "negative duration": (
        "kind: Canary\nname: x\nsteps:\n  - pause: {duration: -5}\n",
        "steps[0].pause.duration: -5 is negative",
    ),
    "weight above 100": (
        "kind: Canary\nname: x\nsteps:\n  - setWeight: 150\n",
        "steps[0].setWeight: 150 must be <= 100",
    ),
    "weight below 0": (
        "kind: Canary\nname: x\nsteps:\n  - setWeight: -1\n",
        "steps[0].setWeight: -1 must be >= 0",
    ),
    "two actions": (
        "kind: Canary\nname: x\nsteps:\n  - setWeight: 5\n    pause: {}\n",
        "steps[0]: a step has exactly one action (got setWeight and pause)",
    ),
    "count below failureLimit": (
        "kind: Canary\nname: x\nanalysisTemplates:\n  - name: t\n    metrics:\n      - name: m\n"
        "        interval: 1m\n        count: 2\n        failureLimit: 3\n"
        "        provider: {query: {measure: errorRate}}\n",
        "analysisTemplates[0].metrics[0]: count (2) must be >= failureLimit",
    ),
    "python tag": (
        'kind: Canary\nname: !!python/object/apply:os.system ["echo pwned"]\n',
        "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed",
    ),
    "duplicate key": ("kind: Canary\nname: x\nname: y\n", "duplicate key 'name'"),
    "unknown kind": ("kind: Canry\nname: x\n", "kind: 'Canry' is not a policy kind"),
    "unsafe condition": (
        "kind: Canary\nname: x\nanalysisTemplates:\n  - name: t\n    metrics:\n      - name: m\n"
        "        successCondition: __import__('os')\n"
        "        provider: {query: {measure: errorRate}}\n",
        "metrics[0].successCondition: condition \"__import__('os')\" is not a safe comparison",
    ),
    "missing template": (
        "kind: Canary\nname: x\nsteps:\n  - analysis: {templates: [{templateName: nope}]}\n",
        "templateName 'nope' is not in analysisTemplates",
    ),
    "surge and unavailable zero": (
        "kind: RollingUpdate\nname: x\nmaxSurge: 0\nmaxUnavailable: 0\n",
        "maxUnavailable may not be 0 when maxSurge is 0",
    ),
    "stepWeight and stepWeights": (
        "kind: Progressive\nname: x\nanalysis: {stepWeight: 10, stepWeights: [10, 20]}\n",
        "give only one of iterations, stepWeight, stepWeights",
    ),
    "basic canary with scaleDownDelaySeconds": (
        "kind: Canary\nname: x\nscaleDownDelaySeconds: 30\n",
        "scaleDownDelaySeconds requires trafficRouting",
    ),
    "not a mapping": ("- kind: Canary\n", "a policy is a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_naming_file_field_and_rule(case: str, tmp_path: Path) -> None:
    text, expected = BAD[case]
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message and "Traceback" not in message


UNENDING = (
    "analysisTemplates:\n  - name: t\n    metrics:\n      - name: m\n        interval: 1m\n"
    "        provider: {query: {measure: errorRate}}\n"
)
RUNS = "{templates: [{templateName: t}]}"


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (f"kind: Canary\nname: x\n{UNENDING}steps:\n  - analysis: {RUNS}\n", "steps[0].analysis"),
        (f"kind: Canary\nname: x\n{UNENDING}analysis: {RUNS}\n", None),  # a background one
        (f"kind: BlueGreen\nname: x\n{UNENDING}prePromotionAnalysis: {RUNS}\n", "prePromotion"),
        (f"kind: BlueGreen\nname: x\n{UNENDING}postPromotionAnalysis: {RUNS}\n", "postPromotion"),
    ],
)
def test_an_analysis_that_gates_a_step_must_end(text: str, refused: str | None) -> None:
    """Argo marks a Rollout InvalidSpec when a step's or a promotion's analysis runs
    indefinitely (an interval, no count); a background analysis may."""
    if refused is None:
        assert policy_from_yaml(text).analysis is not None
        return
    rule = rf"{re.escape(refused)}\w*: template 't' metric 'm' runs indefinitely"
    with pytest.raises(PolicyError, match=rule):
        policy_from_yaml(text)


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read file"):
        load_policy(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- round trips

durations = st.sampled_from([0, 30, 60, 90, 600, 3600, 86400])
steps = st.one_of(
    st.builds(lambda w: {"setWeight": w}, st.integers(0, 100)),
    st.builds(lambda d: {"pause": {"duration": d}}, durations),
    st.just({"pause": {}}),
    st.just({"analysis": {"templates": [{"templateName": "t"}]}}),
)
metric = st.fixed_dictionaries(
    {
        "name": st.just("m"),
        "interval": durations.filter(bool),
        "count": st.integers(3, 6),  # a step's analysis must end (Argo: InvalidSpec otherwise)
        "failureLimit": st.integers(0, 3),
        "successCondition": st.sampled_from(["result >= 0.99", "result[0] <= 0.01"]),
        "provider": st.sampled_from(
            [
                {"query": {"measure": "successRate"}},
                {"query": {"measure": "latency", "quantile": 0.95}},
            ]
        ),
    }
)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(steps, max_size=8),
    routing=st.sampled_from([None, {"nginx": {}}, {"istio": {}}]),
    surge=st.sampled_from(["25%", "0%", 1, 3, "50%"]),
    metric=metric,
    background=st.booleans(),
)
def test_generated_canaries_round_trip(steps, routing, surge, metric, background) -> None:
    data = {
        "kind": "Canary",
        "name": "generated",
        "steps": steps,
        "maxSurge": surge,
        "maxUnavailable": 1,
        "analysisTemplates": [{"name": "t", "metrics": [metric]}],
    }
    if routing:
        data["trafficRouting"] = routing
    if background:
        data["analysis"] = {"templates": [{"templateName": "t"}], "startingStep": 0}
    policy = policies.parse_policy(data)
    assert policy_from_yaml(policy_to_yaml(policy)) == policy


@settings(max_examples=40, deadline=None)
@given(
    step=st.integers(1, 50),
    max_weight=st.integers(1, 100),
    interval=durations.filter(bool),
    threshold=st.integers(1, 10),
)
def test_generated_progressive_round_trip(step, max_weight, interval, threshold) -> None:
    policy = policies.parse_policy(
        {
            "kind": "Progressive",
            "name": "p",
            "analysis": {
                "interval": interval,
                "threshold": threshold,
                "stepWeight": step,
                "maxWeight": max_weight,
                "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}],
            },
        }
    )
    assert policy_from_yaml(policy_to_yaml(policy)) == policy
    schedule = policy.weight_schedule()
    assert schedule[-1] >= min(max_weight, 100) and all(w <= 100 for w in schedule)


# ----------------------------------------------------------------------------- surface


def test_public_surface_is_pinned() -> None:
    assert sorted(policies.__all__) == sorted(
        [
            "POLICY_KINDS",
            "ABTest",
            "AnalysisRun",
            "AnalysisTemplate",
            "Batch",
            "BatchRelease",
            "BlueGreen",
            "Canary",
            "CanaryStep",
            "FlaggerAnalysis",
            "FlaggerMetric",
            "Metric",
            "Model",
            "NotExpressibleError",
            "Observation",
            "Pause",
            "Phase",
            "Policy",
            "PolicyError",
            "Progressive",
            "Provider",
            "Query",
            "RollingUpdate",
            "RolloutsimError",
            "TrafficRouting",
            "WindowStats",
            "format_duration",
            "load_policy",
            "parse_policy",
            "parse_duration",
            "policy_from_yaml",
            "policy_json_schema",
            "policy_to_yaml",
        ]
    )
    for name in policies.__all__:
        assert hasattr(policies, name)


def test_policies_imports_no_simulation_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, policies, policies.controller;"
        "bad = [m for m in ('simpy', 'pandas', 'sim') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
