"""The engine benchmark of issue "The simulated world and the Monte Carlo engine".

Prints, for the reference scenario (benchmarks/reference.yaml):
  - CPU per replication for each release class (in-process),
  - replications per second on all cores (process backend, the runner's stratified mix: as
    many replications of each class), end to end and sustained once the pool is up,
  - peak memory (this process and its workers),
  - simulated requests per CPU-second for the fast engine (in-process),
  - the same for the per-request reference mode, on a short slice of the same scenario (its
    cost is linear in requests), and the ratio of the two.

Run:  .venv/bin/python benchmarks/bench_engine.py [--replications N] [--workers N]
Targets on a 2-core machine: >= 500 replications/s, a ratio >= 1,000, peak memory < 1 GB.
Timings are never asserted in tests; record results in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from sim import load_scenario, run
from sim.engine.replication import Replication
from sim.engine.seeds import replication_seed, shared_parts

HERE = Path(__file__).resolve().parent


def peak_rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def machine_reference() -> tuple[float, float]:
    """CPU ms of two fixed workloads, printed with every result so that numbers from another
    machine can be compared: numpy (Poisson draws and a sort: the engine's random-number floor)
    and plain Python (a loop: the engine's glue). Best of three."""
    rng = np.random.default_rng(0)

    def numpy_work() -> None:
        rng.poisson(3.0, 2_000_000)
        np.sort(rng.random(1_000_000))

    def python_work() -> None:
        total = 0
        for i in range(2_000_000):
            total += i & 7

    def best(work) -> float:
        times = []
        for _ in range(3):
            cpu0 = time.process_time()
            work()
            times.append(1000 * (time.process_time() - cpu0))
        return min(times)

    return best(numpy_work), best(python_work)


def fast_requests_per_cpu_second(loaded, n: int) -> tuple[float, dict[str, float]]:
    """In-process: simulated requests (all traffic over the simulated time) per CPU-second, and
    CPU milliseconds per replication for each release class."""
    world, policy = loaded.world, next(iter(loaded.policies.values()))
    cw, cells = shared_parts(world, loaded.scenario.seed)
    requests, cpu_total, per_class = 0.0, 0.0, {}
    for c, release in enumerate(world.releases):
        Replication(cw, cells, policy, release, replication_seed(1, c, n), index=n).run()  # warm
        cpu0 = time.process_time()
        for i in range(n):
            rep = Replication(cw, cells, policy, release, replication_seed(1, c, i), index=i)
            rep.run()
            requests += float(world.traffic.integral(0.0, min(rep.env.now, world.horizon)))
        cpu = time.process_time() - cpu0
        cpu_total += cpu
        per_class[release.name] = 1000 * cpu / n
    return requests / cpu_total, per_class


def reference_requests_per_cpu_second(loaded, slice_s: float, n: int) -> float | None:
    try:
        from sim.engine.reference import simulate_reference
    except ImportError:
        return None
    world = loaded.world.model_copy(update={"horizon": slice_s})
    cw, _ = shared_parts(world, loaded.scenario.seed)
    policy = next(iter(loaded.policies.values()))
    requests, cpu0 = 0.0, time.process_time()
    for i in range(n):
        release = list(world.releases)[1]  # a bad class: gates, alerts and users all at work
        simulate_reference(cw, policy, release, replication_seed(2, 1, i), index=i)
        requests += float(world.traffic.integral(0.0, slice_s))
    return requests / (time.process_time() - cpu0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=600, help="per release class")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--slice", type=float, default=60.0, help="seconds for per-request mode")
    args = parser.parse_args()
    loaded = load_scenario(HERE / "reference.yaml")
    world = loaded.world
    n_classes = len(world.releases)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    numpy_ms, python_ms = machine_reference()
    print(
        f"machine-speed reference (CPU, best of 3): numpy {numpy_ms:.1f} ms "
        f"(2 M Poisson draws + sort of 1 M uniforms), Python {python_ms:.1f} ms (a 2 M-step loop)"
    )

    rate, per_class = fast_requests_per_cpu_second(loaded, 100)
    stratified = sum(per_class.values()) / len(per_class)
    natural = sum(c.probability * per_class[c.name] for c in world.releases)
    print("fast engine, in-process, CPU per 4 h replication:")
    for name, ms in per_class.items():
        print(f"  {name}: {ms:.2f} ms")
    print(
        f"  stratified mix (the runner's: equal per class): {stratified:.2f} ms; "
        f"natural mix: {natural:.2f} ms"
    )
    print(f"  {rate:,.0f} simulated requests per CPU-second")

    def timed_run(replications: int, backend: str = "process"):
        wall0 = time.perf_counter()
        result = run(
            world,
            loaded.policies,
            replications=replications,
            seed=loaded.scenario.seed,
            backend=backend,
            workers=args.workers,
        )
        return time.perf_counter() - wall0, result

    timed_run(1, "inprocess")  # this process imports what a run needs (pandas...) first
    startup, _ = timed_run(1)  # a pool that starts, runs one replication per class and stops
    wall, result = timed_run(args.replications)
    total = args.replications * n_classes
    sustained = (total - n_classes) / max(wall - startup, 1e-9)
    print(
        f"process backend, {args.workers} workers: {total} replications in {wall:.2f} s = "
        f"{total / wall:,.0f} replications/s end to end (failed: {result.failed}); "
        f"sustained {sustained:,.0f} replications/s once the pool is up "
        f"(start-up and one replication per class: {startup:.2f} s)"
    )
    mix = result.summary().xs("mixture", level="release_class")
    print(
        f"  mixture: excess bad requests {mix['excess_bad_requests_mean'].iloc[0]:,.0f}, "
        f"false rollbacks {mix['false_rollback_mean'].iloc[0]:.3f}, "
        f"escapes {mix['escaped_mean'].iloc[0]:.3f}"
    )

    ref = reference_requests_per_cpu_second(loaded, args.slice, 2)
    if ref is None:
        print("per-request mode: not available (sim.engine.reference missing)")
    else:
        print(f"per-request mode, {args.slice:.0f} s slice: {ref:,.0f} requests per CPU-second")
        print(f"ratio fast / per-request: {rate / ref:,.0f}")
    own, children = peak_rss_mb()
    print(f"peak memory: {own:.0f} MB (this process), {children:.0f} MB (largest worker)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
