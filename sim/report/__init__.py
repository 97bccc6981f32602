"""Reports (DESIGN §6): a run's numbers computed once (facts), the verdict and policy lines in
words (verdict), numbers for humans (text), the report's blocks (content), their HTML and
Markdown renderings (render), the figures (figures, in the house style of plotting), all written
as one folder (write), results first.

Public: ``write_report``, ``example_traces``, ``REPORT_FILES``, the ``figures`` module (one
function per report figure, each returning PNG bytes) and ``place_labels`` for notebooks that
label their own plots the way the report does; ``sensitivity_words`` and ``tornado`` say and draw
what a ``sim.sensitivity`` result shows.
"""

from sim.lazy import lazy_names

_HOME = {
    "REPORT_FILES": "sim.report.write",
    "example_traces": "sim.report.write",
    "place_labels": "sim.report.plotting",
    "sensitivity_words": "sim.report.sensitivity_report",
    "tornado": "sim.report.sensitivity_report",
    "write_report": "sim.report.write",
}

__all__ = sorted([*_HOME, "figures"])

__getattr__, __dir__ = lazy_names(__name__, _HOME, globals())
