"""The blast radius: what the tape's committed pieces count into the outcome (DESIGN §5).

The tape (sim/engine/tape.py) draws, per flow and piece of time, Poisson counts of failed, slow
and good requests. Here they are counted as the clock passes them, against one counterfactual:
**the old version alone, at full capacity** (``replicas`` serving pods, every request), whose
bad probability is b_ref = o + (1 − o)·b₀, b₀ the baseline's and o the overload of full
capacity (0 unless even that is short: ``capacityPerPod`` × replicas below the rate).

* The new version's requests all count: its bad ones are ``bad_new``.
* The old version's requests count where the release left it worse (or better) off than the
  counterfactual — overloaded because pods were taken away or are still starting, or with no
  serving pod behind its Service (an abort or undo onto scaled-down pods): ``bad_old``.
  Elsewhere its bad probability *is* the counterfactual's, so those requests add nothing to the
  excess's mean; they are left out, and their noise with them.
* ``excess``: bad requests minus b_ref × requests, over the pieces counted.
* Release-caused: of a flow's bad requests, each is caused independently with probability
  c/b (b the flow's bad probability in the piece), c the probability that a request is bad
  and its counterfactual, on the same draws for failure, overload and slowness, is not
  (``_caused_means``): c = b − b_ref (none when b ≤ b_ref) whenever the release makes no way
  of going bad less likely, so the caused mean is the excess's; more when it does. This
  thinning of Poisson counts makes the caused requests Poisson of the rate times c.

Whose requests: the new version's bad requests are split over users ∝ activity once per user
selection (all at once: the draws are iid, so one draw of the total is the same in
distribution as one per piece): those users are ``users_with_bad``. Of a user's c bad requests
in one selection, Binomial(c, s) are caused, s the selection's expected caused over expected bad
requests: a request of a superposition of Poisson pieces comes from piece i with probability
∝ its mean and is caused with that piece's share, so it is caused with probability s,
independently of the others and of its user — exact, and one vectorised draw per selection
(``_caused_users``).
(Bad requests are pooled before and after t_fault apart, for users_exposed; the fault's caused
ones go with those after it, so a user it hurt was exposed to it.) The old
version's caused requests, drawn per piece, get users of their own. A user with at least one
caused request is hurt. The caused draws use a random stream of their own, so every other draw
— and ``users_with_bad`` and ``users_exposed`` with them — is what an engine without them
draws.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from sim.engine.cells import Drawn, is_each
from sim.engine.short_capacity import changed_part

__all__ = ["BlastRadius", "Totals"]

_ROUNDING = 1e-9  # |b − b_ref| below this share of the requests is rounding, not a change


@dataclass
class Totals:
    """Blast radius so far, committed pieces only."""

    requests: int = 0  # served by the new version
    failed: int = 0  # either version
    slow: int = 0
    bad_new: int = 0
    bad_old: int = 0
    caused: int = 0  # the new version's are drawn with their users, at the end
    excess: float = 0.0
    t_fault: float | None = None

    @property
    def bad(self) -> int:
        return self.bad_new + self.bad_old


class BlastRadius:
    """The counting side of one replication's tape: totals, and who was hurt or exposed."""

    def __init__(
        self,
        cells,
        b0: float,
        full_capacity: float | None,
        user_rng,
        make_cause_rng,
        varying=None,
        *,
        capacity: float = 0.0,
        make_thin_rng=None,
        coupled: tuple[float, float] | None = None,
    ):
        """With ``varying`` traffic and a ``full_capacity``: ``capacity``, a pod's, and
        ``make_thin_rng()``, the stream that thins the old version's pieces to where their odds
        change (sim/engine/short_capacity.py). ``coupled``: the baseline's (p₀, q₀) when the
        release may make one way of going bad less likely (``_caused_means``)."""
        self.cells, self.b0, self.full_capacity = cells, b0, full_capacity
        self.varying = varying  # the traffic, when its rate varies (None: constant)
        self.capacity, self.make_thin_rng = capacity, make_thin_rng
        self.coupled = coupled
        self.user_rng = user_rng
        self.make_cause_rng = make_cause_rng  # the same generator at every call, made at the first
        self.totals = Totals()
        # per user (made when first marked: most replications mark few of them): "with_bad",
        # any bad answer from the new version; "hurt", a release-caused bad answer, either
        # version; "late", bad answers once the fault began
        self._marks: dict[str, np.ndarray] = {}
        # a mark while draws alone set it, as in most replications: counted as drawn (by the
        # users' positions in their cells), with no byte per user and no users gathered
        self._drawn: dict[str, list[Drawn]] = {}
        self.pending_bad: collections.Counter = collections.Counter()  # (selector, late) -> n
        # (selector, late) -> [bad, caused] requests expected of the new version
        self.pools: collections.defaultdict = collections.defaultdict(lambda: [0.0, 0.0])
        self.pending_caused_old: collections.Counter = collections.Counter()  # selector -> n
        # selector -> the new version's good requests after t_fault, as drawn by the tape; and
        # (selector, good requests, share after t_fault) of the pieces t_fault splits
        self.late_good: collections.Counter = collections.Counter()
        self._late_good_split: list = []
        self._late_bad = 0  # the new version's bad requests after t_fault
        # (selector, share) of the flows the first faulted request, at t_fault, may come from
        self.first_faulted: list = []
        self.joined: set = set()  # cookie joiners (each reached the candidate) after the onset

    def __repr__(self) -> str:
        return f"BlastRadius({self.totals})"

    # ------------------------------------------------------------------ counting

    def _full_over(self, block, sel: slice):
        """The counterfactual's share of requests beyond full capacity: 0.0, or per piece."""
        if self.full_capacity is None:
            return 0.0
        means = block.means[:, :, sel]
        shadow = block.flows.shadow
        if shadow is not None:  # the counterfactual serves the users' requests only
            means = means[:, ~shadow]
        served = means.sum(axis=(0, 1))  # the users' expected requests per piece
        if self.varying is not None:  # the requests beyond full capacity (a piece's mean rate
            # would undercount them), of the users' rate s·r(t), s their flows' shares
            share = block.flows.share if shadow is None else block.flows.share[~shadow]
            s = float(share.sum())
            full = self.full_capacity / max(s, 1e-300)
            beyond = s * self.varying.excess(block.starts[sel], block.ends[sel], full)
            over = np.divide(beyond, served, out=np.zeros_like(served), where=served > 0)
        else:
            rate = served / (block.ends[sel] - block.starts[sel])
            over = np.clip(1.0 - self.full_capacity / np.maximum(rate, 1e-300), 0.0, 1.0)
        return over if over.any() else 0.0

    @staticmethod
    def _change(means: np.ndarray, b_ref) -> np.ndarray:
        """Per flow and piece: expected bad requests minus the counterfactual's (rounding to 0)."""
        total = np.add.reduce(means, axis=0)  # what ``sum`` runs, without its wrapper
        change = means[0] + means[1] - total * b_ref
        change[np.abs(change) <= _ROUNDING * total] = 0.0
        return change

    def _caused_means(self, means: np.ndarray, b_ref, over, full) -> np.ndarray:
        """The new version's release-caused bad requests expected, per flow and piece: those
        bad whose counterfactual, on the same draws, is not. A request goes bad three ways,
        each on a draw of its own that the counterfactual shares: it fails (p; p₀ there), it
        is overloaded (o, its Service's share beyond capacity; f there, full capacity's), it is
        slow (q; q₀). So it is caused with probability (1 − p₀)(1 − q₀)(1 − f) − (1 − max(p,
        p₀))(1 − max(q, q₀))(1 − max(o, f)), which is b − b_ref when no way is less likely than
        the counterfactual's (``coupled`` None) but more when one is: extra pods relieving an
        overload do not make up for the fault's errors (sim/engine/reference.py counts so).
        p, q and o are the flow's in the piece (its means give 1 − p and 1 − q given o); o and
        f are each the request-weighted share of the piece, and one of them is the larger
        throughout it (both fall with the capacity per request of the same rate)."""
        if self.coupled is None:
            return np.maximum(self._change(means, b_ref), 0.0)
        p0, q0 = self.coupled
        total = np.add.reduce(means, axis=0)
        kept = total if over is None else total * (1.0 - over)  # not overloaded
        ok, good = means[1] + means[2], means[2]  # not failed; and not slow
        zero = np.zeros_like(total)
        not_p = np.minimum(np.divide(ok, kept, out=zero.copy(), where=kept > 0), 1.0 - p0)
        not_q = np.minimum(np.divide(good, ok, out=zero.copy(), where=ok > 0), 1.0 - q0)
        not_o = np.minimum(np.divide(kept, total, out=zero, where=total > 0), 1.0 - full)
        caused = total * ((1.0 - p0) * (1.0 - q0) * (1.0 - full) - not_p * not_q * not_o)
        caused[caused <= _ROUNDING * total] = 0.0
        return caused

    def _caused(self, bad: np.ndarray, means: np.ndarray, change: np.ndarray) -> np.ndarray:
        """Release-caused bad requests per flow (of the old version): each bad one of a piece
        with probability (b − b_ref)/b (``_caused_means`` with p = p₀ and q = q₀: only an
        overload beyond full capacity's causes any)."""
        expected_bad = means[0] + means[1]
        share = np.divide(
            change, expected_bad, out=np.zeros_like(change), where=(change > 0) & (bad > 0)
        )
        return self.make_cause_rng().binomial(bad, np.minimum(share, 1.0)).sum(axis=1)

    def account(self, block, sel: slice, can_change: bool) -> None:
        """Count pieces ``sel`` of a block. ``can_change``: a request of it may be more (or
        less) likely bad than the counterfactual's (a fault, finite capacity, no pods)."""
        totals = self.totals  # (t_fault: set by the tape, sim/engine/fault_arrival.py)
        flows = block.flows
        full = self._full_over(block, sel) if can_change else 0.0  # full capacity's overload
        b_ref = self.b0 if isinstance(full, float) else full + (1.0 - full) * self.b0
        old_can_change = self.full_capacity is not None or flows.any_unserved
        if old_can_change and flows.stable_idx.size:  # else the old version is the reference
            self._account_old(block, sel, b_ref)
        idx = flows.canary_idx
        if not idx.size:
            return
        rows = flows.canary_rows  # a slice if contiguous: the arrays below are views
        counts = block.counts[:, rows, sel]  # (failed/slow/good, canary flows, pieces)
        failed_f, slow_f, good_f = np.add.reduce(counts, axis=2).tolist()  # per flow (few)
        failed, slow = sum(failed_f), sum(slow_f)
        served = failed + slow + sum(good_f)
        totals.failed += failed
        totals.slow += slow
        totals.bad_new += failed + slow
        totals.requests += served
        if isinstance(b_ref, float):
            totals.excess += failed + slow - served * b_ref
        else:
            totals.excess += failed + slow - float(counts.sum(axis=(0, 1)) @ b_ref)
        n_bad = [a + b for a, b in zip(failed_f, slow_f)]
        means = block.means[:, rows, sel]  # (failed/slow/good, canary flows, pieces)
        bad_means = means[0] + means[1]
        bad_sums = np.add.reduce(bad_means, axis=1).tolist()  # per flow, each row summed alone
        selectors = flows.canary_users
        caused_means = None
        if can_change:
            over = None if block.over is None else block.over[rows, sel]
            caused_means = self._caused_means(means, b_ref, over, full)
        late = [0] * idx.size
        after = None  # the share of each piece after the fault began
        late_caused = None
        late_good = good_f
        split_good = None  # the good requests of the pieces t_fault splits, and their share
        if totals.t_fault is not None and totals.t_fault <= block.starts[sel.start]:
            late, after = n_bad, 1.0  # all of it after the onset
            summed = np.add.reduce(means, axis=2)  # (as ``sum``, without its wrapper)
            expected, expected_bad = np.add.reduce(summed, axis=0), summed[0] + summed[1]
            late_caused = None if caused_means is None else np.add.reduce(caused_means, axis=1)
        elif totals.t_fault is not None:
            starts, ends = block.starts[sel], block.ends[sel]
            after = np.clip((ends - np.maximum(starts, totals.t_fault)) / (ends - starts), 0, 1)
            # whose bad requests came after the onset: all of a piece wholly after it, a
            # binomial share of the piece it splits
            bad = counts[0] + counts[1]  # (flows, pieces)
            late = bad[:, after >= 1].sum(axis=1)
            late_good = counts[2][:, after >= 1].sum(axis=1).tolist()
            split = (after > 0) & (after < 1)
            if split.any():
                late += self.user_rng.binomial(bad[:, split], after[split]).sum(axis=1)
                split_good = (counts[2][:, split], after[split])
            expected = means.sum(axis=0) @ after
            expected_bad = bad_means @ after
            if caused_means is not None:  # the fault's caused ones come after its onset
                late_caused = np.minimum(caused_means, bad_means * after).sum(axis=1)
        # whose they were is drawn once per selector at the end; what the bad ones of each pool
        # are expected to be, and to be caused (the share): before the onset, the early pool only
        for f, users in enumerate(selectors):
            if n_bad[f]:
                self.pending_bad[(users, False)] += int(n_bad[f] - late[f])
            caused_f = 0.0 if caused_means is None else float(np.add.reduce(caused_means[f]))
            early = self.pools[(users, False)]
            if after is None:
                early[0] += bad_sums[f]
                early[1] += caused_f
                continue
            if n_bad[f]:
                self.pending_bad[(users, True)] += int(late[f])
                self._late_bad += int(late[f])
            late_bad = float(expected_bad[f])
            late_c = 0.0 if late_caused is None else float(late_caused[f])
            later = self.pools[(users, True)]
            early[0] += bad_sums[f] - late_bad
            early[1] += caused_f - late_c
            later[0] += late_bad
            later[1] += late_c
            if expected[f] > 0 and is_each(users[1]) and isinstance(after, float):
                self.joined.add(self._joined_by(users, float(expected[f])))
            elif expected[f] > 0:
                self.late_good[users] += int(late_good[f])
                if split_good is not None:  # their late share is drawn with the users
                    self._late_good_split.append((users, split_good[0][f], split_good[1]))

    def _joined_by(self, selector, expected: float):
        """The joiners of a piece, each of whom sent its joining request: the range of its
        cookie keys up to where the piece ended (W grows with the requests: a piece cut at t
        holds the share ``expected`` / (joiners of the whole piece) of the range)."""
        key, order, lo, hi = selector
        n = self.cells.members(selector).size
        if n and expected < n * (1.0 - 1e-9):
            hi = lo + (hi - lo) * expected / n
        return (key, order, lo, hi)

    def _account_old(self, block, sel: slice, b_ref) -> None:
        """The old version's flows in the pieces where the release changed their odds."""
        rows = block.flows.stable_idx
        means = block.means[:, rows, sel]
        change = self._change(means, b_ref)
        counted = change != 0
        if not counted.any():
            return
        counts = block.counts[:, rows, sel]  # (failed/slow/good, flows, pieces)
        if self.varying is not None and self.full_capacity is not None:
            part = changed_part(
                self.varying, self.capacity, self.full_capacity, self.b0, block, sel, rows, means
            )
            if part is not None:  # thinned to where the release changes the old one's odds
                shares, part_ref = part
                b_ref = np.where(np.isnan(part_ref), b_ref, part_ref)
                counts = self.make_thin_rng().binomial(counts, shares)
                means = means * shares
                change = self._change(means, b_ref)
                counted = change != 0
        counts = counts * counted
        failed, slow = int(counts[0].sum()), int(counts[1].sum())
        totals = self.totals
        totals.failed += failed
        totals.slow += slow
        totals.bad_old += failed + slow
        served = counts.sum(axis=(0, 1))  # per piece
        if isinstance(b_ref, float):
            expected = served.sum() * b_ref
        elif b_ref.ndim == 1:
            expected = served @ b_ref
        else:  # per flow and piece
            expected = (counts.sum(axis=0) * b_ref).sum()
        totals.excess += failed + slow - float(expected)
        if failed + slow and (change > 0).any():
            caused = self._caused(counts[0] + counts[1], means, change)
            totals.caused += int(caused.sum())
            for f, i in enumerate(rows):
                if caused[f]:
                    self.pending_caused_old[block.flows.flows[i].users] += int(caused[f])

    # ------------------------------------------------------------------ users

    def _mark(self, name: str, drawn: Drawn) -> None:
        found = self._marks.get(name)
        if found is not None:
            found[drawn.users] = True
        else:
            self._drawn.setdefault(name, []).append(drawn)

    def _marked(self, name: str) -> np.ndarray:
        found = self._marks.get(name)
        if found is None:
            found = self._marks[name] = self.cells.users_mask(self._drawn.pop(name, None))
        return found

    @property
    def with_bad(self) -> np.ndarray:
        return self._marked("with_bad")

    @property
    def hurt(self) -> np.ndarray:
        return self._marked("hurt")

    @property
    def hurt_after_fault(self) -> np.ndarray:
        return self._marked("late")

    def _count(self, name: str) -> int:
        draws = self._drawn.get(name)
        if draws is not None:
            return self.cells.distinct_users(draws)
        found = self._marks.get(name)
        return 0 if found is None else int(np.count_nonzero(found))

    def split(self) -> None:
        """Give the pending bad requests to users (see the module docstring)."""
        for (selector, late), k in sorted(self.pending_bad.items(), key=repr):
            if k <= 0:  # (draws nothing)
                continue
            bad, caused = self.pools[(selector, late)]
            hurting = caused > 0 and bad > 0  # each user's count decides whether it was hurt
            if hurting:
                drawn = self.cells.draw_positions(self.user_rng, k, selector)
            else:  # who alone: no Poisson count per user (a good release's baseline errors)
                drawn = self.cells.draw_users(self.user_rng, k, selector)
            self._mark("with_bad", drawn)
            if late:
                self._mark("late", drawn)
            if hurting and drawn.counts.size:
                self._caused_users(drawn, drawn.counts, min(1.0, caused / bad))
        for selector, k in sorted(self.pending_caused_old.items(), key=repr):
            self.hurt[self.cells.draw(self.make_cause_rng(), k, selector)] = True
        self.pending_bad.clear()
        self.pools.clear()
        self.pending_caused_old.clear()

    def _caused_users(self, users: Drawn | np.ndarray, counts: np.ndarray, share: float) -> None:
        """Binomial(c, share) of each user's c bad requests are caused; a user with one is hurt.
        Drawn as the first caused request's position, Geometric(share): the user is hurt when
        it is ≤ c, and the caused ones after it, over all users, are one Binomial(Σ rest,
        share) — the same law as a binomial per user, at a fraction of its cost. (``users``:
        as drawn, whose hurt are then counted as drawn, not marked, or an array of users.)"""
        drawn = users if isinstance(users, Drawn) else Drawn(users, np.arange(users.size), counts)
        if share >= 1.0:
            self._mark("hurt", drawn)
            self.totals.caused += int(counts.sum())
            return
        rng = self.make_cause_rng()
        first = rng.geometric(share, counts.size)
        hit = first <= counts
        # the hurt as a draw of their own (a subset keeps the order), counted, not yet marked
        hurt = Drawn(drawn.members, drawn.positions[hit], counts[hit], drawn.ascending)
        self._mark("hurt", hurt)
        rest = int((hurt.counts - first[hit]).sum())
        self.totals.caused += hurt.positions.size + int(rng.binomial(rest, share))

    def forget(self) -> None:
        """Drop the per-user marks once counted (a byte per user each): a finished replication
        may wait in a reference cycle for the garbage collector, its marks with it."""
        self._marks.clear()
        self._drawn.clear()

    def users_hurt(self) -> int:
        self.split()
        return self._count("hurt")

    def users_with_bad(self) -> int:
        self.split()
        return self._count("with_bad")

    def users_exposed(self) -> int:
        """Users who reached the new version since its fault began (t_fault, its first faulted
        request): those with a bad answer since then, the users of its good requests since
        then, as the tape drew them (split over each selection's users ∝ activity, like the
        bad ones), and the user of that first faulted request.

        Why that is exact: by Poisson thinning a user's bad and good requests after t_fault
        are independent Poisson(Λᵇ_u) and Poisson(Λ_u − Λᵇ_u), and the users of a Poisson
        total split ∝ activity are exactly that. Splitting the requests the tape drew, not
        fresh ones, keeps every row whole: no more users exposed than candidate requests.
        The request at t_fault itself is in no count after it (sim/engine/fault_arrival.py
        draws its time apart from the counts, which instead hold on average one faulted
        request before it): one of the earlier requests is taken to be it, its user drawn
        from the flows it may come from (none if there is no earlier request).
        (The share after t_fault of a piece it splits is drawn here, after the other users'
        draws, so those are what an engine without exposure draws.)"""
        self.split()
        for selector, good, after in self._late_good_split:
            self.late_good[selector] += int(self.user_rng.binomial(good, after).sum())
        self._late_good_split.clear()
        late = self._late_bad + sum(self.late_good.values())
        draws = [  # (who was hit alone: no counts drawn)
            self.cells.draw_users(self.user_rng, k, selector)
            for selector, k in sorted(self.late_good.items(), key=repr)
            if k > 0
        ]
        self.late_good.clear()
        if self.first_faulted and late < self.totals.requests:
            draws.append(self._first_faulted_user())
        if not draws and not self.joined:
            return self._count("late")
        if not (self.joined or "late" in self._marks):  # counted by position, unmarked
            return self.cells.distinct_users(self._drawn.get("late", []) + draws)
        reached = self.hurt_after_fault.copy()
        for selector in sorted(self.joined, key=repr):  # session affinity: every joiner
            reached[self.cells.members(selector)] = True  # reached it (sim/engine/affinity.py)
        for drawn in draws:
            reached[drawn.users] = True
        return int(np.count_nonzero(reached))

    def _first_faulted_user(self) -> Drawn:
        """The user of the first faulted request: its flow ∝ share, then ∝ activity."""
        shares = np.cumsum([share for _, share in self.first_faulted])
        i = int(shares.searchsorted(self.user_rng.random() * shares[-1], side="right"))
        selector = self.first_faulted[min(i, len(self.first_faulted) - 1)][0]
        return self.cells.draw_positions(self.user_rng, 1, selector)
