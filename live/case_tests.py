"""Tests with power, per calibration case: outcome probabilities and detection-time distributions.

Interval coverage (live/calibrate.py) asks whether each live value falls in the simulator's 95 %
interval; over a few runs it cannot tell a promotion probability of 25 % from one of 5 % (both
put most runs in the outcome set). Per case, with the live runs and the simulated replications
as two samples:

* **outcome**: promoted or not, live k of n against simulated K of N — Fisher's exact test
  (two-sided), which carries the simulator's own Monte Carlo error;
* **detection time**: the live gate detections against the simulated ones — the k-sample
  Anderson-Darling test (midranks, so the 2-s grid's ties are fine) with a permutation p-value
  from a fixed seed.

``p`` values are per test; a calibration passes when none is below 0.05 divided by the number
of tests made (Bonferroni), beside the coverage test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CaseTest", "case_tests", "passes"]

PERMUTATIONS = 2000
LEVEL = 0.05


@dataclass(frozen=True)
class CaseTest:
    run: str
    quantity: str  # "promoted" or "t_detect"
    live: str
    simulated: str
    test: str
    p_value: float


def case_tests(prediction, lives: list, seed: int = 0) -> list[CaseTest]:
    """The outcome test and, with two or more live detections, the detection-time test."""
    from scipy.stats import PermutationMethod, anderson_ksamp, fisher_exact

    n = len(lives)
    k = sum(live.outcome == "promoted" for live in lives)
    big_n = prediction.replications
    big_k = round(prediction.outcome.get("promoted", 0.0) * big_n)
    p = float(fisher_exact([[k, n - k], [big_k, big_n - big_k]]).pvalue)
    out = [
        CaseTest(
            prediction.run,
            "promoted",
            f"{k}/{n}",
            f"{big_k}/{big_n} ({big_k / big_n:.3f})",
            "Fisher exact",
            p,
        )
    ]
    live_t = np.array([x.t_detect for x in lives if x.t_detect is not None], float)
    sim_t = np.asarray(prediction.samples.get("t_detect", ()), float)
    if live_t.size >= 2 and sim_t.size >= 2 and np.unique(np.r_[live_t, sim_t]).size > 1:
        rng = np.random.default_rng(seed)
        method = PermutationMethod(n_resamples=PERMUTATIONS, random_state=rng)
        result = anderson_ksamp([live_t, sim_t], method=method, **_midrank())
        out.append(
            CaseTest(
                prediction.run,
                "t_detect",
                f"median {np.median(live_t):.3g} s ({live_t.size})",
                f"median {np.median(sim_t):.3g} s ({sim_t.size})",
                "Anderson-Darling",
                float(result.pvalue),
            )
        )
    return out


def _midrank() -> dict:
    """scipy 1.17 renamed ``midrank=True`` to ``variant="midrank"`` (the old name warns)."""
    from inspect import signature

    from scipy.stats import anderson_ksamp

    new = "variant" in signature(anderson_ksamp).parameters
    return {"variant": "midrank"} if new else {"midrank": True}


def passes(tests: list[CaseTest], level: float = LEVEL) -> bool:
    """No test below ``level`` / number of tests (Bonferroni)."""
    return all(t.p_value >= level / len(tests) for t in tests) if tests else True
