"""Every fenced block of README.md runs, and the numbers the README quotes are the code's.

Each ``bash`` block's command lines and each ``python`` block (as a script, in a subprocess) run
from a scratch folder holding a copy of ``scenarios/``, so nothing is written into the checkout.
The suite runs inside the environment the README's set-up commands create: those two lines run
without their ``python3 -m venv`` and ``pip install`` parts. Every other change to what the
README says — a smaller size, a command left out — is in ``CHANGED``, with its reason. A
command exits 0, or the code its comment gives (``# exits 1: ...``). A ``text`` block starting
with ``$ command`` is that command's output: it is run at the README's size and compared,
strictly on numbers. A block this file does not know fails the test: a new README block needs a
line here. Commands that need HAProxy and Prometheus run only when both are installed, as in
tests/test_live_bench.py.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from readme_claims import (
    check_calibration,
    check_compare,
    check_explain_fixed,
    check_explain_shipped,
    check_hold,
    check_seed_practice_row,
    check_sensitivity,
    check_tune,
    readme_sentence,
)

from live.bench import binaries_missing

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
TIMEOUT = 600
WORKERS = ["-j", "2"]  # two cores: what every simulating command below is given

# THE table of changes: README command (as shlex reads it, comment dropped) -> what runs
# instead (None: nothing), why, and edits made to the scratch copy of scenarios/ before it runs.
SMALL_TUNE = {
    "scenarios/tune-canary.yaml": [
        ("steps: [1, 2, 3]", "steps: [1, 2]"),
        ("pause: [5m, 10m]", "pause: [5m]"),
        ("gate: [threshold, sprt, msprt]", "gate: [threshold]"),
        ("  confidence: 0.95", "  maxObservations: 40\n  firstStage: 10\n  confidence: 0.95"),
    ]
}
TUNE_WHY = (
    "the shipped tune (41 candidates, up to 2,560 observations each) takes 80 s on two idle "
    "cores and several minutes on a busy machine; 9 threshold candidates and at most 40 "
    "observations run the same command in ~20 s"
)
CHANGED: dict[str, tuple[str | None, str, dict[str, list[tuple[str, str]]]]] = {
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/rolloutsim run "
    "scenarios/seed-practice.yaml": (
        "rolloutsim run scenarios/seed-practice.yaml --replications 10",
        "the suite runs in the installed environment (no venv, no pip); at its full size the "
        "run is the `$ rolloutsim run scenarios/seed-practice.yaml` excerpt, compared there",
        {},
    ),
    "python3 -m venv .venv && .venv/bin/pip install -e .[dev] && .venv/bin/python -m pytest "
    "-n auto": (
        None,
        "the suite itself, which cannot run inside itself (CI runs it: .ci/run)",
        {},
    ),
    "rolloutsim tune scenarios/tune-canary.yaml": (
        "rolloutsim tune scenarios/tune-canary.yaml",
        TUNE_WHY,
        SMALL_TUNE,
    ),
    "rolloutsim tune scenarios/tune-canary.yaml --exportable-to argo -o reports/tune-canary-argo": (
        "rolloutsim tune scenarios/tune-canary.yaml --exportable-to argo -o "
        "reports/tune-canary-argo",
        TUNE_WHY,
        SMALL_TUNE,
    ),
    "rolloutsim sweep scenarios/seed-practice.yaml --param "
    "world.releases[1].fault.errorRate=0.002,0.01,0.05": (
        "rolloutsim sweep scenarios/seed-practice.yaml --param "
        "world.releases[1].fault.errorRate=0.002,0.01,0.05 --replications 10",
        "three cells of the seed practice at 10 replications: the same command and report in "
        "~15 s; tests/test_sweep_report.py checks what its verdict says",
        {},
    ),
    "rolloutsim sensitivity scenarios/seed-practice.yaml": (
        "rolloutsim sensitivity scenarios/seed-practice.yaml --replications 10",
        "15 runs of the seed practice at 10 replications instead of 100 (~2.5 min at full size); "
        "the README's claim about its result is checked in test_the_sensitivity_claim",
        {},
    ),
    "python:replications=100": (
        "replications=10",
        "the Python block's run at a tenth of its size: the same calls, half a minute less",
        {},
    ),
    "apt-get install -y --no-install-recommends haproxy prometheus": (
        None,
        "installs system packages (as root); the commands after it run when both are installed",
        {},
    ),
    "rolloutsim calibrate scenarios/live-bench.yaml --out calibration/": (
        "rolloutsim calibrate scenarios/live-bench.yaml --out calibration/ "
        "--only threshold:bad-8pct --replications 20",
        "one case of six (each a live run of ~25 s on the bench), 20 simulated replications",
        {},
    ),
    "rolloutsim hold scenarios/live-bench.yaml --case sprt:bad-4pct --seconds 600 --out hold/": (
        "rolloutsim hold scenarios/live-bench.yaml --case sprt:bad-4pct --seconds 6 --out hold/",
        "two holds of 6 s instead of 600 s (~25 s with the bench's start); the full experiment's "
        "results are in benchmarks/CALIBRATION.md",
        {},
    ),
}
# Commands for the user's own HAProxy and Prometheus: with none there they must fail safely,
# with the README's exit codes (3 router failure: the admin socket is unreachable; 2 bad input:
# no executor runs on that state folder). Never run where a real HAProxy socket exists.
OWN_ROUTER = {
    "rolloutsim live scenarios/policies/canary-nginx.yaml --haproxy-socket": 3,
    "rolloutsim live promote --state": 2,
    "rolloutsim live abort --state": 2,
}
OWN_SOCKET = Path("/run/haproxy/admin.sock")
# Commands whose exit code is their statistical verdict (README: calibrate exits 1 when the share
# of live values inside the predicted intervals is not consistent with 95 %): one live run of
# one case can land outside by chance, so either verdict passes; its report must be written.
VERDICT_CODES = {"rolloutsim calibrate": (0, 1)}
NEED_BENCH = (
    "rolloutsim live scenarios/policies/canary-nginx.yaml --bench",
    "rolloutsim calibrate",
    "rolloutsim hold",
)


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int

    @property
    def first(self) -> str:
        return self.text.splitlines()[0] if self.text else ""


def readme_blocks() -> list[Block]:
    """The fenced blocks, in order, with their language and first line."""
    found, lang, body, start = [], None, [], 0
    for n, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if lang is None and line.startswith("```"):
            lang, body, start = line[3:].strip(), [], n
        elif lang is not None and line.strip() == "```":
            found.append(Block(lang, "\n".join(body), start))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"README.md:{start}: a fence is never closed"
    return found


def command_lines(text: str) -> list[str]:
    """Shell lines with their ``\\`` continuations joined."""
    lines, pending = [], ""
    for raw in text.splitlines():
        pending += raw.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            lines.append(pending.strip())
        pending = ""
    return lines


def key(line: str) -> str:
    return " ".join(shlex.split(line, comments=True))


def scratch(tmp_path: Path) -> Path:
    """A working folder with the scenarios the README names."""
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    return tmp_path


def edit(folder: Path, edits: dict[str, list[tuple[str, str]]]) -> None:
    for name, replacements in edits.items():
        path = folder / name
        text = path.read_text(encoding="utf-8")
        for old, new in replacements:
            if new in text:  # an earlier command of the block made it
                continue
            assert old in text, f"{name}: {old!r} is gone: update CHANGED"
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")


def execute(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    program = {"rolloutsim": str(BIN / "rolloutsim"), ".venv/bin/python": sys.executable}
    assert argv[0] in program, f"{argv[0]}: a program this test does not know how to run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [program[argv[0]], *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def with_workers(argv: list[str]) -> list[str]:
    simulating = (
        len(argv) > 1
        and argv[0] == "rolloutsim"
        and argv[1] in ("run", "tune", "sweep", "sensitivity")
    )
    return argv + WORKERS if simulating and "-j" not in argv else argv


def run_bash(block: Block, tmp_path: Path) -> None:
    cwd = scratch(tmp_path)
    lines = command_lines(block.text)
    if any(key(line).startswith(NEED_BENCH) for line in lines) and binaries_missing():
        pytest.skip(f"{' and '.join(binaries_missing())} not installed")
    if any(key(line).startswith(tuple(OWN_ROUTER)) for line in lines) and OWN_SOCKET.exists():
        pytest.skip(f"{OWN_SOCKET} exists: a real HAProxy this test must not touch")
    for line in lines:
        argv_text = key(line)
        if argv_text in CHANGED:
            instead, _why, edits = CHANGED[argv_text]
            if instead is None:
                continue
            argv_text = instead
            edit(tmp_path, edits)
        argv = shlex.split(argv_text)
        if argv[0] == "cd":
            cwd = cwd / argv[1]
            continue
        expected = re.search(r"#.*\bexits (\d+)", line)
        done = execute(with_workers(argv), cwd)
        code = int(expected.group(1)) if expected else 0
        code = next((c for k, c in OWN_ROUTER.items() if argv_text.startswith(k)), code)
        codes = next((c for k, c in VERDICT_CODES.items() if argv_text.startswith(k)), (code,))
        assert done.returncode in codes, f"README.md:{block.line}: {line}\n{done.stderr[-2000:]}"
        check = AFTER.get(key(line))
        if check:
            check(cwd, done.stdout)


def run_python(block: Block, tmp_path: Path) -> None:
    cwd = scratch(tmp_path)
    source = block.text
    for what, (instead, _why, _edits) in CHANGED.items():
        if what.startswith("python:") and instead is not None:
            source = source.replace(what[7:], instead)
    ast.parse(source)
    script = cwd / "readme_block.py"
    script.write_text(source, encoding="utf-8")
    done = execute([".venv/bin/python", str(script)], cwd)  # this environment's python
    assert done.returncode == 0, f"README.md:{block.line}: {done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
    if "RolloutController" in source:  # the comments' actions are the ones printed
        started, handled = done.stdout.splitlines()[:2]
        assert "Scale(group='canary', replicas=1)" in started
        assert "SetWeight(weight=5.0)" in handled


NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?")


def numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def run_excerpt(block: Block, tmp_path: Path) -> None:
    """``$ command`` then its output: the command runs at the README's size; every number of
    the excerpt is in the output, in the same order, and every line of a table is there."""
    cwd = scratch(tmp_path)
    command, *shown = block.text.splitlines()
    argv = shlex.split(command.removeprefix("$ "))
    done = execute(with_workers(argv), cwd)
    output = done.stdout + done.stderr
    if shown and shown[0].startswith("rolloutsim: error:"):
        assert done.returncode == 2, output
        expected = shown[0].split("...")[0].rstrip(" :")
        assert "Traceback" not in output and numbers(output)[: len(numbers(expected))] == numbers(
            expected
        )
        assert expected.split(": ")[2] in output  # the field named (wording may change)
        return
    assert done.returncode == 0, output[-2000:]
    quoted = [line[2:] if line.startswith("> ") else line for line in shown if line.startswith(">")]
    if quoted:  # a verdict: its numbers, in order, as the run prints them
        said = numbers(" ".join(line.rstrip(".") for line in quoted))
        printed = [line for line in done.stdout.splitlines() if line.startswith(">")]
        assert numbers(" ".join(printed))[: len(said)] == said
        report = next(line for line in shown if line.startswith("report: "))
        assert report in done.stdout and (cwd / report.split(": ")[1]).is_file()
        AFTER_EXCERPT.get(key(command[2:]), lambda *_: None)(cwd, done.stdout)
        return
    squash = lambda s: " ".join(s.split())  # noqa: E731
    lines = {squash(line) for line in output.splitlines()}
    for line in shown:
        if line.strip():
            assert squash(line) in lines, f"README.md:{block.line}: not printed: {line}"


def check_error_example(block: Block, tmp_path: Path) -> None:
    """The error line is what ``validate`` says of a scenario with that mistake."""
    (tmp_path / "seed.yaml").write_text(
        "name: seed\nworld:\n  horizon: 1h\n  traffic: {rate: 10}\n  users: {count: 100}\n"
        "  releases: [{name: good, probability: 1}]\npolicies:\n  - kind: Canary\n    name: c\n"
        "    steps: [{setWeight: 20}, {pause: {duration: 10m}}, {setWeight: 50},"
        " {pause: {duration: 10x}}]\n",
        encoding="utf-8",
    )
    done = execute(["rolloutsim", "validate", "seed.yaml"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == block.text.strip()


def check_scenario_example(block: Block, tmp_path: Path) -> None:
    """The scenario example validates, beside the files it names."""
    cwd = scratch(tmp_path)
    for name in ("rollout.yaml", "templates.yaml"):
        shutil.copy(ROOT / "scenarios" / "examples" / name, cwd / "scenarios" / name)
    (cwd / "scenarios" / "my-service.yaml").write_text(block.text, encoding="utf-8")
    done = execute(["rolloutsim", "validate", "scenarios/my-service.yaml"], cwd)
    assert done.returncode == 0, done.stderr


def check_haproxy_config(block: Block, tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy not installed")
    config = tmp_path / "haproxy.cfg"
    config.write_text(block.text + "\n", encoding="utf-8")
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def check_layout(block: Block, tmp_path: Path) -> None:
    """Every folder the layout names exists, under the top-level folder it is listed in."""
    parent = ROOT
    for line in block.text.splitlines():
        match = re.match(r"( *)([\w.-]+)/ ", line + " ")
        if match is None:
            continue
        where = ROOT if not match.group(1) else parent
        assert (where / match.group(2)).is_dir(), line
        if not match.group(1):
            parent = ROOT / match.group(2)


# after a command of a bash block: checks of README prose against its output
AFTER: dict[str, Callable[[Path, str], None]] = {
    "rolloutsim explain checkout.yaml": check_explain_shipped,
    "rolloutsim explain fixed.yaml": check_explain_fixed,
    "rolloutsim tune scenarios/tune-canary.yaml": check_tune,
    "rolloutsim run compare.yaml -o compare-report/": check_compare,
    "rolloutsim sensitivity scenarios/seed-practice.yaml": check_sensitivity,
    "rolloutsim calibrate scenarios/live-bench.yaml --out calibration/": check_calibration,
    "rolloutsim hold scenarios/live-bench.yaml --case sprt:bad-4pct --seconds 600 --out hold/": (
        check_hold
    ),
}
AFTER_EXCERPT: dict[str, Callable[[Path, str], None]] = {
    "rolloutsim run scenarios/seed-practice.yaml": check_seed_practice_row,
}

# every block of README.md by its language and first line; bash and python run whatever
# their lines are, the others need a line here
KNOWN: dict[tuple[str, str], Callable[[Block, Path], None]] = {
    ("text", "$ rolloutsim run scenarios/seed-practice.yaml"): run_excerpt,
    ("text", "$ rolloutsim explain scenarios/policies/canary-basic.yaml --replicas 3"): run_excerpt,
    ("text", "$ rolloutsim export scenarios/policies/canary-sprt.yaml --to argo"): run_excerpt,
    (
        "text",
        'rolloutsim: error: seed.yaml: policies[0].steps[3].pause.duration: "10x" is not a '
        'duration (use seconds or e.g. "30s", "10m", "1h", "2d")',
    ): check_error_example,
    ("yaml", "name: my-service"): check_scenario_example,
    ("", "global"): check_haproxy_config,
    (
        "",
        "policies/             WHAT a release does. Pure: no simpy, no randomness, no clock.",
    ): check_layout,
}


def handler(block: Block) -> Callable[[Block, Path], None]:
    if block.lang == "bash":
        return run_bash
    if block.lang == "python":
        return run_python
    found = KNOWN.get((block.lang, block.first))
    assert found, (
        f"README.md:{block.line}: a ```{block.lang} block this test does not know "
        f"({block.first!r}): give it a line in KNOWN"
    )
    return found


BLOCKS = readme_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}-{b.lang or 'plain'}" for b in BLOCKS])
def test_readme_block_runs(block: Block, tmp_path: Path) -> None:
    handler(block)(block, tmp_path)


def test_every_known_block_and_change_is_in_the_readme() -> None:
    """No stale line here: each KNOWN block, CHANGED command and check is still in README.md."""
    present = {(b.lang, b.first) for b in BLOCKS}
    assert set(KNOWN) <= present, set(KNOWN) - present
    lines = {key(line) for b in BLOCKS if b.lang == "bash" for line in command_lines(b.text)}
    python = "\n".join(b.text for b in BLOCKS if b.lang == "python")
    for what in CHANGED:
        assert (what[7:] in python) if what.startswith("python:") else (what in lines), what
    for what in (*AFTER, *OWN_ROUTER):
        assert any(line.startswith(what) for line in lines), what
    assert {key(b.first[2:]) for b in BLOCKS if b.first.startswith("$ ")} >= set(AFTER_EXCERPT)


HYPOTHESIS_TESTS = sorted(
    path.stem
    for path in (ROOT / "tests").glob("test_*.py")
    if "hypothesis" in path.read_text(encoding="utf-8")
)


def test_the_determinism_the_readme_states() -> None:
    """'property tests (hypothesis) run derandomised, with no example database, under the
    default profile of tests/conftest.py, which no test overrides'."""
    readme_sentence(r"property tests \(hypothesis\) run derandomised, with no example database")
    if os.environ.get("HYPOTHESIS_PROFILE", "deterministic") != "deterministic":
        pytest.skip("another hypothesis profile was asked for")
    from hypothesis import settings

    assert settings.default.derandomize and settings.default.database is None
    checked = 0
    for name in HYPOTHESIS_TESTS:
        module = importlib.import_module(name)
        for attr in vars(module).values():
            chosen = getattr(attr, "_hypothesis_internal_use_settings", None)
            if chosen is not None:
                checked += 1
                assert chosen.derandomize and chosen.database is None, f"{name}.{attr.__name__}"
            assert not getattr(attr, "_hypothesis_internal_use_seed", None), name
    assert checked >= 20
