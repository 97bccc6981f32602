"""Tuning's vocabulary: search spaces of release policies, and what "best" means.

A team does not want "the policy with the lowest sample mean on 200 runs"; it wants the schedule
that hurts a bad release least *given* that good releases still ship within the rollout-time
budget and are rarely rolled back. A scenario's ``tune:`` section (``TuneSpec``) says so: the
families' knobs to search (``CanarySpace``, ``ProgressiveSpace``, ``BlueGreenSpace``: every
combination is one candidate policy, built by the executors' own field names and validated
like any policy file), the ``Objective`` to minimise and the ``Constraint``s to respect, with
the indifference and the confidence the search must honour. ``sim.tune.search`` runs the search,
``sim.tune.selection`` is its statistics.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from policies.base import Model, validate_model
from policies.durations import Duration, format_duration, parse_duration
from policies.errors import NotExpressibleError, PolicyError
from policies.exporters import EXECUTORS, export
from policies.loading import parse_policy
from sim.tune.selection import ConstraintCheck
from sim.world.model import World

__all__ = [
    "OBJECTIVE_METRICS",
    "BlueGreenSpace",
    "CanarySpace",
    "Candidate",
    "Constraint",
    "Objective",
    "ProgressiveSpace",
    "TuneSpec",
    "candidates",
    "expressible",
    "parse_tune_spec",
    "stratum_weights",
]

OBJECTIVE_METRICS = ("excess_bad_requests", "bad_requests", "failed_requests", "slow_requests",
                     "users_hurt", "users_exposed", "error_budget_used", "extra_pod_seconds",
                     "candidate_requests", "false_rollback", "escaped")  # fmt: skip
_EVENTS = ("rollout_duration", "t_detect", "t_rollback_start", "t_mitigated", "t_fault")
_RATES = ("false_rollback", "escaped")
Statistic = Annotated[str, Field(pattern=r"^(mean|p([1-9]\d?(\.\d+)?))$")]
Releases = Literal["all", "good", "bad"] | tuple[str, ...]


# ---------------------------------------------------------------------------- objectives


def stratum_weights(world: World, releases) -> dict[str, float]:
    """{class: weight} of the releases a statistic is about, weights summing to 1."""
    if isinstance(releases, str):
        keep = [c for c in world.releases if releases == "all" or c.is_bad == (releases == "bad")]
    else:
        keep = [c for c in world.releases if c.name in releases]
    total = sum(c.probability for c in keep)
    if not keep or total <= 0:
        raise PolicyError(f"no release class with probability > 0 matches {releases!r}")
    return {c.name: c.probability / total for c in keep}


class Objective(Model):
    """What to minimise: ``metric``'s mean (or quantile ``pNN``) over ``releases``.

    A quantile cannot be observed per replication, so it is taken over ``batch`` replications
    per observation (default 20 per class): the target is then the expected batch quantile.
    """

    metric: Literal[OBJECTIVE_METRICS] = "excess_bad_requests"
    statistic: Statistic = "mean"
    releases: Releases = "all"
    batch: int | None = Field(None, ge=1)

    @property
    def units(self) -> int:
        return self.batch or (1 if self.statistic == "mean" else 20)

    def label(self) -> str:
        who = "" if self.releases == "all" else f" of {self.releases} releases"
        return f"{self.statistic} {self.metric}{who}".replace("_", " ")


def _number(value: float | str) -> float:
    """A number, a percentage ("5%") or a duration ("30m")."""
    if isinstance(value, str):
        text = value.strip()
        return float(text[:-1]) / 100 if text.endswith("%") else parse_duration(text)
    return float(value)


class Constraint(Model):
    """``statistic`` of ``metric`` over ``releases`` must stay ≤ ``max``.

    ``pNN ≤ max`` is checked as P(metric > max) ≤ 1 − NN/100: the same statement, as a mean of
    indicators, bounded, so its confidence sequence needs no normality. ``missing``: an event
    that never happened (a good release never promoted) counts as exceeding (``exceed``: "95 %
    of good releases finish within 30 minutes") or is left out (``ignore``). ``tolerance``: a
    candidate this close below the limit may be dropped (units of the checked mean; default a
    quarter of 1 − NN/100 or of a rate's limit, else a tenth); ``bounds``: the metric's range
    where it has no natural one."""

    metric: str
    statistic: Statistic = "mean"
    releases: Releases = "all"
    max: float | str
    tolerance: float | str | None = None
    bounds: tuple[float, float] | None = None
    missing: Literal["exceed", "ignore"] = "exceed"

    @model_validator(mode="after")
    def _known(self) -> Constraint:
        from sim.engine.outcome import OUTCOME_FIELDS

        text = ("policy", "error", "seed", "outcome", "detected_by", "release_class", "replication")
        if self.metric not in OUTCOME_FIELDS or self.metric in text:
            raise ValueError(f"metric {self.metric!r} is not a numeric outcome field")
        _ = self.limit  # parse now: a bad value is a load error
        if self.tolerance is not None and not _number(self.tolerance) > 0:
            raise ValueError(f"tolerance {self.tolerance!r} must be > 0")
        return self

    @property
    def quantile(self) -> float | None:
        return None if self.statistic == "mean" else float(self.statistic[1:]) / 100

    @property
    def limit(self) -> float:
        return _number(self.max)

    @property
    def _tolerance(self) -> float | None:
        return None if self.tolerance is None else _number(self.tolerance)

    def label(self) -> str:
        who = "" if self.releases == "all" else f" of {self.releases} releases"
        shown = format_duration(self.limit) if self.metric in _EVENTS else f"{self.limit:g}"
        return f"{self.statistic} {self.metric}{who} ≤ {shown}".replace("_", " ")

    def check(self, world: World, replicas: int, index: int) -> ConstraintCheck:
        """The bounded mean the procedure checks, in the units of that mean."""
        q, name = self.quantile, f"c{index}: {self.label()}"
        if q is not None:
            lo, hi, limit = 0.0, 1.0, 1.0 - q
            if self.missing == "ignore":
                lo, hi, limit = -(1.0 - q), q, 0.0
            return ConstraintCheck(name, limit, self._tolerance or (1 - q) / 4, lo, hi)
        lo, hi = self.bounds or self._natural(world, replicas)
        limit = self.limit
        if self.missing == "ignore" and self.metric in _EVENTS:
            lo, hi, limit = lo - limit, hi - limit, 0.0
        tol = self._tolerance or abs(self.limit) / (4 if self.metric in _RATES else 10)
        return ConstraintCheck(name, limit, tol or 0.01 * (hi - lo), lo, hi)

    def _natural(self, world: World, replicas: int) -> tuple[float, float]:
        if self.metric in _RATES:
            return 0.0, 1.0
        if self.metric in _EVENTS:
            return 0.0, world.horizon
        if self.metric == "extra_pod_seconds":
            return 0.0, 2.0 * replicas * world.horizon  # at most a second copy of the service
        if self.metric in ("users_hurt", "users_exposed"):
            return 0.0, float(world.users.count)
        raise PolicyError(f"give bounds: [low, high] for {self.metric} (it has no natural range)")

    def values(self, rows, high: float) -> np.ndarray:
        """Per replication, the value whose mean is checked (see ``check``); ``high``: what a
        missing event counts as under ``missing: exceed`` (the top of the metric's range)."""
        x = rows[self.metric].to_numpy(dtype=float)
        happened = ~np.isnan(x)
        q = self.quantile
        if q is not None:
            over = np.where(happened, x > self.limit, True).astype(float)
            return np.where(happened, over - (1 - q), 0.0) if self.missing == "ignore" else over
        if self.missing == "ignore":
            return np.where(happened, x - self.limit, 0.0)
        return np.where(happened, x, high)


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
            k, judged = self.kayenta, {"name": "error-rate", "measure": "errorRate"}
            judged |= {"direction": "increase", "critical": True}
            scores = {"passScore": k.pass_score, "marginalScore": k.marginal_score}
            return {"provider": {"kayenta": scores | {"step": interval / k.points,
                                                      "metrics": [judged]}}}  # fmt: skip
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
    exportable_to: Literal[EXECUTORS] | None = None

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
