"""Instructions per replication: a cost measure that does not move with the machine's load.

CPU times on a shared 2-core host vary by ±25 % from run to run (benchmarks/RESULTS.md), which
hides changes of a few percent. The number of instructions a replication executes does not:
this runs the reference scenario's replications of one release class under valgrind's
callgrind (garbage collector off) for 1 and for N replications, and prints the difference per
replication, for this checkout and, with ``--against``, another one (e.g. a ``git worktree`` of
an older commit), side by side.

Run:  .venv/bin/python benchmarks/bench_instructions.py [--classes 0,2] [--replications 31]
          [--against /tmp/old-checkout]   (default: classes 0,1,2, 31 replications)
Needs ``valgrind`` (Debian: apt-get install valgrind); about a minute per class and tree.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = """
import gc, sys
gc.disable()
from sim import load_scenario
from sim.runs import runner
loaded = load_scenario(sys.argv[1])
name, policy = next(iter(loaded.policies.items()))
spec, world, seed = policy.to_dict(), loaded.world.to_dict(), loaded.scenario.seed
c, n = int(sys.argv[2]), int(sys.argv[3])
for a in range(0, n, 50):
    runner.run_chunk(world, seed, spec, name, c, a, min(a + 50, n))
"""


def instructions(tree: Path, release_class: int, n: int) -> int:
    """Instructions callgrind counts for a process that runs ``n`` replications from ``tree``."""
    # one BLAS thread: a pool's threads spin for a varying while (±0.7 M instructions a run)
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PYTHONHASHSEED": "0",
        "OPENBLAS_NUM_THREADS": "1",
    }
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    cmd += ["-c", _CHILD, str(HERE / "reference.yaml"), str(release_class), str(n)]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-300:]}")
    return int(found.group(1))


def per_replication(tree: Path, release_class: int, n: int) -> float:
    """Millions of instructions per replication: (count for n − count for 1) / (n − 1)."""
    return (instructions(tree, release_class, n) - instructions(tree, release_class, 1)) / (
        (n - 1) * 1e6
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", default="0,1,2", help="release classes (0 good, ...)")
    parser.add_argument("--replications", type=int, default=31, help="fewer: noisier")
    parser.add_argument("--against", type=Path, help="another checkout, measured alongside")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = {"this": HERE.parent}
    if args.against is not None:
        trees["against"] = args.against.resolve()
    print(f"M instructions per replication, reference scenario, N = {args.replications}")
    print("| class | " + " | ".join(trees) + (" | this / against |" if len(trees) > 1 else " |"))
    print("|---" * (len(trees) + 1 + (len(trees) > 1)) + "|")
    for c in (int(x) for x in args.classes.split(",")):
        values = [per_replication(tree, c, args.replications) for tree in trees.values()]
        cells = [f"{v:.2f}" for v in values]
        if len(values) > 1:
            cells.append(f"{values[0] / values[1]:.3f}")
        print(f"| {c} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
