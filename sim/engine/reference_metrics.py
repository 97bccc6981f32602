"""What Prometheus would scrape in the per-request reference engine (sim/engine/reference.py).

The reference engine's arrival loop writes every request into per-scrape-slot counts and
latencies here; the gates' windows and the burn-rate rules read them, as Prometheus would:
a gate sees whole slots [end − window, end), end = the last scrape at or before
now − scrapeDelay, its q-quantile the k-th order statistic (k = ⌈q·n⌉); the rules run every
ruleEvaluationInterval, with history at the pre-release rate and the baseline's bad ratio before
t = 0. Written independently of the fast engine's tape (sim/engine/tape.py), so the two can be
compared (tests/test_reference.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from policies.measures import MEAN, Observation, WindowStats

__all__ = ["Scrapes"]

_TOL = 1e-9


class Scrapes:
    """Per-slot series: all requests and bad ones (``svc_req``, ``svc_bad``), and per version
    (key: served by the candidate?) requests, failures and latencies (``req``, ``err``, ``lat``)."""

    def __init__(self, world, horizon: float) -> None:
        self.world, self.horizon = world, horizon
        self.slot = world.platform.scrape_interval
        n_slots = math.ceil(horizon / self.slot) + 2
        self.svc_req, self.svc_bad = [0] * n_slots, [0] * n_slots
        self.req = {v: [0] * n_slots for v in (True, False)}
        self.err = {v: [0] * n_slots for v in (True, False)}
        self.lat: dict = {v: [[] for _ in range(n_slots)] for v in (True, False)}

    def __repr__(self) -> str:
        return f"Scrapes(slot={self.slot}, slots={len(self.svc_req)})"

    # ------------------------------------------------------------------ gates

    def observe(self, now: float, window: float, quantiles, series_step) -> Observation:
        """A gate's window as of ``now`` (and, for a comparative judge, its series)."""
        s = self.slot
        j1 = max(0, math.floor((now - self.world.platform.scrape_delay) / s + _TOL))
        j0 = max(0, j1 - max(1, round(window / s)))
        obs = self._window(j0, j1, quantiles)
        if series_step:
            step = max(1, round(series_step / s))
            points = tuple(
                self._window(k, min(k + step, j1), quantiles) for k in range(j0, j1, step)
            )
            obs = Observation(obs.start, obs.end, obs.canary, obs.stable, points)
        return obs

    def _window(self, j0: int, j1: int, quantiles) -> Observation:
        stats = []
        for version in (True, False):
            n, q = sum(self.req[version][j0:j1]), {}
            if n and quantiles:
                lats = np.concatenate([np.asarray(x, float) for x in self.lat[version][j0:j1]])
                for quantile in quantiles:  # the k-th order statistic, k = ⌈q·n⌉
                    if quantile == MEAN:
                        q[MEAN] = float(lats.mean())
                        continue
                    k = min(n, max(1, math.ceil(quantile * n)))
                    q[quantile] = float(np.partition(lats, k - 1)[k - 1])
            served = not version or n > 0 or any(self.req[version][:j0])  # the series exist
            stats.append(WindowStats(n, sum(self.err[version][j0:j1]), q, served))
        return Observation(j0 * self.slot, j1 * self.slot, stats[0], stats[1])

    # ------------------------------------------------------------------ the burn-rate rules

    def alert_rules(self, env, baseline_bad: float, fired: Callable[[float], None]):
        """A simpy process: the multi-window burn-rate rules, evaluated like Prometheus every
        interval; a window of m slots ends at the newest slot visible (ending ≤ t −
        scrapeDelay). Calls ``fired(t)`` at the first evaluation where a rule holds."""
        world = self.world
        platform, ops = world.platform, world.operators
        s, every = self.slot, platform.rule_evaluation_interval
        hist = float(world.traffic.rate_at(0.0)) * s

        def slots(window: float) -> int:
            return max(1, math.ceil(window / s - _TOL))

        target = ops.slo.target
        rules = [
            (slots(r.long_window), slots(r.short_window), r.threshold(target)) for r in ops.alerts
        ]
        k = 0
        while k * every < self.horizon:
            t, k = k * every, k + 1
            if t > env.now:
                yield env.timeout(t - env.now)
            newest = math.floor((t - platform.scrape_delay) / s + _TOL) - 1
            if newest < 0:
                continue  # only history (at the baseline) is visible yet
            for windows in rules:
                ok = True
                for m in windows[:2]:
                    lo, before = max(0, newest - m + 1), max(0, m - newest - 1)
                    n = sum(self.svc_req[lo : newest + 1]) + before * hist
                    bad = sum(self.svc_bad[lo : newest + 1]) + before * hist * baseline_bad
                    ok = ok and n > 0 and bad >= windows[2] * n * (1 - _TOL)
                if ok:
                    fired(t)
                    return
