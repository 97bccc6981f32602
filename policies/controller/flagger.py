"""Flagger's control loop for Progressive (canary) and ABTest policies (executors.md §A.3–A.5).

Flagger acts only on ticks every ``interval``. On each tick, in order: the threshold gate
(roll back once ``failedChecks >= threshold``), then the analysis (every metric over its
window; any failed check, no data included, counts one failure and halts the tick), then the
strategy step (more weight, or one more A/B iteration, or promotion). The tick that sees the
new revision only scales the canary up; the first tick after it runs no analysis.
Promotion rolls the primary Deployment to the new version, then routes all traffic to it.

The ticker is not the release's: Flagger starts one per Canary object when it first sees it
(``scheduleCanaries`` in pkg/controller/scheduler.go: ``time.NewTicker(analysisInterval)``,
pkg/controller/job.go) and it keeps ticking across releases, so a new revision is noticed at
the next tick, a uniformly random moment in [0, interval) after the release starts.
``first_tick_s`` is that moment, drawn by the caller (the controller holds no randomness); None
(or 0) notices the revision at the release start itself, on a tick at t = 0. Until then the
controller is Initializing: nothing is scaled, and a rollback request simply ends the release.

``confirm-*`` webhooks (``analysis.gates``) are approval gates, asked where Flagger asks them
(``scheduler.go``, ``scheduler_hooks.go``; reference/executors.md §A.3): ``confirm-rollout`` on
the tick that sees the revision (closed: phase Waiting, nothing scales, asked again each tick);
``confirm-traffic-increase`` after a healthy analysis, before each step of a canary (also at
maxWeight, before promotion is even considered; not while WaitingPromotion); ``confirm-promotion``
before promoting (closed: WaitingPromotion, where analysis and the threshold gate go on; an A/B
test then drops one iteration, as Flagger does). A closed gate reports ``AwaitingApproval`` once;
an approval opens it, Flagger sees it on its next tick, and the gate closes again behind the
release (the next weight step asks anew).

Blue/green (a Progressive policy with ``iterations``, or on the kubernetes provider;
``runBlueGreen``): after the pre-rollout tick, ``iterations`` ticks at weight 0 each add one
iteration (the first turns the mirror on, when asked), then confirm-promotion, the switch of all
live traffic to the canary (mirror off) and one more iteration, one more analysis and promotion;
the Promoting ticks wait for the primary's rolling update and route back to it. The kubernetes
provider has no router: no weight, no mirror; promotion goes to Finalising once the primary has
rolled. Mirror in a canary (``runCanary``): at weight 0 the first step only mirrors, the next
shifts the first step's weight with the mirror off (and confirm-traffic-increase is not asked
while mirrored). ``loadTest`` is the load tester's ``hey`` on the canary Service: a ``rollout``
hook from the first analysis tick until the analysis ends (the tester restarts it on every tick),
a ``pre-rollout`` hook for its duration from the pre-rollout tick. ``sessionAffinity`` follows
the weight: the cookie route is written while the canary has weight and expires the cookie when
the weight returns to 0 (istio.go ``SetRoutes``).
"""

from __future__ import annotations

from typing import cast

from policies.controller.base import ControllerBase
from policies.controller.protocol import (
    AwaitingApproval,
    Cause,
    FailedChecks,
    Intervention,
    Measure,
    MeasurementTaken,
    Progress,
    SetLoad,
    SetSessionAffinity,
    StatusChanged,
)
from policies.flagger import ABTest, Progressive, duration_read
from policies.replicas import resolve_fenceposts, rolling_update_sync

__all__ = ["FlaggerController"]

TICK_TIMER = "tick"
LOAD_TIMER = "loadTest"
MIRROR_ROUTE = "mirror"
PRIMARY_FENCES = ("25%", "25%")  # the primary Deployment's own rolling update defaults


class FlaggerController(ControllerBase):
    """Phases: Progressing -> Promoting -> Finalising -> Succeeded, or Failed (rolled back)."""

    kind = "Flagger"
    LOOP_FIELDS = (*ControllerBase.LOOP_FIELDS, "phase", "canary_weight", "iterations", "gate")
    quiet_measurements = False  # its checks are counted by the reconcile (the tick)

    def __init__(
        self,
        policy: Progressive | ABTest,
        replicas: int,
        rng=None,
        *,
        first_tick_s: float | None = None,
    ) -> None:
        super().__init__(policy, replicas, rng)
        self.analysis = policy.analysis
        self.first_tick_s = first_tick_s
        """Seconds from the release start to Flagger's first tick (the ticker's phase), in
        [0, interval); None: a tick at the start. Read when the release starts, so a driver may
        also set it on the controller before ``start()``."""
        self.phase = "Initializing"
        self.canary_weight = 0
        self.failed_checks = 0
        self.failed_metric = ""  # the metric of the last failed check
        self.iterations = 0
        self.tick_count = 0
        self.pending: dict[str, MeasurementTaken | None] = {}
        self.surge, self.unavailable = resolve_fenceposts(*PRIMARY_FENCES, replicas)
        self.desired["primary"] = 0
        self.available["primary"] = 0
        self.rolling_back = False
        self.rolled_back = False
        self.stuck = False  # the canary made no progress for progressDeadlineSeconds
        self.gate: str | None = None  # the confirm-* gate the release waits at
        self.gate_open = False  # approved: the gate lets the next tick through
        self.waiting_promotion = False  # Flagger's WaitingPromotion phase
        self.blue_green = isinstance(policy, Progressive) and policy.blue_green
        self.routed = policy.provider != "kubernetes"  # kubernetes: no router at all
        self.loading = False  # the load tester's hey runs against the canary
        self.sticky = False  # the session-affinity cookie route is written
        self.schedule = (  # explain's weight rows (a blue/green has none)
            policy.weight_schedule() if isinstance(policy, Progressive) else []
        )

    @property
    def step_index(self) -> int:
        return self.tick_count

    def position(self, status: StatusChanged) -> str:
        """In the words of Flagger's status: the canary weight reached (an A/B test's or a
        blue/green's iteration) and the failed checks; not ``status.step``, the tick count,
        which counts waiting and failed ticks too."""
        iterated = isinstance(self.policy, ABTest) or self.blue_green
        at = f"iteration {self.iterations}" if iterated else f"weight {self.canary_weight:g}"
        return f"at {at}, failed checks {self.failed_checks}"

    @property
    def walk_tick(self) -> int:
        """The tick of ``rolloutsim explain``'s walk the release is held at: the last strategy
        step that took effect (the weight, mirror, route or iteration the checks measure). A
        failed check does not advance it, so a catch names a row explain lists; ``tick_count``
        counts every tick, the failed and waiting ones too."""
        if isinstance(self.policy, ABTest) or self.blue_green:
            return self.iterations  # the pre-rollout tick's route or mirror is iteration 1
        mirrored = self.analysis.mirror and (self.mirrored or self.canary_weight > 0)
        return int(mirrored) + sum(w <= self.canary_weight for w in self.schedule)

    # ------------------------------------------------------------------ events

    def _started(self) -> None:
        super()._started()
        first = self.first_tick_s
        interval = self.analysis.effective_interval_s
        if first is not None and not 0.0 <= first < interval:
            raise ValueError(f"first_tick_s must be in [0, {interval:g}) s (got {first!r})")
        if first:
            self._start_timer(TICK_TIMER, first)  # Flagger has not seen the revision yet
        else:
            self._detect()

    def _detect(self) -> None:
        """The tick that sees the new revision: the confirm-rollout gate, then scale the canary
        from zero, no analysis."""
        if not self._confirmed("confirm-rollout"):
            self.phase = "Waiting"  # asked again on every tick; nothing is scaled meanwhile
        else:
            self.phase = "Progressing"
            self._set_selectors({"stable"}, {"canary"})
            self._scale("canary", self.replicas)
        self._start_timer(TICK_TIMER, self.analysis.effective_interval_s)

    def _confirmed(self, gate: str) -> bool:
        """Whether the ``gate`` webhook answers yes now: no such gate, or approved since the
        release reached it (then it closes again). A gate reached anew asks for approval."""
        if gate not in self.analysis.gate_types:
            return True
        if self.gate == gate and self.gate_open:
            self.gate, self.gate_open = None, False
            self._set_status(
                "Progressing", f"Confirmed:{gate}", Progress("Resumed", self.tick_count)
            )
            return True
        if self.gate != gate:
            self.gate, self.gate_open = gate, False
            cause = AwaitingApproval(self.tick_count, gate=gate)
            self._set_status("Paused", f"Waiting:{gate}", cause)
        return False

    def _approved(self) -> None:
        if self.gate is not None:
            self.gate_open = True  # Flagger calls the webhook again on its next tick

    def _timer(self, key: str) -> None:
        if key == LOAD_TIMER:
            self._stop_load()  # hey's -z ran out
        elif key == TICK_TIMER:
            if self.phase in ("Initializing", "Waiting"):
                self._detect()
            elif not self.finished:
                self._start_timer(TICK_TIMER, self.analysis.effective_interval_s)
                self._tick()
        else:
            super()._timer(key)

    def _rollback_requested(self, source: str) -> None:
        # Initializing or Waiting (confirm-rollout): reverted before the canary ran, so this
        # only ends the release
        if (
            self.phase in ("Initializing", "Waiting", "Progressing", "Promoting")
            and not self.promoted
        ):
            self._rollback(f"RollbackRequested:{source}", Intervention(source))
        elif self.promoted and not (self.rolling_back or self.rolled_back):
            self.rolling_back = True  # no undo in Flagger: the primary rolls back to the old spec
            self._set_status("Progressing", f"Undo:{source}", Intervention(source, undo=True))

    def _deadline_applies(self) -> bool:
        return self.phase == "Progressing" and not self._canary_ready()

    def _deadline_exceeded(self) -> None:
        self.stuck = True  # Flagger notices on its next tick (non-retriable: rollback)

    def _measured(self, event: MeasurementTaken) -> bool:
        if event.run == self._tick_key() and event.metric in self.pending:
            self.pending[event.metric] = event
            if all(v is not None for v in self.pending.values()):
                self._finish_analysis()
        return True  # (its reconcile reads the measurements themselves: never quiet)

    # ------------------------------------------------------------------ the tick

    def _tick_key(self) -> str:
        return f"tick-{self.tick_count}"

    def _canary_ready(self) -> bool:
        return self.available["canary"] >= self.replicas  # canaryReadyThreshold 100 %

    def _primary_ready(self, group: str) -> bool:
        return self.available[group] >= self.desired[group]

    def _tick(self) -> None:
        self.tick_count += 1
        self.pending = {}
        if self.phase == "Promoting":
            self._promotion_tick()
            return
        if self.phase == "Finalising":
            self._scale("canary", 0)
            self.phase = "Succeeded"
            self.finished = True
            self._cancel_timer(TICK_TIMER)
            return
        if self.phase != "Progressing":
            return
        if not self._canary_ready():
            if self.stuck:
                self._rollback("ProgressDeadlineExceeded", self._deadline_cause())
            return  # retriable: the tick is spent waiting, nothing counts
        self.stuck = False
        if self.policy.skip_analysis:
            self._skip_analysis()
            return
        if not self._primary_ready("stable"):
            return
        if self.failed_checks >= self.analysis.effective_threshold:
            self._rollback("FailedChecksThreshold", self._failed_checks())
            return
        if (
            self.canary_weight == 0
            and self.iterations == 0
            and not self.match_routes
            and not self.mirrored
        ):
            self._hook_load("pre-rollout")  # pre-rollout hooks only: no metric is checked
            self._strategy_step()
            return
        self._hook_load("rollout")  # runAnalysis: rollout hooks, then the metrics
        if not self.analysis.metrics:
            self._strategy_step()
            return
        self.pending = {m.name: None for m in self.analysis.metrics}
        for metric in self.analysis.metrics:
            builtin = metric.name == "request-duration" and metric.query is None
            quantiles = (duration_read(self.policy.provider)[0],) if builtin else ()
            if metric.query is not None and metric.query.measure == "latency":
                quantiles = (metric.query.quantile,)
            window = (
                metric.query.window if metric.query and metric.query.window else metric.interval
            )
            self._emit(Measure(self._tick_key(), metric.name, window, quantiles))

    def _finish_analysis(self) -> None:
        # only called once every metric of the tick has its measurement (see ``_measured``)
        results = cast("dict[str, MeasurementTaken]", self.pending)
        self.pending = {}
        if self.phase != "Progressing":
            return
        for metric in self.analysis.metrics:  # the first failing metric short-circuits
            if not metric.check(results[metric.name].observation, self.policy.provider):
                self.failed_checks += 1
                self.failed_metric = metric.name
                self._set_status("Progressing", "FailedCheck", self._failed_checks())
                return
        self._strategy_step()

    def _failed_checks(self) -> FailedChecks:
        threshold = self.analysis.effective_threshold
        return FailedChecks(self.failed_metric, self.failed_checks, threshold, self.walk_tick)

    def _strategy_step(self) -> None:
        if self.blue_green:
            self._blue_green_step()
            return
        if isinstance(self.policy, ABTest):  # runAB: confirm-traffic-increase is never asked
            iterations = self.analysis.iterations
            assert iterations is not None  # ABTest's validator requires iterations >= 1
            if self.iterations < iterations:
                self._set_match_route("ab-test", self.analysis.match)
                self.iterations += 1
                return
            if not self._confirmed("confirm-promotion"):
                if self.waiting_promotion:  # runConfirmPromotionHooks: one iteration back
                    self.iterations = iterations - 1
                self.waiting_promotion = True
                return
            self._promote()
            return
        # nextStepWeight > 0 always holds for a Progressive canary (stepWeight or stepWeights)
        if (
            not self.waiting_promotion
            and not self.mirrored
            and not self._confirmed("confirm-traffic-increase")
        ):
            return
        if self.canary_weight < self.analysis.effective_max_weight:
            step = self.analysis.next_step_weight(self.canary_weight)
            if self.analysis.mirror and self.canary_weight == 0 and not self.mirrored:
                self._mirror(True)  # one step of mirroring before any weight
                return
            self._mirror(False)
            self.canary_weight = min(100, self.canary_weight + step)
            self._set_weight(float(self.canary_weight))
            return
        if not self._confirmed("confirm-promotion"):
            self.waiting_promotion = True
            return
        self._promote()

    def _blue_green_step(self) -> None:
        """``runBlueGreen``: iterations at weight 0 (mirrored if asked), then the switch of all
        live traffic to the canary and one more iteration, then promotion."""
        assert isinstance(self.policy, Progressive)  # blue_green is Progressive's only
        n = self.policy.effective_iterations
        if self.iterations < n:
            if self.analysis.mirror and self.routed:
                self._mirror(True)  # mirror during the entire blue/green test
            self.iterations += 1
            return
        if self.iterations == n:
            if not self._confirmed("confirm-promotion"):
                if self.waiting_promotion:  # runConfirmPromotionHooks: one iteration back
                    self.iterations = n - 1
                self.waiting_promotion = True
                return
            self.waiting_promotion = False
            if self.routed:  # stop mirroring and route all live traffic to the canary
                self._mirror(False)
                self._set_weight(100.0)
            self.iterations += 1
            return
        self._promote()

    # ------------------------------------------------------------------ traffic the canary sees

    def _set_weight(self, weight: float) -> None:
        """The router's weight, and with it the session-affinity cookie route: written while
        the canary has weight, replaced by one expiring the cookie when it returns to 0."""
        super()._set_weight(weight)
        sticky = self.analysis.session_affinity
        if sticky is not None and (self.weight > 0) != self.sticky:
            self.sticky = self.weight > 0
            self._emit(SetSessionAffinity(sticky.max_age if self.sticky else 0.0))

    def _mirror(self, on: bool) -> None:
        """Flagger's ``mirrored`` route flag: all requests (or mirrorWeight %) copied."""
        self._set_mirror(MIRROR_ROUTE, self.analysis.mirror_percent if on else 0.0, ())

    @property
    def mirrored(self) -> bool:
        return MIRROR_ROUTE in self.mirrors

    def _hook_load(self, hook: str) -> None:
        """The load tester is called (a ``hook`` webhook): hey starts unless it still runs."""
        test = self.analysis.load_test
        if test is None or test.type != hook or self.loading:
            return
        self.loading = True
        self._emit(SetLoad(test.rate))
        if hook == "pre-rollout":  # called once: hey runs for its -z
            self._start_timer(LOAD_TIMER, test.duration)

    def _stop_load(self) -> None:
        self._cancel_timer(LOAD_TIMER)
        if self.loading:
            self.loading = False
            self._emit(SetLoad(0.0))

    # ------------------------------------------------------------------ promotion

    def _promote(self) -> None:
        """Copy the canary spec to the primary: the primary rolls to the new version."""
        self.phase = "Promoting"
        self.waiting_promotion = False
        self._stop_load()  # the analysis is over: the load tester is no longer called
        self._set_selectors({"stable", "primary"}, {"canary"})
        self._set_status("Progressing", "Promoting", Progress("Promoting"))
        if self.policy.skip_analysis:
            self._set_weight(0.0)
            self._clear_match_routes()

    def _skip_analysis(self) -> None:
        """skipAnalysis: all traffic to the primary, promote, scale the canary to zero and
        report Succeeded at once; the primary rolls to the new spec in the background."""
        self._set_selectors({"stable", "primary"}, {"canary"})
        self._set_weight(0.0)
        self._mirror(False)
        self._stop_load()
        self._clear_match_routes()
        self._scale("canary", 0)
        self.phase = "Succeeded"
        self.promoted = True
        self.finished = True
        self._cancel_timer(TICK_TIMER)
        self._set_status("Promoted", "Succeeded", Progress("Promoted"))

    def _promotion_tick(self) -> None:
        if not self._primary_rolled():
            return  # Promoting ticks wait for the primary's rolling update
        promotion_step = self.analysis.step_weight_promotion or 0
        if promotion_step and self.weight > 0 and not isinstance(self.policy, ABTest):
            self._set_weight(max(0.0, self.weight - promotion_step))
            if self.weight > 0:
                return
        self._set_weight(0.0)
        self._clear_match_routes()
        self.phase = "Finalising"
        self.promoted = True
        self._set_status("Promoted", "Succeeded", Progress("Promoted"))

    def _primary_rolled(self) -> bool:
        return (
            self.desired["primary"] == self.replicas
            and self.available["primary"] >= self.replicas
            and self.desired["stable"] == 0
        )

    def _reconcile(self) -> None:
        if self.rolling_back:
            new_spec, old_spec = rolling_update_sync(
                self.replicas,
                self.surge,
                self.unavailable,
                self.desired["stable"],
                self.available["stable"],
                self.desired["primary"],
                self.available["primary"],
            )
            self._scale("stable", new_spec)
            self._scale("primary", old_spec)
            if old_spec == 0 and self.available["stable"] >= self.replicas:
                self.rolling_back = False
                self.rolled_back = True
                self._set_status("RolledBack", "PrimaryRolledBack", Progress("RolledBack"))
            return
        if self.phase in ("Promoting", "Finalising", "Succeeded") and not self.rolled_back:
            new_spec, old_spec = rolling_update_sync(
                self.replicas,
                self.surge,
                self.unavailable,
                self.desired["primary"],
                self.available["primary"],
                self.desired["stable"],
                self.available["stable"],
            )
            self._scale("primary", new_spec)
            self._scale("stable", old_spec)

    # ------------------------------------------------------------------ rollback

    def _rollback(self, reason: str, cause: Cause) -> None:
        self.phase = "Failed"
        self._set_weight(0.0)
        self._mirror(False)
        self._stop_load()
        self._clear_match_routes()
        self._scale("canary", 0)
        self._cancel_timer(TICK_TIMER)
        self.finished = True
        self._set_status("Aborted", reason, cause)
