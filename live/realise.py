"""What the HAProxy executor can realise of a policy, and how: one number, the new version's share.

The executor realises one quantity, the new version's share of requests (``canary_share``:
the controller's router weight and Service selectors over the pods they select), as two server
weights. Header or cookie match routes (ABTest, ``setHeaderRoute``) and a DNS switch (clients
moving within a TTL) are not a share, so such a policy is refused up front with the field named
— never silently approximated (DESIGN §4). Latency gates are allowed but warned about: HAProxy
exports no latency histogram, so they always see "no data".
"""

from __future__ import annotations

from policies.controller import GROUP_VERSION
from policies.errors import NotExpressibleError

__all__ = ["canary_share", "check_supported", "has_gates", "latency_gates"]

EXECUTOR = "the live HAProxy executor"


_NOT_A_WEIGHT = (
    ("set_header_route", "setHeaderRoute", "header routes are not a weight"),
    ("set_mirror_route", "setMirrorRoute", "the bench's HAProxy does not mirror requests"),
    ("experiment", "experiment", "experiments run extra ReplicaSets the bench has no servers for"),
    ("plugin", "plugin", "a step plugin runs inside the Argo controller, which the bench has not"),
)
_FLAGGER_NOT_A_WEIGHT = (
    ("mirror", "mirror", "the bench's HAProxy does not mirror requests"),
    ("session_affinity", "sessionAffinity", "the bench's HAProxy keeps no canary cookie"),
    ("load_test", "loadTest", "the bench has no load tester of the canary's own Service"),
)


def check_supported(policy) -> None:
    """Raise ``NotExpressibleError`` naming the field the executor cannot carry out."""
    if policy.kind == "ABTest":
        raise NotExpressibleError(
            EXECUTOR, "kind: ABTest", "header/cookie match routes are not a traffic weight"
        )
    if policy.kind == "Canary":
        for i, step in enumerate(policy.steps):
            for action, camel, why in _NOT_A_WEIGHT:
                if getattr(step, action) is not None:
                    raise NotExpressibleError(EXECUTOR, f"steps[{i}].{camel}", why)
    if policy.kind == "Progressive":
        analysis = policy.analysis
        for field, camel, why in _FLAGGER_NOT_A_WEIGHT:
            if getattr(analysis, field):
                raise NotExpressibleError(EXECUTOR, f"analysis.{camel}", why)
        if policy.blue_green:
            why = "a blue/green's iterations send the canary no traffic the bench can make"
            raise NotExpressibleError(EXECUTOR, "analysis.iterations", why)
    if policy.kind == "BlueGreen" and policy.switch == "dns":
        raise NotExpressibleError(
            EXECUTOR, "switch: dns", "a DNS switch moves clients over a TTL, not by weight"
        )


def _analyses(policy) -> list:
    kind = policy.kind
    if kind == "Canary":
        return [s.analysis for s in policy.steps if s.analysis] + [policy.analysis]
    if kind == "BlueGreen":
        return [policy.pre_promotion_analysis, policy.post_promotion_analysis]
    if kind == "BatchRelease":
        return [b.analysis for b in policy.batches]
    return []


def has_gates(policy) -> bool:
    """Whether any promotion of this policy depends on measurements."""
    if policy.kind in ("Progressive", "ABTest"):
        return bool(policy.analysis.metrics)
    return any(a is not None for a in _analyses(policy))


def latency_gates(policy) -> list[str]:
    """Names of metrics that read a latency quantile (no data on HAProxy)."""
    names = []
    if policy.kind in ("Progressive", "ABTest"):
        for m in policy.analysis.metrics:
            if m.name == "request-duration" or (m.query and m.query.measure == "latency"):
                names.append(m.name)
        return names
    for template in getattr(policy, "analysis_templates", ()):
        for m in template.metrics:
            p = m.provider
            if (p.query and p.query.measure == "latency") or (
                p.kayenta and any(k.measure == "latency" for k in p.kayenta.metrics)
            ):
                names.append(m.name)
    return names


def canary_share(ctl, pods: dict[str, int]) -> float:
    """Percent of requests the new version serves: the canary Service's weight times its new-
    version pod share, plus the stable Service's rest times its new-version pod share.

    This is the simulator's routing picture (sim/engine/flows.py) reduced to a share: a routed
    canary gives its weight; a basic canary (one Service over both groups) its pod share; a
    blue-green or Flagger promotion 100 % once the selectors point at the new version.
    """

    def new_fraction(groups, empty: float) -> float:
        total = sum(pods.get(g, 0) for g in groups)
        new = sum(pods.get(g, 0) for g in groups if GROUP_VERSION.get(g) == "canary")
        return new / total if total else empty

    stable, canary = ctl.selectors
    w = ctl.weight / 100.0
    return 100.0 * (w * new_fraction(canary, 1.0) + (1.0 - w) * new_fraction(stable, 0.0))
