"""Operators: SLO arithmetic and the multi-window burn-rate alert against the SRE Workbook."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.base import load_yaml, validate_model
from policies.errors import PolicyError
from sim.world.distributions import Exponential, Fixed
from sim.world.operators import (
    PAGE_RULES,
    TICKET_RULE,
    BurnRateAlert,
    BurnRateRule,
    Operators,
    Slo,
    budget_consumed_at_alert,
    burn_rate_detection_time,
)
from sim.world.platform import Platform

DAY = 86400.0
HOUR = 3600.0


# --- SLO and closed forms (anchors §1.2) -----------------------------------------------------


def test_slo_accepts_percent_and_computes_budget():
    slo = validate_model(Slo, {"target": "99.9%"})
    assert slo.target == 0.999 and slo.period == 30 * DAY
    assert slo.budget(1_000_000) == pytest.approx(1000.0)
    for bad in (1.0, "100%", 0, 99.9):
        with pytest.raises(PolicyError, match="target"):
            validate_model(Slo, {"target": bad})


def test_default_rules_are_table_5_8_page_rules():
    assert [(r.long_window, r.short_window, r.burn_rate, r.severity) for r in PAGE_RULES] == [
        (HOUR, 300.0, 14.4, "page"),
        (6 * HOUR, 1800.0, 6.0, "page"),
    ]
    assert Operators().alerts == PAGE_RULES
    assert TICKET_RULE not in Operators().alerts  # tickets off by default
    # budget consumed when each rule fires: 2 %, 5 %, 10 %
    assert budget_consumed_at_alert(14.4, HOUR) == pytest.approx(0.02)
    assert budget_consumed_at_alert(6, 6 * HOUR) == pytest.approx(0.05)
    assert budget_consumed_at_alert(1, 3 * DAY) == pytest.approx(0.10)


def test_detection_time_closed_form():
    # a 100 % outage at 99.9 %: 0.001/1 · 3600 s · 14.4 = 51.84 s
    assert burn_rate_detection_time("99.9%", 1.0, HOUR, 14.4) == pytest.approx(51.84)
    # 2 % errors: 0.001/0.02 · 3600 · 14.4 = 2592 s (43.2 min), within the 1 h window
    assert burn_rate_detection_time(0.999, 0.02, HOUR, 14.4) == pytest.approx(2592.0)
    # 1 % errors: the formula says 1.44 h, longer than the 1 h window: the 1 h rule (threshold
    # 1.44 %) never fires; the 6 h rule (threshold 0.6 %) fires at 0.001/0.01 · 6 h · 6 = 3.6 h
    raw = 0.001 / 0.01 * HOUR * 14.4
    assert raw == pytest.approx(1.44 * HOUR)
    assert burn_rate_detection_time(0.999, 0.01, HOUR, 14.4) == math.inf
    assert burn_rate_detection_time(0.999, 0.01, 6 * HOUR, 6) == pytest.approx(3.6 * HOUR)
    # baseline history: window · (θ − p0) / (e − p0)
    t = burn_rate_detection_time(0.999, 0.1, HOUR, 14.4, baseline_error_ratio=0.001)
    assert t == pytest.approx(HOUR * (0.0144 - 0.001) / (0.1 - 0.001))
    assert burn_rate_detection_time(0.999, 0.5, HOUR, 14.4, baseline_error_ratio=0.02) == 0.0


def test_budget_arithmetic_of_extreme_slos():
    # Table 5-4: at 99.9 % a burn rate of 1,000 (100 % errors) empties 30 days' budget in 43 min
    assert Slo().time_to_exhaust(1.0) == pytest.approx(43.2 * 60)
    # at 99.999 % a 100 % outage uses the budget in 26 s ...
    slo = Slo(target="99.999%")
    rate = 1000.0  # any rate: it cancels
    budget = slo.budget(rate * slo.period)
    assert budget / rate == pytest.approx(25.92)
    assert slo.time_to_exhaust(1.0) == pytest.approx(25.92)
    # ... and a 1 % rollout of a release failing every request takes 43 min
    assert budget / (0.01 * rate * 1.0) == pytest.approx(2592.0)
    assert slo.time_to_exhaust(0.01 * 1.0) / 60 == pytest.approx(43.2)


# --- the evaluator on deterministic counts ---------------------------------------------------


def steady(
    error_ratio: float,
    *,
    hours: float = 8,
    rate: float = 100.0,
    width: float = 15.0,
    baseline: float = 0.0,
    every: float = 60.0,
    rules=PAGE_RULES,
):
    alert = BurnRateAlert(
        rules,
        0.999,
        slot_width=width,
        evaluation_interval=every,
        pre_release_rate=rate,
        baseline_error_ratio=baseline,
    )
    n = int(hours * HOUR / width)
    ends = width * np.arange(1, n + 1)
    req = np.full(n, rate * width)
    return alert, ends, req, error_ratio * req


@pytest.mark.parametrize(
    ("error_ratio", "rule"),
    [(1.0, 0), (0.2, 0), (0.05, 0), (0.02, 0), (0.0145, 0), (0.01, 1), (0.007, 1)],
)
@pytest.mark.parametrize("baseline", [0.0, 0.001])
def test_evaluator_fires_at_closed_form_time(error_ratio, rule, baseline):
    alert, ends, req, bad = steady(error_ratio, baseline=baseline)
    firing = alert.evaluate(ends, req, bad)
    expected = min(
        burn_rate_detection_time(
            0.999, error_ratio, r.long_window, r.burn_rate, baseline_error_ratio=baseline
        )
        for r in PAGE_RULES
    )
    assert firing is not None and firing.rule == PAGE_RULES[rule]
    assert expected - 1e-6 <= firing.time < expected + alert.evaluation_interval


def test_evaluator_below_every_threshold_never_fires():
    alert, ends, req, bad = steady(0.005, hours=12, baseline=0.001)
    assert alert.evaluate(ends, req, bad) is None


def test_short_window_resets_after_the_burn_stops():
    long_only = BurnRateRule(long_window=HOUR, short_window=HOUR, burn_rate=14.4)
    rules = (PAGE_RULES[0], long_only)
    # a 100 % burn for 4 minutes, then clean traffic for an hour
    alert, ends, req, bad = steady(0.0, hours=1, rules=rules)
    bad = np.where(ends <= 240.0, req, 0.0)
    alert.extend(ends, req, bad)
    assert alert.active_at(240.0) == rules  # during the burn both hold
    assert alert.active_at(600.0) == (long_only,)  # 5 min later the short window is clean
    assert alert.active_at(3000.0) == (long_only,)  # the long window alone stays up ~1 h
    # evaluated only every 10 minutes, the burn is over by the first evaluation: the
    # 1 h / 5 min rule stays quiet while a long-window-only rule would page at 600 s
    sparse = BurnRateAlert(
        rules,
        0.999,
        slot_width=15,
        evaluation_interval=600,
        pre_release_rate=100,
        baseline_error_ratio=0.0,
    )
    firing = sparse.evaluate(ends, req, bad)
    assert firing is not None and firing.rule == long_only and firing.time == 600.0
    multi_only = BurnRateAlert(
        PAGE_RULES[:1],
        0.999,
        slot_width=15,
        evaluation_interval=600,
        pre_release_rate=100,
        baseline_error_ratio=0.0,
    )
    assert multi_only.evaluate(ends, req, bad) is None


def test_baseline_history_prevents_spurious_firing_at_start():
    # 1 rps: one unlucky failure in the first 15 s slot is a 6.7 % error ratio
    n = 240
    ends = 15.0 * np.arange(1, n + 1)
    req = np.full(n, 15.0)
    bad = np.zeros(n)
    bad[0] = 1.0
    kwargs = dict(slot_width=15, evaluation_interval=60)
    no_history = BurnRateAlert(
        PAGE_RULES, 0.999, pre_release_rate=0, baseline_error_ratio=0, **kwargs
    )
    firing = no_history.evaluate(ends, req, bad)
    assert firing is not None and firing.time == 60.0  # both windows are that one failure
    history = BurnRateAlert(
        PAGE_RULES, 0.999, pre_release_rate=1, baseline_error_ratio=0.001, **kwargs
    )
    assert history.evaluate(ends, req, bad) is None


def test_scrape_delay_and_offset_shift_the_firing():
    alert, ends, req, bad = steady(1.0)
    base = alert.evaluate(ends, req, bad).time  # 60 s: closed form 51.84 s
    delayed = BurnRateAlert(
        PAGE_RULES,
        0.999,
        slot_width=15,
        evaluation_interval=60,
        pre_release_rate=100,
        baseline_error_ratio=0,
        scrape_delay=30,
        evaluation_offset=20,
    )
    # the 60 s slot becomes visible at 90 s; evaluations at 20 + 60k: first is 140 s
    assert base == 60.0 and delayed.evaluate(ends, req, bad).time == 140.0


def test_extend_validates_its_input():
    alert, ends, req, bad = steady(0.0, hours=1)
    alert.extend(ends[:10], req[:10], bad[:10])
    with pytest.raises(ValueError, match="contiguous"):
        alert.extend(ends[11:], req[11:], bad[11:])
    with pytest.raises(ValueError, match="bad <= requests"):
        alert.extend(ends[10:12], req[10:12], req[10:12] + 1)
    assert alert.extend([], [], []) is None
    assert alert.n_slots == 10


def test_extend_latches_and_reports_once():
    alert, ends, req, bad = steady(1.0, hours=1)
    results = [
        alert.extend(ends[i : i + 2], req[i : i + 2], bad[i : i + 2]) for i in range(0, 40, 2)
    ]
    fired = [r for r in results if r is not None]
    assert fired == [60.0] and alert.firing.time == 60.0


# --- incremental extend() equals a brute-force one-shot evaluation ---------------------------

SMALL_RULES = (
    BurnRateRule(long_window=300, short_window=60, burn_rate=10),
    BurnRateRule(long_window=120, short_window=30, burn_rate=20),
)


def brute_force(ends, req, bad, *, width, every, delay, offset, rate, p0, slo=0.99):
    """Every evaluation from the definition: windows by slot end times, history by count."""
    first, last = ends[0], ends[-1]
    k = math.floor((first + delay - offset) / every) - 1
    while True:
        k += 1
        tau = offset + k * every
        v = tau - delay
        if v < first - 1e-9:
            continue
        if v >= last + width - 1e-9:
            return None  # later evaluations need slots not given
        v_end = first + math.floor((v - first) / width + 1e-9) * width
        for rule in SMALL_RULES:
            theta = rule.burn_rate * (1 - slo)
            ok = True
            for w in (rule.long_window, rule.short_window):
                inside = (ends > v_end - w + 1e-9) & (ends <= v_end + 1e-9)
                n_hist = max(0, math.ceil((first - v_end + w) / width - 1e-9) - 1)
                r = req[inside].sum() + n_hist * rate * width
                b = bad[inside].sum() + n_hist * p0 * rate * width
                ok &= bool(r > 0 and b >= theta * r * (1 - 1e-9))
            if ok:
                return tau, rule


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 120),
    width=st.sampled_from([10.0, 15.0, 30.0]),
    every=st.sampled_from([10.0, 15.0, 45.0, 60.0]),
    delay=st.sampled_from([0.0, 15.0, 20.0]),
    rate=st.sampled_from([0.0, 0.5, 2.0]),
    p0=st.sampled_from([0.0, 0.01]),
)
def test_incremental_extend_equals_one_shot(data, n, width, every, delay, rate, p0):
    offset = data.draw(st.floats(0, every, exclude_max=True))
    start = data.draw(st.sampled_from([0.0, 7.0]))
    req = np.array(data.draw(st.lists(st.integers(0, 20), min_size=n, max_size=n)), float)
    frac = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    frac *= data.draw(st.sampled_from([0.05, 0.3, 1.0]))
    bad = np.floor(frac * req)
    ends = start + width * np.arange(1, n + 1)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6)))
    make = lambda: BurnRateAlert(  # noqa: E731
        SMALL_RULES,
        0.99,
        slot_width=width,
        evaluation_interval=every,
        pre_release_rate=rate,
        baseline_error_ratio=p0,
        scrape_delay=delay,
        evaluation_offset=offset,
    )
    expected = brute_force(
        ends, req, bad, width=width, every=every, delay=delay, offset=offset, rate=rate, p0=p0
    )
    one_shot = make().evaluate(ends, req, bad)
    incremental = make()
    reported = []
    for lo, hi in zip([0, *cuts], [*cuts, n]):
        got = incremental.extend(ends[lo:hi], req[lo:hi], bad[lo:hi])
        if got is not None:
            reported.append(got)
            assert got <= ends[hi - 1] + width + delay + every  # decided by data already given
    if expected is None:
        assert one_shot is None and incremental.firing is None and reported == []
    else:
        assert one_shot is not None and (one_shot.time, one_shot.rule) == pytest.approx(expected)
        assert incremental.firing == one_shot and reported == [one_shot.time]


# --- Operators model -------------------------------------------------------------------------


def test_operators_defaults_and_yaml():
    ops = Operators()
    assert ops.slo == Slo(target=0.999)
    assert ops.acknowledgement == Fixed(value=300.0)
    assert ops.human_detection is None
    assert ops.abort_latency == Fixed(value=0.0)
    assert ops.approval_delay == Fixed(value=600.0)
    assert ops.to_dict() == {} and repr(ops) == "Operators()"
    custom = validate_model(
        Operators,
        load_yaml(
            """
slo: {target: 99.95%, period: 28d}
alerts:
  - {longWindow: 1h, shortWindow: 5m, burnRate: 14.4}
  - {longWindow: 3d, shortWindow: 6h, burnRate: 1, severity: ticket}
acknowledgement: {uniform: [2m, 10m]}
humanDetection: {exponential: {mean: 4h}}
abortLatency: 30s
approvalDelay: 1h
"""
        ),
    )
    assert custom.slo.target == 0.9995 and custom.slo.period == 28 * DAY
    assert custom.alerts[1] == TICKET_RULE
    assert custom.human_detection == Exponential(mean=4 * HOUR)
    assert validate_model(Operators, custom.to_dict()) == custom


def test_operators_build_the_alert_from_the_platform():
    platform = Platform(scrape_interval=30, rule_evaluation_interval=30, scrape_delay=10)
    alert = Operators().burn_rate_alert(platform, pre_release_rate=50, baseline_error_ratio=0.001)
    assert alert is not None and alert.rules == PAGE_RULES
    assert (alert.slot_width, alert.evaluation_interval, alert.scrape_delay) == (30, 30, 10)
    disabled = validate_model(Operators, {"alerts": []})
    assert disabled.burn_rate_alert(platform, pre_release_rate=1, baseline_error_ratio=0) is None


def _one_rule(**rule):
    """Operators data with one alert rule: 1 h / 5 min at burn rate 1, changed by ``rule``."""
    return {"alerts": [{"longWindow": "1h", "shortWindow": "5m", "burnRate": 1} | rule]}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_one_rule(longWindow="5m", shortWindow="1h", burnRate=2), "shortWindow"),
        (_one_rule(burnRate=0), "burnRate"),
        (_one_rule(severity="sms"), "severity"),
        ({"acknowledgement": {"normal": 1}}, "unknown distribution"),
        ({"slo": {"target": "99.9"}}, "above 1"),
        ({"pager": True}, "pager: unknown key"),
    ],
)
def test_operators_validation(data, needle):
    with pytest.raises(PolicyError, match=needle):
        validate_model(Operators, data)


def test_operators_json_schema():
    import jsonschema

    schema = Operators.model_json_schema(by_alias=True, mode="validation")
    data = {"slo": {"target": "99.9%"}, "alerts": [], "humanDetection": {"exponential": "4h"}}
    jsonschema.validate(data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"alerts": [{"longWindow": "1h"}]}, schema)


def test_truncate_then_extend_equals_extending_the_new_slots_directly() -> None:
    """The engine drafts slots ahead and discards them when the world changes."""
    rng = np.random.default_rng(5)
    n = 400
    ends = 15.0 * (np.arange(n) + 1)
    req = rng.poisson(1000, n).astype(float)
    good_bad = rng.binomial(req.astype(int), 0.001).astype(float)
    bad_bad = rng.binomial(req.astype(int), 0.2).astype(float)

    def alert() -> BurnRateAlert:
        return BurnRateAlert(
            PAGE_RULES,
            0.999,
            slot_width=15.0,
            evaluation_interval=60.0,
            pre_release_rate=1000 / 15.0,
            baseline_error_ratio=0.001,
        )

    cut = 150
    drafted = alert()
    drafted.extend(ends[:cut], req[:cut], good_bad[:cut])
    drafted.extend(ends[cut:], req[cut:], bad_bad[cut:])  # a bad draft that fires
    assert drafted.firing is not None
    drafted.truncate(cut)
    assert drafted.firing is None and drafted.n_slots == cut
    drafted.extend(ends[cut:], req[cut:], good_bad[cut:])
    direct = alert()
    direct.extend(ends, req, good_bad)
    assert drafted.firing == direct.firing


def test_a_fresh_alert_forgets_its_templates_data_and_shares_nothing_it_changes():
    template, ends, req, bad = steady(0.05, hours=1, baseline=0.001)
    fresh = template.fresh()
    expected = template.evaluate(ends, req, bad)
    template.extend(ends, req, bad)  # the template fires and holds data now
    assert template.firing is not None and fresh.firing is None and fresh.n_slots == 0
    again = template.fresh()
    assert again.n_slots == 0 and again.firing is None
    assert again.extend(ends, req, bad) == expected.time  # as a new one would, from the start
    assert fresh.n_slots == 0  # untouched by its sibling's data
