"""Issue #16, long jobs: progress lines where no bar can be drawn (a pipe, a log), the exact
command that continues an interrupted run, and an earlier output folder refused until --resume
(nothing finished is redone, a finished run simulates nothing) or --overwrite says what to do."""

from __future__ import annotations

import io
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_run import TUNE  # the small tune scenario, one copy

import sim.runs.options
import sim.runs.runner
from rolloutsim.cli import main, resume_command
from sim.runs.options import ProgressLines

ROOT = Path(__file__).resolve().parents[1]
SEED_PRACTICE = ROOT / "scenarios" / "seed-practice.yaml"
FAST = ["--backend", "inprocess"]
LINE = re.compile(
    r"rolloutsim: progress: (\d+)/80 replications \((\d+) %\), [\d,]+/s, about .+ left"
)


def small_scenario(tmp_path: Path) -> Path:
    """The seed practice shortened to an hour: the same question, seconds to run."""
    text = SEED_PRACTICE.read_text().replace("horizon: 6h", "horizon: 1h")
    text = text.replace("file: policies/", f"file: {ROOT / 'scenarios' / 'policies'}/")
    path = tmp_path / "seed.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def chunks(monkeypatch) -> list:
    """The chunks simulated (each call of the runner's worker function)."""
    calls: list = []
    real = sim.runs.runner.run_chunk

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(sim.runs.runner, "run_chunk", counting)
    return calls


# --------------------------------------------------------------------------- progress


def test_progress_is_lines_on_a_pipe_and_no_progress_silences_it(
    tmp_path, capsys, monkeypatch
) -> None:
    """Captured stderr is no terminal, as a pipe: a line per 25 % chunk (the time limit
    lifted), then the last; no bar, no escape codes; --no-progress prints none."""
    monkeypatch.setattr(sim.runs.options, "PROGRESS_SECONDS", 0.0)
    scenario = small_scenario(tmp_path)
    args = ["run", str(scenario), "--replications", "20", *FAST]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if "progress" in x]
    # 2 policies x 2 classes x 20: four chunks of 20 replications, 25 % each
    assert [LINE.fullmatch(x).groups() for x in lines[:-1]] == [  # type: ignore[union-attr]
        ("20", "25"),
        ("40", "50"),
        ("60", "75"),
    ], lines
    assert re.fullmatch(
        r"rolloutsim: progress: 80/80 replications \(100 %\) in [\d.]+ (s|min \d\d s), [\d,]+/s",
        lines[-1],
    )
    assert main([*args, "-o", str(tmp_path / "b"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "progress" not in err and "\x1b" not in err


def test_on_a_terminal_the_bar_stays(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sim.runs.runner, "live_bar", lambda: True)
    args = ["run", str(small_scenario(tmp_path)), "--replications", "4", *FAST]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "replications" in err and "rolloutsim: progress" not in err  # rich's bar, on stderr


def test_progress_lines_come_every_5_percent_at_most_every_5_seconds() -> None:
    now = [0.0]
    out = io.StringIO()
    lines = ProgressLines(1000, stream=out, clock=lambda: now[0])
    for _ in range(100):  # 10 replications each 0.5 s: 5 % every 2.5 s, a line every 5 s
        now[0] += 0.5
        lines.advance(10)
    lines.finish()
    text = out.getvalue().splitlines()
    assert len(text) == 10 and text[0] == (
        "rolloutsim: progress: 100/1,000 replications (10 %), 20/s, about 45 s left"
    )
    assert text[-1] == "rolloutsim: progress: 1,000/1,000 replications (100 %) in 50 s, 20/s"
    out.truncate(0), out.seek(0)
    ProgressLines(1000, 400, stream=out).finish()  # resumed, with nothing left to do
    assert out.getvalue().splitlines() == [
        "rolloutsim: progress: resuming: 400/1,000 replications were finished before",
        "rolloutsim: progress: 400/1,000 replications (40 %): all finished before",
    ]


# --------------------------------------------------------------------------- interrupted


def test_the_resume_command_is_the_same_command_with_resume() -> None:
    argv = ["run", "my scenario.yaml", "-o", "out dir", "--overwrite", "--seed", "3"]
    assert (
        resume_command(argv) == "rolloutsim run 'my scenario.yaml' -o 'out dir' --seed 3 --resume"
    )
    assert resume_command(["tune", "t.yaml", "--resume"]) == "rolloutsim tune t.yaml --resume"
    assert resume_command(["run", "--ov", "--", "-x.yaml"]) == "rolloutsim run --resume -- -x.yaml"


def _default_sigint() -> None:
    """A background job of a non-interactive shell (``cmd &``: a CI script, ``nohup``) ignores
    SIGINT, and so would the run: give it the default, as a terminal's Ctrl-C meets it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_prints_the_exact_command_that_continues_it(tmp_path, signum) -> None:
    scenario = small_scenario(tmp_path)
    out = tmp_path / "my report"  # a space: the command must quote it
    # 960 replications, ~4 s: the signal, sent once the first chunk is kept, finds it running
    argv = ["run", str(scenario), "-o", str(out), "--replications", "240", "--seed", "3"]
    argv += [*FAST, "--overwrite"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rolloutsim", *argv],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )
    chunks = tmp_path / "my report.checkpoint" / "chunks"
    deadline = time.monotonic() + 120
    while not (chunks.is_dir() and any(chunks.glob("*.parquet"))):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended first"
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 128 + signum, text
    how = "" if signum == signal.SIGINT else " (SIGTERM)"
    command = f"rolloutsim run {scenario} -o '{out}' --replications 240 --seed 3 {' '.join(FAST)}"
    assert text.splitlines()[-2:] == [
        f"rolloutsim: interrupted{how}; the finished work is kept beside {out}; continue it"
        " (nothing finished is redone) with:",
        f"  {command} --resume",
    ], text
    assert "Traceback" not in text
    if signum != signal.SIGINT:
        return  # the same command: running it once is enough
    words = shlex.split(text.splitlines()[-1])  # the command exactly as printed
    assert words[0] == "rolloutsim"
    done = subprocess.run(
        [sys.executable, "-m", "rolloutsim", *words[1:]], cwd=tmp_path, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    err_lines = done.stderr.decode().splitlines()
    finished = re.fullmatch(
        r"rolloutsim: progress: resuming: (\d+)/960 replications were finished before",
        err_lines[0],
    )
    assert finished and int(finished[1]) > 0, err_lines  # a pipe gets lines, too
    assert (out / "report.html").is_file()


# --------------------------------------------------------------------------- earlier outputs


def _refusal(capsys, folder: Path, what: str) -> None:
    err = capsys.readouterr().err
    assert err == (
        f"rolloutsim: error: {folder}: {what}: add --resume to continue it (nothing finished is"
        " redone) or --overwrite to start over\n"
    )


def test_an_earlier_report_is_refused_resumed_without_work_or_overwritten(
    tmp_path, capsys, chunks
) -> None:
    scenario = small_scenario(tmp_path)
    out = tmp_path / "report"
    args = ["run", str(scenario), "-o", str(out), "--replications", "4", *FAST, "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().out
    made = len(chunks)
    assert made == 4 and "is the safest" in first
    chunks.clear()

    assert main(args) == 2
    _refusal(capsys, out, "holds an earlier report")

    assert main([*args, "--resume"]) == 0  # finished: nothing simulated, the verdict again
    printed = capsys.readouterr()
    assert not chunks and printed.out == first
    assert f"rolloutsim: note: {out} holds this run finished: nothing to simulate" in printed.err

    assert main([*args, "--resume", "--seed", "5"]) == 2  # not this run: never replaced
    err = capsys.readouterr().err
    assert "holds a finished report of other inputs (seed differ)" in err and not chunks

    assert main([*args, "--overwrite", "--seed", "5"]) == 0
    assert len(chunks) == made and "**Seed**: 5" in (out / "report.md").read_text()


def test_an_interrupted_run_is_refused_until_resumed(tmp_path, capsys, monkeypatch) -> None:
    scenario = small_scenario(tmp_path)
    out = tmp_path / "report"
    args = ["run", str(scenario), "-o", str(out), "--replications", "4", *FAST, "--no-progress"]
    calls = []
    real = sim.runs.runner.run_chunk

    def stop_at_the_third(*a):
        calls.append(a)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(sim.runs.runner, "run_chunk", stop_at_the_third)
    assert main(args) == 130
    capsys.readouterr()
    assert main(args) == 2
    _refusal(capsys, out, "an interrupted run left its checkpoint beside it (report.checkpoint)")
    assert main([*args, "--resume"]) == 0
    assert len(calls) == 3 + 2  # the two finished chunks were not redone
    assert (out / "report.html").is_file()


def test_an_earlier_sweep_is_refused(tmp_path, capsys) -> None:
    scenario = small_scenario(tmp_path)
    out = tmp_path / "sw"
    args = ["sweep", str(scenario), "--param", "world.traffic.rate=100,400", "-o", str(out)]
    args += ["--replications", "4", *FAST, "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    _refusal(capsys, out, "holds an earlier sweep")
    assert main([*args, "--overwrite"]) == 0


def test_tune_shows_progress_refuses_an_earlier_tune_and_resumes_a_finished_one(
    tmp_path, capsys, monkeypatch, chunks
) -> None:
    monkeypatch.setattr(sim.runs.options, "PROGRESS_SECONDS", 0.0)
    scenario = tmp_path / "tune.yaml"
    scenario.write_text(TUNE)
    out = tmp_path / "tuned"
    args = ["tune", str(scenario), "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr()
    lines = [x for x in printed.err.splitlines() if x.startswith("rolloutsim: progress: ")]
    stage = r"rolloutsim: progress: tune stage 1 \(screen block 0, 3 candidates\): \d+/\d+ "
    assert re.match(stage, lines[0]), lines
    assert re.fullmatch(
        r"rolloutsim: progress: tune: done: [\d,]+ replications simulated in .+ over \d+ stages",
        lines[-1],
    )
    assert chunks
    chunks.clear()
    assert main(args) == 2
    _refusal(capsys, out, "holds an earlier tune")
    assert main([*args, "--resume"]) == 0
    again = capsys.readouterr()
    assert again.out == printed.out and not chunks  # the same answer, nothing simulated
    assert main([*args, "--resume", "--seed", "9"]) == 2
    assert "holds a finished tune of other inputs" in capsys.readouterr().err
