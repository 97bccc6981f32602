"""The kubectl runbook: one ordered list of steps, rendered as ``runbook.sh`` and ``runbook.json``.

Kubernetes runs only a Deployment's rolling update; every other release (a replica-ratio
canary behind one Service, a blue-green switch, a batch release, and every step of an
ingress-nginx or Istio release) needs someone to apply, scale, wait, check and switch in
order. A ``Runbook`` holds that order as ``Step`` objects, the objects applied and, for each
state a step leaves the release in, the abort that leads back to the stable version. The bash
it renders is self-contained: a prelude of helpers (waits, approvals, the abort trap), then one
block per step. Analysis checks are added by ``checks.MetricsRunbook``; the orders themselves
(canary steps, a blue-green switch, Flagger's loop) are in ``sequences`` and ``flagger_loop``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from shlex import quote
from typing import Any

from policies.base import dump_yaml
from policies.errors import NotExpressibleError
from policies.exporters import Export, Target
from policies.vocabulary import Executor

__all__ = [
    "Runbook",
    "Step",
    "apply_command",
    "quote",
    "refuse_unrunnable",
    "secs",
    "share",
]


def secs(seconds: float) -> str:
    """Seconds as ``sleep`` takes them: ``600`` rather than ``600.0``."""
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)


def share(canary: int, stable: int) -> str:
    """The canary's real share of traffic when one Service selects both, e.g. ``25 %``."""
    return f"{round(100 * canary / (canary + stable)) if canary + stable else 0} %"


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

    def __init__(self, executor: Executor, policy, target: Target, mode: str = "wait") -> None:
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
        """The bash function of one AnalysisRun (``checks.MetricsRunbook`` writes it)."""
        reason = (
            "behind one plain Service the router's metrics do not tell the versions apart: a"
            " Kubernetes runbook gates on pauses (a timed pause, or pause: {} for a person to"
            " end), so give pauses instead of analysis (the argo exporter takes this analysis"
            " as written)"
        )
        raise NotExpressibleError(self.executor, field, reason)

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

    def _abort_steps(self) -> list[Step]:
        """One guarded step per state that has a way back, in the order the states arose."""
        out = []
        for state, commands in self.aborts.items():
            if not commands:
                continue
            guard = f'if [ "$RS_STATE" = {quote(state)} ]; then'
            echo = f"echo {quote(f'==> abort from state {state}')}"
            notes = f"On a failure in state {state}: back to the stable version."
            out.append(Step("abort", "\n".join([guard, echo, *commands, "fi"]), notes=notes))
        return out

    def export(self) -> Export:
        prelude = _PRELUDE.replace("@PROM@", self.target.prometheus)
        prelude = prelude.replace("@NS@", quote(self.target.namespace))
        setup = Step("setup", "\n".join([prelude, *self.functions]), notes="Helpers and traps.")
        done = Step("done", "RS_DONE=1\nrs_bg_stop", notes="Released: nothing aborts from here.")
        aborts = self._abort_steps()
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


def refuse_unrunnable(executor: str, policy) -> None:
    """What a runbook cannot run: undo windows, dry-run metrics, judges no query computes."""
    if getattr(policy, "rollback_window", None) is not None:
        reason = (
            "a runbook has no undo that skips the steps and analysis (Argo's fast track): drop"
            " rollbackWindow, and an undo walks the steps again"
        )
        raise NotExpressibleError(executor, "rollbackWindow", reason)
    judges = {
        "sequential": "a sequential test keeps evidence across windows; no query computes it:"
        " give the metric a provider query with a successCondition",
        "kayenta": "a Kayenta judge (Mann-Whitney per metric, then a score) is no query: give"
        " each metric a provider query with a successCondition",
    }
    for i, template in enumerate(getattr(policy, "analysis_templates", ())):
        if template.dry_run:
            reason = (
                "a runbook check decides; a metric kept only for the record has no command:"
                " drop dryRun to let it gate, or drop the template"
            )
            raise NotExpressibleError(executor, f"analysisTemplates[{i}].dryRun", reason)
        for j, metric in enumerate(template.metrics):
            for name, reason in judges.items():
                if getattr(metric.provider, name) is not None:
                    field = f"analysisTemplates[{i}].metrics[{j}].provider.{name}"
                    raise NotExpressibleError(executor, field, reason)
