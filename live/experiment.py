"""``rolloutsim hold``: the designed experiment for a gap between calibration and simulation.

For one case of a calibration scenario (a policy with a sequential gate, against a release
class), hold the canary at each weight the gate meets (``gate_schedule``) for a long stretch on
the bench, with no gate; draw the same traffic with the simulator; compare the windows
(live/windows.py) and replay both records through the gate offline. Each weight's live record
is kept in ``OUT/records`` as soon as it is taken, so an interrupted experiment resumes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from live.hold import (
    Slots,
    describe_schedule,
    gate_schedule,
    live_slots,
    sequential_metric,
    simulated_slots,
)
from live.windows import bootstrap_replay, compare_records, replay

__all__ = ["hold_experiment"]

PATHS = 40_000


def hold_experiment(
    scenario_path,
    out,
    *,
    case_name: str,
    seconds: float = 600.0,
    seed: int = 20261206,
    simulated_stretches: int = 32,
    bench=None,
    say=print,
) -> dict:
    """Run (or resume) the experiment; writes ``hold.json`` and ``report.md`` in ``out``."""
    from live.scenario import bench_plan
    from policies.errors import PolicyError
    from sim.runs.files import atomic_write_bytes
    from sim.runs.scenario import load_scenario

    loaded = load_scenario(scenario_path)
    plan = bench_plan(loaded)
    case = next((c for c in plan.cases if c.name == case_name), None)
    if case is None:
        names = ", ".join(c.name for c in plan.cases)
        raise PolicyError(f"no case {case_name!r} (cases: {names})", path="--case")
    policy = loaded.policies[case.policy]
    try:
        metric = sequential_metric(policy)
        schedule = gate_schedule(policy, plan.scrape_interval, plan.scrape_delay)
    except ValueError as exc:
        raise PolicyError(f"{case.policy}: {exc}", path="--case") from None
    test = metric.provider.sequential
    weights = list(dict.fromkeys(w for window in schedule for w in window))
    per_window = round(metric.interval / plan.scrape_interval)
    out = Path(out)
    (out / "records").mkdir(parents=True, exist_ok=True)
    live: dict[float, Slots] = {}
    own = {}
    started = None
    inputs = {
        "case": case_name,
        "seconds": seconds,
        "seed": seed,
        "canary_error_rate": case.canary_error_rate,
        "rate": plan.rate,
        "stable_error_rate": plan.stable_error_rate,
        "scrape_interval": plan.scrape_interval,
    }
    try:
        for i, weight in enumerate(weights):
            path = out / "records" / f"live-{weight:g}.json"
            record = json.loads(path.read_text()) if path.exists() else None
            if record is not None and record.get("inputs") != inputs:
                why = f"{path} holds another experiment's record: use another folder"
                raise PolicyError(why, path="--out")
            if record is None:
                if bench is None:
                    started = bench = _bench(plan, out / "bench")
                say(f"holding the canary at {weight:g} % for {seconds:g} s ...")
                seeds = _seeds(seed, i)
                slots, counts, stats = live_slots(
                    bench, plan, case.canary_error_rate, weight, seconds, seeds
                )
                record = {"inputs": inputs, "slots": slots.to_dict(), "backends": counts}
                record["load"] = stats
                atomic_write_bytes(path, json.dumps(record).encode())
            live[weight] = Slots.from_dict(record["slots"])
            own[weight] = record["backends"]
    finally:
        if started is not None:
            started.stop()
    say("drawing the same traffic with the simulator ...")
    simulated = {
        w: simulated_slots(loaded, case, w, seconds, simulated_stretches, seed + j)
        for j, w in enumerate(weights)
    }
    rows = compare_records(live, simulated, weights, test, per_window)
    short = schedule[:-1]
    replays = {
        "live": replay(live, schedule, test, PATHS, seed),
        "simulated": replay(simulated, schedule, test, PATHS, seed),
        "live, last window lost": replay(live, short, test, PATHS, seed),
        "simulated, last window lost": replay(simulated, short, test, PATHS, seed),
    }
    interval = bootstrap_replay(live, schedule, test, per_window, seed)
    report = {
        "case": case_name,
        "seconds": seconds,
        "schedule": schedule,
        "slots_per_window": per_window,
        "backends": {f"{w:g}": own[w] for w in weights},
        "rows": [r.__dict__ for r in rows],
        "replay": replays,
        "live_promote_95": interval,
    }
    atomic_write_bytes(out / "hold.json", json.dumps(report, indent=1).encode())
    atomic_write_bytes(out / "report.md", markdown(report).encode())
    return report


def _bench(plan, directory: Path):
    from live.bench import BackendSpec, Bench
    from live.calibrate import BACKEND_LATENCY_S

    spec = BackendSpec(plan.stable_error_rate, BACKEND_LATENCY_S)
    bench = Bench(directory, stable=spec, canary=spec, scrape_interval=plan.scrape_interval)
    bench.start()
    return bench


def _seeds(seed: int, index: int) -> dict:
    s = np.random.SeedSequence(seed, spawn_key=(7, index)).generate_state(3)
    return {"stable": int(s[0]), "canary": int(s[1]), "load": int(s[2])}


def _p(value) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.3g}"


def markdown(report: dict) -> str:
    """What a person reads: the rows, the backends' own counts, and the offline replay."""
    schedule = describe_schedule(report["schedule"])
    lines = [
        f"# Hold experiment: {report['case']}",
        "",
        f"The canary held at each weight for {report['seconds']:g} s on the bench, no gate; "
        f"windows of {report['slots_per_window']} scrape intervals.",
        "",
        "| quantity | live | simulated | test | p |",
        "|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['quantity']} | {r['live']} | {r['simulated']} | {r['test']} "
            f"| {_p(r['p_value'])} |"
        )
    lines += ["", "The backends' own counts over each hold (ground truth of what failed):", ""]
    for w, counts in report["backends"].items():
        parts = [
            f"{v} {c['failed']}/{c['served']} ({100 * c['failed'] / max(c['served'], 1):.3f} %)"
            for v, c in counts.items()
        ]
        lines.append(f"- {w} %: " + ", ".join(parts))
    lo, hi = report["live_promote_95"]
    lines += [
        "",
        f"Offline replay of the gate ({schedule}, {PATHS:,} paths of windows drawn from each "
        "record):",
        "",
        "| record | rejects (rollback) | accepts | undecided | promotes |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["replay"].items():
        lines.append(
            f"| {name} | {r['reject']:.4f} | {r['accept']:.4f} | {r['continue']:.4f} "
            f"| {r['accept'] + r['continue']:.4f} |"
        )
    lines += [
        "",
        f"Promotion share from the live record, 95 % bootstrap interval over the record: "
        f'[{lo:.4f}, {hi:.4f}]. "Last window lost": the same records through the schedule '
        "short of its last window, as the live executor met it before issue #20's fix.",
    ]
    return "\n".join(lines) + "\n"
