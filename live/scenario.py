"""Which scenarios the loopback bench can realise, and what each live run is.

A calibration scenario is an ordinary scenario file (sim/runs/scenario.py): the simulator runs it
as it is. ``bench_plan`` checks that its world is one the bench can reproduce and derives the
bench's settings from it — refusing, with the field named, anything the bench would only
approximate:

* traffic: a constant rate (the load generator's Poisson arrivals), random routing;
* versions: the stable's error rate; faults that set ``errorRate`` or ``errorRateMultiplier``
  from the release start (the canary backend's error rate), nothing else — no latency
  objective, since a bad request on the bench is a 5xx;
* platform: pods already running (``podStartup: 0``, no ``minReadySeconds``: the backends are
  fixed processes), router delay 0 (HAProxy applies a weight to the next request), no
  capacity limit, and the scrape interval and delay the bench's Prometheus uses;
* operators: no SLO alerts, no human detection; a manual pause is approved after a fixed
  ``approvalDelay``.

Each live run is one policy against one release class. Time scale k: the bench runs the world
k times as fast — rate / k, scrapes every interval × k, every controller delay × k — so the
simulated world needs no change and simulated times are multiplied by k to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.errors import PolicyError

__all__ = ["BenchPlan", "LiveCase", "bench_plan", "case_world", "default_scenario"]


@dataclass(frozen=True)
class LiveCase:
    """One live run: a policy of the scenario against one of its release classes."""

    policy: str
    release: str
    canary_error_rate: float
    replicas: int

    @property
    def name(self) -> str:
        return f"{self.policy}:{self.release}"


@dataclass(frozen=True)
class BenchPlan:
    """The bench settings (wall-clock units) that realise a scenario's world."""

    rate: float
    stable_error_rate: float
    scrape_interval: float
    scrape_delay: float
    horizon: float
    time_scale: float
    approve_after: float | None
    cases: tuple[LiveCase, ...]


def _refuse(path: str, why: str, file: str | None) -> PolicyError:
    return PolicyError(f"the loopback bench cannot realise this: {why}", path=path, file=file)


def bench_plan(loaded, time_scale: float = 1.0) -> BenchPlan:
    """Check a loaded scenario against the bench and give its settings and live runs."""
    from sim.world.distributions import Fixed
    from sim.world.rates import Constant

    file = str(loaded.path) if loaded.path else None
    world = loaded.world
    if time_scale <= 0:
        raise PolicyError("the time scale must be > 0", path="--time-scale")
    if not isinstance(world.traffic.rate, Constant):
        raise _refuse("world.traffic.rate", "the load generator sends a constant rate", file)
    if world.users.routing != "random":
        raise _refuse("world.users.routing", "HAProxy routes each request, not users", file)
    if world.latency_objective is not None:
        raise _refuse("world.latencyObjective", "bad requests are 5xx here: set it null", file)
    p = world.platform
    if not (isinstance(p.pod_startup, Fixed) and p.pod_startup.value == 0):
        raise _refuse("world.platform.podStartup", "the backends are already running: use 0", file)
    if any(getattr(p.router_delay, f) for f in type(p.router_delay).model_fields):
        raise _refuse("world.platform.routerDelay", "HAProxy applies weights at once: use 0", file)
    if p.capacity_per_pod is not None:
        raise _refuse("world.platform.capacityPerPod", "the backends have no pod capacity", file)
    ops = world.operators
    if ops.alerts or ops.human_detection is not None:
        raise _refuse("world.operators", "only the gate detects: alerts: [] and no human", file)
    approve_after = None
    if isinstance(ops.approval_delay, Fixed):
        approve_after = ops.approval_delay.value * time_scale
    p0 = world.baseline.error_rate
    cases = []
    for i, release in enumerate(world.releases):
        rate = _canary_error_rate(release.fault, p0, f"world.releases[{i}].fault", file)
        for name, policy in loaded.policies.items():
            if getattr(policy, "min_ready_seconds", 0):
                raise _refuse(f"policies.{name}.minReadySeconds", "no pods become ready", file)
            replicas = p.resolve_replicas(getattr(policy, "replicas", None))
            cases.append(LiveCase(name, release.name, rate, replicas))
    return BenchPlan(
        rate=float(world.traffic.rate_at(0.0)) / time_scale,
        stable_error_rate=p0,
        scrape_interval=p.scrape_interval * time_scale,
        scrape_delay=p.scrape_delay * time_scale,
        horizon=world.horizon * time_scale,
        time_scale=time_scale,
        approve_after=approve_after,
        cases=tuple(cases),
    )


def _canary_error_rate(fault, p0: float, path: str, file: str | None) -> float:
    if fault is None:
        return p0
    extra = [
        name
        for name in ("latency_shift", "latency_multiplier", "onset", "growth", "segment")
        if getattr(fault, name) is not None
    ]
    if extra or fault.crash_loop:
        what = extra[0] if extra else "crash_loop"
        raise _refuse(path, f"only a constant error rate from the start ({what})", file)
    if fault.error_rate is not None:
        return fault.error_rate
    return min(1.0, p0 * (fault.error_rate_multiplier or 1.0))


def case_world(loaded, case: LiveCase) -> dict[str, Any]:
    """The scenario's world with only this case's release class (as the simulator's input)."""
    world = loaded.world.to_dict()
    world["releases"] = [
        {**c.to_dict(), "probability": 1.0} for c in loaded.world.releases if c.name == case.release
    ]
    return world


def default_scenario() -> Path:
    """The shipped calibration scenario."""
    return Path(__file__).resolve().parents[1] / "scenarios" / "live-bench.yaml"
