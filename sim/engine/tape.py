"""The data plane: requests drawn exactly, in scrape-slot pieces, never one by one (DESIGN §5).

Between two world changes the routing, the pods and the fault state are constant, so the counts
of a piece of time are independent Poisson draws of the integrated rates (failed, slow, and good
requests per flow: Poisson thinning). The tape keeps per-slot counts (what Prometheus would
scrape) for gates and alerts.

Drawing is done as a *draft* ahead of the clock, up to the next known event or a chunk, so that
an SLO alert firing inside it is found at its exact evaluation time; pieces are *committed* as
the clock passes them, and counted into the blast radius (*settled*) in bulk, once per draft: at
the end, or when a world change at t cuts the draft. A cut keeps the piece it splits only up to
t — a binomial thinning, exact for a Poisson process — and discards the rest of the draft,
which is then drawn again under the new world. What the settled pieces count (either version's
bad requests against the old version at full capacity, and whom they hurt) is
sim/engine/blast.py's.
"""

from __future__ import annotations

import math

import numpy as np

from policies.kept import kept_for_the_last
from policies.measures import MEAN, Observation, WindowStats
from sim.engine.blast import BlastRadius, Totals
from sim.engine.cells import UserCells
from sim.engine.fault_arrival import FaultArrival, FaultState, sources
from sim.engine.flows import FlowSet
from sim.engine.latency import mixture_mean, mixture_ppf
from sim.engine.onset import CandidateFault
from sim.world.rates import Constant

__all__ = ["Tape"]

_FEW = 12  # a cut piece's counts up to this many are thinned one by one (measured: one call on
# arrays costs about as much as 15 scalar draws)


_shared: dict = {}  # _grid's arrays


def _grid(slot: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot edges k × slot and slot numbers k for k up to at least n, read-only: the numbers of
    np.arange(first, last, dtype=float) * slot (whole numbers as floats, times the slot). One
    slot length's are kept (a run has one), so a sweep over slot lengths holds one grid."""
    found = _shared.get("grid")
    if found is None or found[0] != slot or found[2].size < n:
        grown = 2 * found[2].size if found is not None and found[0] == slot else 0
        k = np.arange(max(n, 1024, grown), dtype=np.intp)
        found = _shared["grid"] = (slot, k * slot, k)  # (k as a float, times the slot)
        found[1].flags.writeable = k.flags.writeable = False
    return found[1], found[2]


@kept_for_the_last
def _setup_of(cw, fault) -> tuple:
    """What every tape of ``cw`` and ``fault`` reads: the constant rate (None: it varies), the
    baseline's and the faulty candidate's request probabilities (once its fault is on, no ramp;
    NaN without a fault), and the candidate's fault over pieces."""
    world, p0, p1, q1 = cw.world, cw.baseline_failure, math.nan, math.nan
    objective, profile = world.latency_objective, world.traffic.rate
    if fault is not None:
        p1 = float(fault.failure_probability(p0, 0.0))
        q1 = float(fault.slow_probability(world.baseline, objective, 0.0))
    rate = profile.rate_ if isinstance(profile, Constant) else None
    q0 = cw.baseline_slow
    candidate = CandidateFault(fault, None if rate is not None else world.traffic, p0, q0, p1, q1)
    return (rate, p0, q0, cw.baseline_bad, objective, p1, q1, candidate)


class _Block:
    """One draft: pieces with identical flows, their expected and drawn counts, and their
    contribution to the per-slot series (computed once, so adding or removing is one update)."""

    __slots__ = (
        "counts",
        "dns",
        "ends",
        "fault",
        "faulted",
        "flows",
        "means",
        "over",
        "serving",
        "slots",
        "starts",
        "values",
    )

    def __init__(
        self, flows, starts, ends, slots, means, counts, phi, faulted, fault=None, serving=None
    ):
        self.flows, self.starts, self.ends, self.slots = flows, starts, ends, slots
        self.dns: tuple | None = None  # a DNS switch's piece: (start, TTL, moved share)
        self.means, self.counts = means, counts
        self.over: np.ndarray | None = None  # per flow and piece, its Service's overload share
        self.faulted = faulted  # per piece, ∫ of the faulted requests' rate (fault_arrival.py)
        self.fault, self.serving = fault, serving
        self.values = self.slot_values(counts, phi)

    def slot_values(self, counts: np.ndarray, phi: np.ndarray | float | list) -> np.ndarray:
        """Contribution to the seven per-slot series, per piece: (7, pieces). (Counts as floats:
        sums of whole numbers are exact in any order, and numpy's float product is the fast one.)
        A float ``phi`` (0 or 1 in every piece) times a whole count >= 0 is +0.0 or the count;
        a list, per Service's rows (``CandidateFault.phi``)."""
        out = self.flows.by_slot @ counts.reshape(-1, counts.shape[2]).astype(float)
        if isinstance(phi, list):  # per Service: its requests times its own share
            served = counts.sum(axis=0)
            out[2] = sum(share * served[rows].sum(axis=0) for rows, share in phi)
        elif not isinstance(phi, float):
            out[2] *= phi
        elif phi == 0.0:
            out[2].fill(0.0)
        return out

    def trim_front(self, n: int) -> None:
        self.starts, self.ends, self.slots = self.starts[n:], self.ends[n:], self.slots[n:]
        self.means, self.counts = self.means[:, :, n:], self.counts[:, :, n:]
        self.values = self.values[:, n:]
        if self.over is not None:
            self.over = self.over[:, n:]
        if self.faulted is not None:
            self.faulted = self.faulted[n:]


class Tape:
    """Per-slot counts plus the committed blast radius of one replication."""

    def __init__(
        self,
        cw,
        fault,
        slot: float,
        horizon: float,
        cells: UserCells,
        rng,
        user_rng,
        *,
        replicas: int,
        make_cause_rng,
        make_thin_rng,
        fault_rng=None,
    ):
        self.cw, self.fault, self.slot = cw, fault, float(slot)
        self.traffic = cw.world.traffic
        self.cells, self.rng, self.user_rng = cells, rng, user_rng
        setup = _setup_of(cw, fault)
        self.constant_rate, self.p0, self.q0, self.b0, self.objective, self.p1, self.q1 = setup[:7]
        self.candidate = setup[7]
        self.capacity = cw.world.platform.capacity_per_pod
        n = math.ceil(horizon / self.slot) + 2
        # the per-slot series, rows of one table so a block is added in one indexed update
        self.table = np.zeros((7, n))
        self.c_req, self.c_err, self.c_fault = self.table[0], self.table[1], self.table[2]
        self.s_req, self.s_err, self.svc_req, self.svc_bad = self.table[3:]
        self.blocks: list[_Block] = []
        self.committed_until = self.drafted_until = 0.0
        full = None if self.capacity is None else replicas * self.capacity
        varying = None if self.constant_rate is not None else self.traffic
        self.blast = BlastRadius(
            cells,
            self.b0,
            full,
            user_rng,
            make_cause_rng,
            varying,
            capacity=self.capacity or 0.0,
            make_thin_rng=make_thin_rng,
            coupled=self._coupled(),
        )
        self.totals: Totals = self.blast.totals
        self.arrival = FaultArrival(self.traffic, self.constant_rate, fault_rng)

    def _coupled(self) -> tuple[float, float] | None:
        """The baseline's failure and slow probabilities when the release can make one way a
        request goes bad likelier and another less likely (overload relieved by extra pods,
        a fault with fewer errors or faster answers): then release-caused requests are counted
        per way (sim/engine/blast.py); else None, and b − b_ref says it."""
        improves = self.p1 < self.p0 or self.q1 < self.q0  # (False without a fault: NaN)
        return (self.p0, self.q0) if self.capacity is not None or improves else None

    # ------------------------------------------------------------------ drafting

    def draft(
        self,
        t0: float,
        t1: float,
        flows: FlowSet,
        fault: FaultState,
        serving_by_service: dict[str, int],
        dns: tuple | None = None,
    ) -> None:
        """Draw the pieces of [t0, t1) under one world state (t0 == drafted_until); ``dns``:
        one piece of a DNS switch, (its start, TTL, the share of requests from moved clients)."""
        if t1 <= t0:
            return
        s = self.slot
        first, last = int(t0 // s), math.ceil(t1 / s)
        edges, indices = _grid(s, last + 1)
        starts, ends = edges[first:last].copy(), edges[first + 1 : last + 1].copy()
        # clipped to [t0, t1] as np.maximum/np.minimum would: only the first start and the last
        # end can lie beyond (first is floor(t0 / s) exactly, so edge 1 rounds to >= t0, and
        # t1 / s >= last - 1, so edge last - 1 rounds to <= t1)
        if starts.item(0) < t0:
            starts[0] = t0
        if ends.item(-1) > t1:
            ends[-1] = t1
        if ends.item(0) > starts.item(0) and ends.item(-1) > starts.item(-1):  # no empty piece
            slots = indices[first:last]
        else:
            keep = ends > starts
            starts, ends = starts[keep], ends[keep]
            slots = (starts // s).astype(np.intp)
        parts = self.candidate.parts(flows, starts, ends, fault)
        means, over = self._means(flows, starts, ends, parts, serving_by_service)
        phi, faulted = self._reach(flows, starts, ends, fault, parts, dns)
        counts = self.rng.poisson(means)
        block = _Block(
            flows, starts, ends, slots, means, counts, phi, faulted, fault, serving_by_service
        )
        block.dns, block.over = dns, over
        self._add(block, +1)
        self.blocks.append(block)
        self.drafted_until = t1

    def _reach(self, fs, starts, ends, fault: FaultState, parts: list, dns: tuple | None):
        """Per piece, the share of the candidate's requests whose pod's fault is active (for
        latency mixtures; a float, 0 or 1, when the same in every piece) and, until the fault
        has begun, the users' requests expected to meet it (``FaultArrival.mass``; None:
        none)."""
        phi = self.candidate.phi(fs, parts)
        if isinstance(phi, float) and phi == 0.0:
            return 0.0, None
        if not fs.any_faulty or self.totals.t_fault is not None:
            return phi, None
        return phi, self.arrival.mass(fs, starts, ends, fault, dns)

    def _means(
        self, fs, starts, ends, parts, serving_by_service
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Expected failed, slow and good requests per flow and piece, (3, flows, pieces), and
        the share of them beyond their Service's capacity (None: no capacity is set)."""
        if self.constant_rate is not None:
            lam = self.constant_rate * (ends - starts)
        else:
            lam = np.asarray(self.traffic.integral(starts, ends), dtype=float)
        base = fs.share[:, None] * lam
        if fs.rate is not None:  # synthetic requests come at their own rate
            base = base + fs.rate[:, None] * (ends - starts)
        if self.capacity is None and len(parts) == 1 and parts[0].on is not None:
            # the same request probabilities in every piece: one (3, flows) table per flows
            p_c, q_c = self.candidate.probabilities(parts[0])
            return self._probabilities(fs, p_c, q_c)[0] * base, None
        p, q = self.candidate.per_flow(fs, parts, starts, ends)  # (flows, 1 or pieces)
        p[fs.unserved] = 1.0
        q[fs.unserved] = 0.0
        ov = self._overload(fs, lam, starts, ends, serving_by_service)
        means = np.empty((3, len(fs), starts.size))
        means[0] = base * (ov + (1.0 - ov) * p)  # failed
        ok = base * (1.0 - ov) * (1.0 - p)
        means[1] = ok * q  # slow
        means[2] = ok * (1.0 - q)  # good
        return means, None if self.capacity is None else ov

    def _probabilities(self, fs, p_c: float, q_c: float) -> tuple[np.ndarray, list]:
        """Per flow, the probability that a request fails, is slow, is good (no overload): as
        a (3, flows, 1) array to broadcast over pieces, and as (3, flows) lists."""
        found = fs.probabilities.get((p_c, q_c, self.p0, self.q0))
        if found is None:
            p = np.where(fs.faulty, p_c, self.p0)
            q = np.where(fs.faulty, q_c, self.q0)
            p[fs.unserved], q[fs.unserved] = 1.0, 0.0
            table = np.stack([p, (1.0 - p) * q, (1.0 - p) * (1.0 - q)])
            found = (table[:, :, None], table.tolist())
            fs.probabilities[(p_c, q_c, self.p0, self.q0)] = found
        return found

    def _overload(self, fs, lam, starts, ends, serving_by_service):
        """Fraction of a Service's requests beyond what its serving pods can take (fails):
        0, or per flow and piece. Under time-varying traffic, the requests beyond capacity
        over each piece (``excess``; its mean rate would undercount them); with a load test
        as well, their share of the piece's requests, the same for each flow."""
        if self.capacity is None:
            return 0.0
        span = ends - starts
        varying = self.constant_rate is None
        rate = lam / span
        out = np.zeros((len(fs), rate.size))
        for service, rows in (("canary", fs.service_canary), ("stable", ~fs.service_canary)):
            share = fs.share[rows].sum()
            extra = 0.0 if fs.rate is None else float(fs.rate[rows].sum())  # load tests
            if share <= 0 and extra <= 0:
                continue
            capacity = serving_by_service.get(service, 0) * self.capacity
            if varying and share > 0:
                beyond = share * self.traffic.excess(starts, ends, (capacity - extra) / share)
                load = share * lam + extra * span
                out[rows] = np.divide(beyond, load, out=np.zeros_like(load), where=load > 0)
                continue
            load = rate * share if fs.rate is None else rate * share + extra
            out[rows] = np.clip(1.0 - capacity / np.maximum(load, 1e-300), 0.0, 1.0)
        return out

    def _add(self, block: _Block, sign: int, start: int = 0) -> None:
        """Add (+1) or remove (-1) pieces ``start:`` of a block (in distinct, consecutive slots)."""
        slots, values = block.slots, block.values
        if start:
            slots, values = slots[start:], values[:, start:]
        if not slots.size:
            return
        first, last = slots.item(0), slots.item(-1)
        if last - first + 1 == slots.size:  # a view, updated in place (not set back)
            columns = self.table[:, first : last + 1]
            if sign > 0:
                columns += values
            else:
                columns -= values
        elif sign > 0:
            self.table[:, slots] += values
        else:
            self.table[:, slots] -= values

    # ------------------------------------------------------------------ committing

    def commit(self, t: float) -> None:
        """The clock has reached ``t``: every drafted piece that ends by then counts. (The
        counting itself waits for a cut or the end: a draft nobody cuts never changes.)"""
        if t > self.committed_until:  # (never beyond drafted_until, which is never behind it)
            drafted = self.drafted_until
            self.committed_until = drafted if drafted < t else t  # min(t, drafted), no call

    def settle(self) -> Totals:
        """Count the committed pieces into the blast radius; returns the totals so far."""
        self._settle(self.committed_until)
        return self.totals

    def _settle(self, t: float) -> None:
        while self.blocks:
            block = self.blocks[0]
            done = int(block.ends.searchsorted(t, side="right"))
            if done == 0:
                break
            self._account(block, slice(0, done))
            if done == block.ends.size:
                self.blocks.pop(0)
                continue
            block.trim_front(done)
            break

    def cut(self, t: float) -> None:
        """The world changes at ``t``: commit up to t (thinning the piece it cuts), discard
        the rest of the draft."""
        committed = [0] * len(self.blocks)  # per block, its pieces that end by t
        for i, block in enumerate(self.blocks):
            k = committed[i] = int(block.ends.searchsorted(t, side="right"))
            if k < block.ends.size:  # the first block that t cuts: none after it is committed
                if block.starts.item(k) < t:
                    self._thin(block, k, t)  # (its piece now ends at t)
                    committed[i] = k + 1
                break
        # as _settle(t), then the rest of each block out of the series (no trim: all go)
        for block, done in zip(self.blocks, committed):
            if done:
                self._account(block, slice(0, done))
            self._add(block, -1, done)
        self.blocks.clear()
        self.drafted_until = t
        self.committed_until = t

    def _thin(self, block: _Block, k: int, t: float) -> None:
        """Piece k of the block becomes [start, t): each count keeps each of its requests with
        probability (mean up to t) / (mean of the piece), exact for a Poisson process."""
        block.ends[k] = t
        piece, fs = slice(k, k + 1), block.flows
        parts = self.candidate.parts(fs, block.starts[piece], block.ends[piece], block.fault)
        part_means = self._piece_means(block, k, parts)  # (failed/slow/good, flow), flat
        full = block.means[:, :, k]
        counts = block.counts[:, :, k]  # (a view: thinned in place)
        if full.size <= _FEW:  # one by one: the same draws, in the same order, as one call
            binomial = self.rng.binomial  # on the arrays, whose checks cost more than a few draws
            # (of 0 requests 0 are kept, with no draw: numpy's random_binomial returns at once)
            thinned = [
                binomial(n, min(max(part / whole, 0.0), 1.0) if whole > 0 else 0.0) if n else 0
                for n, part, whole in zip(
                    counts.ravel().tolist(), part_means, full.ravel().tolist()
                )
            ]
            counts.flat = thinned
            kept = np.array(thinned, dtype=float)
        else:
            part = np.array(part_means).reshape(full.shape)
            ratio = np.divide(part, full, out=np.zeros_like(full), where=full > 0)
            counts[...] = self.rng.binomial(counts, np.clip(ratio, 0, 1))
            kept = counts.ravel().astype(float)
        full.flat = part_means
        if block.faulted is not None:  # the piece's faulted requests, up to t
            block.faulted[k] = self.arrival.piece_mass(block, k)
        # the piece's share of the per-slot series, as slot_values has it for one piece
        values = fs.by_slot @ kept
        phi = self.candidate.phi(fs, parts)
        if isinstance(phi, list):
            values[2] = block.slot_values(kept.reshape(3, -1, 1), phi)[2, 0]
        else:
            values[2] *= phi if isinstance(phi, float) else phi.item(0)
        column = self.table[:, block.slots.item(k)]  # (a view: updated in place)
        column += values - block.values[:, k]
        block.values[:, k] = values

    def _piece_means(self, block: _Block, k: int, parts: list) -> list[float]:
        """``_means`` of piece k of a block alone, flattened (its overload kept in the block's).
        When those are products of scalars (constant traffic, no overload, no load test, one
        fault state throughout) they are taken in Python floats: the same IEEE operations in
        the same order as numpy's."""
        fs = block.flows
        start, end = block.starts.item(k), block.ends.item(k)
        uniform = len(parts) == 1 and parts[0].on is not None
        if self.constant_rate is not None and self.capacity is None and fs.rate is None and uniform:
            p_c, q_c = self.candidate.probabilities(parts[0])
            probabilities = self._probabilities(fs, p_c, q_c)[1]
            lam = self.constant_rate * (end - start)
            bases = [share * lam for share in fs.share.tolist()]  # as ``base`` in _means
            return [p * base for row in probabilities for p, base in zip(row, bases)]
        piece = slice(k, k + 1)
        means, over = self._means(fs, block.starts[piece], block.ends[piece], parts, block.serving)
        if over is not None and block.over is not None:  # (kept current with the means)
            block.over[:, k] = over[:, 0]
        return means[:, :, 0].ravel().tolist()

    def _account(self, block: _Block, sel: slice) -> None:
        flows = block.flows
        can_change = self.fault is not None or self.capacity is not None or flows.any_unserved
        if self.totals.t_fault is None:  # the first faulted request, if in these pieces
            self.totals.t_fault = self.arrival.commit(block, sel)
            if self.totals.t_fault is not None:  # whose it may be, for users_exposed
                self.blast.first_faulted = sources(block.flows)
        self.blast.account(block, sel, can_change)

    # ------------------------------------------------------------------ reading

    def observation(self, end: float, window: float, quantiles, series_step, rng) -> Observation:
        """What a metrics query sees over [end − window, end): whole scrape slots only (none
        before the first scrape it may see: ``end`` below 0, under a scrape delay)."""
        s = self.slot
        j1 = max(0, int(end // s))  # (a negative slice end would read the drafted future)
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
        # the request and error rows hold whole numbers (sums of counts, below 2**53): a Python
        # sum of a slice's elements is exact, so equal to numpy's (pairwise) sum and cheaper
        req_c, err_c, _, req_s, err_s = self.table[:5, j0:j1].tolist()
        n_c, e_c, n_s, e_s = int(sum(req_c)), int(sum(err_c)), int(sum(req_s)), int(sum(err_s))
        # a version's series exist once it has served (the stable always has): 0/0 is NaN then,
        # an empty vector before (policies/measures.py)
        served = bool(n_c) or bool(self.table[0, :j0].any())
        if quantiles:
            # the faulty row (counts × share of faulty pods) is not whole: numpy's sum, as before
            fault = float(np.add.reduce(self.table[:5, j0:j1], axis=1)[2])
            phi = fault / n_c if n_c else 0.0
            latency_c = self._quantiles(n_c, phi, quantiles, rng)
            latency_s = self._quantiles(n_s, 0.0, quantiles, rng)
        else:
            latency_c, latency_s = {}, {}
        canary = WindowStats(n_c, e_c, latency_c, served)
        stable = WindowStats(n_s, e_s, latency_s, True)
        return Observation(j0 * self.slot, j1 * self.slot, canary, stable)

    def _quantiles(self, n: int, phi: float, quantiles, rng) -> dict:
        """The q-quantile of n latencies: the k-th order statistic, F⁻¹ of a Beta(k, n−k+1);
        for ``MEAN``, their mean (sim/engine/latency.py)."""
        if not n or not quantiles:
            return {}
        base, fault = self.cw.world.baseline, self.fault
        out = {}
        for q in quantiles:
            if q == MEAN:
                out[q] = mixture_mean(fault, base, n, phi, rng)
                continue
            k = min(n, max(1, math.ceil(q * n)))
            u = float(rng.beta(k, n - k + 1))
            out[q] = mixture_ppf(fault, base, u, phi)
        return out
