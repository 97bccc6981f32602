"""Child processes of the bench: started by us, watched by PID, stopped by PID — never by name.

The bench runs real HAProxy and Prometheus binaries and Python backends as its own children,
on 127.0.0.1 only. Everything here exists so that a crashed test or an interrupted demo cannot
leave orphans behind or touch a process that is not ours: each child is started in its own
session (a terminal's Ctrl-C reaches only the bench, which then stops them in order) and, on
Linux, is asked to receive SIGTERM if the bench itself dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from policies.errors import RolloutsimError

__all__ = [
    "LOOPBACK",
    "BenchError",
    "free_port",
    "spawn",
    "stop_process",
    "wait_for",
    "wait_tcp",
]

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


class BenchError(RolloutsimError, RuntimeError):
    """The bench could not start or a component misbehaved (the message says which and why).
    The machine, not the input: the command line prints it in one line and exits 1."""

    exit_code = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM this child when the bench process dies (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(argv: Sequence[str], log: Path, *, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``argv`` as our child, output to ``log``, in its own session.

    Call it from a thread that lives as long as the child (the main thread): the kernel's
    parent-death signal fires when the *thread* that forked exits.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> int | None:
    """SIGTERM our child by its PID, then SIGKILL if it has not exited within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout)


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    alive: subprocess.Popen | None = None,
    log: Path | None = None,
) -> T:
    """Poll ``probe`` until it returns a value (not None); never a fixed sleep.

    ``alive``: fail at once, with the tail of ``log``, if that child exits meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except Exception:  # a probe failure is "not yet"
            value = None
        if value is not None:
            return value
        if alive is not None and alive.poll() is not None:
            raise BenchError(f"{what}: the process exited with code {alive.returncode}{_tail(log)}")
        if time.monotonic() >= deadline:
            raise BenchError(f"{what}: not ready after {timeout:g} s{_tail(log)}")
        time.sleep(interval)


def wait_tcp(port: int, timeout: float, what: str, **kwargs) -> None:
    """Wait until 127.0.0.1:port accepts a connection."""

    def probe() -> bool | None:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True

    wait_for(probe, timeout, what, **kwargs)


def _tail(log: Path | None, lines: int = 8) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return (" — last lines of " + str(log) + ":\n  " + "\n  ".join(text)) if text else ""
