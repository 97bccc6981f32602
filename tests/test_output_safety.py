"""Issue #13, names, output folders, leaks and signals: a name never becomes a path outside the
output folder, a bad output target is refused before any work, a folder being written is
locked, sweep cells never share a folder, pool workers die with their parent, and SIGTERM stops
a run like Ctrl-C with its checkpoint kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sim.runs.runner
from policies.errors import PolicyError
from rolloutsim.cli import main
from sim.runs.files import check_name, check_output, folder_for, inside, output_lock
from sim.runs.sweep import cell_names

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "scenarios" / "policies"
PYTHON = sys.executable
BAD_NAMES = ["../../x", "/tmp/rolloutsim-abs", ".", "..", "a" * 300, "Upper", "a b", "x\ny", ""]


def _scenario_named(folder: Path, name: str) -> Path:
    """The seed practice shortened to an hour, its policies found, named ``name``."""
    import yaml  # the test writes YAML only here

    data = yaml.safe_load((ROOT / "scenarios" / "seed-practice.yaml").read_text())
    data["name"] = name
    data["world"]["horizon"] = "1h"
    data["policies"] = [
        {"file": str(POLICIES / p["file"].split("/")[-1])} for p in data["policies"]
    ]
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def no_run(monkeypatch):
    """Fail the test if a simulation starts: refusals must come before any work."""

    def ran(*_a, **_k):
        raise AssertionError("the run started before the refusal")

    monkeypatch.setattr(sim.runs.runner, "run", ran)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rolloutsim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- names become paths


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_are_not_kubernetes_names_are_refused(name) -> None:
    with pytest.raises(PolicyError, match="not a Kubernetes name") as caught:
        check_name(name, "name", file="s.yaml")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


@pytest.mark.parametrize("name", ["seed-practice", "a", "canary-20-first", "a.b-c", "x" * 253])
def test_kubernetes_names_are_accepted(name) -> None:
    assert check_name(name, "name") == name


def test_a_path_that_resolves_outside_its_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)  # a symlink out of the root
    assert inside(tmp_path / "root", "a", "b") == tmp_path / "root" / "a" / "b"
    for parts in (("..", "x"), ("/etc",), (".",), ("link", "x")):
        with pytest.raises(PolicyError, match="outside"):
            inside(tmp_path / "root", *parts)
    with pytest.raises(PolicyError):
        folder_for(tmp_path / "root", "../x", "name")


@pytest.mark.parametrize("name", ["../../x", "/tmp/rolloutsim-abs", ".", "..", "a" * 300])
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_run_and_sweep_refuse_a_bad_scenario_name_before_any_work(
    name, command, tmp_path, monkeypatch, capsys, no_run
) -> None:
    path = _scenario_named(tmp_path, name)
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    args = [command, str(path), "--no-progress"]
    if command == "sweep":
        args += ["--param", "world.traffic.rate=100,200"]
    assert main(args) == 2
    assert "not a Kubernetes name" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "scenario.yaml", "work"]
    assert not Path("/tmp/rolloutsim-abs").exists()


def test_a_bad_policy_name_in_a_scenario_is_refused_before_any_work(
    tmp_path, monkeypatch, capsys, no_run
) -> None:
    path = _scenario_named(tmp_path, "fine")
    text = path.read_text().replace(
        f"file: {POLICIES}/bluegreen.yaml", f"file: {POLICIES}/bluegreen.yaml\n  name: ../evil"
    )
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path)]) == 2
    assert "policies[1].name" in _one_line_error(capsys)
    assert not (tmp_path / "reports").exists()


def _policy(folder: Path, name: str) -> Path:
    text = (POLICIES / "canary-20-first.yaml").read_text()
    lines = [f"name: {name}" if line.startswith("name:") else line for line in text.splitlines()]
    path = folder / "policy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", ["../../evil", "/tmp/rolloutsim-abs", "..", "a" * 300])
def test_live_refuses_a_bad_policy_name_before_writing_anything(
    name, tmp_path, monkeypatch, capsys
) -> None:
    policy = _policy(tmp_path, name)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert main(["live", str(policy), "--bench"]) == 2
    assert "not a Kubernetes name" in _one_line_error(capsys)
    assert list((tmp_path / "work").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml", "work"]


def test_live_without_a_router_fails_before_writing_its_state(tmp_path, monkeypatch, capsys):
    """The old order wrote policy.yaml and settings.json, then failed on a missing argument."""
    monkeypatch.chdir(tmp_path)
    assert main(["live", str(POLICIES / "canary-20-first.yaml")]) == 2
    assert "--haproxy-socket" in _one_line_error(capsys)
    assert not (tmp_path / "live-state").exists()


def test_export_refuses_names_that_would_write_outside_its_folder(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    policy = POLICIES / "canary-20-first.yaml"
    assert main(["export", str(policy), "--to", "argo", "-o", str(out), "--service", "../x"]) == 2
    _one_line_error(capsys)
    bad = _policy(tmp_path, "../../evil")
    assert main(["export", str(bad), "--to", "argo", "-o", str(out)]) == 2
    _one_line_error(capsys)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml"]
    (tmp_path / "file").write_text("mine")
    assert main(["export", str(policy), "--to", "argo", "-o", str(tmp_path / "file")]) == 2
    _one_line_error(capsys)
    assert (tmp_path / "file").read_text() == "mine"


# --------------------------------------------------------------------------- output targets


def test_output_targets_are_refused_before_the_run(tmp_path, capsys, no_run) -> None:
    scenario = _scenario_named(tmp_path, "fine")
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    cases = {
        "a-file": "exists and is not a folder",
        "notes": "holds files but no report.html",
        "x" * 300: "too long",
    }
    for target, why in cases.items():
        assert main(["run", str(scenario), "-o", str(tmp_path / target)]) == 2
        assert why in _one_line_error(capsys)
    assert main(["run", str(scenario), "-o", "/proc/self/rolloutsim-report"]) == 2
    assert "cannot write" in _one_line_error(capsys)  # a folder no one may write (procfs)
    assert main(["sweep", str(scenario), "--param", "seed=1,2", "-o", str(tmp_path / "notes")]) == 2
    assert "holds files but no sweep.csv or cells" in _one_line_error(capsys)
    assert (tmp_path / "a-file").read_text() == "mine"
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_check_output_accepts_new_empty_and_earlier_folders(tmp_path) -> None:
    assert check_output(tmp_path / "new" / "deeper", "report") == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", "report")
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "report.html").write_text("")
    check_output(tmp_path / "earlier", "report")
    with pytest.raises(FileExistsError):  # an earlier report is not a tune folder
        check_output(tmp_path / "earlier", "tune")
    assert not (tmp_path / "new").exists()  # checking writes nothing that stays


# --------------------------------------------------------------------------- locks


_HOLD = """
import sys
from sim.runs.files import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def _holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PYTHON, "-c", _HOLD, str(out)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_a_folder_another_live_run_writes_is_refused_and_its_checkpoint_kept(
    tmp_path, capsys, no_run
) -> None:
    out = tmp_path / "report"
    checkpoint = tmp_path / "report.checkpoint"
    checkpoint.mkdir()
    (checkpoint / "manifest.json").write_text("{}")  # the other run's checkpoint
    holder = _holder(out)
    try:
        with pytest.raises(PolicyError, match=f"PID {holder.pid}"), output_lock(out):
            pass
        scenario = _scenario_named(tmp_path, "fine")
        assert main(["run", str(scenario), "-o", str(out), "--seed", "2"]) == 2
        assert f"another run (PID {holder.pid})" in _one_line_error(capsys)
        assert (checkpoint / "manifest.json").exists()  # not deleted by the second run
    finally:
        holder.communicate("\n", timeout=10)
    assert not (tmp_path / "report.lock").exists()  # released and removed


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path) -> None:
    out = tmp_path / "report"
    holder = _holder(out)
    holder.kill()  # SIGKILL: the lock file stays, with a dead PID in it
    holder.wait(timeout=10)
    lock = tmp_path / "report.lock"
    assert lock.read_text().strip() == str(holder.pid)
    with output_lock(out) as held:
        assert held == lock and lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


# --------------------------------------------------------------------------- sweep cells


def test_sweep_cells_have_unique_readable_names() -> None:
    long_a = {"world.traffic.rate": 1, "policies[0].description": "x" * 100 + "a"}
    long_b = {"world.traffic.rate": 1, "policies[0].description": "x" * 100 + "b"}
    slash = [{"world.x": "a/b"}, {"world.x": "a b"}, {"world.x": "a_b"}]
    grid = [{"world.traffic.rate": 100}, {"world.traffic.rate": 400}, long_a, long_b, *slash]
    names = cell_names(grid)
    assert names[:2] == ["rate=100", "rate=400"]  # clean labels are kept as they are
    assert len(set(names)) == len(names)
    assert all(len(n) <= 80 and "/" not in n and not n.startswith(".") for n in names)
    assert names[2].startswith("rate=1,description=xxx") and names[2][-9] == "-"
    # "a/b", "a b" and "a_b" all read x=a_b: each gets its own hash, none takes another's
    assert all(n.startswith("x=a_b-") for n in names[4:]) and len(set(names[4:])) == 3
    twice = cell_names([{"a.x": 1}, {"a.x": 1}])
    assert twice[0] != twice[1]


# --------------------------------------------------------------------------- workers and signals


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


_POOL = """
import multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from sim.runs.options import die_with_parent

if __name__ == "__main__":
    pool = ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent, initargs=(os.getpid(), 0.1),
    )
    pool.submit(time.sleep, 0.5)
    pids = {f.result() for f in [pool.submit(os.getpid) for _ in range(8)]}
    print(*pids, flush=True)
    pool.submit(time.sleep, 60)
    time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_pool_workers_die_with_their_parent_even_after_sigkill(tmp_path) -> None:
    script = tmp_path / "pool.py"
    script.write_text(_POOL)
    parent = subprocess.Popen([PYTHON, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    line = parent.stdout.readline()
    workers = {int(p) for p in line.split()}
    assert workers and all(_alive(p) for p in workers)
    parent.kill()  # SIGKILL: the pool cannot shut down
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "orphaned pool workers live on"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_process_backend_leaves_no_orphans_after_sigkill(tmp_path) -> None:
    scenario = _scenario_named(tmp_path, "fine")
    args = ["run", str(scenario), "--backend", "process", "-j", "2", "--replications", "400"]
    proc = subprocess.Popen(
        [PYTHON, "-m", "rolloutsim", *args, "-o", str(tmp_path / "r"), "--no-progress"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = [p for p in _children(proc.pid) if _alive(p)]
        time.sleep(0.2)
    time.sleep(1)
    workers = [p for p in _children(proc.pid) if _alive(p)]
    assert workers, "no pool workers seen"
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def test_sigterm_stops_a_run_like_ctrl_c_and_it_resumes(tmp_path) -> None:
    scenario = _scenario_named(tmp_path, "fine")
    out = tmp_path / "report"
    chunks = tmp_path / "report.checkpoint" / "chunks"
    command = [PYTHON, "-m", "rolloutsim", "run", str(scenario), "-o", str(out), "--no-progress"]
    command += ["--backend", "process", "-j", "2", "--replications", "150", "--seed", "3"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (chunks.is_dir() and any(chunks.glob("*.parquet"))):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended first"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 128 + signal.SIGTERM, text
    assert "interrupted (SIGTERM)" in text and "--resume" in text, text
    assert "Traceback" not in text and "leaked semaphore" not in text, text
    assert any(chunks.glob("*.parquet")) and not out.exists()
    assert not (tmp_path / "report.lock").exists()
    done = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert (out / "report.html").is_file()


def test_chunks_of_another_run_in_a_checkpoint_are_never_loaded(tmp_path) -> None:
    """The race of issue #13: a seed-2 checkpoint holding seed-1 chunks must not load them."""
    import shutil

    from sim.runs.scenario import load_scenario

    loaded = load_scenario(_scenario_named(tmp_path, "fine"))
    kwargs = dict(replications=2, backend="inprocess", chunk_size=1)
    first, second = tmp_path / "seed1", tmp_path / "seed2"
    sim.runs.runner.run(loaded.world, loaded.policies, seed=1, checkpoint=first, **kwargs)
    fresh = sim.runs.runner.run(loaded.world, loaded.policies, seed=2, checkpoint=second, **kwargs)
    shutil.rmtree(second / "chunks")
    shutil.copytree(first / "chunks", second / "chunks")  # seed-1 chunks, seed-2 manifest
    again = sim.runs.runner.run(loaded.world, loaded.policies, seed=2, checkpoint=second, **kwargs)
    assert (again.frame["seed"] == 2).all()
    cols = [c for c in fresh.frame.columns if c != "wall_time"]
    assert again.frame[cols].equals(fresh.frame[cols])


@pytest.mark.parametrize("name", ["five\n", "a\nb", "Five"])
def test_a_name_with_a_newline_or_upper_case_is_not_a_kubernetes_name(name) -> None:
    from policies.names import check_name

    with pytest.raises(PolicyError, match="is not a Kubernetes name"):
        check_name(name, "name")


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path) -> None:
    from sim.runs.files import atomic_write

    team = tmp_path / "rollout.yaml"
    team.write_text("old")
    team.chmod(0o644)
    atomic_write(team, lambda tmp: Path(tmp).write_text("new"))
    assert team.read_text() == "new" and team.stat().st_mode & 0o777 == 0o644
    fresh = tmp_path / "new.yaml"
    atomic_write(fresh, lambda tmp: Path(tmp).write_text("x"))
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_never_replaces_what_is_not_a_regular_file(tmp_path) -> None:
    from sim.runs.files import atomic_write

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(PolicyError, match="not a regular file"):
        atomic_write(fifo, lambda tmp: Path(tmp).write_text("x"))
    assert fifo.exists() and not fifo.is_file()
