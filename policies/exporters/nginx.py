"""ingress-nginx: the main and the canary Ingress, one canary Ingress per step, and the runbook.

ingress-nginx has no rollout controller: whoever runs the release writes the canary
annotations (executors.md §D.1) step by step. So the export is the objects for every step in
order (each canary Ingress named ``<service>-canary``, annotated ``rolloutsim.io/step``) plus
the runbook that applies them with the waits and checks between (``kubernetes.Runbook``). The
checks query Prometheus with the forms of ``promql.py``, the router's own metrics telling canary
from stable. This module also holds what nginx and Istio share for Argo's canary: the analysis
checks (``MetricsRunbook``) and the canary under a router (``RoutedWeights``); Flagger's loop,
shared the same way, is in istio.py.
"""

from __future__ import annotations

import re
from typing import Any

from policies.bluegreen import BlueGreen
from policies.canary import Canary
from policies.common import RouteMatch
from policies.conditions import Condition
from policies.errors import NotExpressibleError
from policies.exporters import Export, Target
from policies.exporters.kubernetes import (
    Runbook,
    apply_command,
    bluegreen_runbook,
    canary_runbook,
    quote,
    secs,
    service,
)
from policies.exporters.promql import query_for
from policies.flagger import ABTest, Progressive
from policies.measures import Query
from policies.replicas import traffic_routed_counts

__all__ = [
    "EXECUTOR",
    "PREFIX",
    "STEP",
    "MetricsRunbook",
    "NginxRouter",
    "RoutedWeights",
    "argo_verdict",
    "export",
    "jq_condition",
    "nginx_match",
]

EXECUTOR = "nginx"
PREFIX = "nginx.ingress.kubernetes.io/"
STEP = "rolloutsim.io/step"

_CHECKS = r"""# One measurement: a Prometheus query judged by a jq program printing the phase
# (Successful, Failed, Inconclusive; Error for no answer, an empty or a NaN result).
rs_measure() {
  local out
  if out=$(curl -fsS --max-time 30 --get --data-urlencode "query=$1" "$PROM/api/v1/query"); then
    jq -r "$2" <<<"$out" 2>/dev/null || echo Error
  else echo Error; fi
}
# An Argo metric, Argo's rules: rs_metric NAME DELAY INTERVAL COUNT(0: unbounded) FAILURE_LIMIT
# INCONCLUSIVE_LIMIT ERROR_LIMIT SUCCESS_LIMIT MEASURE...; exits 0 Successful, 1 Failed,
# 2 Error, 3 Inconclusive. An Error does not count and is retried after 10 s.
rs_metric() {
  local name=$1 interval=$3 count=$4 fl=$5 il=$6 el=$7 sl=$8 n=0 f=0 i=0 e=0 s=0 p
  rs_sleep "$2"
  shift 8
  while :; do
    p=$("$@")
    echo "    $name: $p"
    case $p in
      Error) e=$((e + 1)) ;;
      Successful) e=0 n=$((n + 1)) s=$((s + 1)) ;;
      Failed) e=0 n=$((n + 1)) s=0 f=$((f + 1)) ;;
      *) e=0 n=$((n + 1)) s=0 i=$((i + 1)) ;;
    esac
    if [ "$e" -gt "$el" ]; then return 2; fi
    if [ "$i" -gt "$il" ]; then return 3; fi
    if [ "$fl" -ge 0 ] && [ "$f" -gt "$fl" ]; then return 1; fi
    if [ "$sl" -gt 0 ] && [ "$s" -ge "$sl" ]; then return 0; fi
    if [ "$count" -gt 0 ] && [ "$n" -ge "$count" ]; then
      if [ "$sl" -eq 0 ]; then return 0; fi
      if [ "$fl" -ge 0 ]; then return 3; fi
      return 1
    fi
    if [ "$p" = Error ]; then rs_sleep 10; else rs_sleep "$interval"; fi
  done
}
# An AnalysisRun: the metrics run side by side; the first bad one ends the run with its phase.
rs_analysis() {
  local pids=() rc left=$#
  trap 'kill "${pids[@]}" 2>/dev/null; exit 143' TERM
  for fn in "$@"; do "$fn" & pids+=("$!"); done
  while [ "$left" -gt 0 ]; do
    rc=0
    wait -n "${pids[@]}" || rc=$?
    left=$((left - 1))
    if [ "$rc" -ne 0 ]; then kill "${pids[@]}" 2>/dev/null || true; return "$rc"; fi
  done
}
# A gating run: Successful passes, Inconclusive waits for a human, Failed or Error aborts.
rs_gate() {
  local rc=0
  rs_fg "$@" || rc=$?
  case $rc in
    0) ;;
    3) rs_approve "Analysis Inconclusive: paused." || return 1 ;;
    *) echo "!!  analysis $([ "$rc" = 1 ] && echo Failed || echo Error)" >&2; return 1 ;;
  esac
}
# A background run: Failed or Error aborts at once (TERM), Inconclusive pauses (USR1).
rs_bg_start() {
  RS_BG_RUN=$1
  (rc=0; "$1" || rc=$?; if [ "$rc" = 3 ]; then kill -USR1 $$; elif [ "$rc" != 0 ]; then
    kill -TERM $$; fi) &
  RS_BG=$!
}
rs_bg_paused() {
  RS_BG=""
  rs_approve "Background analysis Inconclusive: paused." || exit 1
  rs_bg_start "$RS_BG_RUN"
}
trap rs_bg_paused USR1
# Flagger's loop: every INTERVAL run the checks until they pass; failed checks add up over
# the release, and the tick after the THRESHOLD-th failure rolls back.
rs_tick() {
  while :; do
    rs_sleep "$1"
    if [ "$RS_FAILED" -ge "$2" ]; then echo "!!  $RS_FAILED failed checks" >&2; return 1; fi
    if "$3"; then return 0; fi
    RS_FAILED=$((RS_FAILED + 1))
    echo "    failed checks: $RS_FAILED"
  done
}"""


def jq_values(test: str) -> str:
    """jq over a Prometheus answer: ``$v`` is its first value; no value or NaN is Error
    (Argo's Error, Flagger's failed check), else ``test`` decides."""
    head = '(.data | if .resultType == "scalar" then [.result[1]] else [.result[]?.value[1]] end'
    return (
        f"{head} | map(tonumber)) as $r | if ($r | length) == 0 or ($r[0] | isnan)"
        f' then "Error" else $r[0] as $v | {test} end'
    )


def jq_condition(text: str) -> str:
    """An Argo condition (``Condition`` checked it is safe) as a jq boolean of ``$v``."""
    tokens, pos = Condition._tokenize(text), [0]

    def take() -> tuple[str, str]:
        pos[0] += 1
        return tokens[pos[0] - 1]

    def term() -> str:
        kind, value = take()
        if kind == "not":
            return f"({term()} | not)"
        if kind == "lp":
            inner = either()
            take()
            return f"({inner})"
        if kind == "nan":
            return "($v | isnan)"
        (_, op), other = take(), take()
        left, right = ("$v" if k == "result" else repr(float(v)) for k, v in ((kind, value), other))
        return f"({left} {op} {right})"

    def chain(operand, ops: tuple[str, str]) -> str:
        out = operand()
        while pos[0] < len(tokens) and tokens[pos[0]][1] in ops:
            take()
            out = f"({out} {ops[1]} {operand()})"
        return out

    def either() -> str:
        return chain(lambda: chain(term, ("&&", "and")), ("||", "or"))

    return either()


def argo_verdict(success: str | None, failure: str | None) -> str:
    """Argo's ``EvaluateResult`` in jq: failure wins; neither true (both given) -> Inconclusive."""
    fail = jq_condition(failure) if failure else "false"
    succ = jq_condition(success) if success else "true"
    other = "Failed" if failure is None else "Inconclusive"
    return jq_values(f'if {fail} then "Failed" elif {succ} then "Successful" else "{other}" end')


class MetricsRunbook(Runbook):
    """A runbook whose analysis queries Prometheus; ``hashes`` name the two Deployments' pod
    prefixes (Istio tells versions apart by pod, nginx by its ``canary`` label)."""

    def __init__(self, executor: str, policy, target: Target, hashes=("canary", "stable")):
        super().__init__(executor, policy, target)
        self.hashes = hashes
        self.functions.append(_CHECKS)

    def query(self, query: Query, window: float | None, field: str, scale=None) -> str:
        if window is None:
            reason = "a query needs a window: give the metric an interval or the query a window"
            raise NotExpressibleError(self.executor, f"{field}.interval", reason)
        t, source = self.target, "istio" if self.executor == "istio" else "nginx"
        try:
            return query_for(query, source, t.service, t.namespace, window, scale=scale,
                             hashes=self.hashes)  # fmt: skip
        except ValueError as exc:
            raise NotExpressibleError(self.executor, field, str(exc)) from None

    def analysis(self, analysis, key: str, field: str) -> str:
        run, names = f"rs_run_{key}", []
        templates = [t.name for t in self.policy.analysis_templates]
        for template in self.policy.templates_for(analysis):
            for j, metric in enumerate(template.metrics):
                where = f"analysisTemplates[{templates.index(template.name)}].metrics[{j}]"
                window = metric.provider.query.window or metric.interval
                args = [metric.name, secs(metric.initial_delay), secs(metric.interval or 0)]
                args += [metric.effective_count or 0, metric.failure_limit]
                args += [metric.inconclusive_limit, metric.consecutive_error_limit]
                args += [metric.consecutive_success_limit, "rs_measure"]
                args.append(self.query(metric.provider.query, window, where))
                args.append(argo_verdict(metric.success_condition, metric.failure_condition))
                names.append(f"{run}_{len(names)}")
                body = " ".join(quote(str(a)) for a in args)
                self.functions.append(f"{names[-1]}() {{ rs_metric {body}; }}")
        self.functions.append(f"{run}() {{ rs_analysis {' '.join(names)}; }}")
        return run


# ----------------------------------------------------------------------------- the Argo canary


class RoutedWeights:
    """The Argo canary under a router: the canary gets ceil(w·N/M) pods (minPodsPerReplicaSet,
    setCanaryScale), the stable stays at N, the router carries the weight; at the end the
    stable route selects the new pods, and the old ones go after scaleDownDelaySeconds."""

    def __init__(self, router) -> None:
        self.router, self.executor = router, router.executor
        self.weight, self.pods, self.scale, self.routes = 0, 0, None, {}

    def runbook(self, policy, target: Target) -> MetricsRunbook:
        return self.router.runbook(policy, target)

    def bind(self, book: Runbook, policy: Canary, n: int) -> RoutedWeights:
        self.book, self.policy, self.n = book, policy, n
        self.names = (f"{book.target.service}-canary", f"{book.target.service}-stable")
        return self

    def objects(self) -> list[dict[str, Any]]:
        return self.router.objects()

    def _abort(self, canary: int) -> list[str]:
        book, delay = self.book, self.policy.effective_abort_scale_down_delay_s
        commands = [book.apply_command(self.router.weight(0, "abort"))]
        commands.append(f"rs_ready {self.names[1]} wait")
        if canary and delay > 0:
            commands += [f"rs_sleep {secs(delay)}", book.scale_command(self.names[0], 0)]
        elif canary and self.scale is None:  # 0 keeps the canary only under a setCanaryScale
            commands.append(book.scale_command(self.names[0], 0))
        return commands

    def _update(self, what: str, route: bool, canary: int | None = None) -> None:
        kw: dict[str, Any] = {"min_pods_per_replica_set": self.policy.min_pods_per_replica_set}
        if self.scale is not None:
            kw |= {"canary_scale_replicas": self.scale.replicas}
            kw |= {"canary_scale_weight": self.scale.weight}
        if canary is None:
            canary = traffic_routed_counts(self.n, self.weight, self.policy.max_weight, **kw)[0]
        state = f"{canary}/{self.n}@{self.weight}" + ("+scale" if self.scale else "")
        state += "".join(f"+{name}" for name in self.routes)
        scale = (self.names[0], canary)
        notes = f"{what}: canary to {canary} pods, stable stays at {self.n}."
        if canary > self.pods:
            self.book.scale(*scale, notes=notes, state=state)
        if route:
            objects = self.router.weight(self.weight, what, self.routes)
            self.book.apply(objects, f"{what}: canary weight {self.weight}.", state=state)
        if canary < self.pods:
            self.book.scale(*scale, notes=notes, state=state)
        self.book.aborts[state], self.pods = self._abort(canary), canary

    def set_weight(self, weight: int, what: str) -> None:
        self.weight = weight
        self._update(what, True)

    def set_canary_scale(self, scale, what: str) -> None:
        self.scale = None if scale.match_traffic_weight else scale
        self._update(what, False)

    def header_route(self, route, what: str) -> None:  # a route keeps its first place
        if route.match:
            self.routes[route.name] = route.match
        else:
            self.routes.pop(route.name, None)
        self._update(what, True)

    def promote(self, background: bool) -> None:
        self.weight = self.policy.max_weight  # once the canary is at N, it gets all traffic
        self._update("end of steps", True, canary=self.n)
        if background:
            self.book.add("analysis", "rs_bg_stop", notes="Promoted: the background run ends.")
        notes = "Promotion: the stable route selects the new pods; the canary weight is 0."
        self.book.apply(self.router.promoted(), notes, state="promoted")
        if delay := self.policy.effective_scale_down_delay_s:
            self.book.pause(delay, "scaleDownDelaySeconds before the old pods go")
        self.book.scale(self.names[1], 0, notes="The old pods go; the canary Deployment is stable.")


# ----------------------------------------------------------------------------- nginx objects


def nginx_match(matches: tuple[RouteMatch, ...]) -> dict[str, str]:
    """The canary-by-header/-cookie annotations of an A/B match, or a refusal naming the entry.

    ingress-nginx has one header rule and one cookie rule, ORed (header first); so each entry
    holds one condition, and there is at most one header entry and one cookie entry. A header
    pattern is anchored (``ngx.re.match`` searches), which also expresses a prefix exactly.
    """
    out: dict[str, str] = {}
    for i, match in enumerate(matches):
        where = f"analysis.match[{i}]"
        conditions = len(match.headers) + (match.cookie is not None)
        if conditions != 1:
            reason = "ingress-nginx cannot AND conditions: one header or one cookie per entry"
            raise NotExpressibleError(EXECUTOR, where, reason)
        if match.cookie is not None:
            if match.cookie.exact is None or "canary-by-cookie" in out:
                reason = "ingress-nginx takes one cookie, named exactly (its value 'always')"
                raise NotExpressibleError(EXECUTOR, f"{where}.cookie", reason)
            out["canary-by-cookie"] = match.cookie.exact
            continue
        ((name, value),) = match.headers.items()
        if "canary-by-header" in out or name.lower() == "cookie":
            reason = "ingress-nginx takes one canary header (not the whole Cookie header)"
            raise NotExpressibleError(EXECUTOR, f"{where}.headers.{name}", reason)
        out["canary-by-header"] = name
        if value.exact:
            out["canary-by-header-value"] = value.exact
        elif value.exact is not None or value.prefix is not None:
            out["canary-by-header-pattern"] = f"^{re.escape(value.prefix or '')}" + (
                "$" if value.exact is not None else ""
            )
        else:
            out["canary-by-header-pattern"] = f"^(?:{value.regex})$"
    return {PREFIX + k: v for k, v in out.items()}


class NginxRouter:
    """The main Ingress to ``<service>-<stable>`` and the canary Ingress ``<service>-canary``
    to ``<service>-<canary>``: the objects a canary step, an A/B test or a switch writes."""

    executor = EXECUTOR

    def __init__(self, target: Target, total: int = 100, sides=("stable", "canary")) -> None:
        self.target, self.total, self.sides = target, total, sides

    def runbook(self, policy, target: Target) -> MetricsRunbook:
        return MetricsRunbook(EXECUTOR, policy, target, hashes=self.sides[::-1])

    def _ingress(self, name: str, side: str, annotations: dict[str, str]) -> dict[str, Any]:
        t = self.target
        backend = {"service": {"name": f"{t.service}-{side}", "port": {"number": t.port}}}
        path = {"path": "/", "pathType": "Prefix", "backend": backend}
        spec = {"ingressClassName": "nginx", "rules": [{"host": t.host, "http": {"paths": [path]}}]}
        meta = {"name": name, "namespace": t.namespace, "labels": {"app": t.service}}
        meta |= {"annotations": annotations} if annotations else {}
        head = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress"}
        return head | {"metadata": meta, "spec": spec}

    def _canary(self, annotations: dict[str, str], step: str) -> list[dict[str, Any]]:
        marks = {STEP: step, PREFIX + "canary": "true", **annotations}
        return [self._ingress(f"{self.target.service}-canary", self.sides[1], marks)]

    def objects(self) -> list[dict[str, Any]]:
        svc, t = self.target.service, self.target
        out = [service(t, f"{svc}-{v}", {"app": svc, "version": v}) for v in self.sides]
        return [*out, self._ingress(svc, self.sides[0], {})]

    def weight(self, weight: int, step: str, routes=None) -> list[dict[str, Any]]:
        marks = {PREFIX + "canary-weight": str(weight)}
        if self.total != 100:
            marks[PREFIX + "canary-weight-total"] = str(self.total)
        return self._canary(marks, step)

    def match(self, matches: tuple[RouteMatch, ...], step: str) -> list[dict[str, Any]]:
        return self._canary(nginx_match(matches) | {PREFIX + "canary-weight": "0"}, step)

    def promoted(self) -> list[dict[str, Any]]:
        svc, (stable, canary) = self.target.service, self.sides
        selector = {"app": svc, "version": canary}
        return [service(self.target, f"{svc}-{stable}", selector), *self.weight(0, "promoted")]


class _NginxSwitch:
    """Blue-green on ingress-nginx: the canary Ingress to green flips from weight 0 to 100
    (``random(100) <= 100`` always holds: an exact, instant switch of new requests)."""

    executor = EXECUTOR

    def __init__(self, target: Target) -> None:
        self.router = NginxRouter(target, sides=("blue", "green"))
        self.runbook = self.router.runbook

    def objects(self) -> list[dict[str, Any]]:
        return self.router.objects() + self.manifest("blue")

    def manifest(self, side: str) -> list[dict[str, Any]]:
        return self.router.weight(100 if side == "green" else 0, f"switch to {side}")

    def command(self, side: str) -> str:
        return apply_command(self.router.target, self.manifest(side))


def require_router(policy: Canary, executor: str, label: str):
    """A canary's weights must go through this executor's router (else it is another's)."""
    routing = policy.traffic_routing
    if routing is None or routing.router != executor:
        reason = "the canary splits by pods behind one Service (export it to kubernetes)"
        if routing is not None:
            reason = f"its weights go through {routing.router}, not {label}"
        raise NotExpressibleError(executor, "trafficRouting", reason)
    return routing


def export(policy, target: Target) -> Export:
    """Objects and runbook on ingress-nginx; refuses what its annotations cannot say."""
    if isinstance(policy, Canary):
        routing = require_router(policy, EXECUTOR, "ingress-nginx")
        router = NginxRouter(target, routing.max_traffic_weight)
        return canary_runbook(policy, target, RoutedWeights(router))
    if isinstance(policy, Progressive | ABTest):
        from policies.exporters.istio import flagger_runbook  # the loop nginx and Istio share

        return flagger_runbook(policy, target, NginxRouter(target))
    if isinstance(policy, BlueGreen):
        return bluegreen_runbook(policy, target, _NginxSwitch(target))
    reason = {
        "RollingUpdate": "a rolling update moves pods, not traffic: export it to kubernetes",
        "BatchRelease": "batches are shares of pods behind one Service: export it to kubernetes",
    }[policy.kind]
    raise NotExpressibleError(EXECUTOR, "kind", f"{policy.kind}: {reason}")
