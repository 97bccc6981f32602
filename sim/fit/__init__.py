"""A world from a service's telemetry (``rolloutsim fit``): Prometheus query_range answers for
traffic, errors and latency, and a release history, fitted into a ``world:`` section with its
provenance and a report to judge it by.

Names load on first use (PEP 562): scipy and matplotlib are imported only by a fit.
"""

from sim.lazy import lazy_names

_HOME = {
    "FitInputs": "sim.fit.pipeline",
    "Fitted": "sim.fit.world",
    "Prometheus": "sim.fit.pipeline",
    "fit_error_rate": "sim.fit.error_rate",
    "fit_latency": "sim.fit.latency",
    "fit_releases": "sim.fit.releases",
    "fit_traffic": "sim.fit.traffic",
    "fit_world": "sim.fit.pipeline",
    "load_input": "sim.fit.pipeline",
    "query_range": "sim.fit.responses",
    "read_matrix": "sim.fit.responses",
    "regular": "sim.fit.series",
    "world_data": "sim.fit.world",
    "world_yaml": "sim.fit.world",
    "write_fit": "sim.fit.pipeline",
    "write_fit_report": "sim.fit.report",
}

__all__ = sorted(_HOME)


__getattr__, __dir__ = lazy_names(__name__, _HOME, globals())
