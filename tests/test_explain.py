"""``explain`` warns about gates that will see windows without requests and do not guard them.

Argo judges a Prometheus result as it comes (metricproviders/prometheus/prometheus.go, then
utils/evaluate/evaluate.go): a 0/0 success rate is NaN and ``result[0] >= 0.99`` on NaN is
false, a Failed measurement (failureLimit 0: the rollout aborts); a canary that never served has
no series, so the vector is empty and reading ``result[0]`` is an Error (five in a row abort).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from policies import load_policy, policy_from_yaml
from policies.analysis import Metric, Phase
from policies.base import validate_model
from policies.explain import explain
from policies.loading import parse_policy

POLICIES = Path(__file__).resolve().parents[1] / "scenarios" / "policies"


def canary(
    condition: str = "successCondition: 'result[0] >= 0.99'",
    *,
    start: int = 1,
    steps: str = "[{setWeight: 20}, {pause: {duration: 10m}}]",
    measure: str = "successRate",
    version: str = "canary",
    delay: str = "0s",
    nan_filter: str = "false",
):
    return policy_from_yaml(
        "kind: Canary\nname: c\ntrafficRouting: {nginx: {}}\n"
        "analysisTemplates: [{name: t, metrics: [{name: success-rate, interval: 1m, "
        f"initialDelay: {delay}, {condition}, "
        f"provider: {{query: {{measure: {measure}, version: {version}, nanFilter: {nan_filter}}}}}"
        "}]}]\n"
        f"analysis: {{startingStep: {start}, templates: [{{templateName: t}}]}}\n"
        f"steps: {steps}\n"
    )


def warnings(policy, replicas: int = 10) -> list[str]:
    return explain(policy, replicas).warnings


def fixed(warning: str) -> Metric:
    """The metric the warning's suggested fix gives (each field it names, rewritten)."""
    fields = dict(re.findall(r'(successCondition|failureCondition): "([^"]+)"', warning))
    assert fields, warning
    return validate_model(
        Metric,
        {
            "name": "m",
            "provider": {"query": {"measure": "successRate", "nanFilter": False}},
            **fields,
        },
    )


def test_a_query_that_filters_nan_is_not_warned_about_nan():
    """The shipped policies' queries drop NaN (``(...) >= 0`` when exported): 0/0 is an empty
    vector there, an Error retried, never a Failed measurement."""
    assert warnings(load_policy(POLICIES / "canary-nginx.yaml")) == []
    assert warnings(canary(nan_filter="true")) == []


def test_an_unguarded_success_rate_is_warned_with_its_fix():
    (text,) = warnings(canary())
    assert text.startswith('metric "success-rate" (successRate of canary: result[0] >= 0.99)')
    assert "is Failed on a window without canary requests" in text
    assert text.endswith('guard it with successCondition: "isNaN(result[0]) || result[0] >= 0.99"')
    assert fixed(text).verdict(math.nan) == Phase.SUCCESSFUL


@pytest.mark.parametrize(
    "condition",
    [
        "successCondition: 'isNaN(result[0]) || result[0] >= 0.99'",  # the docs' guard
        "successCondition: 'len(result) == 0 || isNaN(result[0]) || result[0] >= 0.99'",
        "failureCondition: 'result[0] < 0.99'",  # false on NaN: the measurement passes
        "failureCondition: 'isNaN(result[0]) || result[0] < 0.99'",  # fails on NaN on purpose
    ],
)
def test_a_guarded_or_deliberate_condition_is_not_warned(condition):
    assert warnings(canary(condition)) == []


def test_both_conditions_are_inconclusive_on_nan():
    (text,) = warnings(
        canary("successCondition: 'result[0] >= 0.99', failureCondition: 'result[0] < 0.9'")
    )
    assert "is Inconclusive on a window without canary requests" in text
    assert fixed(text).verdict(math.nan) == Phase.SUCCESSFUL


def test_a_request_count_is_never_nan():
    assert warnings(canary("successCondition: 'result[0] >= 1'", measure="requestCount")) == []


def test_background_analysis_at_step_0_sees_no_canary_at_all():
    (text,) = warnings(canary(start=0))  # one line, not a second one for NaN
    assert "\n" not in text
    assert text.startswith("background analysis starts at step 0, before the canary serves")
    assert 'metric "success-rate"' in text
    assert "an empty result is Error (5 in a row, 10 s apart, abort)" in text
    assert "NaN (0/0) is Failed" in text
    assert 'successCondition: "len(result) == 0 || isNaN(result[0]) || result[0] >= 0.99"' in text
    metric = fixed(text)
    assert metric.verdict(None) == metric.verdict(math.nan) == Phase.SUCCESSFUL


def test_an_initial_delay_or_a_later_start_avoids_the_quiet_windows():
    assert len(warnings(canary(start=0, delay="2m"))) == 1  # the NaN warning only
    assert "background" not in warnings(canary(start=0, delay="2m"))[0]
    assert len(warnings(canary(start=1))) == 1


def test_a_pause_before_the_first_weight_is_quiet_whatever_the_delay():
    steps = "[{pause: {duration: 5m}}, {setWeight: 20}, {pause: {duration: 10m}}]"
    (text,) = warnings(canary(start=0, delay="2m", steps=steps))
    assert text.startswith("background analysis starts at step 0")


def test_the_stable_always_serves():
    (text,) = warnings(canary(start=0, version="stable"))
    assert text.startswith('metric "success-rate" (successRate of stable') and "NaN" in text


def test_a_failure_condition_still_errors_on_an_empty_vector():
    (text,) = warnings(canary("failureCondition: 'result[0] < 0.99'", start=0))
    assert "an empty result is Error" in text and "NaN" not in text
    assert text.endswith('guard it with failureCondition: "len(result) > 0 && result[0] < 0.99"')
    assert fixed(text).verdict(None) == Phase.SUCCESSFUL


def test_a_step_analysis_before_any_weight():
    policy = policy_from_yaml(
        "kind: Canary\nname: c\ntrafficRouting: {nginx: {}}\n"
        "analysisTemplates: [{name: t, metrics: [{name: sr, successCondition: 'result[0] >= 0.9',"
        " provider: {query: {measure: successRate}}}]}]\n"
        "steps: [{analysis: {templates: [{templateName: t}]}}, {setWeight: 50}]\n"
    )
    (text,) = warnings(policy)
    assert text.startswith("step 0: analysis before any setWeight above 0")


def test_pre_promotion_analysis_sees_a_preview_without_traffic():
    policy = policy_from_yaml(
        "kind: BlueGreen\nname: b\nswitch: serviceSelector\n"
        "analysisTemplates: [{name: t, metrics: [{name: smoke,"
        " successCondition: 'result[0] >= 0.9', provider: {query: {measure: successRate}}}]}]\n"
        "prePromotionAnalysis: {templates: [{templateName: t}]}\n"
    )
    (text,) = warnings(policy, 4)
    assert text.startswith("prePromotionAnalysis runs while the preview gets no production traffic")
    assert 'metric "smoke"' in text


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_warning_is_one_line(path):
    assert all("\n" not in w for w in warnings(load_policy(path)))


def test_flagger_explains_the_random_phase_of_its_first_tick():
    notes = explain(load_policy(POLICIES / "progressive.yaml"), 4).notes
    assert "tick 0 comes up to 1m after the release starts" in " ".join(notes)


def test_explain_names_flaggers_approval_gates_and_where_they_wait():
    policy = parse_policy(
        {
            "kind": "Progressive",
            "name": "f",
            "provider": "istio",
            "analysis": {"stepWeight": 10, "maxWeight": 30, "gates": ["confirm-promotion"]},
        }
    )
    notes = explain(policy, 4).notes
    assert any(
        n.startswith("confirm-promotion: waits for an approval before promotion") for n in notes
    )


def test_explain_shows_a_querys_unit():
    template = {
        "name": "sr",
        "metrics": [
            {
                "name": "sr",
                "successCondition": "result[0] >= 99",
                "provider": {"query": {"measure": "successRate", "unit": "percent"}},
            }
        ],
    }
    policy = parse_policy(
        {
            "kind": "Canary",
            "name": "c",
            "steps": [{"setWeight": 10}, {"analysis": {"templates": [{"templateName": "sr"}]}}],
            "analysisTemplates": [template],
        }
    )
    text = explain(policy, 10).to_text()
    assert "successRate (percent) of canary result[0] >= 99" in text
