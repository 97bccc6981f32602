"""One warm worker pool per process, and user populations shared with its workers (DESIGN §6).

A spawn pool costs 0.8-1.5 s to start (each worker imports numpy, pydantic and the engine), so
every run, sweep cell, sensitivity arm and tune stage of a process takes the same pool
(``executor``). It is started anew only when the worker count changes, a worker died, or the
project's code changed on disk since it started (so edited code reaches the workers, as it does
in a fresh process). ``shutdown()`` ends it and frees the shared populations; it also runs at
exit. Workers keep nothing between runs but caches keyed by everything they depend on (the
world and seed, the policy's spec: ``sim.runs.runner``).

The user population is drawn once in this process into POSIX shared memory
(``multiprocessing.shared_memory``) and every worker maps it read-only, so memory does not grow
with workers. Not copy-on-write with fork: the pool outlives one world, and forking a threaded
parent is unsafe; a named block is also what the resource tracker cleans up after a SIGKILL.
The arrays the engine derives from a population alone (its cells in bucket order, their guide
tables: ``Users.arrays``) go to blocks named after the population's, built by the first process
that needs one while the others wait for it (``_Store``), and freed with the population.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import mmap
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np

from sim.runs.options import die_with_parent

__all__ = [
    "STARTS",
    "executor",
    "is_warm",
    "share_users",
    "shared_users",
    "shutdown",
    "users_key",
    "users_of",
    "warm_executor",
]

_KEEP = 2
"""Shared populations kept for the next run (a sensitivity arm or sweep cell that does not vary
the users takes the last one); older ones are unlinked."""

_LOCK = threading.RLock()
_POOL: ProcessPoolExecutor | None = None
_SIZE = 0
_STAMP: int | None = None
_SHARED: OrderedDict[str, tuple[SharedMemory, dict, Any]] = OrderedDict()
STARTS: list[int] = []
"""The PID of the process that started each pool (how often start-up was paid, and by whom)."""
_ROOTS = tuple(Path(__file__).resolve().parents[2] / d for d in ("sim", "policies"))


def _code_stamp() -> int:
    """The newest modification time of the project's Python files (a few ms)."""
    newest = 0
    for root in _ROOTS:
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith(".py"):
                    newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
    return newest


def executor(workers: int) -> ProcessPoolExecutor:
    """This process's pool of ``workers`` spawn workers: the warm one when it still fits."""
    global _POOL, _SIZE, _STAMP
    with _LOCK:
        stamp = _code_stamp()
        if STARTS and STARTS[-1] != os.getpid():  # a forked child: the pool is its parent's
            _POOL = None
            _SHARED.clear()
        pool = _POOL
        if pool is not None and (workers != _SIZE or stamp != _STAMP or _broken(pool)):
            _stop_pool()
            if stamp != _STAMP:  # arrays derived by the old code go with it
                for block, _, _ in _SHARED.values():
                    _unlink_derived(block.name)
        if _POOL is None:
            # spawn: no fork of a threaded parent; workers start on demand, up to ``workers``
            _POOL = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
            _SIZE, _STAMP = workers, stamp
            STARTS.append(os.getpid())
        return _POOL


def is_warm() -> bool:
    """Whether a live pool waits for work: no start-up to pay."""
    pool = _POOL
    return pool is not None and not _broken(pool)


def warm_executor() -> ProcessPoolExecutor | None:
    """The live pool of this process, if one is warm (for work that needs no particular size)."""
    with _LOCK:
        pool = _POOL
        if pool is None or _broken(pool) or STARTS[-1] != os.getpid():
            return None
        return pool


def _broken(pool: ProcessPoolExecutor) -> bool:
    return bool(getattr(pool, "_broken", False) or getattr(pool, "_shutdown_thread", False))


def _stop_pool() -> None:
    global _POOL
    with _LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def shutdown() -> None:
    """End the warm pool and unlink the shared user populations (also done at exit). The next
    run starts a fresh pool; call it after editing code in a long-lived session, or to give
    the memory back."""
    if STARTS and STARTS[-1] != os.getpid():
        return  # a forked child: the pool and the shared blocks are its parent's
    _stop_pool()
    with _LOCK:
        while _SHARED:
            _unlink(_SHARED.popitem()[1][0])


atexit.register(shutdown)


# ---------------------------------------------------------------------------- shared users


def _unlink(block: SharedMemory) -> None:
    """Unlink a population's block and the blocks derived from it (``_Store``)."""
    with contextlib.suppress(FileNotFoundError):  # already gone: another cleanup got there
        block.unlink()
    _unlink_derived(block.name)


def _unlink_derived(name: str) -> None:
    """Unlink the derived blocks of population block ``name``: they are found by name where
    POSIX shared memory has a folder (Linux); elsewhere the resource tracker frees them."""
    folder = Path("/dev/shm")
    prefix = name.lstrip("/") + "_"
    for path in folder.glob(prefix + "*") if folder.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            SharedMemory(path.name).unlink()


def _fd(block: SharedMemory) -> int:
    """The block's file descriptor, for a mapping of our own (POSIX)."""
    return vars(block)["_fd"]


def _view(block_fd: int, size: int, layout: dict, name: str) -> Any:
    """A read-only ``Users`` on a block's pages: its own mapping, valid after the block closes."""
    from sim.world.users import Users

    pages = mmap.mmap(block_fd, size, prot=mmap.PROT_READ) if size else b""
    n = layout["n"]

    def part(offset: int, dtype: str) -> np.ndarray:
        return np.frombuffer(pages, dtype=dtype, count=n, offset=offset)

    masks = {name: part(offset, "?") for name, offset in layout["masks"]}
    activity, bucket = part(layout["activity"], "<f8"), part(layout["bucket"], "<f8")
    by_bucket = part(layout["by_bucket"], "<i4")
    store = _Store(name) if n >= _STORE_FROM else None
    return Users(
        activity, bucket, masks, routing=layout["routing"], by_bucket=by_bucket, store=store
    )


def _layout(users) -> tuple[dict, int]:
    n = users.n
    layout: dict[str, Any] = {"n": n, "routing": users.routing, "activity": 0, "bucket": 8 * n}
    layout["by_bucket"] = 16 * n
    offset, masks = 20 * n, []
    for name in users.masks:
        masks.append([name, offset])
        offset += n
    layout["masks"] = masks
    return layout, offset


def share_users(key: str, build) -> dict:
    """The descriptor of the population ``build()`` draws, in shared memory under ``key`` (the
    users' spec and the seed): drawn once, then reused while kept. Workers map it with
    ``users_of``; this process reads it with ``shared_users``."""
    with _LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key][1]
        users = build()
        layout, size = _layout(users)
        block = SharedMemory(create=True, size=max(size, 1))
        try:
            out = np.ndarray(size, dtype=np.uint8, buffer=block.buf)
            parts = [("activity", users.activity), ("bucket", users.bucket)]
            parts.append(("by_bucket", users.by_bucket))
            parts += [(off, users.masks[name]) for name, off in layout["masks"]]
            for where, values in parts:
                start = layout[where] if isinstance(where, str) else where
                raw = np.ascontiguousarray(values).view(np.uint8)
                out[start : start + raw.size] = raw
            del out
            mine = _view(_fd(block), size, layout, block.name)
            block.close()
        except BaseException:
            block.close()
            _unlink(block)
            raise
        descriptor = {"name": block.name, "size": size, "layout": layout}
        _SHARED[key] = (block, descriptor, mine)
        while len(_SHARED) > _KEEP:
            _unlink(_SHARED.popitem(last=False)[1][0])
        return descriptor


def shared_users(key: str):
    """This process's read-only view of the population shared under ``key``, or None."""
    with _LOCK:
        found = _SHARED.get(key)
        return None if found is None else found[2]


def users_of(descriptor: dict):
    """In a worker: the shared population of ``descriptor``, mapped read-only (no copy)."""
    block = SharedMemory(descriptor["name"])
    try:
        return _view(_fd(block), descriptor["size"], descriptor["layout"], block.name)
    finally:
        block.close()


_STORE_FROM = 20_000
"""Populations from this size share their derived arrays (below, each process builds its own
in well under a millisecond per array)."""
_READY = 0x59444145525F4D53  # the first 8 bytes of a derived block once it is filled
_HEADER = 64
_WAIT_S = 300.0  # how long to wait for another process to fill a block, then build our own


class _Store:
    """``Users.store`` of a shared population: its derived arrays in blocks of their own, named
    after the population's block and a digest of the arrays' tag. The first process to need
    one creates it (O_EXCL), fills it and marks it ready; the others map it read-only once
    ready. None (build privately) if the population was freed meanwhile."""

    def __init__(self, name: str) -> None:
        self.name = name.lstrip("/")

    def __reduce__(self):
        return (_Store, (self.name,))

    def __call__(self, tag: str, parts: list[tuple[str, str, int]], fill) -> dict | None:
        offsets, size = [], _HEADER
        for _, dtype, count in parts:
            offsets.append(size)
            size += -(-np.dtype(dtype).itemsize * count // 64) * 64  # 64-byte aligned
        name = f"{self.name}_{hashlib.sha256(tag.encode()).hexdigest()[:10]}"
        if not _room(size):  # a small /dev/shm (containers: 64 MB) would fault on a write
            return None
        deadline = time.monotonic() + _WAIT_S
        while time.monotonic() < deadline:
            try:
                block = SharedMemory(name, create=True, size=size)
            except FileExistsError:
                pages = self._ready(name, size)
                if pages is None:
                    time.sleep(0.005)  # being filled, or gone: look again
                    continue
            else:
                pages = self._fill(block, parts, offsets, fill)
                if pages is None:
                    return None
            return {
                key: np.frombuffer(pages, dtype=dtype, count=count, offset=offset)
                for (key, dtype, count), offset in zip(parts, offsets)
            }
        return None

    def _fill(self, block: SharedMemory, parts, offsets, fill) -> mmap.mmap | None:
        try:
            np.ndarray(1, dtype="<u8", buffer=block.buf, offset=8)[0] = os.getpid()  # the filler
            if not self._alive():  # the population was freed: do not leave an orphan
                with contextlib.suppress(FileNotFoundError):
                    block.unlink()
                return None
            fill(
                {
                    key: np.ndarray(count, dtype=dtype, buffer=block.buf, offset=offset)
                    for (key, dtype, count), offset in zip(parts, offsets)
                }
            )
            np.ndarray(1, dtype="<u8", buffer=block.buf)[0] = _READY
            return mmap.mmap(_fd(block), block.size, prot=mmap.PROT_READ)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                block.unlink()
            raise
        finally:
            with contextlib.suppress(BufferError):  # a failed fill may still hold a view
                block.close()

    @staticmethod
    def _ready(name: str, size: int) -> mmap.mmap | None:
        try:
            block = SharedMemory(name)
        except (FileNotFoundError, ValueError):  # gone, or created but not sized yet
            return None
        try:
            head = bytes(block.buf[:16]) if block.buf is not None else b""
            if block.size < size or int.from_bytes(head[:8], "little") != _READY:
                filler = int.from_bytes(head[8:16], "little")
                if filler and not _running(filler):  # it died filling: start over
                    with contextlib.suppress(FileNotFoundError):
                        block.unlink()
                return None
            return mmap.mmap(_fd(block), size, prot=mmap.PROT_READ)
        finally:
            block.close()

    def _alive(self) -> bool:
        try:
            SharedMemory(self.name).close()
        except FileNotFoundError:
            return False
        return True


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (a filler killed mid-fill must not stall the others)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _room(size: int) -> bool:
    """Whether POSIX shared memory has ``size`` bytes free (where it is a folder we can ask)."""
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return True
    return stat.f_bavail * stat.f_frsize > 2 * size


def users_key(users_spec: dict | None, seed: int) -> str:
    """What determines a population: its spec (None: the default one) and the run's seed."""
    text = json.dumps({"users": users_spec, "seed": seed}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
