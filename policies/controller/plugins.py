"""Argo's step plugins in the canary controller (reference/argo-rollouts.md §1 and §3;
``rollout/stepplugin.go`` of argoproj/argo-rollouts).

Argo calls the plugin's ``Run()`` while its step is the current one and the rollout is
progressing; the plugin answers Running (read again after its backoff + 5 s) until it says
Successful or Failed. Here the step emits one ``RunPlugin`` when it is reached and the world
answers once with ``PluginFinished`` at the moment Argo reads the end, so how long a plugin takes
and how often it fails are the world's (``world.stepPlugins``), never the policy's. Successful
completes the step when the plugin decides it; Failed aborts the rollout (``AddAbort``), whatever
action decides the step; an answer for a step the rollout has left, or after an abort or a
promotion, is ignored (Argo terminates or aborts the plugin's run then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.controller.base import ControllerBase
from policies.controller.protocol import (
    Cause,
    GateVerdict,
    PluginFinished,
    PluginPhase,
    RunPlugin,
)

if TYPE_CHECKING:
    from policies.canary import PluginStep

__all__ = ["ArgoStepPlugins"]


class ArgoStepPlugins(ControllerBase):
    """The current step's plugin run and its phase; the canary controller gives
    ``step_index``, ``step_started``, ``aborted`` and ``_abort``."""

    step_index: int
    step_started: bool
    aborted: bool

    def _abort(self, reason: str, cause: Cause) -> None:
        raise NotImplementedError  # the canary controller's

    def _init_plugins(self) -> None:
        self.plugin_run: int | None = None  # the step whose plugin runs
        self.plugin_phase: PluginPhase | None = None  # its result, once the world has answered

    def _run_plugin(self, plugin: PluginStep) -> None:
        """The step is reached: its plugin runs (Argo's first ``Run()`` of the step)."""
        self.plugin_run, self.plugin_phase = self.step_index, None
        self._emit(RunPlugin(self.step_index, plugin.name))

    def _plugin_finished(self, event: PluginFinished) -> None:
        """The world's answer, if it is for the step the rollout is at (a step left, an abort or
        a promotion ends Argo's reading of a plugin: a late answer changes nothing)."""
        current = event.step == self.plugin_run == self.step_index and self.step_started
        if current and not (self.aborted or self.promoted):
            self.plugin_phase = event.phase

    def _plugin_done(self, plugin: PluginStep) -> bool:
        """True once the plugin said Successful; Failed aborts the rollout (False)."""
        if self.plugin_run != self.step_index:
            return False
        if self.plugin_phase == "Failed":
            step = self.step_index
            self.plugin_run = self.plugin_phase = None
            self._abort(
                "StepPluginFailed", GateVerdict(f"plugin-{step}", (plugin.name,), step, "Failed")
            )
            return False
        return self.plugin_phase == "Successful"
