"""Simulation against reality: the simulator's prediction intervals, checked by live bench runs.

A calibration scenario is an ordinary scenario whose world the bench can realise
(live/scenario.py); each live run is one of its policies against one of its release classes.
For each, the simulator predicts, over the scenario's replications of that class, the
distribution of what the release does: the bad
requests the canary serves up to the horizon, when a gate detects (aborts), the outcome. Then
the same policy runs live on the bench, with the same controller, and each measured value is
checked against the simulator's central 95 % prediction interval (for the outcome: the smallest
set of outcomes holding 95 %). Over several runs the share of checks inside should be
consistent with 95 %: the report gives the exact binomial lower-tail p-value. Coverage has
little power over a few runs, so each case is also tested as a whole (live/case_tests.py): its
promotion count against the simulated one, its detection times against the simulated ones.

Each live rollout starts just after a scrape, as the simulated one does (``_after_a_scrape``).
Live times are the controller's (live/executor.py), on the same ticks as simulated ones; they are
compared with a tolerance of ``TIME_TOLERANCE_S`` beyond the interval all the same, for an
executor that falls behind its deadlines on a loaded machine.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from live.calibration_report import (
    describe_coverage,
    describe_live,
    describe_prediction,
    describe_test,
    describe_tests,
    markdown,
)
from live.case_tests import CaseTest, case_tests, passes
from live.scenario import BenchPlan, LiveCase, bench_plan, case_world
from policies.errors import PolicyError

__all__ = [
    "TIME_TOLERANCE_S",
    "Check",
    "LiveOutcome",
    "Prediction",
    "calibrate",
    "calibrate_command",
    "compare",
    "live_run",
    "predict",
]

TIME_TOLERANCE_S = 0.5
SCRAPE_LAG_S = 0.02  # how long after a scrape a live rollout starts
LEVEL = 0.95
BACKEND_LATENCY_S = 0.001  # the backends answer in about a millisecond (no latency objective)


@dataclass
class Prediction:
    """The simulator's distribution for one run (times in wall-clock seconds)."""

    run: str
    replications: int
    outcome: dict[str, float]
    bad_requests: tuple[float, float, float]  # 2.5 %, 50 %, 97.5 %
    candidate_requests: tuple[float, float, float]
    p_detect: float
    t_detect: tuple[float, float, float] | None
    rollout: tuple[float, float, float] | None  # promoted runs only
    wall_s: float = 0.0
    samples: dict = field(default_factory=dict, repr=False)  # simulated values, not reported

    def outcome_set(self, level: float = LEVEL) -> list[str]:
        """The smallest set of outcomes whose predicted probability reaches ``level``."""
        chosen, total = [], 0.0
        for name, p in sorted(self.outcome.items(), key=lambda kv: -kv[1]):
            if total >= level - 1e-12:
                break
            chosen.append(name)
            total += p
        return chosen


def _quantiles(values) -> tuple[float, float, float] | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, mid, hi = np.quantile(values, [(1 - LEVEL) / 2, 0.5, (1 + LEVEL) / 2])
    return float(lo), float(mid), float(hi)


def predict(loaded, case: LiveCase, plan: BenchPlan, replications: int | None = None):
    """Simulate the case's release class under its policy (times scaled to the wall clock)."""
    from sim.runs.runner import run as simulate

    n = replications or _replications(loaded.scenario.replications, case.release)
    started = time.perf_counter()
    result = simulate(
        case_world(loaded, case),
        {case.policy: loaded.policies[case.policy]},
        replications=n,
        seed=loaded.scenario.seed,
        backend="inprocess",
    )
    frame = result.frame
    if result.failed:
        raise RuntimeError(f"{result.failed} simulated replications failed: {frame.error.iloc[0]}")
    k = plan.time_scale
    gate = frame["detected_by"] == "gate"
    promoted = frame["outcome"] == "promoted"
    counts = frame["outcome"].value_counts(normalize=True)
    return Prediction(
        run=case.name,
        replications=n,
        outcome={o: float(counts.get(o, 0.0)) for o in ("promoted", "rolled_back", "stalled")},
        bad_requests=_quantiles(frame["bad_requests"]),
        candidate_requests=_quantiles(frame["candidate_requests"]),
        p_detect=float(gate.mean()),
        t_detect=_quantiles(frame.loc[gate, "t_detect"] * k),
        rollout=_quantiles(frame.loc[promoted, "rollout_duration"] * k),
        wall_s=time.perf_counter() - started,
        samples={
            "bad_requests": frame["bad_requests"].to_numpy(),
            "t_detect": (frame.loc[gate, "t_detect"] * k).to_numpy(),
        },
    )


def _replications(spec, release: str) -> int:
    return spec[release] if isinstance(spec, dict) else int(spec)


@dataclass
class LiveOutcome:
    """What one live run did, measured on the bench (HAProxy's own counters)."""

    run: str
    repeat: int
    seeds: dict[str, int]
    outcome: str
    status: str | None
    reason: str
    bad_requests: int
    candidate_requests: int
    t_detect: float | None
    rollout: float | None
    wall_s: float
    state: str
    load: dict = field(default_factory=dict)


def live_run(bench, plan: BenchPlan, case: LiveCase, policy, seeds: dict, workdir: Path):
    """Run the case live on ``bench`` (already started) up to the horizon: the canary backend
    fails at the case's rate; counts are HAProxy's own. Returns a ``LiveOutcome``."""
    from live.executor import LiveExecutor, LiveSettings
    from live.journal import StateDir

    started = time.perf_counter()
    bench.set_backend("stable", error_rate=plan.stable_error_rate, seed=seeds["stable"])
    bench.set_backend("canary", error_rate=case.canary_error_rate, seed=seeds["canary"])
    bench.reset_weights()
    router = bench.router()
    before = router.counters()
    load = bench.load(plan.rate, plan.horizon + 4.0, seed=seeds["load"])
    _wait_for_traffic(router, before)
    state = StateDir(workdir)
    state.archive()
    settings = LiveSettings(
        replicas=case.replicas,
        time_scale=plan.time_scale,
        scrape_delay=plan.scrape_delay,
        check_interval=max(1.0, plan.scrape_interval),
        missing_data_timeout=30.0,
        approve_after=plan.approve_after,
    )
    lines: list[str] = []
    executor = LiveExecutor(policy, router, bench.metrics(), state, settings, out=lines.append)
    _after_a_scrape(bench, plan.scrape_interval)
    counts0 = router.counters()
    executor_start = time.time()
    result = executor.run(until=executor_start + plan.horizon)
    t0 = executor.t0 or executor_start
    time.sleep(max(0.0, t0 + plan.horizon - time.time()))
    counts1 = router.counters()
    load.stop()
    bench.reset_weights()
    (workdir / "executor.log").write_text("\n".join(lines) + "\n")
    outcome = {"Promoted": "promoted", "Aborted": "rolled_back", "RolledBack": "rolled_back"}
    return LiveOutcome(
        run=case.name,
        repeat=seeds["repeat"],
        seeds={k: v for k, v in seeds.items() if k != "repeat"},
        outcome=outcome.get(result.status, "stalled"),
        status=result.status,
        reason=result.reason,
        bad_requests=counts1["canary"]["errors"] - counts0["canary"]["errors"],
        candidate_requests=counts1["canary"]["requests"] - counts0["canary"]["requests"],
        t_detect=result.detected_at,
        rollout=result.promoted_at,
        wall_s=time.perf_counter() - started,
        state=str(workdir),
    )


def _after_a_scrape(bench, interval: float) -> None:
    """Sleep until just after a scrape: the simulator's scrapes fall on whole multiples of the
    interval from the release start, so the bench starts the rollout ``SCRAPE_LAG_S`` after one
    and every window the gate reads lines up with the simulated one. (Prometheus scrapes at a
    phase of its own: against it, the simulator's gate detections are early by up to one scrape
    interval, half of one on average; benchmarks/CALIBRATION.md.)"""
    from live.bench import JOB
    from live.queries import up_query

    api = bench.metrics().api
    last = api.scalar(f"timestamp({up_query(JOB)})")
    if last is None:
        return
    now = time.time()
    target = last + math.ceil((now + SCRAPE_LAG_S - last) / interval) * interval + SCRAPE_LAG_S
    time.sleep(max(0.0, target - now))


def _wait_for_traffic(router, before: dict, timeout: float = 10.0) -> None:
    from live.procs import wait_for

    def flowing():
        return router.counters()["stable"]["requests"] > before["stable"]["requests"] + 5 or None

    wait_for(flowing, timeout, "load through HAProxy", interval=0.02)


@dataclass
class Check:
    run: str
    repeat: int
    quantity: str
    measured: Any
    predicted: Any
    inside: bool
    note: str = ""
    rank: float | None = None  # the measured value's place in the simulated distribution


def compare(pred: Prediction, live: LiveOutcome) -> list[Check]:
    """The checks of one live run against its prediction (see the module docs)."""
    here = (live.run, live.repeat)
    lo, _, hi = pred.bad_requests
    measured = live.bad_requests
    checks = [
        Check(
            *here,
            "bad_requests",
            measured,
            [lo, hi],
            lo <= measured <= hi,
            rank=_rank(pred.samples.get("bad_requests"), measured),
        )
    ]
    if live.t_detect is not None or pred.p_detect > 1 - LEVEL:
        if live.t_detect is None or pred.t_detect is None:
            note = "detected live only" if pred.t_detect is None else "not detected live"
            p_same = pred.p_detect if live.t_detect is not None else 1 - pred.p_detect
            checks.append(
                Check(*here, "t_detect", live.t_detect, pred.t_detect, p_same >= 1 - LEVEL, note)
            )
        else:
            lo, _, hi = pred.t_detect
            t = round(live.t_detect, 3)
            inside = lo - TIME_TOLERANCE_S <= t <= hi + TIME_TOLERANCE_S
            rank = _rank(pred.samples.get("t_detect"), t, TIME_TOLERANCE_S)
            checks.append(Check(*here, "t_detect", t, [lo, hi], inside, rank=rank))
    allowed = pred.outcome_set()
    checks.append(Check(*here, "outcome", live.outcome, allowed, live.outcome in allowed))
    return checks


def _rank(samples, value: float, tolerance: float = 0.0) -> float | None:
    """Where ``value`` falls in the simulated distribution: P(X < v) + P(X = v)/2 (values
    within ``tolerance`` count as equal). Uniform on (0, 1) for a calibrated simulator."""
    if samples is None or len(samples) == 0:
        return None
    x = np.asarray(samples, dtype=float)
    below = np.mean(x < value - tolerance)
    equal = np.mean(np.abs(x - value) <= tolerance)
    return round(float(below + equal / 2), 4)


def coverage(checks: list[Check], quantities=("bad_requests", "t_detect")) -> dict:
    """Share of interval checks inside, and P(X <= inside) for X ~ Binomial(n, 0.95)."""
    from scipy.stats import binom

    used = [c for c in checks if c.quantity in quantities]
    n, k = len(used), sum(c.inside for c in used)
    p = float(binom.cdf(k, n, LEVEL)) if n else math.nan
    return {"checks": n, "inside": k, "share": k / n if n else math.nan, "p_value": p}


def calibrate(
    scenario_path: str | Path,
    out: str | Path,
    *,
    repeat: int = 1,
    seed: int | str | None = None,
    replications: int | None = None,
    only: tuple[str, ...] = (),
    time_scale: float = 1.0,
    bench=None,
    simulate_only: bool = False,
    say=print,
) -> dict:
    """Predict, run live, compare; writes ``calibration.json`` and ``report.md`` in ``out``.

    ``only``: cases to run, as ``policy:release``, a policy or a release name (default all).
    ``seed``: the live runs' seed (None: the scenario's; "random": fresh). ``bench``: an
    already started ``Bench`` to use (else one is started, and stopped at the end).
    """
    from sim.runs.scenario import load_scenario

    loaded = load_scenario(scenario_path)
    plan = bench_plan(loaded, time_scale)
    cases = [c for c in plan.cases if not only or {c.name, c.policy, c.release} & set(only)]
    if not cases:
        raise PolicyError(f"no case matches {', '.join(only)}", path="--only")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "scenario": loaded.resolved(),
        "bench": {k: v for k, v in asdict(plan).items() if k != "cases"},
        "predictions": {},
        "live": [],
    }
    # simulate in a thread while this one starts the bench (Prometheus's first scrape takes
    # ~6 s); the bench's children are tied to the thread that starts them, so it is this one
    predictions: dict[str, Prediction] = {}
    simulating = _Worker(
        lambda: predictions.update({c.name: predict(loaded, c, plan, replications) for c in cases})
    )
    own = not simulate_only and bench is None
    try:
        if own:
            bench = _bench_for(plan, out / "bench").start()
        simulating.finish()
        for case in cases:
            say(describe_prediction(predictions[case.name]))
        report["predictions"] = {k: _public(v) for k, v in predictions.items()}
        if not simulate_only:
            seed = _live_seed(loaded, seed)
            report["live_seed"] = seed
            checks: list[Check] = []
            tests: list[CaseTest] = []
            for i, case in enumerate(cases):
                lives = []
                for j in range(repeat):
                    workdir = out / "runs" / f"{case.policy}-{case.release}-{j}"
                    policy = loaded.policies[case.policy]
                    live = live_run(bench, plan, case, policy, _seeds(seed, i, j), workdir)
                    found = compare(predictions[case.name], live)
                    checks += found
                    lives.append(live)
                    report["live"].append(asdict(live))
                    say(describe_live(live, found))
                tests += case_tests(predictions[case.name], lives, seed=i)
            report["checks"] = [asdict(c) for c in checks]
            report["coverage"] = coverage(checks)
            report["tests"] = [asdict(t) for t in tests]
            say(describe_coverage(report["coverage"]))
            for t in tests:
                say(describe_test(t))
            if tests:
                say(describe_tests(tests))
    finally:
        simulating.join()
        if own and bench is not None:
            bench.stop()
    (out / "calibration.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))
    return report


class _Worker(threading.Thread):
    """Run ``work`` in a thread; ``finish()`` waits and re-raises its exception here."""

    def __init__(self, work) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _bench_for(plan: BenchPlan, directory: Path):
    from live.bench import BackendSpec, Bench

    return Bench(
        directory,
        stable=BackendSpec(plan.stable_error_rate, BACKEND_LATENCY_S),
        canary=BackendSpec(plan.stable_error_rate, BACKEND_LATENCY_S),
        scrape_interval=plan.scrape_interval,
    )


def _live_seed(loaded, seed: int | str | None) -> int:
    if seed is None:
        seed = loaded.scenario.seed
    if seed == "random":
        return int(np.random.SeedSequence().entropy % 2**63)
    return int(seed)


def _public(p: Prediction) -> dict:
    return {k: v for k, v in asdict(p).items() if k != "samples"}


def _seeds(seed: int, run_index: int, repeat: int) -> dict:
    s = np.random.SeedSequence(seed, spawn_key=(run_index, repeat)).generate_state(3)
    return {"stable": int(s[0]), "canary": int(s[1]), "load": int(s[2]), "repeat": repeat}


def calibrate_command(args) -> int:
    """``rolloutsim calibrate``: exit 0 when the share of checks inside is consistent with
    95 % (binomial lower-tail p >= 0.05, outcomes included) and no per-case test rejects
    (live/case_tests.py: p >= 0.05 / tests), else 1."""
    from live.scenario import default_scenario

    report = calibrate(
        args.scenario or default_scenario(),
        args.out,
        repeat=args.repeat,
        seed=args.seed,
        replications=args.replications,
        only=tuple(args.only),
        time_scale=args.time_scale,
        simulate_only=args.simulate_only,
    )
    print(f"report: {Path(args.out) / 'report.md'}")
    if args.simulate_only:
        return 0
    checks = [Check(**c) for c in report["checks"]]
    everything = coverage(checks, ("bad_requests", "t_detect", "outcome"))
    tests = [CaseTest(**t) for t in report["tests"]]
    return 0 if everything["p_value"] >= 0.05 and passes(tests) else 1
