"""HAProxy as the router: weights through the runtime API (admin socket), read back every time.

The live executor turns the controller's routing picture into one number, the canary version's
share of requests, and writes it as two server weights: ``set weight BACKEND/stable (100 − w)``
and ``set weight BACKEND/canary w`` (weights are relative, so these are percentages). HAProxy
applies a weight to the very next request, without a reload (reference/live-bench.md).

A write is not trusted until ``get weight`` reads it back: a router that silently ignored the
weight would otherwise leave the canary on more (or less) traffic than the controller believes.
Any failure raises ``RouterError`` carrying what is known about where traffic is.
"""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import dataclass

__all__ = ["HAProxyRouter", "RouterError", "RuntimeAPI", "split_weights"]


class RouterError(RuntimeError):
    """The router could not be reached, refused a command, or reads back something else."""


def split_weights(share: float) -> tuple[int, int]:
    """(stable, canary) weights for a canary share in percent: 100 − w and w, whole numbers.

    HAProxy weights are integers (0–256); a share is rounded to the nearest percent.
    """
    canary = round(min(100.0, max(0.0, share)))
    return 100 - canary, canary


class RuntimeAPI:
    """HAProxy's runtime API over its admin socket: one command per connection."""

    def __init__(self, address: str, timeout: float = 2.0) -> None:
        self.address = address  # a UNIX socket path, or "127.0.0.1:PORT"
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"RuntimeAPI({self.address!r})"

    def command(self, line: str) -> str:
        """Send one command, return the whole reply; ``RouterError`` if unreachable."""
        try:
            if ":" in self.address and not self.address.startswith("/"):
                host, port = self.address.rsplit(":", 1)
                sock = socket.create_connection((host, int(port)), timeout=self.timeout)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(self.address)
            with sock:
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
        except OSError as exc:
            raise RouterError(f"HAProxy admin socket {self.address} unreachable: {exc}") from None
        return b"".join(chunks).decode(errors="replace")

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        reply = self.command(f"set weight {backend}/{server} {int(weight)}").strip()
        if reply:
            raise RouterError(f"HAProxy refused 'set weight {backend}/{server} {weight}': {reply}")

    def get_weight(self, backend: str, server: str) -> int:
        """The server's current weight (``get weight`` replies "10 (initial 100)")."""
        reply = self.command(f"get weight {backend}/{server}").strip()
        try:
            return int(reply.split()[0])
        except (IndexError, ValueError):
            raise RouterError(
                f"HAProxy 'get weight {backend}/{server}' replied {reply!r}"
            ) from None

    def show_stat(self) -> list[dict[str, str]]:
        """``show stat`` as rows of the CSV (pxname, svname, stot, hrsp_5xx, weight, ...)."""
        text = self.command("show stat")
        if not text.startswith("# "):
            raise RouterError(f"HAProxy 'show stat' replied {text[:80]!r}")
        return list(csv.DictReader(io.StringIO(text[2:])))


@dataclass
class HAProxyRouter:
    """Two servers of one HAProxy backend carrying the stable and the canary version."""

    api: RuntimeAPI
    backend: str = "be"
    stable: str = "stable"
    canary: str = "canary"
    last_written: tuple[int, int] | None = None  # (stable, canary) as last confirmed

    def describe(self, weights: tuple[int, int] | None = None) -> str:
        s, c = weights if weights is not None else (self.last_written or (None, None))
        return f"{self.backend}/{self.stable}={s} {self.backend}/{self.canary}={c}"

    def read(self) -> tuple[int, int]:
        """(stable, canary) weights as HAProxy has them now."""
        return (
            self.api.get_weight(self.backend, self.stable),
            self.api.get_weight(self.backend, self.canary),
        )

    def apply(self, share: float) -> tuple[int, int]:
        """Write the weights for a canary share and confirm them by reading back.

        Order matters when only one write lands: lowering the canary first never sends it more
        traffic than either the old or the new share.
        """
        stable, canary = split_weights(share)
        current = self.last_written
        if current is not None and canary > current[1]:
            order = ((self.stable, stable), (self.canary, canary))
        else:
            order = ((self.canary, canary), (self.stable, stable))
        for server, weight in order:
            self.api.set_weight(self.backend, server, weight)
        seen = self.read()
        if seen != (stable, canary):
            raise RouterError(
                f"weights do not read back as written: wrote {self.describe((stable, canary))},"
                f" HAProxy has {self.describe(seen)}"
            )
        self.last_written = seen
        return seen

    def verify(self) -> tuple[int, int]:
        """Read the weights and check them against the last write (drift is an error)."""
        seen = self.read()
        if self.last_written is not None and seen != self.last_written:
            raise RouterError(
                f"weights changed behind the executor: expected {self.describe()},"
                f" HAProxy has {self.describe(seen)}"
            )
        return seen

    def holder(self) -> str:
        """Which server holds traffic, as far as the executor knows (for the exit message)."""
        if self.last_written is None:
            return f"unknown: the executor never confirmed a weight on {self.backend}"
        s, c = self.last_written
        if c == 0:
            return (
                f"{self.backend}/{self.stable} holds all traffic (last confirmed {self.describe()})"
            )
        return (
            f"{self.backend}/{self.canary} (the canary) still holds {c} % of traffic and "
            f"{self.backend}/{self.stable} {s} % (last confirmed {self.describe()})"
        )

    def counters(self) -> dict[str, dict[str, int]]:
        """Per server: requests (req_tot, else stot) and 5xx responses, from ``show stat``."""
        out = {}
        for row in self.api.show_stat():
            if row.get("pxname") == self.backend and row.get("svname") in (
                self.stable,
                self.canary,
            ):
                total = row.get("req_tot") or row.get("stot") or "0"
                out[row["svname"]] = {"requests": int(total), "errors": int(row["hrsp_5xx"] or 0)}
        return out
