"""The Canary policy: Argo Rollouts' canary strategy (grayscale release), field for field.

Steps run in order, each with at most one of setWeight, pause, experiment and analysis (Argo
validation) and the step's other actions (routes, setCanaryScale, a step plugin) beside it;
without ``trafficRouting``
the canary's traffic share is its share of pods behind one Service (Argo's N / N+1 rule), with
it the router carries the weight and the canary gets ceil(w·N/100) pods (reference §2).
"""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import InitErrorDetails

from policies.analysis import AnalysisTemplate
from policies.base import IntOrPercent, Model
from policies.canary_experiment import Experiment, ExperimentAnalysis, ExperimentTemplate
from policies.common import (
    HeaderMatch,
    PolicyBase,
    RollbackWindow,
    RolloutAnalysis,
    RouteMatch,
    StringMatch,
    TemplateRef,
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
    "STEP_ACTIONS",
    "BackgroundAnalysis",
    "Canary",
    "CanaryStep",
    "Experiment",
    "ExperimentAnalysis",
    "ExperimentTemplate",
    "MirrorMatch",
    "Pause",
    "PluginStep",
    "RouterConfig",
    "SetCanaryScale",
    "SetHeaderRoute",
    "SetMirrorRoute",
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


class MirrorMatch(Model):
    """One entry of a setMirrorRoute ``match`` (entries ORed, conditions ANDed, as Istio).

    The world's requests carry headers (its user segments) but no method or path, so a match
    on a method is refused and a path only as ``{prefix: /}``, which every request satisfies."""

    headers: dict[str, StringMatch] = Field(default_factory=dict)
    path: StringMatch | None = None
    method: StringMatch | None = None

    @model_validator(mode="after")
    def _evaluable(self) -> MirrorMatch:
        if self.method is not None:
            raise ValueError(
                "method: a mirror route matching on the HTTP method is not modelled (the"
                " simulated requests have no method)"
            )
        if self.path is not None and self.path.prefix != "/":
            raise ValueError(
                "path: only {prefix: /} (every request) is modelled (the simulated requests"
                " have no path)"
            )
        return self


class SetMirrorRoute(Model):
    """Copy ``percentage`` % of the matching requests to the canary (Istio's mirror): the copies
    count in its metrics, their responses are discarded. ``percentage`` absent is 100 (Argo's
    ``createMirrorRoute``); without ``match`` the route ``name`` is removed (Argo removes a
    mirror route whose match is nil); ``match: []`` matches every request."""

    name: str = Field(min_length=1)
    percentage: int | None = Field(None, ge=0, le=100)
    match: tuple[MirrorMatch, ...] | None = None

    @property
    def percent(self) -> int:
        return 100 if self.percentage is None else self.percentage

    @property
    def copied(self) -> tuple[RouteMatch, ...]:
        """The requests copied: ``()`` for every request (an entry without headers, or
        ``match: []``), else the header entries (ORed)."""
        entries = self.match or ()
        if not entries or any(not m.headers for m in entries):
            return ()
        return tuple(RouteMatch(headers=dict(m.headers)) for m in entries)


class PluginStep(Model):
    """Argo's ``plugin`` step: the step plugin ``name`` (as the controller's ``stepPlugins``
    configuration names it) runs with ``config``, which is the plugin's own and kept as written
    (for export and ``--onto``). The step is done when the plugin says Successful; Failed aborts
    the rollout (Argo's ``rollout/stepplugin.go``). How long it takes and how often it fails are
    the team's world (``world.stepPlugins``), not the policy."""

    name: str = Field(min_length=1)
    config: dict[str, Any] | None = None


STEP_ACTIONS = (
    "set_weight",
    "pause",
    "experiment",
    "analysis",
    "set_canary_scale",
    "set_header_route",
    "set_mirror_route",
    "plugin",
)
_FIELDS = {r: to_snake(r) for r in ARGO_ROUTERS}  # trafficRouting key -> field, once
_ONE_OF = ("set_weight", "pause", "experiment", "analysis")
"""Argo's ``hasMultipleStepsType``: a step has at most one of these."""
_COMPLETES = (
    "pause",
    "set_canary_scale",
    "set_weight",
    "experiment",
    "analysis",
    "set_header_route",
    "set_mirror_route",
    "plugin",
)
"""Argo's ``completedCurrentCanaryStep`` switch order: the first action present decides when
the step is done; the others only take effect (a route is set, a run started)."""


StepOperation = (
    int
    | Pause
    | Experiment
    | RolloutAnalysis
    | SetCanaryScale
    | SetHeaderRoute
    | SetMirrorRoute
    | PluginStep
)
"""A canary step's action as a value (``CanaryStep.operation``); an ``int`` is setWeight.

The YAML keeps Argo's shape (one optional key per action); code matches on this union, so a
new action cannot be forgotten silently."""


class CanaryStep(Model):
    """One Argo canary step: its actions, at most one of setWeight, pause, experiment and
    analysis (Argo validation), with setCanaryScale, setHeaderRoute, setMirrorRoute and a step
    plugin beside it if wanted."""

    set_weight: int | None = Field(None, ge=0)  # at most maxTrafficWeight (the Canary checks)
    pause: Pause | None = None
    experiment: Experiment | None = None
    analysis: RolloutAnalysis | None = None
    set_canary_scale: SetCanaryScale | None = None
    set_header_route: SetHeaderRoute | None = None
    set_mirror_route: SetMirrorRoute | None = None
    plugin: PluginStep | None = None

    @model_validator(mode="after")
    def _actions(self) -> CanaryStep:
        given = [name for name in _ONE_OF if getattr(self, name) is not None]
        if len(given) > 1:
            names = " and ".join(to_camel(g) for g in given)
            # Argo's hasMultipleStepsType; setCanaryScale and the routes may join the one
            raise ValueError(f"a step has exactly one action (got {names})")
        if not self.actions:
            names = ", ".join(to_camel(n) for n in STEP_ACTIONS)
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
        return tuple(r for r in ARGO_ROUTERS if getattr(self, _FIELDS[r]))

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


_MIRROR_ROUTERS: tuple[ArgoRouter, ...] = ("istio", "plugins")
"""Argo's validation: setMirrorRoute needs one of these routers (reference §1)."""
_EXPERIMENT_WEIGHT_ROUTERS: tuple[ArgoRouter, ...] = ("smi", "alb", "istio", "plugins")
"""Argo's validation: an experiment template's ``weight`` needs one of these (reference §2.4)."""


def _argo_routers_where(fact: str) -> tuple[ArgoRouter, ...]:
    """Argo's routers (``plugins`` as any plugin) whose router kind has ``fact``."""
    return tuple(r for r in ARGO_ROUTERS if getattr(ROUTERS[argo_router_kind(r)], fact))


def _argo_allows(routers: tuple[ArgoRouter, ...], fact: str) -> bool:
    """Argo's validation asks for one router with the feature, not all (any plugin counts)."""
    return any(r in _argo_routers_where(fact) for r in routers)


class Canary(PolicyBase):
    """Argo Rollouts canary; every default is Argo's (argo-rollouts ``utils/defaults/defaults.go``).

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

    @model_validator(mode="wrap")
    @classmethod
    def _weights_within_the_total(cls, data: Any, handler: Any) -> Canary:
        """setWeight is out of maxTrafficWeight under traffic routing (Argo's range), else of
        100: checked on the raw steps, so it is listed with the file's other problems as a
        bound of its own field would be (the step alone does not know the total)."""
        over = _weights_over(data)
        if not over:
            return cast(Canary, handler(data))
        try:
            handler(data)
            errors: list[Any] = []
        except ValidationError as exc:
            errors = [
                {k: e[k] for k in ("type", "loc", "input", "ctx") if k in e} for e in exc.errors()
            ]
        details = cast("list[InitErrorDetails]", [*over, *errors])  # (steps come early)
        raise ValidationError.from_exception_data(cls.__name__, details)

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
            routers = self.traffic_routing.routers if self.traffic_routing else ()
            if step.set_mirror_route is not None and not set(routers) & set(_MIRROR_ROUTERS):
                with_ = " or ".join(_MIRROR_ROUTERS)
                raise ValueError(f"steps[{i}].setMirrorRoute requires {with_} trafficRouting")
            if step.experiment is not None:
                self._check_experiment(i, step.experiment, routers)
        if self.analysis is not None and self.analysis.starting_step > len(self.steps):
            raise ValueError("analysis.startingStep is beyond the last step")
        refs: dict[str, RolloutAnalysis | None] = {"analysis": self.analysis}
        for i, step in enumerate(self.steps):
            for j, a in enumerate(step.experiment.analyses if step.experiment else ()):
                ref = RolloutAnalysis(templates=(TemplateRef(template_name=a.template_name),))
                refs[f"steps[{i}].experiment.analyses[{j}]"] = ref
        steps = {f"steps[{i}].analysis": s.analysis for i, s in enumerate(self.steps)}
        check_template_refs(self.analysis_templates, refs, steps)
        return self

    def _check_experiment(self, i: int, experiment: Experiment, routers: tuple) -> None:
        """Argo's validation of template weights, and the stable's share they leave."""
        weighted = [j for j, t in enumerate(experiment.templates) if t.weight is not None]
        if weighted and not set(routers) & set(_EXPERIMENT_WEIGHT_ROUTERS):
            with_ = ", ".join(_EXPERIMENT_WEIGHT_ROUTERS)
            raise ValueError(
                f"steps[{i}].experiment.templates[{weighted[0]}].weight requires trafficRouting"
                f" with {with_}"
            )
        weight = next(
            (s.set_weight for s in reversed(self.steps[: i + 1]) if s.set_weight is not None), 0
        )
        total = weight + experiment.weight_of("canary") + experiment.weight_of("stable")
        if weighted and total > self.max_weight:
            raise ValueError(
                f"steps[{i}].experiment: the canary's weight {weight} and the templates' weights"
                f" add up to {total}, above {self.max_weight} (the stable's weight would be"
                " negative)"
            )

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

    def experiment_groups(self) -> set[str]:
        """The pod groups its experiments' templates make (``ExperimentTemplate.group``)."""
        routed = self.traffic_routing is not None
        return {t.group(routed) for s in self.steps if s.experiment for t in s.experiment.templates}


def _weights_over(data: Any) -> list[dict[str, Any]]:
    """Pydantic's errors for the raw steps' setWeight above the total they are out of."""
    if not isinstance(data, dict):
        return []
    routing = data.get("trafficRouting", data.get("traffic_routing"))
    top = 100
    if isinstance(routing, dict):
        given = routing.get("maxTrafficWeight", routing.get("max_traffic_weight", 100))
        top = given if isinstance(given, int) and not isinstance(given, bool) else 100
    steps = data.get("steps")
    out = []
    for i, step in enumerate(steps if isinstance(steps, list | tuple) else ()):
        key = next(
            (k for k in ("setWeight", "set_weight") if isinstance(step, dict) and k in step), None
        )
        weight = step[key] if key else None
        if isinstance(weight, int) and not isinstance(weight, bool) and weight > top:
            loc = ("steps", i, key)
            out.append({"type": "less_than_equal", "loc": loc, "input": weight, "ctx": {"le": top}})
    return out
