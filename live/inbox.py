"""Requests from outside the executor — approve, abort, stop — and a sleep they cut short.

A human promotes with ``rolloutsim live promote`` (SIGUSR1), aborts with ``live abort``
(SIGUSR2), stops with Ctrl-C, SIGTERM or SIGHUP (a closed terminal). Signal handlers may only
set flags (anything more could deadlock on a lock the interrupted code holds), so they do just
that, and the kernel writes a byte to a socket the executor sleeps on
(``signal.set_wakeup_fd``): a pause of ten minutes still reacts to a promote at once. Code in
the same process (tests, an embedding program) calls ``approve()``/``abort()``/``stop()``
from any thread to the same effect.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import threading

__all__ = ["Inbox"]


class Inbox:
    """Pending requests; ``install()`` routes the signals here while the executor runs."""

    def __init__(self) -> None:
        self.approvals = 0
        self.aborts = 0
        self.stop_reason: str | int | None = None  # a signal number, or "deadline"
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._restore: list = []

    # --- from anywhere

    def approve(self) -> None:
        self.approvals += 1
        self._poke()

    def abort(self) -> None:
        self.aborts += 1
        self._poke()

    def stop(self, reason: str | int = signal.SIGINT) -> None:
        self.stop_reason = reason
        self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            self._w.send(b"!")

    @property
    def pending(self) -> bool:
        return bool(self.approvals or self.aborts or self.stop_reason is not None)

    # --- for the executor

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, returning early when a request arrives."""
        if self.pending:
            return
        ready, _, _ = select.select([self._r], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(OSError):
                self._r.recv(4096)

    def install(self) -> None:
        """Route SIGINT/SIGTERM/SIGHUP (stop), SIGUSR1 (approve), SIGUSR2 (abort) here.

        They replace any handler the command line set (rolloutsim's own raises
        KeyboardInterrupt, which could land between two router writes): while the executor
        runs, all three stop it the same way. Only the main thread can own signals; elsewhere
        the inbox still works by calls.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        handlers = {
            signal.SIGINT: lambda signum, _f: setattr(self, "stop_reason", signum),
            signal.SIGTERM: lambda signum, _f: setattr(self, "stop_reason", signum),
            signal.SIGHUP: lambda signum, _f: setattr(self, "stop_reason", signum),
            signal.SIGUSR1: lambda _s, _f: setattr(self, "approvals", self.approvals + 1),
            signal.SIGUSR2: lambda _s, _f: setattr(self, "aborts", self.aborts + 1),
        }
        old_fd = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        self._restore = [(sig, signal.signal(sig, h)) for sig, h in handlers.items()]
        self._restore.append(("fd", old_fd))

    def uninstall(self) -> None:
        for sig, old in reversed(self._restore):
            if sig == "fd":
                signal.set_wakeup_fd(old)
            else:
                signal.signal(sig, old)
        self._restore = []

    def close(self) -> None:
        self.uninstall()
        self._r.close()
        self._w.close()
