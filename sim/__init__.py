"""The world a release meets and the Monte Carlo engine that drives the controller through it."""

from sim.engine import Replication, simulate
from sim.flows import UserCells
from sim.outcome import OUTCOME_FIELDS, Outcome, to_frame
from sim.world import CompiledWorld, World

__all__ = [
    "OUTCOME_FIELDS",
    "CompiledWorld",
    "Outcome",
    "Replication",
    "UserCells",
    "World",
    "simulate",
    "to_frame",
]
