"""What a release does: policy objects, gates, the rollout controller. Pure: no simpy, no clock."""

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
