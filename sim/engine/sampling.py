"""Exact samplers for splitting requests over users, with no cost cliff (issue #17).

Kept apart from sim/engine/cells.py (which decides *which* users a selection holds) because
these are plain algorithms on arrays: sorted uniforms in O(k), Poisson counts per user that
draw only for the users hit, and a multinomial's total fixed without bias.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["multinomial_hits", "sorted_uniforms"]


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
