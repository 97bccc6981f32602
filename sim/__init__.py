"""The world a release meets and the Monte Carlo engine that drives the controller through it.

Names load on first use (PEP 562): a process-pool worker imports only the engine, not pandas
and scipy.stats, which halves its start-up.
"""

from importlib import import_module

_HOME = {
    "OUTCOME_FIELDS": "sim.outcome",
    "CompiledWorld": "sim.world",
    "Outcome": "sim.outcome",
    "Replication": "sim.engine",
    "RunResult": "sim.runner",
    "UserCells": "sim.flows",
    "World": "sim.world",
    "compare": "sim.summary",
    "load_scenario": "sim.scenario",
    "pareto": "sim.summary",
    "run": "sim.runner",
    "simulate": "sim.engine",
    "summarize": "sim.summary",
    "to_frame": "sim.outcome",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
