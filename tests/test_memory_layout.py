"""Memory of the engine's user state (issue #17: 10 M users under 1 GB in all).

A shared population's derived arrays (cells in bucket order, guide tables) live once in shared
memory, built by the first process that needs them; a worker keeps almost nothing per user of
its own; large populations use int32 positions and keep no sorted keys. None of it may change
a number: the same draws as private arrays, the same records from either backend.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from policies import load_policy
from sim.engine import cells as cell_module
from sim.engine.cells import UserCells
from sim.runs import pool
from sim.runs.runner import run
from sim.world import users as users_module
from sim.world.model import World
from sim.world.users import SortedKeys, UserPopulation

ROOT = Path(__file__).resolve().parents[1]
KEY = (frozenset(), None, False, True)
SEGMENT = (frozenset(), "beta", False, False)
POPULATION = UserPopulation(
    count=30_000, activity={"lognormal": {"sigma": 1.5}}, segments={"beta": {"share": 10}}
)


@pytest.fixture(autouse=True)
def fresh_pool():
    pool.shutdown()
    yield
    pool.shutdown()


@pytest.fixture
def large(monkeypatch):
    """The large-population layout (int32 positions, sampled keys) at a test's size."""
    monkeypatch.setattr(users_module, "CHUNK", 1024)
    monkeypatch.setattr(cell_module, "_CHUNK", 1024)


def _shared_cells(n_seed: int = 1) -> UserCells:
    """Cells as a worker builds them: on the population mapped from shared memory."""
    built = POPULATION.build(n_seed)
    descriptor = pool.share_users(f"layout-{n_seed}", lambda: built)
    return UserCells(pool.users_of(descriptor))


def _blocks(prefix: str) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(prefix.lstrip("/") + "_*"))


def _own_bytes(cells: UserCells) -> int:
    """Bytes of arrays the cells hold in this process's own memory (not mapped shared)."""

    def own(a) -> int:
        if isinstance(a, SortedKeys):
            return sum(own(x) for x in (a.sample, a.dense) if x is not None)
        if not isinstance(a, np.ndarray):
            return 0
        base = a
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        return 0 if isinstance(base, memoryview) else a.nbytes

    caches = (cells._groups, cells._activity, cells._guides)
    values = [v for cache in caches for v in cache.values()]
    return sum(own(x) for v in values for x in (v if isinstance(v, tuple) else (v,)))


def _draws(cells: UserCells) -> list:
    rng = np.random.default_rng(3)
    out = []
    for key in (KEY, SEGMENT):
        for lo, hi in ((0.0, 100.0), (5.0, 37.5)):
            sel = (key, "bucket", lo, hi)
            out += [cells.share(sel), cells.draw(rng, 2_000, sel).tolist()]
            out.append([a.tolist() for a in cells.draw_counts(rng, 40_000, sel)])
        terms = {(key, "bucket", 0.0, 50.0): 20_000, (key, "bucket", 0.0, 100.0): 9_000}
        draws = [cells.draw_positions(rng, k, sel) for sel, k in terms.items()]
        out.append(cells.distinct_users(draws))
    return out


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="POSIX shared memory as a folder")
def test_a_worker_keeps_under_two_bytes_per_user_of_its_own(large) -> None:
    cells = _shared_cells()
    draws = _draws(cells)
    members, _, cum = cells._group(KEY, "bucket")
    assert members.dtype == np.int32 and cum.dtype == np.float64
    activity = cells.users.activity
    assert np.array_equal(cum, np.concatenate(([0.0], np.cumsum(activity[members]))))
    assert _own_bytes(cells) < 2 * cells.n  # the sampled keys only
    assert not cells._dns  # no DNS switch: no client keys drawn
    name = pool._SHARED[next(iter(pool._SHARED))][0].name
    assert len(_blocks(name)) == 4  # 2 cells (all users, not in beta) and their guides
    private = UserCells(POPULATION.build(1))
    assert _draws(private) == draws  # the same numbers from private arrays
    pool.shutdown()
    assert not _blocks(name)


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="POSIX shared memory as a folder")
def test_a_second_process_maps_the_cells_the_first_built() -> None:
    first = _shared_cells()
    members, _, cum = first._group(SEGMENT, "bucket")
    again = UserCells(pool.users_of(next(iter(pool._SHARED.values()))[1]))
    filled = []
    original = again.users.store

    def store(tag, parts, fill):
        return original(tag, parts, lambda out: filled.append(tag))

    again.users.store = store
    m2, _, c2 = again._group(SEGMENT, "bucket")
    assert not filled  # found ready: not built twice
    assert np.array_equal(m2, members) and np.array_equal(c2, cum)
    with pytest.raises(ValueError):
        c2[0] = 1.0  # read-only


def test_small_populations_keep_intp_positions_and_their_keys() -> None:
    cells = UserCells(POPULATION.build(2))
    members, keys, _ = cells._group(KEY, "bucket")
    assert members.dtype == np.intp and keys.dense is not None


@pytest.mark.parametrize("n", [1, 63, 64, 65, 5_000])
def test_sorted_keys_search_is_searchsorted(large, n) -> None:
    rng = np.random.default_rng(n)
    source = np.round(rng.random(n) * 100, 1)  # ties on purpose
    members = np.argsort(source, kind="stable").astype(np.int32)
    keys = SortedKeys(source, members)
    ordered = source[members]
    probes = np.concatenate((ordered, ordered + 0.05, [-1.0, 0.0, 100.0, 101.0]))
    for value in probes:
        assert keys.search(value) == np.searchsorted(ordered, value, side="left")


def test_a_pickled_population_keeps_its_order_but_no_store() -> None:
    cells = _shared_cells(5)
    copy = pickle.loads(pickle.dumps(cells.users))
    assert copy.store is None and np.array_equal(copy.by_bucket, cells.users.by_bucket)
    assert np.array_equal(copy.by_bucket, np.argsort(copy.bucket, kind="stable"))


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="POSIX shared memory as a folder")
def test_workers_share_the_cells_and_the_numbers_stay() -> None:
    """A run large enough to share its cells gives the in-process numbers, and its derived
    blocks go with the population."""
    world = World.model_validate(
        {
            "horizon": "1h",
            "traffic": {"rate": 100},
            "users": POPULATION.model_dump(mode="json", exclude_defaults=True),
            "releases": [
                {"name": "good", "probability": 0.8},
                {"name": "seg", "probability": 0.2, "fault": {"errorRate": 0.2, "segment": "beta"}},
            ],
            "platform": {"replicas": 4, "podStartup": "10s"},
        }
    )
    policies = [load_policy(ROOT / "scenarios" / "policies" / "canary-basic.yaml")]
    kwargs = {"replications": 4, "seed": 3, "chunk_size": 2, "workers": 2}
    alone = run(world, policies, backend="inprocess", **kwargs).frame
    pool.shutdown()
    shared = run(world, policies, backend="process", **kwargs).frame
    pd.testing.assert_frame_equal(alone, shared)
    names = [b.name for b, _, _ in pool._SHARED.values()]
    assert names and all(_blocks(name) for name in names)
    pool.shutdown()
    assert not any(_blocks(name) for name in names)


def test_a_block_whose_filler_died_is_rebuilt_not_waited_for(monkeypatch) -> None:
    """A process killed while filling a derived block (out of memory, say) leaves it unready:
    the next process sees its filler is gone, removes it and fills it itself."""
    import hashlib
    import subprocess
    from multiprocessing.shared_memory import SharedMemory

    monkeypatch.setattr(pool, "_WAIT_S", 5.0)  # a stall would return None, not hang the suite
    population = SharedMemory(create=True, size=64)
    try:
        tag = "test-dead-filler"
        name = f"{population.name.lstrip('/')}_{hashlib.sha256(tag.encode()).hexdigest()[:10]}"
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = SharedMemory(name, create=True, size=pool._HEADER + 64)
        np.ndarray(1, dtype="<u8", buffer=stale.buf, offset=8)[0] = dead.pid  # never ready
        stale.close()

        def fill(arrays) -> None:
            arrays["a"][:] = np.arange(4.0)

        got = pool._Store(population.name)(tag, [("a", "<f8", 4)], fill)
        assert got is not None and got["a"].tolist() == [0.0, 1.0, 2.0, 3.0]
    finally:
        pool._unlink(population)
        population.close()
