"""What a policy really does on N replicas: each step, its gate, the pods of each version and
the traffic share the canary really gets after the executor's rounding (``rolloutsim explain``).

The numbers come from the same replica arithmetic the controller uses (policies/replicas.py),
so a ``setWeight: 5`` on 3 replicas shows its true 25 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never, cast

from policies.analysis import (
    AnalysisTemplate,
    KayentaProvider,
    Metric,
)
from policies.batch import BatchRelease
from policies.bluegreen import BlueGreen
from policies.canary import (
    Canary,
    Experiment,
    Pause,
    PluginStep,
    SetCanaryScale,
    SetHeaderRoute,
    SetMirrorRoute,
)
from policies.common import RolloutAnalysis
from policies.controller.flagger import PRIMARY_FENCES
from policies.durations import format_duration
from policies.empty_windows import canary_quiet_windows, nan_guards, quiet_warnings
from policies.flagger import ABTest, FlaggerMetric, Progressive
from policies.measures import Query
from policies.replicas import (
    basic_canary_targets,
    resolve_fenceposts,
    rolling_update_trajectory,
    traffic_routed_counts,
)
from policies.rolling import RollingUpdate
from policies.sequential import SequentialTest

__all__ = ["ExplainRow", "Explanation", "explain"]


@dataclass(frozen=True)
class ExplainRow:
    step: str
    action: str
    gate: str
    canary_pods: int
    stable_pods: int
    canary_share: float  # percent of requests served by the new version
    asked: float | None = None  # the weight the policy wrote, where it differs in meaning


@dataclass
class Explanation:
    title: str
    rows: list[ExplainRow]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        head = ("step", "action", "gate", "canary/stable pods", "canary traffic")
        body = [
            (
                r.step,
                r.action,
                r.gate or "-",
                f"{r.canary_pods} / {r.stable_pods}",
                _pct(r.canary_share)
                + (f"  (asked {_pct(r.asked)})" if r.asked is not None else ""),
            )
            for r in self.rows
        ]
        widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
        lines = [self.title, ""]
        for row in [head, *body]:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        lines += (
            [""] + [f"note: {n}" for n in self.notes] + [f"warning: {w}" for w in self.warnings]
        )
        return "\n".join(lines).rstrip() + "\n"


def _pct(value: float) -> str:
    return f"{value:.1f} %" if value % 1 else f"{value:.0f} %"


def _pods(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"


def _dur(seconds: float) -> str:
    return str(format_duration(seconds))


def _metric_gate(metric: Metric) -> str:
    match metric.provider.source:
        case Query() as q:
            what = f"{q.measure}"
            if q.measure == "latency":
                what = f"p{q.quantile * 100:g} latency"
            if q.unit is not None:
                what += f" ({q.unit})"
            cond = metric.success_condition or f"not ({metric.failure_condition})"
            text = f"{metric.name}: {what} of {q.version} {cond}"
        case SequentialTest() as s:
            text = (
                f"{metric.name}: {s.test.upper()} "
                f"(alpha {s.alpha:g}, relative risk {s.relative_risk:g})"
            )
        case KayentaProvider() as kayenta:
            text = f"{metric.name}: Kayenta judge (pass {kayenta.pass_score:g})"
        case never:
            assert_never(never)
    every = f" every {_dur(metric.interval)}" if metric.interval else ""
    count = f" x{metric.effective_count}" if metric.effective_count else ""
    return f"{text}{every}{count}, failureLimit {metric.failure_limit}"


def _templates_gate(templates: tuple[AnalysisTemplate, ...]) -> str:
    return "; ".join(_metric_gate(m) for t in templates for m in t.metrics)


def _flagger_gate(metric: FlaggerMetric) -> str:
    rng = metric.threshold_range
    bounds = []
    if rng is not None and rng.min is not None:
        bounds.append(f">= {rng.min:g}")
    if rng is not None and rng.max is not None:
        bounds.append(f"<= {rng.max:g}")
    if rng is None:
        bounds.append(f"threshold {metric.threshold:g}")
    return f"{metric.name} {' and '.join(bounds)} over {_dur(metric.interval)}"


def explain(policy, replicas: int) -> Explanation:
    """The step table of ``policy`` on ``replicas`` pods."""
    if isinstance(policy, Canary):
        return _explain_canary(policy, replicas)
    if isinstance(policy, BlueGreen):
        return _explain_bluegreen(policy, replicas)
    if isinstance(policy, Progressive | ABTest):
        return _explain_flagger(policy, replicas)
    if isinstance(policy, RollingUpdate):
        return _explain_rolling(policy, replicas)
    if isinstance(policy, BatchRelease):
        return _explain_batch(policy, replicas)
    raise TypeError(f"cannot explain {type(policy).__name__}")


def _router_names(routing) -> list[str]:
    """The routers by their manifest keys, a plugin by its name."""
    names = [r for r in routing.routers if r != "plugins"]
    return names + [f"plugin {name}" for name in sorted(routing.plugins or {})]


def _explain_canary(policy: Canary, n: int) -> Explanation:
    surge, unavailable = resolve_fenceposts(policy.max_surge, policy.max_unavailable, n)
    routed = policy.traffic_routing is not None
    m = policy.max_weight
    mode = (
        f"traffic routing by {' and '.join(_router_names(policy.traffic_routing))}: the router"
        " carries the weight"
        if policy.traffic_routing is not None  # routed
        else "no traffic router: one Service over both versions, traffic follows pods"
    )
    out = Explanation(
        f'Canary "{policy.name}" on {n} replicas ({mode}; maxSurge {_pods(surge)}, '
        f"maxUnavailable {_pods(unavailable)})",
        [],
    )

    def counts(weight: int, scale=None) -> tuple[int, int, float]:
        if routed:
            c, s = traffic_routed_counts(
                n,
                weight,
                m,
                canary_scale_replicas=scale.replicas if scale else None,
                canary_scale_weight=scale.weight if scale else None,
                dynamic_stable_scale=policy.dynamic_stable_scale,
                min_pods_per_replica_set=policy.min_pods_per_replica_set,
            )
            return c, s, 100.0 * weight / m
        c, s = basic_canary_targets(n, weight, surge, m)
        return c, s, (100.0 * c / (c + s) if c + s else 0.0)

    weight, scale = 0, None
    for i, step in enumerate(policy.steps):
        asked, actions, gates, extra = None, [], [], (0, 0, 0.0)
        for operation in step.operations:  # the deciding action first: its gate ends the step
            match operation:
                case int() as weight:
                    actions.append(f"setWeight {weight}")
                    gates.append("pods available" + (", then the router weight" if routed else ""))
                case Pause(duration=d):
                    actions.append("pause " + (_dur(d) if d is not None else "(until promoted)"))
                    gates.append("timer" if d is not None else "manual promote")
                case RolloutAnalysis() as analysis:
                    actions.append("analysis")
                    gates.append(_templates_gate(policy.templates_for(analysis)))
                case SetCanaryScale() as sc:
                    scale = None if sc.match_traffic_weight else sc
                    r, w = sc.replicas, sc.weight
                    what = f"weight {w}" if w is not None else "matchTrafficWeight"
                    actions.append(f"setCanaryScale {f'replicas {r}' if r is not None else what}")
                case SetHeaderRoute() as route:
                    heads = ", ".join(h.header_name for h in route.match) or "removed"
                    actions.append(f"setHeaderRoute {route.name} ({heads})")
                case SetMirrorRoute() as mirror:
                    which = " or ".join(", ".join(e.headers) for e in mirror.copied)
                    copy = f"{mirror.percent} % of {which or 'every request'} copied"
                    gone = mirror.match is None
                    actions.append(f"setMirrorRoute {mirror.name} ({'removed' if gone else copy})")
                case Experiment() as experiment:
                    text, gate, extra, warn = _experiment(policy, i, experiment, weight)
                    actions.append(text)
                    gates.append(gate)
                    out.warnings += warn
                case PluginStep() as plugin:  # what it does is the plugin's, when is the world's
                    actions.append(f"plugin {plugin.name}")
                    gates.append("duration and failure from the world (Failed aborts)")
                    if policy.progress_deadline_abort:  # not one of Argo's indefinite steps
                        text = "a run beyond progressDeadlineSeconds aborts (progressDeadlineAbort)"
                        out.warnings.append(f"step {i}: plugin {plugin.name}: {text}")
                case never:
                    assert_never(never)
        action, gate = " + ".join(actions), next((g for g in gates if g), "")
        c, s, share = counts(weight, scale)
        if extra != (0, 0, 0.0):  # the experiment's pods: a Service's or its own weight
            new, old, weighted = extra
            share = share + weighted if routed else 100.0 * (c + new) / (c + s + new + old)
        if step.set_weight is not None and abs(share - 100.0 * weight / m) > 1e-9:
            asked = 100.0 * weight / m
            out.warnings.append(
                f"step {i}: setWeight {weight} really sends {_pct(share)} of traffic to the canary "
                f"({c} canary pod{'s' if c != 1 else ''} beside {s} stable: Argo's N / N+1 rule "
                f"on {n} replicas)"
            )
        out.rows.append(ExplainRow(str(i), action, gate, c, s, share, asked))
    final = "old pods scaled down after " + (
        f"{_dur(policy.effective_scale_down_delay_s)} (scaleDownDelaySeconds)"
        if routed and policy.effective_scale_down_delay_s
        else "the walk (no delay)"
    )
    out.rows.append(ExplainRow("end", "promote", final, n, 0, 100.0))
    quiet = canary_quiet_windows(policy)
    out.warnings += [text for _, text in quiet]
    out.warnings += nan_guards(policy.analysis_templates, {id(m) for m, _ in quiet})
    if policy.analysis is not None:
        out.notes.append(
            f"background analysis from step {policy.analysis.starting_step}: "
            + _templates_gate(policy.templates_for(policy.analysis))
            + " (never blocks promotion; Failed or Error aborts)"
        )
    abort = policy.effective_abort_scale_down_delay_s
    out.notes.append(
        "abort: the weight goes to 0 at once; canary pods are scaled down after "
        + (f"{_dur(abort)}" if abort else "no delay")
        if routed
        else "abort: a rolling update back to the stable within maxSurge/maxUnavailable"
    )
    if policy.progress_deadline_abort:
        out.notes.append(
            f"no progress for {_dur(policy.progress_deadline_seconds)} aborts"
            " (progressDeadlineAbort)"
        )
    return out


def _experiment(policy: Canary, i: int, exp: Experiment, weight: int) -> tuple:
    """An experiment step's action, gate (Argo's experiment lifecycle), the new and old
    version's pods in a Service and its canary-spec weight, and warnings."""
    routed, pods = policy.traffic_routing is not None, {"experiment-canary": 0}
    for t in exp.templates:
        pods[t.group(routed)] = pods.get(t.group(routed), 0) + t.replicas
    new, old = (0, 0) if routed else (pods["experiment-canary"], pods.get("experiment-stable", 0))
    parts = [
        f"{t.name}: {t.replicas} {t.spec_ref}"
        + (f" at {t.weight} %" if routed and t.weight else "")
        for t in exp.templates
    ]
    required = [a.name for a in exp.analyses if a.required_for_completion]
    ends = [f"{_dur(exp.duration)} once its pods are available"] if exp.duration else []
    ends += [f"required analyses {', '.join(required)} succeed"] if required else []
    gate = " and ".join(ends) or "manual promote (no duration, no required analysis)"
    runs = "; ".join(_templates_gate((policy.template(a.template_name),)) for a in exp.analyses)
    serve = "keep the Rollout's labels: its Service sends them requests (users meet it)"
    warn = [f"step {i}: the experiment's {new} new-version pod(s) {serve}"] if new else []
    if exp.analyses and not (weight or new or exp.weight_of("canary")):
        warn.append(
            f"step {i}: the experiment's analyses measure the new version, which no"
            " request reaches here (no weight, no template in a Service): no data"
        )
    text, weighted = f"experiment ({'; '.join(parts)})", float(exp.weight_of("canary") * routed)
    return text, gate + (f"; analyses: {runs}" if runs else ""), (new, old, weighted), warn


def _explain_bluegreen(policy: BlueGreen, n: int) -> Explanation:
    preview = n if policy.preview_replica_count is None else min(policy.preview_replica_count, n)
    out = Explanation(f'BlueGreen "{policy.name}" on {n} replicas (switch by {policy.switch})', [])
    first = f"preview: {preview} new pods"
    out.rows.append(ExplainRow("1", first, "pods available", preview, n, 0.0))
    if policy.pre_promotion_analysis is not None:
        gate = _templates_gate(policy.templates_for(policy.pre_promotion_analysis))
        out.rows.append(ExplainRow("2", "prePromotionAnalysis", gate, preview, n, 0.0))
    if policy.needs_pause:
        auto = f"autoPromotionSeconds {_dur(policy.auto_promotion_seconds)}"
        gate = auto if policy.auto_promotion_enabled else "manual promote"
        out.rows.append(ExplainRow("3", "pause", gate, preview, n, 0.0))
    if preview != n:
        out.rows.append(ExplainRow("4", f"scale preview to {n}", "pods available", n, n, 0.0))
    switch = (
        "Service selector patch"
        if policy.switch == "serviceSelector"
        # a DNS switch: BlueGreen's validator requires its dnsTtl
        else (f"DNS: clients move within the TTL ({_dur(cast(float, policy.dns_ttl))})")
    )
    out.rows.append(ExplainRow("5", "switch active", switch, n, n, 100.0))
    if policy.post_promotion_analysis is not None:
        gate = _templates_gate(policy.templates_for(policy.post_promotion_analysis))
        out.rows.append(ExplainRow("6", "postPromotionAnalysis", gate, n, n, 100.0))
    down = f"old pods scaled down after {_dur(policy.scale_down_delay_seconds)}"
    out.rows.append(ExplainRow("end", "promote", down, n, 0, 100.0))
    quiet = []
    if policy.pre_promotion_analysis is not None:
        quiet = quiet_warnings(
            "prePromotionAnalysis runs while the preview gets no production traffic",
            policy.templates_for(policy.pre_promotion_analysis),
            lambda metric: True,
        )
    out.warnings += [text for _, text in quiet]
    out.warnings += nan_guards(policy.analysis_templates, {id(m) for m, _ in quiet})
    out.notes.append(
        f"extra capacity: {n} old pods run beside {n} new ones until "
        f"{_dur(policy.scale_down_delay_seconds)} after the switch; an undo inside that time is "
        "instant, after it waits for pod start-up"
    )
    return out


def _explain_flagger(policy: Progressive | ABTest, n: int) -> Explanation:
    a = policy.analysis
    interval = a.effective_interval_s
    gates = "; ".join(_flagger_gate(m) for m in a.metrics) or "no metrics"
    then = f"rollback after {a.effective_threshold} failed checks"
    out = Explanation(
        f'{policy.kind} "{policy.name}" on {n} replicas (Flagger, provider {policy.provider}; '
        f"a tick every {_dur(interval)}, {_SKIPPED if policy.skip_analysis else then})",
        [],
    )
    out.rows.append(ExplainRow("tick 0", "scale canary from zero", "canary ready", n, n, 0.0))
    if skip := policy.skip_analysis:  # the controller's first check once the canary is ready
        ticks = _skipped(out, n, ", ".join(m.name for m in a.metrics))
    elif isinstance(policy, ABTest):
        heads = {h for m in a.match for h in m.headers} | {"cookie" for m in a.match if m.cookie}
        route = f"route matching requests ({', '.join(sorted(heads))})"
        out.rows.append(ExplainRow("tick 1", route, "-", n, n, 0.0))
        iterations = cast(int, a.iterations)  # ABTest's validator requires iterations >= 1
        for k in range(1, iterations + 1):
            out.rows.append(ExplainRow(f"tick {k + 1}", f"iteration {k}", gates, n, n, 0.0))
        out.notes.append("canary traffic = the matched requests only (100 % of them)")
        ticks = iterations + 1
    elif policy.blue_green:  # runBlueGreen: iterations at weight 0, switch, one more, promote
        routed, iterations = policy.provider != "kubernetes", policy.effective_iterations
        mirror = a.mirror_percent if routed else 0.0
        load = f"load test {a.load_test.rate:g}/s" if a.load_test else ""
        seen = ", ".join(x for x in (f"mirrored {mirror:g} %" * bool(mirror), load) if x)
        first = "pre-rollout hooks" + (f"; mirror {mirror:g} % of requests" if mirror else "")
        out.rows.append(ExplainRow("tick 1", first, "no analysis", n, n, 0.0))
        for k in range(2, iterations + 1):
            what = f"iteration {k} (canary sees: {seen or 'no requests'})"
            out.rows.append(ExplainRow(f"tick {k}", what, gates, n, n, 0.0))
        switch = "switch all traffic to the canary" + ("; mirror off" if mirror else "")
        step = switch if routed else "confirm promotion (no router: nothing switches)"
        for k, what in ((iterations + 1, step), (iterations + 2, "promote (primary rolls)")):
            out.rows.append(ExplainRow(f"tick {k}", what, gates, n, n, 100.0 * routed))
        ticks = iterations + 2
        out.notes.append(
            f"blue/green: {iterations + 1} analyses, {iterations} before users reach the"
            " canary" + ("" if routed else "; no router: users see the primary's rolling update")
        )
        out.warnings += [
            "blue/green with neither mirror nor a load test: at weight 0 the canary gets no"
            " request, Flagger's checks find no value and count failed checks"
        ] * (not seen and bool(a.metrics))
    else:
        schedule, k0 = policy.weight_schedule(), 2 if a.mirror else 1
        if a.mirror:  # runCanary: one step of mirroring at weight 0 first
            mirrored = f"mirror {a.mirror_percent:g} % of requests (weight 0)"
            out.rows.append(ExplainRow("tick 1", mirrored, "no analysis", n, n, 0.0))
        gate0 = "mirrored requests: " + gates if a.mirror else "no analysis"
        out.rows.append(ExplainRow(f"tick {k0}", f"weight {schedule[0]}", gate0, n, n, schedule[0]))
        for k, w in enumerate(schedule[1:], start=k0 + 1):
            out.rows.append(ExplainRow(f"tick {k}", f"weight {w}", gates, n, n, float(w)))
        ticks = len(schedule) + k0
        out.rows.append(ExplainRow(f"tick {ticks}", "promote", gates, n, n, float(schedule[-1])))
    test, sticky = (None, None) if skip else (a.load_test, a.session_affinity)
    out.notes += [
        "mirrored requests reach the canary and count in its metrics; their responses are"
        " discarded, so they hurt no user"
    ] * (a.mirror and not skip)
    if test is not None:
        when = "from the first analysis tick until promotion or rollback (rerun every tick; that"
        when += " tick's window holds none of it yet)"
        if test.type == "pre-rollout":
            when = f"for {_dur(test.duration)} from tick 1 (pre-rollout)"
        out.notes.append(
            f"load test: hey on the canary's Service at {test.rate:g} requests/s {when}:"
            " synthetic requests that count in the canary's metrics and hurt no user"
        )
    if sticky is not None:
        out.notes.append(
            f"session affinity: users routed to the canary get its cookie ({sticky.cookie_name},"
            f" {_dur(sticky.max_age)}) and stay on it until the weight returns to 0"
        )
    last = "primary rolled; all traffic to it"
    out.rows += [ExplainRow("next", last, "primary ready", n, n, 100.0)] * (not skip)
    out.notes.append(f"a healthy release takes at least {_dur(ticks * interval)} of ticks")
    out.notes.append(
        f"tick 0 comes up to {_dur(interval)} after the release starts: Flagger's ticker belongs "
        "to the Canary, not to the release, so its phase is random"
    )
    for gate in (g for g in a.gates if not skip or g.type == "confirm-rollout"):
        out.notes.append(
            f"{gate.type}: waits for an approval {_GATE_WAITS[gate.type]}; Flagger sees it on"
            " its next tick"
        )
    return out


def _skipped(out: Explanation, n: int, metrics: str) -> int:
    """skipAnalysis as ``FlaggerController._skip_analysis`` runs it, whatever the strategy: no
    check; users meet the new version in the primary's own rolling update (its fences)."""
    what = "promote without analysis (all traffic to the primary, canary to zero)"
    out.rows.append(ExplainRow("tick 1", what, "canary ready", 0, n, 0.0))
    for new, old in rolling_update_trajectory(n, *PRIMARY_FENCES)[1:]:
        share = 100.0 * new / (new + old)
        out.rows.append(ExplainRow("next", "primary rolls", "pods available", new, old, share))
    out.warnings.append(
        f"{_SKIPPED}: no metric is checked ({metrics or 'none given'}), nothing rolls back on"
        " its own: every release is promoted; a bad one is left to the backstops (alerts, humans)"
    )
    out.notes.append(
        "Flagger reports Succeeded at tick 1 (no wait for the primary); the canary serves no"
        f" request; pods from tick 1 on: the primary's new / old (maxSurge {PRIMARY_FENCES[0]},"
        f" maxUnavailable {PRIMARY_FENCES[1]})"
    )
    return 1


_SKIPPED = "skipAnalysis: no analysis runs"
_GATE_WAITS = {
    "confirm-rollout": "before tick 0 (nothing scales)",
    "confirm-traffic-increase": "before every weight step and before promotion (analysis goes"
    " on; no effect on an A/B test)",
    "confirm-promotion": "before promotion (analysis and failed checks go on)",
}


def _explain_rolling(policy: RollingUpdate, n: int) -> Explanation:
    surge, unavailable = resolve_fenceposts(policy.max_surge, policy.max_unavailable, n)
    out = Explanation(
        f'RollingUpdate "{policy.name}" on {n} replicas (maxSurge {surge}, maxUnavailable '
        f"{unavailable}; one Service, traffic follows pods; no gate)",
        [],
    )
    trajectory = rolling_update_trajectory(n, policy.max_surge, policy.max_unavailable)
    for i, (new, old) in enumerate(trajectory):
        share = 100.0 * new / (new + old) if new + old else 0.0
        out.rows.append(ExplainRow(str(i), "sync", "pods available", new, old, share))
    out.notes.append("a bad version is caught only by the backstops (alerts, humans)")
    return out


def _explain_batch(policy: BatchRelease, n: int) -> Explanation:
    out = Explanation(
        f'BatchRelease "{policy.name}" on {n} replicas (one Service, traffic follows pods)', []
    )
    for i, (batch, pods) in enumerate(zip(policy.batches, policy.batch_pods(n))):
        gate = []
        if batch.analysis is not None:
            by_name = {t.name: t for t in policy.analysis_templates}
            gate.append(
                _templates_gate(tuple(by_name[r.template_name] for r in batch.analysis.templates))
            )
        if batch.pause is not None:
            d = batch.pause.duration
            gate.append(f"pause {_dur(d)}" if d is not None else "manual approval")
        share = 100.0 * pods / n if n else 0.0
        out.rows.append(
            ExplainRow(str(i), f"batch {batch.replicas}", "; ".join(gate), pods, n - pods, share)
        )
    out.warnings += nan_guards(policy.analysis_templates)
    return out
