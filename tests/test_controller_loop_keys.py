"""Each controller's reconcile-loop key begins with the base's fields.

The subclasses extend ``ControllerBase.LOOP_FIELDS`` with their own: one that named its fields
anew and left out one of the base's would let ``handle`` stop its loop before a change that
field marks.
"""

from __future__ import annotations

import operator

import pytest
from harness import Driver, failing

from policies import policy_from_yaml
from policies.controller.base import ControllerBase

ERR = """analysisTemplates:
  - name: err
    metrics:
      - {name: err, interval: 60s, count: 2, successCondition: result < 0.05,
         provider: {query: {measure: errorRate}}}
"""
POLICIES = {
    "canary": "kind: Canary\nname: c\nsteps: [{setWeight: 20}, {pause: {duration: 60}}]\n",
    "blue-green": "kind: BlueGreen\nname: b\n"
    "prePromotionAnalysis: {templates: [{templateName: err}]}\n" + ERR,
    "batch": "kind: BatchRelease\nname: b\nbatches:\n  - {replicas: 50%, analysis: "
    "{templates: [{templateName: err}]}}\n  - {replicas: 100%}\n" + ERR,
    "flagger": "kind: Progressive\nname: f\nanalysis:\n  interval: 60s\n  stepWeight: 20\n"
    "  maxWeight: 50\n  metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99},"
    " interval: 1m}\n",
}


@pytest.mark.parametrize("kind", sorted(POLICIES))
@pytest.mark.parametrize("observe", ["healthy", "failing"])
def test_the_loop_key_starts_with_the_bases(kind, observe):
    extra = {} if observe == "healthy" else {"observe": failing}
    d = Driver(policy_from_yaml(POLICIES[kind]), 4, **extra)
    handle, checked = d.ctl.handle, []

    def checking(event):
        out = handle(event)
        base = operator.attrgetter(*ControllerBase.LOOP_FIELDS)(d.ctl)
        assert d.ctl._loop_key()[: len(base)] == base, event
        checked.append(event)
        return out

    d.ctl.handle = checking
    d.start().run()
    assert len(checked) > 3
    assert type(d.ctl).LOOP_FIELDS != ControllerBase.LOOP_FIELDS
