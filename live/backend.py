"""A bench backend: one version of the service, with a chosen error rate and latency.

Each request fails (HTTP 500) independently with probability ``error_rate`` — a Bernoulli draw
from the backend's own seeded generator, the model the simulator assumes — and is answered after
``latency`` seconds. ``GET /__control?error_rate=..&latency=..&seed=..`` changes them at run
time (called directly on 127.0.0.1, not through HAProxy), so one bench serves several runs.

Run as ``python -m live.backend --port P --error-rate 0.05 --latency 0.001 --seed 7``. The
stdlib threaded server needs Nagle's algorithm off, or every keep-alive response waits ~40 ms
for a delayed ACK (reference/live-bench.md).
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["BackendState", "main", "make_server"]


class BackendState:
    """Error rate, latency and the generator, shared by all handler threads under one lock."""

    def __init__(self, name: str, error_rate: float, latency: float, seed: int) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.error_rate = error_rate
        self.latency = latency
        self.rng = random.Random(seed)
        self.served = 0
        self.failed = 0

    def draw(self) -> tuple[bool, float]:
        """(fail?, latency) for one request, in arrival order."""
        with self.lock:
            fail = self.rng.random() < self.error_rate
            self.served += 1
            self.failed += fail
            return fail, self.latency

    def control(self, query: dict[str, list[str]]) -> dict:
        with self.lock:
            if "error_rate" in query:
                rate = float(query["error_rate"][0])
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"error_rate {rate} is not in [0, 1]")
                self.error_rate = rate
            if "latency" in query:
                latency = float(query["latency"][0])
                if latency < 0:
                    raise ValueError(f"latency {latency} is negative")
                self.latency = latency
            if "seed" in query:
                self.rng = random.Random(int(query["seed"][0]))
            return {
                "name": self.name,
                "error_rate": self.error_rate,
                "latency": self.latency,
                "served": self.served,
                "failed": self.failed,
            }


def make_server(port: int, state: BackendState) -> ThreadingHTTPServer:
    """A keep-alive HTTP/1.1 server on 127.0.0.1:port answering from ``state``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/__control":
                try:
                    body = json.dumps(state.control(parse_qs(url.query))).encode()
                    self._reply(200, body, "application/json")
                except ValueError as exc:
                    self._reply(400, str(exc).encode(), "text/plain")
                return
            fail, latency = state.draw()
            if latency > 0:
                time.sleep(latency)
            if fail:
                self._reply(500, b"injected failure\n", "text/plain")
            else:
                self._reply(200, f"{state.name}\n".encode(), "text/plain")

        def _reply(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Version", state.name)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:  # one line per request would flood the log
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m live.backend", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="backend")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per response")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    state = BackendState(args.name, args.error_rate, args.latency, args.seed)
    server = make_server(args.port, state)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
