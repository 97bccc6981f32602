"""sim.runs.pool: one warm pool reused run after run, a shutdown that ends it, user populations
in shared memory, and the same numbers whichever way the work ran."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from policies import load_policy
from sim.engine.seeds import world_seed
from sim.runs import pool, runner
from sim.runs.runner import run
from sim.world.model import World

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "scenarios" / "policies"
WORLD = {
    "horizon": "2h",
    "traffic": {"rate": 200},
    "users": {
        "count": 3000,
        "activity": {"lognormal": {"sigma": 1.0}},
        "segments": {"beta": {"share": 5}},
    },
    "releases": [
        {"name": "good", "probability": 0.9},
        {"name": "bad", "probability": 0.1, "fault": {"errorRate": 0.05}},
    ],
    "platform": {"replicas": 4, "podStartup": "10s"},
}
OTHER_USERS = {**WORLD, "users": {"count": 1500}}
OTHER_TRAFFIC = {**WORLD, "traffic": {"rate": 400}}  # the same users, another world
DEFAULT_USERS = {k: v for k, v in WORLD.items() if k != "users"}  # users: not in to_dict()


@pytest.fixture(scope="module")
def policies():
    return [load_policy(POLICIES / "canary-basic.yaml"), load_policy(POLICIES / "canary-sprt.yaml")]


@pytest.fixture(autouse=True)
def fresh_pool():
    pool.shutdown()
    yield
    pool.shutdown()


def _run(world, policies, backend, **more):
    kwargs = {"replications": 6, "seed": 5, "chunk_size": 3, "workers": 2, **more}
    return run(World.model_validate(world), policies, backend=backend, **kwargs)


def _pids() -> set[int]:
    assert pool._POOL is not None
    return set(pool._POOL._processes)  # type: ignore[attr-defined]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() or sys.platform != "linux"


def test_the_pool_is_reused_run_after_run(policies) -> None:
    _run(WORLD, policies, "process")
    first, pids = pool._POOL, _pids()
    _run(OTHER_USERS, policies, "process", seed=9)
    assert pool._POOL is first and _pids() == pids


def test_numbers_are_the_same_with_and_without_reuse(policies) -> None:
    worlds = [
        WORLD,
        OTHER_USERS,
        OTHER_TRAFFIC,
        DEFAULT_USERS,
        WORLD,
    ]  # interleaved: no cache mixes them
    alone = [_run(w, policies, "inprocess").frame for w in worlds]
    warm = [_run(w, policies, "process").frame for w in worlds]
    for a, b in zip(alone, warm):
        pd.testing.assert_frame_equal(a, b)
    assert not alone[0].equals(alone[1]) and not alone[0].equals(alone[2])
    pool.shutdown()
    pd.testing.assert_frame_equal(_run(WORLD, policies, "process").frame, alone[0])


def test_shutdown_ends_the_workers_and_frees_the_populations(policies) -> None:
    _run(WORLD, policies, "process")
    pids, blocks = _pids(), [b.name for b, _, _ in pool._SHARED.values()]
    assert blocks and all(Path("/dev/shm", b.lstrip("/")).exists() for b in blocks)
    pool.shutdown()
    assert pool._POOL is None and not pool._SHARED
    assert not any(Path("/dev/shm", b.lstrip("/")).exists() for b in blocks)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    _run(WORLD, policies, "process")  # and the next run starts a fresh pool
    assert not _pids() & pids


def test_edited_code_gets_fresh_workers(policies, monkeypatch) -> None:
    _run(WORLD, policies, "process")
    pids = _pids()
    stamp = pool._code_stamp()
    monkeypatch.setattr(pool, "_code_stamp", lambda: stamp + 1)  # a file saved since
    _run(WORLD, policies, "process")
    assert not _pids() & pids


def test_another_worker_count_gets_its_own_pool(policies) -> None:
    _run(WORLD, policies, "process")
    first = pool._POOL
    _run(WORLD, policies, "process", workers=1)
    assert pool._POOL is not first and pool._SIZE == 1


def test_the_shared_population_is_the_drawn_one_read_only() -> None:
    world = World.model_validate(WORLD)
    drawn = world.compile(world_seed(4)).users
    key = pool.users_key(world.to_dict()["users"], 4)
    descriptor = pool.share_users(key, lambda: drawn)
    assert pool.share_users(key, lambda: pytest.fail("drawn twice")) == descriptor
    for users in (pool.users_of(descriptor), pool.shared_users(key)):
        assert users.n == drawn.n and users.routing == drawn.routing
        np.testing.assert_array_equal(users.activity, drawn.activity)
        np.testing.assert_array_equal(users.bucket, drawn.bucket)
        assert users.masks.keys() == drawn.masks.keys()
        np.testing.assert_array_equal(users.masks["beta"], drawn.masks["beta"])
        with pytest.raises(ValueError):
            users.activity[0] = 1.0


def _mapped(values: np.ndarray) -> bool:
    base = values.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_a_worker_maps_the_shared_population_instead_of_drawing_it(policies) -> None:
    world = World.model_validate(WORLD).to_dict()
    model = World.model_validate(world)
    descriptor = runner._share(model, world, 3)
    pool._SHARED.clear()  # as in a worker: this process has no population of its own
    runner._PREPARED.clear()
    spec = policies[0].to_dict()
    records = runner.run_chunk(world, 3, spec, "p", 0, 0, 2, descriptor)
    (cw, _, _), *_ = runner._PREPARED.values()
    assert _mapped(cw.users.activity)  # mapped, not drawn here
    runner._PREPARED.clear()
    assert runner.run_chunk(world, 3, spec, "p", 0, 0, 2) == records  # drawn: the same numbers
    (cw, _, _), *_ = runner._PREPARED.values()
    assert not _mapped(cw.users.activity)


_FRESH = """
import os, sys
from sim.runs import pool, runner
from sim.runs.runner import run
from sim.world.model import World
from policies import load_policy

if __name__ == "__main__":
    world = World.model_validate({world!r})
    p = load_policy({policy!r})
    for _ in range(2):
        r = run(world, [p], replications=4, seed=2, backend="process", workers=2, chunk_size=2)
    print(*sorted(pool._POOL._processes), flush=True)
    print(float(r.frame["excess_bad_requests"].sum()), flush=True)
"""


def test_a_fresh_process_gets_fresh_workers_and_leaves_nothing(tmp_path, policies) -> None:
    script = tmp_path / "fresh.py"
    policy = str(POLICIES / "canary-basic.yaml")
    script.write_text(_FRESH.format(world=WORLD, policy=policy))
    outs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert "leaked" not in done.stderr and "Traceback" not in done.stderr, done.stderr
        outs.append(done.stdout.split("\n"))
    (pids_a, total_a), (pids_b, total_b) = (o[:2] for o in outs)
    assert total_a == total_b  # the same numbers ...
    assert not set(pids_a.split()) & set(pids_b.split())  # ... from workers of their own
    for pid in map(int, pids_a.split() + pids_b.split()):
        assert not _alive(pid)  # and none outlives its process
