"""Today's engine (commit BASELINE) against the working tree's, side by side, in one run.

Issue #17's "Done when": the same measurement code runs under either tree in a subprocess
(PYTHONPATH points at the tree), old and new interleaved (old, new, old, new...) so that the
host's load falls on both alike. The baseline is extracted once with ``git archive`` into a
temp folder: the repository's index and working tree are left alone. Prints a Markdown block
ready to paste into benchmarks/RESULTS.md:

  - CPU per replication for each release class of the reference scenario (in-process, through
    the runner's worker entry point ``run_chunk``), and old / new pair by pair;
  - the fast / per-request ratio over several per-request slices (median and spread);
  - a good release's CPU at 200 / 2k / 20k / 200k req/s and 1 / 4 / 16 / 64 h;
  - peak memory at 200 k / 1 M / 10 M users (process backend: main process, largest worker,
    and the whole tree sampled: RSS and PSS, which counts shared pages once);
  - wall and CPU time of ``rolloutsim run scenarios/seed-practice.yaml`` and ``rolloutsim tune
    scenarios/tune-canary.yaml``, each run from its own tree.

Run:  .venv/bin/python benchmarks/bench_compare.py           the full version, ~10 min on 2 cores
      .venv/bin/python benchmarks/bench_compare.py --quick   a smoke run, ~1 min (no tune, no
      10 M users); --skip-classes/-cost/-memory/-cli/-tune leave parts out.
Each section prints a machine-speed reference taken just before it (bench_engine.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_engine import (  # noqa: E402
    fast_requests_per_cpu_second,
    machine_description,
    machine_line,
    process_peak_mb,
    reference_rates,
    spread,
    timed_class,
)

BASELINE = "d265d38"  # today's engine: the commit before issue #17's speed work
REPO = HERE.parent
BASELINE_DIR = Path(tempfile.gettempdir()) / "rolloutsim-baseline"
RATES = (200, 2_000, 20_000, 200_000)
HOURS = (1, 4, 16, 64)
USERS = (200_000, 1_000_000, 10_000_000)
USER_CAP = "BENCH_COMPARE_MAX_USERS"
TIMEOUT_S = 1800  # per subprocess


def _lift_user_cap() -> None:
    """10 M users is beyond the baseline engine's cap (sim/world/users.py MAX_USERS, 2 M
    then): the memory probe lifts it in its own processes. Its spawned workers import this
    script as ``__mp_main__``, so the lift runs at import, where the probe set the variable."""
    if os.environ.get(USER_CAP):
        import sim.world.users

        sim.world.users.MAX_USERS = max(sim.world.users.MAX_USERS, int(os.environ[USER_CAP]))


_lift_user_cap()


# ----------------------------------------------------------------------------- probes
# Each runs in a subprocess under one tree and prints one JSON line.


def _reference():
    from sim import load_scenario

    loaded = load_scenario(HERE / "reference.yaml")
    name, policy = next(iter(loaded.policies.items()))
    return loaded, name, policy.to_dict(), loaded.world.to_dict(), loaded.scenario.seed


def probe_classes(n: int, slices: int, slice_s: float) -> dict:
    """Per-class CPU of the reference scenario, and both sides of the fast / per-request ratio."""
    loaded, *_ = _reference()
    rate, ms, errors = fast_requests_per_cpu_second(loaded, n)
    probability = {r.name: r.probability for r in loaded.world.releases}
    out = {"ms": ms, "probability": probability, "errors": errors, "fast_rate": rate}
    out["ref_rates"] = reference_rates(loaded, slice_s, slices) if slices else None
    return out


def probe_cost(n: int, rates: list[float], hours: list[float]) -> dict:
    """A good release's CPU ms per replication with the reference's rate or horizon changed."""
    loaded, name, spec, world, seed = _reference()
    good = loaded.world.releases.names.index("good")
    configs = [(r, 4.0) for r in rates] + [(2000.0, h) for h in hours if h != 4]
    out = {}
    for rate, h in configs:
        w = {**world, "traffic": {**world["traffic"], "rate": rate}, "horizon": f"{h:g}h"}
        runs = max(3, round(n * 4 / max(h, 4)))  # fewer at long horizons: same CPU budget
        out[f"{rate:g}/{h:g}"] = timed_class(w, seed, spec, name, good, runs)[0]
    return out


def probe_memory(users: int, workers: int, replications: int) -> dict:
    """Peak memory of a process-backend run: this process, its largest worker (ru_maxrss of
    the reaped ones, VmHWM of those still alive, e.g. a warm pool), and the whole tree's RSS
    and PSS sampled every 0.2 s (PSS counts shared pages once: shared memory, copy-on-write)."""
    import psutil

    from sim import run
    from sim.runs.budget import Budget

    os.environ[USER_CAP] = str(users)
    _lift_user_cap()
    loaded, *_ = _reference()
    world = loaded.world.to_dict()
    world["users"] = {**world["users"], "count": users}
    peak = {"rss": 0, "pss": 0, "worker": 0.0}
    stop = threading.Event()

    def sample() -> None:
        me = psutil.Process()
        rss = pss = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                m = p.memory_full_info()
            except psutil.Error:
                continue
            rss, pss = rss + m.rss, pss + getattr(m, "pss", m.rss)
            if p.pid != me.pid:
                peak["worker"] = max(peak["worker"], process_peak_mb(p.pid))
        peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)

    def sampler() -> None:
        while not stop.wait(0.2):
            sample()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    wall0 = time.perf_counter()
    run(
        world,
        loaded.policies,
        replications=replications,
        seed=loaded.scenario.seed,
        backend="process",
        workers=workers,
        budget=Budget.unlimited(),
    )
    wall = time.perf_counter() - wall0
    stop.set()
    thread.join()
    sample()  # a warm pool's workers are still alive: their VmHWM is read here
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker": max(reaped, peak["worker"]),
        "tree_rss": peak["rss"] / 2**20,
        "tree_pss": peak["pss"] / 2**20,
        "wall": wall,
    }


# ----------------------------------------------------------------------------- driver


def baseline_tree() -> Path:
    """Today's engine, extracted once from git (git archive: no index or worktree change)."""
    mark = BASELINE_DIR / ".bench-baseline"
    if mark.exists() and mark.read_text().strip() == BASELINE:
        return BASELINE_DIR
    shutil.rmtree(BASELINE_DIR, ignore_errors=True)
    BASELINE_DIR.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BASELINE], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(BASELINE_DIR)], input=archive.stdout, check=True)
    mark.write_text(BASELINE + "\n")
    return BASELINE_DIR


def _env(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree)}


def compiled(tree: Path) -> Path:
    """Byte-compile a tree's packages first, so that neither side pays for compiling its
    modules in a timed start-up (a fresh extraction has no __pycache__)."""
    packages = [str(tree / p) for p in ("sim", "policies", "rolloutsim", "live")]
    cmd = [sys.executable, "-m", "compileall", "-q", *packages]
    subprocess.run(cmd, capture_output=True, check=False)
    return tree


def _run(cmd: list[str], tree: Path, cwd: Path | str) -> subprocess.CompletedProcess | str:
    """A command under ``tree``, or why it failed (a broken or hung tree is reported, not
    fatal: TIMEOUT_S bounds a pool that never shuts down)."""
    try:
        proc = subprocess.run(
            cmd, env=_env(tree), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"failed: no answer in {TIMEOUT_S} s"
    if proc.returncode:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        return "failed: " + lines[-1][:120]
    return proc


def probe(tree: Path, *args) -> dict | str:
    """One probe under ``tree``: its JSON line, or why it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", *map(str, args)]
    proc = _run(cmd, tree, tempfile.gettempdir())
    return proc if isinstance(proc, str) else json.loads(proc.stdout.strip().splitlines()[-1])


def timed_command(tree: Path, argv: list[str], out: Path) -> tuple[float, float] | str:
    """Wall and CPU seconds (the command and its workers) of ``python -m rolloutsim ...`` run
    from ``tree`` as a user would type it there, writing to a fresh folder."""
    cmd = [sys.executable, "-m", "rolloutsim", *argv, "-o", str(out), "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    proc = _run(cmd, tree, tree)
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if isinstance(proc, str):
        return proc
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _cell(values: list, fmt: str = ",.2f") -> str:
    failed = [v for v in values if isinstance(v, str)]
    return failed[0] if failed else spread(values, fmt)


def _ratios(old: list, new: list) -> list:
    pairs = [(o, n) for o, n in zip(old, new, strict=True)]
    if any(isinstance(x, str) for p in pairs for x in p):
        return ["failed"]
    return [o / n for o, n in pairs if n > 0]


def section_classes(trees: dict, args) -> list[str]:
    results: dict[str, list] = {k: [] for k in trees}
    for _ in range(args.repeats):
        for key, tree in trees.items():
            results[key].append(probe(tree, "classes", args.replications, args.slices, args.slice))
    ok = [r for rs in results.values() for r in rs if isinstance(r, dict)]
    names = list(ok[0]["ms"]) if ok else []
    probability = ok[0]["probability"] if ok else {}

    def col(key: str, what) -> list:
        return [r if isinstance(r, str) else what(r) for r in results[key]]

    rows = [(n, lambda r, n=n: r["ms"][n]) for n in names]
    rows.append(("stratified mix (the runner's)", lambda r: sum(r["ms"].values()) / len(r["ms"])))
    rows.append(("natural mix", lambda r: sum(probability[n] * r["ms"][n] for n in r["ms"])))
    lines = [
        f"CPU per replication, in-process, {args.replications} replications per class, "
        f"{args.repeats} alternating repeats (median (min–max)); old/new is pair by pair:",
        "",
        "| CPU ms per replication | old | new | old / new |",
        "|---|---|---|---|",
    ]
    for label, what in rows:
        old, new = col("old", what), col("new", what)
        lines.append(f"| {label} | {_cell(old)} | {_cell(new)} | {_cell(_ratios(old, new))} |")
    errors = {k: sum(r["errors"] for r in rs if isinstance(r, dict)) for k, rs in results.items()}
    if any(errors.values()):
        lines.append(f"\nReplications that raised: old {errors['old']}, new {errors['new']}.")
    if args.slices:
        lines += [
            "",
            f"Fast / per-request ratio: {args.slices} per-request slices of {args.slice:g} s "
            "(a bad class) per repeat, each against that repeat's fast rate:",
            "",
            "| engine | fast, requests per CPU-s | per-request, requests per CPU-s | ratio |",
            "|---|---|---|---|",
        ]
        for key, rs in results.items():
            good = [r for r in rs if isinstance(r, dict) and r["ref_rates"]]
            fast = [r["fast_rate"] for r in good]
            ref = [x for r in good for x in r["ref_rates"]]
            ratio = [r["fast_rate"] / x for r in good for x in r["ref_rates"]]
            lines.append(
                f"| {key} | {spread(fast, '.3g')} | {spread(ref, ',.0f')} | "
                f"{spread(ratio, ',.0f')} |"
            )
    return lines


def section_cost(trees: dict, args) -> list[str]:
    results: dict[str, list] = {k: [] for k in trees}
    rates, hours = ",".join(map(str, RATES)), ",".join(map(str, HOURS))
    for _ in range(args.cost_repeats):
        for key, tree in trees.items():
            results[key].append(probe(tree, "cost", args.cost_replications, rates, hours))
    lines = [
        f"A good release's CPU per replication (ms; the reference scenario with the rate or the "
        f"horizon changed; {args.cost_replications} replications at 4 h, proportionally fewer at "
        f"longer horizons; {args.cost_repeats} alternating repeats):",
        "",
        "| rate (req/s) / horizon | old | new | old / new |",
        "|---|---|---|---|",
    ]
    keys = [f"{r:g}/4" for r in RATES] + [f"2000/{h:g}" for h in HOURS if h != 4]
    for k in keys:
        old = [r if isinstance(r, str) else r[k] for r in results["old"]]
        new = [r if isinstance(r, str) else r[k] for r in results["new"]]
        rate, h = k.split("/")
        label = f"{int(rate):,} / {h} h"
        lines.append(f"| {label} | {_cell(old)} | {_cell(new)} | {_cell(_ratios(old, new))} |")
    return lines


def section_memory(trees: dict, args) -> list[str]:
    lines = [
        f"Peak memory, process backend, {args.workers} workers, {args.memory_replications} "
        "replications per class, the reference scenario with the user count changed (MB; "
        "tree = main + workers, sampled every 0.2 s; PSS counts shared pages once):",
        "",
        "| users | engine | main | largest worker | tree RSS | tree PSS | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for users in args.users:
        for key, tree in trees.items():
            r = probe(tree, "memory", users, args.workers, args.memory_replications)
            cells = (
                [r, "", "", "", ""]
                if isinstance(r, str)
                else [f"{r[k]:,.0f}" for k in ("main", "worker", "tree_rss", "tree_pss")]
                + [f"{r['wall']:.1f}"]
            )
            lines.append(f"| {users:,} | {key} | " + " | ".join(cells) + " |")
    return lines


def section_cli(trees: dict, args) -> list[str]:
    commands = [["run", "scenarios/seed-practice.yaml"]]
    if not args.skip_tune:
        commands.append(["tune", "scenarios/tune-canary.yaml"])
    lines = [
        f"Commands, run from each tree as typed there (`python -m rolloutsim ... -o <fresh "
        f"folder> --no-progress`), {args.cli_repeats} alternating repeat(s); wall and CPU "
        "seconds (CPU: the command and its workers):",
        "",
        "| command | old wall | new wall | old / new | old CPU | new CPU |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        for argv in commands:
            got: dict[str, list] = {k: [] for k in trees}
            for i in range(args.cli_repeats):
                for key, tree in trees.items():
                    got[key].append(timed_command(tree, argv, Path(tmp) / f"{argv[0]}-{key}-{i}"))
            wall = {k: [v if isinstance(v, str) else v[0] for v in vs] for k, vs in got.items()}
            cpu = {k: [v if isinstance(v, str) else v[1] for v in vs] for k, vs in got.items()}
            ratio = _cell(_ratios(wall["old"], wall["new"]))
            lines.append(
                f"| `rolloutsim {' '.join(argv)}` | {_cell(wall['old'], '.1f')} | "
                f"{_cell(wall['new'], '.1f')} | {ratio} | {_cell(cpu['old'], '.1f')} | "
                f"{_cell(cpu['new'], '.1f')} |"
            )
    return lines


def _tree_state() -> str:
    """HEAD and whether the working tree differs (read-only: no index refresh)."""
    git = ["git", "--no-optional-locks", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    status = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    changed = len(status.stdout.splitlines())
    return head.stdout.strip() + (f" plus {changed} changed files" if changed else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short settings: a smoke run")
    parser.add_argument("--repeats", type=int, default=5, help="alternating pairs, per class")
    parser.add_argument("--replications", type=int, default=200, help="per class per repeat")
    parser.add_argument("--slices", type=int, default=5, help="per-request slices per repeat")
    parser.add_argument("--slice", type=float, default=120.0, help="seconds per slice")
    parser.add_argument("--cost-repeats", type=int, default=3)
    parser.add_argument("--cost-replications", type=int, default=40, help="at 4 h")
    parser.add_argument("--users", type=lambda s: [int(float(x)) for x in s.split(",")])
    parser.add_argument("--workers", type=int, default=2, help="memory section's pool")
    parser.add_argument("--memory-replications", type=int, default=2)
    parser.add_argument("--cli-repeats", type=int, default=1)
    for part in ("classes", "cost", "memory", "cli", "tune"):
        parser.add_argument(f"--skip-{part}", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.replications, args.slices, args.slice = 2, 30, 2, 30.0
        args.cost_repeats, args.cost_replications = 1, 8
        args.users = args.users or [200_000, 1_000_000]
        args.skip_tune = True
    args.users = args.users or list(USERS)
    trees = {"old": compiled(baseline_tree()), "new": compiled(REPO)}
    command = " ".join(["benchmarks/bench_compare.py", *(argv or sys.argv[1:])])
    print(f"## {time.strftime('%Y-%m-%d')}: today's engine ({BASELINE}) against the working tree")
    print()
    print(f"Command: `.venv/bin/python {command}`  ")
    print(f"Baseline: commit {BASELINE} (extracted to {trees['old']}); new: {_tree_state()}  ")
    print(f"Machine: {machine_description()}")
    sections = [
        ("Reference scenario", section_classes, args.skip_classes),
        ("Cost in rate and horizon", section_cost, args.skip_cost),
        ("Memory in users", section_memory, args.skip_memory),
        ("Commands", section_cli, args.skip_cli),
    ]
    for title, build, skip in sections:
        if skip:
            continue
        reference = machine_line()
        lines = build(trees, args)
        print(f"\n### {title}\n\n{reference} (just before this section)\n")
        print("\n".join(lines), flush=True)
    print(f"\nAt the end: {machine_line()}; {machine_description()}")


def _probe_main(argv: list[str]) -> None:
    import numpy as np

    np.seterr(all="ignore")
    what, *rest = argv
    if what == "classes":
        out = probe_classes(int(rest[0]), int(rest[1]), float(rest[2]))
    elif what == "cost":
        floats = [[float(x) for x in r.split(",")] for r in rest[1:3]]
        out = probe_cost(int(rest[0]), *floats)
    elif what == "memory":
        out = probe_memory(int(rest[0]), int(rest[1]), int(rest[2]))
    else:
        raise SystemExit(f"unknown probe {what!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        _probe_main(sys.argv[2:])
    else:
        main()
