"""Argo's experiment steps in the canary controller (reference/argo-rollouts.md §1): the
experiment's ReplicaSets as pod groups, its analyses as runs, its phase deciding the step.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from policies.analysis import Phase
from policies.controller.base import ControllerBase
from policies.controller.protocol import AwaitingApproval, Cause, DeadlineExceeded

if TYPE_CHECKING:
    from policies.canary import Experiment

__all__ = ["EXPERIMENT_TIMER", "ArgoExperiments"]

EXPERIMENT_TIMER = "experimentDuration"
EXPERIMENT_DEADLINE_TIMER = "experimentDeadline"
EXPERIMENT_SCALE_DOWN_TIMER = "experimentScaleDown"


class ArgoExperiments(ControllerBase):
    """Argo's experiment steps (reference §1): its ReplicaSets as ``experiment-*`` pod groups,
    its analyses as runs, its phase by ``Experiment.phase``; the canary controller gives
    ``step_index``, ``routed``, ``canary_weight``, ``_route`` and ``_abort``."""

    step_index: int
    routed: bool
    canary_weight: float
    paused: str | None

    def _route(self, canary_weight: float) -> None:
        raise NotImplementedError

    def _abort(self, reason: str, cause: Cause) -> None:
        raise NotImplementedError  # the canary controller's

    def _started(self) -> None:
        """The canary's Services at the start, with the experiment templates' that serve."""
        super()._started()
        serving = self.policy.experiment_groups() & {"experiment-canary", "experiment-stable"}
        if not self.routed:  # one Service over both versions (and experiment pods it selects)
            self._set_selectors({"stable", "canary"} | serving, {"canary"})
        else:  # a weighted template's Service carries its version's share of the weight
            stable = {"stable"} | (serving & {"experiment-stable"})
            self._set_selectors(stable, {"canary"} | (serving & {"experiment-canary"}))

    @property
    def has_experiment(self) -> bool:
        """Whether a step's experiment is current (a field of the canary's loop key)."""
        return self.exp is not None

    def _init_experiments(self) -> None:
        self.exp: Experiment | None = None  # the current step's experiment, while it runs
        self.exp_pods: Counter[str] = Counter()  # its pods per group
        self.exp_running = False  # all its pods available (Argo's AvailableAt), runs started
        self.exp_failed = False  # its pods were not available within the deadline
        self.exp_seen: dict[str, int] = {}  # available pods per group when last looked at
        self.lingering: dict[int, Counter[str]] = {}  # ended experiments' pods, by step

    def _experiment_timer(self, key: str) -> bool:
        """An experiment's timer fired (True), or the key is another's (False)."""
        if key.startswith(EXPERIMENT_DEADLINE_TIMER):
            self.exp_failed = self.exp is not None and not self.exp_running
        elif key.startswith(EXPERIMENT_SCALE_DOWN_TIMER + "/"):
            self.lingering.pop(int(key.split("/")[1]), None)
            self._scale_experiment_groups()
        return key.startswith("experiment")  # the duration's: read as its absence

    def _stable_extra(self) -> float:  # the weight its stable-spec templates take
        return self.exp.weight_of("stable") if self.exp is not None and self.exp_running else 0

    def _scale_experiment_groups(self) -> None:
        pods = sum(self.lingering.values(), Counter(self.exp_pods))
        for group in sorted(self.policy.experiment_groups()):
            self._scale(group, pods[group])

    def _start_experiment(self, experiment: Experiment) -> None:
        """Argo creates the Experiment: a ReplicaSet per template, each scaled to its
        replicas; it must be available within progressDeadlineSeconds."""
        self.exp, self.exp_running, self.exp_failed, self.exp_seen = experiment, False, False, {}
        self.exp_pods = Counter()
        for template in experiment.templates:
            self.exp_pods[template.group(self.routed)] += template.replicas
        self._scale_experiment_groups()
        if experiment.indefinite:  # no duration, no required analysis: a human promotes
            self._set_status(
                "Progressing", "ExperimentIndefinite", AwaitingApproval(self.step_index)
            )

    def _exp_run_key(self, name: str) -> str:
        return f"experiment-{self.step_index}-{name}"

    def _experiment_done(self) -> bool:
        """The step's experiment: True once Successful; a Failed or Error one aborts the
        rollout and an Inconclusive one pauses it (Argo's ``reconcileExperiments``)."""
        exp = self.exp
        if exp is None:
            return True  # it ended successfully (or was skipped) at this step
        if not self.exp_running:
            if self.exp_failed:
                seconds = self.policy.progress_deadline_seconds
                self._end_experiment()
                self._abort("ExperimentFailed", DeadlineExceeded(seconds, self.step_index))
                return False
            for group in sorted(self.exp_pods):  # progress restarts a template's deadline
                key, now = f"{EXPERIMENT_DEADLINE_TIMER}/{group}", self.available.get(group, 0)
                if self._ready(group):
                    self._cancel_timer(key)
                elif self.exp_seen.get(group) != now or key not in self.timers:
                    self.exp_seen[group] = now
                    self._cancel_timer(key)
                    self._start_timer(key, self.policy.progress_deadline_seconds)
            if not all(self._ready(g) for g in self.exp_pods):
                return False
            self.exp_running = True  # AvailableAt: the analyses start, the duration runs
            for a in exp.analyses:
                key = self._exp_run_key(a.name)
                self._start_run(key, (self.policy.template(a.template_name),))
            if exp.duration is not None:
                self._start_timer(EXPERIMENT_TIMER, exp.duration)
            self._route(self.canary_weight)
            return False
        phases = {
            a.name: self._run_phase(self._exp_run_key(a.name)) or Phase.RUNNING
            for a in exp.analyses
        }
        passed = exp.duration is not None and EXPERIMENT_TIMER not in self.timers
        phase = exp.phase(phases, passed)
        if phase is None:
            return False
        bad = next((n for n, p in phases.items() if p == phase), None)
        verdict = self._verdict(
            self._exp_run_key(bad) if bad else "experiment", phase, self.step_index
        )
        self._end_experiment()
        if phase == Phase.SUCCESSFUL:
            return True
        if phase == Phase.INCONCLUSIVE:
            self.paused = "InconclusiveExperiment"
            cause = AwaitingApproval(self.step_index, verdict)
            self._set_status("Paused", "InconclusiveExperiment", cause)
        else:
            self._abort(f"Experiment{phase.value}", verdict)
        return False

    def _end_experiment(self) -> None:
        """The experiment ends: its runs stop, its templates' weight goes, and its pods are
        scaled down after its scaleDownDelaySeconds."""
        exp = self.exp
        assert exp is not None  # called while one runs
        for a in exp.analyses:
            self._stop_run(self._exp_run_key(a.name))
        self._cancel_timer(EXPERIMENT_TIMER)
        for group in self.exp_pods:
            self._cancel_timer(f"{EXPERIMENT_DEADLINE_TIMER}/{group}")
        self.exp, self.exp_running = None, False
        self._route(self.canary_weight)
        delay = exp.effective_scale_down_delay_s
        if sum(self.exp_pods.values()):
            self.lingering[self.step_index] = self.exp_pods
            key = f"{EXPERIMENT_SCALE_DOWN_TIMER}/{self.step_index}"
            if delay > 0:
                self._start_timer(key, delay)
            else:
                self.lingering.pop(self.step_index)
        self.exp_pods = Counter()
        self._scale_experiment_groups()
