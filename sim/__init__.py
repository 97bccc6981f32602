"""The world a release meets and the Monte Carlo engine that drives the controller through it."""

from sim.engine import Replication, simulate
from sim.flows import UserCells
from sim.outcome import OUTCOME_FIELDS, Outcome, to_frame
from sim.runner import RunResult, run
from sim.scenario import load_scenario
from sim.summary import compare, pareto, summarize
from sim.world import CompiledWorld, World

__all__ = [
    "OUTCOME_FIELDS",
    "CompiledWorld",
    "Outcome",
    "Replication",
    "RunResult",
    "UserCells",
    "World",
    "compare",
    "load_scenario",
    "pareto",
    "run",
    "simulate",
    "summarize",
    "to_frame",
]
