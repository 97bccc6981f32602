"""Sensitivity: would the verdict change if an assumption is wrong? (issue #14 part 4)

Each assumption (sim/runs/sensitivity_assumptions.py: fault severity, traffic, pod start-up,
router delay, human detection, acknowledgement, gate noise) is moved alone to the low and the
high end of its range, the rest of the world as written. Every variant runs every policy with
the scenario's seed, so replication ``i`` of class ``c`` meets the same draws in every variant:
differences between variants are paired too (common random numbers).

Each variant is read as the verdict reads a run (sim/report/facts.py): the **safest** policy
(fewest excess bad requests per bad release), the **fastest** (full rollout of a good release),
and the **key difference**: the base run's runner-up minus its safest, in excess bad requests
per bad release, paired, with its 95 % interval. An end **flips** the verdict when its safest
or fastest policy is another one; the crossing is then located by bisection in log space
between ×1 and that end (``bisect`` extra runs), where the mean paired difference between the
two policies changes sign. Only the ends are checked: a flip inside the range that reverts
before its end is not looked for.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.errors import PolicyError
from sim.runs.checkpoint import slug
from sim.runs.files import check_output, output_lock
from sim.runs.options import RunOptions, checkpoint_beside
from sim.runs.scenario import as_loaded
from sim.runs.sensitivity_assumptions import (
    ASSUMPTIONS,
    LABELS,
    SensitivitySpec,
    parse_spec,
    skip_reason,
    vary,
)
from sim.runs.summary import SAFETY, SPEED, paired_mixture

__all__ = [
    "Flip",
    "Reading",
    "SensitivityResult",
    "run_with_sensitivity",
    "sensitivity",
]


@dataclass(frozen=True)
class Reading:
    """One run of the analysis (an assumption at one factor) read as the verdict reads it.

    ``key``: base runner-up − base safest, excess bad requests per bad release (paired);
    ``safety_vs`` / ``speed_vs``: this run's safest (fastest) − the base's, (diff, low, high,
    significant), all nan when they are the same policy."""

    assumption: str  # "" for the base run
    end: str  # base, low, high, bisect
    factor: float
    value: str
    safest: str
    fastest: str
    pick: str
    key: float
    key_low: float
    key_high: float
    key_significant: bool
    blast: dict[str, float]
    rollout: dict[str, float]
    safety_vs: tuple[float, float, float, bool]
    speed_vs: tuple[float, float, float, bool]
    nothing_catches: bool
    failed: int


@dataclass(frozen=True)
class Flip:
    """An end of a range where the safest (``what`` = "safest") or the fastest policy changes,
    and the factors between which the change happens (``bracket``, with its values)."""

    assumption: str
    what: str
    end: str
    factor: float
    before: str
    after: str
    significant: bool  # at the end: the new winner is better by a 95 % paired interval
    bracket: tuple[float, float]
    bracket_values: tuple[str, str]
    located: bool  # bisection bracketed the sign change of the paired difference


@dataclass(frozen=True)
class SensitivityResult:
    """Every reading (the base, each end, each bisection run), the flips, what was skipped."""

    scenario: str
    seed: int
    replications: dict[str, int]
    safest: str
    runner_up: str
    fastest: str
    base: Reading
    readings: tuple[Reading, ...]
    ranges: dict[str, tuple[float, float]]
    flips: tuple[Flip, ...]
    skipped: dict[str, str]
    base_values: dict[str, str]
    wall_time_s: float = math.nan
    notes: tuple[str, ...] = field(default=())

    def reading(self, assumption: str, end: str) -> Reading:
        """The reading of ``assumption`` at ``end`` (low, high; base is the base run)."""
        if end == "base":
            return self.base
        for r in self.readings:
            if r.assumption == assumption and r.end == end:
                return r
        raise KeyError(f"no reading of {assumption!r} at {end!r}")

    @property
    def varied(self) -> list[str]:
        return [a for a in ASSUMPTIONS if a in self.ranges and a not in self.skipped]

    def frame(self):
        """One row per run: assumption, end, factor, value, safest, fastest, pick, the key
        difference with its interval, and each policy's blast radius and rollout time."""
        import pandas as pd

        rows = []
        for r in (self.base, *self.readings):
            row: dict[str, Any] = {
                "assumption": r.assumption or "base",
                "end": r.end,
                "factor": r.factor,
                "value": r.value,
                "safest": r.safest,
                "fastest": r.fastest,
                "pick": r.pick,
                "key_difference": r.key,
                "key_ci_low": r.key_low,
                "key_ci_high": r.key_high,
                "key_significant": r.key_significant,
                "failed": r.failed,
            }
            for p, v in r.blast.items():
                row[f"excess_bad_requests_per_bad_release[{p}]"] = v
            for p, v in r.rollout.items():
                row[f"rollout_duration_good[{p}]"] = v
            rows.append(row)
        return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- reading a run


def _diff(frame, a: str, b: str, metric: str, classes) -> tuple[float, float, float, bool]:
    """b − a, paired, per release of ``classes``; NaN for a policy against itself."""
    if a == b:
        return (math.nan, math.nan, math.nan, False)
    return paired_mixture(frame, a, b, metric, classes)


def _read(result, assumption, end, factor, value, base: Reading | None) -> Reading:
    from sim.report.facts import Facts  # the verdict's own rule, one layer up (on purpose)

    facts = Facts.build(result)
    bad, good = list(facts.bad), list(facts.good) or None
    if base is None:
        ranked = sorted(facts.policies, key=lambda p: _inf(facts.blast(p)))
        safest, runner = facts.safest, next(p for p in ranked if p != facts.safest)
        fastest = facts.fastest
    else:
        safest, runner, fastest = base.safest, _runner(base), base.fastest
    key = _diff(facts.frame, safest, runner, SAFETY, bad)
    return Reading(
        assumption=assumption,
        end=end,
        factor=float(factor),
        value=value,
        safest=facts.safest,
        fastest=facts.fastest,
        pick=facts.pick,
        key=key[0],
        key_low=key[1],
        key_high=key[2],
        key_significant=key[3],
        blast={p: facts.blast(p) for p in facts.policies},
        rollout={p: facts.rollout(p) for p in facts.policies},
        safety_vs=_diff(facts.frame, safest, facts.safest, SAFETY, bad),
        speed_vs=_diff(facts.frame, fastest, facts.fastest, SPEED, good),
        nothing_catches=facts.nothing_catches,
        failed=int(result.failed),
    )


def _runner(base: Reading) -> str:
    """The base run's runner-up: the second fewest excess bad requests per bad release."""
    ranked = sorted(base.blast, key=lambda p: _inf(base.blast[p]))
    return next(p for p in ranked if p != base.safest)


def _inf(x: float) -> float:
    return math.inf if x is None or math.isnan(x) else x


# ---------------------------------------------------------------------------- running


class _Runner:
    """Runs one world (the scenario's policies, seed and replications), each with its own
    checkpoint under ``root`` when given, and reads it."""

    def __init__(self, loaded, opts, root: Path | None) -> None:
        self.loaded, self.opts, self.root = loaded, opts, root

    def run(self, world, tag: str):
        from sim.runs.budget import BudgetError
        from sim.runs.runner import run

        checkpoint = None if self.root is None else self.root / slug(tag)
        try:
            return run(world, self.loaded.policies, **self.opts.run_kwargs(), checkpoint=checkpoint)
        except BudgetError as exc:
            path = self.loaded.path
            raise exc.with_file(str(path)) if path else exc from None


def _spec(loaded, ranges, skip, bisect) -> SensitivitySpec:
    """The scenario's ``sensitivity:`` section under the caller's ranges, skips and bisect."""
    where = str(loaded.path) if loaded.path is not None else None
    spec = parse_spec(loaded.scenario.sensitivity, file=where)
    given = parse_spec(dict(ranges or {}), path="ranges")
    asked = parse_spec({"skip": list(skip)}, path="").skip  # a wrong name: one line, now
    update: dict[str, Any] = {"skip": tuple(dict.fromkeys((*spec.skip, *given.skip, *asked)))}
    for name in type(spec).model_fields:
        if name not in ("skip", "bisect") and getattr(given, name) is not None:
            update[name] = getattr(given, name)
    if bisect is not None:
        update["bisect"] = parse_spec({"bisect": bisect}, path="bisect").bisect
    return spec.model_copy(update=update)


def _check(loaded) -> None:
    where = str(loaded.path) if loaded.path is not None else None
    if len(loaded.policies) < 2:
        raise PolicyError(
            "sensitivity compares policies: the scenario has only one; add a second policy",
            path="policies",
            file=where,
        )
    if not any(c.is_bad for c in loaded.world.releases):
        raise PolicyError(
            "sensitivity needs a bad release class: the verdict's key difference is excess bad"
            " requests per bad release; give a class a fault",
            path="world.releases",
            file=where,
        )


def analyse(
    loaded, opts, *, root: Path | None = None, base=None, ranges=None, skip=(), bisect=None
):
    """The analysis on a ``LoadedScenario`` with resolved options; ``base``: the scenario's own
    run with these options, if already made (it is not rerun); ``root``: checkpoints."""
    _check(loaded)
    started = time.perf_counter()
    spec = _spec(loaded, ranges, skip, bisect)
    world, policies = loaded.world, loaded.policies
    chosen = spec.ranges()
    skipped = {n: r for n in chosen if (r := skip_reason(world, policies, n)) is not None}
    if all(n in skipped for n in chosen):  # before any run: nothing would be varied
        where = str(loaded.path) if loaded.path is not None else None
        raise PolicyError(
            "nothing to vary: every assumption is skipped or absent from this world"
            + "".join(f"; {LABELS[n]}: {why}" for n, why in skipped.items()),
            path="sensitivity.skip",
            file=where,
        )
    runner = _Runner(loaded, opts, root)
    base_result = base if base is not None else runner.run(world, "base")
    base_reading = _read(base_result, "", "base", 1.0, "as written", None)
    readings: list[Reading] = []
    flips: list[Flip] = []
    base_values = {n: vary(world, policies, n, 1.0).value for n in chosen if n not in skipped}
    for name in chosen:
        if name in skipped:
            continue
        for end, factor in zip(("low", "high"), chosen[name]):
            if factor == 1.0:
                continue
            variant = vary(world, policies, name, factor)
            result = runner.run(variant.world, f"{name}-{end}-{factor:.6g}")
            reading = _read(result, name, end, factor, variant.value, base_reading)
            readings.append(reading)
            for what in ("safest", "fastest"):
                if getattr(reading, what) != getattr(base_reading, what):
                    flip, extra = _locate(runner, loaded, base_reading, reading, what, spec.bisect)
                    flips.append(flip)
                    readings += extra
    notes = [f"{LABELS[n]} is not varied: {why}." for n, why in skipped.items()] + [
        f"{LABELS[n]} is not varied: skipped by request." for n in spec.skip
    ]
    return SensitivityResult(
        scenario=loaded.scenario.name,
        seed=int(base_result.seed),
        replications=dict(base_result.replications),
        safest=base_reading.safest,
        runner_up=_runner(base_reading),
        fastest=base_reading.fastest,
        base=base_reading,
        readings=tuple(readings),
        ranges={n: chosen[n] for n in chosen},
        flips=tuple(flips),
        skipped=skipped,
        base_values=base_values,
        wall_time_s=time.perf_counter() - started,
        notes=tuple(notes),
    )


def _locate(runner, loaded, base: Reading, end: Reading, what: str, steps: int):
    """The flip at ``end`` and the bisection runs that bracket it: in log space between ×1 and
    the end, where the mean paired difference (new winner − old winner) changes sign."""
    before, after = getattr(base, what), getattr(end, what)
    metric, vs = (SAFETY, "safety_vs") if what == "safest" else (SPEED, "speed_vs")
    world, policies, name = loaded.world, loaded.policies, end.assumption
    lo, hi = 1.0, end.factor  # lo: not flipped, hi: flipped
    extra: list[Reading] = []
    at_end = getattr(end, vs)
    located = True
    for _ in range(steps):
        mid = math.exp(0.5 * (math.log(lo) + math.log(hi)))
        variant = vary(world, policies, name, mid)
        result = runner.run(variant.world, f"{name}-bisect-{mid:.6g}")
        reading = _read(result, name, "bisect", mid, variant.value, base)
        extra.append(reading)
        d = _winner_diff(result, before, after, metric)
        if math.isnan(d):
            located = False
            break
        if d < 0:
            hi = mid
        else:
            lo = mid
    bracket = (min(lo, hi), max(lo, hi))
    values = tuple(vary(world, policies, name, f).value for f in bracket)
    flip = Flip(
        assumption=name,
        what=what,
        end=end.end,
        factor=end.factor,
        before=before,
        after=after,
        significant=bool(at_end[3]) and at_end[0] < 0,
        bracket=bracket,
        bracket_values=(values[0], values[1]),
        located=located and steps > 0,
    )
    return flip, extra


def _winner_diff(result, before: str, after: str, metric: str) -> float:
    """after − before, paired: per bad release (safety) or per good release (speed)."""
    frame = result.frame[result.frame["error"].fillna("").astype(str) == ""]
    flags = frame.groupby("release_class", sort=False)["bad_release"].first()
    bad = [c for c, is_bad in flags.items() if bool(is_bad)]
    good = [c for c, is_bad in flags.items() if not bool(is_bad)]
    classes = bad if metric == SAFETY else (good or None)
    return _diff(frame, before, after, metric, classes)[0]


# ---------------------------------------------------------------------------- entry points


def sensitivity(
    scenario,
    options: RunOptions | None = None,
    out=None,
    *,
    ranges: dict[str, tuple[float, float]] | None = None,
    skip=(),
    bisect: int | None = None,
) -> SensitivityResult:
    """Vary each key assumption of a scenario (its path or a ``LoadedScenario``) one at a time
    over its range and read the verdict at each end (module docstring).

    ``ranges``: {assumption: (low, high)} factors over the scenario's ``sensitivity:`` section
    over ``DEFAULT_RANGES``; ``skip``: assumptions left out; ``bisect``: runs per flip to locate
    it (default 4); ``options``: ``RunOptions`` over the scenario's own. With ``out`` (a folder)
    also write report.html, report.md, sensitivity.csv and figures/ there, each variant run
    with a checkpoint beside it (``options.resume`` continues an interrupted analysis).
    """
    loaded = as_loaded(scenario)
    opts = (options or RunOptions()).resolve(loaded)
    kw: dict[str, Any] = {"ranges": ranges, "skip": tuple(skip), "bisect": bisect}
    if out is None:
        return analyse(loaded, opts, **kw)
    check_output(out, "sensitivity")
    with output_lock(out):
        root = _variants(out, opts.resume)
        result = analyse(loaded, opts, root=root, **kw)
        from sim.report.sensitivity_report import write_sensitivity

        write_sensitivity(result, loaded, out)
        _keep(root, out)
    return result


def run_with_sensitivity(scenario, options: RunOptions | None = None, out=None, **kw):
    """``sim.runs.sweep.run_scenario`` with a "Sensitivity" section in the run's report: the
    run itself is the analysis's base (not run twice). Returns (RunResult, SensitivityResult);
    ``kw``: ``ranges``, ``skip``, ``bisect`` as for ``sensitivity``."""
    loaded = as_loaded(scenario)
    opts = (options or RunOptions()).resolve(loaded)
    _check(loaded)
    if out is None:
        result = _Runner(loaded, opts, None).run(loaded.world, "base")
        return result, analyse(loaded, opts, base=result, **kw)
    check_output(out, "report")
    with output_lock(out):
        root = _variants(out, opts.resume)
        result = _Runner(loaded, opts, root).run(loaded.world, "base")
        analysis = analyse(loaded, opts, root=root, base=result, **kw)
        from sim.report.write import ReportIncomplete, write_report

        try:
            write_report(result, loaded, out, sensitivity=analysis)
        except ReportIncomplete as exc:  # the results are on disk: the variants are done
            _keep(root, out)
            exc.result = result
            raise
        _keep(root, out)
    return result, analysis


VARIANTS = "variants"
"""The folder in a written analysis that keeps every variant's replications (checkpoints):
``--resume`` on a finished analysis reads them back and simulates nothing."""


def _variants(out, resume: bool | None) -> Path:
    """The checkpoint root of an analysis writing ``out`` (beside it while it runs). With
    ``resume`` and no interrupted root, a finished analysis's kept variants are taken back."""
    root = checkpoint_beside(out, resume)
    kept = Path(out) / VARIANTS
    if resume and not root.exists() and kept.is_dir():
        kept.rename(root)
    return root


def _keep(root: Path, out) -> None:
    """Keep the finished variants inside the written folder (replacing older ones)."""
    kept = Path(out) / VARIANTS
    shutil.rmtree(kept, ignore_errors=True)
    if root.is_dir():
        root.rename(kept)
