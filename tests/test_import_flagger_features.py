"""Flagger Canary features in and out: service.match for every request, stepWeights above 100,
confirm-* approval gates, blue/green, mirroring, session affinity and load tests, one-line
refusals of bad shapes and of what is not modelled, and a gate's cost in a simulated release."""

from __future__ import annotations

import math

import pytest
from test_import_flagger_providers import manifests
from test_oracles import Bench, world

from policies.errors import PolicyError
from policies.exporters import Target, crds, export
from policies.importers import import_manifests

ISTIO = "istio"
GATES = """    webhooks:
    - {name: approve-rollout, type: confirm-rollout, url: "http://flagger-loadtester.test/gate/approve"}
    - {name: halt, type: confirm-promotion, url: "http://flagger-loadtester.test/gate/halt"}
    - {name: load-test, url: "http://flagger-loadtester.test/", metadata: {cmd: "hey -z 1m"}}
    - {name: tell-slack, type: event, url: "http://event-recorder/"}
    - {name: abort, type: rollback, url: "http://flagger-loadtester.test/rollback/check"}
"""


def with_analysis(extra: str, base: str = "    maxWeight: 50\n    stepWeight: 10\n") -> str:
    return manifests(ISTIO, analysis=base + extra)


def refusal(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        import_manifests(text)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --------------------------------------------------------------------------- service.match


@pytest.mark.parametrize(
    "match",
    ["[{uri: {prefix: /}}]", "[{uri: {regex: '.*'}}]", "[{uri: {prefix: /api}}, {}]", "[]"],
)
def test_a_service_match_for_every_request_has_no_effect(match):
    text = manifests(ISTIO, service=f"    match: {match}\n")
    result = import_manifests(text)
    assert result.policy == import_manifests(manifests(ISTIO)).policy
    assert (match != "[]") == any("matches every request" in n for n in result.notes)


@pytest.mark.parametrize(
    "match",
    [
        "[{uri: {prefix: /api}}]",
        "[{headers: {x-team: {exact: a}}}]",
        "[{uri: {prefix: /}, method: {exact: GET}}]",
    ],
)
def test_a_service_match_on_a_subset_is_refused_saying_why(match):
    message = refusal(manifests(ISTIO, service=f"    match: {match}\n"))
    assert "spec.service.match" in message and "subset of requests" in message


# --------------------------------------------------------------------------- stepWeights


def test_step_weights_above_100_act_as_100_as_flagger_caps_them():
    result = import_manifests(manifests(ISTIO, analysis="    stepWeights: [10, 60, 150]\n"))
    policy = result.policy
    assert policy.analysis.step_weights == (10, 60, 150)  # kept as written, for the way back
    assert policy.weight_schedule() == [10, 60, 100]  # nextStepWeight: min(100 - 60, 90)
    assert policy.analysis.effective_max_weight == 100
    assert any("above 100 act as 100" in n for n in result.notes)
    out = export(policy, "flagger", Target(service="podinfo"))
    assert out.manifests[-1]["spec"]["analysis"]["stepWeights"] == [10, 60, 150]


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ('    stepWeights: "1,2,3"\n', "spec.analysis.stepWeights"),
        ("    stepWeights: [10, 2.5]\n", "spec.analysis.stepWeights[1]"),
        ("    stepWeight: 2.5\n", "spec.analysis.stepWeight"),
        ("    stepWeight: ten\n", "spec.analysis.stepWeight"),
        ("    stepWeight: 10\n    maxWeight: true\n", "spec.analysis.maxWeight"),
        ("    stepWeights: [30, 20]\n", "stepWeights"),
    ],
)
def test_bad_weight_shapes_are_one_line_errors_naming_the_field(analysis, field):
    assert field in refusal(manifests(ISTIO, analysis=analysis))


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        ("{name: rate, thresholdRange: {min: high}}", "metrics[0].thresholdRange.min"),
        ("{name: rate, thresholdRange: [99]}", "metrics[0].thresholdRange"),
        ("{name: rate, threshold: lots}", "metrics[0].threshold"),
        ("{thresholdRange: {min: 1}}", "metrics[0]"),
        ("just-a-name", "metrics[0]"),
    ],
)
def test_bad_metric_shapes_are_one_line_errors_naming_the_field(metric, field):
    text = manifests(ISTIO).replace(
        "    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}\n",
        f"    - {metric}\n",
    )
    assert field in refusal(text)


def test_other_bad_shapes():
    assert "spec.analysis.metrics" in refusal(
        manifests(ISTIO).replace("    metrics:\n    - ", "    metrics:\n      ")
    )
    assert "webhooks" in refusal(with_analysis("    webhooks: {name: x}\n"))
    assert "progressDeadlineSeconds" in refusal(
        manifests(ISTIO).replace("  service:", "  progressDeadlineSeconds: soon\n  service:")
    )


# --------------------------------------------------------------------------- confirm-* gates


def test_confirm_webhooks_become_approval_gates_and_go_back_as_webhooks():
    result = import_manifests(manifests(ISTIO).replace("    metrics:", GATES + "    metrics:"))
    gates = result.policy.analysis.gates
    assert [(g.type, g.name) for g in gates] == [
        ("confirm-rollout", "approve-rollout"),
        ("confirm-promotion", "halt"),
    ]
    ignored = "\n".join(result.ignored)
    for hook in ("rollout hook load-test", "event hook tell-slack", "rollback hook abort"):
        assert hook in ignored  # listed by `import -v`
    assert sum("an approval gate" in n for n in result.notes) == 2
    out = export(result.policy, "flagger", Target(service="podinfo", namespace="test"))
    assert crds.validate_all(m for m in out.manifests if m["kind"] == "Canary") == []
    assert out.manifests[-1]["spec"]["analysis"]["webhooks"] == [
        {
            "name": "approve-rollout",
            "type": "confirm-rollout",
            "url": "http://flagger-loadtester.test/gate/approve",
        },
        {
            "name": "halt",
            "type": "confirm-promotion",
            "url": "http://flagger-loadtester.test/gate/halt",
        },
    ]
    assert import_manifests(out.to_yaml()).policy == result.policy


def test_a_gate_without_a_url_gets_the_load_testers_manual_gate():
    from policies import parse_policy

    policy = parse_policy(
        {
            "kind": "Progressive",
            "name": "web",
            "analysis": {"stepWeight": 10, "gates": ["confirm-traffic-increase"]},
        }
    )
    out = export(policy, "flagger", Target(service="web", namespace="shop"))
    assert out.manifests[-1]["spec"]["analysis"]["webhooks"] == [
        {
            "name": "confirm-traffic-increase",
            "type": "confirm-traffic-increase",
            "url": "http://flagger-loadtester.shop/gate/check",
        }
    ]


# --------------------------------------------------------------------------- not modelled


LOAD = """    webhooks:
    - name: load-test
      url: http://flagger-loadtester.test/
      metadata: {cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
"""


def test_blue_green_mirror_session_affinity_and_load_test_import():
    bg = import_manifests(with_analysis(LOAD, "    iterations: 10\n    mirror: true\n")).policy
    assert bg.kind == "Progressive" and bg.blue_green and bg.analysis.mirror
    load = bg.analysis.load_test
    assert (load.rate, load.concurrency, load.duration, load.type) == (20.0, 2, 60.0, "rollout")
    kube = import_manifests(manifests("kubernetes")).policy
    assert kube.blue_green and kube.effective_iterations == 10  # weights ignored, as by Flagger
    sticky = import_manifests(
        with_analysis("    sessionAffinity: {cookieName: flagger-cookie, maxAge: 3600}\n")
    ).policy
    assert sticky.analysis.session_affinity.max_age == 3600.0


def test_a_load_test_through_the_ingress_is_listed_not_modelled():
    text = LOAD.replace("http://podinfo-canary.test:9898/", "-host app.example.com http://gw")
    result = import_manifests(with_analysis(text))
    assert result.policy.analysis.load_test is None
    assert any("not the canary's own Service podinfo-canary" in i for i in result.ignored)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (with_analysis("    mirror: true\n").replace("istio", "nginx"), "mirror", "not mirror"),
        (
            with_analysis("    sessionAffinity: {cookieName: a, primaryCookieName: b}\n"),
            "spec.analysis.sessionAffinity.primaryCookieName",
            "not modelled",
        ),
        (with_analysis(LOAD.replace("-q 10 ", "")), "metadata.cmd", "without -q"),
        (
            with_analysis(LOAD + LOAD.replace("    webhooks:\n", "")),
            "spec.analysis.webhooks[1]",
            "second load test",
        ),
    ],
)
def test_what_is_not_modelled_is_refused_naming_the_field_and_why(text, field, words):
    message = refusal(text)
    assert field in message and words in message and "\n" not in message


# --------------------------------------------------------------------------- simulated


def test_a_confirm_promotion_gate_holds_a_simulated_release_for_the_approval():
    """A good release, ticks at 0, 60, ...: weights 25, 50, then promotion waits for a person
    who approves 10.5 min after the gate is reached; Flagger sees it on the next tick."""
    bench = Bench(
        world(
            horizon=7200,
            platform={"replicas": 4, "flaggerTickPhase": "0s"},
            operators={"alerts": [], "approvalDelay": "630s"},
        )
    )
    base = (
        "kind: Progressive\nname: p\nprovider: istio\nanalysis:\n  interval: 60s\n"
        "  stepWeight: 25\n  maxWeight: 50\n"
        "  metrics: [{name: request-success-rate, thresholdRange: {min: 90}}]\n"
    )
    plain = bench.outcomes(base, "good", n=3)
    gated = bench.outcomes(base + "  gates: [confirm-promotion]\n", "good", n=3)
    for a, b in zip(plain, gated, strict=True):
        assert a.outcome == b.outcome == "promoted"
        assert not math.isnan(a.rollout_duration)
        assert b.rollout_duration - a.rollout_duration == 660.0  # 630 s, to the next tick


def test_a_match_with_step_weights_is_refused_as_the_weighted_segment_it_is():
    """Flagger runs match + stepWeight (no iterations) as a canary whose weight applies to the
    matched requests only; that is neither an A/B test nor a canary of all traffic."""
    text = with_analysis("    match:\n      - headers: {x-canary: {exact: insider}}\n")
    message = refusal(text)
    assert "spec.analysis.match" in message and "matched requests only" in message


@pytest.mark.parametrize(
    "cmd",
    [
        "hey -z=1m -q=10 -c=2 http://podinfo-canary.test:9898/",
        "hey --z 1m --q 10 --c 2 -o csv http://podinfo-canary.test:9898/",
    ],
)
def test_hey_in_gos_flag_spellings_is_read(cmd):
    hook = (
        "    webhooks:\n      - name: load-test\n        url: http://flagger-loadtester.test/\n"
        f'        metadata: {{cmd: "{cmd}"}}\n'
    )
    policy = import_manifests(with_analysis(hook)).policy
    assert policy.analysis.load_test.rate == 20
