"""The tape's shortcuts give the numbers of the code they replace (sim/engine/tape.py): shared
slot edges are np.arange's, a thinning of 0 requests draws nothing, onsets' bounds are numpy's."""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine.fault_arrival import FaultState
from sim.engine.tape import _grid


@pytest.mark.parametrize("slot", [15.0, 0.1, 7.3, 1 / 3])
def test_shared_slot_edges_are_arange_times_the_slot(slot):
    for first, last in [(0, 5), (3, 81), (1000, 1100), (4321, 6001)]:
        edges, indices = _grid(slot, last + 1)
        expected = np.arange(first, last + 1, dtype=float) * slot
        assert edges[first : last + 1].tobytes() == expected.tobytes()
        assert np.array_equal(indices[first:last], np.arange(first, last))
        assert not edges.flags.writeable and not indices.flags.writeable


def test_a_binomial_of_no_requests_draws_nothing():
    # _thin skips the call for a count of 0: numpy returns 0 before drawing
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    assert a.binomial(0, 0.4) == 0
    assert a.random() == b.random()


def test_fault_state_bounds_are_numpys():
    onsets = np.array([30.5, np.inf, 12.25, 40.0])
    state = FaultState(onsets, onsets.size)
    assert (state.first, state.last) == (float(onsets.min()), float(onsets.max()))
    none = FaultState(np.empty(0), 0)
    assert none.first == none.last == np.inf
