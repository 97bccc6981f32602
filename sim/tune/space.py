"""Tuning's search spaces of release policies and the ``tune:`` section that names them.

A scenario's ``tune:`` section (``TuneSpec``) says what to search and what "best" means: the
families' knobs to search (``CanarySpace``, ``ProgressiveSpace``, ``BlueGreenSpace``: every
combination is one candidate policy, built by the executors' own field names and validated
like any policy file), the ``Objective`` to minimise and the ``Constraint``s to respect
(``sim.tune.objectives``), with the indifference and the confidence the search must honour.
``sim.tune.search`` runs the search, ``sim.tune.selection`` is its statistics.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from policies.base import Model, validate_model
from policies.durations import Duration, format_duration
from policies.errors import NotExpressibleError, PolicyError
from policies.exporters import Executor, export
from policies.loading import parse_policy
from sim.tune.objectives import Constraint, Objective

__all__ = [
    "BlueGreenSpace",
    "CanarySpace",
    "Candidate",
    "ProgressiveSpace",
    "TuneSpec",
    "candidates",
    "expressible",
    "parse_tune_spec",
]

# ---------------------------------------------------------------------------- search spaces


class ThresholdGate(Model):
    """Argo query gate: the canary's error rate per window at most ``max``, or its success rate
    at least ``min`` (default: error rate ≤ 1 %)."""

    measure: Literal["errorRate", "successRate"] = "errorRate"
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> ThresholdGate:
        success = self.measure == "successRate"
        if (self.min is None or self.max is not None) if success else self.min is not None:
            raise ValueError("give max with errorRate, min with successRate")
        return self

    def condition(self) -> str:
        if self.measure == "successRate":
            return f"result[0] >= {self.min:g}"
        return f"result[0] <= {0.01 if self.max is None else self.max:g}"


class KayentaGate(Model):
    points: int = Field(5, ge=2)  # judged points per window: step = interval / points
    pass_score: float = 95.0
    marginal_score: float = 75.0


class SprtGate(Model):
    alpha: float = 0.05
    beta: float = 0.2
    relative_risk: float = 2.0


class MsprtGate(Model):
    alpha: float = 0.05


GateKind = Literal["none", "threshold", "kayenta", "sprt", "msprt"]
_RESERVED = {"kind", "name", "steps", "analysis", "analysisTemplates"}


class _Space(Model):
    name: str = Field("", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$|^$")
    fixed: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fixed(self) -> _Space:
        clash = sorted(_RESERVED & set(self.fixed))
        if clash:
            raise ValueError(f"fixed may not set {', '.join(clash)}: the space generates them")
        return self


class CanarySpace(_Space):
    """Argo canaries: ``steps`` weights from ``firstWeight`` growing ×``growth`` (or explicit
    ``weights`` schedules), each followed by ``pause``; a background analysis from step 1
    every ``interval`` with ``failureLimit``, judged by ``gate``. Weights must rise below 100."""

    kind: Literal["Canary"]
    steps: tuple[int, ...] = (2,)
    first_weight: tuple[int, ...] = (10,)
    growth: tuple[float, ...] = (2.0,)
    weights: tuple[tuple[int, ...], ...] = ()
    pause: tuple[Duration, ...] = Field((600.0,), min_length=1)
    interval: tuple[Duration, ...] = Field((60.0,), min_length=1)
    failure_limit: tuple[int, ...] = Field((1,), min_length=1)
    gate: tuple[GateKind, ...] = Field(("threshold",), min_length=1)
    threshold: ThresholdGate = ThresholdGate()
    kayenta: KayentaGate = KayentaGate()
    sprt: SprtGate = SprtGate()
    msprt: MsprtGate = MsprtGate()

    @model_validator(mode="after")
    def _some_schedule(self) -> CanarySpace:
        if not self.schedules():
            raise ValueError("no weight schedule rises from above 0 to below 100")
        return self

    def schedules(self) -> list[tuple[int, ...]]:
        """Weight schedules: explicit ones, then every steps × firstWeight × growth."""
        out = list(self.weights)
        for n, w, g in itertools.product(self.steps, self.first_weight, self.growth):
            out.append(tuple(round(w * g**i) for i in range(n)))
        rising = [s for s in out if s and all(0 < a < b for a, b in itertools.pairwise(s))]
        return list(dict.fromkeys(s for s in rising if s[0] > 0 and s[-1] < 100))

    def generate(self) -> list[tuple[dict, dict]]:
        out = []
        for ws, pause, interval, limit, gate in itertools.product(
            self.schedules(), self.pause, self.interval, self.failure_limit, self.gate
        ):
            uses_limit = gate in ("threshold", "kayenta")
            if gate == "none":  # knobs a gate-less canary does not have: one candidate only
                interval = self.interval[0]
            if not uses_limit:
                limit = self.failure_limit[0]
            spec: dict[str, Any] = {"kind": "Canary", **self.fixed, "steps": []}
            for w in ws:
                spec["steps"] += [{"setWeight": w}, {"pause": {"duration": pause}}]
            tag = f"w{'-'.join(map(str, ws))}-p{_short(pause)}"
            if gate != "none":
                metric = {"name": gate, "interval": interval, **self._judge(gate, interval)}
                if uses_limit:
                    metric["failureLimit"] = limit
                spec["analysisTemplates"] = [{"name": "gate", "metrics": [metric]}]
                spec["analysis"] = {"startingStep": 1, "templates": [{"templateName": "gate"}]}
                tag += f"-i{_short(interval)}" + (f"-f{limit}" if uses_limit else "")
            params = {"weights": "/".join(map(str, ws)), "pause": pause}
            params["interval"] = interval if gate != "none" else math.nan
            params["failureLimit"] = limit if uses_limit else math.nan
            out.append((spec, params | {"gate": gate, "tag": f"{tag}-{gate}"}))
        return out

    def _judge(self, gate: str, interval: float) -> dict[str, Any]:
        if gate == "threshold":
            query = {"query": {"measure": self.threshold.measure}}
            return {"successCondition": self.threshold.condition(), "provider": query}
        if gate == "kayenta":  # Mann-Whitney on the error rate of `points` points per window
            k = self.kayenta
            judged: dict[str, Any] = {"name": "error-rate", "measure": "errorRate"}
            judged |= {"direction": "increase", "critical": True}
            scores = {"passScore": k.pass_score, "marginalScore": k.marginal_score}
            kayenta = scores | {"step": interval / k.points, "metrics": [judged]}
            return {"provider": {"kayenta": kayenta}}
        if gate == "sprt":
            s = self.sprt
            test = {"test": "sprt", "alpha": s.alpha, "beta": s.beta}
            return {"provider": {"sequential": test | {"relativeRisk": s.relative_risk}}}
        return {"provider": {"sequential": {"test": "msprt", "alpha": self.msprt.alpha}}}


class ProgressiveSpace(_Space):
    """Flagger canaries: +``stepWeight`` per healthy ``interval`` up to ``maxWeight``, rolled
    back after ``threshold`` failed checks (metrics from ``fixed.analysis.metrics``, default
    request-success-rate ≥ 99 %)."""

    kind: Literal["Progressive"]
    step_weight: tuple[int, ...] = Field((10,), min_length=1)
    max_weight: tuple[int, ...] = Field((50,), min_length=1)
    interval: tuple[Duration, ...] = Field((60.0,), min_length=1)
    threshold: tuple[int, ...] = Field((2,), min_length=1)

    def generate(self) -> list[tuple[dict, dict]]:
        out = []
        base = dict(self.fixed.get("analysis", {}))
        rest = {k: v for k, v in self.fixed.items() if k != "analysis"}
        for step, top, interval, threshold in itertools.product(
            self.step_weight, self.max_weight, self.interval, self.threshold
        ):
            metrics = base.get("metrics") or [
                {
                    "name": "request-success-rate",
                    "interval": interval,
                    "thresholdRange": {"min": 99},
                }
            ]
            knobs = {"interval": interval, "threshold": threshold, "stepWeight": step}
            analysis = base | knobs | {"maxWeight": top, "metrics": metrics}
            spec = {"kind": "Progressive", **rest, "analysis": analysis}
            tag = f"s{step}-m{top}-i{_short(interval)}-t{threshold}"
            out.append((spec, {"maxWeight": top, **knobs, "tag": tag}))
        return out


class BlueGreenSpace(_Space):
    """Argo blue-green: a post-promotion analysis of ``analysis`` length (0: none; it watches
    real traffic after the switch, while the old pods wait ``scaleDownDelaySeconds``),
    ``autoPromotionSeconds`` on the preview, ``scaleDownDelaySeconds``."""

    kind: Literal["BlueGreen"]
    analysis: tuple[Duration, ...] = (0.0,)
    interval: tuple[Duration, ...] = Field((60.0,), min_length=1)
    failure_limit: tuple[int, ...] = Field((1,), min_length=1)
    threshold: ThresholdGate = ThresholdGate()
    auto_promotion_seconds: tuple[Duration, ...] = (0.0,)
    scale_down_delay_seconds: tuple[Duration, ...] = (30.0,)
    pre_promotion_analysis: tuple[Duration, ...] = ()

    @model_validator(mode="after")
    def _no_preview_analysis(self) -> BlueGreenSpace:
        if any(self.pre_promotion_analysis):
            raise ValueError(
                "prePromotionAnalysis: the simulated preview serves no user traffic, so a "
                "pre-promotion analysis only sees empty windows (Argo: Errors, then abort); "
                "tune autoPromotionSeconds (the wait) or analysis (post-promotion) instead"
            )
        return self

    def generate(self) -> list[tuple[dict, dict]]:
        out = []
        knobs = (self.analysis, self.interval, self.failure_limit)
        waits = (self.auto_promotion_seconds, self.scale_down_delay_seconds)
        for length, interval, limit, auto, delay in itertools.product(*knobs, *waits):
            spec: dict[str, Any] = {"kind": "BlueGreen", **self.fixed}
            spec |= {"autoPromotionSeconds": auto, "scaleDownDelaySeconds": delay}
            tag = f"a{_short(length)}"
            if length > 0:
                count = max(1, math.ceil(length / interval))
                metric = {
                    "name": "gate",
                    "interval": interval,
                    "count": count,
                    "failureLimit": min(limit, count),
                    "successCondition": self.threshold.condition(),
                    "provider": {"query": {"measure": self.threshold.measure}},
                }
                spec["analysisTemplates"] = [{"name": "gate", "metrics": [metric]}]
                spec["postPromotionAnalysis"] = {"templates": [{"templateName": "gate"}]}
                tag += f"-i{_short(interval)}-f{limit}"
            params = {
                "analysis": length,
                "interval": interval if length else math.nan,
                "failureLimit": limit if length else math.nan,
                "autoPromotionSeconds": auto,
                "scaleDownDelaySeconds": delay,
                "tag": f"{tag}-ap{_short(auto)}-sd{_short(delay)}",
            }
            out.append((spec, params))
        return out


def _short(seconds: float) -> str:
    text = format_duration(seconds)
    return str(text).replace(".", "_") if not isinstance(text, str) else text


Space = Annotated[CanarySpace | ProgressiveSpace | BlueGreenSpace, Field(discriminator="kind")]


class TuneSpec(Model):
    """A scenario's ``tune:`` section: the search space, the goal and the statistics.

    ``indifference`` (δ, objective units) and ``confidence`` are the guarantee (sim.tune.selection);
    ``firstStage`` observations per candidate first, at most ``maxObservations``; an
    observation is ``perClass`` replications of each release class (default 1 each);
    ``includePolicies``: the scenario's own policies compete too; ``exportableTo``: keep only
    what that executor can express.
    """

    space: tuple[Space, ...] = Field(min_length=1)
    objective: Objective = Objective()
    constraints: tuple[Constraint, ...] = ()
    indifference: float = Field(gt=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    first_stage: int = Field(20, ge=5)
    max_observations: int = Field(2560, ge=5)
    per_class: dict[str, int] | None = None
    include_policies: bool = True
    exportable_to: Executor | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("objective"), str):
            data = {**data, "objective": {"metric": data["objective"]}}
        return data


def parse_tune_spec(data: Any, *, file: str | None = None, path: str = "tune") -> TuneSpec:
    """Validate a ``tune:`` mapping; errors name the field as the user wrote it."""
    try:
        return validate_model(TuneSpec, data, file=file, path=path)
    except PolicyError as exc:  # drop the union's tag pydantic puts in the path
        clean = re.sub(r"\.(Canary|Progressive|BlueGreen)(?=[.\[]|$)", "", exc.path)
        raise PolicyError(exc.message, path=clean, file=exc.file) from None


# ---------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """One policy of the search (or of the scenario), with the knob values that made it."""

    name: str
    policy: Any = field(repr=False)
    family: str
    params: dict[str, Any] = field(default_factory=dict)


def candidates(spec: TuneSpec, incumbents: Mapping[str, Any] | None = None) -> list[Candidate]:
    """Every distinct policy of the spaces (first name wins), after the scenario's own."""
    out: dict[str, Candidate] = {}
    seen: dict[str, str] = {}
    if spec.include_policies:
        for name, policy in (incumbents or {}).items():
            out[name] = Candidate(name, policy, "scenario", {})
            seen[json.dumps(policy.to_dict() | {"name": ""}, sort_keys=True)] = name
    for i, space in enumerate(spec.space):
        prefix = space.name or space.kind.lower()
        for spec_dict, params in space.generate():
            name = f"{prefix}-{params.pop('tag')}".lower()
            policy = parse_policy(spec_dict | {"name": name}, path=f"tune.space[{i}]")
            key = json.dumps(policy.to_dict() | {"name": ""}, sort_keys=True)
            if key not in seen and name not in out:
                seen[key] = name
                out[name] = Candidate(name, policy, space.kind, params)
    return list(out.values())


def expressible(policy, executor: str) -> str | None:
    """None if ``executor`` can express ``policy``, else its refusal (one line)."""
    try:
        export(policy, executor)
    except NotExpressibleError as exc:
        return str(exc)
    return None
