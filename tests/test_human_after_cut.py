"""A human notices ``humanDetection`` after the fault's first request, whatever the drafts did
before it (sim/engine/detectors.py). Found by session 16's differential search: the human was
scheduled from the first faulted request of a draft that a weight change then cut, and the
redrawn request came earlier, so the human came late (in 103 of 200 replications, up to 118 s;
in a world of the search 0.06 s late in every one)."""

from __future__ import annotations

from test_oracles import Bench

SPEC = {
    "horizon": "5m",
    "traffic": {"rate": 4},
    "users": {"count": 1000},
    "baseline": {"errorRate": 0.0},
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.5}}],
    "platform": {"replicas": 2, "podStartup": "10s"},
    "operators": {"alerts": [], "humanDetection": "60s", "acknowledgement": "0s"},
}
# at 1 % of 4 req/s the first faulted request is ~25 s out; the step to 100 % after 5 s cuts
# that draft and the redrawn one comes a fraction of a second after it
STEPPED = """kind: Canary
name: c
trafficRouting: {nginx: {}}
steps:
  - setWeight: 1
  - pause: {duration: 5s}
  - setWeight: 100
  - pause: {duration: 600s}
"""


def test_the_human_notices_a_fixed_time_after_the_first_faulted_request():
    outcomes = Bench(SPEC).outcomes(STEPPED, n=200)
    assert {o.detected_by for o in outcomes} == {"human"}
    late = [o.t_detect - o.t_fault - 60.0 for o in outcomes]
    assert max(abs(x) for x in late) < 1e-6, max(late)
