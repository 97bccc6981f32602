"""The world a release meets and the Monte Carlo engine that drives the controller through it.

Names load on first use (PEP 562): a process-pool worker imports only the engine, not pandas
and scipy.stats, which halves its start-up.
"""

from sim.lazy import lazy_names

_HOME = {
    "OUTCOME_FIELDS": "sim.engine.outcome",
    "CompiledWorld": "sim.world.model",
    "Outcome": "sim.engine.outcome",
    "Replication": "sim.engine.replication",
    "RunOptions": "sim.runs.options",
    "RunResult": "sim.runs.runner",
    "UserCells": "sim.engine.cells",
    "World": "sim.world.model",
    "compare": "sim.runs.summary",
    "load_scenario": "sim.runs.scenario",
    "pareto": "sim.runs.summary",
    "run": "sim.runs.runner",
    "run_scenario": "sim.runs.sweep",
    "sensitivity": "sim.runs.sensitivity",
    "shutdown": "sim.runs.pool",
    "simulate": "sim.engine.replication",
    "summarize": "sim.runs.summary",
    "sweep": "sim.runs.sweep",
    "to_frame": "sim.engine.outcome",
}

__all__ = sorted(_HOME)


__getattr__, __dir__ = lazy_names(__name__, _HOME, globals())
