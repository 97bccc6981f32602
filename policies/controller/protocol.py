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

from dataclasses import dataclass, field
from typing import Literal

from policies.common import RouteMatch
from policies.measures import Observation

__all__ = [
    "GROUP_VERSION",
    "Action",
    "Approved",
    "CancelTimer",
    "Event",
    "Measure",
    "MeasurementTaken",
    "PodsChanged",
    "RollbackRequested",
    "Scale",
    "SetMatchRoute",
    "SetSelectors",
    "SetWeight",
    "StartAnalysis",
    "StartTimer",
    "Started",
    "Status",
    "StatusChanged",
    "StopAnalysis",
    "TimerFired",
]

GroupName = Literal["stable", "canary", "primary"]
GROUP_VERSION: dict[str, str] = {"stable": "stable", "canary": "canary", "primary": "canary"}
"""Which version each pod group runs (the version names gates use: stable = old, canary = new)."""

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


Event = Started | TimerFired | PodsChanged | MeasurementTaken | Approved | RollbackRequested

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
class StatusChanged:
    """The rollout's phase changed; ``reason`` says why (for traces and the live log)."""

    status: Status
    reason: str = ""
    step: int | None = None
    detail: dict = field(default_factory=dict)


Action = (
    Scale
    | SetWeight
    | SetSelectors
    | SetMatchRoute
    | StartTimer
    | CancelTimer
    | StartAnalysis
    | Measure
    | StopAnalysis
    | StatusChanged
)
