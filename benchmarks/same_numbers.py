"""Whether an engine change kept every number: the outcome records of every shipped scenario.

Speed work that claims "bit-identical" (benchmarks/RESULTS.md) is checked with this: it runs
the first N replications of every release class under every policy of every scenario in
``scenarios/`` (the live bench's excepted) and of ``benchmarks/reference.yaml``, through the
runner's own worker entry point, and saves the records; against a saved file it names the first
field that differs in each (scenario, policy, class) cell.

Run:  .venv/bin/python benchmarks/same_numbers.py --save /tmp/before.pkl      (old checkout)
      .venv/bin/python benchmarks/same_numbers.py --against /tmp/before.pkl  (new checkout)
Run it from the checkout to measure (its code is imported first). 40 replications: ~15 s.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
from pathlib import Path


def scenario_files(root: Path) -> list[Path]:
    files = sorted(p for p in (root / "scenarios").glob("*.yaml") if p.name != "live-bench.yaml")
    return [*files, root / "benchmarks" / "reference.yaml"]


def records(root: Path, n: int) -> dict[tuple[str, str, int], list[dict]]:
    """(scenario file, policy, class index) -> the first n replications' records."""
    sys.path.insert(0, str(root))  # the checkout's code, before any installed copy
    from sim import load_scenario
    from sim.runs import runner

    out = {}
    for path in scenario_files(root):
        loaded = load_scenario(path)
        world, seed = loaded.world.to_dict(), loaded.scenario.seed
        for name, policy in loaded.policies.items():
            for c in range(len(loaded.world.releases)):
                key = (path.name, name, c)
                out[key] = runner.run_chunk(world, seed, policy.to_dict(), name, c, 0, n)
    return out


def _same(a, b) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def differences(before: dict, now: dict) -> list[str]:
    """One line per cell whose records differ (its first differing replication and fields)."""
    lines = []
    for key, old in before.items():
        new = now.get(key)
        if new is None:
            lines.append(f"{key}: missing")
            continue
        for r0, r1 in zip(old, new, strict=False):
            fields = [f for f in r0 if not _same(r0[f], r1.get(f))]
            if fields:
                shown = {f: (r0[f], r1.get(f)) for f in fields[:3]}
                lines.append(f"{key} replication {r0['replication']}: {shown}")
                break
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=40, help="per cell")
    parser.add_argument("--save", type=Path, help="write the records here")
    parser.add_argument("--against", type=Path, help="compare with records saved earlier")
    args = parser.parse_args(argv)
    now = records(Path(os.getcwd()), args.replications)
    print(f"{len(now)} cells of {args.replications} replications")
    if args.save is not None:
        args.save.write_bytes(pickle.dumps(now))
    if args.against is not None:
        found = differences(pickle.loads(args.against.read_bytes()), now)
        print("\n".join(found) if found else "identical: every field of every record")
        sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
