"""What is valid in a scenario but odd enough to mislead, each warning saying why (the world's
own are sim/world/model.py's): read at load, printed by ``validate`` and kept in the report."""

from __future__ import annotations

from typing import Any

from policies.durations import format_duration
from policies.errors import PolicyError
from policies.gate_ranges import unit_mixups
from policies.vocabulary import routers_of
from sim.runs.budget import BudgetError, check, estimate, few_replications
from sim.runs.budget import counts as plan_counts
from sim.world.model import World

__all__ = ["warnings"]


def warnings(scenario, policies: dict[str, Any]) -> list[str]:
    """What is valid but odd enough to mislead (sim/world/model.py for the world's own), each
    saying why; and whether the file's own run is beyond the default budget, which ``run``
    refuses (``validate`` says so here, before anything runs)."""
    world = scenario.world
    out = world.warnings()
    for name, policy in policies.items():
        least, what = _least_rollout(policy)
        if least > world.horizon:
            out.append(
                f"warning: {name}: a healthy release takes at least {_dur(least)} ({what}),"
                f" longer than world.horizon {_dur(world.horizon)}: no release can complete, so"
                " every one ends stalled and the rollout times and escapes say nothing"
            )
        out += [f"warning: {name}: {said}" for said in unit_mixups(policy)]
        out += _traffic_warnings(name, policy, world)
        out += _router_race_warnings(name, policy, world)
    try:
        counts = plan_counts(scenario.replications, world.releases.names)
    except PolicyError:  # a class missing from replications: run refuses it, naming the class
        return out
    out += few_replications(counts)
    try:
        check(estimate(world, policies, counts))
    except BudgetError as exc:
        out.append(f"warning: run refuses this file's plan as it stands: {exc}")
    return out


def _least_rollout(policy: Any) -> tuple[float, str]:
    """A lower bound on a healthy release's duration (seconds) and what sets it."""
    kind = policy.kind
    if kind == "Canary":
        pauses = [s.pause.duration for s in policy.steps if s.pause is not None]
        return sum(d for d in pauses if d is not None), "its pauses"
    if kind == "BatchRelease":
        pauses = [b.pause.duration for b in policy.batches if b.pause is not None]
        return sum(d for d in pauses if d is not None), "its pauses"
    if kind == "BlueGreen":
        return (policy.auto_promotion_seconds if policy.auto_promotion_enabled else 0.0), (
            "autoPromotionSeconds"
        )
    if kind in ("Progressive", "ABTest"):
        a = policy.analysis
        if kind == "ABTest":
            ticks = (a.iterations or 0) + 1
        elif policy.blue_green:
            ticks = policy.effective_iterations + 1
        else:
            ticks = len(policy.weight_schedule()) + 1
        interval = a.effective_interval_s
        return ticks * interval, f"{ticks} Flagger ticks of {_dur(interval)}"
    return 0.0, ""


def _router_race_warnings(name: str, policy: Any, world: World) -> list[str]:
    """An Argo canary sets a weight, and a blue-green switches, as soon as the new pods are
    ready; a router faster than a ready pod's joining the endpoints (``pods``) sends requests
    to a Service with none behind it, so even a good release fails them (both engines)."""
    if policy.kind not in ("Canary", "BlueGreen"):
        return []
    platform = world.platform
    joins = platform.router_delay_for("pods")
    return [
        f"warning: {name}: platform.routerDelay.{kind} {_dur(platform.router_delay_for(kind))}"
        f" is below routerDelay.pods {_dur(joins)} (a ready pod joining the endpoints): its"
        " routes land before the pods they name are behind the Service, so even a good"
        " release fails the requests sent in between"
        for kind in routers_of(policy)
        if kind != "pods" and platform.router_delay_for(kind) < joins
    ]


def _traffic_warnings(name: str, policy: Any, world: World) -> list[str]:
    """A canary that no step sends traffic to before promotion: nothing can judge it, and at
    promotion every user moves at once. Odd, not always wrong (a dark launch), so a warning."""
    kind, out = policy.kind, []
    if kind == "Canary" and policy.steps:
        routes = any(
            s.experiment is not None
            or s.set_mirror_route is not None
            or (s.set_header_route is not None and s.set_header_route.match)
            for s in policy.steps
        )
        if not routes and not any(s.set_weight for s in policy.steps):
            out.append(
                f"warning: {name}: no step sends traffic to the canary (every setWeight is 0,"
                " no header or mirror route): its analysis sees no canary request and"
                " promotion moves every user at once, as a blue-green switch does"
            )
    replicas = world.platform.replicas or policy.replicas  # none: run says so, naming it
    batched = kind == "BatchRelease" and replicas and len(policy.batches) > 1
    if batched and not any(policy.batch_pods(replicas)[:-1]):
        out.append(
            f"warning: {name}: every batch before the last has 0 new pods, so the new"
            " version gets no traffic until all of it does"
        )
    a = policy.analysis if kind == "Progressive" else None
    if a is not None and a.max_weight == 0 and not (policy.blue_green or a.step_weights):
        out.append(
            f"note: {name}: analysis.maxWeight 0 is Flagger's default, 100 (Flagger reads a"
            " maxWeight below 1 as unset): the canary's weight goes up to 100 %"
        )
    return out


def _dur(seconds: float) -> str:
    return str(format_duration(seconds))
