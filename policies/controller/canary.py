"""Argo Rollouts' canary strategy as a state machine (reference/argo-rollouts.md §1–§4).

Without trafficRouting the stable Service selects both groups, so the canary's traffic share
is its share of available pods, moved one fenced stage per reconcile (§2.2). With it, the
canary gets ceil(w·N/M) pods and the router takes the weight once they are available (§2.3).
"""

from __future__ import annotations

from typing import assert_never

from policies.analysis import Phase
from policies.canary import (
    Canary,
    Experiment,
    Pause,
    PluginStep,
    SetCanaryScale,
    SetHeaderRoute,
    SetMirrorRoute,
)
from policies.common import RolloutAnalysis, RouteMatch
from policies.controller.base import ArgoControllerBase
from policies.controller.canary_walk import walk_back
from policies.controller.experiments import ArgoExperiments
from policies.controller.plugins import ArgoStepPlugins
from policies.controller.protocol import AwaitingApproval, Cause, Progress
from policies.replicas import (
    abort_desired_weight,
    basic_canary_scale,
    basic_canary_targets,
    resolve_fenceposts,
    traffic_routed_counts,
)

__all__ = ["CanaryController"]

PAUSE_TIMER = "pause"
SCALE_DOWN_OLD_TIMER = "scaleDownOld"
ABORT_SCALE_DOWN_TIMER = "abortScaleDown"
BACKGROUND_RUN = "background"


class CanaryController(ArgoExperiments, ArgoStepPlugins, ArgoControllerBase):
    """Argo canary: steps, background analysis, abort, promotion and undo."""

    kind = "Canary"
    LOOP_FIELDS = (
        *ArgoControllerBase.LOOP_FIELDS,
        *("step_index", "step_started", "paused", "plugin_run", "plugin_phase"),
        *("has_experiment", "exp_running", "exp_failed"),
    )

    def __init__(self, policy: Canary, replicas: int, rng=None) -> None:
        super().__init__(policy, replicas, rng)
        self.routed = policy.traffic_routing is not None
        self.max_weight = policy.max_weight  # a property of the policy, read every reconcile
        self.dynamic_stable_scale = policy.dynamic_stable_scale  # (a model's fields read slowly)
        self.surge, self.unavailable = resolve_fenceposts(
            policy.max_surge, policy.max_unavailable, replicas
        )
        self.step_index = 0
        self.step_started = False
        self.paused: str | None = None  # CanaryPauseStep or InconclusiveAnalysisRun
        self.aborted = False
        self.undoing = False
        self.rolled_back = False
        self.background_started = False
        self.canary_weight = 0.0  # the router's weight without the experiment's templates'
        self._init_experiments()
        self._init_plugins()
        walk = walk_back(policy)  # per step: reconciles ask often, model fields read slowly
        self._steps, self._set_weights, self._scales, self._indefinite, self._deciding = walk[:5]
        self._routed_counts: dict[tuple, tuple[int, int]] = walk[5]  # see _reconcile_replicas

    # ------------------------------------------------------------------ events

    def _timer(self, key: str) -> None:
        if key == PAUSE_TIMER and self.paused == "CanaryPauseStep":
            self._end_pause()
        elif key == SCALE_DOWN_OLD_TIMER:
            self._scale("canary" if self.rolled_back else "stable", 0)
        elif key == ABORT_SCALE_DOWN_TIMER:
            self._scale("canary", 0)
        elif not self._experiment_timer(key):
            super()._timer(key)

    def _approved(self) -> None:
        """``kubectl argo rollouts promote``: clear every pause condition; at a pause or an
        analysis step that has begun, that step is done (index + 1)."""
        if self.aborted or self.promoted:
            return
        was_paused = self.paused is not None
        self.paused = None
        self._cancel_timer(PAUSE_TIMER)
        step = self._step()
        reason, cause = "Resumed", Progress("Resumed", self.step_index)
        waits = step is not None and (step.pause or step.analysis or step.experiment or step.plugin)
        if step is not None and self.step_started and waits:
            if step.analysis is not None:
                self._stop_run(self._step_run_key())
            if self.exp is not None:  # the experiment is terminated, its pods go later
                self._end_experiment()
            reason = "PauseEnded" if step.pause else "StepSkipped"
            cause = Progress("StepCompleted", self.step_index)
            self._advance()
            was_paused = True
        if was_paused:
            self._set_status("Progressing", reason, cause)

    def _deadline_applies(self) -> bool:
        if self.aborted or self.promoted or self.paused:
            return False
        return self.step_index >= len(self._steps) or not self._indefinite[self.step_index]

    def _progress_signature(self) -> tuple:
        """The step, then the base's pod counts: flat, without super() (after every event)."""
        return (self.step_index, self.desired.copy(), self.available.copy())

    # ------------------------------------------------------------------ helpers

    def _step(self):
        steps = self._steps
        return steps[self.step_index] if self.step_index < len(steps) else None

    def _step_run_key(self) -> str:
        return f"step-{self.step_index}"

    def _current_set_weight(self) -> int:
        """Argo ``GetCurrentSetWeight``: the last setWeight at or before the current step."""
        i = self.step_index
        return self._set_weights[i] if i < len(self._steps) else self.max_weight

    def _canary_scale(self):
        """The setCanaryScale in effect (Argo ``UseSetCanaryScale`` walks back from the step)."""
        i = self.step_index
        return self._scales[i] if i < len(self._steps) else None

    def _advance(self) -> None:
        """The next step; a run of the step left behind is stopped (Argo cancels it)."""
        if self._step_run_key() in self.runs:
            self._stop_run(self._step_run_key())
        self.step_index += 1
        self.step_started = False

    def _end_pause(self) -> None:
        self.paused = None
        self._cancel_timer(PAUSE_TIMER)
        ended = self.step_index
        self._advance()
        self._set_status("Progressing", "PauseEnded", Progress("StepCompleted", ended))

    # ------------------------------------------------------------------ reconcile

    def _reconcile(self) -> None:
        if self.finished:
            return
        if self.aborted:
            self._reconcile_abort()
        elif self.undoing:
            self._reconcile_undo()
        elif self.promoted:
            return
        else:
            self._reconcile_progress()

    def _reconcile_progress(self) -> None:
        background = self.runs.get(BACKGROUND_RUN)  # (until it ends, a call less: every time)
        if background is not None and background.phase.completed:
            self._react_to_background(background.phase)
        if self.aborted or self.paused == "InconclusiveAnalysisRun":
            return  # an Inconclusive pause halts replica reconciliation too (haltProgress)
        if not self.background_started:  # (else it does nothing: a call less, every reconcile)
            self._start_background_if_due()
        i, steps = self.step_index, self._steps  # (_current_set_weight and _step, inlined)
        weight = self._set_weights[i] if i < len(steps) else self.max_weight
        counts_reached = self._reconcile_replicas(weight)
        step = steps[i] if i < len(steps) else None
        if step is None:
            self._reconcile_full_promotion(counts_reached)
            return
        if self.paused:
            return
        if not self.step_started:
            self._enter_step(step)
            if self.paused:
                return
        if step.analysis is not None:
            done = self._step_analysis_done()
            if self.aborted or self.paused or (step.action == "analysis" and not done):
                return
        if step.experiment is not None and not self._experiment_done():
            return  # running, failed (aborted) or inconclusive (paused)
        plugin_waits = step.plugin is not None and not self._plugin_done(step.plugin)
        if plugin_waits and (self.aborted or step.action == "plugin"):
            return  # it Failed (an abort, whichever action decides the step), or it runs
        operation = self._deciding[self.step_index]  # step.operation, walked once
        match operation:  # Argo's completedCurrentCanaryStep: the first action decides
            case int() | SetCanaryScale():
                if counts_reached and (not self.routed or self.weight == self._router_target()):
                    self._advance()
            case Pause():
                pass  # its timer or an approval ends it
            case Experiment() | RolloutAnalysis() | SetHeaderRoute() | SetMirrorRoute():
                self._advance()  # the experiment or analysis succeeded; a route is set at once
            case PluginStep():
                self._advance()  # the plugin said Successful
            case never:
                assert_never(never)

    def _enter_step(self, step) -> None:
        """What a step does when it is reached, every action of it (a header route is set, a
        step analysis started, a pause begun); the weight and pods follow the walk-back."""
        self.step_started = True
        route = step.set_header_route
        if route is not None:
            match: tuple[RouteMatch, ...] = ()
            if route.match:
                headers = {h.header_name: h.header_value for h in route.match}
                match = (RouteMatch(headers=headers),)
            self._set_match_route(route.name, match)
        mirror = step.set_mirror_route
        if mirror is not None:
            percent = 0.0 if mirror.match is None else float(mirror.percent)  # nil: removed
            self._set_mirror(mirror.name, percent, mirror.copied)
        if step.analysis is not None:
            self._start_run(self._step_run_key(), self.policy.templates_for(step.analysis))
        if step.experiment is not None:
            self._start_experiment(step.experiment)
        if step.plugin is not None:
            self._run_plugin(step.plugin)
        pause = step.pause
        if pause is not None:
            self.paused = "CanaryPauseStep"
            cause: Cause
            if pause.duration is None:
                cause = AwaitingApproval(self.step_index)
            else:
                cause = Progress("Paused", self.step_index)
            self._set_status("Paused", "CanaryPauseStep", cause)
            if pause.duration is not None:
                self._start_timer(PAUSE_TIMER, pause.duration)

    def _step_analysis_done(self) -> bool:
        """The step's analysis run: True once Successful; a Failed or Error run aborts and an
        Inconclusive one pauses, whichever action ends the step (Argo judges the step's run
        on every reconcile)."""
        key = self._step_run_key()
        phase = self._run_phase(key)
        if phase is None or not phase.completed:
            return False
        if phase == Phase.SUCCESSFUL:
            return True
        verdict = self._verdict(key, phase, self.step_index)
        self._stop_run(key)
        if phase == Phase.INCONCLUSIVE:
            self.paused = "InconclusiveAnalysisRun"
            cause = AwaitingApproval(self.step_index, verdict)
            self._set_status("Paused", "InconclusiveAnalysisRun", cause)
        else:
            self._abort(f"StepAnalysis{phase.value}", verdict)
        return False

    def _react_to_background(self, phase: Phase) -> None:
        """The background run has ended in ``phase``."""
        if phase == Phase.SUCCESSFUL:
            return  # a finished successful run is not recreated
        verdict = self._verdict(BACKGROUND_RUN, phase, self.step_index)
        self._stop_run(BACKGROUND_RUN)
        if phase == Phase.INCONCLUSIVE:
            self.paused = "InconclusiveAnalysisRun"
            self.background_started = False  # a resume creates a new run
            cause = AwaitingApproval(self.step_index, verdict)
            self._set_status("Paused", "InconclusiveAnalysisRun", cause)
        else:
            self._abort(f"BackgroundAnalysis{phase.value}", verdict)

    def _start_background_if_due(self) -> None:
        """(Asked only while no background run was started.)"""
        analysis = self.policy.analysis
        if analysis is not None and self.step_index >= analysis.starting_step:
            self.background_started = True
            self._start_run(BACKGROUND_RUN, self.policy.templates_for(analysis))

    # ------------------------------------------------------------------ replicas and weight

    def _router_target(self) -> float:
        """The weight the router should carry: the step's weight once the canary is available."""
        return float(self._current_set_weight())

    def _reconcile_replicas(self, weight: int) -> bool:
        """Move the groups toward this weight's counts; True once they are there and available."""
        n = self.replicas
        if not self.routed:
            canary, stable = self._basic_walk(weight)
            return (
                (canary, stable) == (self.desired["canary"], self.desired["stable"])
                and all(self._ready(g) for g in ("canary", "stable"))
                and self._basic_at_target(weight)
            )
        dynamic = self.dynamic_stable_scale
        stable_weight = self.max_weight - self.weight - self._stable_extra() if dynamic else 0.0
        key = (n, weight, self.step_index, round(stable_weight))  # all the counts depend on
        counts = self._routed_counts.get(key)  # (the step: its setCanaryScale), so once each
        if counts is None:
            scale = self._canary_scale()
            counts = self._routed_counts[key] = traffic_routed_counts(
                n,
                weight,
                self.max_weight,
                canary_scale_replicas=scale.replicas if scale else None,
                canary_scale_weight=scale.weight if scale else None,
                dynamic_stable_scale=dynamic,
                actual_stable_weight=key[3],  # read only with dynamicStableScale
                min_pods_per_replica_set=self.policy.min_pods_per_replica_set,
            )
        canary, stable = counts
        desired, available = self.desired, self.available
        if counts != (desired["canary"], desired["stable"]):  # (else no-ops: fewer calls)
            self._scale("canary", canary)
            self._scale("stable", stable)
        canary_ok = available["canary"] == desired["canary"]  # (_ready inlined: both have both)
        target = self.canary_weight
        if canary_ok and self._stable_can_take(weight):
            target = float(weight)  # the weight moves only once the canary is available
        if available["canary"] == 0:
            target = 0.0
        self._route(target)
        return canary_ok and available["stable"] == desired["stable"]

    def _route(self, canary_weight: float) -> None:
        """The router's weight: the canary's, plus the weights of a running experiment's
        canary-spec templates, whose Service joins the canary's (new-version traffic);
        stable-spec templates' weights stay in the stable's share (old-version traffic)."""
        self.canary_weight = canary_weight
        extra = self.exp.weight_of("canary") if self.exp is not None and self.exp_running else 0
        self._set_weight(canary_weight + extra)

    def _basic_walk(
        self, weight: int, rising: str = "canary", falling: str = "stable"
    ) -> tuple[int, int]:
        """One fenced reconcile of a basic canary toward ``weight`` (§2.2): ``rising`` plays
        Argo's canary RS, ``falling`` its stable RS. Returns their new desired counts."""
        up, down, _ = basic_canary_scale(
            self.replicas,
            weight,
            self.surge,
            self.unavailable,
            self.desired[rising],
            self.available[rising],
            self.desired[falling],
            self.available[falling],
            max_weight=self.max_weight,
        )
        self._scale(falling, down)
        self._scale(rising, up)
        return up, down

    def _basic_at_target(self, weight: int) -> bool:
        canary, stable = basic_canary_targets(self.replicas, weight, self.surge, self.max_weight)
        if weight >= self.max_weight:
            canary, stable = self.replicas, 0
        return self.desired["canary"] == canary and self.desired["stable"] == stable

    def _stable_can_take(self, weight: int) -> bool:
        """Argo ``checkReplicasAvailable``: the router is not updated while the stable cannot
        carry its share: available >= floor((M − w)·N/M)."""
        m = self.max_weight
        return self.available["stable"] >= ((m - weight) * self.replicas) // m

    def _reconcile_full_promotion(self, counts_reached: bool) -> None:
        if counts_reached and not (self.routed and self.weight != self.max_weight):
            self._promote()

    def _promote(self) -> None:
        self.promoted = True
        self.paused = None
        self._stop_all_runs()
        self._clear_match_routes()
        if self.routed:  # stable Service -> new RS; the old RS lingers scaleDownDelaySeconds
            self._set_selectors({"canary"}, {"canary"})
            self._route(0.0)
            delay = self.policy.effective_scale_down_delay_s
            if delay > 0:
                self._start_timer(SCALE_DOWN_OLD_TIMER, delay)
            else:
                self._scale("stable", 0)
        else:  # one Service over both groups: the walk has already drained the stable
            self._scale("stable", 0)
        self._set_status("Promoted", "RolloutCompleted", Progress("Promoted"))

    # ------------------------------------------------------------------ abort

    def _abort(self, reason: str, cause: Cause) -> None:
        self.aborted = True
        self.paused = None
        self._cancel_timer(PAUSE_TIMER)
        if self.exp is not None:  # terminated: its weight goes at once, its pods later
            self._end_experiment()
        self._stop_all_runs()
        self._clear_match_routes()
        self._set_status("Aborted", reason, cause)
        self.abort_step_weights = [
            s.set_weight
            for s in self.policy.steps[: self.step_index + 1]
            if s.set_weight is not None
        ]
        self.abort_keeps_canary = (
            self.policy.abort_scale_down_delay_seconds == 0 and self._canary_scale() is not None
        )
        self.step_index = 0
        self.step_started = False

    def _reconcile_abort(self) -> None:
        n, m, desired = self.replicas, self.max_weight, self.desired
        if not self.routed:  # a rolling update back to the stable, within the fences
            self._basic_walk(0)
            if desired["canary"] == 0 and self._ready("stable") and desired["stable"] == n:
                self.finished = True
            return
        if self.policy.dynamic_stable_scale:
            self._scale("stable", n)
            explicit = self.policy.abort_scale_down_delay_seconds is not None
            target = abort_desired_weight(
                n,
                self.abort_step_weights,
                self.available["stable"],
                self.available["canary"],
                m,
                explicit_abort_delay=explicit,
            )
            stable_weight = self.available["stable"] * m // n if n else m
            if stable_weight >= m - target:  # never back up, and only as the stable can carry it
                self._route(float(min(self.weight, target)))
            if not explicit:
                self._scale("canary", min(self.desired["canary"], -(-int(self.weight) * n // m)))
        else:
            self._scale("stable", n)
            if self.available["stable"] >= n:
                self._route(0.0)  # one router write: all traffic back on the stable
        if self.weight == 0 and self.available["stable"] >= n and not self.finished:
            delay = self.policy.effective_abort_scale_down_delay_s
            if self.abort_keeps_canary:
                pass
            elif delay and self.desired["canary"] > 0:
                if ABORT_SCALE_DOWN_TIMER not in self.timers:
                    self._start_timer(ABORT_SCALE_DOWN_TIMER, delay)
                return
            else:
                self._scale("canary", 0)
            self.finished = True

    # ------------------------------------------------------------------ undo after promotion

    def _reconcile_undo(self) -> None:
        """Back to the previous version: switch at once while its pods still run, else start
        them first (DESIGN §4: why scaleDownDelaySeconds matters)."""
        n, desired = self.replicas, self.desired
        self._cancel_timer(SCALE_DOWN_OLD_TIMER)
        if not self.routed:  # the old version's RS is Argo's canary of this rollback
            self._basic_walk(self.max_weight, rising="stable", falling="canary")
            if desired["canary"] == 0 and desired["stable"] == n and self._ready("stable"):
                self._finish_undo()
            return
        self._scale("stable", n)
        if self.available["stable"] >= n:
            self._set_selectors({"stable"}, {"canary"})
            self._route(0.0)
            self._finish_undo()
            delay = self.policy.effective_scale_down_delay_s
            if delay > 0:
                self._start_timer(SCALE_DOWN_OLD_TIMER, delay)
            else:
                self._scale("canary", 0)

    def _finish_undo(self) -> None:
        self.undoing = False
        self.rolled_back = True
        self.finished = True
        self._set_status("RolledBack", "UndoCompleted", Progress("RolledBack"))
