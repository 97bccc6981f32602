"""The requests the per-request reference engine's blast radius counts, and the outcome fields
they give (sim/engine/reference.py).

Every request served by the new version, and every request of the old version while the
release left it short of capacity, is kept with its time, user, version, failure, slowness and
whether it was *caused* (bad, and not bad under the counterfactual: the old version alone at
full capacity, on the request's own random numbers). The outcome is counted from these rows,
written independently of the fast engine's accounting (sim/engine/blast.py).
"""

from __future__ import annotations

import math
from array import array

import numpy as np

__all__ = ["RequestRecords"]


class RequestRecords:
    """Column arrays the arrival loop appends to (``columns``: t, user, new, failed, slow;
    ``caused``; ``ref``: with finite capacity, the counterfactual's bad probability)."""

    def __init__(self) -> None:
        self.columns = (array("d"), array("l"), array("b"), array("b"), array("b"))
        self.caused, self.ref = array("b"), array("d")

    def arrays(self) -> dict[str, np.ndarray]:
        """The rows as numpy arrays, by name. The old version's other requests are per-slot
        counts only (sim/engine/reference_metrics.py): no outcome field reads them one by one."""
        t, user, new, failed, slow = self.columns
        return {
            "t": np.frombuffer(t, dtype=float),
            "user": np.asarray(user, np.int64),
            "new": np.asarray(new, bool),
            "failed": np.asarray(failed, bool),
            "slow": np.asarray(slow, bool),
            "caused": np.asarray(self.caused, bool),
        }

    def fill(self, out, *, b0: float, finite_capacity: bool, t_fault: float | None) -> None:
        """The blast-radius fields of ``out`` (an Outcome): counts per version, the excess over
        the counterfactual, caused requests, users hurt, with any bad response, and exposed."""
        r = self.arrays()
        failed, slow, new = r["failed"], r["slow"], r["new"]
        bad = failed | slow
        out.failed_requests, out.slow_requests = int(failed.sum()), int(slow.sum())
        out.bad_requests = int(bad.sum())
        out.bad_requests_new = int((bad & new).sum())
        out.bad_requests_old = out.bad_requests - out.bad_requests_new
        out.candidate_requests = int(new.sum())
        ref = float(np.sum(self.ref)) if finite_capacity else bad.size * b0
        out.excess_bad_requests = out.bad_requests - ref
        out.caused_bad_requests = int(r["caused"].sum())
        out.users_hurt = int(np.unique(r["user"][r["caused"]]).size)
        out.users_with_bad = int(np.unique(r["user"][bad & new]).size)
        began = math.inf  # a release without a fault exposes nobody to it
        if t_fault is not None:
            out.t_fault = began = t_fault
        out.users_exposed = int(np.unique(r["user"][new & (r["t"] >= began)]).size)
