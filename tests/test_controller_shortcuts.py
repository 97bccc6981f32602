"""The controller's two shortcuts give what the full reconcile loop gives.

``ControllerBase.handle`` skips the reconcile loop after a measure-due timer and after a
measurement that leaves its run's phase unchanged (not for Flagger, whose reconcile counts its
checks). Here every such event of the shipped scenarios is also fed to a copy of the
controller with the shortcuts off: the actions and the resulting state must be the same.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import policies.controller.base as base
from policies import policy_from_yaml
from sim import load_scenario, run

ROOT = Path(__file__).resolve().parents[1] / "scenarios"
_IGNORED = ("_out", "quiet_measurements", "rng", "policy")


def _state(controller) -> str:
    items = vars(controller).items()
    return repr(
        sorted((k, sorted(v) if isinstance(v, set) else v) for k, v in items if k not in _IGNORED)
    )


BLUE_GREEN = """
kind: BlueGreen
name: bluegreen-post-analysis
postPromotionAnalysis: {templates: [{templateName: err}]}
analysisTemplates:
  - name: err
    metrics:
      - name: err
        interval: 60s
        count: 5
        failureCondition: result > 0.02
        provider: {query: {measure: errorRate}}
"""


@pytest.mark.parametrize("name", ["seed-practice", "subtle-regression", "blue-green"])
def test_shortcuts_match_the_full_loop(name, monkeypatch):
    full_handle = base.ControllerBase.handle
    checked = {"timer": 0, "measurement": 0}

    def full_loop(controller, event):
        """The event through a copy whose reconcile loop always runs."""
        twin = copy.deepcopy(controller)
        twin.quiet_measurements = False
        if not (isinstance(event, base.TimerFired) and event.key.startswith("measure/")):
            return twin, full_handle(twin, event)
        twin._out = []  # handle() for a measure-due timer, without its early return
        twin.timers.discard(event.key)
        twin._measure_due(event.key)
        while True:
            before = (len(twin._out), twin._loop_key())
            twin._reconcile()
            if (len(twin._out), twin._loop_key()) == before:
                break
        twin._track_progress()
        return twin, twin._out

    def handle(controller, event):
        measure_timer = isinstance(event, base.TimerFired) and event.key.startswith("measure/")
        measurement = isinstance(event, base.MeasurementTaken) and controller.quiet_measurements
        if not (measure_timer or measurement):
            return full_handle(controller, event)
        twin, expected = full_loop(controller, event)
        got = full_handle(controller, event)
        assert repr(got) == repr(expected), event
        assert _state(controller) == _state(twin), event
        checked["timer" if measure_timer else "measurement"] += 1
        return got

    monkeypatch.setattr(base.ControllerBase, "handle", handle)
    loaded = load_scenario(ROOT / f"{'seed-practice' if name == 'blue-green' else name}.yaml")
    policies = [policy_from_yaml(BLUE_GREEN)] if name == "blue-green" else loaded.policies
    result = run(loaded.world, policies, replications=6, seed=1, backend="inprocess")
    assert not result.failed, result.frame.error.unique()
    assert checked["timer"] > 20 and checked["measurement"] > 20, checked
