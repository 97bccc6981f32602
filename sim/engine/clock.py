"""simpy's event loop, carrying the engine's callbacks (DESIGN §5: simpy runs the control plane).

Every control event — a controller timer, a pod becoming ready, a router change landing, an
alert, a human — is a simpy ``Timeout`` whose one callback runs a function through the engine's
``step``, so the engine restores its invariants after each (sim/engine/replication.py). Only
simpy's public API is used. Simultaneous events keep simpy's order: time, then the order in
which they were scheduled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simpy
from simpy.events import Timeout

__all__ = ["Clock"]


class Clock:
    """The simulated clock of one replication: ``call(at, fn, *args)`` and simpy's ``env``."""

    __slots__ = ("env", "step")

    def __init__(self, step: Callable[[Callable[..., Any], tuple], None]) -> None:
        self.env = simpy.Environment()
        self.step = step  # step(fn, args): run one callback, then keep the engine's invariants

    def __repr__(self) -> str:
        return f"Clock(now={self.env.now})"

    def call(self, at: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at absolute time ``at`` (at once if ``at`` has passed). A call is
        never cancelled: its owner keeps a token and ignores a call that is no longer current."""
        env, step = self.env, self.step
        event = Timeout(env, max(0.0, at - env.now))
        event.callbacks.append(lambda _event: step(fn, args))
