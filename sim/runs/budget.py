"""The size of a run before it starts: how many replications, what they cost, whether it fits.

A scenario is data, often someone else's, and a valid one can still ask for years of work or
terabytes: ``replicas: 100000`` (pods are objects, and every pod event walks them),
``scrapeInterval: 1ms`` (the data plane keeps per-scrape-slot counts: 86 million slots a day),
a metric ``interval: 1ms`` (a measurement every millisecond), ``replications: 1.0e+12`` or
``users.count: 1000000000`` (the population and its sorted cells, held once for all workers).
``estimate`` prices a plan from the world and the policies alone, with nothing built, and
``check`` refuses one beyond a ``Budget`` in one line that names the field to blame, the
estimate and how to allow it.

The unit costs below were measured on one core of a 2020s x86 machine with the shipped
scenarios varied one field at a time (scrape slots, replicas, users, measurements); they give
the order of magnitude, not a promise, which is all a budget needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.analysis import Metric
from policies.errors import PolicyError
from policies.flagger import FlaggerAnalysis
from sim.world.model import World

__all__ = [
    "ALLOW",
    "DEFAULT_BUDGET",
    "Budget",
    "BudgetError",
    "Estimate",
    "check",
    "counts",
    "estimate",
    "few_replications",
    "whole",
]

ALLOW = "--allow-large (Python: budget=Budget.unlimited() or a larger Budget)"
"""How to run a plan beyond the budget anyway: said by every refusal."""

_GIB = 2.0**30
# seconds of one core, per unit (measured; see the module docstring)
_BASE_S = 5e-3  # a replication's fixed cost: controller, simpy, outcome
_SLOT_S = 5e-7  # a scrape slot drawn, committed and settled
_EVAL_S = 2e-8  # one burn-rate rule evaluation (vectorised)
_MEASURE_S = 1e-4  # one gate measurement (an event, a window query, a verdict)
_MEASURE_SLOT_S = 1e-9  # per slot of the tape a measurement scans (whether the canary served)
_POINT_S = 2e-5  # one point of a Kayenta series
_POD_S = 3e-5  # per pod and replication, plus _POD2_S per pod squared (events walk the pods)
_POD2_S = 3e-7
_DNS_SLOT_S = 5e-5  # a DNS switch draws one scrape slot at a time while clients move
_USER_DRAFT_S = 1e-10  # per user and draft: who was hurt is drawn over the population
_USER_BUILD_S = 5e-7  # per user, once per run: the population and its sorted cells
_DRAFT_S = 600.0  # traffic is drafted at least every 10 minutes (sim/engine/drafting.py)
# bytes
# per user, held once in shared memory for all workers (sim/runs/pool.py): activity, bucket,
# bucket order, segment masks and a replication's marks; and per cell split of the population
# (the whole; inside and outside each fault segment) positions, cumulative activity, guide table
_USER_B = 32
_CELLS_B = 24
_SLOT_B = 400  # the per-slot table and a draft's per-piece arrays
_POD_B = 1000  # a pod object, twice (surge)
_RECORD_B = 4096  # one replication's record in the parent (dicts, then the frame)


class BudgetError(PolicyError):
    """A plan beyond the budget: valid input, refused for its size (exit 2, one line)."""


@dataclass(frozen=True)
class Budget:
    """What a run may cost before it is refused: ``cpu_hours`` of estimated work in all,
    ``replication_s`` seconds for the costliest single replication (what no worker count
    helps), ``memory_gib`` in one process (a worker: the users and one replication; the parent:
    every record). ``math.inf`` lifts a limit; ``Budget.unlimited()`` lifts them all."""

    cpu_hours: float = 8.0
    replication_s: float = 60.0
    memory_gib: float = 4.0

    def __post_init__(self) -> None:
        for name in ("cpu_hours", "replication_s", "memory_gib"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise PolicyError(f"{value!r} must be a number > 0 (math.inf: no limit)", path=name)

    @classmethod
    def unlimited(cls) -> Budget:
        return cls(math.inf, math.inf, math.inf)


DEFAULT_BUDGET = Budget()
"""About a working day of one core, a minute per replication, 4 GiB per process: the shipped
scenarios and the test suite's worlds use a small fraction of each."""


@dataclass(frozen=True)
class _Term:
    """One part of a replication's cost, with the field that sets it (for the message)."""

    amount: float  # seconds, or bytes for memory
    path: str
    why: str


@dataclass(frozen=True)
class Estimate:
    """A plan's estimated cost (see ``estimate``)."""

    replications: int  # in all: policies × classes × replications per class
    cpu_s: float  # every replication and every worker's population
    replication_s: float  # the costliest single replication
    replication_term: _Term  # what dominates it
    policy: str  # whose replication that is
    process_bytes: float  # the largest process: a worker, or the parent
    memory_term: _Term  # what dominates it

    def summary(self) -> str:
        return (
            f"{_count(self.replications)} replications, about {_human_s(self.cpu_s)} of CPU, the"
            f" costliest ({self.policy}) {_human_s(self.replication_s)}, up to"
            f" {_human_b(self.process_bytes)} in one process"
        )


def estimate(
    world: World,
    policies: Mapping[str, Any] | Sequence[tuple[str, Any]],
    counts: Mapping[str, int],
    workers: int = 1,
) -> Estimate:
    """Price a plan: ``counts`` replications per release class under each of ``policies``
    (name -> policy), on ``workers`` processes (the user population is built once and shared:
    its memory and build do not grow with them)."""
    named = list(policies.items() if isinstance(policies, Mapping) else policies)
    horizon = float(world.horizon)
    platform = world.platform
    slots = horizon / platform.scrape_interval
    users = world.users.count
    per_class = _float(sum(int(n) for n in counts.values()))
    total = sum(int(n) for n in counts.values()) * len(named)
    worst: tuple[float, _Term, str] = (-1.0, _Term(0.0, "", ""), "")
    cpu = 0.0
    pods_max = 0
    for name, policy in named:
        terms = _replication_terms(world, policy, slots)
        seconds = math.fsum(t.amount for t in terms)
        cpu += seconds * per_class
        if seconds > worst[0]:
            worst = (seconds, max(terms, key=lambda t: t.amount), name)
        pods_max = max(pods_max, _replicas(world, policy))
    cpu += users * _USER_BUILD_S
    interval = _fmt_s(platform.scrape_interval)
    splits = 1 + len({r.fault.segment for r in world.releases if r.fault and r.fault.segment})
    per_user = _USER_B + splits * _CELLS_B
    memory = [
        _Term(
            users * per_user,
            "world.users.count",
            f"{users:,} users of about {per_user} B, held once for all workers",
        ),
        _Term(
            slots * _SLOT_B,
            "world.platform.scrapeInterval",
            f"{slots:,.0f} scrape slots of about {_SLOT_B} B: horizon {_fmt_s(horizon)}"
            f" / scrapeInterval {interval}",
        ),
        _Term(pods_max * _POD_B, "world.platform.replicas", f"{pods_max:,} pods"),
    ]
    worker_b = math.fsum(t.amount for t in memory)
    parent = _Term(
        _float(total) * _RECORD_B,
        "replications",
        f"{_count(total)} records of about {_RECORD_B // 1024} KiB in the parent",
    )
    heaviest = max([*memory, parent], key=lambda t: t.amount)
    return Estimate(
        replications=total,
        cpu_s=cpu,
        replication_s=worst[0],
        replication_term=worst[1],
        policy=worst[2],
        process_bytes=max(worker_b, parent.amount),
        memory_term=heaviest,
    )


def check(plan: Estimate, budget: Budget | None = None) -> None:
    """Refuse ``plan`` beyond ``budget`` (None: ``DEFAULT_BUDGET``) with one line naming the
    field to blame, the estimate, the budget and ``ALLOW``."""
    budget = DEFAULT_BUDGET if budget is None else budget
    if not plan.replication_s <= budget.replication_s:
        term = plan.replication_term
        raise BudgetError(
            f"one replication of {plan.policy} would take about {_human_s(plan.replication_s)}"
            f" ({term.why}), over the budget of {_human_s(budget.replication_s)} per"
            f" replication; {_allow()}",
            path=term.path,
        )
    if not plan.process_bytes <= budget.memory_gib * _GIB:
        term = plan.memory_term
        raise BudgetError(
            f"the run would need about {_human_b(plan.process_bytes)} of memory in one process"
            f" ({term.why}), over the budget of {_human_b(budget.memory_gib * _GIB)}; {_allow()}",
            path=term.path,
        )
    if not plan.cpu_s <= budget.cpu_hours * 3600.0:
        raise BudgetError(
            f"the run would take about {_human_s(plan.cpu_s)} of CPU ({plan.summary()}), over"
            f" the budget of {_human_s(budget.cpu_hours * 3600.0)}; {_allow()}",
            path="replications",
        )


def _allow() -> str:
    return f"pass {ALLOW} to run it anyway"


# ---------------------------------------------------------------------------- one replication


def _replicas(world: World, policy: Any) -> int:
    replicas = world.platform.replicas or getattr(policy, "replicas", None) or 1
    return int(replicas)


def _replication_terms(world: World, policy: Any, slots: float) -> list[_Term]:
    """The cost of one replication of ``policy`` in ``world``, part by part."""
    platform, horizon = world.platform, float(world.horizon)
    n = _replicas(world, policy)
    rules = len(world.operators.alerts)
    evals = rules * horizon / platform.rule_evaluation_interval
    drafts = horizon / _DRAFT_S + 50.0
    where = "world.platform.replicas" if world.platform.replicas else f"{policy.name}.replicas"
    terms = [
        _Term(_BASE_S, "", "its fixed cost"),
        _Term(
            slots * _SLOT_S,
            "world.platform.scrapeInterval",
            f"{slots:,.0f} scrape slots: horizon {_fmt_s(horizon)} / scrapeInterval"
            f" {_fmt_s(platform.scrape_interval)}",
        ),
        _Term(
            evals * _EVAL_S,
            "world.platform.ruleEvaluationInterval",
            f"{evals:,.0f} alert evaluations: horizon {_fmt_s(horizon)} /"
            f" ruleEvaluationInterval {_fmt_s(platform.rule_evaluation_interval)}",
        ),
        _Term(n * _POD_S + n * n * _POD2_S, where, f"{n:,} pods"),
        _Term(
            world.users.count * drafts * _USER_DRAFT_S,
            "world.users.count",
            f"{world.users.count:,} users over {drafts:,.0f} traffic drafts",
        ),
    ]
    terms += _measurement_terms(policy, horizon, slots)
    ttl = getattr(policy, "dns_ttl", None)
    if ttl:
        moving = 2 * min(float(ttl), horizon) / platform.scrape_interval
        terms.append(
            _Term(
                moving * _DNS_SLOT_S,
                f"{policy.name}.dnsTtl",
                f"{moving:,.0f} scrape slots drawn one by one while clients move (dnsTtl"
                f" {_fmt_s(float(ttl))})",
            )
        )
    return terms


def _measurement_terms(policy: Any, horizon: float, slots: float) -> list[_Term]:
    """Gate measurements: each Argo metric up to its count (unbounded: one per interval over
    the horizon), and each Flagger tick once per metric."""
    uses = len(getattr(policy, "steps", ())) + 3  # step analyses, background, pre/post
    terms = []
    for node, path in _walk(policy, policy.name):
        if isinstance(node, Metric):
            interval = node.interval
            count = node.count or None
            if interval is None:
                n = float(count or 1) * uses
            else:
                n = horizon / interval if count is None else min(count * uses, horizon / interval)
            kayenta = node.provider.kayenta
            points = 1.0 if kayenta is None else max(1.0, (interval or 60.0) / kayenta.step)
            label = f"metric {node.name}" + (f" every {_fmt_s(interval)}" if interval else "")
        elif isinstance(node, FlaggerAnalysis):
            n = horizon / node.effective_interval_s * max(1, len(node.metrics))
            points = 1.0
            label = f"Flagger checks every {_fmt_s(node.effective_interval_s)}"
        else:
            continue
        cost = n * (_MEASURE_S + slots * _MEASURE_SLOT_S + points * _POINT_S)
        terms.append(_Term(cost, f"{path}.interval", f"{n:,.0f} measurements: {label}"))
    return terms


def _walk(node: Any, path: str):
    """Every model in a policy, depth first, with its dotted path (YAML names)."""
    yield node, path
    fields = getattr(type(node), "model_fields", None)
    if fields is not None:
        for name, info in fields.items():
            key = info.alias or name
            yield from _walk(getattr(node, name), f"{path}.{key}")
    elif isinstance(node, tuple | list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _walk(item, f"{path}.{key}")


# ---------------------------------------------------------------------------- words


def _float(n: int) -> float:
    """An int as a float, capped where a float would overflow (``replications: 10**400``)."""
    return float(min(n, 10**300))


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"{_float(n):.1e}"


def _fmt_s(seconds: float) -> str:
    if not math.isfinite(seconds):
        return str(seconds)
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3)):
        if seconds >= size:
            return f"{seconds / size:.4g}{unit}"
    return f"{seconds:.3g}s"


def _human_s(seconds: float) -> str:
    """A duration for a reader: '40 s', '3.2 hours', '2.1e+06 years'."""
    if not math.isfinite(seconds):
        return "forever"
    for unit, size in (("years", 3.156e7), ("days", 86400.0), ("hours", 3600.0), ("min", 60.0)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.2g} {unit}" if value < 1e4 else f"{value:.1e} {unit}"
    return f"{seconds:.2g} s"


def _human_b(size: float) -> str:
    if not math.isfinite(size):
        return "unbounded memory"
    for unit, scale in (("PiB", 2.0**50), ("TiB", 2.0**40), ("GiB", _GIB), ("MiB", 2.0**20)):
        if size >= scale:
            value = size / scale
            return f"{value:.3g} {unit}" if value < 1e4 else f"{value:.1e} {unit}"
    return f"{size / 1024:.3g} KiB"


# ---------------------------------------------------------------------------- the plan's size


def whole(value: Any, path: str, low: int, high: float = math.inf) -> int:
    """``value`` as an int in [low, high), else a one-line error (a bool is not a number)."""
    is_whole = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not (is_whole and low <= value < high):
        bounds = f"[{low}, {high})" if math.isfinite(high) else f">= {low}"
        raise PolicyError(f"{value!r} is not a whole number {bounds}", path=path)
    return int(value)


def counts(replications: Any, classes: Sequence[str]) -> dict[str, int]:
    """Replications per release class from an int (every class) or {class: int} (all of them)."""
    if isinstance(replications, Mapping):
        unknown = sorted(set(replications) - set(classes))
        missing = [c for c in classes if c not in replications]
        if unknown or missing:
            what = f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
            raise PolicyError(
                f"replications must name every release class ({', '.join(classes)}): {what}",
                path="replications",
            )
        given = {c: replications[c] for c in classes}
    else:
        given = dict.fromkeys(classes, replications)
    return {c: whole(n, f"replications.{c}", 1) for c, n in given.items()}


def few_replications(counts: Mapping[str, int]) -> list[str]:
    """A warning when a class has fewer than 2 replications: no interval can be computed."""
    few = {c: n for c, n in counts.items() if n < 2}
    if not few:
        return []
    which = ", ".join(f"{c} ({n})" for c, n in few.items())
    return [
        f"warning: replications: {which} below 2: confidence intervals and paired tests need"
        " at least 2 replications per class, so the report gives means without intervals"
        " and cannot call any difference significant"
    ]
