"""The engine benchmark of issue "The simulated world and the Monte Carlo engine".

Prints, for the reference scenario (benchmarks/reference.yaml):
  - CPU per replication for each release class (in-process),
  - replications per second on all cores (process backend, the runner's stratified mix: as
    many replications of each class), end to end and sustained once the pool is up,
  - peak memory (this process and its workers),
  - simulated requests per CPU-second for the fast engine (in-process),
  - the same for the per-request reference mode, on several slices of the same scenario (its
    cost is linear in requests), and the ratio of the two: median and spread over the slices.

Every result is printed with the machine (CPU model, cores, load average) and a machine-speed
reference (fixed numpy and Python workloads) so that another machine's numbers can be scaled.
Run:  .venv/bin/python benchmarks/bench_engine.py [--replications N] [--workers N]
Old engine against the new one, side by side: benchmarks/bench_compare.py.
Targets on a 2-core machine: >= 500 replications/s, a ratio >= 1,000, peak memory < 1 GB.
Timings are never asserted in tests; record results in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from sim import load_scenario, run

HERE = Path(__file__).resolve().parent


def process_peak_mb(pid: int) -> float:
    """A live process's peak RSS (VmHWM; 0 where /proc is missing)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def peak_rss_mb() -> tuple[float, float]:
    """This process's peak RSS and its largest worker's: the reaped ones (ru_maxrss) and those
    still alive, as a warm pool's are."""
    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    alive = [process_peak_mb(c.pid) for c in psutil.Process().children(recursive=True)]
    return own, max([children, *alive])


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


def replicate(world: dict, seed: int, spec: dict, name: str, c: int, start: int, stop: int):
    """Replications start..stop-1 of class c as the runner's workers run them (its worker entry
    point ``run_chunk``, chunk by chunk): whatever the engine does inside is measured."""
    from sim.runs import runner

    size = getattr(runner, "DEFAULT_CHUNK_SIZE", 50)
    records: list[dict] = []
    for a in range(start, stop, size):
        records += runner.run_chunk(world, seed, spec, name, c, a, min(a + size, stop))
    return records


def timed_class(world: dict, seed: int, spec: dict, name: str, c: int, n: int):
    """CPU ms per replication of n replications, after one that warms this process's caches."""
    replicate(world, seed, spec, name, c, n, n + 1)
    cpu0 = time.process_time()
    records = replicate(world, seed, spec, name, c, 0, n)
    return 1000 * (time.process_time() - cpu0) / n, records


def fast_requests_per_cpu_second(loaded, n: int) -> tuple[float, dict[str, float], int]:
    """In-process: simulated requests per CPU-second (the traffic up to the mitigation, where a
    replication stops, or the horizon), CPU milliseconds per replication for each release
    class, and how many replications raised."""
    name, policy = next(iter(loaded.policies.items()))
    world, spec, seed = loaded.world.to_dict(), policy.to_dict(), loaded.scenario.seed
    traffic, horizon = loaded.world.traffic, loaded.world.horizon
    requests, cpu_ms, per_class, errors = 0.0, 0.0, {}, 0
    for c, release in enumerate(loaded.world.releases):
        ms, records = timed_class(world, seed, spec, name, c, n)
        per_class[release.name] = ms
        cpu_ms += ms * n
        errors += sum(1 for r in records if r["error"])
        for r in records:
            end = r["t_mitigated"] if math.isfinite(r["t_mitigated"]) else horizon
            requests += float(traffic.integral(0.0, min(end, horizon)))
    return requests / (cpu_ms / 1000), per_class, errors


def reference_rates(loaded, slice_s: float, n: int) -> list[float] | None:
    """Requests per CPU-second of the per-request reference mode, one per ``slice_s`` slice of
    a bad class (gates, alerts and users all at work): several slices, because one is noisy."""
    try:
        from sim.engine.reference import simulate_reference
    except ImportError:
        return None
    from sim.engine.seeds import replication_seed, shared_parts

    world = loaded.world.model_copy(update={"horizon": slice_s})
    cw, _ = shared_parts(world, loaded.scenario.seed)
    policy = next(iter(loaded.policies.values()))
    release = list(world.releases)[1]
    requests = float(world.traffic.integral(0.0, slice_s))
    rates = []
    for i in range(n):
        cpu0 = time.process_time()
        simulate_reference(cw, policy, release, replication_seed(2, 1, i), index=i)
        rates.append(requests / (time.process_time() - cpu0))
    return rates


def spread(values, fmt: str = ",.2f") -> str:
    """Median and range of repeated measurements: "median (min-max)"."""
    values = sorted(values)
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{med:{fmt}} ({values[0]:{fmt}}–{values[-1]:{fmt}})"


def machine_description() -> str:
    """CPU model, cores, load average and versions: what a later reader needs to compare."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, load average {load} (1/5/15 min), "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )


def machine_line() -> str:
    """The machine-speed reference as one line, to print next to a result."""
    numpy_ms, python_ms = machine_reference()
    return (
        f"machine-speed reference (CPU, best of 3): numpy {numpy_ms:.1f} ms "
        f"(2 M Poisson draws + sort of 1 M uniforms), Python {python_ms:.1f} ms (a 2 M-step loop)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=600, help="per release class")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--slice", type=float, default=120.0, help="seconds for per-request mode")
    parser.add_argument("--slices", type=int, default=5, help="per-request slices (median)")
    args = parser.parse_args()
    loaded = load_scenario(HERE / "reference.yaml")
    world = loaded.world
    n_classes = len(world.releases)
    print(f"machine: {machine_description()}")
    print(machine_line())

    rate, per_class, _ = fast_requests_per_cpu_second(loaded, 100)
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
    first, _ = timed_run(1)  # starts a pool (one per run, or one kept warm for the next runs)
    fixed, _ = timed_run(1)  # what every later run pays: a new pool, or a warm pool's round trip
    wall, result = timed_run(args.replications)
    total = args.replications * n_classes
    sustained = f"{(total - n_classes) / (wall - fixed):,.0f}" if wall > fixed else "n/a"
    print(
        f"process backend, {args.workers} workers: {total} replications in {wall:.2f} s = "
        f"{total / wall:,.0f} replications/s end to end (failed: {result.failed}); "
        f"sustained {sustained} replications/s once the pool is up (a run of one replication "
        f"per class: {first:.2f} s the first in this process, {fixed:.2f} s the next)"
    )
    mix = result.summary().xs("mixture", level="release_class")
    print(
        f"  mixture: excess bad requests {mix['excess_bad_requests_mean'].iloc[0]:,.0f}, "
        f"false rollbacks {mix['false_rollback_mean'].iloc[0]:.3f}, "
        f"escapes {mix['escaped_mean'].iloc[0]:.3f}"
    )

    refs = reference_rates(loaded, args.slice, args.slices)
    if refs is None:
        print("per-request mode: not available (sim.engine.reference missing)")
    else:
        print(
            f"per-request mode, {args.slices} slices of {args.slice:.0f} s: "
            f"{spread(refs, ',.0f')} requests per CPU-second (median (min-max))"
        )
        print(f"ratio fast / per-request: {spread([rate / r for r in refs], ',.0f')}")
    print(machine_line())
    own, children = peak_rss_mb()
    print(f"peak memory: {own:.0f} MB (this process), {children:.0f} MB (largest worker)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
