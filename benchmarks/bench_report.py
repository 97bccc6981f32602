"""The report against the simulation (issue #17, item 4): CPU of ``run()`` and of the report.

On the seed practice (scenarios/seed-practice.yaml, 100 replications per class, the README's
main command), in one process with the in-process backend (so the CPU of both is this
process's): a first run and report that pay the imports, then ``--repeats`` alternating pairs
of ``run()`` and ``write_report``, each timed in CPU seconds (``time.process_time``), with the
report's figures (``draw_png``) timed inside it. Prints the ratio report / run per pair, its
median and spread, what matplotlib's import costs a fresh process, and the machine-speed
reference of bench_engine.py. Timings are never asserted in tests.
Run:  .venv/bin/python benchmarks/bench_report.py [--replications N] [--repeats N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_engine import machine_description, machine_line, spread  # noqa: E402

IMPORT_CPU = (
    "import time; t = time.process_time(); "
    "import matplotlib.figure, matplotlib.backends.backend_agg; "
    "print(time.process_time() - t)"
)


def matplotlib_import_s(repeats: int = 3) -> list[float]:
    """CPU seconds a fresh interpreter spends importing what the figures need."""
    out = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", IMPORT_CPU], capture_output=True, text=True, check=True
        )
        out.append(float(done.stdout.strip()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=100, help="per release class")
    parser.add_argument("--repeats", type=int, default=5, help="alternating run/report pairs")
    args = parser.parse_args()
    print(f"machine: {machine_description()}")
    print(machine_line())

    cpu0 = time.process_time()
    from sim.report import figures
    from sim.report.write import write_report
    from sim.runs import pool
    from sim.runs.runner import run
    from sim.runs.scenario import load_scenario

    imported = time.process_time() - cpu0
    pool.shutdown()  # the figures are drawn here, where this process's CPU time sees them
    loaded = load_scenario(HERE.parent / "scenarios" / "seed-practice.yaml")
    figure_s: list[float] = []
    real_draw = figures.draw_png

    def timed_draw(*a, **k):
        cpu = time.process_time()
        try:
            return real_draw(*a, **k)
        finally:
            figure_s[-1] += time.process_time() - cpu

    figures.draw_png = timed_draw

    def simulate():
        cpu = time.process_time()
        result = run(
            loaded.world,
            loaded.policies,
            replications=args.replications,
            seed=loaded.scenario.seed,
            backend="inprocess",
        )
        return result, time.process_time() - cpu

    def report(result, out: Path) -> float:
        figure_s.append(0.0)
        cpu = time.process_time()
        write_report(result, loaded, out)
        return time.process_time() - cpu

    with tempfile.TemporaryDirectory() as tmp:
        result, first_run = simulate()
        first_report = report(result, Path(tmp) / "first")
        print(
            f"first pair (pays the imports; sim imported in {imported:.2f} s): run "
            f"{first_run:.2f} s, report {first_report:.2f} s (figures {figure_s[-1]:.2f} s) CPU"
        )
        runs, reports, figs, ratios = [], [], [], []
        for i in range(args.repeats):
            result, r = simulate()
            w = report(result, Path(tmp) / f"r{i}")
            runs.append(r)
            reports.append(w)
            figs.append(figure_s[-1])
            ratios.append(w / r)
            print(
                f"  pair {i + 1}: run {r:.2f} s, report {w:.2f} s (figures {figure_s[-1]:.2f} s), "
                f"report/run {w / r:.2f}"
            )
    print(f"run() CPU:      {spread(runs)} s")
    print(f"report CPU:     {spread(reports)} s, of which figures {spread(figs)} s")
    print(f"report / run:   {spread(ratios)} (median, min–max over {args.repeats} pairs)")
    imports = matplotlib_import_s()
    print(
        f"matplotlib import in a fresh process (paid once per process, or once per warm "
        f"worker): {spread(imports)} s CPU"
    )
    print(machine_line())


if __name__ == "__main__":
    main()
