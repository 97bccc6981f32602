"""A gate measuring before the first scrape it may see (its window ends at now − scrapeDelay,
below 0) sees an empty window in both engines: no series yet, an Error measurement. Found by
the differential search of session 15: a negative slot index sliced the per-slot series from
its end, and the fast engine, whose tape is drafted ahead of the clock, read future requests
(a fault beginning at 517 s failed a postPromotion gate at 34 s)."""

from __future__ import annotations

import numpy as np
from test_oracles import Bench

from policies import policy_from_yaml
from sim.engine.reference import simulate_reference

SPEC = {
    "horizon": "10m",
    "traffic": {"rate": 30},
    "users": {"count": 100},
    "baseline": {"errorRate": 0.0},
    "releases": [
        {
            "name": "bad",
            "probability": 1.0,
            "fault": {"errorRate": 0.05, "onset": {"afterStart": "517s"}},
        }
    ],
    "platform": {"replicas": 5, "podStartup": "12s", "scrapeInterval": "30s", "scrapeDelay": "45s"},
    "operators": {"alerts": []},
}
POLICY = """kind: BlueGreen
name: bg
previewReplicaCount: 2
postPromotionAnalysis: {templates: [{templateName: g}]}
analysisTemplates:
  - name: g
    metrics:
      - name: m
        interval: 60s
        count: 4
        provider: {sequential: {test: msprt}}
"""


def test_a_window_before_the_first_visible_scrape_is_empty_in_both_engines():
    """The gate starts at 24 s and measures every 10 s (an Error retries after 10 s): five
    empty windows, the fifth Error at 64 s ends the analysis; no request is read early."""
    bench = Bench(SPEC)
    fast = bench.outcomes(POLICY, n=12)
    assert {o.t_detect for o in fast} == {64.0}
    policy, release = policy_from_yaml(POLICY), bench.cw.world.releases["bad"]
    for i in range(3):
        ss = np.random.SeedSequence(2, spawn_key=(i,))
        assert simulate_reference(bench.cw, policy, release, ss, index=i).t_detect == 64.0
