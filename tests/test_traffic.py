"""Rate profiles: exact integrals (against scipy.integrate.quad), traces from CSV, the release
offset, and Poisson counts of the integral.

quad is given every breakpoint of the step profiles inside the interval, so it is accurate to
~1e-10 relative; the comparisons allow 1e-7 relative plus 1e-6 requests.
"""

from __future__ import annotations

import math

import jsonschema
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from scipy import integrate

from policies.base import validate_model
from policies.errors import PolicyError
from sim.world.rates import Constant, Diurnal, Piecewise, Trace
from sim.world.traffic import Traffic, base_directory, parse_rate

DAY = 86400.0

PROFILES = {
    "constant": parse_rate({"constant": 2000}),
    "diurnal": parse_rate({"diurnal": {"mean": 2000, "amplitude": 0.6, "peakAt": "14h"}}),
    "diurnal-full": Diurnal(mean=50.0, amplitude=1.0, peak_at=100.0, period=3600.0),
    "piecewise-hold": parse_rate(
        {"piecewise": [{"at": 0, "rate": 100}, {"at": "1h", "rate": 400}, {"at": "90m", "rate": 0}]}
    ),
    "piecewise-daily": parse_rate(
        {
            "piecewise": {
                "points": [
                    {"at": 0, "rate": 100},
                    {"at": "8h", "rate": 900},
                    {"at": "20h", "rate": 300},
                ],
                "period": "1d",
            }
        }
    ),
    "trace-repeat": Trace(counts=(600.0, 1200.0, 0.0, 3000.0, 60.0)),
    "trace-hold": Trace(counts=(600.0, 1200.0, 0.0, 3000.0, 60.0), beyond="hold"),
}


def _breakpoints(profile, t0: float, t1: float) -> list[float]:
    if isinstance(profile, Piecewise | Trace):
        steps = profile._steps
        period = steps.period
        if period is None:
            ats = steps.at_list
        else:
            first, last = math.floor(t0 / period), math.floor(t1 / period)
            ats = [c * period + a for c in range(first, last + 1) for a in steps.at_list]
        return [a for a in ats if t0 < a < t1]
    return []


def _quad(profile, t0: float, t1: float, integrand=None, points=None) -> float:
    """∫ integrand (default: the rate) over [t0, t1], handed the points where it jumps (by
    default the step profiles' breakpoints)."""
    points = _breakpoints(profile, t0, t1) if points is None else points
    value, _ = integrate.quad(
        integrand or profile.rate,
        t0,
        t1,
        points=points or None,
        limit=max(200, 4 * len(points)),
        epsabs=1e-9,
    )
    return value


# quad is handed the step profiles' breakpoints, yet may still warn about their jumps
@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(PROFILES)),
    t0=st.floats(-2 * DAY, 3 * DAY),
    length=st.floats(0.0, 1.5 * DAY),
)
def test_integral_matches_quad_on_random_intervals(name, t0, length):
    profile = PROFILES[name]
    if name.startswith("trace"):  # a 5-minute trace: keep quad's breakpoint list short
        length = length / 100.0
    t1 = t0 + length
    exact = profile.integral(t0, t1)
    assert exact == pytest.approx(_quad(profile, t0, t1), rel=1e-7, abs=1e-6)
    assert profile.integral(t1, t0) == pytest.approx(-exact, rel=1e-12, abs=1e-9)
    assert exact >= -1e-9


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(PROFILES)),
    t0=st.floats(-2 * DAY, 3 * DAY),
    length=st.floats(0.0, 3600.0),
    behind=st.floats(-600.0, 7200.0),
)
def test_moment_matches_quad_on_random_intervals(name, t0, length, behind):
    """∫ (t − origin)·r(t) dt, the requests weighted by their time since a fault's onset (its
    growth ramp over them): the same tolerance as the integral's, scaled by the spans."""
    profile = PROFILES[name]
    if name.startswith("trace"):
        length = length / 100.0
    t1, origin = t0 + length, t0 - behind
    exact = float(profile.moment(np.array(t0), np.array(t1), np.array(origin)))
    expected = _quad(profile, t0, t1, lambda t: (t - origin) * profile.rate(t))
    scale = max(abs(t1 - origin), abs(t0 - origin), 1.0)
    assert exact == pytest.approx(expected, rel=1e-7, abs=1e-6 * scale)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(PROFILES)),
    t0=st.floats(-2 * DAY, 3 * DAY),
    length=st.floats(0.0, 1.5 * DAY),
    level=st.floats(0.0, 3500.0),
)
def test_time_above_a_level_matches_quad(name, t0, length, level):
    """The seconds with r(t) > level: with ``excess``, the requests that come while a capacity
    of ``level`` is short (sim/engine/short_capacity.py)."""
    profile = PROFILES[name]
    if name.startswith("trace"):
        length = length / 100.0
    t1 = t0 + length
    exact = float(profile.time_above(np.array(t0), np.array(t1), level))
    if isinstance(profile, Diurnal):  # the crossings, where the indicator jumps, for quad
        crossings = _crossings(profile, t0, t1, level)
    else:
        crossings = _breakpoints(profile, t0, t1)
    expected = _quad(profile, t0, t1, lambda t: float(profile.rate(t) > level), crossings)
    assert exact == pytest.approx(expected, rel=1e-7, abs=1e-5)


def _crossings(profile: Diurnal, t0: float, t1: float, level: float) -> list[float]:
    """Where a diurnal rate crosses ``level`` inside [t0, t1]."""
    u = (level / profile.mean - 1.0) / profile.amplitude if profile.mean > 0 else 2.0
    if not -1.0 < u < 1.0:
        return []
    k, alpha = 2 * math.pi / profile.period, math.acos(u)
    first = math.floor((t0 - profile.peak_at) / profile.period) - 1
    last = math.ceil((t1 - profile.peak_at) / profile.period) + 1
    points = [
        profile.peak_at + (c * 2 * math.pi + side * alpha) / k
        for c in range(first, last + 1)
        for side in (-1, 1)
    ]
    return sorted(p for p in points if t0 < p < t1)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_array_integrals_and_rates_match_the_scalar_path(name):
    profile = PROFILES[name]
    rng = np.random.default_rng(5)
    t0 = rng.uniform(-DAY, 2 * DAY, 50)
    t1 = t0 + rng.exponential(3600.0, 50)
    batch = profile.integral(t0, t1)
    assert batch.shape == (50,)
    np.testing.assert_allclose(
        batch, [profile.integral(float(a), float(b)) for a, b in zip(t0, t1)], rtol=1e-9, atol=1e-6
    )
    np.testing.assert_allclose(profile.rate(t0), [profile.rate(float(a)) for a in t0], rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(sorted(PROFILES)), t=st.floats(-2 * DAY, 3 * DAY), length=st.floats(0, DAY)
)
# A time reduced into its period went through math.floor for a number and np.mod for an array:
# at t = −5e-324 the first said 10 requests/s (t/period underflows to −0, no period to take
# off) and the second 1 (the last minute's rate, one period on).
@example(name="trace-repeat", t=-5e-324, length=0.0)
def test_a_number_and_an_array_take_the_same_path(name, t, length):
    profile = PROFILES[name]
    rates = profile.rate(t), profile.rate(np.array([t]))[0]
    integrals = profile.integral(t, t + length), profile.integral(np.array([t]), t + length)[0]
    if isinstance(profile, Diurnal):  # math.cos and np.cos may differ in the last bit
        assert rates[0] == pytest.approx(rates[1], rel=1e-12)
        assert integrals[0] == pytest.approx(integrals[1], rel=1e-12, abs=1e-9)
    else:  # the same float operations in the same order: equal to the bit
        assert rates[0] == rates[1]
        assert integrals[0] == integrals[1]


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(PROFILES)), t0=st.floats(-DAY, 2 * DAY), length=st.floats(0, DAY)
)
@example(name="trace-repeat", t0=-1.175494351e-38, length=0.0)  # rounds onto the period's end
@example(name="trace-repeat", t0=-5e-324, length=0.0)  # t/period underflows to −0: no period off
def test_max_rate_is_the_sup_over_the_interval(name, t0, length):
    profile = PROFILES[name]
    t1 = t0 + length
    grid = np.concatenate([np.linspace(t0, t1, 2001), _breakpoints(profile, t0, t1), [t0, t1]])
    dense = float(np.max(profile.rate(grid)))
    bound = profile.max_rate(t0, t1)
    assert bound >= dense - 1e-9
    if not isinstance(profile, Diurnal):  # steps: attained at a breakpoint or an end
        assert bound == pytest.approx(dense)
    else:  # a cosine: the grid comes within its resolution of the sup
        step = max(length / 2000, 1e-12)
        slope = profile.mean * profile.amplitude * 2 * math.pi / profile.period
        assert bound <= dense + slope * step + 1e-9


@pytest.mark.parametrize("start", [0.0, 1234.5, 50400.0, 3 * DAY + 17.0])
def test_diurnal_over_a_full_period_is_mean_times_period(start):
    for profile in (PROFILES["diurnal"], PROFILES["diurnal-full"]):
        assert profile.integral(start, start + profile.period) == pytest.approx(
            profile.mean * profile.period, rel=1e-12
        )


def test_diurnal_peaks_at_peak_at_and_short_intervals_late_in_time_stay_exact():
    d = PROFILES["diurnal"]
    assert d.rate(14 * 3600.0) == pytest.approx(3200.0)
    assert d.rate(2 * 3600.0) == pytest.approx(800.0)
    t = 365 * DAY + 14 * 3600.0  # a year in: no cancellation in the closed form
    t1 = t + 1e-3
    assert d.integral(t, t1) == pytest.approx(3200.0 * (t1 - t), rel=1e-9)


def test_piecewise_hold_and_period():
    hold = PROFILES["piecewise-hold"]
    assert hold.integral(0.0, 7200.0) == pytest.approx(100 * 3600 + 400 * 1800)
    assert hold.rate(-5.0) == 100.0 and hold.rate(1e7) == 0.0
    daily = PROFILES["piecewise-daily"]
    one_day = 100 * 8 * 3600 + 900 * 12 * 3600 + 300 * 4 * 3600
    assert daily.integral(0.0, DAY) == pytest.approx(one_day)
    assert daily.integral(5 * DAY + 3.0, 7 * DAY + 3.0) == pytest.approx(2 * one_day)
    assert daily.rate(DAY + 9 * 3600.0) == 900.0


def test_trace_from_csv_relative_to_the_base_directory(tmp_path, monkeypatch):
    (tmp_path / "traffic.csv").write_text("minute,count,other\n0,600,x\n1,1200,y\n2,0,z\n")
    monkeypatch.chdir("/")
    data = {"rate": {"trace": {"file": "traffic.csv", "column": "count"}}, "startAt": "1m"}
    traffic = Traffic.load(data, base_dir=tmp_path)
    trace = traffic.rate
    assert trace.counts == (600.0, 1200.0, 0.0) and trace.file == "traffic.csv"
    assert repr(trace) == "Trace(file='traffic.csv', minutes=3)"
    assert trace.rate(30.0) == 10.0 and trace.rate(90.0) == 20.0 and trace.rate(150.0) == 0.0
    assert trace.integral(0.0, 180.0) == pytest.approx(1800.0)
    assert trace.integral(0.0, 3600.0) == pytest.approx(1800.0 * 20)  # repeats
    assert traffic.integral(0.0, 60.0) == pytest.approx(1200.0)  # release starts at minute 1
    assert traffic.to_dict() == {"rate": {"trace": {"file": "traffic.csv"}}, "startAt": "1m"}
    with base_directory(tmp_path):  # the same, for loaders that use validate_model
        again = validate_model(Traffic, traffic.to_dict())
    assert again == traffic
    from_csv = Trace.from_csv(tmp_path / "traffic.csv", beyond="hold", name="traffic.csv")
    assert from_csv.integral(0.0, 3600.0) == pytest.approx(1800.0)  # holds the last minute (0)


@pytest.mark.parametrize(
    ("content", "spec", "message"),
    [
        ("minute,n\n0,1\n", {"file": "t.csv"}, "has no column 'count' (its header has 2)"),
        ("count\n1\nabc\n", {"file": "t.csv"}, "line 3: count is not a number (value not shown)"),
        ("count\n", {"file": "t.csv"}, "has no rows"),
        ("count\n1\n", {"file": "missing.csv"}, "cannot read trace file"),
        ("count\n-1\n", {"file": "t.csv"}, "finite and >= 0"),
        ("count\n1\n", {"file": "t.csv", "counts": [1]}, "counts or file, not both"),
    ],
)
def test_trace_file_errors(tmp_path, content, spec, message):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(PolicyError) as info, base_directory(tmp_path):
        validate_model(Traffic, {"rate": {"trace": spec}}, file="scenario.yaml")
    assert str(info.value).startswith("scenario.yaml: rate: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"diurnal": {"mean": 1, "amplitude": 1.2}}, "diurnal.amplitude"),
        ({"diurnal": {"mean": 1}}, "diurnal.amplitude: is required"),
        ({"constant": -1}, "constant.rate: Input should be greater than or equal to 0"),
        ({"piecewise": [{"at": "1h", "rate": 1}]}, "first point must be at 0"),
        ({"piecewise": [{"at": 0, "rate": 1}, {"at": 0, "rate": 2}]}, "strictly increasing"),
        ({"piecewise": {"points": [{"at": 0, "rate": 1}], "period": 0}}, "period"),
        ({"trace": {}}, "trace needs counts or a file"),
        ({"poisson": 3}, "unknown rate profile 'poisson'"),
        ("fast", "a rate is a number or a one-key mapping"),
    ],
)
def test_rate_errors(spec, message):
    with pytest.raises(ValueError) as info:
        parse_rate(spec)
    assert message in str(info.value)


def test_yaml_forms_repr_and_round_trip():
    assert repr(parse_rate(2000)) == "Constant(rate=2000.0)"
    assert parse_rate({"constant": 2000}) == parse_rate(2000.0)
    assert repr(PROFILES["diurnal"]) == "Diurnal(mean=2000.0, amplitude=0.6, peak_at=50400.0)"
    for profile in PROFILES.values():
        traffic = Traffic(rate=profile, start_at=600.0)
        assert validate_model(Traffic, traffic.to_dict()) == traffic
    schema = TypeAdapter(Traffic).json_schema(by_alias=True)
    for profile in PROFILES.values():
        jsonschema.validate(Traffic(rate=profile).to_dict(), schema)
    jsonschema.validate({"rate": 20}, schema)


def test_start_at_shifts_the_release_onto_the_profile():
    profile = PROFILES["diurnal"]
    peak = Traffic(rate=profile, start_at=14 * 3600.0)
    trough = validate_model(Traffic, {"rate": profile.to_yaml(), "startAt": "2h"})
    assert peak.rate_at(0.0) == pytest.approx(3200.0) and trough.rate_at(0.0) == pytest.approx(
        800.0
    )
    assert peak.integral(0.0, 600.0) == pytest.approx(profile.integral(50400.0, 51000.0))
    np.testing.assert_allclose(
        peak.integral(np.array([0.0, 60.0]), np.array([60.0, 120.0])),
        [profile.integral(50400.0, 50460.0), profile.integral(50460.0, 50520.0)],
    )
    assert peak.max_rate(0.0, 60.0) == pytest.approx(3200.0)
    assert trough.max_rate(0.0, 60.0) < 801.0
    np.testing.assert_allclose(peak.rate_at(np.array([0.0, 12 * 3600.0])), [3200.0, 800.0])


@pytest.mark.parametrize(
    ("name", "t0", "t1"), [("diurnal", 50400.0, 50460.0), ("trace-repeat", 0.0, 90.0)]
)
def test_poisson_counts_of_the_integral_have_its_mean_and_variance(name, t0, t1):
    """N ~ Poisson(Λ) with Λ = ∫ rate: mean Λ (SE √(Λ/n)), variance Λ (SE √((Λ + 2Λ²)/n))."""
    lam = PROFILES[name].integral(t0, t1)
    n = 20_000
    counts = np.random.default_rng(99).poisson(lam, n)
    assert abs(counts.mean() - lam) < 5 * math.sqrt(lam / n)
    assert abs(counts.var(ddof=1) - lam) < 5 * math.sqrt((lam + 2 * lam**2) / n)


def test_constant_fast_paths():
    c = Constant(rate=3.0)
    assert c.integral(1.0, 4.0) == 9.0 and c.rate(2.0) == 3.0 and c.max_rate(0.0, 1.0) == 3.0
    np.testing.assert_array_equal(c.rate(np.zeros(3)), [3.0, 3.0, 3.0])
