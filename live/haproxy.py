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
    seen: tuple[int, int] | None = None  # (stable, canary) as last read back, confirmed or not

    def describe(self, weights: tuple[int, int] | None = None) -> str:
        s, c = weights if weights is not None else (self.last_written or (None, None))
        return f"{self.backend}/{self.stable}={s} {self.backend}/{self.canary}={c}"

    def read(self) -> tuple[int, int]:
        """(stable, canary) weights as HAProxy has them now."""
        seen = (
            self.api.get_weight(self.backend, self.stable),
            self.api.get_weight(self.backend, self.canary),
        )
        self.seen = seen
        return seen

    def apply(self, share: float) -> tuple[int, int]:
        """Write the weights for a canary share and confirm them by reading back.

        The server that gains is raised before the one that loses is lowered, so no moment
        has both at 0 (HAProxy would answer 503 to everyone) and the canary's share between
        the two writes lies between the old and the new one. If a write fails, the error says
        what HAProxy has then, read back, and so who holds traffic.
        """
        wanted = dict(zip((self.stable, self.canary), split_weights(share), strict=True))
        try:
            now = dict(zip((self.stable, self.canary), self.read(), strict=True))
        except RouterError:  # unknown: the larger weight first still never leaves 0/0
            now = None
        if now is not None:
            order = sorted(wanted, key=lambda server: wanted[server] <= now[server])
        else:
            order = sorted(wanted, key=lambda server: -wanted[server])
        for server in order:
            if now is not None and now[server] == wanted[server]:
                continue
            try:
                self.api.set_weight(self.backend, server, wanted[server])
            except RouterError as exc:
                raise RouterError(f"{exc}; {self._after_failure()}") from None
        target = (wanted[self.stable], wanted[self.canary])
        try:
            seen = self.read()
        except RouterError as exc:
            raise RouterError(
                f"wrote {self.describe(target)} but cannot read it back: {exc}"
            ) from None
        if seen != target:
            raise RouterError(
                f"weights do not read back as written: wrote {self.describe(target)},"
                f" HAProxy has {self.describe(seen)}: {self.traffic(seen)}"
            )
        self.last_written = seen
        return seen

    def _after_failure(self) -> str:
        try:
            seen = self.read()
        except RouterError as exc:
            return f"cannot read the weights back either ({exc})"
        return f"read back: {self.describe(seen)}, so {self.traffic(seen)}"

    def verify(self) -> tuple[int, int]:
        """Read the weights and check them against the last write (drift is an error)."""
        seen = self.read()
        if self.last_written is not None and seen != self.last_written:
            raise RouterError(
                f"weights changed behind the executor: expected {self.describe()},"
                f" HAProxy has {self.describe(seen)}"
            )
        return seen

    def traffic(self, weights: tuple[int, int]) -> str:
        """Who holds traffic under these (stable, canary) weights, in words."""
        s, c = weights
        b = self.backend
        if s <= 0 and c <= 0:
            return f"no server holds traffic: both weights are 0 and {b} answers 503 to everyone"
        if c <= 0:
            return f"{b}/{self.stable} holds all traffic"
        if s <= 0:
            return f"{b}/{self.canary} (the canary) holds all traffic"
        pct = 100.0 * c / (s + c)
        return (
            f"{b}/{self.canary} (the canary) still holds {_pct(pct)} % of traffic and "
            f"{b}/{self.stable} {_pct(100.0 - pct)} %"
        )

    def holder(self) -> str:
        """Who holds traffic, read back from HAProxy now (for the exit message); when it
        cannot be read, the last weights read back, said to be that and nothing more."""
        try:
            seen = self.read()
        except RouterError as exc:
            if self.seen is None:
                return (
                    f"unknown: HAProxy cannot be read ({exc}) and no weight on {self.backend} "
                    "was ever read back"
                )
            return (
                f"unknown now (HAProxy cannot be read: {exc}); when last read back "
                f"({self.describe(self.seen)}), {self.traffic(self.seen)}"
            )
        return f"{self.traffic(seen)} (read back: {self.describe(seen)})"

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


def _pct(value: float) -> str:
    """20 for 20.0, 16.7 for 16.67: one decimal, none when whole."""
    return f"{value:.1f}".removesuffix(".0")
