"""Where every random stream of a run comes from (DESIGN §3), in one place so that the runner,
reports, notebooks and ``simulate`` all reproduce the same numbers.

Replication ``i`` of release class ``c`` gets ``SeedSequence(seed, spawn_key=(c, i))`` under
every policy (common random numbers); the run's shared parts (the user population and its
cells) come from ``spawn_key=(WORLD_KEY,)``, never a class index.

Inside a replication each engine takes numbered children of its seed (``streams``), one per
job; a stream added later takes the next number, so the earlier ones and their numbers stay
(the step plugins' durations and phases: child 9 in replication.py, 8 in reference.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "WORLD_KEY",
    "Generators",
    "LazyGenerator",
    "SeedKey",
    "replication_key",
    "replication_seed",
    "shared_parts",
    "stream",
    "streams",
    "world_seed",
]

WORLD_KEY = 2**32 - 1


def replication_seed(seed: int, class_index: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(class_index, index))


class SeedKey(NamedTuple):
    """All that a replication's streams take from its ``SeedSequence`` (``stream``): its
    entropy, spawn key and pool size."""

    entropy: int
    spawn_key: tuple[int, ...]
    pool_size: int


_POOL_SIZE = np.random.SeedSequence(0).pool_size  # (numpy's default)


def replication_key(seed: int, class_index: int, index: int) -> SeedKey:
    """``replication_seed``'s key: its streams are the same, and making (mixing) that
    SeedSequence itself costs as much as making a stream."""
    return SeedKey(seed, (class_index, index), _POOL_SIZE)


def world_seed(seed: int) -> np.random.SeedSequence:
    """The seed run ``seed``'s user population is drawn from (``World.compile``)."""
    return np.random.SeedSequence(seed, spawn_key=(WORLD_KEY,))


def shared_parts(world, seed: int, users=None):
    """The compiled world and its user cells for run ``seed`` (build once, share). ``users``:
    the population already drawn from ``world_seed(seed)`` (in shared memory), else drawn."""
    from sim.engine.cells import UserCells
    from sim.world.model import CompiledWorld

    cw = world.compile(world_seed(seed)) if users is None else CompiledWorld(world, users)
    return cw, UserCells(cw.users)


def streams(seed: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """``n`` child seeds of ``seed`` without touching it (``SeedSequence.spawn`` would advance
    the caller's object, so reusing it for a second policy would break common random numbers)."""
    return [stream(seed, k) for k in range(n)]


def stream(seed: np.random.SeedSequence | SeedKey, k: int) -> np.random.SeedSequence:
    """Child ``k`` of ``streams(seed, n)``, made alone."""
    return np.random.SeedSequence(
        seed.entropy, spawn_key=(*seed.spawn_key, k), pool_size=seed.pool_size
    )


class Generators:
    """One replication's generators by stream number, each made at its first draw: most
    replications never draw from several streams (no human, alert, cause or cookie), and making
    one costs about 20 µs, as much as a few events. A stream is its seed and number alone, so
    when it is made changes none of its numbers."""

    __slots__ = ("_made", "seed")

    def __init__(self, seed: np.random.SeedSequence | SeedKey) -> None:
        self.seed = seed
        self._made: dict[int, np.random.Generator] = {}

    def __call__(self, k: int) -> np.random.Generator:
        found = self._made.get(k)
        if found is None:  # (what default_rng makes of a SeedSequence, without its checks)
            found = self._made[k] = np.random.Generator(np.random.PCG64(stream(self.seed, k)))
        return found

    def lazy(self, k: int) -> LazyGenerator:
        """Stream ``k`` for a part that takes a generator but may never draw from it."""
        return LazyGenerator(self, k)


class LazyGenerator:
    """Stands in for stream ``k`` of ``generators``: any attribute (a method such as
    ``normal``) is the stream's own, its generator being made at the first such use. The
    numbers are those of ``generators(k)`` itself, whenever it is made."""

    __slots__ = ("_generators", "_k")

    def __init__(self, generators: Generators, k: int) -> None:
        self._generators, self._k = generators, k

    def __getattr__(self, name: str):
        if name.startswith("_"):  # (its own slots before they are set, e.g. while unpickled)
            raise AttributeError(name)
        return getattr(self._generators(self._k), name)
