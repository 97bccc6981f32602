"""Core Kubernetes objects every runbook executor writes: Deployments and Services.

The kubernetes, ingress-nginx and Istio exports run two Deployments, ``<service>-<version>``
labelled ``app``/``version`` (which Services, Ingress backends and subsets select), beside the
router's own objects. Kubernetes takes whole seconds, so a fraction that rounding would change
is refused (``whole_seconds``). ``STEP`` marks the object each step of a runbook applies.
"""

from __future__ import annotations

from typing import Any, TypedDict

from policies.errors import NotExpressibleError
from policies.exporters import Target

__all__ = ["STEP", "deployment", "deployment_timing", "service", "whole_seconds"]

STEP = "rolloutsim.io/step"
"""The annotation naming the step an object of a runbook belongs to."""


def whole_seconds(executor: str, field: str, seconds: float) -> int:
    """Kubernetes takes whole seconds; rounding a fraction would change the policy: refuse."""
    if seconds != int(seconds):
        raise NotExpressibleError(executor, field, f"{seconds} s is not a whole number of seconds")
    return int(seconds)


class DeploymentTiming(TypedDict):
    """The keyword arguments ``deployment_timing`` gives ``deployment``."""

    min_ready: int
    deadline: int


def deployment_timing(executor: str, policy) -> DeploymentTiming:
    """A policy's ``minReadySeconds`` and ``progressDeadlineSeconds`` as ``deployment`` takes
    them (``min_ready``, ``deadline``), refused if not whole seconds."""
    deadline = policy.progress_deadline_seconds
    return {
        "min_ready": whole_seconds(executor, "minReadySeconds", policy.min_ready_seconds),
        "deadline": whole_seconds(executor, "progressDeadlineSeconds", deadline),
    }


def deployment(
    target: Target,
    version: str | None,
    image: str,
    replicas: int,
    *,
    min_ready: int = 0,
    deadline: int = 600,
    fences: tuple[int | str, int | str] | None = None,
) -> dict[str, Any]:
    """``<service>-<version>`` labelled ``app``/``version``, which Services and subsets select."""
    labels = {"app": target.service} | ({"version": version} if version else {})
    container: dict[str, Any] = {"name": target.service, "image": image}
    container["ports"] = [{"name": "http", "containerPort": target.port}]
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": dict(labels)}}
    spec |= {"minReadySeconds": min_ready, "progressDeadlineSeconds": deadline}
    if fences is not None:
        rolling = {"maxSurge": fences[0], "maxUnavailable": fences[1]}
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": rolling}
    template = {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}}
    spec["template"] = template  # separate dicts: no YAML anchors in the output
    name = f"{target.service}-{version}" if version else target.service
    meta = {"name": name, "namespace": target.namespace, "labels": labels}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def service(target: Target, name: str, selector: dict[str, str]) -> dict[str, Any]:
    """A ClusterIP Service on the target port."""
    meta = {"name": name, "namespace": target.namespace, "labels": {"app": target.service}}
    ports = [{"name": "http", "port": target.port, "targetPort": "http"}]
    spec = {"selector": selector, "ports": ports}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}
