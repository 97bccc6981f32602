"""Mirror copies, synthetic load and cookie routes in the per-request reference engine.

Why a module of its own: these are the requests no user sees (a mirror's copies, a load
tester's calls) and the per-user cookie of session affinity; the reference engine
(sim/engine/reference.py) asks here, request by request, whether a stable request is copied and
whether a user's cookie still holds, and the copies and synthetic requests are served here.
Written independently of the fast engine's flows (sim/engine/flows.py) so the two can be
compared. Semantics (policies/controller/protocol.py): a copy or synthetic request lands on a
pod of the canary Service, fails at that pod's rate (a segment fault applies to copies of the
segment's requests, never to synthetic ones), is overloaded like the Service's own requests,
counts in the per-version series gates read, and in nothing that measures harm: not in the
service's series (SLO alerts), not in the blast radius, not in when the fault began.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Shadow"]

_BUF = 1024


class Shadow:
    """The shadow traffic and cookies of one ``ReferenceReplication`` (``r``)."""

    def __init__(self, r, rng: np.random.Generator) -> None:
        self.r, self.rng = r, rng
        self.routes: dict[str, tuple] = {}  # name -> (percent, match), in the order set
        self.percent: list[float] | None = None  # per user, percent of stable requests copied
        self.copy_share = 0.0  # expected copies per request (the canary Service's extra load)
        self.load = 0.0  # synthetic requests per second
        self.generation: object | None = None
        self.max_age = 0.0  # the cookie route's max-age (0: no cookie route)
        self.cookie: list[float] | None = None  # per user, when its cookie expires
        self.expiry: list[float] | None = None  # made when a cookie route first lands
        self.ubuf: list[float] = []
        self.lbuf: list[float] = []

    def __repr__(self) -> str:
        return f"Shadow(routes={list(self.routes)}, load={self.load}, max_age={self.max_age})"

    # ------------------------------------------------------------------ the controller's actions

    def set_mirror(self, action) -> None:
        if action.percent > 0:
            self.routes[action.name] = (min(100.0, float(action.percent)), action.match)
        else:
            self.routes.pop(action.name, None)
        users, n = self.r.cw.users, self.r.cw.users.n
        if not self.routes:
            self.percent = None
        else:  # a request is copied by the first route whose match selects its user
            percent, assigned = np.zeros(n), np.zeros(n, dtype=bool)
            for share, match in self.routes.values():
                mask = np.ones(n, dtype=bool)
                if match:
                    names = self.r.world.users.segments_matched_by(match)
                    mask = np.zeros(n, dtype=bool)
                    for name in names:
                        mask |= users.masks[name]
                percent[mask & ~assigned] = share
                assigned |= mask
            self.percent = percent.tolist()
        self.r._world_changed()

    def set_load(self, action) -> None:
        self.load = max(0.0, float(action.rate))
        token = self.generation = object()
        if self.load > 0:
            self.r.env.process(self._synthetic(token))
        self.r._world_changed()

    def set_affinity(self, action) -> None:
        self.max_age = max(0.0, float(action.max_age_s))
        if self.max_age > 0 and self.expiry is None:
            self.expiry = [-math.inf] * self.r.cw.users.n
        self.cookie = self.expiry if self.max_age > 0 else None  # cookies outlive the route
        self.r._world_changed()

    # ------------------------------------------------------------------ per request

    def copied(self, u: int) -> bool:
        """Whether this stable request of user ``u`` is copied to the canary Service."""
        assert self.percent is not None
        return self._u() * 100.0 < self.percent[u]

    def refresh(self, weight: float, matched, sticky: bool) -> np.ndarray | None:
        """After a world change: the expected copies per request (the canary Service's extra
        load, for capacity); returns who holds a valid cookie now (None: no cookie route)."""
        self.copy_share = 0.0
        if self.percent is None and self.cookie is None:
            return None
        r, now = self.r, self.r.env.now
        act = r.cw.users.activity
        on = np.zeros(act.size, bool) if matched is None else np.asarray(matched, bool)
        holders = None
        if self.cookie is not None:
            holders = (np.asarray(self.cookie) > now) & ~on
        if self.percent is not None:
            pct = np.asarray(self.percent) / 100.0
            free = ~on if holders is None else ~on & ~holders
            if sticky:
                free &= r.cw.users.bucket >= weight
                self.copy_share = float(act[free] @ pct[free])
            else:
                self.copy_share = float(act[free] @ pct[free]) * (1.0 - weight / 100.0)
        return holders

    def serve(self, t: float, fault_applies: bool) -> None:
        """One copy or synthetic request at ``t`` on a pod of the canary Service."""
        r = self.r
        pods, p, active, over = r.canary_pods, r.p0, False, 0.0
        if pods:
            pod = pods[int(self._u() * len(pods))]
            candidate = pod.candidate
            if candidate and r.fault is not None and fault_applies:
                since = t - pod.onset
                active, p = since >= 0, r._fault_p(since)
            if r.capacity is not None:
                over = r._overload(t, True) if r.overs is None else r.overs[True]
        else:  # nobody serves the canary Service: it fails there
            candidate, p, over = True, 1.0, 1.0
        failed = self._u() < p
        if r.capacity is not None:
            failed = failed or self._u() < over
        if not self.lbuf:
            self.lbuf.extend(np.asarray(r.world.baseline.latency.sample(self.rng, _BUF)).tolist())
        lat = self.lbuf.pop()
        if active:
            lat = r.lat_m * lat + r.lat_s
        scrapes, j = r.scrapes, int(t // r.slot)
        scrapes.req[candidate][j] += 1
        scrapes.err[candidate][j] += failed
        scrapes.lat[candidate][j].append(lat)

    def _synthetic(self, token: object):
        """The load tester: Poisson arrivals at ``load`` per second until the rate changes."""
        env, segment = self.r.env, self.r.fault.segment if self.r.fault is not None else None
        while token is self.generation:  # (a process starts later: the rate may be 0 by then)
            yield env.timeout(float(self.rng.exponential(1.0 / self.load)))
            if token is not self.generation or env.now >= self.r.horizon:
                return
            self.serve(env.now, segment is None)

    def _u(self) -> float:
        if not self.ubuf:
            self.ubuf.extend(self.rng.random(_BUF).tolist())
        return self.ubuf.pop()
