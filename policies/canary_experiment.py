"""Argo's ``experiment`` step (reference/argo-rollouts.md §1): extra ReplicaSets of the canary or
stable spec for a duration, with their analyses; its phase decides the step (a Failed or Error
experiment aborts the rollout). A part of the Canary policy (policies/canary.py), kept apart
because it is a concept of its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from policies.analysis import Phase
from policies.base import Model
from policies.durations import Duration

__all__ = ["Experiment", "ExperimentAnalysis", "ExperimentTemplate"]


class ExperimentTemplate(Model):
    """An Argo experiment template: ``replicas`` extra pods (Argo's default 1) of the new
    (``specRef: canary``) or old (``stable``) version, with ``weight`` % of the requests when
    routed. ``sharesService`` (not an Argo field): the pods keep the Rollout's labels, so a
    basic canary's one Service sends them traffic too (Argo copies the pod template's labels;
    ``metadata.labels`` that change a selector label make it false)."""

    name: str = Field(min_length=1)
    spec_ref: Literal["canary", "stable"]
    replicas: int = Field(1, ge=0)
    weight: int | None = Field(None, ge=0, le=100)
    shares_service: bool = True

    def group(self, routed: bool) -> str:
        """Its pods' group: serving when routed with a weight, or in a basic canary while they
        keep the Rollout's labels; else idle (no Service selects them)."""
        serving = bool(self.weight) if routed else self.shares_service
        return f"experiment-{self.spec_ref}" + ("" if serving else "-idle")


class ExperimentAnalysis(Model):
    """An analysis the experiment runs once its pods are available (a named AnalysisRun)."""

    name: str = Field(min_length=1)
    template_name: str = Field(min_length=1)
    required_for_completion: bool = False


class Experiment(Model):
    """Argo's ``experiment`` step: ReplicaSets from the templates, then their analyses once all
    are available, for ``duration`` (or until the required analyses succeed); a Failed or
    Error experiment aborts the rollout, an Inconclusive one pauses it. Its pods go
    ``scaleDownDelaySeconds`` (Argo's default 30) after it ends."""

    duration: Duration | None = None
    templates: tuple[ExperimentTemplate, ...] = Field(min_length=1)
    analyses: tuple[ExperimentAnalysis, ...] = ()
    scale_down_delay_seconds: Duration | None = None

    @model_validator(mode="after")
    def _unique(self) -> Experiment:
        for what, names in (
            ("templates", [t.name for t in self.templates]),
            ("analyses", [a.name for a in self.analyses]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what}: names must be unique (repeated: {', '.join(dupes)})")
        return self

    @property
    def indefinite(self) -> bool:
        """No duration and no required analysis: it runs until someone promotes (Argo)."""
        return self.duration is None and not any(a.required_for_completion for a in self.analyses)

    @property
    def effective_scale_down_delay_s(self) -> float:
        return 30.0 if self.scale_down_delay_seconds is None else self.scale_down_delay_seconds

    def phase(self, phases: dict[str, Phase], duration_passed: bool) -> Phase | None:
        """Its phase once its pods are available (Argo's ``calculateStatus`` and
        ``assessAnalysisRuns``), from its analyses' phases (Running while unfinished); None
        while it runs on. A bad analysis ends it; before its duration has passed only
        successful required analyses end it, once every analysis has succeeded; after it, a
        required analysis still running keeps it going (the others are terminated)."""
        worst = max(phases.values(), key=lambda p: p.severity, default=Phase.SUCCESSFUL)
        required = [a.name for a in self.analyses if a.required_for_completion]
        if duration_passed:
            if worst.completed:
                return worst
            return None if required else Phase.SUCCESSFUL
        if worst.completed and worst != Phase.SUCCESSFUL:
            return worst
        required_ok = bool(required) and all(phases[n] == Phase.SUCCESSFUL for n in required)
        return Phase.SUCCESSFUL if required_ok and worst == Phase.SUCCESSFUL else None

    def weight_of(self, spec_ref: str) -> int:
        """The weight its templates of that version take (traffic-routed canaries only)."""
        return sum(t.weight or 0 for t in self.templates if t.spec_ref == spec_ref)
