"""Each shipped scenario states the answer it shows at its top; this asserts it from a small
run (fixed seeds, so deterministic; the margins are wide of the measured values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim import load_scenario, run

ROOT = Path(__file__).resolve().parents[1] / "scenarios"


def results(name: str, replications: int, **overrides):
    loaded = load_scenario(ROOT / f"{name}.yaml", overrides or None)
    result = run(
        loaded.world,
        loaded.policies,
        replications=replications,
        seed=loaded.scenario.seed,
        backend="inprocess",
    )
    frame = result.frame
    assert not result.failed
    return frame


def of(frame, policy: str, cls: str):
    return frame[(frame.policy == policy) & (frame.release_class == cls)]


def test_seed_practice_canary_hurts_far_less_than_blue_green() -> None:
    f = results("seed-practice", 15)
    canary, bg = of(f, "canary-20-first", "fails-5pct"), of(f, "bluegreen", "fails-5pct")
    assert bg.excess_bad_requests.mean() > 20 * canary.excess_bad_requests.mean()
    assert (canary.detected_by == "gate").all() and (bg.detected_by != "gate").all()
    good_canary, good_bg = of(f, "canary-20-first", "good"), of(f, "bluegreen", "good")
    assert good_bg.rollout_duration.mean() < good_canary.rollout_duration.mean() / 10
    assert not good_canary.false_rollback.any()


def test_subtle_regression_escapes_thresholds_but_not_the_sprt() -> None:
    f = results("subtle-regression", 15)
    for policy in ("few-large-threshold", "many-small-threshold"):
        assert of(f, policy, "doubles-errors").escaped.mean() >= 0.8
    assert (
        of(f, "many-small-threshold", "good").rollout_duration.mean()
        > of(f, "few-large-threshold", "good").rollout_duration.mean()
    )
    sprt = of(f, "few-large-sprt", "doubles-errors")
    assert sprt.escaped.mean() <= 0.2 and sprt.t_detect.median() <= 300
    assert of(f, "few-large-sprt", "good").false_rollback.mean() <= 0.2


def test_latent_leak_escapes_short_bakes_and_old_pods_speed_the_undo() -> None:
    f = results("latent-leak", 12)
    short_30s, short_1h = of(f, "short-bake-keep-30s", "leak"), of(f, "short-bake-keep-1h", "leak")
    assert short_30s.escaped.mean() >= 0.7
    undo = lambda d: (d.t_mitigated - d.t_rollback_start)[d.escaped].median()  # noqa: E731
    assert undo(short_1h) + 60 < undo(short_30s)  # pods 1-3 min to start again
    long = of(f, "long-bake", "leak")
    assert long.escaped.mean() <= 0.1
    assert long.excess_bad_requests.mean() * 20 < short_1h.excess_bad_requests.mean()


def test_segment_bug_escapes_the_ab_test_not_the_weighted_canary() -> None:
    f = results("segment-bug", 12)
    ab, weighted = (
        of(f, "ab-beta-header", "old-client-bug"),
        of(f, "weighted-canary", "old-client-bug"),
    )
    assert ab.escaped.all()
    assert not weighted.escaped.any() and (weighted.detected_by == "gate").all()
    assert weighted.users_hurt.mean() * 10 < ab.users_hurt.mean()


def test_five_replicas_replica_ratio_canary_really_serves_a_sixth() -> None:
    f = results("five-replicas", 15)
    basic, routed = (
        of(f, "replica-ratio-canary", "fails-10pct"),
        of(f, "routed-canary", "fails-10pct"),
    )
    ratio = basic.excess_bad_requests.mean() / routed.excess_bad_requests.mean()
    assert 2.0 < ratio < 5.0  # (1/6) / 5 % = 3.3 at equal detection times
    rolling = of(f, "rolling-update", "fails-10pct")
    assert rolling.escaped.all() and (rolling.detected_by == "alert").all()


def test_diurnal_blast_radius_scales_with_traffic_for_a_severe_bug() -> None:
    peak, trough = results("diurnal", 12), results("diurnal", 12, **{"world.traffic.startAt": "2h"})
    severe = lambda f, p: of(f, p, "fails-3pct").excess_bad_requests.mean()  # noqa: E731
    assert severe(peak, "threshold-canary") > 4 * severe(trough, "threshold-canary")
    subtle_peak, subtle_trough = (
        of(peak, "sprt-canary", "doubles-errors"),
        of(trough, "sprt-canary", "doubles-errors"),
    )
    caught_peak = subtle_peak[subtle_peak.detected_by == "gate"]
    caught_trough = subtle_trough[subtle_trough.detected_by == "gate"]
    assert caught_trough.t_detect.median() > 2 * caught_peak.t_detect.median()
    assert of(peak, "threshold-canary", "doubles-errors").escaped.all()


@pytest.mark.parametrize("ttl", [300.0])
def test_dns_undo_waits_for_the_ttl_and_scale_down_delay_matters(ttl: float) -> None:
    f = results("dns-bluegreen", 10)
    undo = lambda p: of(f, p, "time-bomb").t_mitigated - of(f, p, "time-bomb").t_rollback_start  # noqa: E731
    assert undo("selector-keep-1h").max() <= 5  # one selector patch
    assert undo("selector-keep-30s").min() >= 60  # old pods start again (1-3 min)
    assert abs(undo("dns-keep-1h").median() - ttl) <= 30  # clients move back within the TTL
