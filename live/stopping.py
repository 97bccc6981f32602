"""How the live executor stops: traffic first, words after.

Whatever ends a run early — a router failure, Ctrl-C, SIGTERM or SIGHUP, the deadline, a crash,
a stdout or journal that fails — the executor first moves all traffic to the stable (unless
``leave_as_is``) and only then prints and logs: after SIGHUP the terminal may be gone, and a
print that raised before the move would leave the canary holding traffic. While stopping,
output is best effort (a failing print does not cut the clean-up short); a router that cannot
be moved is named with the weights HAProxy reads back, never with what the executor hoped.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from live.haproxy import RouterError
from live.inbox import Inbox
from live.journal import StateDir, encode_event
from policies.controller import RollbackRequested

__all__ = ["EXIT", "TERMINAL", "ExecutorResult", "Stopping"]

EXIT = {"promoted": 0, "aborted": 1, "router": 3, "deadline": 4, "interrupted": 130}
"""Exit codes: 0 promoted, 1 rolled back (traffic on the stable), 3 router failure with traffic
possibly not on the stable, 4 not finished by the deadline, 130 interrupted (2, bad input, is
the CLI's). After 4 and 130 traffic is on the stable unless ``leave_as_is``."""
TERMINAL = ("Promoted", "Aborted", "RolledBack")


@dataclass
class ExecutorResult:
    """How the run ended; times are seconds since the release started."""

    exit_code: int
    status: str | None
    reason: str
    message: str = ""
    detected_at: float | None = None  # a gate's abort
    rollback_at: float | None = None  # any abort or undo
    promoted_at: float | None = None


class Stopping:
    """The executor's ways of ending early (a mixin of ``LiveExecutor``, which provides the
    router, controller, inbox, settings, result, ``_apply``, ``_record`` and ``_where``)."""

    # provided by LiveExecutor
    router: Any
    ctl: Any
    inbox: Inbox
    settings: Any
    state: StateDir
    result: ExecutorResult
    share: float | None
    t0: float | None
    _out: Callable[[str], None]
    _apply: Callable[..., list]
    _record: Callable[..., dict]
    _where: Callable[[], str]

    _cleanup = False  # once stopping, output is best effort (see _quietly)

    def _to_stable(self) -> Exception | None:
        """All traffic to the stable; the error if that failed. Called before anything is
        printed or logged, so an I/O error there cannot leave traffic on the canary."""
        try:
            self.router.apply(0.0)
        except Exception as exc:  # whatever went wrong, the exit message says who has traffic
            return exc
        self.share = 0.0
        return None

    def _holder(self) -> str:
        holder = getattr(self.router, "holder", None)
        return holder() if holder is not None else "unknown"

    def _router_failed(self, exc: RouterError) -> None:
        failed = self._to_stable()  # traffic first, words after
        holder = self._holder() if failed else ""
        self._cleanup = True
        self._say(f"ROUTER FAILURE: {exc}")
        self._log(self._record("router-failure", error=str(exc)))
        if self.ctl.status not in TERMINAL and not self.ctl.promoted:
            # the controller aborts too (its log records why); only once logged, so that a
            # resumed executor replays what this one did
            event = RollbackRequested("router")
            if self._log(self._record("event", event=encode_event(event)), durable=True):
                self._quietly(lambda: self._apply(self.ctl.handle(event), time.time(), True))
        self.result.status, self.result.reason = self.ctl.status, self.ctl.reason
        if failed is not None:
            self.result.exit_code = EXIT["router"]
            self.result.message = f"cannot move traffic to the stable: {failed}. Traffic: {holder}."
            self._say(f"EXIT 3: {self.result.message}")
            return
        self.result.exit_code = EXIT["aborted"]
        self.result.message = f"router failure: aborted to the stable ({self._where()})"
        self._say(self.result.message)

    def _interrupted(self) -> None:
        reason = self.inbox.stop_reason or signal.SIGINT
        # an executor that crashed cannot vouch for the canary: it never leaves it as is
        kept = self.settings.leave_as_is and reason != "crash"
        failed = None if kept else self._to_stable()  # traffic first, words after
        holder = self._holder() if failed else ""
        self._cleanup = True
        deadline = reason == "deadline"
        name = signal.Signals(reason).name if isinstance(reason, int) else str(reason)
        self.result.exit_code = EXIT["deadline" if deadline else "interrupted"]
        self.result.status, self.result.reason = self.ctl.status, self.ctl.reason
        if failed is not None:
            self.result.exit_code = EXIT["router"]
            self.result.message = (
                f"interrupted; cannot move traffic to the stable: {failed}. Traffic: {holder}."
            )
            self._log(self._record("interrupted", signal=name, error=str(failed)))
            self._say(self.result.message)
            return
        why = "deadline reached" if deadline else f"stopped ({name})"
        self.result.message = (
            f"{why}: "
            + ("weights left as they were" if kept else "traffic moved to the stable")
            + f" ({self._where()}); run the same command again to resume"
        )
        self._log(self._record("interrupted", signal=name, left_as_is=kept))
        self._say(self.result.message)

    def _say(self, text: str) -> None:
        rel = time.time() - self.t0 if self.t0 is not None else 0.0
        self._quietly(self._out, f"[{rel:8.2f}s] {text}")

    def _log(self, record: dict, durable: bool = False) -> bool:
        """Append to the journal; False if that failed while stopping (see _quietly)."""
        return self._quietly(self.state.append, record, durable)

    def _quietly(self, fn, *args) -> bool:
        """Call ``fn``; while stopping, a failure (stdout gone after SIGHUP, a full disk) is
        swallowed so that the rest of the clean-up still runs. Running, it is raised."""
        try:
            fn(*args)
        except Exception:
            if not self._cleanup:
                raise
            return False
        return True
