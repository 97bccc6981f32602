"""Known gaps of the fast engine, found by session 15's differential search against the
per-request reference and not yet fixed: each a closed form the reference meets and the fast
engine misses, kept as a strict expected failure so that its fix shows (and a test that
passes by accident fails the suite). Closed forms and the reference's values are in each
docstring; the search's other open findings are in the closing note of session 15."""

from __future__ import annotations

import math

import pytest
from test_oracles import Bench, mean_se


@pytest.mark.xfail(strict=True, reason="DNS switch held at the slot's midpoint from its start")
def test_the_first_request_after_a_dns_switch_comes_as_clients_move():
    """A DNS blue-green switch from 31 s, each client moving at a uniform time within the 60 s
    TTL at 20 req/s: the first candidate request's wait is Rayleigh with rate 20·(t − 31)/60,
    E[t_fault] = 31 + √(π·60/(2·20)) = 33.17 (the reference: 33.19 ± 0.07). The fast engine
    gives 31.43: ``drafting`` holds the moved share at the slot's midpoint from the switch on."""
    bench = Bench(
        {
            "horizon": "5m",
            "traffic": {"rate": 20},
            "users": {"count": 1000},
            "releases": [{"name": "bad", "probability": 1.0, "fault": {"errorRate": 0.1}}],
            "platform": {"replicas": 2, "podStartup": "30s"},
            "operators": {"alerts": []},
        }
    )
    policy = "kind: BlueGreen\nname: dns\nswitch: dns\ndnsTtl: 60s\nscaleDownDelaySeconds: 3600\n"
    m, se = mean_se([o.t_fault for o in bench.outcomes(policy, n=200)])
    assert abs(m - (31 + math.sqrt(math.pi * 60 / 40))) < 4 * se, (m, se)
