"""The Canary policy: Argo Rollouts' canary strategy (grayscale release), field for field.

Steps run in order, each with at most one of setWeight, pause and analysis (Argo validation)
and the step's other actions beside it; without ``trafficRouting``
the canary's traffic share is its share of pods behind one Service (Argo's N / N+1 rule), with
it the router carries the weight and the canary gets ceil(w·N/100) pods (reference §2).
"""

from __future__ import annotations

from typing import Literal, cast

from pydantic import Field, model_validator
from pydantic.alias_generators import to_snake

from policies.analysis import AnalysisTemplate
from policies.base import IntOrPercent, Model
from policies.common import (
    HeaderMatch,
    PolicyBase,
    RollbackWindow,
    RolloutAnalysis,
    check_template_refs,
)
from policies.durations import Duration
from policies.vocabulary import (
    ARGO_ROUTERS,
    ROUTERS,
    ArgoRouter,
    RouterKind,
    argo_router_kind,
)

__all__ = [
    "BackgroundAnalysis",
    "Canary",
    "CanaryStep",
    "Pause",
    "RouterConfig",
    "SetCanaryScale",
    "SetHeaderRoute",
    "StepOperation",
    "TrafficRouting",
]


class Pause(Model):
    """``pause: {}`` waits for a manual promote; ``pause: {duration: 10m}`` for that long."""

    duration: Duration | None = None


class SetCanaryScale(Model):
    """Canary pods without changing the weight (traffic routing only): one of the three forms."""

    replicas: int | None = Field(None, ge=0)
    weight: int | None = Field(None, ge=0, le=100)
    match_traffic_weight: bool = False

    @model_validator(mode="after")
    def _one(self) -> SetCanaryScale:
        given = (self.replicas is not None) + (self.weight is not None) + self.match_traffic_weight
        if given != 1:
            raise ValueError("give exactly one of replicas, weight, matchTrafficWeight: true")
        return self


class SetHeaderRoute(Model):
    """Send requests whose headers match to the canary, whatever the weight (Istio, ALB...).

    A route with no ``match`` removes the managed route of that name (Argo semantics).
    """

    name: str = Field(min_length=1)
    match: tuple[HeaderMatch, ...] = ()


_ACTIONS = ("set_weight", "pause", "analysis", "set_canary_scale", "set_header_route")
_ONE_OF = ("set_weight", "pause", "analysis")
"""Argo's ``hasMultipleStepsType``: a step has at most one of these (and experiment)."""
_COMPLETES = ("pause", "set_canary_scale", "set_weight", "analysis", "set_header_route")
"""Argo's ``completedCurrentCanaryStep`` switch order: the first action present decides when
the step is done; the others only take effect (a header route is set, a run started)."""


def _camel(name: str) -> str:
    return "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_")))


StepOperation = int | Pause | RolloutAnalysis | SetCanaryScale | SetHeaderRoute
"""A canary step's action as a value (``CanaryStep.operation``); an ``int`` is setWeight.

The YAML keeps Argo's shape (one optional key per action); code matches on this union, so a
new action cannot be forgotten silently."""


class CanaryStep(Model):
    """One Argo canary step: its actions, at most one of setWeight, pause and analysis (Argo
    validation), with setCanaryScale and setHeaderRoute beside it if wanted."""

    set_weight: int | None = Field(None, ge=0, le=100)
    pause: Pause | None = None
    analysis: RolloutAnalysis | None = None
    set_canary_scale: SetCanaryScale | None = None
    set_header_route: SetHeaderRoute | None = None

    @model_validator(mode="after")
    def _actions(self) -> CanaryStep:
        given = [name for name in _ONE_OF if getattr(self, name) is not None]
        if len(given) > 1:
            names = " and ".join(_camel(g) for g in given)
            # Argo's hasMultipleStepsType; setCanaryScale and setHeaderRoute may join the one
            raise ValueError(f"a step has exactly one action (got {names})")
        if not self.actions:
            names = ", ".join(_camel(n) for n in _ACTIONS)
            raise ValueError(f"a step needs an action: {names}")
        return self

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions given, in Argo's completion order (the first decides)."""
        return tuple(name for name in _COMPLETES if getattr(self, name) is not None)

    @property
    def action(self) -> str:
        """The action that decides when the step is done (the only one, usually)."""
        return self.actions[0]

    @property
    def operation(self) -> StepOperation:
        """The deciding action as a value: ``match`` on its type (an ``int`` is setWeight)."""
        return cast(StepOperation, getattr(self, self.action))

    @property
    def operations(self) -> tuple[StepOperation, ...]:
        """Every action of the step as a value, the deciding one first."""
        return tuple(cast(StepOperation, getattr(self, name)) for name in self.actions)


class BackgroundAnalysis(RolloutAnalysis):
    """``strategy.canary.analysis``: runs beside the steps from ``startingStep``; never gates
    promotion, but a Failed or Error run aborts (reference §1)."""

    starting_step: int = Field(0, ge=0)


class RouterConfig(Model):
    """Settings of one traffic router; names of the live objects are given at export time."""


class TrafficRouting(Model):
    """Which routers carry the weight: one or more of Argo's routers and traffic-router plugins
    (by plugin name); Argo sets the same weight on each."""

    nginx: RouterConfig | None = None
    istio: RouterConfig | None = None
    smi: RouterConfig | None = None
    alb: RouterConfig | None = None
    ambassador: RouterConfig | None = None
    apisix: RouterConfig | None = None
    app_mesh: RouterConfig | None = None
    traefik: RouterConfig | None = None
    plugins: dict[str, RouterConfig] | None = None
    max_traffic_weight: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _some_router(self) -> TrafficRouting:
        if not self.routers:
            raise ValueError(f"trafficRouting needs one of {', '.join(ARGO_ROUTERS)}")
        if self.max_traffic_weight != 100 and not _argo_allows(self.routers, "max_traffic_weight"):
            with_ = " or ".join(_argo_routers_where("max_traffic_weight"))
            raise ValueError(f"maxTrafficWeight other than 100 is only supported with {with_}")
        return self

    @property
    def routers(self) -> tuple[ArgoRouter, ...]:
        """The ``trafficRouting`` keys given, in ``ARGO_ROUTERS`` order."""
        return tuple(r for r in ARGO_ROUTERS if getattr(self, to_snake(r)))

    @property
    def router(self) -> ArgoRouter:
        """The first router (most policies have one)."""
        return self.routers[0]

    @property
    def kinds(self) -> tuple[RouterKind, ...]:
        """The router kinds the weight goes through (a plugin's by its name)."""
        out: list[RouterKind] = []
        for r in self.routers:
            names = sorted(self.plugins or {}) if r == "plugins" else [None]
            out.extend(argo_router_kind(r, name) for name in names)
        return tuple(out)


def _argo_routers_where(fact: str) -> tuple[ArgoRouter, ...]:
    """Argo's routers (``plugins`` as any plugin) whose router kind has ``fact``."""
    return tuple(r for r in ARGO_ROUTERS if getattr(ROUTERS[argo_router_kind(r)], fact))


def _argo_allows(routers: tuple[ArgoRouter, ...], fact: str) -> bool:
    """Argo's validation asks for one router with the feature, not all (any plugin counts)."""
    return any(r in _argo_routers_where(fact) for r in routers)


class Canary(PolicyBase):
    """Argo Rollouts canary; every default is Argo's (reference/argo-rollouts.md §6).

    Validation is Argo's: without ``trafficRouting`` it refuses scaleDownDelaySeconds and
    dynamicStableScale but takes abortScaleDownDelaySeconds and minPodsPerReplicaSet, which
    its basic canary then ignores (``GetAbortScaleDownDelaySecondsOrDefault`` is nil, the
    replica-ratio arithmetic has no minimum), and so does the controller here.
    """

    kind: Literal["Canary"] = "Canary"
    steps: tuple[CanaryStep, ...] = ()
    analysis: BackgroundAnalysis | None = None
    analysis_templates: tuple[AnalysisTemplate, ...] = ()
    traffic_routing: TrafficRouting | None = None
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"
    min_ready_seconds: Duration = 0.0
    dynamic_stable_scale: bool = False
    min_pods_per_replica_set: int | None = Field(None, ge=1)
    scale_down_delay_seconds: Duration | None = None
    abort_scale_down_delay_seconds: Duration | None = None
    rollback_window: RollbackWindow | None = None
    progress_deadline_seconds: Duration = 600.0
    progress_deadline_abort: bool = False

    @model_validator(mode="after")
    def _argo_validation(self) -> Canary:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0")
        routed = self.traffic_routing is not None
        if not routed:  # Argo ignores minPodsPerReplicaSet and abortScaleDownDelaySeconds
            for name, camel in (
                ("scale_down_delay_seconds", "scaleDownDelaySeconds"),
                ("dynamic_stable_scale", "dynamicStableScale"),
            ):
                if getattr(self, name) not in (None, False):
                    raise ValueError(f"{camel} requires trafficRouting (Argo validation)")
        if self.dynamic_stable_scale and self.scale_down_delay_seconds is not None:
            raise ValueError("dynamicStableScale cannot be combined with scaleDownDelaySeconds")
        for i, step in enumerate(self.steps):
            if step.set_canary_scale is not None and not routed:
                raise ValueError(f"steps[{i}].setCanaryScale requires trafficRouting")
            if step.set_header_route is not None and (
                self.traffic_routing is None  # not routed
                or not _argo_allows(self.traffic_routing.routers, "header_routes")
            ):
                with_ = " or ".join(_argo_routers_where("header_routes"))
                raise ValueError(f"steps[{i}].setHeaderRoute requires {with_} trafficRouting")
            if step.set_weight is not None and self.traffic_routing is not None:  # routed
                top = self.traffic_routing.max_traffic_weight
                if step.set_weight > top:
                    raise ValueError(f"steps[{i}].setWeight {step.set_weight} > maxTrafficWeight")
        if self.analysis is not None and self.analysis.starting_step > len(self.steps):
            raise ValueError("analysis.startingStep is beyond the last step")
        refs = {f"steps[{i}].analysis": s.analysis for i, s in enumerate(self.steps)}
        refs["analysis"] = self.analysis
        check_template_refs(self.analysis_templates, refs)
        return self

    # --- the executor's effective values (defaults that depend on other fields)

    @property
    def max_weight(self) -> int:
        return self.traffic_routing.max_traffic_weight if self.traffic_routing else 100

    @property
    def effective_scale_down_delay_s(self) -> float:
        """30 s under traffic routing, 0 (ignored) for a basic canary or dynamicStableScale."""
        if self.traffic_routing is None or self.dynamic_stable_scale:
            return 0.0
        return 30.0 if self.scale_down_delay_seconds is None else self.scale_down_delay_seconds

    @property
    def effective_abort_scale_down_delay_s(self) -> float:
        """Seconds before an aborted canary is scaled down (0 with setCanaryScale: kept)."""
        if self.traffic_routing is None:
            return 0.0
        if self.abort_scale_down_delay_seconds is None:
            return 30.0
        return self.abort_scale_down_delay_seconds

    def template(self, name: str) -> AnalysisTemplate:
        return next(t for t in self.analysis_templates if t.name == name)

    def templates_for(self, analysis: RolloutAnalysis) -> tuple[AnalysisTemplate, ...]:
        return tuple(self.template(ref.template_name) for ref in analysis.templates)
