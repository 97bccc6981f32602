"""One record per replication: what the release did, whom it hurt, what safety cost (DESIGN §5).

Every field is documented here once; ``to_frame`` gives the pandas table that summaries and
reports read. Times are seconds from the release start; ``nan`` means "never happened".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["OUTCOME_FIELDS", "Outcome", "to_frame"]

NAN = math.nan


@dataclass(slots=True)
class Outcome:
    """The outcome of one replication of one policy.

    ========================  ===========================================================
    outcome                   promoted, rolled_back, or stalled (neither by the horizon)
    failed_requests           candidate-served requests that failed
    slow_requests             candidate-served requests that succeeded slower than the objective
    bad_requests              failed or slow, served by the candidate
    excess_bad_requests       bad_requests minus what the baseline's rates would give on the
                              same candidate traffic (mean Δp × exposure; < 0 is possible)
    candidate_requests        requests served by the candidate
    users_hurt                unique users with at least one bad response from the candidate
    users_exposed             unique users who reached the candidate after the fault began
                              (a release without a fault: who reached it at all)
    error_budget_used         excess bad requests over the SLO budget ((1 − target) × expected
                              requests in the SLO period)
    t_fault                   when the candidate first served with its fault active
    t_detect                  when the first detector fired (see detected_by)
    detected_by               gate, alert, human, deadline, or "" (never)
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
    excess_bad_requests: float = 0.0
    candidate_requests: int = 0
    users_hurt: int = 0
    users_exposed: int = 0
    error_budget_used: float = 0.0
    t_fault: float = NAN
    t_detect: float = NAN
    detected_by: str = ""
    t_rollback_start: float = NAN
    t_mitigated: float = NAN
    rollout_duration: float = NAN
    false_rollback: bool = False
    escaped: bool = False
    extra_pod_seconds: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OUTCOME_FIELDS = tuple(f.name for f in fields(Outcome))


def to_frame(outcomes):
    """A pandas DataFrame, one row per replication, columns in documented order."""
    import pandas as pd

    return pd.DataFrame([o.to_dict() for o in outcomes], columns=list(OUTCOME_FIELDS))
