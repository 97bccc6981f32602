"""Where a Flagger catch is named: the tick of ``explain``'s walk the release was held at.

Flagger's failed checks halt the walk (executors.md §A.3: a failed tick does not advance the
weight or the iterations), so every failed check and the threshold's rollback name the last
step that took effect: the weight (or mirror, route, iteration) the checks measured. A count
of the ticks that ran (the failed and the waiting ones too) names no row of explain's listing.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import Driver, failing, healthy
from test_oracles import world
from test_report_verdict import gated

from policies import policy_from_yaml
from policies.controller import FailedChecks, SetWeight
from policies.explain import explain
from sim.engine.cells import UserCells
from sim.engine.replication import Replication
from sim.report.facts import Facts
from sim.report.verdict import policy_lines
from sim.world.model import World


def flagger(analysis: str, kind: str = "Progressive"):
    return policy_from_yaml(
        f"kind: {kind}\nname: f\nanalysis:\n  interval: 60s\n  threshold: 2\n{analysis}"
        "  metrics:\n    - name: request-success-rate\n"
        "      thresholdRange: {min: 99}\n      interval: 1m\n"
    )


def failing_from(start: float):
    return lambda t, m: failing(t, m) if t >= start else healthy(t, m)


# policy, the first failing tick (s), explain's tick it is held at, that row's action
CASES = {
    "canary, first check": ("  stepWeight: 20\n  maxWeight: 50\n", 0.0, 1, "weight 20"),
    "canary, later": ("  stepWeight: 20\n  maxWeight: 50\n", 180.0, 2, "weight 40"),
    "canary, at maxWeight": ("  stepWeight: 20\n  maxWeight: 50\n", 240.0, 3, "weight 60"),
    "mirrored canary": ("  stepWeight: 20\n  mirror: true\n", 180.0, 2, "weight 20"),
    "blue/green": ("  iterations: 3\n", 180.0, 2, "iteration 2"),
    "A/B": (
        "  iterations: 3\n  match: [{headers: {x-canary: {exact: insider}}}]\n",
        0.0,
        1,
        "route matching requests",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_failed_checks_name_the_tick_explain_lists(case):
    analysis, start, tick, action = CASES[case]
    policy = flagger(analysis, "ABTest" if "match" in analysis else "Progressive")
    d = Driver(policy, 4, startup=15, observe=failing_from(start)).start().run(3000)
    checks = [(t, c) for t, _, c in d.causes if isinstance(c, FailedChecks)]
    assert [c.count for _, c in checks] == [1, 2]  # the first failure, then the threshold's
    assert d.statuses[-1][2] == "FailedChecksThreshold"
    assert {c.step for _, c in checks} == {tick}  # held: a failed check does not advance it
    row = {r.step: r for r in explain(policy, 4).rows}[f"tick {tick}"]
    assert row.action.startswith(action)
    if policy.kind == "Progressive" and not policy.blue_green:
        first = checks[0][0]  # the weight the checks measured is the row's canary traffic
        assert [a.weight for t, a in d.actions(SetWeight) if t < first][-1] == row.canary_share


def test_the_outcome_names_the_weight_the_canary_was_held_at():
    """A 50 % error rate fails the first check at 10 %: the run records explain's tick 1."""
    policy = flagger("  stepWeight: 10\n  maxWeight: 50\n")
    spec = world({"errorRate": 0.5}, horizon=900, traffic={"rate": 50}, users={"count": 200})
    world_ = World.model_validate(spec)
    cw = world_.compile(0)
    ss = np.random.SeedSequence(4, spawn_key=(0,))
    o = Replication(cw, UserCells(cw.users), policy, world_.releases["bad"], ss).run()
    assert (o.outcome, o.detected_by, o.gate_run) == ("rolled_back", "gate", "flagger")
    assert o.gate_step == 1.0
    row = explain(policy, 4).rows[int(o.gate_step)]
    assert (row.step, row.action) == ("tick 1", "weight 10")


def test_the_report_names_flaggers_tick_in_explains_words():
    (line,) = policy_lines(Facts.build(gated("flagger", "request-success-rate", [1.0] * 40)))
    words = "Flagger's analysis 'request-success-rate' in 40 of 40 bad releases (held at tick 1)"
    assert words in line
    assert "at step" not in line
    (line,) = policy_lines(Facts.build(gated("background", "success-rate", [2.0] * 40)))
    assert "(at step 2)" in line  # Argo's steps keep their word
