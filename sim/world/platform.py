"""The platform a release runs on: pods, their start-up, capacity, routers and metrics.

These are facts about the cluster, not about the policy: the same Platform meets every policy
of a scenario. Replicas belong here too (DESIGN §4); a policy imported from a manifest only
supplies the default.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema, create_model, model_validator
from pydantic.alias_generators import to_snake

from policies.base import Model
from policies.durations import DURATION_JSON_SCHEMA, Duration
from policies.errors import PolicyError
from policies.vocabulary import ROUTER_KINDS, ROUTERS, RouterKind
from sim.world.distributions import DistributionSpec, Fixed

__all__ = ["ROUTER_KINDS", "Platform", "RouterDelays", "RouterKind"]

_DELAYS_DOC = """Seconds from a routing change being written to it taking effect, per router kind.

Defaults are ASSUMPTIONS for a small, healthy cluster, each bounded by a sourced number where
one exists:

"""


def _delay_line(kind: RouterKind) -> str:
    facts = ROUTERS[kind]
    return f"- ``{kind}`` {facts.delay_s:g} s: {facts.delay_note}"


# Fields, defaults and notes come from the one table of router facts, so a router kind added
# there (policies.vocabulary.ROUTERS) is a field here, with its delay and the reason for it.
# (Any: a field definition is a type form and a default, and mypy checks a ``**`` mapping's
# values against create_model's own keyword parameters too.)
_DELAY_FIELDS: dict[str, Any] = {
    to_snake(kind): (Duration, ROUTERS[kind].delay_s) for kind in ROUTER_KINDS
}
RouterDelays = create_model(
    "RouterDelays",
    __base__=Model,
    __module__=__name__,
    __doc__=_DELAYS_DOC + "\n".join(_delay_line(kind) for kind in ROUTER_KINDS) + "\n",
    **_DELAY_FIELDS,
)
_FIELD_OF = {name: to_snake(kind) for kind in ROUTER_KINDS for name in (kind, to_snake(kind))}


def _router_delays(value: Any) -> Any:
    """One duration for every router kind, or a mapping that overrides some."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration or a mapping of router kinds")
    if isinstance(value, int | float | str):
        return {name: value for name in RouterDelays.model_fields}
    return value


_ROUTER_DELAY_SCHEMA = {
    "anyOf": [DURATION_JSON_SCHEMA, RouterDelays.model_json_schema(by_alias=True)],
    "description": "one duration for every router kind, or a mapping overriding some",
}


class Platform(Model):
    """Replicas, pod start-up, capacity, router propagation and the metrics pipeline.

    - ``replicas``: None takes the policy's manifest replicas (``resolve_replicas``); at most
      2^31 − 1, as ``spec.replicas`` is an int32 (how many a run can afford: sim/runs/budget.py).
    - ``podStartup`` 30 s (assumption: image present, a modest readiness probe). The policy's
      ``minReadySeconds`` is added by the controller, not here.
    - ``capacityPerPod``: requests/s one ready pod serves; load above what the ready pods of a
      Service can serve fails. None = unlimited.
    - ``routerDelay``: see ``RouterDelays``; ``routerDelay: 3s`` sets all kinds.
    - ``scrapeInterval`` 15 s: the interval in Prometheus's shipped example ``prometheus.yml``
      (its built-in default is 1 m). ``scrapeDelay`` 0 s: extra lag of the metrics backend; a
      gate's window ends at the last scrape at or before now − scrapeDelay.
    - ``ruleEvaluationInterval`` 60 s: Prometheus's ``evaluation_interval`` default (1 m), which
      paces the burn-rate alerts.
    - ``flaggerTickPhase``: when Flagger's first analysis tick comes after the release starts.
      Flagger runs one ticker per Canary object, started long before this release (its
      ``scheduleCanaries`` job), so by default (None) the phase is uniformly random in [0,
      interval), drawn per replication and shared by every policy (common random numbers); a
      duration pins it (taken modulo the interval; ``0s`` is a tick at the release start).
    """

    replicas: int | None = Field(None, ge=1, le=2**31 - 1)  # an int32 in Kubernetes's API
    pod_startup: DistributionSpec = Fixed(value=30.0)
    capacity_per_pod: float | None = Field(None, gt=0, allow_inf_nan=False)
    router_delay: Annotated[
        RouterDelays,
        BeforeValidator(_router_delays),
        WithJsonSchema(_ROUTER_DELAY_SCHEMA, mode="validation"),
    ] = RouterDelays()
    scrape_interval: Duration = 15.0
    scrape_delay: Duration = 0.0
    rule_evaluation_interval: Duration = 60.0
    flagger_tick_phase: Duration | None = None

    @model_validator(mode="after")
    def _positive(self) -> Platform:
        if self.scrape_interval <= 0:
            raise ValueError("scrapeInterval must be > 0")
        if self.rule_evaluation_interval <= 0:
            raise ValueError("ruleEvaluationInterval must be > 0")
        return self

    def resolve_replicas(self, policy_replicas: int | None = None) -> int:
        """The service's replica count: ours, else the policy's manifest value, else an error."""
        if self.replicas is not None:
            return self.replicas
        if policy_replicas is not None and policy_replicas >= 1:
            return policy_replicas
        raise PolicyError(
            "is not set and the policy carries no manifest replicas; give platform.replicas",
            path="platform.replicas",
        )

    def router_delay_for(self, kind: RouterKind | str | None) -> float:
        """Propagation delay for a router kind (``serviceSelector`` or ``service_selector``);
        None (no traffic router) means ``pods``."""
        attr = _FIELD_OF.get("pods" if kind is None else kind)
        if attr is None:
            raise ValueError(f"unknown router kind {kind!r} (use one of {', '.join(ROUTER_KINDS)})")
        return getattr(self.router_delay, attr)

    def flagger_first_tick(self, interval: float, u: float) -> float:
        """Seconds from the release start to Flagger's first tick: the pinned phase, else ``u``
        (a uniform draw in [0, 1)) of the interval."""
        if self.flagger_tick_phase is None:
            return u * interval
        return self.flagger_tick_phase % interval

    def capacity(self, ready_pods: int | float) -> float:
        """Requests/s that ``ready_pods`` can serve (inf when capacity is unlimited)."""
        if self.capacity_per_pod is None:
            return math.inf
        return max(float(ready_pods), 0.0) * self.capacity_per_pod

    def last_scrape(self, now: float) -> float:
        """The last scrape at or before now − scrapeDelay (scrapes at multiples of the interval).

        A gate's or alert's query window ends here: data newer than that is not yet visible.
        """
        visible = now - self.scrape_delay
        k = math.floor(visible / self.scrape_interval + 1e-9)
        return k * self.scrape_interval
