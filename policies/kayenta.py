"""Kayenta's NetflixACAJudge, so a simulated canary is judged exactly as Spinnaker would judge it.

Faithful to ``spinnaker/kayenta`` (reference notes: executors.md §B). Per metric: NaN handling,
optional IQR outlier removal, a Mann-Whitney confidence interval at confLevel 0.98 for the shift
canary − baseline, a tolerance of 0.25·|estimate| and effect-size gates. Then a weighted group
score with the critical-metric and 50 %-Nodata overrides, classified against pass/marginal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from policies.base import Model

__all__ = [
    "CONF_LEVEL",
    "NODATA_THRESHOLD",
    "TOLERANCE",
    "Judgement",
    "KayentaEffectSize",
    "KayentaJudge",
    "KayentaMetric",
    "MetricResult",
    "classify_metric",
    "classify_score",
    "cles",
    "iqr_outliers",
    "mann_whitney_interval",
    "mean_ratio",
    "score",
]

CONF_LEVEL = 0.98
"""Hard-coded in ``NetflixACAJudge.scala`` (the classifier's own default, 0.95, is not used)."""
TOLERANCE = 0.25
"""Fraction of |Hodges–Lehmann estimate| the interval must clear (``MannWhitneyClassifier``)."""
NODATA_THRESHOLD = 50.0
"""``WeightedSumScorer.NODATA_THRESHOLD``: this percentage of Nodata metrics or more scores 0."""
_NOISE_SCALE = 1e-5

Classification = Literal["Pass", "High", "Low", "Nodata", "NodataFailMetric", "Error"]
Direction = Literal["increase", "decrease", "either"]
EffectMeasure = Literal["meanRatio", "cles"]
_DEFAULT_LIMIT = {"meanRatio": 1.0, "cles": 0.5}
Samples = Sequence[float] | np.ndarray
"""A series of observations: a sequence of floats or a numpy array (each is read as an array)."""


# --------------------------------------------------------------------------- statistics


def mann_whitney_interval(
    experiment: Samples, control: Samples, conf_level: float = CONF_LEVEL
) -> tuple[float, float, float]:
    """(lower, upper, estimate) of the shift experiment − control, as ``MannWhitney.scala`` has it.

    R's ``wilcox.test(conf.int=TRUE, exact=FALSE, correct=TRUE)``: the normal approximation with
    average ranks, tie-corrected sigma and continuity correction, each bound a Brent root of
    ``(W(μ) − sign(W)/2)/σ − q`` on [min(x)−max(y), max(x)−min(y)], clamped to an end when the
    function does not change sign there. Raises ``ValueError`` when every observation is tied.
    """
    x = np.asarray(experiment, dtype=float)
    y = np.asarray(control, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError("both samples need at least one value")
    if not 0.0 < conf_level < 1.0:
        raise ValueError(f"conf_level {conf_level} is not in (0, 1)")
    nx, ny = x.size, y.size
    n = nx + ny
    shift_base = nx * (nx + 1) / 2 + nx * ny / 2
    mu_min = float(x.min() - y.max())
    mu_max = float(x.max() - y.min())

    from scipy.stats import rankdata

    def wdiff(mu: float, q: float) -> float:
        pooled = np.concatenate((x - mu, y))
        w = float(rankdata(pooled)[:nx].sum()) - shift_base
        ordered = np.sort(pooled)
        edges = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        t = np.diff(np.concatenate(([0], edges, [n]))).astype(float)
        variance = nx * ny / 12 * ((n + 1) - float((t**3 - t).sum()) / (n * (n - 1)))
        if variance <= 0.0:
            raise ValueError("cannot compute confidence interval when all observations are tied")
        return (w - 0.5 * float(np.sign(w))) / math.sqrt(variance) - q

    def root(q: float) -> float:
        if wdiff(mu_min, q) <= 0.0:
            return mu_min
        if wdiff(mu_max, q) >= 0.0:
            return mu_max
        from scipy.optimize import brentq  # scipy.optimize and .stats load lazily: slow imports

        return float(brentq(wdiff, mu_min, mu_max, args=(q,), xtol=1e-12, maxiter=1000))

    from scipy.special import ndtri

    zq = float(ndtri((1.0 - conf_level) / 2.0))  # the normal quantile: 0.98 -> -2.326
    return root(-zq), root(zq), root(0.0)


def mean_ratio(experiment: Samples, control: Samples) -> float:
    """mean(experiment)/mean(control); NaN if either mean is 0 (``EffectSizes.meanRatio``)."""
    e, c = float(np.mean(experiment)), float(np.mean(control))
    return math.nan if e == 0.0 or c == 0.0 else e / c


def cles(experiment: Samples, control: Samples) -> float:
    """P(experiment > control) + ½P(tie), from the pooled average ranks (``EffectSizes.cles``)."""
    from scipy.stats import rankdata

    m, n = len(experiment), len(control)
    ranks = rankdata(np.concatenate((np.asarray(experiment, float), np.asarray(control, float))))
    r1 = float(ranks[:m].sum())
    return (2 * r1 - m * (m + 1)) / (2 * n * m)


def iqr_outliers(values: Samples, factor: float = 3.0) -> np.ndarray:
    """Outlier mask of ``IQRDetector(factor, reduceSensitivity=true)``.

    Fences are min(P1, Q1 − f·IQR) and max(P99, Q3 + f·IQR). Percentiles follow commons-math
    ``StatUtils.percentile`` (position p·(n+1), i.e. numpy's "weibull"), so for n < 100 P1 and P99
    are the sample min and max and nothing is ever flagged (derived).
    """
    if factor <= 0:
        raise ValueError("outlier factor must be greater than zero")
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return np.zeros(0, dtype=bool)
    p1, q1, q3, p99 = np.percentile(data, [1, 25, 75, 99], method="weibull")
    iqr = q3 - q1
    lower = min(p1, q1 - factor * iqr)
    upper = max(p99, q3 + factor * iqr)
    return (data < lower) | (data > upper)


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric's verdict; ``ratio`` is always meanRatio (1.0 where Kayenta reports no test)."""

    classification: Classification
    critical: bool = False
    ratio: float = 1.0
    lower: float = math.nan
    upper: float = math.nan
    estimate: float = math.nan
    effect: float = math.nan


def _prepare(values: Sequence[float], nan_strategy: str, remove: bool, factor: float) -> np.ndarray:
    data = np.asarray(values, dtype=float).ravel()
    nan = np.isnan(data)
    data = np.where(nan, 0.0, data) if nan_strategy == "replace" else data[~nan]
    if remove and data.size:
        data = data[~iqr_outliers(data, factor)]
    return data


def classify_metric(
    experiment: Sequence[float],
    control: Sequence[float],
    *,
    direction: Direction = "either",
    nan_strategy: Literal["remove", "replace"] = "remove",
    remove_outliers: bool = False,
    outlier_factor: float = 3.0,
    critical: bool = False,
    must_have_data: bool = False,
    effect_measure: EffectMeasure = "meanRatio",
    allowed_increase: float | None = None,
    allowed_decrease: float | None = None,
    critical_increase: float | None = None,
    critical_decrease: float | None = None,
    rng: np.random.Generator | None = None,
) -> MetricResult:
    """Classify canary (experiment) against baseline (control) in ``MannWhitneyClassifier`` order.

    Effect limits left as None take Kayenta's default for the measure (1.0 meanRatio, 0.5 cles).
    ``rng`` is needed only when each series holds one distinct value (Kayenta adds noise there).
    """
    if direction not in ("increase", "decrease", "either"):
        raise ValueError(f"direction {direction!r} is not increase, decrease or either")
    if effect_measure not in _DEFAULT_LIMIT:
        raise ValueError(f"effect measure {effect_measure!r} is not meanRatio or cles")
    default = _DEFAULT_LIMIT[effect_measure]
    inc = default if allowed_increase is None else allowed_increase
    dec = default if allowed_decrease is None else allowed_decrease
    crit_inc = default if critical_increase is None else critical_increase
    crit_dec = default if critical_decrease is None else critical_decrease

    x = _prepare(experiment, nan_strategy, remove_outliers, outlier_factor)
    y = _prepare(control, nan_strategy, remove_outliers, outlier_factor)
    if x.size == 0 or y.size == 0:
        if nan_strategy == "replace":
            return MetricResult("Pass")
        if must_have_data and not critical:
            return MetricResult("NodataFailMetric")
        return MetricResult("Nodata", critical=critical)
    if np.array_equal(np.sort(x), np.sort(y)) or np.unique(np.concatenate((x, y))).size == 1:
        return MetricResult("Pass")
    if np.unique(x).size == 1 and np.unique(y).size == 1:
        if rng is None:
            raise ValueError(
                "both series are constant (and differ): Kayenta adds Gaussian noise here, "
                "so pass a numpy.random.Generator as rng"
            )
        x = x + rng.normal(0.0, abs(x[0]) * _NOISE_SCALE, x.size)
        y = y + rng.normal(0.0, abs(y[0]) * _NOISE_SCALE, y.size)
    try:
        lower, upper, estimate = mann_whitney_interval(x, y, CONF_LEVEL)
        ratio = mean_ratio(x, y)
        effect = ratio if effect_measure == "meanRatio" else cles(x, y)
    except (ValueError, ArithmeticError, FloatingPointError):
        return MetricResult("Error")
    bound = TOLERANCE * abs(estimate)
    nan_effect = math.isnan(effect)
    label: Classification = "Pass"
    if direction in ("increase", "either") and lower > bound and (nan_effect or effect >= inc):
        label = "High"
    elif direction in ("decrease", "either") and upper < -bound and (nan_effect or effect <= dec):
        label = "Low"
    flagged = critical and (
        (label == "High" and (nan_effect or effect >= crit_inc))
        or (label == "Low" and (nan_effect or effect <= crit_dec))
    )
    return MetricResult(label, flagged, ratio, lower, upper, estimate, effect)


# --------------------------------------------------------------------------- scoring


def _round2(value: float) -> float:
    """commons-math ``MathUtils.round(x, 2)``: half-up on the decimal string, not banker's."""
    return float(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def score(
    results: Mapping[str, MetricResult],
    groups: Mapping[str, Sequence[str]] | None = None,
    group_weights: Mapping[str, float] | None = None,
) -> float:
    """Summary score 0–100 of ``WeightedSumScorer`` (muted metrics must already be left out).

    ``groups`` maps each metric name to its group names (all in "default" if None). A group's
    score is 100·Pass/(Pass+High+Low+NodataFailMetric); a group with none of those counts 100.
    Unweighted groups share 100 − Σ given weights. Critical failures and ≥ 50 % Nodata give 0.
    """
    if not results:  # Kayenta: no groups, so the weighted sum is 0 (and 0/0 Nodata is not >= 50)
        return 0.0
    weights = dict(group_weights or {})
    membership: dict[str, list[MetricResult]] = {}
    for name, result in results.items():
        names = ("default",) if groups is None else groups.get(name)
        if isinstance(names, str):
            names = (names,)
        if not names:
            raise ValueError(f"metric {name!r} has no group")
        for group in dict.fromkeys(names):
            membership.setdefault(group, []).append(result)

    if any(r.critical and r.classification != "Pass" for r in results.values()):
        return 0.0
    nodata = sum(r.classification == "Nodata" for r in results.values())
    if nodata / len(results) * 100 >= NODATA_THRESHOLD:
        return 0.0

    unweighted = [g for g in membership if g not in weights]
    share = (100.0 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    total = 0.0
    for group, members in membership.items():
        counted = [
            r for r in members if r.classification in ("Pass", "High", "Low", "NodataFailMetric")
        ]
        passed = sum(r.classification == "Pass" for r in counted)
        effective = 100.0 if not counted else passed / len(counted) * 100
        total += effective * (weights.get(group, share) / 100)
    return _round2(total)


def classify_score(
    score: float, pass_score: float, marginal_score: float
) -> Literal["Pass", "Marginal", "Fail"]:
    """``ThresholdScoreClassifier``: ≥ pass → Pass, ≥ marginal → Marginal, else Fail."""
    if score >= pass_score:
        return "Pass"
    if score >= marginal_score:
        return "Marginal"
    return "Fail"


# --------------------------------------------------------------------------- policy config


class KayentaEffectSize(Model):
    """``analysisConfigurations.canary.effectSize``; a None limit means the measure's default."""

    measure: EffectMeasure = "meanRatio"
    allowed_increase: float | None = None
    allowed_decrease: float | None = None
    critical_increase: float | None = None
    critical_decrease: float | None = None

    @model_validator(mode="after")
    def _check(self) -> KayentaEffectSize:
        for name in (
            "allowed_increase",
            "allowed_decrease",
            "critical_increase",
            "critical_decrease",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} {value} must be a finite number >= 0")
            if self.measure == "cles" and value > 1:
                raise ValueError(f"{name} {value} is a probability for cles; must be <= 1")
        return self


class KayentaMetric(Model):
    """One canary metric: what the simulator measures and how Kayenta classifies it."""

    name: str = Field(min_length=1)
    measure: Literal["errorRate", "successRate", "latency"]
    quantile: float = Field(0.99, gt=0.0, lt=1.0)
    direction: Direction = "either"
    critical: bool = False
    must_have_data: bool = False
    muted: bool = False
    group: str = Field("default", min_length=1)
    nan_strategy: Literal["remove", "replace"] = "remove"
    effect_size: KayentaEffectSize = KayentaEffectSize()
    remove_outliers: bool = False
    outlier_factor: float = Field(3.0, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> KayentaMetric:
        if self.measure != "latency" and "quantile" in self.model_fields_set:
            raise ValueError(f"quantile applies only to latency, not {self.measure}")
        return self

    def classify(
        self, canary: Sequence[float], baseline: Sequence[float], rng: np.random.Generator | None
    ) -> MetricResult:
        """This metric's ``classify_metric`` with its configured options."""
        es = self.effect_size
        return classify_metric(
            canary,
            baseline,
            direction=self.direction,
            nan_strategy=self.nan_strategy,
            remove_outliers=self.remove_outliers,
            outlier_factor=self.outlier_factor,
            critical=self.critical,
            must_have_data=self.must_have_data,
            effect_measure=es.measure,
            allowed_increase=es.allowed_increase,
            allowed_decrease=es.allowed_decrease,
            critical_increase=es.critical_increase,
            critical_decrease=es.critical_decrease,
            rng=rng,
        )


@dataclass(frozen=True, slots=True)
class Judgement:
    """A judge run: summary score, its classification and every metric's result (muted too)."""

    score: float
    classification: Literal["Pass", "Marginal", "Fail"]
    results: Mapping[str, MetricResult]


class KayentaJudge(Model):
    """NetflixACAJudge as a policy gate.

    Kayenta itself has no default thresholds (``CanaryClassifierThresholdsConfig`` pass/marginal
    are required inputs); 95/75 are the values of the repository's sample configs.
    """

    pass_score: float = Field(95.0, ge=0.0, le=100.0)
    marginal_score: float = Field(75.0, ge=0.0, le=100.0)
    metrics: tuple[KayentaMetric, ...] = Field(min_length=1)
    group_weights: dict[str, float] | None = None

    @model_validator(mode="after")
    def _check(self) -> KayentaJudge:
        if self.marginal_score > self.pass_score:
            raise ValueError(
                f"marginalScore {self.marginal_score} is above passScore {self.pass_score}"
            )
        names = [m.name for m in self.metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique: {', '.join(duplicates)} repeated")
        if self.group_weights is not None:
            groups = {m.group for m in self.metrics}
            for group, weight in self.group_weights.items():
                if group not in groups:
                    raise ValueError(f"groupWeights names {group!r}, which no metric is in")
                if not (math.isfinite(weight) and 0 <= weight <= 100):
                    raise ValueError(f"groupWeights[{group!r}] = {weight} is not in [0, 100]")
            total = sum(self.group_weights.values())
            if total > 100 + 1e-9:
                raise ValueError(f"groupWeights total {total:g}, more than 100")
            if groups <= set(self.group_weights) and abs(total - 100) > 1e-9:
                raise ValueError(f"groupWeights cover every group but total {total:g}, not 100")
        return self

    def judge(
        self,
        canary: Mapping[str, Sequence[float]],
        baseline: Mapping[str, Sequence[float]],
        rng: np.random.Generator | None,
    ) -> Judgement:
        """Classify every metric's per-interval series, score the unmuted ones, classify the score.

        A metric missing from either mapping has no data.
        """
        results = {
            m.name: m.classify(canary.get(m.name, ()), baseline.get(m.name, ()), rng)
            for m in self.metrics
        }
        scored = {m.name: results[m.name] for m in self.metrics if not m.muted}
        groups = {m.name: (m.group,) for m in self.metrics}
        total = score(scored, groups, self.group_weights)
        return Judgement(
            total,
            classify_score(total, self.pass_score, self.marginal_score),
            MappingProxyType(results),
        )
