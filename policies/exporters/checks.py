"""Analysis in a runbook: each gate's metrics as Prometheus queries judged in bash, by the
executors' own rules.

Where no controller runs the analysis (ingress-nginx, Istio), the runbook does: each metric is
a ``promql`` query over the router's own metrics (``source``; the versions told apart by pod
``hashes`` or the canary label), judged by a jq program that prints the measurement's phase.
``rs_metric`` counts the phases by Argo's rules (failureLimit, inconclusiveLimit,
consecutiveErrorLimit, consecutiveSuccessLimit, count), ``rs_analysis`` runs an AnalysisRun's
metrics side by side, ``rs_gate`` and ``rs_bg_start`` make it a step's gate or a background run,
and ``rs_tick`` is Flagger's loop of checks with its cumulative threshold (``flagger_loop``).
"""

from __future__ import annotations

from policies.conditions import Condition
from policies.errors import NotExpressibleError
from policies.exporters import Target
from policies.exporters.promql import query_for
from policies.exporters.runbook import Runbook, quote, secs
from policies.measures import Query
from policies.vocabulary import Executor, MetricSource

__all__ = ["MetricsRunbook", "argo_verdict", "jq_condition", "jq_flagger_values", "jq_values"]

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


_VALUES = '(.data | if .resultType == "scalar" then [.result[1]] else [.result[]?.value[1]] end'
"""jq: a Prometheus answer's values, of a scalar or a vector alike."""


def jq_values(test: str) -> str:
    """jq over a Prometheus answer: ``$r`` is its values (NaN kept), ``v`` its first value;
    ``test`` decides, and reading ``v`` of an empty vector is Error (Argo's index out of range:
    no series). NaN is judged by the conditions, as Argo's ``expr`` judges it."""
    return (
        f"{_VALUES} | map(tonumber)) as $r"
        ' | def v: if ($r | length) == 0 then error("empty") else $r[0] end;'
        f' try ({test}) catch "Error"'
    )


def jq_flagger_values(test: str) -> str:
    """jq over a Prometheus answer for Flagger's checks: no value or NaN fails the check
    (Flagger counts a check without data as failed), else ``test`` of ``$v`` decides."""
    return (
        f"{_VALUES} | map(tonumber)) as $r | if ($r | length) == 0 or ($r[0] | isnan)"
        f' then "Error" else $r[0] as $v | {test} end'
    )


# Go compares NaN false with every number except by !=; jq orders NaN below all numbers, so each
# comparison of the value says what NaN gives.
_NAN_GIVES = {"!=": "true", "==": "false", ">=": "false", "<=": "false", ">": "false", "<": "false"}


def jq_condition(text: str) -> str:
    """An Argo condition (``Condition`` checked it is safe) as a jq boolean of ``v`` and ``$r``,
    short-circuiting left to right like ``expr`` (so ``len(result) == 0 || …`` guards)."""
    tokens, pos = Condition._tokenize(text), [0]
    read = {"result": "v", "len": "($r | length)"}

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
            return "(v | isnan)"
        if kind == "inf":
            return "(v | isinfinite)"
        (_, op), (kind2, value2) = take(), take()
        if kind == "num":  # number op value: turn it round so the value reads first
            op = {">=": "<=", "<=": ">=", ">": "<", "<": ">"}.get(op, op)
            kind, value, kind2, value2 = kind2, value2, kind, value
        number = repr(float(value2))
        if kind == "len":
            return f"({read['len']} {op} {number})"
        return f"(v as $x | if $x | isnan then {_NAN_GIVES[op]} else $x {op} {number} end)"

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
    """Argo's ``EvaluateResult`` in jq: both conditions evaluated first (an error in either is
    Error), then failure wins; neither true (both given) -> Inconclusive; none -> Successful."""
    succ = jq_condition(success) if success else "false"
    fail = jq_condition(failure) if failure else "false"
    if success is None and failure is None:
        decide = '"Successful"'
    elif failure is None:
        decide = 'if $s then "Successful" else "Failed" end'
    elif success is None:
        decide = 'if $f then "Failed" else "Successful" end'
    else:
        decide = 'if $f then "Failed" elif $s then "Successful" else "Inconclusive" end'
    return jq_values(f"({succ}) as $s | ({fail}) as $f | {decide}")


class MetricsRunbook(Runbook):
    """A runbook whose analysis queries Prometheus over ``source``, the router's own metrics;
    ``hashes`` name the two Deployments' pod prefixes (Istio tells versions apart by pod, nginx
    by its ``canary`` label)."""

    def __init__(
        self,
        executor: Executor,
        policy,
        target: Target,
        source: MetricSource,
        hashes: tuple[str, str] = ("canary", "stable"),
    ) -> None:
        super().__init__(executor, policy, target)
        self.source, self.hashes = source, hashes
        self.functions.append(_CHECKS)

    def query(self, query: Query, window: float | None, field: str, scale=None) -> str:
        if window is None:
            reason = "a query needs a window: give the metric an interval or the query a window"
            raise NotExpressibleError(self.executor, f"{field}.interval", reason)
        t, source = self.target, self.source
        try:
            return query_for(
                query,
                source,
                t.service,
                t.namespace,
                window,
                scale=scale,
                hashes=self.hashes,
                nan_filter=query.nan_filter,
            )
        except ValueError as exc:
            raise NotExpressibleError(self.executor, field, str(exc)) from None

    def analysis(self, analysis, key: str, field: str) -> str:
        run = f"rs_run_{key}"
        names: list[str] = []
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
                for key, text in (
                    ("successCondition", metric.success_condition),
                    ("failureCondition", metric.failure_condition),
                ):
                    if text and not Condition(text).simple:
                        reason = "the runbook's jq reads comparisons of result, len and isNaN"
                        raise NotExpressibleError(self.executor, f"{where}.{key}", reason)
                args.append(argo_verdict(metric.success_condition, metric.failure_condition))
                names.append(f"{run}_{len(names)}")
                body = " ".join(quote(str(a)) for a in args)
                self.functions.append(f"{names[-1]}() {{ rs_metric {body}; }}")
        self.functions.append(f"{run}() {{ rs_analysis {' '.join(names)}; }}")
        return run
