"""The selection procedure (sim/tune/selection.py) on synthetic data whose truth is known.

Each check of a rate uses a tolerance derived from its Monte Carlo standard error: a guarantee
"rate ≥ 1 − α" is checked as observed ≥ 1 − α − 3·√(α(1 − α)/runs) (a correct procedure fails
it with probability ≈ 1e-3; the seeds are fixed). The data are normal with a common component
shared by every candidate in a block (common random numbers); blocks are keyed by
(run, phase, block), so asking a block again gives the same numbers, as the simulator does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim.tune.betting import betting_interval
from sim.tune.selection import (
    ConstraintCheck,
    Observations,
    look_schedule,
    procedure_b_size,
    select,
)


def normal_sampler(mus, *, sd=1.0, rho=0.5, rates=None, run=0):
    """Candidate ``c<i>``: mean mus[i], sd ``sd``, correlation ``rho`` between candidates of one
    block; with ``rates``, one Bernoulli(rates[i]) constraint column."""
    calls = []

    def sample(phase, block, names, size):
        calls.append((phase, block, names, size))
        key = [run, 0 if phase == "screen" else 1, block]
        common = np.random.default_rng(key).normal(size=size)
        out = {}
        for name in names:
            i = int(name[1:])
            own = np.random.default_rng([*key, i + 1])
            x = mus[i] + sd * (math.sqrt(rho) * common + math.sqrt(1 - rho) * own.normal(size=size))
            con = np.empty((size, 0))
            if rates is not None:
                con = own.binomial(1, rates[i], size=(size, 1)).astype(float)
            out[name] = Observations(x, con)
        return out

    sample.calls = calls
    return sample


def names(k: int) -> list[str]:
    return [f"c{i}" for i in range(k)]


def floor(alpha: float, runs: int) -> float:
    return 1 - alpha - 3 * math.sqrt(alpha * (1 - alpha) / runs)


# --------------------------------------------------------------------------- confidence sequence


@pytest.mark.parametrize("p", [0.02, 0.3])
def test_betting_interval_covers_the_mean_at_every_look(p):
    """Miscoverage anywhere along the path ≤ α (Ville), within its MC error."""
    alpha, runs, n = 0.1, 300, 150
    missed = 0
    for r in range(runs):
        x = np.random.default_rng([7, r]).binomial(1, p, n).astype(float)
        lo, hi = betting_interval(x, alpha, 0.0, 1.0)  # the running intersection: every look
        missed += not (lo <= p <= hi)
    assert missed / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_betting_interval_rescales_bounds_and_refuses_values_outside():
    lo, hi = betting_interval(np.full(400, 600.0), 0.01, 0.0, 3600.0)
    assert 0.0 <= lo <= 600.0 <= hi <= 3600.0 and hi - lo < 600
    assert betting_interval([], 0.05, -1.0, 2.0) == (-1.0, 2.0)
    with pytest.raises(ValueError, match="outside"):
        betting_interval([0.5, 1.5], 0.05, 0.0, 1.0)


def test_betting_interval_on_zeros_shrinks_like_log_over_n():
    """No event in n draws: the upper end falls below 5 % within a few hundred draws even at
    β = 1e-3 (an exact binomial test would need ≥ log(1/β)/0.05 ≈ 138)."""
    _, hi = betting_interval(np.zeros(300), 1e-3, 0.0, 1.0)
    assert 0.0 < hi < 0.05


# --------------------------------------------------------------------------- helpers


def test_look_schedule_doubles_to_the_cap():
    assert look_schedule(20, 200) == [20, 40, 80, 160, 200]
    assert look_schedule(5, 5) == [5]


def test_procedure_b_size_is_nelson_matejcik():
    rng = np.random.default_rng(0)
    cols = [rng.normal(size=20) for _ in range(3)]
    s2 = max(np.var(cols[i] - cols[j], ddof=1) for i in range(3) for j in range(i + 1, 3))
    t = stats.t.ppf(1 - 0.1 / 2, 19)
    assert procedure_b_size(cols, 0.1, 0.5) == max(20, math.ceil(t * t * s2 / 0.25))
    assert procedure_b_size([np.zeros(20), np.zeros(20)], 0.1, 0.5) == 20


# --------------------------------------------------------------------------- guarantees


def test_correct_selection_in_the_slippage_configuration():
    """Best at 0, all others exactly δ worse: P(select the best) ≥ 1 − α."""
    alpha, runs, delta = 0.2, 150, 0.5
    mus = [0.0] + [delta] * 7
    right = 0
    for r in range(runs):
        sel = select(
            names(8), normal_sampler(mus, sd=2.0, rho=0.3, run=r), delta=delta, confidence=1 - alpha
        )
        right += sel.selected == "c0"
    print(f"slippage: correct {right}/{runs}")
    assert right / runs >= floor(alpha, runs)


def test_good_selection_without_an_indifference_zone():
    """Means spread across 3δ (no gap assumed): P(within δ of the best) ≥ 1 − α."""
    alpha, runs, delta = 0.2, 100, 0.3
    mus = list(np.linspace(0.0, 3 * delta * 3, 12))
    good, spent, grid = 0, [], []
    for r in range(runs):
        sel = select(
            names(12), normal_sampler(mus, sd=1.5, run=1000 + r), delta=delta, confidence=1 - alpha
        )
        good += mus[int(sel.selected[1:])] <= mus[0] + delta
        spent.append(sel.spent)
        grid.append(sel.one_shot)
    print(f"spread: good {good}/{runs}, spent {np.mean(spent):.0f} vs one-shot {np.mean(grid):.0f}")
    assert good / runs >= floor(alpha, runs)
    assert np.mean(spent) < np.mean(grid)  # screening pays for itself here


def test_constraints_hold_and_the_best_feasible_is_found():
    """c0 is best but breaks the rate limit (6 % > 5 %); c1 is best among the feasible ones.
    Selecting c0 is a violation: allowed at most α_F = α/3 of the runs (within MC error)."""
    alpha, runs = 0.2, 100
    mus, rates = [0.0, 0.3, 0.6, 1.5, 2.0], [0.06, 0.0, 0.0, 0.01, 0.2]
    check = ConstraintCheck("rate", limit=0.05, tolerance=0.02, lower=0.0, upper=1.0)
    violations = good = 0
    for r in range(runs):
        sample = normal_sampler(mus, run=5000 + r, rates=rates)
        sel = select(names(5), sample, delta=0.4, confidence=1 - alpha, constraints=[check])
        chosen = int(sel.selected[1:])
        violations += rates[chosen] > 0.05
        good += rates[chosen] <= 0.05 and mus[chosen] <= 0.3 + 0.4
        assert sel.records[sel.selected].bounds["rate"][1] <= 0.05  # shown, never assumed
        assert sel.records["c4"].status in ("infeasible", "eliminated")
    a_f = alpha / 3
    print(f"constrained: violations {violations}/{runs}, good {good}/{runs}")
    assert violations / runs <= a_f + 3 * math.sqrt(a_f * (1 - a_f) / runs)
    assert good / runs >= floor(alpha, runs)


# --------------------------------------------------------------------------- bookkeeping


def test_blocks_are_drawn_in_order_and_spending_adds_up():
    mus = [0.0, 0.2, 1.0, 3.0, 3.0]
    sample = normal_sampler(mus, run=3)
    sel = select(names(5), sample, delta=0.25, confidence=0.9)
    blocks: dict[str, list[int]] = {}
    for phase, block, who, _ in sample.calls:
        for name in who:
            blocks.setdefault((phase, name), []).append(block)
    for got in blocks.values():
        assert got == list(range(len(got)))  # each candidate meets block 0, 1, 2, … once
    assert sel.spent == sum(len(w) * n for _, _, w, n in sample.calls)
    assert {r.status for r in sel.records.values()} <= {"selected", "finalist", "eliminated"}
    assert sel.records["c3"].status == "eliminated"
    again = select(names(5), normal_sampler(mus, run=3), delta=0.25, confidence=0.9)
    assert again.selected == sel.selected and again.stages == sel.stages


def test_ties_keep_the_first_and_identical_candidates_stop_early():
    """Paired differences of identical candidates are 0: no elimination, N = n0, first wins."""

    def same(phase, block, who, size):
        x = np.random.default_rng([phase == "screen", block]).normal(size=size)
        return {n: Observations(x.copy(), np.empty((size, 0))) for n in who}

    sel = select(["b", "a"], same, delta=0.1, confidence=0.9)
    assert sel.selected == "b" and sel.final_n == 20
    assert sel.records["a"].mcb == (-0.1, 0.1)


def test_nothing_feasible_gives_no_selection():
    sample = normal_sampler([0.0, 1.0], rates=[1.0, 1.0])
    check = ConstraintCheck("rate", 0.05, 0.01, 0.0, 1.0)
    sel = select(names(2), sample, delta=0.5, constraints=[check])
    assert sel.selected is None and "no candidate" in sel.message
    assert all(r.status == "infeasible" for r in sel.records.values())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        select([], normal_sampler([0.0]), delta=1.0)
    with pytest.raises(ValueError):
        select(names(2), normal_sampler([0.0, 1.0]), delta=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        ConstraintCheck("x", 1.0, 0.0, 0.0, 2.0)
