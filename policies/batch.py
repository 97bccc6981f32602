"""The BatchRelease policy: CCE's "batch suspension of release" — new pods in batches, with a
pause (a duration, or a manual approval) after each batch.

Traffic follows pods behind one Service, so a batch's share of pods is its share of traffic.
Each batch is the cumulative count of new-version pods; the release ends at 100 %.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from policies.analysis import AnalysisTemplate
from policies.base import IntOrPercent, Model, resolve_int_or_percent
from policies.canary import Pause
from policies.common import PolicyBase, RolloutAnalysis, check_template_refs
from policies.durations import Duration

__all__ = ["Batch", "BatchRelease"]


class Batch(Model):
    """One batch: how many pods run the new version once it is done, then an optional pause."""

    replicas: IntOrPercent
    pause: Pause | None = None
    analysis: RolloutAnalysis | None = None


class BatchRelease(PolicyBase):
    """Batches of new pods (cumulative), scaled within the rolling fences, paused in between."""

    kind: Literal["BatchRelease"] = "BatchRelease"
    batches: tuple[Batch, ...] = Field(min_length=1)
    analysis_templates: tuple[AnalysisTemplate, ...] = ()
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"
    min_ready_seconds: Duration = 0.0
    progress_deadline_seconds: Duration = 600.0

    @model_validator(mode="after")
    def _rules(self) -> BatchRelease:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0")
        last = self.batches[-1].replicas
        if last != "100%" and not (self.replicas is not None and last == self.replicas):
            raise ValueError('the last batch must bring the new version to "100%" of the pods')
        shares = [_share(b.replicas) for b in self.batches if isinstance(b.replicas, str)]
        if shares != sorted(shares):
            raise ValueError("batches must not shrink: each batch is the cumulative share")
        check_template_refs(
            self.analysis_templates,
            {f"batches[{i}].analysis": b.analysis for i, b in enumerate(self.batches)},
        )
        return self

    def batch_pods(self, replicas: int) -> list[int]:
        """New-version pods after each batch for ``replicas`` pods (percent rounds up)."""
        pods = [resolve_int_or_percent(b.replicas, replicas, round_up=True) for b in self.batches]
        return [min(p, replicas) for p in pods]


def _share(value: str) -> float:
    return float(value.rstrip("%"))
