"""Traces: what one replication looked like over time, for timelines in reports and notebooks.

Per scrape slot: requests and errors per version and the candidate's traffic share; and the
control events with a ``kind`` (weight, selectors, match route, status, detect, rollback,
mitigated) — records, not prose, so a plot or a table can be made from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Trace"]


@dataclass
class Trace:
    policy: str
    release_class: str
    replication: int
    slot: float
    time: np.ndarray  # slot start times
    canary_requests: np.ndarray
    canary_errors: np.ndarray
    stable_requests: np.ndarray
    stable_errors: np.ndarray
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def canary_share(self) -> np.ndarray:
        total = self.canary_requests + self.stable_requests
        return np.divide(self.canary_requests, total, out=np.zeros_like(total), where=total > 0)

    def error_rate(self, version: str) -> np.ndarray:
        req = self.canary_requests if version == "canary" else self.stable_requests
        err = self.canary_errors if version == "canary" else self.stable_errors
        return np.divide(err, req, out=np.full_like(req, np.nan), where=req > 0)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "time": self.time,
                "canary_requests": self.canary_requests,
                "canary_errors": self.canary_errors,
                "stable_requests": self.stable_requests,
                "stable_errors": self.stable_errors,
                "canary_share": self.canary_share,
            }
        )

    def events_frame(self):
        import pandas as pd

        return pd.DataFrame(self.events, columns=["time", "kind", "value"])
