"""The RolloutController: one pure state machine per policy kind, driven by any clock."""

from __future__ import annotations

from policies.controller.base import ControllerBase
from policies.controller.bluegreen import BlueGreenController
from policies.controller.canary import CanaryController
from policies.controller.flagger import FlaggerController
from policies.controller.protocol import (
    GROUP_VERSION,
    Action,
    Approved,
    AwaitingApproval,
    CancelTimer,
    Cause,
    DeadlineExceeded,
    Detector,
    Event,
    FailedChecks,
    GateVerdict,
    Intervention,
    Measure,
    MeasurementTaken,
    PluginFinished,
    PluginPhase,
    PodsChanged,
    Progress,
    RollbackRequested,
    RunPlugin,
    Scale,
    SetLoad,
    SetMatchRoute,
    SetMirror,
    SetSelectors,
    SetSessionAffinity,
    SetWeight,
    StartAnalysis,
    Started,
    StartTimer,
    StatusChanged,
    StopAnalysis,
    TimerFired,
    detector,
)
from policies.controller.rolling import BatchController, RollingController

__all__ = [
    "GROUP_VERSION",
    "Action",
    "Approved",
    "AwaitingApproval",
    "BatchController",
    "BlueGreenController",
    "CanaryController",
    "CancelTimer",
    "Cause",
    "ControllerBase",
    "DeadlineExceeded",
    "Detector",
    "Event",
    "FailedChecks",
    "FlaggerController",
    "GateVerdict",
    "Intervention",
    "Measure",
    "MeasurementTaken",
    "PluginFinished",
    "PluginPhase",
    "PodsChanged",
    "Progress",
    "RollbackRequested",
    "RollingController",
    "RolloutController",
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
    "StatusChanged",
    "StopAnalysis",
    "TimerFired",
    "detector",
]

_BY_KIND = {
    "Canary": CanaryController,
    "BlueGreen": BlueGreenController,
    "RollingUpdate": RollingController,
    "BatchRelease": BatchController,
    "Progressive": FlaggerController,
    "ABTest": FlaggerController,
}


def RolloutController(policy, replicas: int, rng=None) -> ControllerBase:
    """The controller for ``policy`` on a service of ``replicas`` pods (a class-like factory)."""
    try:
        cls = _BY_KIND[policy.kind]
    except KeyError:
        raise TypeError(f"no controller for policy kind {policy.kind!r}") from None
    return cls(policy, replicas, rng)
