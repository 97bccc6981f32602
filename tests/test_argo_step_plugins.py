"""Argo step plugins (reference/argo-rollouts.md §1 and §3; rollout/stepplugin.go and
docs/features/canary/plugins.md of argoproj/argo-rollouts).

A ``plugin`` step runs the plugin's ``Run()`` while it is the current step; the step completes
when the plugin says Successful, and Failed aborts the rollout (``AddAbort``). Argo's
validation puts no limit on what may stand beside it (``hasMultipleStepsType`` counts only
setWeight, pause, experiment and analysis), and its ``isIndefiniteStep`` does not name it, so
the progress deadline runs during a plugin step. How long a plugin takes and how often it
fails are the team's world (``world.stepPlugins``): the engines draw both from a stream of
their own, so the numbers of every policy without a plugin step are unchanged."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field

import numpy as np
import pytest
from harness import Driver
from scipy import stats

import sim
from live.realise import check_supported
from policies import policy_from_yaml
from policies.controller.protocol import (
    Action,
    DeadlineExceeded,
    Event,
    GateVerdict,
    PluginFinished,
    RunPlugin,
    Scale,
    SetWeight,
)
from policies.errors import NotExpressibleError, PolicyError
from policies.explain import explain
from policies.exporters import Target, crds, export
from policies.importers import import_manifests
from policies.onto import export_onto
from sim.engine.reference import simulate_reference
from sim.engine.seeds import replication_seed, shared_parts, streams
from sim.world.model import World
from sim.world.plugins import check_step_plugins

K6 = "grafana/k6"


def canary(steps: str, *extra: str):
    head = "\n".join(("kind: Canary", "name: c", *extra, "steps:"))
    return policy_from_yaml(head + "\n" + steps)


BASIC = canary(
    f"  - setWeight: 25\n  - plugin: {{name: {K6}, config: {{testId: 7}}}}\n"
    "  - setWeight: 50\n  - pause: {duration: 60s}\n"
)


@dataclass
class PluginDriver(Driver):
    """The harness, with the world's answer to each ``RunPlugin``: ``answers[step]`` is
    (seconds, phase)."""

    answers: dict[int, tuple[float, str]] = field(default_factory=dict)
    answered: int = 0

    def _apply(self, actions) -> None:
        super()._apply(actions)
        runs = self.actions(RunPlugin)
        for t, run in runs[self.answered :]:
            if run.step in self.answers:
                seconds, phase = self.answers[run.step]
                self.at(t + seconds, PluginFinished(run.step, phase))  # type: ignore[arg-type]
        self.answered = len(runs)


def _entered(d: Driver, step: int) -> float:
    return next(t for t, a in d.actions(RunPlugin) if a.step == step)


# --------------------------------------------------------------------------- the policy


def test_a_plugin_step_is_an_action_of_its_own_or_beside_another():
    step = BASIC.steps[1]
    assert step.action == "plugin" and step.plugin is not None
    assert step.plugin.name == K6 and step.plugin.config == {"testId": 7}
    both = canary(f"  - {{setWeight: 20, plugin: {{name: {K6}}}}}\n").steps[0]
    assert both.actions == ("set_weight", "plugin")  # the setWeight decides (Argo's switch)
    with pytest.raises(PolicyError, match="name"):
        canary("  - plugin: {config: {a: 1}}\n")
    with pytest.raises(PolicyError):
        canary("  - plugin: {name: ''}\n")


def test_the_protocol_has_the_action_and_the_event():
    assert RunPlugin in typing.get_args(Action)
    assert PluginFinished in typing.get_args(Event)


# --------------------------------------------------------------------------- the controller


def test_the_plugin_runs_when_its_step_is_reached_and_successful_completes_it():
    d = PluginDriver(BASIC, replicas=4, startup=10.0, answers={1: (300.0, "Successful")})
    d.start().run()
    (t1, run), *more = d.actions(RunPlugin)
    assert not more and run == RunPlugin(1, K6)
    assert t1 == 10.0  # the setWeight 25 step completed when its pod was available
    canary_up = [t for t, a in d.actions(Scale) if a.group == "canary" and a.replicas == 2]
    assert canary_up[0] == t1 + 300.0  # step 2 (setWeight 50) only once the plugin ended
    assert d.status() == "Promoted"


def test_a_failed_plugin_aborts_the_rollout_with_a_typed_verdict():
    d = PluginDriver(BASIC, replicas=4, startup=10.0, answers={1: (300.0, "Failed")})
    d.start().run()
    t, _, cause = next(c for c in d.causes if c[1] == "Aborted")
    assert t == _entered(d, 1) + 300.0
    assert cause == GateVerdict("plugin-1", (K6,), 1, "Failed")
    assert ("Aborted", "StepPluginFailed") in [(s, r) for _, s, r in d.statuses]
    assert d.desired["canary"] == 0 and d.status() == "Aborted"


def test_a_routed_canary_keeps_its_weight_while_the_plugin_runs():
    policy = canary(
        f"  - setWeight: 20\n  - plugin: {{name: {K6}}}\n", "trafficRouting: {nginx: {}}"
    )
    d = PluginDriver(policy, replicas=5, startup=10.0, answers={1: (120.0, "Successful")})
    d.start().run()
    weights = [(t, a.weight) for t, a in d.actions(SetWeight)]
    assert weights[0] == (10.0, 20.0)
    ended = _entered(d, 1) + 120.0  # then promotion, not before: all pods, then the weight
    assert [t for t, a in d.actions(Scale) if a.group == "canary" and a.replicas == 5] == [ended]
    assert weights[1] == (ended + 10.0, 100.0)


def test_an_answer_for_another_step_or_after_the_end_changes_nothing():
    d = PluginDriver(BASIC, replicas=4, startup=10.0, answers={1: (300.0, "Successful")})
    d.start()
    d.at(100.0, PluginFinished(3, "Failed"))  # not the step the rollout is at
    d.at(5000.0, PluginFinished(1, "Failed"))  # long after the promotion
    d.run()
    assert d.status() == "Promoted"
    assert not [c for c in d.causes if c[1] == "Aborted"]


def test_beside_a_setweight_the_weight_decides_but_a_failure_still_aborts():
    steps = f"  - {{setWeight: 25, plugin: {{name: {K6}}}}}\n  - setWeight: 50\n"
    late = PluginDriver(canary(steps), replicas=4, startup=10.0, answers={0: (900.0, "Failed")})
    late.start().run()
    assert late.status() == "Promoted"  # done at 10 s on its setWeight; the late end is ignored
    early = PluginDriver(canary(steps), replicas=4, startup=10.0, answers={0: (5.0, "Failed")})
    early.start().run()
    assert early.status() == "Aborted"
    assert next(t for t, s, _ in early.causes if s == "Aborted") == 5.0


def test_the_progress_deadline_runs_during_a_plugin_step():
    """Argo's ``isIndefiniteStep`` names pause, analysis and experiment steps only."""
    policy = canary(
        f"  - setWeight: 25\n  - plugin: {{name: {K6}}}\n",
        "progressDeadlineSeconds: 120",
        "progressDeadlineAbort: true",
    )
    d = PluginDriver(policy, replicas=4, startup=10.0, answers={1: (300.0, "Successful")})
    d.start().run()
    t, _, cause = next(c for c in d.causes if c[1] == "Aborted")
    assert isinstance(cause, DeadlineExceeded) and t == _entered(d, 1) + 120.0
    assert any("progressDeadlineSeconds" in w for w in explain(policy, 4).warnings)


# --------------------------------------------------------------------------- the world


def _world(**plugins) -> dict:
    return {
        "horizon": "30m",
        "traffic": {"rate": 2},
        "users": {"count": 50},
        "operators": {"alerts": []},
        "platform": {"replicas": 2, "podStartup": "5s"},
        "releases": [
            {"name": "good", "probability": 0.5},
            {"name": "bad", "probability": 0.5, "fault": {"errorRate": 0.05}},
        ],
        "stepPlugins": plugins,
    }


PLUGIN = {
    "duration": {"uniform": ["60s", "300s"]},
    "failure": {"badRelease": 1, "goodRelease": "30%"},
}
ONLY = canary(f"  - plugin: {{name: {K6}}}\n")  # step 0: the plugin's end is the rollback's start


def test_the_world_says_each_plugin_and_a_missing_one_is_refused_in_one_line():
    world = World.model_validate(_world(**{K6: PLUGIN}))
    assert world.step_plugins[K6].failure.good_release == 0.3
    assert World.model_validate(world.to_dict()) == world
    with pytest.raises(PolicyError) as raised:
        check_step_plugins({}, BASIC, where="policies[0]")
    message = str(raised.value)
    assert "\n" not in message and "world.stepPlugins" in message and K6 in message
    assert "policies[0].steps[1].plugin" in message
    with pytest.raises(PolicyError, match=r"world\.stepPlugins"):  # before any work is done
        sim.run(_world(), {"c": BASIC}, replications=1, seed=1, backend="inprocess")


def _fast(n: int, seed: int):
    return sim.run(
        _world(**{K6: PLUGIN}), {"c": ONLY}, replications=n, seed=seed, backend="inprocess"
    ).frame


def _reference(n: int, seed: int):
    world = World.model_validate(_world(**{K6: PLUGIN}))
    cw, _ = shared_parts(world, seed)
    rows = []
    for c, release in enumerate(world.releases):
        for i in range(n):
            out = simulate_reference(cw, ONLY, release, replication_seed(seed, c, i), index=i)
            rows.append((release.name, out.outcome, out.t_rollback_start))
    return rows


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_both_engines_draw_the_duration_and_the_failure_of_the_world(engine):
    n = 200
    if engine == "fast":
        frame = _fast(n, seed=11)
        rows = list(zip(frame["release_class"], frame["outcome"], frame["t_rollback_start"]))
    else:
        rows = _reference(n, seed=12)
    bad = np.array([t for c, _, t in rows if c == "bad"])
    # every bad release fails its plugin, at the drawn duration: U(60 s, 300 s)
    assert len(bad) == n and not np.isnan(bad).any()
    assert bad.min() >= 60.0 and bad.max() <= 300.0
    assert stats.kstest(bad, stats.uniform(60.0, 240.0).cdf).pvalue > 1e-3
    se = 240.0 / math.sqrt(12 * n)
    assert abs(bad.mean() - 180.0) < 4 * se
    # a good release fails it 30 % of the time (binomial standard error)
    failed = np.array([o == "rolled_back" for c, o, _ in rows if c == "good"])
    assert {o for c, o, _ in rows if c == "good"} <= {"rolled_back", "promoted"}
    assert abs(failed.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)


def test_a_policy_without_plugin_steps_keeps_its_numbers():
    """The plugin stream is appended (never reordered), and describing a plugin in the world
    draws nothing for a policy that does not call it."""
    ss = np.random.SeedSequence(5, spawn_key=(0, 3))
    assert [s.spawn_key for s in streams(ss, 10)[:9]] == [s.spawn_key for s in streams(ss, 9)]
    plain = canary("  - setWeight: 25\n  - pause: {duration: 60s}\n")
    runs = [
        sim.run(w, {"c": plain}, replications=6, seed=3, backend="inprocess").frame
        for w in (_world(), _world(**{K6: PLUGIN}))
    ]
    assert runs[0].equals(runs[1])


# --------------------------------------------------------------------------- in and out

MANIFEST = f"""\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: shop
spec:
  replicas: 4
  selector:
    matchLabels: {{app: shop}}
  template:
    metadata:
      labels: {{app: shop}}
    spec:
      containers:
        - name: shop
          image: shop:2
  strategy:
    canary:
      steps:
        - setWeight: 20
        # a load test of the canary, as the plugin's documentation shows
        - plugin:
            name: {K6}
            config:
              script: "load.js"
              thresholds: {{http_req_failed: ["rate<0.01"]}}
        - setWeight: 50
        - pause: {{duration: 30s}}
"""


def test_import_keeps_the_name_and_the_config_and_explain_shows_the_step(tmp_path):
    path = tmp_path / "rollout.yaml"
    path.write_text(MANIFEST)
    result = import_manifests(path)
    plugin = result.policy.steps[1].plugin
    assert plugin.name == K6
    assert plugin.config == {"script": "load.js", "thresholds": {"http_req_failed": ["rate<0.01"]}}
    assert any("world.stepPlugins" in note for note in result.notes)
    row = explain(result.policy, 4).rows[1]
    assert row.action == f"plugin {K6}" and "from the world" in row.gate


def test_export_writes_it_back_and_onto_gives_the_file_back(tmp_path):
    path = tmp_path / "rollout.yaml"
    path.write_text(MANIFEST)
    policy = import_manifests(path).policy
    exported = export(policy, "argo", Target(service="shop"))
    crds.check(exported.manifests)
    rollout = next(d for d in exported.manifests if d["kind"] == "Rollout")
    step = rollout["spec"]["strategy"]["canary"]["steps"][1]
    assert step == {"plugin": policy.steps[1].plugin.to_dict()}
    assert import_manifests(exported.to_yaml()).policy.steps == policy.steps
    onto = export_onto(policy, [path])
    assert list(onto.files.values()) == [MANIFEST]
    changed = policy.model_copy(
        update={"steps": (*policy.steps[:3], canary("  - pause: {duration: 45s}\n").steps[0])}
    )
    text = next(iter(export_onto(changed, [path]).files.values()))
    assert "45s" in text and 'script: "load.js"' in text and "# a load test" in text


def test_a_runbook_and_the_bench_refuse_a_plugin_step_naming_it():
    with pytest.raises(NotExpressibleError, match=r"steps\[1\]\.plugin"):
        export(BASIC, "kubernetes", Target(service="c"))
    with pytest.raises(NotExpressibleError, match=r"steps\[1\]\.plugin"):
        check_supported(BASIC)


def test_the_reference_engine_refuses_a_world_without_the_plugin():
    world = World.model_validate(_world())
    cw, _ = shared_parts(world, 1)
    with pytest.raises(PolicyError, match="stepPlugins"):
        simulate_reference(cw, ONLY, world.releases["good"], replication_seed(1, 0, 0))
