"""The live executor: the simulator's own controller, on the wall clock, against HAProxy and
Prometheus — and the loopback bench that checks the simulator against reality (DESIGN §2).

Public surface (imported lazily: ``import live`` loads nothing heavy, and the CLI's
``--help`` stays instant):

- ``LiveExecutor``, ``LiveSettings``, ``ExecutorResult``, ``EXIT`` — run a policy live.
- ``HAProxyRouter``, ``RuntimeAPI``, ``RouterError`` — weights through the admin socket.
- ``PrometheusMetrics``, ``PrometheusAPI``, ``Reading`` — gate windows from Prometheus.
- ``StateDir`` — the state folder (event log, PID) a restarted executor resumes from.
- ``Bench``, ``BackendSpec`` — the loopback bench (HAProxy, Prometheus, backends, load).
- ``calibrate``, ``predict``, ``bench_plan`` — simulation against reality; ``hold_experiment``
  — the designed experiment behind a gap (live windows against simulated, the gate replayed).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "EXIT",
    "BackendSpec",
    "Bench",
    "ExecutorResult",
    "HAProxyRouter",
    "LiveExecutor",
    "LiveSettings",
    "PrometheusAPI",
    "PrometheusMetrics",
    "Reading",
    "RouterError",
    "RuntimeAPI",
    "StateDir",
    "bench_plan",
    "calibrate",
    "hold_experiment",
    "predict",
]

_HOME = {
    "EXIT": "live.executor",
    "ExecutorResult": "live.executor",
    "LiveExecutor": "live.executor",
    "LiveSettings": "live.executor",
    "HAProxyRouter": "live.haproxy",
    "RouterError": "live.haproxy",
    "RuntimeAPI": "live.haproxy",
    "PrometheusAPI": "live.prometheus",
    "PrometheusMetrics": "live.prometheus",
    "Reading": "live.prometheus",
    "StateDir": "live.journal",
    "BackendSpec": "live.bench",
    "Bench": "live.bench",
    "calibrate": "live.calibrate",
    "predict": "live.calibrate",
    "hold_experiment": "live.experiment",
    "bench_plan": "live.scenario",
}


def __getattr__(name: str) -> Any:
    try:
        module = _HOME[name]
    except KeyError:
        raise AttributeError(f"module 'live' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
