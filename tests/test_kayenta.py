"""Kayenta NetflixACAJudge: the interval, each classification, the scorer and the policy config."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

import policies.kayenta as kayenta
from policies.base import validate_model
from policies.errors import PolicyError
from policies.kayenta import (
    KayentaJudge,
    MetricResult,
    classify_metric,
    classify_score,
    cles,
    iqr_outliers,
    mann_whitney_interval,
    score,
)

GRID = np.arange(1.0, 9.0)  # 1..8; GRID + s has pairwise differences s + k, k = -7..7, 8-|k| times


def _r(label: str, critical: bool = False) -> MetricResult:
    return MetricResult(label, critical)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the interval


def test_interval_matches_upstream_kayenta_suite():
    """kayenta-mannwhitney MannWhitneySuite "returns expected values" (tied out against R)."""
    lower, upper, est = mann_whitney_interval([10, 20, 30, 40], [1, 2, 3, 4], conf_level=0.95)
    assert (lower, upper, est) == pytest.approx((6.0, 39.0, 22.5), abs=1e-6)


def test_interval_hand_computed_grid():
    """x = y + 4.5 with y = 1..8: no ties inside a sample, σ = sqrt(8·8/12·17) = 9.5219.

    U(μ) = #{x_i − y_j > μ}; the differences are 4.5 + k with multiplicity 8 − |k|. Between the
    jumps 0.5 and 1.5, U = 54, W = 22 and (22 − 0.5)/σ = 2.258 < z_0.99 = 2.326, while between −0.5
    and 0.5, U = 58 and (25.5)/σ = 2.678 > 2.326: the 98 % lower bound is the jump 0.5. For 95 %
    (z = 1.960): (21.5)/σ = 2.258 > 1.96 on (0.5, 1.5) and (16.5)/σ = 1.733 < 1.96 on (1.5, 2.5),
    so it is 1.5. By symmetry the upper bounds are 8.5 and 7.5. W jumps from +4 to −4 at 4.5, so
    the estimate is pinned at 4.5, the Hodges–Lehmann median. R's wilcox.test(x, y, conf.int=TRUE,
    exact=FALSE) gives these to its uniroot tolerance (1e-4).
    """
    assert mann_whitney_interval(GRID + 4.5, GRID) == pytest.approx((0.5, 8.5, 4.5), abs=1e-9)
    assert mann_whitney_interval(GRID + 4.5, GRID, 0.95) == pytest.approx((1.5, 7.5, 4.5), abs=1e-9)


def test_estimate_equals_brute_force_hodges_lehmann_when_pinned():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0])
    diffs = np.subtract.outer(x, y).ravel()  # -1, 0, 0, 1, 1, 1, 2, 2, 3
    assert float(np.median(diffs)) == 1.0
    _, _, est = mann_whitney_interval(x, y)
    assert est == pytest.approx(1.0, abs=1e-9)  # W jumps from +1.5 to -1.5 at 1


def _brute_bounds(x, y, alpha):
    """Invert scipy's asymptotic, continuity-corrected, tie-corrected one-sided tests directly.

    Near the lower bound W > 0, where R's (W − ½)/σ equals scipy's "greater" statistic, so the
    lower bound is the first pairwise difference above which that p-value reaches α/2.
    """
    d = np.unique(np.subtract.outer(x, y).ravel())
    mids = (d[:-1] + d[1:]) / 2

    def p(mu, side):
        return mannwhitneyu(
            x - mu, y, alternative=side, method="asymptotic", use_continuity=True
        ).pvalue

    lower = next(d[k] for k, m in enumerate(mids) if p(m, "greater") >= alpha / 2)
    upper = next(d[k + 1] for k, m in reversed(list(enumerate(mids))) if p(m, "less") >= alpha / 2)
    return lower, upper


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_interval_against_scipy_inversion_and_hodges_lehmann(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(1.0, 1.0, 9), rng.normal(0.0, 1.0, 12)  # N = 108 pairwise differences
    lower, upper, est = mann_whitney_interval(x, y, 0.98)
    assert (lower, upper) == pytest.approx(_brute_bounds(x, y, 0.02), abs=1e-9)
    d = np.sort(np.subtract.outer(x, y).ravel())
    # N even: f(μ, 0) = 0 exactly where W = 0, i.e. between d[N/2 − 1] and d[N/2]; the HL
    # median (their mean) lies there too.
    n = d.size
    assert d[n // 2 - 1] - 1e-9 <= est <= d[n // 2] + 1e-9
    assert d[n // 2 - 1] <= np.median(d) <= d[n // 2]


def test_interval_clamps_to_search_ends():
    """R's own comment case wilcox.test(1, 2:60, conf.int=TRUE): no sign change → the ends."""
    lower, upper, est = mann_whitney_interval([1.0], np.arange(2.0, 61.0))
    assert (lower, upper) == (-59.0, -1.0)
    assert -31.0 <= est <= -29.0  # HL median −30, W = ±½ flat zone


def test_interval_all_tied_raises():
    with pytest.raises(ValueError, match="all observations are tied"):
        mann_whitney_interval([1.0, 1.0], [1.0, 1.0, 1.0])


def test_cles_brute_force():
    x, y = np.array([1.0, 2.0, 2.0, 5.0]), np.array([2.0, 3.0, 0.5])
    brute = np.mean(np.greater.outer(x, y) + 0.5 * np.equal.outer(x, y))
    assert cles(x, y) == pytest.approx(brute)
    assert cles([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.5


# --------------------------------------------------------------------------- classification


def test_pass_identical_and_constant():
    assert classify_metric([3.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == MetricResult("Pass", ratio=1.0)
    assert classify_metric([5.0, 5.0], [5.0, 5.0, 5.0]).classification == "Pass"


def test_pass_when_interval_straddles_zero():
    r = classify_metric(GRID + 2, GRID)  # CI (-2, 6), estimate 2
    assert r.classification == "Pass"
    assert (r.lower, r.upper, r.estimate) == pytest.approx((-2.0, 6.0, 2.0), abs=1e-9)


def test_tolerance_of_a_quarter_of_the_estimate():
    # shift 5: CI (1, 9) excludes 0 but 1 <= 0.25·5 → Pass; shift 6: CI (2, 10), 2 > 1.5 → High
    assert classify_metric(GRID + 5, GRID).classification == "Pass"
    assert classify_metric(GRID + 6, GRID).classification == "High"


def test_high_hand_computed():
    r = classify_metric(GRID + 10, GRID)  # canary 11..18, baseline 1..8
    assert r.classification == "High" and not r.critical
    assert (r.lower, r.upper, r.estimate) == pytest.approx((6.0, 14.0, 10.0), abs=1e-9)
    assert r.ratio == pytest.approx(14.5 / 4.5)


def test_low_hand_computed():
    r = classify_metric(GRID, GRID + 10)
    assert r.classification == "Low"
    assert (r.lower, r.upper, r.estimate) == pytest.approx((-14.0, -6.0, -10.0), abs=1e-9)
    assert r.ratio == pytest.approx(4.5 / 14.5)


def test_effect_size_gates():
    assert classify_metric(GRID + 10, GRID, allowed_increase=3.2).classification == "High"
    assert classify_metric(GRID + 10, GRID, allowed_increase=3.3).classification == "Pass"
    assert classify_metric(GRID, GRID + 10, allowed_decrease=0.32).classification == "Low"
    assert classify_metric(GRID, GRID + 10, allowed_decrease=0.30).classification == "Pass"
    # control mean 0 → meanRatio NaN → the gate does not block
    centred = GRID - 4.5
    r = classify_metric(centred + 10, centred, allowed_increase=100.0)
    assert r.classification == "High" and math.isnan(r.ratio)
    # cles: full separation gives 1.0 (≥ the 0.5 default), the reported ratio stays meanRatio
    r = classify_metric(GRID + 10, GRID, effect_measure="cles")
    assert (r.classification, r.effect, r.ratio) == ("High", 1.0, pytest.approx(14.5 / 4.5))


def test_direction():
    assert classify_metric(GRID + 10, GRID, direction="decrease").classification == "Pass"
    assert classify_metric(GRID + 10, GRID, direction="increase").classification == "High"
    assert classify_metric(GRID, GRID + 10, direction="increase").classification == "Pass"
    assert classify_metric(GRID, GRID + 10, direction="decrease").classification == "Low"


def test_nodata_and_nodata_fail_metric():
    assert classify_metric([], GRID) == MetricResult("Nodata")
    assert classify_metric([math.nan, math.nan], GRID).classification == "Nodata"
    assert classify_metric(GRID, [], critical=True) == MetricResult("Nodata", critical=True)
    assert classify_metric([], GRID, must_have_data=True) == MetricResult("NodataFailMetric")
    # must-have-data on a critical metric stays a critical Nodata
    assert classify_metric([], GRID, must_have_data=True, critical=True) == MetricResult(
        "Nodata", critical=True
    )
    assert classify_metric([], GRID, nan_strategy="replace").classification == "Pass"
    # replace: NaN → 0, so [nan, 3] vs [0, 3] are identical
    assert classify_metric([math.nan, 3.0], [0.0, 3.0], nan_strategy="replace").ratio == 1.0


def test_critical_flag_follows_critical_effect_size():
    assert classify_metric(GRID + 10, GRID, critical=True).critical
    r = classify_metric(GRID + 10, GRID, critical=True, critical_increase=4.0)
    assert r.classification == "High" and not r.critical
    assert classify_metric(GRID, GRID + 10, critical=True).critical
    assert not classify_metric(GRID + 2, GRID, critical=True).critical  # Pass


def test_constant_series_get_seeded_noise():
    with pytest.raises(ValueError, match="Generator"):
        classify_metric([2.0] * 10, [1.0] * 10)
    a = classify_metric([2.0] * 10, [1.0] * 10, rng=np.random.default_rng(7))
    b = classify_metric([2.0] * 10, [1.0] * 10, rng=np.random.default_rng(7))
    assert a == b and a.classification == "High" and a.ratio == pytest.approx(2.0, rel=1e-4)


def test_runtime_failure_is_error(monkeypatch):
    def boom(*_args, **_kwargs):
        raise ValueError("numerical failure")

    monkeypatch.setattr(kayenta, "mann_whitney_interval", boom)
    assert classify_metric(GRID + 1, GRID, critical=True) == MetricResult("Error")


def test_iqr_percentiles_and_reduced_sensitivity():
    # commons-math StatUtils.percentile: position p(n+1)/100 → P25 of 1..10 is 2.75, P75 8.25
    data = np.arange(1.0, 11.0)
    assert np.percentile(data, [25, 75], method="weibull") == pytest.approx([2.75, 8.25])
    # n < 100: P1/P99 are the min/max, so even a 1e6 spike survives (reduceSensitivity)
    small = np.append(np.linspace(0, 1, 49), 1e6)
    assert not iqr_outliers(small).any()
    big = np.append(np.linspace(0, 1, 199), 1e6)
    assert iqr_outliers(big).tolist() == [False] * 199 + [True]
    kept = classify_metric(big, np.linspace(0, 1, 200))
    cleaned = classify_metric(big, np.linspace(0, 1, 200), remove_outliers=True)
    assert kept.ratio > 1000 and cleaned.ratio == pytest.approx(1.0, abs=0.01)


# --------------------------------------------------------------------------- scoring


def test_group_score_arithmetic():
    results = {
        "a1": _r("Pass"),
        "a2": _r("Pass"),
        "a3": _r("High"),
        "b1": _r("Pass"),
        "b2": _r("Nodata"),
    }
    groups = {"a1": ["A"], "a2": ["A"], "a3": ["A"], "b1": ["B"], "b2": ["B"]}
    # A = 100·2/3 at weight 60 → 40; B = 100 (Nodata left out) at the remaining 40 → 40
    assert score(results, groups, {"A": 60}) == 80.0
    # unweighted: 66.67·0.5 + 100·0.5 = 83.33
    assert score(results, groups) == 83.33
    # one group: 3 of 4 counted metrics pass
    assert score(results) == 75.0


def test_group_without_counted_metrics_scores_100_and_errors_are_excluded():
    results = {"x": _r("Pass"), "y": _r("High"), "z": _r("Nodata")}
    assert score(results, {"x": ["g1"], "y": ["g1"], "z": ["g2"]}) == 75.0  # 50·½ + 100·½
    assert score({"p": _r("Pass"), "e": _r("Error")}) == 100.0
    assert score({"p": _r("Pass"), "f": _r("NodataFailMetric")}) == 50.0
    # a metric in two groups counts in both
    two = {"x": _r("High"), "y": _r("Pass")}
    assert score(two, {"x": ["g1", "g2"], "y": ["g1"]}) == 25.0  # g1 50, g2 0
    # weight given to a group no metric is in is lost, as in WeightedSumScorer
    assert (
        score(
            {"x": _r("Pass"), "y": _r("Pass")}, {"x": ["g1"], "y": ["g2"]}, {"g1": 50, "ghost": 30}
        )
        == 70.0
    )


def test_critical_override():
    results = {f"m{i}": _r("Pass") for i in range(9)}
    assert score({**results, "c": _r("High", critical=True)}) == 0.0
    assert score({**results, "c": _r("High", critical=False)}) == 90.0
    assert score({**results, "c": _r("Nodata", critical=True)}) == 0.0


def test_nodata_override_at_fifty_percent():
    assert score({"a": _r("Pass"), "b": _r("Pass"), "c": _r("Nodata"), "d": _r("Nodata")}) == 0.0
    assert score({"a": _r("Pass"), "b": _r("Pass"), "c": _r("Nodata")}) == 100.0
    # NodataFailMetric is not Nodata for this rule
    assert score({"a": _r("Pass"), "b": _r("NodataFailMetric")}) == 50.0
    assert score({}) == 0.0  # nothing scored (everything muted): Kayenta's sum is 0


def test_rounding_is_half_up_to_two_decimals():
    # A: 1 of 16 pass = 6.25 at weight 50 → 3.125; B: 0 → summary 3.125 → 3.13 (round() → 3.12)
    results = {f"a{i}": _r("Pass" if i == 0 else "High") for i in range(16)} | {"b": _r("Low")}
    groups = {name: ["B" if name == "b" else "A"] for name in results}
    assert round(3.125, 2) == 3.12
    assert score(results, groups, {"A": 50, "B": 50}) == 3.13


def test_classify_score():
    assert classify_score(95.0, 95.0, 75.0) == "Pass"
    assert classify_score(94.99, 95.0, 75.0) == "Marginal"
    assert classify_score(75.0, 95.0, 75.0) == "Marginal"
    assert classify_score(74.99, 95.0, 75.0) == "Fail"


# --------------------------------------------------------------------------- the policy model


def _judge(**extra):
    data = {
        "metrics": [
            {"name": "errors", "measure": "errorRate", "direction": "increase", "group": "errors"},
            {"name": "p99", "measure": "latency", "quantile": 0.99, "group": "latency"},
            {"name": "cpu", "measure": "latency", "muted": True},
        ]
    }
    return validate_model(KayentaJudge, data | extra)


def test_judge_defaults_and_yaml_keys():
    j = _judge(groupWeights={"errors": 70})
    assert (j.pass_score, j.marginal_score) == (95.0, 75.0)
    assert j.metrics[0].effect_size.measure == "meanRatio"
    out = j.to_dict()
    assert out["groupWeights"] == {"errors": 70.0}
    assert validate_model(KayentaJudge, out) == j
    es = {"measure": "cles", "allowedIncrease": 0.7}
    m = {"name": "x", "measure": "errorRate", "effectSize": es, "mustHaveData": True}
    assert validate_model(KayentaJudge, {"metrics": [m]}).metrics[0].must_have_data


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"passScore": 70, "marginalScore": 80}, "above passScore"),
        ({"passScore": 101}, "must be <= 100"),
        ({"metrics": []}, "at least 1"),
        ({"groupWeights": {"nope": 10}}, "no metric is in"),
        ({"groupWeights": {"errors": 80, "latency": 30}}, "more than 100"),
        ({"groupWeights": {"errors": 50, "latency": 40, "default": 0}}, "not 100"),
        ({"metrics": [{"name": "a", "measure": "errorRate", "quantile": 0.5}]}, "only to latency"),
        ({"metrics": [{"name": "a", "measure": "errorRate"}] * 2}, "unique"),
        ({"metrics": [{"name": "a", "measure": "errorRate", "bogus": 1}]}, "unknown key"),
    ],
)
def test_judge_validation(extra, message):
    with pytest.raises(PolicyError, match=message):
        _judge(**extra)


def test_judge_end_to_end():
    j = _judge(groupWeights={"errors": 50, "latency": 50})
    base = {"errors": list(GRID / 1000), "p99": list(GRID * 10), "cpu": list(GRID)}
    rng = np.random.default_rng(0)
    same = j.judge(base, base, rng)
    assert (same.score, same.classification) == (100.0, "Pass")
    bad = {**base, "p99": list((GRID + 10) * 10), "cpu": list(GRID + 100)}
    verdict = j.judge(bad, base, rng)
    assert verdict.results["p99"].classification == "High"
    assert verdict.results["cpu"].classification == "High"  # muted: reported, not scored
    assert (verdict.score, verdict.classification) == (50.0, "Fail")
    missing = j.judge({"p99": base["p99"]}, base, rng)
    assert missing.results["errors"].classification == "Nodata"
    assert (missing.score, missing.classification) == (0.0, "Fail")  # 1 of 2 scored: 50 % Nodata


# --------------------------------------------------------------------------- statistics under H0


def test_false_positive_rate_under_h0():
    """Same distribution for canary and baseline, 50 intervals each (Spinnaker's minimum).

    The 98 % interval should miss 0 in ≈ 2 % of runs; the 0.25·|estimate| tolerance only makes a
    non-Pass rarer. Tolerances are 3 Monte Carlo standard errors at the nominal 2 %.
    """
    reps, n = 800, 50
    rng = np.random.default_rng(20240601)
    misses = flagged = 0
    for _ in range(reps):
        canary, baseline = rng.normal(100, 10, n), rng.normal(100, 10, n)
        r = classify_metric(canary, baseline)
        misses += r.lower > 0 or r.upper < 0
        flagged += r.classification != "Pass"
    mcse = math.sqrt(0.02 * 0.98 / reps)
    assert abs(misses / reps - 0.02) <= 3 * mcse
    assert flagged / reps <= 0.02 + 3 * mcse
    assert flagged <= misses
