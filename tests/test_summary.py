"""sim.runs.summary on synthetic frames whose statistics are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.runs.summary import MIXTURE, compare, pareto, summarize, weighted_quantile

T4 = 2.7764451051977987  # t quantile 0.975 with 4 degrees of freedom
T2 = 4.302652729749464  # t quantile 0.975 with 2 degrees of freedom
Z = 1.959963984540054  # normal quantile 0.975


def frame(policy: str, classes: dict[str, tuple[float, dict[str, list]]], seed: int = 0):
    """{class: (probability, {column: values})} -> rows as the runner makes them."""
    rows = []
    for cls, (pi, columns) in classes.items():
        n = len(next(iter(columns.values())))
        for i in range(n):
            row = {"policy": policy, "release_class": cls, "replication": i, "seed": seed}
            row |= {"weight": pi / n, "error": ""}
            row |= {k: v[i] for k, v in columns.items()}
            rows.append(row)
    return pd.DataFrame(rows)


GOOD = [1.0, 2.0, 3.0, 4.0, 5.0]
BAD = [10.0, 20.0, 30.0]


@pytest.fixture
def simple():
    return frame("p", {"good": (0.75, {"x": GOOD}), "bad": (0.25, {"x": BAD})})


def test_class_rows_are_t_intervals(simple):
    s = summarize(simple, ["x"]).loc[("p", "good")]
    half = T4 * math.sqrt(2.5) / math.sqrt(5)  # sample variance of 1..5 is 2.5
    assert s["x_mean"] == pytest.approx(3.0)
    assert s["x_ci_low"] == pytest.approx(3.0 - half)
    assert s["x_ci_high"] == pytest.approx(3.0 + half)
    assert (s["x_p50"], s["x_p95"]) == (3.0, 5.0)
    assert (s["n"], s["failed"], s["probability"]) == (5, 0, pytest.approx(0.75))
    b = summarize(simple, ["x"]).loc[("p", "bad")]
    assert b["x_ci_high"] - b["x_mean"] == pytest.approx(T2 * 10.0 / math.sqrt(3))


def test_mixture_is_the_probability_weighted_mean_with_stratified_variance(simple):
    s = summarize(simple, ["x"]).loc[("p", MIXTURE)]
    mean = 0.75 * 3.0 + 0.25 * 20.0
    var = 0.75**2 * 2.5 / 5 + 0.25**2 * 100.0 / 3
    assert s["x_mean"] == pytest.approx(mean)
    assert s["x_ci_low"] == pytest.approx(mean - Z * math.sqrt(var))
    assert s["x_ci_high"] == pytest.approx(mean + Z * math.sqrt(var))
    # row weights 0.15 (good) and 1/12 (bad): cumulative 0.15 .. 0.75, 0.833, 0.917, 1
    assert (s["x_p50"], s["x_p95"]) == (4.0, 30.0)
    assert (s["n"], s["probability"]) == (8, 1.0)


def test_confidence_level_widens_the_interval(simple):
    narrow = summarize(simple, ["x"], confidence=0.5).loc[("p", "good")]
    wide = summarize(simple, ["x"], confidence=0.99).loc[("p", "good")]
    assert wide["x_ci_high"] - wide["x_ci_low"] > narrow["x_ci_high"] - narrow["x_ci_low"]


def test_event_times_are_summarised_where_they_happened():
    nan = math.nan
    df = frame(
        "p",
        {
            "good": (0.8, {"t_detect": [nan, nan, nan, 40.0]}),
            "bad": (0.2, {"t_detect": [10.0, nan, 30.0, 20.0]}),
        },
    )
    s = summarize(df, ["t_detect"])
    assert s.loc[("p", "bad"), "t_detect_mean"] == pytest.approx(20.0)
    assert s.loc[("p", "bad"), "t_detect_rate"] == pytest.approx(0.75)
    assert s.loc[("p", "good"), "t_detect_rate"] == pytest.approx(0.25)
    assert math.isnan(s.loc[("p", "good"), "t_detect_ci_low"])  # one value: no interval
    mix = s.loc[("p", MIXTURE)]
    # rows where it happened, weighted π_c / n_c: 40 (0.2) and 10, 30, 20 (0.05 each)
    w = np.array([0.2, 0.05, 0.05, 0.05])
    x = np.array([40.0, 10.0, 30.0, 20.0])
    mean = float((w * x).sum() / w.sum())
    assert mix["t_detect_mean"] == pytest.approx(mean)
    assert mix["t_detect_rate"] == pytest.approx(0.8 * 0.25 + 0.2 * 0.75)
    # delta method: Σ π_c² var(e_c)/n_c / rate², e = (x − mean)·1{happened}
    e_good = np.array([0, 0, 0, 40.0 - mean])
    e_bad = np.array([10.0 - mean, 0, 30.0 - mean, 20.0 - mean])
    var = (0.64 * e_good.var(ddof=1) / 4 + 0.04 * e_bad.var(ddof=1) / 4) / 0.35**2
    assert mix["t_detect_ci_high"] - mean == pytest.approx(Z * math.sqrt(var))
    assert mix["t_detect_p50"] == 40.0  # weight 0.2 of 0.35 sits on 40


def test_rates_of_booleans_and_failed_rows_left_out():
    df = frame("p", {"good": (1.0, {"false_rollback": [True, False, False, True, False]})})
    df.loc[4, "error"] = "RuntimeError: boom"
    df.loc[4, "false_rollback"] = True  # a failed row's fields mean nothing
    s = summarize(df, ["false_rollback"])
    assert s.loc[("p", "good"), "false_rollback_mean"] == pytest.approx(0.5)
    assert (s.loc[("p", "good"), "n"], s.loc[("p", "good"), "failed"]) == (4, 1)
    assert (s.loc[("p", MIXTURE), "n"], s.loc[("p", MIXTURE), "failed"]) == (4, 1)
    assert "false_rollback_rate" not in s.columns  # not an event time


def test_summary_rows_per_policy_and_class_in_frame_order(simple):
    both = pd.concat([frame("b", {"good": (0.75, {"x": GOOD}), "bad": (0.25, {"x": BAD})}), simple])
    s = summarize(both, ["x"])
    assert list(s.index) == [
        ("b", "good"),
        ("b", "bad"),
        ("b", MIXTURE),
        ("p", "good"),
        ("p", "bad"),
        ("p", MIXTURE),
    ]


def test_missing_columns_are_named():
    with pytest.raises(KeyError, match="weight"):
        summarize(
            pd.DataFrame({"policy": [], "release_class": [], "replication": [], "x": []}), ["x"]
        )


# ------------------------------------------------------------------ weighted quantiles


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40),
    st.sampled_from([0.0, 0.05, 0.25, 0.5, 0.95, 1.0]),
)
def test_equal_weights_match_numpy_inverted_cdf(values, q):
    expected = np.quantile(values, q, method="inverted_cdf")
    assert weighted_quantile(values, np.ones(len(values)), q) == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-50, 50), st.integers(1, 5)), min_size=1, max_size=20),
    st.sampled_from([0.1, 0.5, 0.9, 0.95]),
)
def test_integer_weights_match_repeated_values(pairs, q):
    values = [float(v) for v, _ in pairs]
    weights = [w for _, w in pairs]
    repeated = np.repeat(values, weights)
    assert weighted_quantile(values, weights, q) == np.quantile(repeated, q, method="inverted_cdf")


def test_weighted_quantile_ignores_nan_and_zero_weight():
    assert weighted_quantile([1.0, math.nan, 100.0], [1.0, 5.0, 0.0], 0.9) == 1.0
    assert math.isnan(weighted_quantile([], [], 0.5))


# ------------------------------------------------------------------ paired comparisons


def pair_frame(rng, shift_good=0.0, shift_bad=5.0, n=8):
    a_good, a_bad = rng.normal(100, 30, n), rng.normal(500, 80, n)
    b_good = a_good + shift_good + rng.normal(0, 1, n)
    b_bad = a_bad + shift_bad + rng.normal(0, 1, n)
    a = frame("A", {"good": (0.9, {"x": list(a_good)}), "bad": (0.1, {"x": list(a_bad)})})
    b = frame("B", {"good": (0.9, {"x": list(b_good)}), "bad": (0.1, {"x": list(b_bad)})})
    return pd.concat([a, b], ignore_index=True), (a_good, a_bad, b_good, b_bad)


def test_paired_difference_is_the_mean_of_row_differences():
    df, (a_good, a_bad, b_good, b_bad) = pair_frame(np.random.default_rng(1))
    c = compare(df, "A", "B", "x")
    d_good, d_bad = b_good - a_good, b_bad - a_bad
    assert c.loc["good", "diff"] == pytest.approx(d_good.mean())
    assert c.loc["bad", "diff"] == pytest.approx(d_bad.mean())
    half = 2.3646242510102993 * d_bad.std(ddof=1) / math.sqrt(8)  # t(0.975, 7)
    assert c.loc["bad", "ci_high"] == pytest.approx(d_bad.mean() + half)
    mix = 0.9 * d_good.mean() + 0.1 * d_bad.mean()
    var = 0.81 * d_good.var(ddof=1) / 8 + 0.01 * d_bad.var(ddof=1) / 8
    assert c.loc[MIXTURE, "diff"] == pytest.approx(mix)
    assert c.loc[MIXTURE, "ci_low"] == pytest.approx(mix - Z * math.sqrt(var))
    assert c.loc[MIXTURE, "mean_b"] - c.loc[MIXTURE, "mean_a"] == pytest.approx(mix)
    assert c.loc["bad", "significant"] and not c.loc["good", "significant"]
    assert c.loc["bad", "p_value"] < 0.001 < c.loc["good", "p_value"]
    assert c.loc["bad", "n"] == 8 and c.loc[MIXTURE, "n"] == 16


def test_pairs_are_matched_by_class_and_replication_not_by_row_order():
    df, _ = pair_frame(np.random.default_rng(2))
    shuffled = df.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(compare(df, "A", "B", "x"), compare(shuffled, "A", "B", "x"))
    # the pairing removes the between-release spread: far narrower than an unpaired interval
    c = compare(df, "A", "B", "x")
    assert c.loc["bad", "ci_high"] - c.loc["bad", "ci_low"] < 5.0


def test_only_common_pairs_and_no_failed_rows_are_compared():
    df, (a_good, _, b_good, _) = pair_frame(np.random.default_rng(4))
    df = df[~((df["policy"] == "B") & (df["release_class"] == "good") & (df["replication"] == 0))]
    df.loc[
        (df["policy"] == "A") & (df["release_class"] == "good") & (df["replication"] == 1), "error"
    ] = "x"
    c = compare(df, "A", "B", "x")
    assert c.loc["good", "n"] == 6
    assert c.loc["good", "diff"] == pytest.approx((b_good - a_good)[2:].mean())


def test_comparing_different_runs_is_refused():
    a = frame("A", {"good": (1.0, {"x": [1.0, 2.0]})}, seed=1)
    b = frame("B", {"good": (1.0, {"x": [1.0, 2.0]})}, seed=2)
    with pytest.raises(ValueError, match="different seeds"):
        compare(pd.concat([a, b]), "A", "B", "x")
    with pytest.raises(KeyError, match="'C'"):
        compare(a, "A", "C", "x")


def test_identical_policies_differ_by_exactly_nothing():
    a = frame("A", {"good": (1.0, {"x": [1.0, 7.0, 3.0]})})
    c = compare(pd.concat([a, a.assign(policy="B")]), "A", "B", "x")
    assert (c["diff"] == 0).all() and not c["significant"].any()
    assert (c["p_value"] == 1.0).all()


def test_event_time_pairs_need_both_to_happen():
    nan = math.nan
    a = frame("A", {"bad": (1.0, {"t_detect": [10.0, nan, 30.0, 50.0]})})
    b = frame("B", {"bad": (1.0, {"t_detect": [15.0, 20.0, nan, 52.0]})})
    c = compare(pd.concat([a, b]), "A", "B", "t_detect")
    assert c.loc["bad", "n"] == 2
    assert c.loc["bad", "diff"] == pytest.approx(3.5)
    assert c.loc[MIXTURE, "diff"] == pytest.approx(3.5)


# ------------------------------------------------------------------ Pareto front


def test_pareto_keeps_the_non_dominated_policies():
    points = {"fast": (1.0, 10.0), "balanced": (2.0, 5.0), "worse": (3.0, 6.0), "safe": (4.0, 1.0)}
    points |= {"twin": (2.0, 5.0), "slow-same": (5.0, 1.0)}
    df = pd.concat(
        frame(name, {"good": (1.0, {"rollout_duration": [x, x], "excess_bad_requests": [y, y]})})
        for name, (x, y) in points.items()
    )
    front = pareto(df)
    assert list(front.index) == ["fast", "balanced", "twin", "safe"]
    assert front.loc["safe"].tolist() == [4.0, 1.0]


def test_pareto_leaves_out_policies_that_never_finish():
    df = pd.concat(
        [
            frame(
                "never",
                {"g": (1.0, {"rollout_duration": [math.nan], "excess_bad_requests": [0.0]})},
            ),
            frame("slow", {"g": (1.0, {"rollout_duration": [9.0], "excess_bad_requests": [1.0]})}),
        ]
    )
    assert list(pareto(df).index) == ["slow"]


# ------------------------------------------------------------------ a subset of classes


def test_classes_make_the_mixture_of_those_classes_alone():
    df, (_, a_bad, _, b_bad) = pair_frame(np.random.default_rng(6))
    c = compare(df, "A", "B", "x", classes=["bad"])
    assert list(c.index) == ["bad", MIXTURE]
    d = b_bad - a_bad
    assert c.loc[MIXTURE, "diff"] == pytest.approx(d.mean())  # per bad release, not × 0.1
    assert c.loc[MIXTURE, "ci_high"] - d.mean() == pytest.approx(Z * d.std(ddof=1) / math.sqrt(8))
    s = summarize(df, ["x"], classes=["bad"])
    assert s.loc[("A", MIXTURE), "x_mean"] == pytest.approx(a_bad.mean())
    assert s.loc[("A", MIXTURE), "probability"] == 1.0


def test_optional_metrics_a_frame_lacks_are_left_out():
    s = summarize(frame("p", {"good": (1.0, {"x": GOOD})}), ["x", "users_with_bad"])
    assert "x_mean" in s and "users_with_bad_mean" not in s
    with pytest.raises(KeyError, match="users_hurt"):
        summarize(frame("p", {"good": (1.0, {"x": GOOD})}), ["x", "users_hurt"])


def test_an_all_failed_stratum_summarises_to_nan():
    df = frame("p", {"good": (1.0, {"x": [1.0, 2.0]})})
    df["error"] = "RuntimeError: boom"
    s = summarize(df, ["x"])
    assert math.isnan(s.loc[("p", MIXTURE), "x_mean"]) and s.loc[("p", MIXTURE), "failed"] == 2


def test_pareto_on_chosen_classes():
    """Rollout of good releases against harm of bad ones: B is faster on good releases and
    does less harm on bad ones, though its mixture rollout (bad ones too) is slower."""
    a = frame(
        "A",
        {
            "good": (0.5, {"rollout_duration": [100.0, 100.0], "excess_bad_requests": [0.0, 0.0]}),
            "bad": (0.5, {"rollout_duration": [10.0, 10.0], "excess_bad_requests": [9.0, 9.0]}),
        },
    )
    b = frame(
        "B",
        {
            "good": (0.5, {"rollout_duration": [90.0, 90.0], "excess_bad_requests": [0.0, 0.0]}),
            "bad": (0.5, {"rollout_duration": [500.0, 500.0], "excess_bad_requests": [1.0, 1.0]}),
        },
    )
    df = pd.concat([a, b])
    assert list(pareto(df).index) == ["A", "B"]
    front = pareto(df, x_classes=["good"], y_classes=["bad"])
    assert list(front.index) == ["B"] and front.loc["B"].tolist() == [90.0, 1.0]
