"""One record per replication: what the release did, whom it hurt, what safety cost (DESIGN §5).

Every field is documented here once; ``to_frame`` gives the pandas table that summaries and
reports read. Times are seconds from the release start; ``nan`` means "never happened".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from policies.controller import Cause, FailedChecks, GateVerdict

__all__ = ["OUTCOME_FIELDS", "Outcome", "gate_fields", "to_frame"]

NAN = math.nan


@dataclass(slots=True)
class Outcome:
    """The outcome of one replication of one policy.

    The blast radius is counted against one counterfactual: **the old version alone at full
    capacity** (every request on the old version, ``replicas`` serving pods), whose bad
    probability is b_ref = o + (1 − o)·b₀ (b₀ the baseline's failed-or-slow probability, o the
    share beyond full capacity: 0 unless ``capacityPerPod`` × replicas is below the rate).
    A request is *release-caused* when it is bad and would not have been there, on the same
    draws for each way a request goes bad (it fails, it is overloaded, it is slow): of a flow's
    bad requests, whose bad probability is b, a share (b − b_ref)/b (0 when b ≤ b_ref)
    whenever the release makes no way likelier to spare it: for the new version's fault that
    is (p − p₀)/p of its bad requests; for a shortfall of pods (a stable scaled down while
    canary pods start, an abort or undo onto scaled-down or starting pods, a rolling update
    without surge) the overloaded requests that would not have been bad anyway. Where it does
    (extra pods relieving an overload of full capacity, a fault with fewer errors but slower
    answers) the fault's own bad requests are still caused: (1 − p₀)(1 − q₀)(1 − f) −
    (1 − max(p, p₀))(1 − max(q, q₀))(1 − max(o, f)) of the requests, f and o the overloads
    of full capacity and of the request's Service (sim/engine/blast.py).

    ========================  ===========================================================
    outcome                   promoted, rolled_back, or stalled (neither by the horizon)
    failed_requests           failed requests counted in the blast radius, either version
    slow_requests             such requests that succeeded slower than the objective
    bad_requests              failed or slow: bad_requests_new + bad_requests_old
    bad_requests_new          bad requests served by the new version (all of them)
    bad_requests_old          bad requests of the old version while the release left it
                              short of capacity (overloaded, or no serving pod behind its
                              Service); elsewhere the old version is the counterfactual
                              and its requests are not counted
    excess_bad_requests       bad_requests minus b_ref × the requests they are counted
                              among (mean: Δp × exposure plus the release-caused overload;
                              < 0 is possible)
    caused_bad_requests       release-caused bad requests, either version (mean: the
                              excess's, when the release makes no way of going bad less
                              likely)
    candidate_requests        requests served by the new version
    users_hurt                unique users with at least one release-caused bad response,
                              from either version (≈ 0 for a good release without a
                              capacity shortfall; exactly 0 when nothing changes b)
    users_with_bad            unique users with at least one bad response from the new
                              version, whatever its cause (baseline errors included)
    users_exposed             unique users who reached the new version after its fault
                              began (0 for a release without a fault)
    error_budget_used         excess bad requests over the SLO budget ((1 − target) × expected
                              requests in the SLO period)
    t_fault                   when the candidate first served with its fault active
    t_detect                  when the first detector fired (see detected_by)
    detected_by               gate, alert, human, deadline, or "" (never)
    gate_run                  the analysis run whose verdict caused the rollback
                              (``background``, ``step-2``, ``prePromotion``, ``batch-1``…;
                              ``flagger`` for Flagger's failed checks), "" if no gate did
    gate_metrics              the failing metrics of that verdict, joined by ","
    gate_step                 the step (or batch) index the gate ran at; Flagger's: the tick
                              explain lists the walk held at (nan: none)
    t_rollback_start          the abort or undo action (after any human acknowledgement)
    t_mitigated               when no traffic was left on the candidate after the rollback
    rollout_duration          start to full promotion
    false_rollback            a good candidate was rolled back
    escaped                   a bad candidate reached full promotion
    extra_pod_seconds         pod-seconds above the steady state (replicas × time)
    policy, replication, seed, release_class, bad_release: context
    error                     the exception text if the replication failed, else ""
    ========================  ===========================================================
    """

    policy: str
    replication: int
    seed: int
    release_class: str
    bad_release: bool
    outcome: str = "stalled"
    failed_requests: int = 0
    slow_requests: int = 0
    bad_requests: int = 0
    bad_requests_new: int = 0
    bad_requests_old: int = 0
    excess_bad_requests: float = 0.0
    caused_bad_requests: int = 0
    candidate_requests: int = 0
    users_hurt: int = 0
    users_with_bad: int = 0
    users_exposed: int = 0
    error_budget_used: float = 0.0
    t_fault: float = NAN
    t_detect: float = NAN
    detected_by: str = ""
    gate_run: str = ""
    gate_metrics: str = ""
    gate_step: float = NAN
    t_rollback_start: float = NAN
    t_mitigated: float = NAN
    rollout_duration: float = NAN
    false_rollback: bool = False
    escaped: bool = False
    extra_pod_seconds: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (all scalars: no deep copy as ``asdict`` makes, once per row)."""
        return {name: getattr(self, name) for name in OUTCOME_FIELDS}


OUTCOME_FIELDS = tuple(f.name for f in fields(Outcome))


def gate_fields(cause: Cause) -> tuple[str, str, float]:
    """(gate_run, gate_metrics, gate_step) of a rollback's typed cause: the analysis run, its
    failing metrics and its step for a gate's verdict, Flagger's failed metric; else empty."""
    match cause:
        case GateVerdict(run=run, metrics=metrics, step=step):
            return run, ",".join(metrics), NAN if step is None else float(step)
        case FailedChecks(metric=metric, step=step):
            return "flagger", metric, NAN if step is None else float(step)
        case _:
            return "", "", NAN


def to_frame(outcomes):
    """A pandas DataFrame, one row per replication, columns in documented order."""
    import pandas as pd

    return pd.DataFrame([o.to_dict() for o in outcomes], columns=list(OUTCOME_FIELDS))
