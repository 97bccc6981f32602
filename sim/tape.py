"""The data plane: requests drawn exactly, in scrape-slot pieces, never one by one (DESIGN §5).

Between two world changes the routing, the pods and the fault state are constant, so the counts
of a piece of time are independent Poisson draws of the integrated rates (failed, slow, and good
requests per flow: Poisson thinning). The tape keeps per-slot counts (what Prometheus would
scrape) for gates and alerts.

Drawing is done as a *draft* ahead of the clock, up to the next known event or a chunk, so that
an SLO alert firing inside it is found at its exact evaluation time; pieces are *committed*
(counted into the blast radius, split over users) as the clock passes them. A world change at t
commits the piece it cuts only up to t — a binomial thinning, exact for a Poisson process — and
discards the rest of the draft, which is then drawn again under the new world.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from policies.measures import Observation, WindowStats
from sim.flows import Flow, UserCells

__all__ = ["FaultState", "Tape", "Totals"]


@dataclass
class FaultState:
    """The candidate's pods as the fault sees them: per serving pod, when its fault begins."""

    onsets: np.ndarray  # absolute onset time per serving candidate pod (inf: never)
    pods: int  # serving candidate pods (the average is over them)


@dataclass
class Totals:
    """Blast radius so far (candidate-served requests only), committed pieces only."""

    requests: int = 0
    failed: int = 0
    slow: int = 0
    bad: int = 0
    excess: float = 0.0
    t_fault: float | None = None


class _Block:
    """One draft: pieces with identical flows, their expected and drawn counts, and their
    contribution to the per-slot series (computed once, so adding or removing is one update)."""

    __slots__ = (
        "counts",
        "ends",
        "fault",
        "flows",
        "means",
        "onset_in",
        "phi",
        "serving",
        "slots",
        "starts",
        "values",
        "weights",
    )

    def __init__(
        self, flows, starts, ends, slots, means, counts, phi, onset_in, fault=None, serving=None
    ):
        self.flows, self.starts, self.ends, self.slots = flows, starts, ends, slots
        self.means, self.counts, self.phi, self.onset_in = means, counts, phi, onset_in
        self.fault, self.serving = fault, serving
        canary = np.array([f.version == "canary" for f in flows], dtype=float)
        faulty = np.array([f.version == "canary" and f.faulty for f in flows], dtype=float)
        self.weights = np.stack([canary, faulty, 1.0 - canary])  # (3, flows)
        self.values = self.slot_values(counts)

    def slot_values(self, counts: np.ndarray) -> np.ndarray:
        """Contribution to the seven per-slot series, per piece: (7, pieces)."""
        requests = counts.sum(axis=0)  # (flows, pieces)
        by_req = self.weights @ requests  # canary, faulty canary, stable requests
        by_err = self.weights @ counts[0]
        out = np.empty((7, counts.shape[2]))
        out[0], out[1] = by_req[0], by_err[0]
        out[2] = by_req[1] * self.phi[: counts.shape[2]]
        out[3], out[4] = by_req[2], by_err[2]
        out[5] = requests.sum(axis=0)
        out[6] = (counts[0] + counts[1]).sum(axis=0)
        return out

    def trim_front(self, n: int) -> None:
        self.starts, self.ends, self.slots = self.starts[n:], self.ends[n:], self.slots[n:]
        self.means, self.counts = self.means[:, :, n:], self.counts[:, :, n:]
        self.phi, self.onset_in, self.values = self.phi[n:], self.onset_in[n:], self.values[:, n:]


class Tape:
    """Per-slot counts plus the committed blast radius of one replication."""

    def __init__(self, cw, fault, slot: float, horizon: float, cells: UserCells, rng, user_rng):
        self.cw, self.fault, self.slot = cw, fault, float(slot)
        self.traffic = cw.world.traffic
        self.cells, self.rng, self.user_rng = cells, rng, user_rng
        self.p0, self.q0, self.b0 = cw.baseline_failure, cw.baseline_slow, cw.baseline_bad
        self.objective = cw.world.latency_objective
        self.capacity = cw.world.platform.capacity_per_pod
        n = math.ceil(horizon / self.slot) + 2
        # the per-slot series, rows of one table so a block is added in one indexed update
        self.table = np.zeros((7, n))
        self.c_req, self.c_err, self.c_fault = self.table[0], self.table[1], self.table[2]
        self.s_req, self.s_err = self.table[3], self.table[4]
        self.svc_req, self.svc_bad = self.table[5], self.table[6]
        self.blocks: list[_Block] = []
        self.committed_until = 0.0
        self.drafted_until = 0.0
        self.totals = Totals()
        self.hurt = np.zeros(cells.n, dtype=bool)
        self.hurt_after_fault = np.zeros(cells.n, dtype=bool)  # bad answers once it began
        self.pending_bad: collections.Counter = collections.Counter()  # (selector, late) -> n
        self.exposure: dict = {}  # selector -> [candidate, bad] requests expected after onset

    # ------------------------------------------------------------------ drafting

    def draft(
        self,
        t0: float,
        t1: float,
        flows: list[Flow],
        fault: FaultState,
        serving_by_service: dict[str, int],
    ) -> None:
        """Draw the pieces of [t0, t1) under one world state (t0 == drafted_until)."""
        if t1 <= t0:
            return
        s = self.slot
        first, last = int(t0 // s), math.ceil(t1 / s)
        edges = np.arange(first, last + 1) * s
        starts = np.maximum(edges[:-1], t0)
        ends = np.minimum(edges[1:], t1)
        keep = ends > starts
        starts, ends = starts[keep], ends[keep]
        slots = (starts // s).astype(np.intp)
        means, phi, onset_in = self._means(flows, starts, ends, fault, serving_by_service)
        counts = self.rng.poisson(means)
        block = _Block(
            flows, starts, ends, slots, means, counts, phi, onset_in, fault, serving_by_service
        )
        self._add(block, +1)
        self.blocks.append(block)
        self.drafted_until = t1

    def _fault_terms(self, starts, ends, fault: FaultState):
        """Mean failure and slow probabilities of the candidate's pods per piece, the share of
        its pods whose fault is active (for latency mixtures), and when the fault starts."""
        f = self.fault
        if f is None or fault.pods == 0:
            n = starts.size
            return np.full(n, self.p0), np.full(n, self.q0), np.zeros(n), np.full(n, np.inf)
        a = starts[None, :] - fault.onsets[:, None]
        b = ends[None, :] - fault.onsets[:, None]
        p = f.mean_failure_over(self.p0, a, b).mean(axis=0)
        q = f.mean_slow_over(self.cw.world.baseline, self.objective, a, b).mean(axis=0)
        mid = 0.5 * (starts + ends)
        phi = (fault.onsets[:, None] <= mid[None, :]).mean(axis=0)
        first_onset = float(np.min(fault.onsets))
        onset_in = np.where(first_onset < ends, np.maximum(starts, first_onset), np.inf)
        return p, q, phi, onset_in

    def _means(self, flows, starts, ends, fault, serving_by_service):
        lam = np.asarray(self.traffic.integral(starts, ends), dtype=float)
        p_c, q_c, phi, onset_in = self._fault_terms(starts, ends, fault)
        n_flows, n_pieces = len(flows), starts.size
        means = np.zeros((3, n_flows, n_pieces))
        overload = self._overload(flows, lam / (ends - starts), serving_by_service)
        for i, flow in enumerate(flows):
            if flow.unserved:
                p, q = np.ones(n_pieces), np.zeros(n_pieces)
            elif flow.version == "canary" and flow.faulty:
                p, q = p_c, q_c
            else:
                p, q = np.full(n_pieces, self.p0), np.full(n_pieces, self.q0)
            ov = overload.get(flow.service, 0.0)
            base = flow.share * lam
            means[0, i] = base * (ov + (1.0 - ov) * p)  # failed
            ok = base * (1.0 - ov) * (1.0 - p)
            means[1, i] = ok * q  # slow
            means[2, i] = ok * (1.0 - q)  # good
        canary_faulty = np.array([f.version == "canary" and f.faulty for f in flows], dtype=bool)
        if not canary_faulty.any():
            onset_in = np.full(n_pieces, np.inf)
        return means, (phi if canary_faulty.any() else np.zeros(n_pieces)), onset_in

    def _overload(self, flows, rate, serving_by_service) -> dict:
        """Fraction of a Service's requests beyond what its serving pods can take (fails)."""
        if self.capacity is None:
            return {}
        out = {}
        for service in ("canary", "stable"):
            share = sum(f.share for f in flows if f.service == service)
            if share <= 0:
                continue
            capacity = serving_by_service.get(service, 0) * self.capacity
            load = rate * share
            out[service] = np.clip(1.0 - capacity / np.maximum(load, 1e-300), 0.0, 1.0)
        return out

    def _add(self, block: _Block, sign: int) -> None:
        # the pieces of one block lie in distinct slots, so fancy-index addition is exact
        self.table[:, block.slots] += sign * block.values

    # ------------------------------------------------------------------ committing

    def commit(self, t: float) -> None:
        """Count every drafted piece that ends by ``t`` into the blast radius."""
        while self.blocks:
            block = self.blocks[0]
            done = int(np.searchsorted(block.ends, t, side="right"))
            if done == 0:
                break
            self._account(block, slice(0, done))
            if done == block.ends.size:
                self.blocks.pop(0)
                continue
            block.trim_front(done)
            break
        self.committed_until = max(self.committed_until, min(t, self.drafted_until))

    def cut(self, t: float) -> None:
        """The world changes at ``t``: commit up to t (thinning the piece it cuts), discard
        the rest of the draft."""
        self.commit(t)
        if self.blocks:
            block = self.blocks[0]
            if block.starts[0] < t < block.ends[0]:
                part_means = self._means(
                    block.flows, block.starts[:1], np.array([t]), block.fault, block.serving
                )[0][:, :, 0]
                full = block.means[:, :, 0]
                ratio = np.divide(part_means, full, out=np.zeros_like(full), where=full > 0)
                part = self.rng.binomial(block.counts[:, :, 0], np.clip(ratio, 0.0, 1.0))
                head = _Block(
                    block.flows,
                    block.starts[:1],
                    np.array([t]),
                    block.slots[:1],
                    part_means[:, :, None],
                    part[:, :, None],
                    block.phi[:1],
                    block.onset_in[:1],
                )
                # the piece's tail after t is dropped with the rest of the draft
                self.table[:, block.slots[:1]] -= block.values[:, :1] - head.values
                self._account(head, slice(0, 1))
                block.trim_front(1)
            for other in self.blocks:
                self._add(other, -1)
            self.blocks.clear()
        self.drafted_until = t
        self.committed_until = t

    def _account(self, block: _Block, sel: slice) -> None:
        counts, means = block.counts[:, :, sel], block.means[:, :, sel]
        onset = block.onset_in[sel]
        totals = self.totals
        if totals.t_fault is None and np.isfinite(onset).any():
            totals.t_fault = float(onset[np.isfinite(onset)][0])
        starts, ends = block.starts[sel], block.ends[sel]
        for i, flow in enumerate(block.flows):
            if flow.version != "canary":
                continue
            failed, slow, good = (int(x) for x in counts[:, i].sum(axis=1))
            bad = failed + slow
            served = bad + good
            totals.failed += failed
            totals.slow += slow
            totals.bad += bad
            totals.requests += served
            totals.excess += bad - served * self.b0
            after = None  # the share of each piece after the fault began
            if totals.t_fault is not None:
                span = ends - starts
                after = np.clip((ends - np.maximum(starts, totals.t_fault)) / span, 0.0, 1.0)
            if bad:  # whose they were is drawn once per selector at the end (iid draws)
                per_piece = counts[0, i] + counts[1, i]
                late = 0 if after is None else int(self.user_rng.binomial(per_piece, after).sum())
                self.pending_bad[(flow.users, False)] += bad - late
                self.pending_bad[(flow.users, True)] += late
            if after is not None:
                expected = float((means[:, i].sum(axis=0) * after).sum())
                expected_bad = float(((means[0, i] + means[1, i]) * after).sum())
                if expected > 0:
                    term = self.exposure.setdefault(flow.users, [0.0, 0.0])
                    term[0] += expected
                    term[1] += expected_bad

    # ------------------------------------------------------------------ reading

    def _split_bad(self) -> None:
        """Give the bad requests to users ∝ activity: per selector, all at once (the draws are
        iid, so one draw of the total is the same in distribution as one per piece)."""
        for (selector, late), k in sorted(self.pending_bad.items(), key=repr):
            users = self.cells.draw(self.user_rng, k, selector)
            self.hurt[users] = True
            if late:
                self.hurt_after_fault[users] = True
        self.pending_bad.clear()

    def users_hurt(self) -> int:
        self._split_bad()
        return int(np.count_nonzero(self.hurt))

    def users_exposed(self, rng) -> int:
        """Users who reached the candidate after its fault began (for a release without a
        fault: at all): those with a bad answer since then, plus each other user with
        probability 1 − e^−(Λ − Λᵇ), their expected good
        candidate requests (Poisson thinning; the derivation is sim.users.ExposureTally's)."""
        self._split_bad()
        if not self.exposure:
            return int(np.count_nonzero(self.hurt_after_fault))
        good = {k: max(v[0] - v[1], 0.0) for k, v in self.exposure.items()}  # Λ − Λᵇ
        return self.cells.exposed(rng, good, self.hurt_after_fault)

    def observation(self, end: float, window: float, quantiles, series_step, rng) -> Observation:
        """What a metrics query sees over [end − window, end): whole scrape slots only."""
        s = self.slot
        j1 = int(end // s)
        j0 = max(0, j1 - max(1, round(window / s)))
        obs = self._window(j0, j1, quantiles, rng)
        if series_step:
            step = max(1, round(series_step / s))
            points = tuple(
                self._window(k, min(k + step, j1), quantiles, rng) for k in range(j0, j1, step)
            )
            obs = Observation(obs.start, obs.end, obs.canary, obs.stable, points)
        return obs

    def _window(self, j0: int, j1: int, quantiles, rng) -> Observation:
        n_c, e_c = int(self.c_req[j0:j1].sum()), int(self.c_err[j0:j1].sum())
        n_s, e_s = int(self.s_req[j0:j1].sum()), int(self.s_err[j0:j1].sum())
        phi = float(self.c_fault[j0:j1].sum()) / n_c if n_c else 0.0
        canary = WindowStats(n_c, e_c, self._quantiles(n_c, phi, quantiles, rng))
        stable = WindowStats(n_s, e_s, self._quantiles(n_s, 0.0, quantiles, rng))
        return Observation(j0 * self.slot, j1 * self.slot, canary, stable)

    def _quantiles(self, n: int, phi: float, quantiles, rng) -> dict:
        """The q-quantile of n latencies: the k-th order statistic, F⁻¹ of a Beta(k, n−k+1)."""
        if not n or not quantiles:
            return {}
        base = self.cw.world.baseline
        out = {}
        for q in quantiles:
            k = min(n, max(1, math.ceil(q * n)))
            u = float(rng.beta(k, n - k + 1))
            out[q] = self._mixture_ppf(u, phi, base)
        return out

    def _mixture_ppf(self, u: float, phi: float, base) -> float:
        if self.fault is None or phi <= 0 or not self.fault.changes_latency:
            return float(base.latency.ppf(u))
        fault_ppf = float(self.fault.latency_ppf(base, u, np.inf))
        if phi >= 1:
            return fault_ppf
        base_ppf = float(base.latency.ppf(u))
        lo, hi = min(base_ppf, fault_ppf), max(base_ppf, fault_ppf)
        if hi - lo < 1e-12:
            return lo

        def cdf_gap(x: float) -> float:
            mixed = phi * self.fault.latency_cdf(base, x, np.inf) + (1 - phi) * base.latency.cdf(x)
            return float(mixed) - u

        return float(optimize.brentq(cdf_gap, lo, hi))
