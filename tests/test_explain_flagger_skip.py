"""``explain`` of a Flagger policy with ``skipAnalysis: true`` (executors.md §A.9): the tick
that finds the canary ready promotes without a check, whatever the strategy, and the primary's
own rolling update carries users to the new version. The walk explain prints must be the one
the controller runs, and it must say that no analysis runs.
"""

from __future__ import annotations

import pytest
from harness import Driver, failing

from policies import policy_from_yaml
from policies.controller import SetWeight
from policies.explain import explain

STRATEGIES = {
    "canary": ("Progressive", "  stepWeight: 10\n  maxWeight: 50\n"),
    "blue/green": ("Progressive", "  iterations: 3\n"),
    "A/B": ("ABTest", "  iterations: 3\n  match: [{headers: {x-canary: {exact: insider}}}]\n"),
}


def skipping(strategy: str):
    kind, walk = STRATEGIES[strategy]
    return policy_from_yaml(
        f"kind: {kind}\nname: f\nskipAnalysis: true\nanalysis:\n  interval: 60s\n"
        f"  threshold: 5\n{walk}  loadTest: {{rate: 20, concurrency: 2}}\n"
        "  metrics:\n    - name: request-success-rate\n"
        "      thresholdRange: {min: 99}\n      interval: 1m\n"
    )


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_explain_shows_the_promotion_the_controller_makes(strategy):
    policy = skipping(strategy)
    told = explain(policy, 4)
    d = Driver(policy, 4, startup=15, observe=failing).start().run(3000)
    assert d.measures == []  # the controller checks nothing, even with a failing canary
    assert d.status_at("Succeeded") == 60.0  # tick 1: the first tick after the canary is up
    assert all(a.weight == 0.0 for _, a in d.actions(SetWeight))  # the canary serves nobody

    steps = [r.step for r in told.rows]
    assert steps[:2] == ["tick 0", "tick 1"] and set(steps[2:]) == {"next"}
    tick1 = told.rows[1]
    assert tick1.action.startswith("promote without analysis") and tick1.canary_share == 0.0
    assert not any("request-success-rate" in r.gate for r in told.rows)
    assert {r.action for r in told.rows[2:]} == {"primary rolls"}
    last = told.rows[-1]
    assert (last.canary_pods, last.stable_pods, last.canary_share) == (4, 0, 100.0)
    assert d.ctl.available["primary"] == 4 and d.ctl.available["stable"] == 0  # rolled


def test_explain_says_plainly_that_no_analysis_runs():
    told = explain(skipping("canary"), 10)
    assert "skipAnalysis: no analysis runs" in told.title
    assert "rollback after" not in told.title
    (warning,) = [w for w in told.warnings if "skipAnalysis" in w]
    assert "no metric is checked (request-success-rate)" in warning
    assert "nothing rolls back on its own" in warning
    text = told.to_text()
    assert "weight 10" not in text and "load test" not in text  # none of it happens


def test_an_imported_skip_analysis_notes_no_load_test():
    """A load-test webhook runs from each analysis tick: with skipAnalysis there is none."""
    from policies.importers import import_manifests

    canary = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: istio
  skipAnalysis: true
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics: [{name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}]
    webhooks:
    - name: load-test
      url: http://flagger-loadtester.test/
      metadata: {cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
"""
    notes = import_manifests(canary).notes
    assert not any("from each analysis tick" in note for note in notes)
    assert "spec.skipAnalysis: no analysis runs (no metric, no load test)" in notes
