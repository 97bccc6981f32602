"""The one-slot cache of what a run's replications share (policies/kept.py)."""

from __future__ import annotations

from policies.kept import kept_for_the_last


def test_kept_for_the_same_objects_and_worked_out_again_for_others():
    calls = []

    @kept_for_the_last
    def derive(world, policy):
        calls.append((world, policy))
        return [world, policy]

    world, policy, twin = ["w"], ["p"], ["p"]  # twin: equal to policy, another object
    first = derive(world, policy)
    assert derive(world, policy) is first and len(calls) == 1
    assert derive(world, twin) == first and len(calls) == 2  # equal is not the same
    assert derive(world, policy) is not first and len(calls) == 3  # one slot: the last pair's
