"""Where in a piece the release changes the old version's odds, when the rate varies and
capacity is finite (sim/engine/blast.py).

The old version's requests count only while the release leaves them worse (or better) off than
the counterfactual, the old version alone at full capacity (``Outcome``). A served old flow of
Service S (share s of the traffic, its Service's share s_S of it over capacity C_S) overloads
while r(t) > L_S = C_S / s_S, the counterfactual while r(t) > L_f = C_full / s_users: their odds
differ exactly while r(t) > L = min(L_S, L_f) (nowhere if L_S = L_f). Under a constant rate that
is all of a piece or none of it; under a varying one it may be part of it, and the baseline's
errors in the rest are the counterfactual's own. Per piece, with Λ = ∫r, A = ∫ r·1{r > L} =
excess(L) + L·time_above(L) and E_S = excess(L_S) (inside that part, as L <= L_S):

* failed: s·(p0·A + (1 − p0)·E_S), of the piece's s·(p0·Λ + (1 − p0)·E_S);
* slow and good: the share (A − E_S)/(Λ − E_S) of the piece's;
* the counterfactual's bad probability over those requests: (b0·A + (1 − b0)·E_f)/A.

The piece's Poisson counts thinned by these shares are the part's counts, exactly. A Service
with a load tester on it (its overload is shared with synthetic requests) is counted whole.
"""

from __future__ import annotations

import numpy as np

__all__ = ["changed_part"]


def changed_part(traffic, capacity: float, full: float, b0: float, block, sel, rows, means):
    """(shares, b_ref): per category, old flow (``rows``) and piece, the share of the piece's
    expected requests that fall where the release changes their odds, (3, flows, pieces), and
    the counterfactual's bad probability over them, (flows, pieces); None to count the pieces
    whole (no served old flow under a varying overload)."""
    fs = block.flows
    starts, ends = block.starts[sel], block.ends[sel]
    users = fs.share if fs.shadow is None else fs.share[~fs.shadow]
    full_level = full / max(float(users.sum()), 1e-300)
    shares = np.ones_like(means)
    b_ref = np.full(means.shape[1:], np.nan)  # (NaN: the piece's own, filled by the caller)
    lam = np.asarray(traffic.integral(starts, ends), dtype=float)
    e_full = traffic.excess(starts, ends, full_level)
    services: dict = {}  # per Service, what its flows share: (ok, E_S, b_ref), or None

    def of_service(service: str):
        on_service = fs.service_canary == (service == "canary")
        if fs.rate is not None and fs.rate[on_service].any():
            return None  # a load tester's Service
        level = block.serving.get(service, 0) * capacity / float(fs.share[on_service].sum())
        low = min(level, full_level)
        above = traffic.excess(starts, ends, low) + low * traffic.time_above(starts, ends, low)
        e_s = traffic.excess(starts, ends, level)
        rest = lam - e_s  # (a flow's requests not overloaded, per unit of its share)
        ok = np.divide(above - e_s, rest, out=np.ones_like(rest), where=rest > 0)
        ref = (b0 * above + (1.0 - b0) * e_full) / np.where(above > 0, above, 1.0)
        return ok, e_s, np.where(above > 0, ref, b0)

    for j, i in enumerate(rows.tolist()):
        flow = fs.flows[i]
        if flow.unserved:
            continue  # no pods: worse off throughout
        if flow.service not in services:
            services[flow.service] = of_service(flow.service)
        found = services[flow.service]
        if found is None:
            continue
        ok, e_s, b_ref[j] = found
        failed = means[0, j] - (means[0, j] - flow.share * e_s) * (1.0 - ok)
        shares[0, j] = np.divide(failed, means[0, j], out=ok.copy(), where=means[0, j] > 0)
        shares[1, j] = shares[2, j] = ok
    touched = any(found is not None for found in services.values())
    return (np.clip(shares, 0.0, 1.0), b_ref) if touched else None
