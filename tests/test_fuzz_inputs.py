"""Fuzz the command line with broken inputs (#13): mutations of the shipped scenarios,
policies and manifests, and of command lines, each run through ``rolloutsim validate``,
``explain`` or ``import`` in-process.

Every input must end in success (exit 0) or a refusal: exit 2 with one stderr line per
problem (the first an error line, each further one naming the file it is about) and no
traceback (argparse's own usage error, exit 2, is a class of its own). Each one runs under a
per-example deadline (``DEADLINE`` seconds, a SIGALRM that interrupts it), so a hang
is a counted failure, not a stuck suite. The inputs come from a seeded generator: the same
cases on every run and machine. A second, slow-marked test runs a sample in subprocesses
with a timeout and reads each one's peak memory.

Counts by class are printed (``pytest -s``); ``python tests/test_fuzz_inputs.py`` prints them
with the first failures of each class.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.base import MAX_DEPTH, load_yaml
from rolloutsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
POLICIES = sorted((ROOT / "scenarios" / "policies").glob("*.yaml"))
MANIFESTS = sorted((ROOT / "tests" / "manifests").glob("*/*.yaml"))
SEED = 13
CASES = 360
DEADLINE = 20.0  # seconds per input: far above the slowest seen (about 1 s), far below a hang
MEMORY_MB = 600  # peak resident memory of one input, subprocess sample
MAX_LINE = 1000  # characters of the one error line (a quoted input must be cut short)

_ODD_VALUES: list[Any] = [
    None,
    True,
    "x",
    0,
    -1,
    -3,
    1.5,
    [],
    {},
    [1, 2],
    {"a": 1},
    1e300,
    -1e300,
    10**30,
    10**15,
    1e15,
    float("nan"),
    float("inf"),
    float("-inf"),
    "５m",
    "1ms",
    "0s",
    "名前",
    "\u202eevil",
    "a\nb",
    "$\\frac{1}{2}$",
    "<script>alert(1)</script>",
    "../../../x",
    "/abs/path",
    ".",
    "..",
    "x" * 300,
    "(" * 300,
    "^(a+)+$",
    "(unclosed",
    "1,2,3",
    {"min": "high"},
    "100%",
    "250%",
    "-5%",
]


@dataclass
class Case:
    """One input: a command line and the files it reads (written to a temporary folder)."""

    name: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)


# ------------------------------------------------------------------ mutations


def _paths(node: Any, here: tuple = (), seen: set[int] | None = None) -> Iterator[tuple]:
    """Paths into plain data, each shared object walked once and not below depth 30 (earlier
    mutations may have nested it 2,000 deep or shared it a billion times)."""
    seen = set() if seen is None else seen
    yield here
    if id(node) in seen or len(here) > 30:
        return
    seen.add(id(node))
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*here, key), seen)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*here, i), seen)


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def _mutate_data(rng: random.Random, data: Any) -> Any:
    paths = [p for p in _paths(data) if p]
    if not paths:
        return rng.choice(_ODD_VALUES)
    path = rng.choice(paths)
    parent, key = _get(data, path[:-1]), path[-1]
    action = rng.choice(["delete", "odd", "odd", "number", "deep", "alias", "laughs", "dup"])
    value = parent[key]
    if action == "delete":
        del parent[key]
    elif action == "odd":
        parent[key] = rng.choice(_ODD_VALUES)
    elif action == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            parent[key] = rng.choice([-value, value * 10**12, value / 1e9, math.nan, 2**70])
        else:
            parent[key] = rng.choice([1e15, -1, 0, 10**25])
    elif action == "deep":
        depth = rng.choice([5, MAX_DEPTH + 5, 2000])
        for _ in range(depth):
            value = [value]
        parent[key] = value
    elif action == "alias":  # the same object twice: the dumper writes &anchor and *alias
        other = rng.choice(paths)
        with contextlib.suppress(KeyError, IndexError, TypeError):
            _get(data, other[:-1])[other[-1]] = value
    elif action == "laughs":
        level: Any = ["lol"] * 9
        for _ in range(rng.choice([3, 6, 9])):
            level = [level] * 9
        parent[key] = level
    elif action == "dup" and isinstance(parent, list):
        parent.extend([value] * rng.choice([2, 1000]))
    return data


def _dump(rng: random.Random, docs: list[Any]) -> str:
    try:
        return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=rng.random() < 0.5)
    except RecursionError:  # a mutation nested deeper than the dumper recurses
        return "a: " + "[" * 5000 + "]" * 5000 + "\n"


def _mutate_text(rng: random.Random, text: str) -> bytes:
    raw = text.encode("utf-8")
    action = rng.choice(["truncate", "bytes", "utf16", "line", "char", "bigint", "tab"])
    at = rng.randrange(max(1, len(raw)))
    if action == "truncate":
        return raw[:at]
    if action == "bytes":
        return raw[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))) + raw[at:]
    if action == "utf16":
        return text.encode(rng.choice(["utf-16", "utf-32", "utf-16-le"]))
    lines = text.splitlines(keepends=True) or [""]
    i = rng.randrange(len(lines))
    if action == "line":
        lines.insert(i, lines[i] * rng.choice([2, 50]))
    elif action == "char":
        line = lines[i]
        j = rng.randrange(len(line) + 1)
        lines[i] = line[:j] + rng.choice(":-[]{}&*!|>'\"%@`#") + line[j:]
    elif action == "bigint":
        lines.insert(i, rng.choice(["seed: ", "replicas: ", "x: "]) + "9" * 5000 + "\n")
    else:
        lines[i] = "\t" + lines[i]
    return "".join(lines).encode("utf-8")


def _mutated_file(rng: random.Random, source: Path) -> bytes:
    text = source.read_text(encoding="utf-8")
    if rng.random() < 0.3:
        return _mutate_text(rng, text)
    docs = load_yaml(text, multi=True)
    for _ in range(rng.choice([1, 1, 2, 3])):
        if docs:
            i = rng.randrange(len(docs))
            docs[i] = _mutate_data(rng, docs[i])
    return _dump(rng, docs).encode("utf-8")


_BAD_N = ["-3", "0", "1", "1000000", "1000000000000000", "1e15", "x", "--json"]
_BAD_MAP = ["x", "=", "a=b", "m=errorRate:canary", "m=latency:canary:1.5", "m=nope:x:y:z:w"]


def generate(seed: int = SEED, count: int = CASES) -> list[Case]:
    """``count`` inputs, the same for the same seed."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for i in range(count):
        kind = rng.choice(["scenario", "scenario", "policy", "policy", "manifest", "cli"])
        if kind == "scenario":
            source = rng.choice(SCENARIOS)
            name = f"s{i}.yaml"
            cases.append(Case(f"{i}:{source.name}", ["validate", name], {name: b""}))
        elif kind == "policy":
            source = rng.choice(POLICIES)
            name = f"p{i}.yaml"
            command = rng.choice([["validate", name], ["explain", name], ["explain", name, "-n"]])
            if command[-1] == "-n":
                command.append(rng.choice(["3", "7", "100"]))
            cases.append(Case(f"{i}:{source.name}", command, {name: b""}))
        elif kind == "manifest":
            source = rng.choice(MANIFESTS)
            name = f"m{i}.yaml"
            command = ["import", name] + (
                ["--map", rng.choice(_BAD_MAP)] if rng.random() < 0.2 else []
            )
            cases.append(Case(f"{i}:{source.parent.name}/{source.name}", command, {name: b""}))
        else:
            source = rng.choice(POLICIES + MANIFESTS)
            argv = _cli_case(rng, source)
            cases.append(Case(f"{i}:cli {source.name}", argv))
            continue
        cases[-1].files = {name: _mutated_file(rng, source)}
    return cases


def _cli_case(rng: random.Random, source: Path) -> list[str]:
    """An unmutated file under a broken command line."""
    path = str(source)
    if source in MANIFESTS:
        return ["import", path, *rng.choice([["--map", rng.choice(_BAD_MAP)], ["-v"], [path]])]
    return rng.choice(
        [
            ["explain", path, "-n", rng.choice(_BAD_N)],
            ["explain", path, "--replicas", rng.choice(_BAD_N)],
            ["validate", path, rng.choice(["missing.yaml", path, "-"])],
            ["explain", rng.choice(["", ".", "nope.yaml", path + "x"])],
        ]
    )


# ------------------------------------------------------------------ running


class Deadline(BaseException):
    """Raised by SIGALRM inside a case that ran past ``DEADLINE`` (BaseException: code that
    catches Exception cannot swallow it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise Deadline


def classify(case: Case, folder: Path) -> tuple[str, str]:
    """Run one case in-process: (class, detail), class one of ok, refused, usage, traceback,
    multi-line, long-line, deadline, exit-N."""
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, DEADLINE)
    try:
        os.chdir(folder)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(case.argv)
    except Deadline:
        return "deadline", f"{' '.join(case.argv)}: over {DEADLINE:g} s"
    except SystemExit as exc:  # argparse: usage lines, then "prog: error: ..."
        lines = err.getvalue().strip().splitlines()
        ok = exc.code == 2 and lines and "error:" in lines[-1] and "Traceback" not in err.getvalue()
        return ("usage" if ok else f"exit-{exc.code}"), (lines[-1] if lines else "")
    except Exception as exc:  # a traceback is exactly what is being counted
        return "traceback", _where(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
    lines = err.getvalue().splitlines()
    if code == 0:
        return "ok", ""
    if code == 2 and _problem_lines(lines, case) and "Traceback" not in err.getvalue():
        long = any(len(line) > MAX_LINE for line in lines)
        return ("long-line" if long else "refused"), lines[0][:300]
    if code == 2:
        return "multi-line", " | ".join(lines)[:300]
    return f"exit-{code}", " | ".join(lines)[:300]


def _problem_lines(lines: list[str], case: Case) -> bool:
    """One refusal: an error line, then one line per further problem of the same input, each
    naming the file it is about (``file: field: rule``)."""
    if not lines or not lines[0].startswith("rolloutsim: error: "):
        return False
    named = tuple(f"{name}: " for name in case.files)
    return all(line.removeprefix("rolloutsim: error: ").startswith(named) for line in lines[1:])


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}")
        tb = tb.tb_next
    return f"{type(exc).__name__}: {str(exc)[:160]} at {' < '.join(reversed(frames[-3:]))}"


def run_all(cases: list[Case]) -> tuple[Counter, dict[str, list[str]]]:
    counts: Counter = Counter()
    examples: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            kind, detail = classify(case, Path(tmp))
            counts[kind] += 1
            examples.setdefault(kind, []).append(f"{case.name} [{' '.join(case.argv)}] {detail}")
    return counts, examples


GOOD = {"ok", "refused", "usage"}


@functools.cache
def _all_cases() -> list[Case]:
    return generate()


def test_generated_inputs_exit_0_or_2_with_one_line(capsys) -> None:
    cases = _all_cases()
    assert len(cases) == CASES
    counts, examples = run_all(cases)
    with capsys.disabled():
        print(f"\nfuzz: {sum(counts.values())} inputs: {dict(sorted(counts.items()))}")
    assert counts["refused"] > CASES // 3  # the mutations do break things
    bad = [e for kind in sorted(set(counts) - GOOD) for e in examples[kind][:5]]
    assert not bad, "\n".join(bad)


def test_the_generator_is_deterministic() -> None:
    first, every = generate(count=40), _all_cases()
    assert [(c.argv, c.files) for c in first] == [(c.argv, c.files) for c in every[:40]]
    assert len({c.name.split(":")[1] for c in every}) > 40  # many sources, not a few


_CHILD = """
import resource, sys
from rolloutsim.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"peak-mb {peak}", file=sys.stdout)
sys.exit(code)
"""


@pytest.mark.slow
def test_a_sample_in_subprocesses_is_bounded_in_time_and_memory(tmp_path) -> None:
    cases = _all_cases()[::12]  # 30 inputs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    problems = []
    for case in cases:
        for name, data in case.files.items():
            (tmp_path / name).write_bytes(data)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, *case.argv],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env=env,
                timeout=20 * DEADLINE,
            )
        except subprocess.TimeoutExpired:
            problems.append(f"{case.name} [{' '.join(case.argv)}] ran past {20 * DEADLINE:g} s")
            continue
        peak = int(proc.stdout.rsplit("peak-mb ", 1)[-1])
        if peak >= MEMORY_MB:
            problems.append(f"{case.name} [{' '.join(case.argv)}]: {peak} MB")
        if "Traceback" in proc.stderr:
            problems.append(f"{case.name} [{' '.join(case.argv)}]: {proc.stderr.splitlines()[-1]}")
    assert not problems, "\n".join(problems)


if __name__ == "__main__":  # the counts and the first failures of each class
    totals, found = run_all(generate())
    print(f"{sum(totals.values())} inputs: {dict(sorted(totals.items()))}")
    for kind in sorted(set(totals) - GOOD):
        print(f"\n{kind}:")
        for line in found[kind][:20]:
            print("  " + line)
