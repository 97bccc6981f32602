"""An open-loop load generator: requests arrive at a fixed rate whatever the answers do.

Arrivals are a Poisson process (exponential gaps from a seeded generator) by default, because
that is what the simulator's traffic model assumes: counts per window are Poisson. A closed
loop (send the next request when the last returns) would slow down when the service does and
hide exactly the failures a canary must see. Requests go over a pool of keep-alive HTTP/1.1
connections; if every connection is busy, a new one is opened (up to ``max_connections``), so
a slow answer never delays the next arrival.

Bounded: it stops after ``duration`` seconds or ``max_requests`` requests, whichever is first,
and waits at most ``timeout`` for the last answers. Run as
``python -m live.loadgen --port P --rate 200 --duration 30 --out stats.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["LoadStats", "main", "run_load"]


@dataclass
class LoadStats:
    """What the client saw: responses by status class and by the backend that answered."""

    rate: float
    duration: float
    started_at: float = 0.0  # epoch seconds
    sent: int = 0
    answered: int = 0
    transport_errors: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_version: Counter = field(default_factory=Counter)
    errors_by_version: Counter = field(default_factory=Counter)
    max_lag_s: float = 0.0  # how late the worst request was sent (open-loop health)
    connections: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("by_status", "by_version", "errors_by_version"):
            out[key] = dict(getattr(self, key))
        return out


class _Pool:
    """Idle keep-alive connections; a busy pool grows instead of making arrivals wait."""

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host, self.port, self.max = host, port, max_connections
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.slots = asyncio.Semaphore(max_connections)

    async def get(self):
        await self.slots.acquire()
        if self.idle:
            return self.idle.pop()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    def put(self, conn, reusable: bool) -> None:
        if reusable:
            self.idle.append(conn)
        else:
            conn[1].close()
        self.slots.release()

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _one(pool: _Pool, path: str, stats: LoadStats, timeout: float) -> None:
    try:
        conn = await pool.get()
    except OSError:
        pool.slots.release()
        stats.transport_errors += 1
        return
    reader, writer = conn
    reusable = False
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        status, version, reusable = await asyncio.wait_for(_response(reader), timeout)
        stats.answered += 1
        stats.by_status[f"{status // 100}xx"] += 1
        stats.by_version[version] += 1
        if status >= 500:
            stats.errors_by_version[version] += 1
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        stats.transport_errors += 1
        reusable = False
    finally:
        pool.put(conn, reusable)


async def _response(reader: asyncio.StreamReader) -> tuple[int, str, bool]:
    """(status, X-Version header, connection reusable) of one HTTP/1.1 response."""
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    status = int(status_line.split()[1])
    length, version, keep = 0, "", True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "x-version":
            version = value
        elif name == "connection" and value.lower() == "close":
            keep = False
    if length:
        await reader.readexactly(length)
    return status, version or "unknown", keep


async def run_load(
    port: int,
    rate: float,
    duration: float,
    *,
    host: str = "127.0.0.1",
    path: str = "/",
    seed: int = 0,
    arrivals: str = "poisson",
    max_requests: int | None = None,
    max_connections: int = 64,
    timeout: float = 5.0,
) -> LoadStats:
    """Send requests at ``rate`` per second for ``duration`` seconds; returns the counts."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be > 0")
    rng = random.Random(seed)
    limit = max_requests if max_requests is not None else int(rate * duration * 2 + 100)
    stats = LoadStats(rate, duration, started_at=time.time())
    pool = _Pool(host, port, max_connections)
    loop = asyncio.get_running_loop()
    start = loop.time()
    due = 0.0
    tasks: set[asyncio.Task] = set()
    while stats.sent < limit:
        due += rng.expovariate(rate) if arrivals == "poisson" else 1.0 / rate
        if due >= duration:
            break
        delay = start + due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        stats.max_lag_s = max(stats.max_lag_s, loop.time() - start - due)
        stats.sent += 1
        task = asyncio.create_task(_one(pool, path, stats, timeout))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    pool.close()
    stats.connections = pool.opened
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m live.loadgen", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arrivals", choices=["poisson", "uniform"], default="poisson")
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the counts here (JSON)")
    args = parser.parse_args(argv)
    if args.host != "127.0.0.1":
        parser.error("the bench's load stays on 127.0.0.1")
    stats = asyncio.run(
        run_load(
            args.port,
            args.rate,
            args.duration,
            host=args.host,
            seed=args.seed,
            arrivals=args.arrivals,
            max_requests=args.max_requests,
        )
    )
    text = json.dumps(stats.to_dict(), indent=1)
    if args.out is not None:
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    else:
        print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
