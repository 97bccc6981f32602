"""Policies out to the live executors: Argo Rollouts, Flagger, Kubernetes, ingress-nginx, Istio.

Each executor module has ``export(policy, target) -> Export``. What an executor cannot express
is refused with ``NotExpressibleError`` naming the field — never silently approximated.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from policies.base import dump_yaml

__all__ = ["EXECUTORS", "Export", "Target", "executors_for", "export"]

EXECUTORS = ("argo", "flagger", "kubernetes", "nginx", "istio")


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

    executor: str
    manifests: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)

    def to_yaml(self) -> str:
        return "---\n".join(dump_yaml(m) for m in self.manifests)


def export(policy, to: str, target: Target | None = None) -> Export:
    """Export ``policy`` for executor ``to`` (one of EXECUTORS)."""
    if to not in EXECUTORS:
        from policies.errors import PolicyError

        raise PolicyError(f"unknown executor {to!r} (choose from {', '.join(EXECUTORS)})")
    module = importlib.import_module(f"policies.exporters.{to}")
    return module.export(policy, target or Target())


def executors_for(policy) -> dict[str, str | None]:
    """For each executor: None if it can express ``policy``, else the reason it cannot."""
    from policies.errors import NotExpressibleError

    out: dict[str, str | None] = {}
    for name in EXECUTORS:
        try:
            export(policy, name)
            out[name] = None
        except NotExpressibleError as exc:
            out[name] = str(exc)
    return out
