"""Flagger's loop as a runbook, on the router of ingress-nginx or Istio (executors.md §A.3-A.5).

Flagger itself exports a ``Canary`` (``flagger.py``). Where no Flagger runs, the runbook does
what it would: the canary scales up (after a prompt, for a confirm-rollout gate; the other
gates are refused: Flagger analyses while they wait), the first tick only routes, each later
tick runs the metrics' checks (``rs_tick``, in ``checks``) and advances only when they pass;
failed checks add up over the release and the tick after the threshold-th failure rolls back.
The router (an ``nginx.NginxRouter`` or ``istio.IstioRouter``) writes the weights and the A/B
match.
"""

from __future__ import annotations

from typing import cast

from policies.errors import NotExpressibleError
from policies.exporters import Export, Target
from policies.exporters.checks import MetricsRunbook, jq_flagger_values
from policies.exporters.manifests import deployment, whole_seconds
from policies.exporters.runbook import quote, secs
from policies.flagger import ABTest, FlaggerMetric, Progressive
from policies.measures import Query
from policies.vocabulary import provider_router

__all__ = ["flagger_checks", "flagger_runbook"]


def flagger_checks(book: MetricsRunbook, metrics: tuple[FlaggerMetric, ...]) -> str:
    """One Flagger tick's checks in order, stopping at the first failure (one failure per
    tick); the built-ins as simulated: success rate in %, P99 latency in whole ms."""
    tests = []
    for j, m in enumerate(metrics):
        where, scale, query = f"analysis.metrics[{j}]", None, m.query
        if m.name == "request-success-rate" and query is None:
            query, scale = Query(measure="successRate"), "percent"
        elif query is None:
            query, scale = Query(measure="latency", quantile=0.99), "ms_floor"
        if m.threshold_range is not None:
            low, high = m.threshold_range.min, m.threshold_range.max
        elif m.name == "request-success-rate":  # the deprecated threshold: a minimum here,
            low, high = m.threshold, None
        else:  # a maximum otherwise
            low, high = None, m.threshold
        limits = ((">=", low), ("<=", high))
        conds = " and ".join(f"$v {op} {x!r}" for op, x in limits if x is not None)
        judge = jq_flagger_values(f'if {conds} then "Successful" else "Failed" end')
        unfiltered = query.model_copy(update={"nan_filter": False})  # Flagger fails NaN itself
        text = book.query(unfiltered, query.window or m.interval, where, scale)
        tests.append(f'[ "$(rs_measure {quote(text)} {quote(judge)})" = Successful ]')
    book.functions.append(f"rs_checks() {{ {' && '.join(tests) or 'true'}; }}")
    return "rs_checks"


def flagger_runbook(policy: Progressive | ABTest, target: Target, router) -> Export:
    """Flagger's loop on ``router`` (executors.md §A.3-A.5): the canary scales up; the first
    tick only routes; each later tick checks the metrics and advances only when they pass; then
    the primary (our stable Deployment) takes the new image, traffic returns to it, the canary
    goes. Failed checks add up; the tick after the threshold-th failure rolls back."""
    ex, a = router.executor, policy.analysis
    if provider_router(policy.provider) != router.kind:
        reason = (
            f"Flagger would shift traffic with {policy.provider} (and measure there), not {ex}:"
            f" give provider: {router.kind} to run it on {ex}"
        )
        raise NotExpressibleError(ex, "provider", reason)
    if isinstance(policy, Progressive) and policy.blue_green:
        reason = (
            "Flagger's blue/green (analysis at weight 0 fed by mirror or load tests, a switch"
            " and a route back) is not written as a runbook: drop iterations for a"
            f" weighted canary, or write a BlueGreen for {ex}'s switch (the flagger exporter"
            " takes it as written)"
        )
        raise NotExpressibleError(ex, "analysis.iterations", reason)
    for field, given in (
        ("mirror", a.mirror),
        ("sessionAffinity", a.session_affinity is not None),
        ("loadTest", a.load_test is not None),
    ):
        if given:
            reason = (
                f"the runbook's {router.kind} router does not write it: drop it to run the rest"
                f" on {ex} (the flagger exporter takes it as written)"
            )
            raise NotExpressibleError(ex, f"analysis.{field}", reason)
    waiting = sorted(a.gate_types - {"confirm-rollout"})
    if waiting:
        reason = (
            f"{', '.join(waiting)}: Flagger keeps analysing (and counting failed checks) while"
            " the gate waits, a runbook's prompt cannot: keep only confirm-rollout (the flagger"
            " exporter takes these gates as written)"
        )
        raise NotExpressibleError(ex, "analysis.gates", reason)
    if isinstance(policy, ABTest) and a.step_weight_promotion:
        reason = (
            "an A/B test routes matched requests wholly; there is no weight to shift back:"
            " drop stepWeightPromotion"
        )
        raise NotExpressibleError(ex, "analysis.stepWeightPromotion", reason)
    n, svc, book = target.replicas_for(policy), target.service, router.runbook(policy, target)
    deadline = whole_seconds(ex, "progressDeadlineSeconds", policy.progress_deadline_seconds)
    book.mode, names = "abort", (f"{svc}-canary", f"{svc}-stable")
    objects = [deployment(target, "stable", target.stable_image, n, deadline=deadline)]
    objects += [deployment(target, "canary", target.image, 0, deadline=deadline)]
    book.apply([*objects, *router.objects()], "The primary (stable) and the canary at 0.")
    rollback = [book.apply_command(router.weight(0, "rollback")), book.scale_command(names[0], 0)]
    book.aborts["canary"] = rollback
    if a.gate_types:  # confirm-rollout: nothing runs before it opens, as in Flagger (Waiting)
        book.pause(None, "confirm-rollout")
    book.scale(names[0], n, state="canary", notes="A new revision: the canary scales up.")
    checks = flagger_checks(book, a.metrics)
    tick = f"rs_tick {secs(a.effective_interval_s)} {a.effective_threshold} {checks}"
    book.pause(a.effective_interval_s, "the first tick runs no analysis")
    promote = book.kubectl(f"set image deployment/{names[1]} {svc}={quote(target.image)}")
    if policy.skip_analysis:  # skipAnalysis: promote at once, no checks, no primary wait
        book.add("promote", promote, state="promoted", notes="skipAnalysis.")
        book.scale(names[0], 0, notes="The canary goes.")
        return book.export()
    last = 100
    if isinstance(policy, ABTest):
        book.apply(router.match(a.match, "A/B"), "Matched requests go to the canary.")
        iterations = cast(int, a.iterations)  # ABTest's validator requires iterations >= 1
        for k in range(iterations):
            book.add("analysis", check=tick, notes=f"Iteration {k + 1} of {iterations}.")
    else:
        for last in policy.weight_schedule():
            book.apply(router.weight(last, f"{last} %"), f"The canary gets {last} %.")
            book.add("analysis", check=tick, notes=f"A healthy tick at {last} % advances.")
    book.add("promote", promote, state="promoting", notes="The primary takes the new version.")
    if isinstance(policy, Progressive):  # a failed promotion sends all to the canary
        book.aborts["promoting"] = [book.apply_command(router.weight(100, "failed promotion"))]
    while last > 0:
        last = max(0, last - a.step_weight_promotion) if a.step_weight_promotion else 0
        book.pause(a.effective_interval_s, "a promotion tick")
        book.add("wait", wait=f"rs_ready {names[1]} abort", notes="The primary must be ready.")
        book.apply(router.weight(last, "promotion"), f"The canary keeps {last} %.")
    book.pause(a.effective_interval_s, "the finalising tick")
    book.scale(names[0], 0, notes="Finalising: the canary goes.", state="promoted")
    return book.export()
