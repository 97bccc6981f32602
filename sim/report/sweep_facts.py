"""What a sweep report's words stand on: each cell's run facts, and where the answer changes.

Each cell is a run of its own, judged by the run report's rule (sim/report/facts.py): the safest
policy has the fewest excess bad requests per bad release, the fastest the shortest rollout of a
good release. Along each swept path (the other paths held fixed) neighbouring cells are compared:
where the safest or the fastest policy changes, the two policies' paired difference (common
random numbers within a cell) is taken at both neighbours, so the reader sees whether the
change is real at each side or within the noise; with numeric values the difference is
interpolated to where it crosses zero. A path whose every value gives the very same
replications (the frames are identical) changes nothing in the simulated world: the report
warns instead of presenting identical cells as evidence.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sim.report.facts import Facts, nan
from sim.runs.summary import SAFETY, SPEED, paired_mixture

__all__ = [
    "METRICS",
    "CellFacts",
    "Change",
    "NoOp",
    "Paired",
    "SweepFacts",
    "is_numeric",
    "short_path",
    "value_key",
]

METRICS = (
    ("excess_bad_requests", "bad", "Excess bad requests per bad release", "count"),
    ("users_hurt", "bad", "Users hurt per bad release", "count"),
    ("rollout_duration", "good", "Time to full rollout of a good release", "duration"),
    ("false_rollback", "good", "False rollbacks (share of good releases)", "share"),
)
"""(metric, which releases it is judged on, title, kind): blast radius, then cost."""


def is_numeric(values: Sequence[Any]) -> bool:
    """Whether swept values can stand on a numeric axis (ints and floats, not booleans)."""
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


@dataclass(frozen=True)
class Paired:
    """The paired difference ``b − a`` per bad (or good) release at one cell, 95 % interval."""

    diff: float
    lo: float
    hi: float
    significant: bool


@dataclass
class CellFacts:
    """One cell: its values, folder name, run facts and the winners by the run report's rule."""

    values: dict[str, Any]
    name: str
    facts: Facts
    frame: pd.DataFrame = field(repr=False)
    world: dict = field(repr=False)
    specs: dict = field(repr=False)
    seed: int = 0
    reused: bool = False
    safe_clear: bool = False  # the safest is significantly safer than every other policy
    fast_clear: bool = False  # the fastest is significantly faster than every other policy

    @property
    def safest(self) -> str:
        return self.facts.safest

    @property
    def fastest(self) -> str:
        return self.facts.fastest

    @property
    def catches(self) -> bool:
        return not self.facts.nothing_catches

    def metric(self, policy: str, metric: str, judged_on: str) -> tuple[float, float, float]:
        """Mean and 95 % interval of ``metric`` per bad or per good release (as in the run)."""
        stat = self.facts.bad_stat if judged_on == "bad" else self.facts.good_stat
        return tuple(stat(policy, metric, w) for w in ("mean", "ci_low", "ci_high"))  # type: ignore[return-value]

    def paired(self, a: str, b: str, what: str) -> Paired | None:
        """``b − a`` in excess bad requests per bad release (``what`` "safest") or in rollout
        time per good release ("fastest"); None when either policy is not in this cell."""
        f = self.facts
        metric, classes = (SAFETY, f.bad) if what == "safest" else (SPEED, f.good)
        try:
            return Paired(*paired_mixture(self.frame, a, b, metric, list(classes) or None))
        except (KeyError, ValueError):
            return None

    def caught(self) -> dict[str, float]:
        """Per policy, the share of bad releases its gate or an alert catches."""
        return {p: e.caught for p, e in self.facts.endings.items()}


@dataclass(frozen=True)
class Change:
    """Along ``path`` (the other paths at ``fixed``) the answer changes between two cells.

    ``what``: "safest" or "fastest" (``a`` wins before, ``b`` after; ``before``/``after`` are
    ``b − a`` and ``a − b``, each positive when the winner there is better), or "catching" (a
    policy's gate or alert catches most bad releases at one side only)."""

    path: str
    fixed: tuple[tuple[str, Any], ...]
    what: str
    cells: tuple[CellFacts, CellFacts]
    a: str = ""
    b: str = ""
    before: Paired | None = None
    after: Paired | None = None
    crossing: float = math.nan


@dataclass(frozen=True)
class NoOp:
    """A swept path whose values give identical replications wherever the others are fixed."""

    path: str
    values: tuple[Any, ...]
    same_scenario: bool  # the resolved worlds and policies are equal too (not only the results)


@dataclass
class SweepFacts:
    """Every cell's facts, each path's values in axis order, the changes and the no-op paths."""

    paths: tuple[str, ...]
    axes: dict[str, tuple[Any, ...]]
    cells: list[CellFacts]
    changes: list[Change] = field(default_factory=list)
    noops: list[NoOp] = field(default_factory=list)

    @classmethod
    def build(cls, grid: dict[str, list[Any]], swept: Sequence[Any]) -> SweepFacts:
        """``swept``: the sweep's cells (sim.runs.sweep.SweptCell: values, name, result)."""
        cells = [_cell_facts(c) for c in swept]
        axes = {p: _axis(values) for p, values in grid.items()}
        out = cls(tuple(grid), axes, cells)
        out.noops = [n for p in out.paths if (n := out._noop(p)) is not None]
        quiet = {n.path for n in out.noops}
        for path in out.paths:
            if path not in quiet:
                out.changes += out._changes(path)
        return out

    @property
    def same_seed(self) -> bool:
        return len({c.seed for c in self.cells}) == 1

    def lines(self, path: str) -> list[tuple[tuple[tuple[str, Any], ...], list[CellFacts]]]:
        """The cells along ``path``, one list per setting of the other paths, in axis order."""
        order = {value_key(v): i for i, v in enumerate(self.axes[path])}
        groups: dict[str, tuple[tuple[tuple[str, Any], ...], list[CellFacts]]] = {}
        for c in self.cells:
            fixed = tuple((q, c.values[q]) for q in self.paths if q != path)
            groups.setdefault(value_key(fixed), (fixed, []))[1].append(c)
        out = []
        for fixed, members in groups.values():
            seen: dict[str, CellFacts] = {}
            for c in members:  # a value given twice is one point of the line
                seen.setdefault(value_key(c.values[path]), c)
            line = sorted(seen.values(), key=lambda c: order.get(value_key(c.values[path]), 0))
            out.append((fixed, line))
        return out

    def _noop(self, path: str) -> NoOp | None:
        if len(self.axes[path]) < 2:
            return None
        same_scenario = True
        for _, line in self.lines(path):
            first = line[0]
            for other in line[1:]:
                if not _same_rows(first.frame, other.frame):
                    return None
                same_scenario &= (first.world, first.specs, first.seed) == (
                    other.world,
                    other.specs,
                    other.seed,
                )
        return NoOp(path, self.axes[path], same_scenario)

    def _changes(self, path: str) -> list[Change]:
        numeric = is_numeric(self.axes[path])
        out = []
        for fixed, line in self.lines(path):
            for left, right in itertools.pairwise(line):
                if left.catches != right.catches:
                    out.append(Change(path, fixed, "catching", (left, right)))
                for what in ("safest", "fastest"):
                    a, b = getattr(left, what), getattr(right, what)
                    if a == b:
                        continue
                    before, after = left.paired(a, b, what), right.paired(b, a, what)
                    crossing = math.nan
                    if numeric and before is not None and after is not None:
                        x0, x1 = left.values[path], right.values[path]
                        crossing = _crossing(x0, x1, before.diff, -after.diff)
                    out.append(
                        Change(path, fixed, what, (left, right), a, b, before, after, crossing)
                    )
        return out


def _cell_facts(swept) -> CellFacts:
    result = swept.result
    facts = Facts.build(result)
    cf = CellFacts(
        dict(swept.values),
        swept.name,
        facts,
        result.frame,
        result.world,
        result.policy_specs,
        int(result.seed),
        bool(getattr(swept, "reused", False)),
    )
    others = [p for p in facts.policies if p != facts.safest]
    cf.safe_clear = bool(others) and all(facts.significant(p) for p in others)
    rivals = [p for p in facts.policies if p != facts.fastest]
    quick = [cf.paired(facts.fastest, p, "fastest") for p in rivals]
    cf.fast_clear = bool(rivals) and all(
        q is not None and q.significant and q.diff > 0 for q in quick
    )
    return cf


def short_path(path: str) -> str:
    """A dotted path's last part, as the reports label an axis: ``errorRate``."""
    return path.rsplit(".", 1)[-1]


def value_key(value: Any) -> str:
    """A swept value as a hashable key (values may be lists or mappings)."""
    return json.dumps(value, sort_keys=True, default=repr)


def _axis(values: Sequence[Any]) -> tuple[Any, ...]:
    """The distinct values of a path: sorted when numeric, else in the order given."""
    distinct: dict[str, Any] = {}
    for v in values:
        distinct.setdefault(value_key(v), v)
    out = list(distinct.values())
    return tuple(sorted(out) if is_numeric(out) else out)


def _log_axis(values: Sequence[Any]) -> bool:
    """Positive values spanning a decade or more read best on a log axis."""
    v = [float(x) for x in values]
    return min(v) > 0 and max(v) / min(v) >= 10


def _crossing(x0: float, x1: float, d0: float, d1: float) -> float:
    """Where a difference ``d0`` at ``x0`` and ``d1`` at ``x1`` of opposite signs reaches 0,
    by linear interpolation: a rough guide between two cells, said as such."""
    if nan(d0) or nan(d1) or d0 * d1 >= 0:
        return math.nan
    return x0 + d0 / (d0 - d1) * (x1 - x0)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """The same replications, value for value (NaN equal to NaN)."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    return a.reset_index(drop=True).equals(b.reset_index(drop=True))
