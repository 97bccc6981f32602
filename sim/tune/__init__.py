"""Tuning (DESIGN §6): search spaces (space), objectives and constraints (objectives), the
selection procedure with its stated guarantee (selection; its feasibility check in betting), the
search that runs it through the Monte Carlo runner (search), and the tune report folder (report).

Public: ``tune``, ``load_tune_scenario``, ``TuneSpec``, ``parse_tune_spec``, ``TuneResult`` and
``write_tune_report``.
"""

from sim.lazy import lazy_names

_HOME = {
    "TuneResult": "sim.tune.search",
    "TuneSpec": "sim.tune.space",
    "load_tune_scenario": "sim.tune.search",
    "parse_tune_spec": "sim.tune.space",
    "tune": "sim.tune.search",
    "write_tune_report": "sim.tune.report",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_names(__name__, _HOME, globals())
