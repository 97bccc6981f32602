"""Inputs that are valid but absurd (issue #13, item 7): refused when they can only be a
mistake, a warning in ``LoadedScenario.notes`` (or ``RunResult.notes``) when they are odd but
mean something; each message says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import PolicyError, load_policy
from rolloutsim.cli import main
from sim.runs.runner import run
from sim.runs.scenario import load_scenario
from sim.world.model import World

POLICIES = Path(__file__).resolve().parents[1] / "scenarios" / "policies"
SCENARIO = f"""
name: absurd
world:
  horizon: 6h
  traffic: {{rate: 500}}
  users: {{count: 5000}}
  releases:
    - {{name: good, probability: 0.8}}
    - {{name: bad, probability: 0.2, fault: {{errorRate: 0.05}}}}
  platform: {{replicas: 10}}
policies:
  - file: {POLICIES / "canary-20-first.yaml"}
  - file: {POLICIES / "bluegreen.yaml"}
replications: 10
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_scenario(path)


def _warnings(tmp_path: Path, text: str) -> list[str]:
    return [n for n in _load(tmp_path, text).notes if n.startswith("warning: ")]


def test_the_plain_scenario_has_no_warning(tmp_path: Path) -> None:
    assert _load(tmp_path, SCENARIO).notes == ()


@pytest.mark.parametrize("rate", ["1", "1.0", '"100%"'])
def test_a_baseline_that_fails_every_request_is_refused(tmp_path: Path, rate: str) -> None:
    text = SCENARIO.replace("  releases:", f"  baseline: {{errorRate: {rate}}}\n  releases:")
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path, text)
    assert caught.value.path == "world.baseline"
    assert "every request of the old version fails" in caught.value.message
    assert '"1%"' in caught.value.message  # the likely meaning, said


def test_a_baseline_above_the_alert_threshold_warns_that_every_release_is_rolled_back(
    tmp_path: Path,
) -> None:
    text = SCENARIO.replace("  releases:", "  baseline: {errorRate: 0.02}\n  releases:")
    (alert,) = [w for w in _warnings(tmp_path, text) if "alert threshold" in w]
    assert "fires at the release start on the old version alone" in alert
    assert "0.600% (burnRate 6" in alert


def test_a_baseline_where_almost_every_request_is_bad_warns(tmp_path: Path) -> None:
    """latencyObjective 1ms against a median latency of 80 ms: everything is slow."""
    text = SCENARIO.replace("  releases:", "  latencyObjective: 1ms\n  releases:")
    warnings = _warnings(tmp_path, text)
    assert any("already bad" in w and "latencyObjective 0.001" in w for w in warnings)


def test_a_bad_release_no_worse_than_the_baseline_warns(tmp_path: Path) -> None:
    """The issue's "bluegreen is the safest: −143,264 excess bad requests"."""
    text = SCENARIO.replace("  releases:", "  baseline: {errorRate: 0.1}\n  releases:")
    (worse,) = [w for w in _warnings(tmp_path, text) if "no worse than" in w]
    assert worse.startswith("warning: release class 'bad' is bad but its fault (error rate 0.05)")
    assert "zero or negative" in worse


def test_a_fault_that_begins_after_the_horizon_warns(tmp_path: Path) -> None:
    text = SCENARIO.replace("{errorRate: 0.05}", "{errorRate: 0.05, onset: {afterStart: 7h}}")
    (late,) = _warnings(tmp_path, text)
    assert "begins at 7h, not before the horizon 6h" in late


def test_a_fault_segment_that_no_segment_defines_is_refused_by_validate(
    tmp_path: Path, capsys
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("{errorRate: 0.05}", "{errorRate: 0.05, segment: betas}"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "world.releases: [1].fault.segment 'betas' is not a segment of users.segments" in err
    assert "(have: none)" in err and "reach nobody" in err


def test_a_fault_segment_is_checked_in_python_too() -> None:
    data = {
        "traffic": {"rate": 10},
        "users": {"count": 100, "segments": {"beta": {"share": 2}}},
        "releases": [{"name": "bad", "probability": 1, "fault": {"errorRate": 1, "segment": "b"}}],
    }
    with pytest.raises(ValueError, match=r"'b' is not a segment of users.segments \(have: beta\)"):
        World.model_validate(data)


def test_a_horizon_shorter_than_the_pauses_warns(tmp_path: Path) -> None:
    (short,) = _warnings(tmp_path, SCENARIO.replace("horizon: 6h", "horizon: 15m"))
    assert short.startswith("warning: canary-20-first: a healthy release takes at least 20m")
    assert "no release can complete" in short


def test_a_horizon_shorter_than_flaggers_ticks_warns(tmp_path: Path) -> None:
    text = SCENARIO.replace("horizon: 6h", "horizon: 3m").replace(
        "canary-20-first.yaml", "progressive.yaml"
    )
    (short,) = _warnings(tmp_path, text)
    assert "progressive: a healthy release takes at least 4m (4 Flagger ticks of 1m)" in short


def _inline(tmp_path: Path, policy: str) -> list[str]:
    text = SCENARIO.replace(f"  - file: {POLICIES / 'canary-20-first.yaml'}", f"  - {policy}")
    return _warnings(tmp_path, text)


def test_a_canary_that_never_receives_traffic_warns(tmp_path: Path) -> None:
    steps = "[{setWeight: 0}, {pause: {duration: 10m}}]"
    (dark,) = _inline(
        tmp_path, f"{{kind: Canary, name: dark, trafficRouting: {{nginx: {{}}}}, steps: {steps}}}"
    )
    assert dark.startswith("warning: dark: no step sends traffic to the canary")
    assert "as a blue-green switch does" in dark


def test_a_canary_with_weight_does_not_warn(tmp_path: Path) -> None:
    steps = "[{setWeight: 1}, {pause: {duration: 10m}}]"
    assert (
        _inline(
            tmp_path,
            f"{{kind: Canary, name: lit, trafficRouting: {{nginx: {{}}}}, steps: {steps}}}",
        )
        == []
    )


@pytest.mark.parametrize(
    ("delays", "warned"),
    [
        ("{nginx: 0s}", ["canary-20-first: platform.routerDelay.nginx 0s "]),
        ("{serviceSelector: 500ms}", ["bluegreen: platform.routerDelay.serviceSelector 0.5 "]),
        ("{nginx: 2s, serviceSelector: 2s, pods: 2s}", []),
        ("0s", []),  # every delay 0: the pods join as fast as the routes land
    ],
)
def test_a_router_faster_than_pods_joining_warns(tmp_path: Path, delays, warned) -> None:
    """Found by random search (session 13): a router delay below ``pods`` fails requests of a
    good release in both engines (nginx 0 s: ≈ 20 at 100 req/s per weight change)."""
    text = SCENARIO.replace(
        "platform: {replicas: 10}", f"platform: {{replicas: 10, routerDelay: {delays}}}"
    )
    got = _warnings(tmp_path, text)
    assert len(got) == len(warned)
    for line, start in zip(got, warned, strict=True):
        assert line.startswith(f"warning: {start}"), line
        assert "so even a good release fails the requests sent in between" in line


def test_flagger_max_weight_0_is_said_to_mean_100(tmp_path: Path) -> None:
    """Flagger reads maxWeight 0 as unset (100): the canary does get traffic, and a note says
    so rather than let the user believe it gets none."""
    policy = load_policy(POLICIES / "progressive.yaml").to_dict()
    policy["analysis"]["maxWeight"] = 0
    inline = str(policy).replace("'", '"')
    loaded = _load(
        tmp_path,
        SCENARIO.replace(f"  - file: {POLICIES / 'canary-20-first.yaml'}", f"  - {inline}"),
    )
    (note,) = loaded.notes
    assert note.startswith("note: progressive: analysis.maxWeight 0 is Flagger's default, 100")


def test_an_ab_match_on_an_empty_segment_is_refused(tmp_path: Path) -> None:
    text = SCENARIO.replace(
        "users: {count: 5000}",
        "users: {count: 5000, segments: {insiders: {share: 0, header: "
        "{name: x-canary, value: insider}}}}",
    ).replace("canary-20-first.yaml", "ab-test-header.yaml")
    with pytest.raises(
        PolicyError, match=r"\(insiders: 0 % of users\), so the canary would get no traffic"
    ):
        _load(tmp_path, text)


def test_one_replication_per_class_warns_at_load_and_in_the_result(tmp_path: Path) -> None:
    loaded = _load(tmp_path, SCENARIO.replace("replications: 10", "replications: 1"))
    (few,) = loaded.notes
    assert few.startswith("warning: replications: good (1), bad (1) below 2")
    result = run(
        loaded.world, loaded.policies, replications={"good": 2, "bad": 1}, backend="inprocess"
    )
    assert result.notes == (
        "warning: replications: bad (1) below 2: confidence intervals and paired tests need at"
        " least 2 replications per class, so the report gives means without intervals and"
        " cannot call any difference significant",
    )
    assert run(loaded.world, loaded.policies, replications=2, backend="inprocess").notes == ()


def test_a_batch_release_whose_first_batches_are_empty_warns(tmp_path: Path) -> None:
    batches = '[{replicas: "0%", pause: {duration: 10m}}, {replicas: "100%"}]'
    (dark,) = _inline(tmp_path, f"{{kind: BatchRelease, name: dark, batches: {batches}}}")
    assert dark == (
        "warning: dark: every batch before the last has 0 new pods, so the new version gets no"
        " traffic until all of it does"
    )
