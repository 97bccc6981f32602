"""simpy's event loop, carrying the engine's callbacks (DESIGN §5: simpy runs the control plane).

Every control event — a controller timer, a pod becoming ready, a router change landing, an
alert, a human — is a simpy ``Timeout`` whose value is the function to run and its arguments,
and whose one callback is the engine's ``step``: it runs the function, then restores the
engine's invariants (sim/engine/replication.py). The same bound callback serves every event: no
closure is made per event (~100 per replication). Only simpy's public API is used.
Simultaneous events keep simpy's order: time, then the order in which they were scheduled (a
restarted controller timer is scheduled when its earlier call carries it: replication.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simpy
from simpy.events import Timeout

__all__ = ["Clock"]


class _Environment(simpy.Environment):
    """simpy's Environment, as is: its ``__init__`` binds to each new instance the event
    classes (``timeout``, ``process``...) listed in the instance's own class, a few µs per
    replication for shortcuts the engine never takes (Clock.call makes its Timeouts); this
    subclass lists none. Its clock, queue and order are simpy's own."""


class Clock:
    """The simulated clock of one replication: ``call(at, fn, *args)`` and simpy's ``env``."""

    __slots__ = ("env", "step")

    def __init__(self, step: Callable[[Timeout], None]) -> None:
        self.env = _Environment()
        self.step = step  # step(event): run event.value's (fn, args), then keep the invariants

    def __repr__(self) -> str:
        return f"Clock(now={self.env.now})"

    def call(self, at: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at absolute time ``at`` (at once if ``at`` has passed). A call is
        never cancelled: its owner keeps a token and ignores a call that is no longer current."""
        env = self.env
        delay = at - env.now
        Timeout(env, delay if delay > 0.0 else 0.0, (fn, args)).callbacks.append(self.step)
