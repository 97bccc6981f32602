"""The canary controller walks a policy's steps once per policy object (replications share it):
a controller of another policy, even one built in between, gets that policy's own walk."""

from __future__ import annotations

from policies import policy_from_yaml
from policies.controller import RolloutController

STEPS = {
    "a": "  - setWeight: 20\n  - pause: {duration: 60s}\n  - setWeight: 50\n",
    "b": "  - setCanaryScale: {replicas: 3}\n  - setWeight: 40\n  - pause: {}\n",
}


def policy(name: str):
    head = f"kind: Canary\nname: {name}\ntrafficRouting: {{istio: {{}}}}\nsteps:\n"
    return policy_from_yaml(head + STEPS[name])


def walk(ctl) -> tuple:
    return (ctl._steps, ctl._set_weights, ctl._scales, ctl._indefinite, ctl._deciding)


def test_each_controller_gets_its_own_policys_walk() -> None:
    a, b = policy("a"), policy("b")
    first = RolloutController(a, 10)
    assert first._set_weights == (20, 20, 50)
    assert first._indefinite == (False, True, False)
    other = RolloutController(b, 10)
    assert other._set_weights == (0, 40, 40)
    assert [s.replicas if s else None for s in other._scales] == [3, 3, 3]
    assert other._indefinite == (False, False, True)
    again = RolloutController(a, 4)
    assert walk(again) == walk(first)
    assert RolloutController(a, 10)._deciding is again._deciding  # walked once, shared
