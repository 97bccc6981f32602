"""Session affinity while the weight steps: a cut inside a piece whose cookie holders grow keeps
the piece's front at the front's own canary share (sim/engine/drafting.py, the cookie loop).

A piece drawn while users are still getting the cookie holds the canary's share averaged over
the piece; a world change cutting it (the next weight step, a selector switch, a rollback)
kept its front at that average, higher than the front's own, and the surplus stayed (found by
session 15's differential search: +2.3 % candidate requests, z = 24, in a Flagger canary
walking its weights; the per-request reference meets the closed form). The pieces now end at
the next scheduled event while the holders' range moves."""

from __future__ import annotations

import math

from scipy import integrate
from test_oracles import Bench, mean_se

RATE, USERS = 50.0, 512
SPEC = {
    "horizon": "100s",
    "traffic": {"rate": RATE},
    "users": {"count": USERS},
    "baseline": {"errorRate": 0.0},
    "latencyObjective": "200ms",
    "releases": [{"name": "bad", "probability": 1.0, "fault": {"latencyShift": "1s"}}],
    "platform": {
        "replicas": 2,
        "podStartup": "6s",
        "scrapeInterval": "60s",
        "routerDelay": {"istio": "1s"},
        "flaggerTickPhase": "44s",
    },
    "operators": {"alerts": []},
}
WALK = """kind: Progressive
name: f
provider: istio
analysis:
  interval: 30s
  threshold: 2
  stepWeight: 20
  maxWeight: 50
  metrics:
    - name: request-success-rate
      interval: 1m
      thresholdRange: {min: 95}
  sessionAffinity: {cookieName: flagger-cookie, maxAge: 600}
"""


def _closed_form() -> float:
    """Weight 20 % from 45 s (the tick at 44 s, 1 s for Istio), 40 % from 75 s. A user (share
    1/512) holds the cookie once one of its requests went to the canary by weight: with
    W(t) = ∫ w·r, P = 1 − e^{−W/512}, and the canary's share is 1 − (1 − w)·e^{−W/512}."""

    def weight(t: float) -> float:
        return 0.2 if t < 75.0 else 0.4

    def sent(t: float) -> float:  # W(t)
        return RATE * (0.2 * (min(t, 75.0) - 45.0) + 0.4 * max(t - 75.0, 0.0))

    def share(t: float) -> float:
        return 1.0 - (1.0 - weight(t)) * math.exp(-sent(t) / USERS)

    return RATE * integrate.quad(share, 45.0, 100.0, points=[75.0])[0]


def test_a_weight_step_inside_a_piece_keeps_the_canarys_share():
    expected = _closed_form()  # 1575.4 (the reference: 1577; before, the fast engine: 1652)
    m, se = mean_se([o.candidate_requests for o in Bench(SPEC).outcomes(WALK, n=400)])
    assert abs(m - expected) < 4 * se, (m, se, expected)
