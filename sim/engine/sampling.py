"""Exact samplers for splitting requests over users, with no cost cliff (issue #17).

Kept apart from sim/engine/cells.py (which decides *which* users a selection holds) because
these are plain algorithms on arrays: sorted uniforms in O(k), Poisson counts per user that
draw only for the users hit, a multinomial's total fixed without bias, and who a multinomial
hits without its counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["multinomial_hits", "multinomial_users", "sorted_uniforms"]


def sorted_uniforms(rng: np.random.Generator, k: int) -> np.ndarray:
    """k sorted U(0, 1) in O(k): partial sums of k + 1 Exp(1) over their total are the order
    statistics of k uniforms (exact; no O(k log k) sort)."""
    e = rng.standard_exponential(k + 1)
    np.cumsum(e, out=e)
    e *= 1.0 / e[-1]
    return e[:k]


def multinomial_hits(
    rng: np.random.Generator,
    k: int,
    weights: np.ndarray,
    picks: Callable[[int], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial(k, weights) counts in one pass, as (positions of the users hit, their
    counts); ``picks(m)``: m positions drawn ∝ weights (ascending).

    Independent Poisson counts of mean k·w (given their sum S they are multinomial), then S − k
    of the S draws removed uniformly at random, or k − S more drawn: exact, as any subset chosen
    independently of iid draws is iid. A Poisson(m) count is drawn as its process's first point
    E ~ Exp(1): none if E ≥ m, else 1 + Poisson(m − E), so only the users hit need a Poisson
    draw. The users come in no particular order (the callers mark them)."""
    means = weights * (k / weights.sum())
    first = rng.standard_exponential(means.size)
    hit = np.flatnonzero(first < means)
    counts = rng.poisson(means[hit] - first[hit])
    counts += 1
    total = int(counts.sum())
    if total > k:
        drop = rng.choice(total, total - k, replace=False)
        owners = np.searchsorted(np.cumsum(counts), drop, side="right")
        counts -= np.bincount(owners, minlength=counts.size)
        kept = counts > 0
        hit, counts = hit[kept], counts[kept]
    elif total < k:
        more = picks(k - total)
        if hit.size:
            at = np.minimum(np.searchsorted(hit, more), hit.size - 1)
            known = hit[at] == more
            np.add.at(counts, at[known], 1)
            more = more[~known]
        new, times = np.unique(more, return_counts=True)
        hit, counts = np.concatenate((hit, new)), np.concatenate((counts, times))
    return hit, counts


# multinomial_users' Poisson total: k − 2√k, above k once in ~44 tries. (Measured at 200,000
# users, 2·10^5 to 2·10^7 draws: margins from 0.5 to 4 cost the same within the noise, 2-3.6 ms
# a draw, the pass over the users dominating.)
_MARGIN = 2.0


def multinomial_users(
    rng: np.random.Generator,
    k: int,
    weights_of: Callable[[int, int], np.ndarray],
    n: int,
    total_weight: float,
    picks: Callable[[int], np.ndarray],
    chunk: int,
) -> np.ndarray:
    """Who of n users Multinomial(k, weights) hits, as positions (ascending, each once),
    without its counts: one Exp(1) per user and a few lookups, where ``multinomial_hits``
    draws a Poisson count per user hit. ``weights_of(a, b)``: the users' weights over [a, b)
    (of sum ``total_weight`` over all); ``picks(m)``: m draws ∝ weights; in steps of
    ``chunk`` users (no n-sized temporaries).

    Independent Poisson counts of total mean μ = k − 2√k: a user is hit iff its first point
    E < its mean m, and their total is S = hits + Poisson(Σ_hit (m − E)) (a sum of Poissons).
    Given S ≤ k they are Multinomial(S), and k − S more draws ∝ weights make them
    Multinomial(k), whatever S was: so when S > k (rarely) a fresh try, with μ lower by 2√k,
    is exact too (the accepted try's law is Multinomial(k)'s)."""
    margin, hit = _MARGIN, np.empty(n, dtype=bool)
    while True:
        scale = max(k - margin * math.sqrt(k), 0.0) / total_weight
        hits, rest = 0, 0.0
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            beyond = weights_of(a, b) * scale  # each user's mean m, then m − E
            beyond -= rng.standard_exponential(b - a)
            part = np.greater(beyond, 0.0, out=hit[a:b])  # (count 1 + Poisson(m − E))
            hits += int(np.count_nonzero(part))
            # Σ_hit (m − E) as Σ max(m − E, 0): ``sum(where=part)`` costs eight times more
            rest += float(np.maximum(beyond, 0.0, out=beyond).sum())
        total = hits + (int(rng.poisson(rest)) if rest > 0 else 0)
        if total <= k:
            hit[picks(k - total)] = True
            return np.flatnonzero(hit)
        margin += 2.0
