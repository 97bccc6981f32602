"""The BlueGreen policy: Argo Rollouts' blueGreen strategy, and switches by Service selector or DNS.

The new version starts beside the old (preview), optional pre-promotion analysis runs on it,
then all traffic switches at once; the old pods linger ``scaleDownDelaySeconds`` so an abort
or undo can switch straight back (reference/argo-rollouts.md §5). A DNS switch moves each
client within the TTL instead of at once (DESIGN §5).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from policies.analysis import AnalysisTemplate
from policies.common import PolicyBase, RollbackWindow, RolloutAnalysis, check_template_refs
from policies.durations import Duration

__all__ = ["BlueGreen"]


class BlueGreen(PolicyBase):
    """Argo blueGreen with Argo's defaults; ``switch`` says how the active side flips."""

    kind: Literal["BlueGreen"] = "BlueGreen"
    switch: Literal["serviceSelector", "dns"] = "serviceSelector"
    dns_ttl: Duration | None = None
    pre_promotion_analysis: RolloutAnalysis | None = None
    post_promotion_analysis: RolloutAnalysis | None = None
    analysis_templates: tuple[AnalysisTemplate, ...] = ()
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: Duration = 0.0
    preview_replica_count: int | None = Field(None, ge=0)
    scale_down_delay_seconds: Duration = 30.0
    abort_scale_down_delay_seconds: Duration = 30.0
    min_ready_seconds: Duration = 0.0
    rollback_window: RollbackWindow | None = None
    progress_deadline_seconds: Duration = 600.0
    progress_deadline_abort: bool = False

    @model_validator(mode="after")
    def _rules(self) -> BlueGreen:
        if self.switch == "dns":
            if self.dns_ttl is None:
                raise ValueError("switch: dns needs dnsTtl (e.g. 300s)")
        elif self.dns_ttl is not None:
            raise ValueError("dnsTtl applies only to switch: dns")
        check_template_refs(
            self.analysis_templates,
            {},
            {
                "prePromotionAnalysis": self.pre_promotion_analysis,
                "postPromotionAnalysis": self.post_promotion_analysis,
            },
        )
        return self

    @property
    def needs_pause(self) -> bool:
        """Argo pauses before the switch only without auto-promotion or with a delay."""
        return not self.auto_promotion_enabled or self.auto_promotion_seconds > 0

    def templates_for(self, analysis: RolloutAnalysis) -> tuple[AnalysisTemplate, ...]:
        by_name = {t.name: t for t in self.analysis_templates}
        return tuple(by_name[ref.template_name] for ref in analysis.templates)
