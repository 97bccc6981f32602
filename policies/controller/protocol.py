"""The controller's language: events it receives and actions it returns (DESIGN §2).

The world is described to the controller as pod groups (ReplicaSets) and two Services:
``stable`` (the stable/primary/active Service) and ``canary`` (the canary/preview Service). A
router weight sends ``weight`` percent of requests to the canary Service and the rest to the
stable one; inside a Service requests spread over the available pods of the groups it
selects. That one picture covers every executor:

* Argo basic canary, Kubernetes rolling update, batch release: one Service selects both groups,
  so traffic follows pods.
* Argo canary with trafficRouting, Flagger: the router weight splits the two Services.
* Blue-green: the stable (active) Service's selector is switched from one group to the other.

Groups: ``stable`` runs the old version, ``canary`` the new one, and ``primary`` the new one
on Flagger's primary Deployment after promotion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, assert_never

from policies.common import RouteMatch
from policies.measures import Observation

__all__ = [
    "GROUP_VERSION",
    "Action",
    "Approved",
    "AwaitingApproval",
    "CancelTimer",
    "Cause",
    "DeadlineExceeded",
    "Detector",
    "Event",
    "FailedChecks",
    "GateVerdict",
    "Intervention",
    "Measure",
    "MeasurementTaken",
    "PluginFinished",
    "PluginPhase",
    "PodsChanged",
    "Progress",
    "RollbackRequested",
    "RunPlugin",
    "Scale",
    "SetLoad",
    "SetMatchRoute",
    "SetMirror",
    "SetSelectors",
    "SetSessionAffinity",
    "SetWeight",
    "StartAnalysis",
    "StartTimer",
    "Started",
    "Status",
    "StatusChanged",
    "StopAnalysis",
    "TimerFired",
    "detector",
]

GroupName = Literal[
    "stable",
    "canary",
    "primary",
    "experiment-canary",
    "experiment-stable",
    "experiment-canary-idle",
    "experiment-stable-idle",
]
GROUP_VERSION: dict[str, str] = {
    "stable": "stable",
    "canary": "canary",
    "primary": "canary",
    "experiment-canary": "canary",
    "experiment-stable": "stable",
    "experiment-canary-idle": "canary",
    "experiment-stable-idle": "stable",
}
"""Which version each pod group runs (the version names gates use: stable = old, canary = new).

The ``experiment-*`` groups are an Argo experiment's ReplicaSets, by the spec they copy: those
that serve (a routed template with a weight, whose Service the controller adds to the
Service of its version; or, in a basic canary, a template whose pods keep the Rollout's labels)
and the ``-idle`` ones, which no Service selects (they cost capacity and get no requests)."""

Status = Literal["Progressing", "Paused", "Promoted", "Aborted", "RolledBack"]

# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Started:
    """A new revision is rolled out (the release starts)."""


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: str


@dataclass(frozen=True, slots=True)
class PodsChanged:
    """Available pods per group now (after start-up, readiness and minReadySeconds)."""

    available: dict[str, int]


@dataclass(frozen=True, slots=True)
class MeasurementTaken:
    """The world's answer to a ``Measure`` action."""

    run: str
    metric: str
    observation: Observation


@dataclass(frozen=True, slots=True)
class Approved:
    """A human promotes (``kubectl argo rollouts promote``): ends a pause, approves a batch."""


@dataclass(frozen=True, slots=True)
class RollbackRequested:
    """Someone decided the release is bad: an abort while it rolls out, an undo after promotion."""

    source: str = "human"


PluginPhase = Literal["Successful", "Failed"]


@dataclass(frozen=True, slots=True)
class PluginFinished:
    """The world's answer to a ``RunPlugin``: the step plugin of step ``step`` ended ``phase``
    (as Argo next reads it: the plugin's work and its polling, backoff + 5 s, included)."""

    step: int
    phase: PluginPhase


Event = (
    Started
    | TimerFired
    | PodsChanged
    | MeasurementTaken
    | Approved
    | RollbackRequested
    | PluginFinished
)

# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Scale:
    """A group's desired pods (scale-downs take effect at once, scale-ups after start-up)."""

    group: str
    replicas: int


@dataclass(frozen=True, slots=True)
class SetWeight:
    """Percent of requests the router sends to the canary Service (0 to 100)."""

    weight: float


@dataclass(frozen=True, slots=True)
class SetSelectors:
    """Which groups each Service selects; ``transition_s`` > 0 is a DNS switch: each client
    moves at a uniformly random moment within that many seconds (the TTL)."""

    stable: frozenset[str]
    canary: frozenset[str]
    transition_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SetMatchRoute:
    """Requests matching any entry go to the canary Service whatever the weight (``()`` removes)."""

    name: str
    match: tuple[RouteMatch, ...]


@dataclass(frozen=True, slots=True)
class SetMirror:
    """Copy ``percent`` % of the requests the router sends to the stable Service to the canary
    Service too (Istio's mirror: Flagger ``mirror``/``mirrorWeight``, Argo ``setMirrorRoute``).
    The copies' responses are discarded: they count in the canary's metrics and hurt no one.
    ``match`` limits the copies to matching requests (``()``: every request); ``percent`` 0
    removes the mirror route ``name``. Lands after the router's delay."""

    name: str
    percent: float
    match: tuple[RouteMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class SetLoad:
    """Synthetic requests straight to the canary Service at ``rate`` per second (a load tester,
    as Flagger's blue/green analysis relies on): they count in the canary's metrics and hurt no
    user; 0 stops them. Starts at once (no router in between)."""

    rate: float


@dataclass(frozen=True, slots=True)
class SetSessionAffinity:
    """Flagger's ``sessionAffinity``: a user whom the router sent to the canary gets a cookie
    and from then on goes to the canary whatever the weight, for ``max_age_s`` seconds;
    ``max_age_s`` 0 removes the cookie route (users follow the weight again). Lands after the
    router's delay."""

    max_age_s: float


@dataclass(frozen=True, slots=True)
class StartTimer:
    key: str
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: str


@dataclass(frozen=True, slots=True)
class StartAnalysis:
    run: str
    metrics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Measure:
    """Ask the world for the observation of ``metric`` over the last ``window`` seconds."""

    run: str
    metric: str
    window: float
    quantiles: tuple[float, ...] = ()
    series_step: float | None = None


@dataclass(frozen=True, slots=True)
class StopAnalysis:
    run: str
    phase: str


@dataclass(frozen=True, slots=True)
class RunPlugin:
    """Run the step plugin ``name`` of step ``step`` (Argo's ``Run()``): the world answers with
    ``PluginFinished`` once the plugin has ended, after as long as the plugin takes there."""

    step: int
    name: str


# ----------------------------------------------------------------------------- causes
# Why the status changed, in typed fields a driver matches on (DESIGN §2: never parsed text).

Verdict = Literal["Failed", "Error", "Inconclusive"]
Milestone = Literal[
    "Started",
    "Paused",
    "PauseEnded",
    "Resumed",
    "StepCompleted",
    "Promoting",
    "Promoted",
    "RolledBack",
]


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """An analysis run ended badly: ``run`` is its key (``step-2``, ``background``,
    ``prePromotion``, ``postPromotion``, ``batch-1``), ``metrics`` the deciding metrics that went
    bad (empty when the run itself was invalid), ``step`` the step (or batch) it ran at, if any.
    A step plugin that Failed is one too: ``run`` ``plugin-2``, ``metrics`` the plugin's name."""

    run: str
    metrics: tuple[str, ...]
    step: int | None
    phase: Verdict


@dataclass(frozen=True, slots=True)
class FailedChecks:
    """Flagger: ``metric`` failed its check, making ``count`` failed checks; with status
    ``Aborted`` the count reached ``threshold`` and the canary is rolled back. ``step``: the
    tick of explain's listing the walk was held at (a failed check does not advance it)."""

    metric: str
    count: int
    threshold: int
    step: int | None = None


@dataclass(frozen=True, slots=True)
class Intervention:
    """An abort (``undo`` False) or an undo after promotion (``undo`` True) asked for from
    outside the controller, ``by`` whom: ``human``, ``alert``, or the live executor's own
    guards (``router``, ``missing-data``)."""

    by: str
    undo: bool = False


@dataclass(frozen=True, slots=True)
class DeadlineExceeded:
    """No progress for ``seconds`` (progressDeadlineSeconds); with status ``Aborted`` the
    controller rolled back for it, otherwise it is only reported."""

    seconds: float
    step: int | None = None


@dataclass(frozen=True, slots=True)
class AwaitingApproval:
    """A pause only a person ends (``kubectl argo rollouts promote``): a pause step without a
    duration, a blue-green pause without auto-promotion, a batch awaiting approval, an
    Inconclusive analysis (``verdict``), or a Flagger ``confirm-*`` webhook (``gate``, its type)."""

    step: int | None = None
    verdict: GateVerdict | None = None
    gate: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """Plain progress: started, a timed pause began or ended, resumed, a step (or batch)
    completed, promoting, promoted, rolled back."""

    milestone: Milestone
    step: int | None = None


Cause = GateVerdict | FailedChecks | Intervention | DeadlineExceeded | AwaitingApproval | Progress

Detector = Literal["gate", "deadline", ""]


def detector(cause: Cause) -> Detector:
    """Which of the controller's own detectors a rollback's cause names: ``gate`` (an analysis
    run or Flagger's checks) or ``deadline``; "" when someone outside asked (an alert, a human,
    a guard of the live executor: they record themselves when they fire). Every driver reads
    detection through this one function."""
    match cause:
        case GateVerdict() | FailedChecks():
            return "gate"
        case DeadlineExceeded():
            return "deadline"
        case Intervention() | AwaitingApproval() | Progress():
            return ""
        case never:
            assert_never(never)


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The rollout's phase changed; ``cause`` says why, in typed fields (drivers match on it);
    ``reason`` is the executor's own reason string (for traces and the live log only)."""

    status: Status
    cause: Cause
    reason: str = ""
    step: int | None = None

    @property
    def rolls_back(self) -> bool:
        """The release is being rolled back: an abort, or an undo after promotion."""
        cause = self.cause
        return self.status == "Aborted" or (isinstance(cause, Intervention) and cause.undo)


Action = (
    Scale
    | SetWeight
    | SetSelectors
    | SetMatchRoute
    | SetMirror
    | SetLoad
    | SetSessionAffinity
    | StartTimer
    | CancelTimer
    | StartAnalysis
    | Measure
    | StopAnalysis
    | RunPlugin
    | StatusChanged
)
