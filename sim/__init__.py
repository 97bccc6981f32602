"""The world a release meets and the Monte Carlo engine that drives the controller through it.

Names load on first use (PEP 562): a process-pool worker imports only the engine, not pandas
and scipy.stats, which halves its start-up.
"""

from importlib import import_module

_HOME = {
    "OUTCOME_FIELDS": "sim.engine.outcome",
    "CompiledWorld": "sim.world.model",
    "Outcome": "sim.engine.outcome",
    "Replication": "sim.engine.replication",
    "RunResult": "sim.runs.runner",
    "UserCells": "sim.engine.flows",
    "World": "sim.world.model",
    "compare": "sim.runs.summary",
    "load_scenario": "sim.runs.scenario",
    "pareto": "sim.runs.summary",
    "run": "sim.runs.runner",
    "simulate": "sim.engine.replication",
    "summarize": "sim.runs.summary",
    "to_frame": "sim.engine.outcome",
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
