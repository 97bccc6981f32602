"""Argo ``experiment`` steps (reference/argo-rollouts.md §1-§3; experiments/experiment.go,
rollout/experiment.go, rollout/trafficrouting.go of argoproj/argo-rollouts).

The step creates the Experiment: a ReplicaSet per template (``replicas``, default 1, of the
canary or stable spec) that must be available within progressDeadlineSeconds (else the
Experiment fails); once all are (``AvailableAt``) its analyses start, a routed template's
``weight`` goes to its Service, and ``duration`` runs. It ends Successful after the duration
(or when its required analyses succeed), Failed/Error/Inconclusive as its worst analysis:
the rollout advances, aborts, or pauses. Its pods go ``scaleDownDelaySeconds`` (30) after it
ends. Without duration and required analyses it runs until someone promotes."""

from __future__ import annotations

import pytest
import yaml
from harness import Driver, failing

from policies import parse_policy, policy_from_yaml
from policies.analysis import Phase
from policies.canary import Experiment
from policies.controller import (
    GROUP_VERSION,
    AwaitingApproval,
    DeadlineExceeded,
    GateVerdict,
    Scale,
    SetSelectors,
    SetWeight,
    StartAnalysis,
)
from policies.errors import PolicyError
from policies.explain import explain
from policies.exporters import Target, crds, export
from policies.importers import import_manifests
from policies.loading import policy_to_yaml
from policies.measures import Observation, WindowStats

TEMPLATES = """
analysisTemplates:
  - name: err
    metrics:
      - name: err
        interval: 60s
        count: 3
        successCondition: result < 0.05
        failureCondition: result > 0.10
        provider: {query: {measure: errorRate}}
"""
SMI = "trafficRouting: {smi: {}}"
WEIGHTED = (
    "  - setWeight: 10\n"
    "  - experiment:\n"
    "      duration: 10m\n"
    "      templates:\n"
    "        - {name: baseline, specRef: stable, weight: 5}\n"
    "        - {name: canary, specRef: canary, weight: 5, replicas: 2}\n"
    "  - setWeight: 50\n"
)


def canary(steps: str, *extra: str):
    head = "\n".join(("kind: Canary", "name: c", *extra, "steps:"))
    return policy_from_yaml(head + "\n" + steps + TEMPLATES)


class ExperimentDriver(Driver):
    """The harness with the experiment's pod groups, and shares by the groups' versions."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for group in GROUP_VERSION:
            self.available.setdefault(group, 0)
            self.desired.setdefault(group, 0)

    def canary_share(self) -> float:
        def share(groups) -> float:
            total = sum(self.available[g] for g in groups)
            new = sum(self.available[g] for g in groups if GROUP_VERSION[g] == "canary")
            return new / total if total else 0.0

        w = self.weight / 100.0
        return w * share(self.selectors[1]) + (1 - w) * share(self.selectors[0])


def scales(d: Driver, prefix: str = "experiment") -> list[tuple[float, str, int]]:
    return [(t, a.group, a.replicas) for t, a in d.actions(Scale) if a.group.startswith(prefix)]


def inconclusive(t: float, measure) -> Observation:
    return Observation(t - measure.window, t, WindowStats(1000, 70), WindowStats(1000, 0))


# --------------------------------------------------------------------------- the policy


def test_templates_default_to_one_replica_and_no_weight():
    policy = canary("  - experiment: {templates: [{name: c, specRef: canary}]}\n")
    template = policy.steps[0].experiment.templates[0]
    assert (template.replicas, template.weight, template.shares_service) == (1, None, True)
    assert policy.steps[0].experiment.indefinite


@pytest.mark.parametrize(
    ("routing", "words"),
    [
        ("", "weight requires trafficRouting with smi, alb, istio, plugins"),
        ("trafficRouting: {nginx: {}}", "weight requires trafficRouting"),
        ("trafficRouting: {traefik: {}}", "weight requires trafficRouting"),
    ],
)
def test_template_weights_need_a_router_argo_accepts(routing, words):
    with pytest.raises(PolicyError, match=words):
        canary(WEIGHTED.replace("  - setWeight: 10\n", "", 1), *([routing] if routing else []))


@pytest.mark.parametrize("router", ["smi", "alb", "istio", "plugins: {argoproj-labs/gatewayAPI"])
def test_template_weights_with_smi_alb_istio_or_a_plugin(router):
    routing = f"trafficRouting: {{{router}: {{}}}}" + ("}" if "plugins" in router else "")
    assert canary(WEIGHTED, routing).steps[1].experiment.weight_of("canary") == 5


def test_weights_leaving_the_stable_a_negative_share_are_refused():
    steps = WEIGHTED.replace("setWeight: 10", "setWeight: 95")
    with pytest.raises(PolicyError, match="add up to 105"):
        canary(steps, SMI)


def test_an_analysis_names_a_defined_template():
    steps = "  - experiment: {templates: [{name: c, specRef: canary}],"
    steps += " analyses: [{name: a, templateName: nope}]}\n"
    with pytest.raises(PolicyError, match="templateName 'nope' is not in analysisTemplates"):
        canary(steps)


S, R, F, E, INC = Phase.SUCCESSFUL, Phase.RUNNING, Phase.FAILED, Phase.ERROR, Phase.INCONCLUSIVE


@pytest.mark.parametrize(
    ("phases", "required", "passed", "want"),
    [
        ({}, (), False, None),  # no duration, nothing required: runs on
        ({}, (), True, S),
        ({"a": R}, (), True, S),  # the duration ends it; the run is terminated
        ({"a": R}, ("a",), True, None),  # a required run keeps it going past its duration
        ({"a": S}, ("a",), False, S),
        ({"a": S, "b": R}, ("a",), False, None),  # assessAnalysisRuns: worst is Running
        ({"a": S, "b": S}, (), False, None),  # no required run: only the duration ends it
        ({"a": F, "b": R}, (), False, F),
        ({"a": INC, "b": E}, (), False, E),  # the worst of them
        ({"a": INC}, ("a",), True, INC),
    ],
)
def test_experiment_phase_is_argos(phases, required, passed, want):
    analyses = [{"name": n, "templateName": "err"} for n in phases]
    for a in analyses:
        a["requiredForCompletion"] = a["name"] in required
    data = {"templates": [{"name": "c", "specRef": "canary"}], "analyses": analyses}
    assert Experiment.model_validate(data).phase(phases, passed) == want


# --------------------------------------------------------------------------- the controller


def test_routed_experiment_adds_its_canary_template_weight_once_its_pods_are_available():
    d = ExperimentDriver(canary(WEIGHTED, SMI), 10, startup=30).start().run(2000)
    assert d.actions(SetSelectors)[0][1] == SetSelectors(
        frozenset({"stable", "experiment-stable"}), frozenset({"canary", "experiment-canary"})
    )
    # canary at 10 % at 30 s; experiment pods from then, available at 60 s: 10 + 5 (canary
    # spec); the stable-spec template's 5 % stays old-version traffic; the duration runs 10m
    assert [(t, w) for t, w in ((t, a.weight) for t, a in d.actions(SetWeight))][:3] == [
        (30.0, 10.0),
        (60.0, 15.0),
        (660.0, 10.0),
    ]
    assert scales(d) == [
        (30.0, "experiment-canary", 2),
        (30.0, "experiment-stable", 1),
        (690.0, "experiment-canary", 0),  # scaleDownDelaySeconds 30 after it ended
        (690.0, "experiment-stable", 0),
    ]
    # setWeight 50 at 660: 5 canary pods, available at 690; then all 10, available at 720
    assert d.status_at("RolloutCompleted") == 720.0


def test_a_failed_analysis_aborts_and_the_weight_returns_at_once():
    steps = WEIGHTED.replace(
        "      templates:", "      analyses: [{name: a, templateName: err}]\n      templates:"
    )
    d = ExperimentDriver(canary(steps, SMI), 10, startup=30, observe=failing).start().run(2000)
    assert d.actions(StartAnalysis)[0] == (60.0, StartAnalysis("experiment-1-a", ("err",)))
    aborted = next(c for t, s, c in d.causes if s == "Aborted")
    assert aborted == GateVerdict("experiment-1-a", ("err",), 1, "Failed")
    assert d.status_at("ExperimentFailed") == 60.0
    assert [w for t, w in ((t, a.weight) for t, a in d.actions(SetWeight)) if t == 60.0] == [
        15.0,
        10.0,
        0.0,
    ]
    assert (90.0, "experiment-canary", 0) in scales(d)


def test_an_inconclusive_experiment_pauses_and_a_promote_moves_on():
    steps = WEIGHTED.replace(
        "      templates:", "      analyses: [{name: a, templateName: err}]\n      templates:"
    )
    d = ExperimentDriver(canary(steps, SMI), 10, startup=30, observe=inconclusive).start()
    d.approve_at(500)
    d.run(2000)
    paused = next((t, c) for t, s, c in d.causes if s == "Paused")
    assert paused[0] == 60.0 and isinstance(paused[1], AwaitingApproval)
    assert paused[1].verdict.phase == "Inconclusive"
    assert d.status_at("StepSkipped") == 500
    assert d.status() == "Promoted"


def test_required_analyses_end_an_experiment_without_duration():
    steps = (
        "  - experiment:\n"
        "      templates: [{name: c, specRef: canary}]\n"
        "      analyses: [{name: a, templateName: err, requiredForCompletion: true}]\n"
    )
    d = ExperimentDriver(canary(steps, SMI), 4, startup=10).start().run(2000)
    # available at 10 s; the run measures at 10, 70, 130 (count 3): Successful at 130 s
    assert [t for t, a in d.actions(StartAnalysis)] == [10.0]
    assert d.status_at("RolloutCompleted") == 140.0  # then the canary's 4 pods, 10 s
    assert (160.0, "experiment-canary-idle", 0) in scales(d)


def test_an_indefinite_experiment_waits_for_a_promote():
    steps = "  - experiment: {templates: [{name: c, specRef: canary}]}\n"
    d = ExperimentDriver(canary(steps, SMI), 4, startup=10).start()
    d.approve_at(400)
    d.run(2000)
    assert (0.0, "Progressing", AwaitingApproval(0)) in d.causes
    assert d.status_at("StepSkipped") == 400
    assert (430, "experiment-canary-idle", 0) in scales(d)  # unrouted: no weight, idle


def test_pods_that_never_become_available_fail_the_experiment_at_the_deadline():
    steps = "  - experiment: {templates: [{name: c, specRef: canary}]}\n"
    policy = canary(steps, SMI, "progressDeadlineSeconds: 300")
    d = ExperimentDriver(policy, 4, startup=10, never_ready=frozenset({"experiment-canary-idle"}))
    d.start().run(2000)
    aborted = next((t, c) for t, s, c in d.causes if s == "Aborted")
    assert aborted == (300.0, DeadlineExceeded(300.0, 0))


def test_in_a_basic_canary_its_pods_join_the_service_unless_their_labels_leave_it():
    steps = (
        "  - setWeight: 25\n"
        "  - experiment:\n"
        "      templates:\n"
        "        - {name: base, specRef: stable}\n"
        "        - {name: can, specRef: canary}\n"
        "        - {name: preview, specRef: canary, sharesService: false}\n"
    )
    d = ExperimentDriver(canary(steps), 4, startup=10).start().run(100)
    assert d.actions(SetSelectors)[0][1].stable == frozenset(
        {"stable", "canary", "experiment-canary", "experiment-stable"}
    )
    assert {g for _, g, _ in scales(d)} == {
        "experiment-stable",
        "experiment-canary",
        "experiment-canary-idle",
    }
    # 1 canary + 3 stable, then 1 new-version and 1 old-version experiment pod join: 2 of 6
    assert d.canary_share() == pytest.approx(2 / 6)


# --------------------------------------------------------------------------- in and out

ROLLOUT = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: shop}}
  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop-stable
      trafficRouting:
        plugins:
          argoproj-labs/gatewayAPI: {httpRoute: shop, namespace: demo}
      steps:
        - experiment:
            duration: 5m
            templates:
              - name: baseline
                specRef: stable
                weight: 10
                service: {name: shop-baseline}
              - name: preview
                specRef: canary
                replicas: 2
                metadata: {labels: {app: shop-preview}}
                selector: {matchLabels: {app: shop-preview}}
            analyses:
              - name: errors
                templateName: err
                requiredForCompletion: true
        - setWeight: 30
        - pause: {duration: 5m}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: err}
spec:
  metrics:
    - name: err
      interval: 1m
      count: 3
      successCondition: result[0] < 0.05
      provider:
        prometheus:
          address: http://prometheus:9090
          query: |
            sum(rate(istio_requests_total{destination_service_name="shop-canary",response_code=~"5.*"}[1m]))
            /
            sum(rate(istio_requests_total{destination_service_name="shop-canary"}[1m]))
"""


def test_import_export_and_round_trip(tmp_path):
    result = import_manifests(ROLLOUT)
    experiment = result.policy.steps[0].experiment
    assert experiment.duration == 300.0
    assert [(t.name, t.replicas, t.weight, t.shares_service) for t in experiment.templates] == [
        ("baseline", 1, 10, True),
        ("preview", 2, None, False),  # its label leaves the Rollout's selector
    ]
    assert experiment.analyses[0].template_name == "err"
    assert experiment.analyses[0].required_for_completion
    assert any("change app of the Rollout's selector" in n for n in result.notes)
    out = export(result.policy, "argo", Target(service="shop"))
    crds.check(out.manifests)
    again = import_manifests(yaml.safe_dump_all(out.manifests)).policy
    assert again.steps == result.policy.steps
    assert parse_policy(yaml.safe_load(policy_to_yaml(result.policy))) == result.policy


def test_old_forms_are_refused_in_one_line_never_a_template_named_none():
    text = ROLLOUT.replace("templateName: err", "clusterTemplateName: err")
    with pytest.raises(PolicyError) as info:
        import_manifests(text)
    message = str(info.value)
    assert "\n" not in message and "None" not in message
    assert "templateName is required" in message and "clusterTemplateName" in message


def test_explain_shows_the_experiment_and_its_share():
    table = explain(canary(WEIGHTED, SMI), 10)
    assert table.rows[1].action.startswith("experiment (baseline: 1 stable at 5 %")
    assert "10m once its pods are available" in table.rows[1].gate
    assert table.rows[1].canary_share == pytest.approx(15.0)
    basic = explain(canary("  - experiment: {templates: [{name: c, specRef: canary}]}\n"), 3)
    assert basic.rows[0].canary_share == pytest.approx(25.0)  # 1 new-version pod beside 3 stable
    assert any("keep the Rollout's labels" in w for w in basic.warnings)


def test_runbooks_refuse_an_experiment_naming_it():
    from policies.errors import NotExpressibleError  # (the exporters' error, this test only)

    with pytest.raises(NotExpressibleError, match=r"steps\[1\].experiment"):
        export(canary(WEIGHTED, "trafficRouting: {istio: {}}"), "istio", Target(service="c"))


# --------------------------------------------------------------------------- the engine


def test_the_engine_runs_the_pods_and_routes_the_weight():
    from sim.engine.replication import simulate  # (the simulator: only this test needs it)
    from sim.world.model import World

    world = World.model_validate(
        {
            "horizon": "1h",
            "traffic": {"rate": 100},
            "users": {"count": 1000},
            "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.3}}],
            "platform": {"replicas": 4, "podStartup": "10s"},
        }
    )
    steps = "  - experiment: {duration: 10m, templates: [{name: c, specRef: canary, weight: 20}]}\n"
    steps += "  - pause: {}\n"  # held there: what the experiment sent is what was sent
    during = {}
    for name, step in (("weighted", steps), ("isolated", steps.replace(", weight: 20", ""))):
        out, trace = simulate(world, canary(step, SMI), "bad", seed=5, trace=True)
        window = (trace.time > 30) & (trace.time < 600)  # its pods available, before its end
        during[name] = trace.canary_share[window]
        assert out.extra_pod_seconds >= 600  # one extra pod for the experiment, at least
    # the canary-spec template's Service takes 20 % of the requests: new-version traffic
    assert during["weighted"].mean() == pytest.approx(0.20, abs=0.03)
    assert during["isolated"].max() == 0.0  # no weight, no Service: no request reaches it
