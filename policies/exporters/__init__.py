"""Policies out to the live executors: Argo Rollouts, Flagger, Kubernetes, ingress-nginx, Istio.

The registry: ``EXECUTORS`` names the export targets (``policies.vocabulary.Executor``), and
each has its module here, ``policies.exporters.<executor>``, with ``export(policy, target) ->
Export``. What an executor cannot express is refused with ``NotExpressibleError`` naming the
field — never silently approximated. The executors' shared machinery lives beside them:
``manifests`` (core Kubernetes objects), ``runbook`` (the kubectl runbook), ``checks`` (analysis
as Prometheus queries judged in the runbook), ``sequences`` (Argo's canary and blue-green
orders, with or without a router), ``flagger_loop`` (Flagger's loop on a router), ``promql``
(queries both ways) and ``crds``/``k8s_validate`` (schema checks). Importing this module is
cheap (the command line reads ``EXECUTORS`` to build its parser); an executor's module is
imported when it is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from policies.errors import NotExpressibleError, PolicyError
from policies.vocabulary import EXECUTORS, Executor

__all__ = ["EXECUTORS", "Executor", "Export", "Target", "executors_for", "export"]


@dataclass(frozen=True)
class Target:
    """The live objects a policy is exported for (names the policy itself does not know)."""

    service: str = "app"
    namespace: str = "default"
    image: str = "registry.example.com/app:new"
    stable_image: str = "registry.example.com/app:stable"
    port: int = 8080
    host: str = "app.example.com"
    replicas: int | None = None  # default: the policy's replicas, else 10
    prometheus: str = "http://prometheus.monitoring:9090"

    def replicas_for(self, policy) -> int:
        return self.replicas or getattr(policy, "replicas", None) or 10


@dataclass
class Export:
    """Manifests (Kubernetes objects as dicts, in apply order) and any extra files (runbooks)."""

    executor: Executor
    manifests: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)

    def to_yaml(self) -> str:
        from policies.base import dump_yaml  # yaml and pydantic: not needed for the registry

        return "---\n".join(dump_yaml(m) for m in self.manifests)


def export(policy, to: Executor | str, target: Target | None = None) -> Export:
    """Export ``policy`` for executor ``to`` (one of EXECUTORS)."""
    if to not in EXECUTORS:
        raise PolicyError(f"unknown executor {to!r} (choose from {', '.join(EXECUTORS)})")
    module = importlib.import_module(f"policies.exporters.{to}")
    return module.export(policy, target or Target())


def executors_for(policy) -> dict[Executor, str | None]:
    """For each executor: None if it can express ``policy``, else the reason it cannot."""
    out: dict[Executor, str | None] = {}
    for name in EXECUTORS:
        try:
            export(policy, name)
            out[name] = None
        except NotExpressibleError as exc:
            out[name] = str(exc)
    return out
