"""The designed experiment behind a calibration gap: hold the canary, record what a gate sees.

A calibration run (live/calibrate.py) mixes everything: timers, scrapes, the split, the gate's
arithmetic, and it stops early, so its windows are biased by stopping. A *hold* takes one thing
at a time: the canary sits at a fixed weight with no gate for a long stretch while the load
runs, and the experiment records, per scrape interval, the requests and 5xx answers of each
server exactly as the executor's window query reads them (Prometheus's raw counter samples),
beside the backends' own counts (the ground truth of what failed). The simulator then draws the
same traffic (the scenario's world, the same weight, the same horizon) through its engine, and
``live.windows`` compares the two record sets window by window and replays both through the
gate's sequential test offline.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from live.procs import BenchError
from live.queries import counter_samples

__all__ = [
    "Slots",
    "describe_schedule",
    "gate_schedule",
    "live_slots",
    "sequential_metric",
    "simulated_slots",
]

COUNTS = ("canary_requests", "canary_errors", "stable_requests", "stable_errors")
SETTLE_S = 3.0  # after the weight is set and before the recorded stretch: no straddling slot


@dataclass
class Slots:
    """Counts per scrape interval: (n,) arrays, one row per interval, in time order."""

    time: np.ndarray  # the interval's end (s from the stretch's start)
    canary_requests: np.ndarray
    canary_errors: np.ndarray
    stable_requests: np.ndarray
    stable_errors: np.ndarray

    def __len__(self) -> int:
        return int(self.time.size)

    def windows(self, slots_per_window: int) -> Slots:
        """Contiguous, non-overlapping windows of ``slots_per_window`` scrape intervals."""
        k = int(slots_per_window)
        n = len(self) // k * k

        def fold(a):
            return a[:n].reshape(-1, k).sum(axis=1)

        return Slots(
            self.time[k - 1 : n : k],
            fold(self.canary_requests),
            fold(self.canary_errors),
            fold(self.stable_requests),
            fold(self.stable_errors),
        )

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> Slots:
        return cls(**{k: np.asarray(v) for k, v in data.items()})

    def take(self, rows: np.ndarray) -> Slots:
        """These rows, in this order (a resample)."""
        return Slots(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    @classmethod
    def join(cls, parts: list[Slots]) -> Slots:
        fields = cls.__dataclass_fields__
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


def live_slots(bench, plan, canary_error_rate: float, weight: float, seconds: float, seeds):
    """Hold the canary at ``weight`` % for ``seconds`` on a started bench; returns
    (``Slots`` from Prometheus, the backends' own counts over the same run, the load's stats).

    The stretch recorded starts ``SETTLE_S`` after the weight is written and ends before the
    load stops, so every recorded interval had the same weight and a full load."""
    bench.set_backend("stable", error_rate=plan.stable_error_rate, seed=seeds["stable"])
    bench.set_backend("canary", error_rate=canary_error_rate, seed=seeds["canary"])
    router = bench.router()
    router.apply(0.0)
    load = bench.load(plan.rate, seconds + 2 * SETTLE_S + 2.0, seed=seeds["load"])
    time.sleep(1.0)
    router.apply(weight)
    time.sleep(SETTLE_S)
    own0 = {v: bench.set_backend(v) for v in ("stable", "canary")}
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    own1 = {v: bench.set_backend(v) for v in ("stable", "canary")}
    time.sleep(plan.scrape_interval * 2.5)  # the scrape after ``end`` is in Prometheus
    stats = load.wait()
    router.apply(0.0)
    slots = _prometheus_slots(bench, start, end)
    own = {
        v: {k: own1[v][k] - own0[v][k] for k in ("served", "failed")} for v in ("stable", "canary")
    }
    return slots, own, stats


def _prometheus_slots(bench, start: float, end: float) -> Slots:
    """Per-scrape increments of every response counter of both servers in [start, end]."""
    from live.bench import BACKEND, CANARY, STABLE

    api = bench.metrics().api
    span = end - start + 2 * bench.scrape_interval
    data = api.query(counter_samples(BACKEND, (STABLE, CANARY), span), at=end)
    series: dict[tuple[str, str], dict[float, float]] = {}
    for s in data["result"]:
        labels = s["metric"]
        series[labels["server"], labels["code"]] = {float(t): float(v) for t, v in s["values"]}
    times = sorted({t for v in series.values() for t in v if start <= t <= end})
    if len(times) < 2:
        raise BenchError("fewer than two scrapes in the held stretch")
    table = {}
    for server in (STABLE, CANARY):
        total = np.zeros(len(times) - 1)
        errors = np.zeros(len(times) - 1)
        for (name, code), values in series.items():
            if name != server:
                continue
            missing = [t for t in times if t not in values]
            if missing:
                raise BenchError(f"{server} {code}: no sample at scrape {missing[0]:.3f}")
            v = np.array([values[t] for t in times])
            step = np.diff(v)
            step = np.where(step >= 0, step, v[1:])  # a reset restarts from 0
            total += step
            if code == "5xx":
                errors += step
        table[server] = (total, errors)
    t = np.asarray(times[1:]) - times[0]
    gaps = np.diff(times)
    if not np.allclose(gaps, bench.scrape_interval, atol=0.2):
        raise BenchError(f"irregular scrapes: intervals {gaps.min():.2f}-{gaps.max():.2f} s")
    return Slots(t, *table[CANARY], *table[STABLE])


def simulated_slots(loaded, case, weight: float, seconds: float, replications: int, seed: int):
    """The simulator's per-scrape counts for the same traffic held at ``weight`` (its engine,
    its trace), ``replications`` independent stretches of ``seconds`` joined end to end."""
    from live.scenario import case_world
    from policies.loading import parse_policy
    from sim.engine.replication import simulate
    from sim.world.model import World

    world_data = case_world(loaded, case)
    skip = math.ceil(SETTLE_S / loaded.world.platform.scrape_interval)
    world_data["horizon"] = f"{skip * loaded.world.platform.scrape_interval + seconds:g}s"
    world = World.model_validate(world_data)
    hold = parse_policy(
        {
            "kind": "Canary",
            "name": "hold",
            "trafficRouting": {"nginx": {}},
            "steps": [{"setWeight": weight}, {"pause": {"duration": f"{10 * seconds:g}s"}}],
        }
    )
    parts = []
    for i in range(replications):
        _, trace = simulate(world, hold, case.release, seed, index=i, trace=True)
        frame = trace.to_frame()
        keep = slice(skip, skip + round(seconds / trace.slot))
        parts.append(
            Slots(
                frame["time"].to_numpy()[keep] + trace.slot,
                *(frame[c].to_numpy()[keep] for c in COUNTS),
            )
        )
    return Slots.join(parts)


def gate_schedule(policy, scrape_interval: float, scrape_delay: float) -> tuple[tuple, ...]:
    """The windows the policy's sequential gate reads before promotion, as the simulator
    schedules them: one tuple per window of the canary weight in each of its scrape intervals
    (a window that straddles a weight change has both).

    For a Canary with a background analysis and steps of setWeight and timed pauses (what a
    calibration scenario uses); anything else raises ``ValueError``."""
    analysis = getattr(policy, "analysis", None)
    if policy.kind != "Canary" or analysis is None:
        raise ValueError("only a Canary with a background analysis has a derived schedule")
    metric = sequential_metric(policy)
    t, weight, changes, begins = 0.0, 0.0, [], []
    for step in policy.steps:
        begins.append(t)
        if step.set_weight is not None:
            weight = float(step.set_weight)
            changes.append((t, weight))
        elif step.pause is not None and step.pause.duration is not None:
            t += step.pause.duration
        else:
            raise ValueError(f"a step with {step.action} has no fixed duration")
    start = begins[analysis.starting_step] if analysis.starting_step < len(begins) else t
    s, interval = scrape_interval, metric.interval
    windows = []
    k = 0
    while (at := start + metric.initial_delay + k * interval) <= t + 1e-9:
        end = math.floor((at - scrape_delay) / s + 1e-9) * s
        middles = end - s * (np.arange(round(interval / s), 0, -1) - 0.5)
        windows.append(
            tuple(next((w for c, w in reversed(changes) if c <= m), 0.0) for m in middles)
        )
        k += 1
    return tuple(windows)


def describe_schedule(windows) -> str:
    """ "6 windows at 20 %, 1 window at 20→50 %, 3 windows at 50 %"."""
    names = ("→".join(f"{x:g}" for x in dict.fromkeys(w)) + " %" for w in windows)
    runs = [(name, len(list(run))) for name, run in groupby(names)]
    return ", ".join(f"{n} window{'s' if n > 1 else ''} at {name}" for name, n in runs)


def sequential_metric(policy):
    """The background analysis's metric whose provider is a sequential test (SPRT/mSPRT)."""
    names = {r.template_name for r in policy.analysis.templates}
    for template in policy.analysis_templates:
        if template.name in names:
            for metric in template.metrics:
                if metric.provider.sequential is not None:
                    return metric
    raise ValueError("the background analysis has no sequential (SPRT/mSPRT) metric")
