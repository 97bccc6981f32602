"""The executor's state folder: an append-only log of events, the policy, settings and the PID.

Why a log of *events* and not a snapshot of state: the controller is a pure, deterministic
function of the events it was given, so replaying the same events rebuilds exactly the same
controller — its step, analysis runs, sequential-test statistics, timers — with no second
serialisation of its internals to keep in sync. Every delivered event is written (and fsynced)
before the controller sees it; actions, router writes and measurements are logged too, for
people and for the calibration report, but replay uses only events.

Files: ``events.jsonl`` (one JSON object per line: ``t`` epoch seconds, ``rel`` seconds since
the release started, ``kind``; event records are fsynced), ``policy.yaml`` (the policy as
started), ``settings.json`` (replicas, time scale, seed…), ``pid`` (the running executor, for
``live promote``/``abort``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from policies.controller import (
    Approved,
    CancelTimer,
    MeasurementTaken,
    PodsChanged,
    RollbackRequested,
    Scale,
    SetMatchRoute,
    SetSelectors,
    SetWeight,
    StartAnalysis,
    Started,
    StartTimer,
    StopAnalysis,
    TimerFired,
)
from policies.measures import Observation, WindowStats

__all__ = [
    "StateDir",
    "decode_event",
    "describe_action",
    "encode_action",
    "encode_event",
    "encode_observation",
    "send_signal",
]

_EVENTS = {
    "Started": Started,
    "TimerFired": TimerFired,
    "PodsChanged": PodsChanged,
    "MeasurementTaken": MeasurementTaken,
    "Approved": Approved,
    "RollbackRequested": RollbackRequested,
}
SIGNALS = {"promote": signal.SIGUSR1, "abort": signal.SIGUSR2}


# ----------------------------------------------------------------------------- (de)serialising


def _stats(s: WindowStats) -> dict:
    return {
        "requests": s.requests,
        "errors": s.errors,
        "latency": {repr(q): v for q, v in s.latency.items()},
    }


def _unstats(d: dict) -> WindowStats:
    latency = {float(q): float(v) for q, v in d.get("latency", {}).items()}
    return WindowStats(int(d["requests"]), int(d["errors"]), latency)


def encode_observation(o: Observation) -> dict:
    return {
        "start": o.start,
        "end": o.end,
        "canary": _stats(o.canary),
        "stable": _stats(o.stable),
        "series": [encode_observation(p) for p in o.series],
    }


def _decode_observation(d: dict) -> Observation:
    series = tuple(_decode_observation(p) for p in d.get("series", ()))
    return Observation(
        float(d["start"]), float(d["end"]), _unstats(d["canary"]), _unstats(d["stable"]), series
    )


def encode_event(event: Any) -> dict:
    """JSON-ready form of a controller event (``decode_event`` gives it back, equal)."""
    name = type(event).__name__
    if name not in _EVENTS:
        raise TypeError(f"not a controller event: {event!r}")
    out: dict[str, Any] = {"type": name}
    if isinstance(event, TimerFired):
        out["key"] = event.key
    elif isinstance(event, PodsChanged):
        out["available"] = dict(event.available)
    elif isinstance(event, MeasurementTaken):
        out.update(
            run=event.run, metric=event.metric, observation=encode_observation(event.observation)
        )
    elif isinstance(event, RollbackRequested):
        out["source"] = event.source
    return out


def decode_event(data: dict) -> Any:
    kind = data.get("type")
    if kind == "TimerFired":
        return TimerFired(data["key"])
    if kind == "PodsChanged":
        return PodsChanged({k: int(v) for k, v in data["available"].items()})
    if kind == "MeasurementTaken":
        obs = _decode_observation(data["observation"])
        return MeasurementTaken(data["run"], data["metric"], obs)
    if kind == "RollbackRequested":
        return RollbackRequested(data.get("source", "human"))
    if kind in ("Started", "Approved"):
        return _EVENTS[kind]()
    raise ValueError(f"unknown event type {kind!r} in the log")


def _plain(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def describe_action(action, scale: float = 1.0) -> str:
    """The line the executor prints for an action as it carries it out (delays scaled)."""
    if isinstance(action, StartTimer):
        return f"timer {action.key}: {action.delay * scale:g} s"
    if isinstance(action, CancelTimer):
        return f"timer {action.key} cancelled"
    if isinstance(action, Scale):
        return f"scale {action.group} to {action.replicas} (fixed backends: acknowledged)"
    if isinstance(action, SetWeight):
        return f"weight {action.weight:g} %"
    if isinstance(action, SetSelectors):
        return f"selectors: stable -> {sorted(action.stable)}, canary -> {sorted(action.canary)}"
    if isinstance(action, SetMatchRoute):
        return f"header route {action.name!r}: not a weight, not set on HAProxy"
    if isinstance(action, StartAnalysis):
        return f"analysis {action.run} started ({', '.join(action.metrics)})"
    if isinstance(action, StopAnalysis):
        return f"analysis {action.run} stopped: {action.phase}"
    return repr(action)


def encode_action(action: Any) -> dict:
    """A controller action as a log record (for people; replay never reads actions)."""
    return {"type": type(action).__name__, **_plain(asdict(action))}


# ----------------------------------------------------------------------------- the folder


class StateDir:
    """One rollout's folder; appends are flushed and fsynced before the controller acts."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.log = self.path / "events.jsonl"
        self.policy_file = self.path / "policy.yaml"
        self.settings_file = self.path / "settings.json"
        self.pid_file = self.path / "pid"

    def __repr__(self) -> str:
        return f"StateDir({str(self.path)!r})"

    def records(self) -> list[dict]:
        """Every complete record; a torn last line (a crash mid-write) is ignored."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def append(self, record: dict, durable: bool = False) -> None:
        """Append one record; ``durable`` also fsyncs it (events: what replay needs).

        Everything is flushed to the OS at once, so a killed executor loses nothing; only
        events are worth the ~5 ms fsync that also survives a machine crash.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, separators=(",", ":"), allow_nan=False, default=str)
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            if durable:
                os.fsync(f.fileno())

    def started(self) -> bool:
        return any(r.get("kind") == "event" for r in self.records())

    def settings(self) -> dict:
        return json.loads(self.settings_file.read_text()) if self.settings_file.exists() else {}

    def write_settings(self, settings: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.settings_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(settings, indent=1, sort_keys=True))
        tmp.replace(self.settings_file)

    def archive(self) -> Path | None:
        """Move an old log aside (``--fresh``): ``events.jsonl`` -> ``events.N.jsonl``."""
        if not self.log.exists():
            return None
        n = 1
        while (target := self.path / f"events.{n}.jsonl").exists():
            n += 1
        self.log.replace(target)
        return target

    # --- the running executor's PID, checked against its start time so a reused PID is
    # never signalled

    def write_pid(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        self.pid_file.write_text(json.dumps({"pid": pid, "start": _proc_start(pid)}))

    def clear_pid(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.read_pid() in (None, os.getpid()):
                self.pid_file.unlink()

    def read_pid(self) -> int | None:
        """The PID of the executor running on this folder, or None (none, or it is gone)."""
        try:
            data = json.loads(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        pid = int(data.get("pid", 0))
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        if data.get("start") is not None and _proc_start(pid) != data["start"]:
            return None  # the PID was reused by another process
        return pid


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell PIDs apart."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def send_signal(state: StateDir, what: str) -> int:
    """Send ``promote`` (SIGUSR1) or ``abort`` (SIGUSR2) to the executor of ``state``."""
    pid = state.read_pid()
    if pid is None:
        raise LookupError(f"no executor is running on {state.path} (no live PID file)")
    os.kill(pid, SIGNALS[what])
    return pid
