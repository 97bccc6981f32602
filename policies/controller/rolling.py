"""Kubernetes Deployment rolling updates, and CCE batch releases built on them.

One Service selects both ReplicaSets, so traffic follows available pods. Each reconcile is one
``rolloutRolling`` sync (executors.md §C.3); a rollback is the same rolling update back
(``kubectl rollout undo``, §C.6). The progress deadline only reports: Kubernetes never rolls
back by itself, so a bad version is caught by the backstops (alerts, humans).
"""

from __future__ import annotations

from policies.analysis import Phase
from policies.batch import BatchRelease
from policies.controller.base import ControllerBase
from policies.controller.protocol import (
    AwaitingApproval,
    Cause,
    GateVerdict,
    Intervention,
    Progress,
    Status,
)
from policies.replicas import resolve_fenceposts, rolling_update_sync
from policies.rolling import RollingUpdate

__all__ = ["BatchController", "RollingController"]

PAUSE_TIMER = "pause"


class _FencedRollout(ControllerBase):
    """Moves pods from one group to the other within maxSurge/maxUnavailable."""

    def __init__(self, policy, replicas: int, rng=None) -> None:
        super().__init__(policy, replicas, rng)
        self.surge, self.unavailable = resolve_fenceposts(
            policy.max_surge, policy.max_unavailable, replicas
        )
        self.rolling_back = False
        self.rolled_back = False

    def _started(self) -> None:
        super()._started()
        self._set_selectors({"stable", "canary"}, {"canary"})

    def _sync(self, new: str, old: str, cap: int | None = None) -> bool:
        """One Deployment sync moving pods from ``old`` to ``new`` (new capped at ``cap``);
        True once ``new`` has its target available and ``old`` holds the rest."""
        n = self.replicas
        target = n if cap is None else cap
        new_spec, old_spec = rolling_update_sync(
            n,
            self.surge,
            self.unavailable,
            self.desired[new],
            self.available[new],
            self.desired[old],
            self.available[old],
            partition=cap,
        )
        self._scale(new, new_spec)
        self._scale(old, old_spec)
        return (
            self.desired[new] == target
            and self.available[new] >= target
            and self.desired[old] == n - target
            and self._ready(old)
        )

    def _rollback_requested(self, source: str) -> None:
        self._roll_back(source, Intervention(source, undo=self.promoted))

    def _roll_back(self, source: str, cause: Cause) -> None:
        """``kubectl rollout undo``: back to the old version by the same rolling update."""
        if self.rolling_back or self.rolled_back:
            return
        was = "Undo" if self.promoted else "Abort"
        self.rolling_back = True
        self._stop_all_runs()
        self._cancel_timer(PAUSE_TIMER)
        status: Status = "Aborted" if not self.promoted else "Progressing"
        self._set_status(status, f"{was}:{source}", cause)

    def _reconcile_rollback(self) -> None:
        if self._sync("stable", "canary"):
            self.rolling_back = False
            self.rolled_back = True
            self.finished = True
            self._set_status("RolledBack", "RollbackCompleted", Progress("RolledBack"))

    def _deadline_applies(self) -> bool:
        return not (self.finished or self.promoted or self.rolling_back)


class RollingController(_FencedRollout):
    """A Deployment's RollingUpdate strategy: no gate, no pause, promoted when complete."""

    kind = "RollingUpdate"
    policy: RollingUpdate

    def _reconcile(self) -> None:
        if self.finished:
            return
        if self.rolling_back:
            self._reconcile_rollback()
        elif not self.promoted and self._sync("canary", "stable"):
            self.promoted = True
            self._set_status("Promoted", "NewReplicaSetAvailable", Progress("Promoted"))


class BatchController(_FencedRollout):
    """CCE batch release: each batch's new pods, then a pause (duration or approval) or an
    analysis, then the next batch; the last batch completes the release."""

    kind = "BatchRelease"
    LOOP_FIELDS = (*_FencedRollout.LOOP_FIELDS, "batch", "waiting")
    policy: BatchRelease

    def __init__(self, policy: BatchRelease, replicas: int, rng=None) -> None:
        super().__init__(policy, replicas, rng)
        self.targets = policy.batch_pods(replicas)
        self.batch = 0
        self.waiting: str | None = None  # "pause" or "analysis" after a batch

    def _timer(self, key: str) -> None:
        if key == PAUSE_TIMER and self.waiting == "pause":
            self._next_batch()
        else:
            super()._timer(key)

    def _approved(self) -> None:
        if self.waiting == "pause" and not self.rolling_back:
            self._cancel_timer(PAUSE_TIMER)
            self._next_batch()

    def _next_batch(self) -> None:
        self.waiting = None
        self.batch += 1
        self._set_status(
            "Progressing", f"Batch{self.batch}", Progress("StepCompleted", self.batch - 1)
        )

    def _progress_signature(self) -> tuple:
        return (self.batch, *super()._progress_signature())

    def _deadline_applies(self) -> bool:
        return super()._deadline_applies() and self.waiting is None

    @property
    def step_index(self) -> int:
        return self.batch

    def _reconcile(self) -> None:
        if self.finished:
            return
        if self.rolling_back:
            self._reconcile_rollback()
            return
        if self.promoted or self.waiting == "pause":
            return
        if self.waiting == "analysis":
            self._react_to_analysis()
            return
        done = self._sync("canary", "stable", cap=self.targets[self.batch])
        if not done:
            return
        spec = self.policy.batches[self.batch]
        if self.batch == len(self.targets) - 1:
            self.promoted = True
            self._set_status("Promoted", "AllBatchesReleased", Progress("Promoted"))
            return
        if spec.analysis is not None:
            self.waiting = "analysis"
            by_name = {t.name: t for t in self.policy.analysis_templates}
            templates = tuple(by_name[r.template_name] for r in spec.analysis.templates)
            self._start_run(f"batch-{self.batch}", templates)
        elif spec.pause is not None:
            self._pause(spec.pause.duration)
        else:
            self._next_batch()

    def _pause(self, duration: float | None, verdict: GateVerdict | None = None) -> None:
        self.waiting = "pause"
        cause: Cause
        if duration is None:
            cause = AwaitingApproval(self.batch, verdict)
        else:
            cause = Progress("Paused", self.batch)
        self._set_status("Paused", f"Batch{self.batch}Pause", cause)
        if duration is not None:
            self._start_timer(PAUSE_TIMER, duration)

    def _react_to_analysis(self) -> None:
        key = f"batch-{self.batch}"
        phase = self._run_phase(key)
        if phase is None or not phase.completed:
            return
        verdict = self._verdict(key, phase, self.batch)
        self._stop_run(key)
        if phase == Phase.SUCCESSFUL:
            pause = self.policy.batches[self.batch].pause
            if pause is not None:
                self._pause(pause.duration)
            else:
                self._next_batch()
        elif phase == Phase.INCONCLUSIVE:
            self._pause(None, verdict)  # wait for a human, as Argo does on Inconclusive
        else:
            self._roll_back(f"Batch{self.batch}Analysis{phase.value}", verdict)
