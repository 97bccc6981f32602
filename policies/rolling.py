"""The RollingUpdate policy: a Kubernetes Deployment's rolling update, with its defaults.

No gate of its own: a bad version is caught only by the backstops (alerts, humans), and the
rollback is a rolling update back (``kubectl rollout undo``; executors.md §C.6).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from policies.base import IntOrPercent
from policies.common import PolicyBase
from policies.durations import Duration

__all__ = ["RollingUpdate"]


class RollingUpdate(PolicyBase):
    """``strategy: {type: RollingUpdate, rollingUpdate: {maxSurge, maxUnavailable}}``."""

    kind: Literal["RollingUpdate"] = "RollingUpdate"
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"
    min_ready_seconds: Duration = 0.0
    progress_deadline_seconds: Duration = 600.0

    @model_validator(mode="after")
    def _fences(self) -> RollingUpdate:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError(
                "maxUnavailable may not be 0 when maxSurge is 0 (Kubernetes validation)"
            )
        return self
