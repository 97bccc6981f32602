"""What a release does: policy objects, gates, the rollout controller. Pure: no simpy, no clock.

The names below are imported when first used (PEP 562), so importing one light module of the
package (``policies.vocabulary``, ``policies.exporters`` for its registry) costs no pydantic:
the command line builds its parser from them and ``--help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "policies.analysis": ("AnalysisRun", "AnalysisTemplate", "Metric", "Phase", "Provider"),
    "policies.base": ("Model",),
    "policies.batch": ("Batch", "BatchRelease"),
    "policies.bluegreen": ("BlueGreen",),
    "policies.canary": ("Canary", "CanaryStep", "Pause", "TrafficRouting"),
    "policies.durations": ("format_duration", "parse_duration"),
    "policies.errors": ("NotExpressibleError", "PolicyError", "RolloutsimError"),
    "policies.flagger": ("ABTest", "FlaggerAnalysis", "FlaggerMetric", "Progressive"),
    "policies.loading": (
        "POLICY_KINDS",
        "Policy",
        "load_policy",
        "parse_policy",
        "policy_from_yaml",
        "policy_json_schema",
        "policy_to_yaml",
    ),
    "policies.measures": ("Observation", "Query", "WindowStats"),
    "policies.rolling": ("RollingUpdate",),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "POLICY_KINDS",
    "ABTest",
    "AnalysisRun",
    "AnalysisTemplate",
    "Batch",
    "BatchRelease",
    "BlueGreen",
    "Canary",
    "CanaryStep",
    "FlaggerAnalysis",
    "FlaggerMetric",
    "Metric",
    "Model",
    "NotExpressibleError",
    "Observation",
    "Pause",
    "Phase",
    "Policy",
    "PolicyError",
    "Progressive",
    "Provider",
    "Query",
    "RollingUpdate",
    "RolloutsimError",
    "TrafficRouting",
    "WindowStats",
    "format_duration",
    "load_policy",
    "parse_duration",
    "parse_policy",
    "policy_from_yaml",
    "policy_json_schema",
    "policy_to_yaml",
]

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from policies.analysis import AnalysisRun, AnalysisTemplate, Metric, Phase, Provider
    from policies.base import Model
    from policies.batch import Batch, BatchRelease
    from policies.bluegreen import BlueGreen
    from policies.canary import Canary, CanaryStep, Pause, TrafficRouting
    from policies.durations import format_duration, parse_duration
    from policies.errors import NotExpressibleError, PolicyError, RolloutsimError
    from policies.flagger import ABTest, FlaggerAnalysis, FlaggerMetric, Progressive
    from policies.loading import (
        POLICY_KINDS,
        Policy,
        load_policy,
        parse_policy,
        policy_from_yaml,
        policy_json_schema,
        policy_to_yaml,
    )
    from policies.measures import Observation, Query, WindowStats
    from policies.rolling import RollingUpdate


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'policies' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
