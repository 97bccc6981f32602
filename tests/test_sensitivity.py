"""Sensitivity (issue #14 part 4): each assumption varied alone, the verdict read at each end,
a flip found and located, and the words, table and tornado written as a folder or a section."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import pytest

import sim
from policies.errors import PolicyError
from rolloutsim.sensitivity_command import add_run_sensitivity, add_sensitivity_parser
from rolloutsim.usage import UsageError
from sim.report.sensitivity_report import sensitivity_words as words
from sim.runs.options import RunOptions
from sim.runs.scenario import load_scenario
from sim.runs.sensitivity import analyse, run_with_sensitivity, sensitivity
from sim.runs.sensitivity_assumptions import ASSUMPTIONS, skip_reason, vary
from sim.runs.sweep import run_scenario

FAST = RunOptions(backend="inprocess", progress=False)

WORLD = """
world:
  horizon: {horizon}
  traffic: {{rate: 50}}
  users: {{count: 1000}}
  releases:
    - {{name: good, probability: 0.5}}
    - {{name: bad, probability: 0.5, fault: {{errorRate: 0.05}}}}
  platform: {{replicas: 10, podStartup: {startup}}}
  operators: {{humanDetection: {{exponential: {{mean: 1h}}}}}}
"""

# A rolling update (10 pods one at a time, ~10 start-ups) against a canary with one 5-minute
# pause: the rolling update is faster with 30 s start-ups, slower once they take ~40 s.
SPEED_FLIP = (
    "name: speed-flip\n"
    + WORLD.format(horizon="2h", startup="30s")
    + """
policies:
  - {kind: RollingUpdate, name: rolling, maxSurge: 1, maxUnavailable: 0}
  - kind: Canary
    name: canary
    trafficRouting: {nginx: {}}
    steps: [{setWeight: 50}, {pause: {duration: 5m}}]
replications: 4
seed: 3
"""
)

# A canary at 50 % whose gate only sees error rates above 3 %, against a slow 10 % canary with
# no gate: the gated one is safer for a 5 % bug and far worse for a bug its gate cannot see.
SAFETY_FLIP = (
    "name: safety-flip\n"
    + WORLD.format(horizon="3h", startup="10s")
    + """
policies:
  - kind: Canary
    name: gated-half
    trafficRouting: {nginx: {}}
    analysisTemplates:
      - name: sr
        metrics:
          - name: sr
            interval: 1m
            failureLimit: 0
            successCondition: "result[0] >= 0.97"
            provider: {query: {measure: successRate}}
    analysis: {startingStep: 1, templates: [{templateName: sr}]}
    steps: [{setWeight: 50}, {pause: {duration: 10m}}]
  - kind: Canary
    name: slow-tenth
    trafficRouting: {nginx: {}}
    steps: [{setWeight: 10}, {pause: {duration: 2h}}]
replications: 6
seed: 3
"""
)


def write(tmp_path: Path, text: str, section: str = "") -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text + (f"sensitivity: {section}\n" if section else ""))
    return path


def only(*names: str, extra: str = "") -> str:
    """A sensitivity: section that varies only ``names``."""
    skip = [a for a in ASSUMPTIONS if a not in names]
    return "{skip: [" + ", ".join(skip) + "]" + (f", {extra}" if extra else "") + "}"


# --------------------------------------------------------------------------- the section


@pytest.mark.parametrize(
    ("section", "field", "rule"),
    [
        ("{traffic: [2, 0.5]}", "sensitivity.traffic", "0 < low ≤ 1 ≤ high"),
        ("{podStartup: [0, 3]}", "sensitivity.podStartup", "0 < low"),
        ("{faultSeverity: [1.5, 4]}", "sensitivity.faultSeverity", "low ≤ 1"),
        ("{skip: [weather]}", "sensitivity.skip[0]", "faultSeverity"),
        ("{trafic: [0.5, 2]}", "sensitivity.trafic", "did you mean traffic"),
        ("{bisect: 50}", "sensitivity.bisect", "10"),
    ],
)
def test_a_bad_section_is_one_line_naming_file_field_and_rule(
    tmp_path: Path, section: str, field: str, rule: str
) -> None:
    path = write(tmp_path, SPEED_FLIP, section)
    with pytest.raises(PolicyError) as err:
        sensitivity(path, FAST)
    text = str(err.value)
    assert "\n" not in text
    assert str(path) in text and field in text and rule in text


def test_a_scenario_with_one_policy_or_no_bad_class_is_refused(tmp_path: Path) -> None:
    one = SPEED_FLIP.split("  - kind: Canary")[0] + "replications: 4\n"
    with pytest.raises(PolicyError, match="only one"):
        sensitivity(write(tmp_path, one), FAST)
    good = SPEED_FLIP.replace(
        "    - {name: bad, probability: 0.5, fault: {errorRate: 0.05}}\n", ""
    ).replace("probability: 0.5}", "probability: 1}")
    with pytest.raises(PolicyError, match="needs a bad release class"):
        sensitivity(write(tmp_path, good), FAST)


# --------------------------------------------------------------------------- the scaling


def test_each_assumption_scales_its_part_of_the_world_and_only_that(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, SPEED_FLIP))
    world, policies = loaded.world, loaded.policies
    base = world.to_dict()
    for name in ASSUMPTIONS:  # ×1 is the world as written
        assert vary(world, policies, name, 1.0).world.to_dict() == base, name
    severe = vary(world, policies, "faultSeverity", 4.0).world
    # the excess over the old version's 0.1 % scales: 0.001 + 4 × 0.049
    assert severe.releases["bad"].fault.error_rate == pytest.approx(0.001 + 4 * 0.049)
    assert severe.to_dict()["traffic"] == base["traffic"]
    assert vary(world, policies, "faultSeverity", 40.0).world.releases["bad"].fault.error_rate == 1
    assert vary(world, policies, "traffic", 0.5).world.traffic.rate_at(0.0) == 25
    assert vary(world, policies, "podStartup", 3.0).world.platform.pod_startup.mean == 90
    delays = vary(world, policies, "routerDelay", 3.0)
    assert delays.world.platform.router_delay_for("nginx") == 3 * 2.0
    assert delays.value == "pods 3 s, nginx 6 s"  # the routers the policies use
    human = vary(world, policies, "humanDetection", 0.25).world.operators.human_detection
    assert human.mean == 900
    assert vary(world, policies, "gateNoise", 4.0).world.baseline.error_rate == 0.004
    ack = vary(world, policies, "acknowledgement", 2.0).world.operators.acknowledgement
    assert ack.mean == 600


def test_every_fault_and_rate_form_scales(tmp_path: Path) -> None:
    text = SPEED_FLIP.replace(
        "{name: bad, probability: 0.5, fault: {errorRate: 0.05}}",
        "{name: bad, probability: 0.5, fault: {errorRateMultiplier: 11, latencyShift: 2s,"
        " latencyMultiplier: 3}}",
    ).replace("traffic: {rate: 50}", "traffic: {rate: {diurnal: {mean: 50, amplitude: 0.5}}}")
    loaded = load_scenario(write(tmp_path, text))
    fault = vary(loaded.world, loaded.policies, "faultSeverity", 0.5).world.releases["bad"].fault
    assert (fault.error_rate_multiplier, fault.latency_multiplier) == (6.0, 2.0)
    assert fault.latency_shift == 1.0
    rate = vary(loaded.world, loaded.policies, "traffic", 2.0).world.traffic.rate
    assert (rate.mean, rate.amplitude) == (100, 0.5)
    trace = text.replace(
        "{diurnal: {mean: 50, amplitude: 0.5}}", "{trace: {counts: [600, 1200], beyond: hold}}"
    )
    loaded = load_scenario(write(tmp_path, trace))
    rate = vary(loaded.world, loaded.policies, "traffic", 0.5).world.traffic.rate
    assert (rate.counts, rate.beyond) == ((300, 600), "hold")


def test_an_assumption_the_world_lacks_is_skipped_with_a_note(tmp_path: Path) -> None:
    text = SPEED_FLIP.replace(
        "  operators: {humanDetection: {exponential: {mean: 1h}}}\n", ""
    ).replace("fault: {errorRate: 0.05}", "fault: {crashLoop: true}")
    loaded = load_scenario(write(tmp_path, text, only("humanDetection", "faultSeverity")))
    assert "humanDetection unset" in skip_reason(loaded.world, loaded.policies, "humanDetection")
    with pytest.raises(PolicyError, match="nothing to vary") as refused:  # before any run
        sensitivity(loaded, FAST)
    assert "human detection: no human notices" in str(refused.value)
    assert "fault severity: no bad release class" in str(refused.value)
    partly = write(tmp_path, text, only("humanDetection", "podStartup"))
    result = sensitivity(partly, FAST)
    assert set(result.skipped) == {"humanDetection"}
    assert any("human detection is not varied" in n for n in result.notes)


# --------------------------------------------------------------------------- the verdict


def test_a_speed_flip_is_found_at_its_end_and_located_between_two_values(tmp_path: Path) -> None:
    path = write(tmp_path, SPEED_FLIP, only("podStartup", extra="bisect: 3"))
    result = sensitivity(path, FAST)
    assert (result.safest, result.fastest) == ("canary", "rolling")
    low, high = result.reading("podStartup", "low"), result.reading("podStartup", "high")
    assert (low.factor, high.factor) == (0.5, 3.0)  # the default range of pod start-up
    assert low.fastest == "rolling" and high.fastest == "canary"
    (flip,) = result.flips
    assert (flip.what, flip.end, flip.before, flip.after) == (
        "fastest",
        "high",
        "rolling",
        "canary",
    )
    assert flip.located and flip.significant
    lo, hi = flip.bracket
    assert 1.0 <= lo < hi <= 3.0 and hi / lo == pytest.approx(3.0 ** (1 / 8))  # 3 halvings
    bisected = [r for r in result.readings if r.end == "bisect"]
    assert len(bisected) == 3
    for r in bisected:  # every run inside the bracket agrees with the side it fell on
        assert r.fastest == ("rolling" if r.factor <= lo else "canary")
    text = " ".join(words(result))
    assert "**Pod start-up** can flip the verdict" in text
    assert f"between ×{lo:.3g} and ×{hi:.3g}" in text


def test_a_safety_flip_names_the_new_safest_and_its_significance(tmp_path: Path) -> None:
    path = write(tmp_path, SAFETY_FLIP, only("faultSeverity", extra="faultSeverity: [0.25, 2]"))
    result = sensitivity(path, FAST, bisect=2)
    assert (result.safest, result.runner_up) == ("gated-half", "slow-tenth")
    (flip,) = result.flips
    assert (flip.what, flip.end, flip.after) == ("safest", "low", "slow-tenth")
    low = result.reading("faultSeverity", "low")
    assert low.key < 0 and low.key_high < 0  # past 0: the runner-up is safer, by its interval
    assert flip.significant
    assert 0.25 <= flip.bracket[0] < flip.bracket[1] <= 1.0
    assert "errorRate" in flip.bracket_values[0]
    assert "**slow-tenth** is the safest instead of **gated-half**" in words(result)[0]


def test_variants_share_the_seed_so_the_base_is_the_scenario_run(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, SAFETY_FLIP, only("traffic", extra="bisect: 0")))
    result = sensitivity(loaded, FAST)
    plain = sim.run(loaded.world, loaded.policies, replications=6, seed=3, backend="inprocess")
    diff = plain.compare("gated-half", "slow-tenth")
    # per bad release: the only bad class is "bad"
    assert result.base.key == pytest.approx(diff.loc["bad", "diff"])
    assert result.reading("traffic", "low").factor == 0.5
    frame = result.frame()
    assert list(frame["end"]) == ["base", "low", "high"]
    assert not frame["key_difference"].isna().any()


# --------------------------------------------------------------------------- the outputs


def test_the_folder_holds_report_csv_and_tornado(tmp_path: Path) -> None:
    path = write(tmp_path, SPEED_FLIP, only("podStartup", "traffic", extra="bisect: 1"))
    out = tmp_path / "sens"
    result = sensitivity(path, FAST, out)
    for name in ("report.html", "report.md", "sensitivity.csv", "figures/tornado.png"):
        assert (out / name).is_file(), name
    assert not out.with_name("sens.checkpoint").exists()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    md = (out / "report.md").read_text()
    assert "Pod start-up" in md and "can flip the verdict" in md
    table = pd.read_csv(out / "sensitivity.csv")
    assert len(table) == 1 + len(result.readings)
    assert set(table["assumption"]) == {"base", "podStartup", "traffic"}
    assert (out / "figures/tornado.png").read_bytes()[:4] == b"\x89PNG"


def test_a_finished_analysis_resumed_simulates_nothing_and_says_the_same(
    tmp_path: Path, monkeypatch
) -> None:
    """Its variants are kept in the folder (variants/): --resume reads them back."""
    from sim.runs import runner

    path = write(tmp_path, SPEED_FLIP, only("podStartup", extra="bisect: 1"))
    out = tmp_path / "sens"
    first = sensitivity(path, FAST, out)
    assert (out / "variants").is_dir() and not out.with_name("sens.checkpoint").exists()
    simulated = []
    real = runner.run_chunk
    monkeypatch.setattr(runner, "run_chunk", lambda *a, **k: simulated.append(a) or real(*a, **k))
    again = sensitivity(path, RunOptions(backend="inprocess", progress=False, resume=True), out)
    assert simulated == []
    assert again.frame().equals(first.frame()) and words(again) == words(first)
    assert (out / "variants").is_dir()


def test_a_wrong_skip_or_nothing_left_to_vary_is_refused_before_any_run(
    tmp_path: Path, monkeypatch
) -> None:
    from sim.runs import runner

    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("ran"))
    path = write(tmp_path, SPEED_FLIP, only("podStartup"))
    with pytest.raises(PolicyError, match=r'skip\[0\]: "nope" must be one of'):
        sensitivity(path, FAST, skip=("nope",))
    with pytest.raises(PolicyError, match="nothing to vary"):
        sensitivity(path, FAST, skip=("podStartup",))


def test_run_with_sensitivity_adds_a_section_and_the_plain_run_does_not(tmp_path: Path) -> None:
    path = write(tmp_path, SPEED_FLIP, only("podStartup", extra="bisect: 1"))
    out = tmp_path / "run"
    result, analysis = run_with_sensitivity(path, FAST, out)
    md = (out / "report.md").read_text()
    assert "\n## Sensitivity\n" in md and (out / "figures/tornado.png").is_file()
    assert md.index("## Sensitivity") < md.index("## Figures")
    assert analysis.base.key == pytest.approx(
        result.compare("canary", "rolling").loc["bad", "diff"]
    )
    plain = tmp_path / "plain"
    run_scenario(path, FAST, plain, traces=[])
    assert "Sensitivity" not in (plain / "report.md").read_text()
    assert not (plain / "figures/tornado.png").exists()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_sensitivity_parser(sub)
    p = sub.add_parser("run")
    p.add_argument("scenario")
    from rolloutsim.run_commands import add_run_options

    add_run_options(p)
    add_run_sensitivity(p)
    return parser


def test_the_command_line_takes_ranges_and_skips(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, SPEED_FLIP)
    out = tmp_path / "cli"
    skips = [f"--skip={a}" for a in ASSUMPTIONS if a not in ("podStartup",)]
    argv = ["sensitivity", str(path), "--range", "podStartup=0.5,1.2", *skips]
    argv += ["--backend", "inprocess", "--no-progress", "-o", str(out)]
    args = _parser().parse_args(argv)
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "No assumption flips the verdict" in printed  # ×1.2 is short of the crossing
    assert "pod start-up ×0.5 to ×1.2" in printed and str(out / "report.html") in printed
    bad = _parser().parse_args(["sensitivity", str(path), "--range", "podStartup=3"])
    with pytest.raises(UsageError, match="NAME=LOW,HIGH"):
        bad.func(bad)
    alone = _parser().parse_args(["run", str(path), "--skip", "traffic"])
    with pytest.raises(UsageError, match="go with --sensitivity"):
        alone.func(alone)


def test_analyse_reuses_a_given_base_run(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, SPEED_FLIP, only("gateNoise", extra="bisect: 0")))
    opts = FAST.resolve(loaded)
    base = sim.run(loaded.world, loaded.policies, **opts.run_kwargs())
    result = analyse(loaded, opts, base=base)
    assert len(result.readings) == 2 and not math.isnan(result.base.key)
    assert result.base_values == {"gateNoise": "errorRate 0.1 %"}
