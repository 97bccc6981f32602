"""Plain Kubernetes: Deployments, Services, and a kubectl runbook for what no controller runs.

Kubernetes itself runs only a Deployment's rolling update. The CCE-style releases — a
replica-ratio canary behind one Service, a blue-green switch by Service selector, a batch
release with pauses — need someone to scale, wait, check and switch in order, so their export
is the objects plus that order: one list of ``Step`` objects rendered both as a bash script
(``runbook.sh``) and as JSON (``runbook.json``). ingress-nginx and Istio reuse the runbook and
the walkers with their own router objects. Pod counts are the controllers' own arithmetic
(``policies.replicas``), so the runbook scales to exactly what the simulator simulated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from shlex import quote
from typing import Any

from policies.base import dump_yaml
from policies.batch import BatchRelease
from policies.bluegreen import BlueGreen
from policies.canary import Canary
from policies.errors import NotExpressibleError
from policies.exporters import Export, Target
from policies.replicas import basic_canary_scale, resolve_fenceposts, rolling_update_sync
from policies.rolling import RollingUpdate

__all__ = [
    "EXECUTOR",
    "BasicWeights",
    "Runbook",
    "ServiceSwitch",
    "Step",
    "apply_command",
    "bluegreen_runbook",
    "canary_runbook",
    "deployment",
    "export",
    "refuse_unrunnable",
    "secs",
    "service",
    "share",
    "whole_seconds",
]

EXECUTOR = "kubernetes"


def whole_seconds(executor: str, field: str, seconds: float) -> int:
    """Kubernetes takes whole seconds; rounding a fraction would change the policy: refuse."""
    if seconds != int(seconds):
        raise NotExpressibleError(executor, field, f"{seconds} s is not a whole number of seconds")
    return int(seconds)


def secs(seconds: float) -> str:
    """Seconds as ``sleep`` takes them: ``600`` rather than ``600.0``."""
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)


def share(canary: int, stable: int) -> str:
    """The canary's real share of traffic when one Service selects both, e.g. ``25 %``."""
    return f"{round(100 * canary / (canary + stable)) if canary + stable else 0} %"


def deployment(
    target: Target, version: str | None, image: str, replicas: int, *, min_ready: int = 0,
    deadline: int = 600, fences: tuple[int | str, int | str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``<service>-<version>`` labelled ``app``/``version``, which Services and subsets select."""
    labels = {"app": target.service} | ({"version": version} if version else {})
    container = {"name": target.service, "image": image}
    container["ports"] = [{"name": "http", "containerPort": target.port}]
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": dict(labels)}}
    spec |= {"minReadySeconds": min_ready, "progressDeadlineSeconds": deadline}
    if fences is not None:
        rolling = {"maxSurge": fences[0], "maxUnavailable": fences[1]}
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": rolling}
    template = {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}}
    spec["template"] = template  # separate dicts: no YAML anchors in the output
    name = f"{target.service}-{version}" if version else target.service
    meta = {"name": name, "namespace": target.namespace, "labels": labels}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def service(target: Target, name: str, selector: dict[str, str]) -> dict[str, Any]:
    """A ClusterIP Service on the target port."""
    meta = {"name": name, "namespace": target.namespace, "labels": {"app": target.service}}
    ports = [{"name": "http", "port": target.port, "targetPort": "http"}]
    spec = {"selector": selector, "ports": ports}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


# ----------------------------------------------------------------------------- runbook


def apply_command(target: Target, objects: list[dict[str, Any]]) -> str:
    """``kubectl apply`` of ``objects`` inline (a here-document): each step is self-contained."""
    text = "---\n".join(dump_yaml(o) for o in objects)
    return f"kubectl -n {quote(target.namespace)} apply -f - <<'EOF'\n{text}EOF"


_PRELUDE = r"""set -euo pipefail  # bash >= 5.1, kubectl, curl, jq
PROM="${PROM:-@PROM@}"  # queried by the analysis checks
RS_STATE="" RS_DONE="" RS_BG="" RS_BG_RUN="" RS_FG="" RS_VERDICT="" RS_FAILED=0
rs_step() { printf '\n==> [%s] %s\n' "$1" "$2"; }
# Wait for a command in the background, so that a trap (abort) fires at once.
rs_fg() {
  local pid rc
  "$@" &
  pid=$! RS_FG=$!
  while :; do
    rc=0
    wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || return "$rc"
  done
}
rs_sleep() { echo "    waiting ${1}s"; rs_fg sleep "$1"; }
# All pods updated and available. Past the progress deadline: fail if the mode is abort
# (progressDeadlineAbort), else report and keep waiting (what the controllers do).
rs_ready() {
  until rs_fg kubectl -n @NS@ rollout status "deployment/$1"; do
    if [ "$2" = abort ]; then echo "!!  $1: progress deadline exceeded" >&2; return 1; fi
    echo "    $1: progress deadline exceeded; still waiting"
    rs_sleep 10
  done
}
# A pause without duration: only a human promotes (closed stdin = no promotion = abort).
rs_approve() {
  local answer=""
  read -r -p "$1 Type promote to continue, anything else aborts: " answer || true
  [ "$answer" = promote ]
}
rs_bg_stop() { if [ -n "$RS_BG" ]; then kill "$RS_BG" 2>/dev/null || true; fi; RS_BG=""; }
# Any failure before the end (or a background failure, TERM) runs the abort of RS_STATE.
rs_exit() {
  local rc=$?
  trap '' TERM USR1
  rs_bg_stop
  if [ -n "$RS_FG" ]; then kill "$RS_FG" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ] && [ -z "$RS_DONE" ]; then
    echo "!!  failed (exit $rc) in state '$RS_STATE': aborting" >&2
    set +e
    rs_abort
  fi
  exit "$rc"
}
trap rs_exit EXIT
trap 'exit 143' TERM"""


@dataclass(frozen=True)
class Step:
    """One runbook step: a command, what to wait for, what must pass, and why."""

    action: str
    command: str = ""
    wait: str = ""
    check: str = ""
    notes: str = ""


class Runbook:
    """Steps, objects and abort plans of one export; ``export()`` renders runbook.sh and .json
    from the one step list. State-changing steps set ``RS_STATE``; the abort step guarded by
    that state is the way back from there, so a failure anywhere undoes exactly what was done.
    """

    def __init__(self, executor: str, policy, target: Target, mode: str = "wait") -> None:
        self.executor, self.policy, self.target, self.mode = executor, policy, target, mode
        self.steps: list[Step] = []
        self.manifests: list[dict[str, Any]] = []
        self.functions: list[str] = []
        self.aborts: dict[str, list[str]] = {}

    def add(self, action: str, command: str = "", *, state: str | None = None, **kw) -> None:
        if state is not None:
            command = f"{command}\nRS_STATE={quote(state)}".lstrip("\n")
        self.steps.append(Step(action, command, **kw))

    def kubectl(self, args: str) -> str:
        return f"kubectl -n {quote(self.target.namespace)} {args}"

    def apply_command(self, objects: list[dict[str, Any]]) -> str:
        return apply_command(self.target, objects)

    def apply(self, objects: list[dict[str, Any]], notes: str, **kw) -> None:
        self.manifests.extend(objects)
        self.add("apply", self.apply_command(objects), notes=notes, **kw)

    def scale_command(self, name: str, replicas: int) -> str:
        return self.kubectl(f"scale deployment/{name} --replicas={replicas}")

    def scale(self, name: str, replicas: int, notes: str = "", **kw) -> None:
        wait = f"rs_ready {name} {self.mode}"
        self.add("scale", self.scale_command(name, replicas), wait=wait, notes=notes, **kw)

    def pause(self, duration: float | None, what: str) -> None:
        if duration is None:
            check = f"rs_approve {quote(what + ': paused until a human promotes.')}"
            self.add("approve", check=check, notes=f"{what}: a pause without duration.")
        else:
            wait, notes = f"rs_sleep {secs(duration)}", f"{what}: {secs(duration)} s."
            self.add("pause", wait=wait, notes=notes)

    def analysis(self, analysis, key: str, field: str) -> str:
        """The bash function of one AnalysisRun (``MetricsRunbook`` in nginx.py writes it)."""
        reason = "behind a plain Service no metric tells the versions apart; route through nginx"
        raise NotExpressibleError(self.executor, field, f"{reason} or istio, or export to argo")

    def gate(self, analysis, key: str, what: str) -> None:
        run = self.analysis(analysis, key, what)
        notes = f"{what}: Successful goes on, Inconclusive waits for a human, Failed aborts."
        self.add("analysis", check=f"rs_gate {run}", notes=notes)

    def walk(self, counts, move, back, names, what: str) -> tuple[int, int]:
        """Scale the (canary, stable) Deployments along ``move`` until it rests; each state
        gets the abort path along ``back`` from there."""
        while (nxt := tuple(move(*counts))) != counts:
            state = f"{nxt[0]}/{nxt[1]}"
            for k in (0, 1):
                if nxt[k] != counts[k]:
                    notes = f"{what}: {names[k]} to {nxt[k]} pods ({state} canary/stable)."
                    self.scale(names[k], nxt[k], state=state, notes=notes)
            self.aborts[state], here = [], nxt
            while (prev := tuple(back(*here))) != here:
                for k in (0, 1):
                    if prev[k] != here[k]:
                        self.aborts[state] += [self.scale_command(names[k], prev[k])]
                        self.aborts[state] += [f"rs_ready {names[k]} wait"]
                here = prev
            counts = nxt
        return counts

    def export(self) -> Export:
        prelude = _PRELUDE.replace("@PROM@", self.target.prometheus)
        prelude = prelude.replace("@NS@", quote(self.target.namespace))
        setup = Step("setup", "\n".join([prelude, *self.functions]), notes="Helpers and traps.")
        done = Step("done", "RS_DONE=1\nrs_bg_stop", notes="Released: nothing aborts from here.")
        aborts = [
            Step("abort", "\n".join([f'if [ "$RS_STATE" = {quote(k)} ]; then',
                 f"echo {quote(f'==> abort from state {k}')}", *c, "fi"]),
                 notes=f"On a failure in state {k}: back to the stable version.")
            for k, c in self.aborts.items() if c
        ]  # fmt: skip
        steps = [setup, *self.steps, done, *aborts]
        total, cut = len(steps), len(steps) - len(aborts)

        def render(i: int, step: Step) -> str:
            lines = [f"# {line}" for line in step.notes.splitlines()]
            if step.action not in ("setup", "abort"):  # an abort echoes inside its guard
                title = step.action + (f": {step.notes.splitlines()[0]}" if step.notes else "")
                lines.append(f"rs_step {i + 1}/{total} {quote(title)}")
            return "\n".join(lines + [c for c in (step.command, step.wait, step.check) if c])

        head = (
            f"#!/usr/bin/env bash\n# {self.policy.kind} {self.policy.name} on {self.executor},"
            " generated by rolloutsim; runbook.json holds the same steps.\n# Every step sets"
            " absolute state (apply, scale, patch): a re-run restarts the release from step 0,"
            " like Argo's retry.\n# Any failure (or Ctrl-C) before the end aborts back to the"
            " stable version."
        )
        body = "\n".join(render(cut + k, s) for k, s in enumerate(aborts))
        parts = [head, render(0, setup), f"rs_abort() {{\n{body}\n:\n}}"]
        parts += [render(i, s) for i, s in enumerate(steps[1:cut], start=1)]
        files = {"runbook.sh": "\n\n".join(parts) + "\n"}
        files["runbook.json"] = json.dumps([asdict(s) for s in steps], indent=2) + "\n"
        return Export(self.executor, self.manifests, files)


# ----------------------------------------------------------------------------- walkers


def refuse_unrunnable(executor: str, policy) -> None:
    """What a runbook cannot run: undo windows, dry-run metrics, judges no query computes."""
    if getattr(policy, "rollback_window", None) is not None:
        reason = "a runbook has no undo that skips the steps and analysis (Argo's fast track)"
        raise NotExpressibleError(executor, "rollbackWindow", reason)
    judges = {
        "sequential": "a sequential test keeps evidence across windows; no query computes it",
        "kayenta": "a Kayenta judge (Mann-Whitney per metric, then a score) is no query",
    }
    for i, template in enumerate(getattr(policy, "analysis_templates", ())):
        if template.dry_run:
            reason = "a runbook check decides; a metric kept only for the record has no command"
            raise NotExpressibleError(executor, f"analysisTemplates[{i}].dryRun", reason)
        for j, metric in enumerate(template.metrics):
            for name, reason in judges.items():
                if getattr(metric.provider, name) is not None:
                    field = f"analysisTemplates[{i}].metrics[{j}].provider.{name}"
                    raise NotExpressibleError(executor, field, reason)


def _timing(executor: str, policy) -> dict[str, int]:
    deadline = policy.progress_deadline_seconds
    return {
        "min_ready": whole_seconds(executor, "minReadySeconds", policy.min_ready_seconds),
        "deadline": whole_seconds(executor, "progressDeadlineSeconds", deadline),
    }


class BasicWeights:
    """How a basic canary's weight becomes pods: Argo's N / N+1 rule, one scaling stage per
    reconcile within maxSurge/maxUnavailable; the abort is the same walk back to weight 0."""

    executor = EXECUTOR

    def __init__(self, book: Runbook, policy: Canary, n: int) -> None:
        self.book, self.n, self.pods = book, n, (0, n)
        self.fences = resolve_fenceposts(policy.max_surge, policy.max_unavailable, n)
        svc = book.target.service
        self.names = (f"{svc}-canary", f"{svc}-stable")

    def objects(self) -> list[dict[str, Any]]:
        svc = self.book.target.service
        return [service(self.book.target, svc, {"app": svc})]

    def _move(self, weight: int):
        return lambda c, s: basic_canary_scale(self.n, weight, *self.fences, c, c, s, s)[:2]

    def set_weight(self, weight: int, what: str) -> None:
        self.pods = self.book.walk(self.pods, self._move(weight), self._move(0), self.names, what)
        note = f"{what}: {self.pods[0]} canary / {self.pods[1]} stable pods"
        note += f" = {share(*self.pods)} of traffic"
        self.book.add("setWeight", f"echo {quote(note)}", notes=f"{note} (Argo's N / N+1 rule).")

    def promote(self, background: bool) -> None:
        self.set_weight(100, "promotion: end of steps")
        if background:
            self.book.add("analysis", "rs_bg_stop", notes="Promoted: the background run ends.")
        self.book.add("promote", state="promoted", notes="The canary Deployment serves all.")


def canary_runbook(policy: Canary, target: Target, weights=None) -> Export:
    """Argo's canary steps in order; ``weights`` turns a weight into pods and routes
    (``BasicWeights`` without a router; nginx and Istio bring theirs)."""
    book = weights.runbook(policy, target) if weights else Runbook(EXECUTOR, policy, target)
    refuse_unrunnable(book.executor, policy)
    book.mode = "abort" if policy.progress_deadline_abort else "wait"
    n, kw = target.replicas_for(policy), _timing(book.executor, policy)
    weights = weights.bind(book, policy, n) if weights else BasicWeights(book, policy, n)
    objects = [deployment(target, "stable", target.stable_image, n, **kw)]
    objects += [deployment(target, "canary", target.image, 0, **kw), *weights.objects()]
    book.apply(objects, f"Stable at {n} pods, canary at 0, and what routes to them.")
    background = policy.analysis
    for i, step in enumerate((*policy.steps, None)):
        what = f"steps[{i}]"
        if background is not None and i == background.starting_step:
            run = book.analysis(background, "background", "analysis")
            book.add("analysis", f"rs_bg_start {run}", notes="The background analysis starts.")
        if step is None:
            break
        if step.set_weight is not None:
            weights.set_weight(step.set_weight, f"{what}: setWeight {step.set_weight}")
        elif step.pause is not None:
            book.pause(step.pause.duration, what)
        elif step.analysis is not None:
            book.gate(step.analysis, f"step{i}", f"{what}.analysis")
        elif step.set_canary_scale is not None:
            weights.set_canary_scale(step.set_canary_scale, f"{what}: setCanaryScale")
        else:
            weights.header_route(step.set_header_route, f"{what}: setHeaderRoute")
    weights.promote(background is not None)
    return book.export()


class ServiceSwitch:
    """Blue-green by Service selector (CCE): one Service whose ``version`` a patch flips."""

    executor = EXECUTOR

    def __init__(self, target: Target) -> None:
        self.target = target

    def objects(self) -> list[dict[str, Any]]:
        svc = self.target.service
        return [service(self.target, svc, {"app": svc, "version": "blue"})]

    def command(self, side: str) -> str:
        patch = json.dumps({"spec": {"selector": {"version": side}}}, separators=(",", ":"))
        ns = quote(self.target.namespace)
        return f"kubectl -n {ns} patch service/{self.target.service} -p {quote(patch)}"

    def manifest(self, side: str) -> list[dict[str, Any]]:
        return []  # a patch, not an object

    def runbook(self, policy, target: Target) -> Runbook:
        return Runbook(EXECUTOR, policy, target)


def bluegreen_runbook(policy: BlueGreen, target: Target, switch) -> Export:
    """Argo's blue-green order: green beside blue, pre-promotion analysis, the pause, one
    instant switch (``switch`` says how), post-promotion analysis, blue down after the delay."""
    book = switch.runbook(policy, target)
    if policy.switch == "dns":
        reason = "a DNS switch is not a Kubernetes object: the record and its TTL live in DNS"
        raise NotExpressibleError(book.executor, "switch", reason)
    refuse_unrunnable(book.executor, policy)
    book.mode = "abort" if policy.progress_deadline_abort else "wait"
    n, kw, svc = target.replicas_for(policy), _timing(book.executor, policy), target.service
    blue, green = f"{svc}-blue", f"{svc}-green"
    preview = n if policy.preview_replica_count is None else min(policy.preview_replica_count, n)
    objects = [deployment(target, "blue", target.stable_image, n, **kw)]
    objects += [deployment(target, "green", target.image, 0, **kw), *switch.objects()]
    book.apply(objects, "Blue (serving) at N pods, green at 0, and what routes to blue.")
    for state in ("preview", "switched"):
        book.aborts[state] = [switch.command("blue")] if state == "switched" else []
        book.aborts[state].append(f"rs_ready {blue} wait")
        if policy.abort_scale_down_delay_seconds > 0:  # 0 keeps the preview (Argo)
            book.aborts[state].append(f"rs_sleep {secs(policy.abort_scale_down_delay_seconds)}")
            book.aborts[state].append(book.scale_command(green, 0))
    book.scale(green, preview, state="preview", notes=f"Green (preview) to {preview} pods.")
    if policy.pre_promotion_analysis is not None:
        book.gate(policy.pre_promotion_analysis, "pre", "prePromotionAnalysis")
    if not policy.auto_promotion_enabled:
        book.pause(None, "autoPromotionEnabled: false")
    elif policy.auto_promotion_seconds > 0:
        book.pause(policy.auto_promotion_seconds, "autoPromotionSeconds")
    if preview < n:
        book.scale(green, n, state="preview", notes="Green to N pods before the switch.")
    book.manifests.extend(switch.manifest("green"))
    book.add("switch", switch.command("green"), state="switched", notes="All traffic to green.")
    if policy.post_promotion_analysis is not None:
        book.gate(policy.post_promotion_analysis, "post", "postPromotionAnalysis")
    book.add("promote", state="promoted", notes="Promoted: green is the stable side now.")
    book.pause(policy.scale_down_delay_seconds, "scaleDownDelaySeconds before blue goes")
    book.scale(blue, 0, notes="Blue goes; for the next release the colours swap.")
    return book.export()


def _batch(policy: BatchRelease, target: Target) -> Export:
    """Two Deployments behind one Service, each batch moved by the Deployment controller's own
    sync with the batch as partition (``rolling_update_sync``), so the new pods equal the batch
    counts exactly; ``kubectl rollout pause`` would stop a live update wherever it was."""
    refuse_unrunnable(EXECUTOR, policy)
    n, svc, kw = target.replicas_for(policy), target.service, _timing(EXECUTOR, policy)
    book = Runbook(EXECUTOR, policy, target)
    objects = [deployment(target, "stable", target.stable_image, n, **kw)]
    objects += [deployment(target, "canary", target.image, 0, **kw)]
    book.apply([*objects, service(target, svc, {"app": svc})], "Old pods at N, new at 0.")
    surge, unav = resolve_fenceposts(policy.max_surge, policy.max_unavailable, n)
    pods, names = (0, n), (f"{svc}-canary", f"{svc}-stable")

    def back(c: int, s: int) -> tuple[int, int]:  # the controller's rollback: the same sync
        return tuple(reversed(rolling_update_sync(n, surge, unav, s, s, c, c)))

    for b, (batch, want) in enumerate(zip(policy.batches, policy.batch_pods(n))):

        def move(c: int, s: int, want: int = want) -> tuple[int, int]:
            return rolling_update_sync(n, surge, unav, c, c, s, s, partition=want)

        pods = book.walk(pods, move, back, names, f"batches[{b}]")
        note = f"batches[{b}]: {pods[0]} of {n} pods new = {share(*pods)} of traffic"
        book.add("batch", f"echo {quote(note)}", notes=note)
        if b == len(policy.batches) - 1:
            break  # the last batch completes the release
        if batch.analysis is not None:
            book.gate(batch.analysis, f"batch{b}", f"batches[{b}].analysis")
        if batch.pause is not None:
            book.pause(batch.pause.duration, f"batches[{b}].pause")
    book.add("promote", state="promoted", notes="All batches released.")
    return book.export()


def _rolling(policy: RollingUpdate, target: Target) -> Export:
    """One Deployment: applying the new image starts the controller's own rolling update. The
    progress deadline only reports; Kubernetes never rolls back (``kubectl rollout undo``)."""
    fences, svc = (policy.max_surge, policy.max_unavailable), target.service
    kw = _timing(EXECUTOR, policy)
    dep = deployment(target, None, target.image, target.replicas_for(policy), fences=fences, **kw)
    book = Runbook(EXECUTOR, policy, target)
    notes = "The new image: the Deployment controller rolls it out (maxSurge/maxUnavailable)."
    book.apply([dep, service(target, svc, {"app": svc})], notes, wait=f"rs_ready {svc} wait")
    return book.export()


_ROUTER_ONLY = {
    "Progressive": "its weights need a traffic router; behind one Service traffic follows pods"
    " (Flagger's kubernetes provider runs it as blue/green)",
    "ABTest": "routing requests by header or cookie needs a traffic router",
}


def export(policy, target: Target) -> Export:
    """Deployments, Services and the runbook for ``policy``; refuses what needs a router."""
    if isinstance(policy, RollingUpdate):
        return _rolling(policy, target)
    if isinstance(policy, Canary):
        if policy.traffic_routing is not None:
            router = policy.traffic_routing.router
            reason = f"its weights go through {router}; a Service only splits by pod count"
            raise NotExpressibleError(EXECUTOR, "trafficRouting", reason)
        return canary_runbook(policy, target)
    if isinstance(policy, BlueGreen):
        return bluegreen_runbook(policy, target, ServiceSwitch(target))
    if isinstance(policy, BatchRelease):
        return _batch(policy, target)
    reason = f"{_ROUTER_ONLY[policy.kind]}; export it to flagger, nginx or istio"
    raise NotExpressibleError(EXECUTOR, "kind", f"{policy.kind}: {reason}")
