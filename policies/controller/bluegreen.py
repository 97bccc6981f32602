"""Argo Rollouts' blueGreen strategy as a state machine (reference/argo-rollouts.md §5).

The new version starts beside the old one behind the preview Service; once it is saturated,
pre-promotion analysis runs, then (optionally) a pause; then the active Service switches to it
in one selector patch, or client by client within the TTL for a DNS switch. The old pods
linger ``scaleDownDelaySeconds``, so an abort or undo in that time switches straight back.
"""

from __future__ import annotations

from typing import cast

from policies.analysis import Phase
from policies.bluegreen import BlueGreen
from policies.controller.base import ArgoControllerBase
from policies.controller.protocol import AwaitingApproval, Cause, Progress

__all__ = ["BlueGreenController"]

PAUSE_TIMER = "pause"
SCALE_DOWN_OLD_TIMER = "scaleDownOld"
ABORT_SCALE_DOWN_TIMER = "abortScaleDown"
PRE_RUN = "prePromotion"
POST_RUN = "postPromotion"


class BlueGreenController(ArgoControllerBase):
    """Stages: preview -> prePromotion -> pause -> (scale to N) -> switched -> promoted."""

    kind = "BlueGreen"
    LOOP_FIELDS = (*ArgoControllerBase.LOOP_FIELDS, "stage", "paused", "switched")

    def __init__(self, policy: BlueGreen, replicas: int, rng=None) -> None:
        super().__init__(policy, replicas, rng)
        self.stage = "preview"
        self.switched = False
        self.aborted = False
        self.undoing = False
        self.rolled_back = False
        self.paused: str | None = None
        # BlueGreen's validator requires dnsTtl with switch: dns
        self.transition_s = cast(float, policy.dns_ttl) if policy.switch == "dns" else 0.0
        self._inconclusive_run = PRE_RUN

    # ------------------------------------------------------------------ events

    def _started(self) -> None:
        super()._started()
        self._set_selectors({"stable"}, {"canary"})
        preview = self.policy.preview_replica_count
        self._scale("canary", self.replicas if preview is None else min(preview, self.replicas))

    def _timer(self, key: str) -> None:
        if key == PAUSE_TIMER and self.paused == "BlueGreenPause":
            self._end_pause()
        elif key == SCALE_DOWN_OLD_TIMER:
            self._scale("canary" if self.rolled_back else "stable", 0)
        elif key == ABORT_SCALE_DOWN_TIMER:
            self._scale("canary", 0)
        else:
            super()._timer(key)

    def _approved(self) -> None:
        if self.aborted or self.promoted:
            return
        if self.paused == "BlueGreenPause":
            self._end_pause()
        elif self.paused == "InconclusiveAnalysisRun":
            self.paused = None
            self.stage = {PRE_RUN: "pause", POST_RUN: "promote"}.get(
                self._inconclusive_run, "pause"
            )
            self._set_status("Progressing", "Resumed", Progress("Resumed"))

    def _deadline_applies(self) -> bool:
        return not (self.aborted or self.promoted or self.paused) and self.stage in (
            "preview",
            "scale",
        )

    # ------------------------------------------------------------------ reconcile

    def _reconcile(self) -> None:
        if self.finished:
            return
        if self.aborted:
            self._reconcile_abort()
        elif self.undoing:
            self._reconcile_undo()
        elif not self.promoted and not self.paused:
            self._reconcile_progress()

    def _saturated(self, count: int) -> bool:
        return self.desired["canary"] == count and self.available["canary"] >= count

    def _reconcile_progress(self) -> None:
        policy, n = self.policy, self.replicas
        if self.stage == "preview":
            if not self._saturated(self.desired["canary"]):
                return
            self.stage = "pre"
            if policy.pre_promotion_analysis is not None:
                self._start_run(PRE_RUN, policy.templates_for(policy.pre_promotion_analysis))
        if self.stage == "pre":
            if not self._run_done(PRE_RUN):
                return
            self.stage = "pause"
            if policy.needs_pause:
                self.paused = "BlueGreenPause"
                manual = not policy.auto_promotion_enabled
                cause = AwaitingApproval() if manual else Progress("Paused")
                self._set_status("Paused", "BlueGreenPause", cause)
                if policy.auto_promotion_enabled:
                    self._start_timer(PAUSE_TIMER, policy.auto_promotion_seconds)
                return
        if self.stage == "pause":
            self.stage = "scale"
            self._scale("canary", n)  # scaleUpPreviewCheckPoint: the preview grows to N
        if self.stage == "scale":
            if not self._saturated(n):
                return
            self.stage = "switched"
            self.switched = True
            self._set_selectors({"canary"}, {"canary"}, self.transition_s)
            if policy.post_promotion_analysis is not None:
                self._start_run(POST_RUN, policy.templates_for(policy.post_promotion_analysis))
        if self.stage == "switched":
            if not self._run_done(POST_RUN):
                return
            self.stage = "promote"
        if self.stage == "promote":
            self._promote()

    def _run_done(self, key: str) -> bool:
        """True once the run (if any) succeeded; a bad run aborts or pauses as Argo does."""
        phase = self._run_phase(key)
        if phase is None:
            return True
        if not phase.completed:
            return False
        verdict = self._verdict(key, phase, None)
        self._stop_run(key)
        if phase == Phase.SUCCESSFUL:
            return True
        if phase == Phase.INCONCLUSIVE:
            self.paused = "InconclusiveAnalysisRun"
            self._inconclusive_run = key
            cause = AwaitingApproval(None, verdict)
            self._set_status("Paused", "InconclusiveAnalysisRun", cause)
        else:
            self._abort(f"{key}Analysis{phase.value}", verdict)
        return False

    def _end_pause(self) -> None:
        self.paused = None
        self._cancel_timer(PAUSE_TIMER)
        self._set_status("Progressing", "PauseEnded", Progress("PauseEnded"))

    def _promote(self) -> None:
        self.promoted = True
        self.stage = "promoted"
        self._stop_all_runs()
        self._start_timer(SCALE_DOWN_OLD_TIMER, self.policy.scale_down_delay_seconds)
        self._set_status("Promoted", "RolloutCompleted", Progress("Promoted"))

    # ------------------------------------------------------------------ abort and undo

    def _abort(self, reason: str, cause: Cause) -> None:
        self.aborted = True
        self.paused = None
        self._cancel_timer(PAUSE_TIMER)
        self._stop_all_runs()
        self._set_status("Aborted", reason, cause)

    def _reconcile_abort(self) -> None:
        """The active Service goes back to the old stable; the preview scales down later."""
        self._scale("stable", self.replicas)
        if self.switched:
            self._set_selectors({"stable"}, {"canary"}, self.transition_s)
        if self.available["stable"] >= self.replicas and not self.finished:
            delay = self.policy.abort_scale_down_delay_seconds
            if delay > 0 and self.desired["canary"] > 0:
                self._start_timer(ABORT_SCALE_DOWN_TIMER, delay)
            self.finished = True  # 0 means the preview is kept (abortScaleDownDelaySeconds: 0)

    def _reconcile_undo(self) -> None:
        """Switch straight back while the old pods run; otherwise start them first."""
        self._cancel_timer(SCALE_DOWN_OLD_TIMER)
        self._scale("stable", self.replicas)
        if self.available["stable"] >= self.replicas:
            self._set_selectors({"stable"}, {"canary"}, self.transition_s)
            self.undoing = False
            self.rolled_back = True
            self.finished = True
            self._start_timer(SCALE_DOWN_OLD_TIMER, self.policy.scale_down_delay_seconds)
            self._set_status("RolledBack", "UndoCompleted", Progress("RolledBack"))
