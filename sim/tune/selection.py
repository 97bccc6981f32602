"""Choosing the best feasible candidate with a stated guarantee: screen, check, then select.

A tuner compares many candidate policies on noisy simulations; "the one with the lowest sample
mean" is not an answer a team can rely on. This module is the statistical procedure alone,
written against an abstract sampler so that it can be tested on synthetic normal data and run
on the simulator (sim/tune/search.py) alike. Observations are drawn in *stages*: every call of the
sampler gives new, independent observations of the candidates it names, paired across those
candidates (common random numbers: observation j of every candidate met the same releases).

The procedure, with α = 1 − confidence split by Bonferroni into α_F (feasibility, only when
there are constraints) and α_0 = α_1 (screening, selection):

1. **Feasibility** (no normality needed). Each constraint observation is bounded in a known
   [lower, upper]. For candidate i and constraint ℓ a betting confidence sequence
   (``sim.tune.betting``: Waudby-Smith & Ramdas 2023, "Estimating means of bounded random
   variables by betting", JRSSB 86(1), hedged capital with the predictable plug-in bets of
   their §5) at level
   β = α_F / (k·s) is valid at every look. Declared *feasible* when its upper end is ≤ the
   limit, *infeasible* when its lower end is > limit − tolerance; a candidate may *eliminate*
   others only once every upper end is ≤ limit − tolerance ("feasible with margin").
2. **Screening** (Nelson, Swann, Goldsman & Song 2001, Oper. Res. 49(6), made sequential and
   racing). Observations come in blocks ending at the fixed looks n_r = n0·2^(r−1), r ≤ R;
   each stage takes the candidates that still need data one block further, except those a
   rival already beats significantly (they wait for it to become an eliminator), so contenders
   get more replications. Candidate i is dropped when some eliminator l
   has X̄_i − X̄_l > t·S_il/√n on their common n = min(n_i, n_l) observations, S_il the standard
   deviation of the paired differences and t the 1 − α_0/(R·(k−1)) quantile of Student's t
   with n − 1 d.f.: a pair is tested at most once per look.
3. **Selection** on *fresh* observations (Nelson & Matejcik 1995, Manage. Sci. 41(12),
   Procedure B: Bonferroni–Rinott with common random numbers). The survivors that are declared
   feasible get n0 observations, then all of them N = max(n0, ⌈t²·max S²_il/δ²⌉) in total,
   t the 1 − α_1/(|S|−1) quantile of t with n0 − 1 d.f.; the smallest mean is selected.

Guarantee. Let μ_i be candidate i's expected objective, g_iℓ its constraints, F the candidates
with g_iℓ ≤ limit_ℓ for all ℓ and F_ε those with g_iℓ ≤ limit_ℓ − tolerance_ℓ. If the
constraint observations are i.i.d. within [lower, upper] and the objective's paired
differences are normal and i.i.d. across observations, then

    P( selected ∈ F  and  μ_selected ≤ min_{i ∈ F_ε} μ_i + δ ) ≥ 1 − α.

Proof sketch: outside an event of probability α_F every confidence sequence covers (Ville), so
everything declared feasible is in F and b* = argmin_{F_ε} μ is never declared infeasible; b*
can only be dropped by an eliminator, which is in F_ε and so no better than b*, i.e. by a false
t-test (probability ≤ α_0 over R looks and k − 1 rivals); given the survivors (fresh data),
Procedure B picks one within δ of the best of them, hence of b*, with probability ≥ 1 − α_1.
Which candidates are sampled when, and stopping early, only remove looks: the guarantee does
not depend on the racing heuristic. Block r uses the same random numbers for every candidate
whenever it is drawn, so every paired difference is i.i.d. across observations.

What is approximate: normality of the objective (excess failures are heavy-tailed; averaging
over a stage's stratified replications, and batching for quantile objectives, makes the means
close to normal, but n0 should not be tiny) and, for quantile objectives, that the target is
the expected batch quantile. A candidate whose feasibility is still undecided after
``max_observations`` is treated as not shown feasible (conservative for the first half of the
guarantee; the report lists such candidates).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from sim.tune.betting import betting_interval

__all__ = [
    "CandidateRecord",
    "ConstraintCheck",
    "Observations",
    "Sampler",
    "Selection",
    "Stage",
    "look_schedule",
    "procedure_b_size",
    "select",
]


@dataclass(frozen=True)
class ConstraintCheck:
    """One constraint as the procedure sees it: the mean of bounded observations ≤ ``limit``."""

    name: str
    limit: float
    tolerance: float
    lower: float
    upper: float

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"{self.name}: bounds [{self.lower}, {self.upper}] are empty")
        if not self.tolerance > 0:
            raise ValueError(f"{self.name}: tolerance {self.tolerance} must be > 0")


@dataclass
class Observations:
    """New observations of one candidate: ``objective`` (n,), ``constraints`` (n, s)."""

    objective: np.ndarray
    constraints: np.ndarray


Sampler = Callable[[str, int, tuple[str, ...], int], dict[str, Observations]]
"""``sample(phase, block, names, size)``: block ``block`` of ``phase`` ("screen" or "select")
for each named candidate, ``size`` observations each. A block is a fixed set of random numbers:
asked again (for other candidates, later) it must give observations paired with the first
answer (common random numbers), and different blocks must be independent."""


@dataclass(frozen=True)
class Stage:
    """One call of the sampler: which block, for how many candidates, what it cost."""

    index: int
    phase: str
    block: int
    candidates: tuple[str, ...]
    new: int
    total: int  # observations per candidate in this phase once the block is in

    @property
    def spent(self) -> int:
        return len(self.candidates) * self.new


@dataclass
class CandidateRecord:
    """The evidence about one candidate."""

    name: str
    status: str = "active"  # selected, finalist, eliminated, infeasible, undecided, survivor
    reason: str = ""
    n_screen: int = 0
    n_select: int = 0
    mean_screen: float = math.nan
    mean_select: float = math.nan
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    feasible: dict[str, bool | None] = field(default_factory=dict)
    eliminator: bool = False
    shown_at: int = 0  # observations when every constraint was shown met (0: not shown)
    mcb: tuple[float, float] = (math.nan, math.nan)


@dataclass
class Selection:
    """The outcome: the chosen name (None if nothing was shown feasible) and the evidence."""

    selected: str | None
    records: dict[str, CandidateRecord]
    stages: list[Stage]
    delta: float
    alpha: float
    alphas: dict[str, float]
    n0: int
    final_n: int  # observations per finalist in the final stage (0: there was none)
    grid_n: int  # the recommendation's resolution: its screening + final observations
    one_shot_n: int  # Procedure B on the whole grid (and enough to show the choice feasible)
    message: str = ""
    checks: tuple[ConstraintCheck, ...] = ()

    @property
    def spent(self) -> int:
        """Observations drawn, summed over candidates."""
        return sum(s.spent for s in self.stages)

    @property
    def exhaustive(self) -> int:
        """An exhaustive grid at the recommendation's resolution: every candidate ``grid_n``."""
        return len(self.records) * self.grid_n

    @property
    def one_shot(self) -> int:
        """A one-size grid with the same guarantee: Procedure B on every candidate at once."""
        return len(self.records) * self.one_shot_n

    @property
    def exhaustive_final(self) -> int:
        """Every candidate given the final stage's N (without a final stage: ``exhaustive``)."""
        return len(self.records) * self.final_n if self.final_n else self.exhaustive


# ---------------------------------------------------------------------------- statistics


def look_schedule(n0: int, max_observations: int) -> list[int]:
    """The fixed looks n0, 2·n0, 4·n0, … capped at ``max_observations``."""
    looks, n = [], n0
    while True:
        looks.append(min(n, max_observations))
        if n >= max_observations:
            return looks
        n *= 2


def _paired_sd(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return float(d.std(ddof=1)) if d.size > 1 else math.inf


def procedure_b_size(
    columns: Sequence[np.ndarray], alpha: float, delta: float, n0: int | None = None
) -> int:
    """Nelson–Matejcik Procedure B: N = max(n0, ⌈t²·max S²_il / δ²⌉) for paired samples, t the
    1 − α/(k − 1) quantile with n0 − 1 d.f. (``n0`` defaults to the columns' length; a longer
    sample only estimates the variances better, as when forecasting the final stage)."""
    k = len(columns)
    n0 = len(columns[0]) if n0 is None else n0
    if k < 2:
        return n0
    t = float(stats.t.ppf(1.0 - alpha / (k - 1), n0 - 1))
    s2 = max(_paired_sd(columns[i], columns[j]) ** 2 for i in range(k) for j in range(i + 1, k))
    return max(n0, math.ceil(t * t * s2 / (delta * delta) - 1e-9))


# ---------------------------------------------------------------------------- the procedure


class _State:
    """Screening observations per candidate: a prefix of the blocks, always whole blocks."""

    def __init__(self, names: Sequence[str], s: int, looks: list[int]) -> None:
        self.looks = looks
        self.obj = {n: np.empty(0) for n in names}
        self.con = {n: np.empty((0, s)) for n in names}
        self.s = s

    def depth(self, name: str) -> int:
        return int(self.obj[name].size)

    def next_block(self, name: str) -> int:
        return self.looks.index(self.depth(name)) + 1 if self.depth(name) else 0

    def add(self, name: str, o: Observations, size: int) -> None:
        obj = np.asarray(o.objective, float)
        con = np.asarray(o.constraints, float).reshape(obj.size, -1)
        if obj.size != size or con.shape[1] < self.s:
            raise ValueError(f"the sampler returned the wrong shape for {name!r}")
        self.obj[name] = np.concatenate([self.obj[name], obj])
        self.con[name] = np.concatenate([self.con[name], con[:, : self.s]])

    def mean(self, name: str) -> float:
        return float(self.obj[name].mean())


def select(
    names: Sequence[str],
    sample: Sampler,
    *,
    delta: float,
    confidence: float = 0.95,
    constraints: Sequence[ConstraintCheck] = (),
    n0: int = 20,
    max_observations: int = 5120,
    on_stage: Callable[[Stage], None] | None = None,
) -> Selection:
    """Run the procedure of the module docstring on ``names`` (kept in this order for ties)."""
    names = list(dict.fromkeys(names))
    k, s = len(names), len(constraints)
    if k == 0:
        raise ValueError("no candidates")
    if not (delta > 0 and 0 < confidence < 1 and n0 >= 2 and max_observations >= n0):
        raise ValueError("need delta > 0, 0 < confidence < 1, n0 >= 2, max_observations >= n0")
    alpha = 1.0 - confidence
    a_f = alpha / 3 if s else 0.0
    a_0 = a_1 = (alpha - a_f) / 2
    beta = a_f / (k * s) if s else 0.0
    looks = look_schedule(n0, max_observations)
    level = a_0 / (len(looks) * max(k - 1, 1))
    blank = dict.fromkeys(c.name for c in constraints)
    records = {n: CandidateRecord(n, feasible=dict(blank)) for n in names}
    state = _State(names, s, looks)
    stages: list[Stage] = []
    beats = _tester(state, level)

    def draw(phase: str, block: int, who: list[str], size: int, total: int) -> dict:
        out = sample(phase, block, tuple(who), size)
        stage = Stage(len(stages), phase, block, tuple(who), size, total)
        stages.append(stage)
        if on_stage is not None:
            on_stage(stage)
        return out

    active, advance = list(names), list(names)
    one_shot_n, first = n0, True
    while advance:
        by_block: dict[int, list[str]] = {}
        for i in advance:
            by_block.setdefault(state.next_block(i), []).append(i)
        for block in sorted(by_block):
            who = by_block[block]
            start = looks[block - 1] if block else 0
            out = draw("screen", block, who, looks[block] - start, looks[block])
            for i in who:
                state.add(i, out[i], looks[block] - start)
        if first:  # the first block: what Procedure B on every candidate would need
            one_shot_n, first = procedure_b_size([state.obj[i] for i in names], a_1, delta), False
        _check_feasibility(advance, state, records, constraints, beta)
        active = [i for i in active if records[i].status == "active"]
        _screen(active, records, beats)
        active = [i for i in active if records[i].status == "active"]
        advance = _next(active, state, records, a_1, delta, n0, max_observations, beats)
    for i in active:
        if None in records[i].feasible.values():
            n = state.depth(i)
            records[i].status = "undecided"
            records[i].reason = f"feasibility undecided after {n} observations"
    survivors = [i for i in active if records[i].status == "active"]
    for i in names:
        records[i].n_screen = state.depth(i)
        records[i].mean_screen = state.mean(i) if state.depth(i) else math.nan
    final_n, chosen = 0, None
    if not survivors:
        message = "no candidate was shown to meet every constraint"
    elif len(survivors) == 1:
        chosen, message = survivors[0], "one candidate survived screening"
    else:
        chosen, final_n = _final(survivors, draw, records, a_1, delta, n0, s)
        message = f"{len(survivors)} finalists, {final_n} fresh observations each"
    for i in survivors:
        records[i].status = "finalist"
    if chosen is not None:
        records[chosen].status = "selected"
    alphas = {"feasibility": a_f, "screening": a_0, "selection": a_1, "per_constraint": beta}
    grid_n = max(state.depth(i) for i in names) + final_n
    if chosen is not None:  # a one-size grid must also show the chosen one feasible
        one_shot_n = max(one_shot_n, records[chosen].shown_at)
        grid_n = records[chosen].n_screen + final_n
    return Selection(
        chosen,
        records,
        stages,
        delta,
        alpha,
        alphas,
        n0,
        final_n,
        grid_n,
        one_shot_n,
        message,
        tuple(constraints),
    )


def _next(active, state, records, a_1, delta, n0, cap, beats) -> list[str]:
    """Who gets the next block: the candidates that still need data — to decide a constraint,
    or for screening (which also makes eliminators) while the final stage would cost more than
    one more block — except those a rival already beats significantly on their common
    observations (they wait: once that rival may eliminate, they go without costing more).
    Only the order of the work depends on this; the guarantee does not."""
    shown = [i for i in active if None not in records[i].feasible.values()]
    rivals = shown if len(shown) > 1 else active
    need = n0
    if len(rivals) > 1:
        common = min(state.depth(i) for i in rivals)
        need = procedure_b_size([state.obj[i][:common] for i in rivals], a_1, delta, n0)

    def wants(i: str) -> bool:
        depth = state.depth(i)
        if depth >= cap:
            return False
        if None in records[i].feasible.values():
            return True
        if records[i].eliminator and any(
            state.depth(j) > depth
            and None in records[j].feasible.values()
            and state.mean(j) > state.mean(i)
            for j in active
        ):
            return True  # catch up with a worse rival still being checked: it may go sooner
        if len(active) < 2 or 2 * depth > need:
            return False
        # comparisons use the common prefix: deepening an eliminator that is already the
        # deepest of all sharpens none of them
        return not records[i].eliminator or any(state.depth(j) >= depth for j in active if j != i)

    def waits(i: str) -> bool:
        return any(j != i and beats(i, j)[0] for j in active)

    pool = [i for i in active if wants(i)]
    return [i for i in pool if not waits(i)] or pool


def _check_feasibility(advanced, state, records, constraints, beta) -> None:
    for i in advanced:
        rec = records[i]
        if rec.status != "active":
            continue
        margin = True
        for j, c in enumerate(constraints):
            lo, hi = betting_interval(state.con[i][:, j], beta, c.lower, c.upper)
            rec.bounds[c.name] = (lo, hi)
            if rec.feasible[c.name] is None:
                if hi <= c.limit:
                    rec.feasible[c.name] = True
                elif lo > c.limit - c.tolerance:
                    rec.feasible[c.name] = False
            margin = margin and hi <= c.limit - c.tolerance
            if rec.feasible[c.name] is False and rec.status == "active":
                rec.status = "infeasible"
                n = state.depth(i)
                rec.reason = f"{c.name}: at least {lo:.4g} (limit {c.limit:.4g}) after {n}"
        rec.eliminator = rec.eliminator or (margin and rec.status == "active")
        if not rec.shown_at and rec.status == "active" and all(rec.feasible.values()):
            rec.shown_at = state.depth(i)


def _tester(state, level):
    """``beats(i, rival)``: (whether rival is significantly better than i on their common
    observations, the message saying so)."""
    quantile = functools.cache(lambda n: float(stats.t.ppf(1.0 - level, n - 1)))

    def beats(i: str, rival: str) -> tuple[bool, str]:
        n = min(state.depth(i), state.depth(rival))
        a, b = state.obj[i][:n], state.obj[rival][:n]
        diff = float(a.mean() - b.mean())
        half = quantile(n) * _paired_sd(a, b) / math.sqrt(n)
        return (
            diff > 0 and diff > half,
            f"worse than {rival} by {diff:.4g} (± {half:.3g}) after {n}",
        )

    return beats


def _screen(active, records, beats) -> None:
    """Drop every candidate some eliminator beats significantly on their common observations."""
    dropped = {}
    for i in active:
        for rival in active:
            if rival != i and records[rival].eliminator:
                worse, why = beats(i, rival)
                if worse:
                    dropped[i] = why
                    break
    for i, why in dropped.items():
        records[i].status, records[i].reason = "eliminated", why


def _final(survivors, draw, records, a_1, delta, n0, s):
    first = draw("select", 0, survivors, n0, n0)
    cols = {i: np.asarray(first[i].objective, float) for i in survivors}
    if any(c.size != n0 for c in cols.values()):
        raise ValueError("the sampler returned the wrong number of observations")
    big_n = procedure_b_size([cols[i] for i in survivors], a_1, delta)
    if big_n > n0:
        more = draw("select", 1, survivors, big_n - n0, big_n)
        cols = {
            i: np.concatenate([cols[i], np.asarray(more[i].objective, float)]) for i in survivors
        }
    means = {i: float(cols[i].mean()) for i in survivors}
    chosen = min(survivors, key=lambda i: means[i])  # min() keeps the first of ties
    for i in survivors:
        gap = means[i] - min(means[j] for j in survivors if j != i)
        records[i].n_select, records[i].mean_select = big_n, means[i]
        records[i].mcb = (min(gap - delta, 0.0), max(gap + delta, 0.0))
    return chosen, big_n
