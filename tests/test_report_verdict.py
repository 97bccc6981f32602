"""The verdict's choices on runs built by hand (DESIGN §6), where the right words are known:

(a) the release mixture and the bad class disagree: the verdict follows the paired difference
    per bad release, and quotes per-bad-release means beside it;
(b) no policy catches most bad releases: the verdict leads with it, says how they end and how
    much the horizon cuts, and crowns no "safest" policy whose edge is a later rollout;
(c) each policy's line names the gate, metric and step that caught the bad releases;
(d) capacity is compared with its sign, in one unit;
(e) a difference whose interval covers zero is never called significant.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.engine.outcome import OUTCOME_FIELDS, Outcome
from sim.report.facts import Facts
from sim.report.text import fmt_pod_seconds, pod_unit
from sim.report.verdict import policy_lines, verdict
from sim.report.write import write_report
from sim.runs.runner import RunResult
from sim.runs.scenario import load_scenario
from sim.runs.summary import MIXTURE, compare

ROOT = Path(__file__).resolve().parents[1]
N = 40


def row(policy: str, i: int, cls: str, weight: float, **fields) -> dict:
    """One replication's record as the runner writes it; unset fields keep their defaults."""
    bad = cls != "good"
    o = Outcome(policy, i, 0, cls, bad, outcome="promoted")
    o.candidate_requests = 10_000
    record = o.to_dict() | {"weight": weight}
    return record | fields


def result_of(rows: list[dict], policies, classes: dict[str, float], horizon="6h") -> RunResult:
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in [*OUTCOME_FIELDS, "weight"] if c in frame.columns]]
    counts = frame.groupby("release_class").size() // len(policies)
    return RunResult(
        frame=frame,
        policies=tuple(policies),
        classes=tuple(classes),
        failed=0,
        seed=0,
        replications={c: int(counts[c]) for c in classes},
        world={"horizon": horizon},
        policy_specs={p: {"kind": "Canary", "name": p} for p in policies},
    )


def caught_row(policy, i, cls, weight, excess, rollout=np.nan, **extra) -> dict:
    """A bad release caught by a gate and rolled back, or a good one promoted."""
    if cls == "good":
        return row(policy, i, cls, weight, excess_bad_requests=excess, rollout_duration=rollout)
    fields = {
        "outcome": "rolled_back",
        "excess_bad_requests": excess,
        "users_hurt": max(0, int(excess)),
        "t_detect": 120.0,
        "detected_by": "gate",
        "gate_run": "background",
        "gate_metrics": "success-rate",
        "gate_step": 1.0,
        "t_mitigated": 125.0,
    }
    return row(policy, i, cls, weight, **(fields | extra))


def significant_claims(text: str) -> list[str]:
    """Every "significant" that is not "not significant"."""
    return [m.start() for m in re.finditer(r"(?<!not )significant", text)]


# ------------------------------------------------------------------ (a) mixture vs bad class


def mixture_disagrees() -> RunResult:
    """B serves +40 excess bad requests per bad release (sharp: the same releases), but the
    bad class is 5 % of releases and good releases differ by independent noise, so the
    mixture's paired difference (about +2 per release) is not significant. B is faster."""
    rng = np.random.default_rng(3)
    base = rng.normal(300, 80, N)
    rows = []
    for i in range(N):
        rows.append(caught_row("A", i, "bad", 0.05 / N, base[i]))
        rows.append(caught_row("B", i, "bad", 0.05 / N, base[i] + 40 + rng.normal(0, 6)))
        rows.append(caught_row("A", i, "good", 0.95 / N, rng.normal(0, 30), rollout=1500.0))
        rows.append(caught_row("B", i, "good", 0.95 / N, rng.normal(0, 30), rollout=300.0))
    return result_of(rows, ("A", "B"), {"good": 0.95, "bad": 0.05})


def test_the_verdict_follows_the_bad_class_not_the_mixture() -> None:
    result = mixture_disagrees()
    mix = compare(result.frame, "A", "B")
    assert not mix.loc[MIXTURE, "significant"]  # what the old verdict tied on
    assert mix.loc["bad", "significant"] and mix.loc["bad", "diff"] > 30
    facts = Facts.build(result)
    assert (facts.safest, facts.pick, facts.fastest) == ("A", "A", "B")
    paras, _ = verdict(facts)
    text = " ".join(paras)
    assert paras[0].startswith("**A** is the safest:")
    assert "is the pick" not in text and "within the noise" not in text
    diff = re.search(r"paired difference \+(\d+) per bad release, 95 % CI \+(\d+) to \+(\d+)", text)
    assert diff is not None and 30 < int(diff.group(1)) < 50
    assert ", significant" in paras[0]
    # every difference quoted is per bad release, beside per-bad-release means
    quoted = re.findall(r"paired difference [+-]?[\d,.]+ per (\w+(?: release)?)", text)
    assert quoted and set(quoted) == {"bad release"}
    assert re.search(r"[\d,]+ excess bad requests expected per bad release", paras[0])
    # the mixture appears once, as the expected cost of the next release
    assert "The next release (bad with probability 5 %) is expected to cost" in paras[-1]


def test_a_policy_significantly_worse_on_one_bad_class_is_never_tied() -> None:
    """Two bad classes: pooled, B's extra harm on the rare class drowns; on that class alone
    it is significant, so B is not "as safe"."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(N):
        common, rare = rng.normal(500, 200, 2)
        rows.append(caught_row("A", i, "common-bug", 0.18 / N, common))
        rows.append(caught_row("B", i, "common-bug", 0.18 / N, common + rng.normal(0, 300)))
        rows.append(caught_row("A", i, "rare-bug", 0.02 / N, rare))
        rows.append(caught_row("B", i, "rare-bug", 0.02 / N, rare + 60 + rng.normal(0, 5)))
        rows.append(caught_row("A", i, "good", 0.8 / N, 0.0, rollout=1500.0))
        rows.append(caught_row("B", i, "good", 0.8 / N, 0.0, rollout=300.0))
    result = result_of(rows, ("A", "B"), {"good": 0.8, "common-bug": 0.18, "rare-bug": 0.02})
    facts = Facts.build(result)
    pooled = facts.pooled("B") if facts.safest == "A" else facts.pooled("A")
    assert pooled is not None and not pooled["significant"]
    worse = facts.class_diffs("B", +1) if facts.safest == "A" else []
    if facts.safest == "A":
        assert [c for c, _ in worse] == ["rare-bug"]
        assert facts.pick == "A"
    else:  # B is the least harm pooled; then A is significantly safer on rare-bug
        assert [c for c, _ in facts.class_diffs("A", -1)] == ["rare-bug"]
        assert "On **rare-bug** releases, however, **A** is safer" in " ".join(verdict(facts)[0])


# ------------------------------------------------------------------ (b) nothing detects


def nothing_detects(horizon="6h") -> RunResult:
    """A subtle bug no gate sees: a human catches about a quarter of the bad releases, the
    rest are fully rolled out and still serving at the horizon. A rolls out slowly, so less
    traffic meets the bug before the horizon; B rolls out in a minute."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(N):
        human = i % 4 == 0
        for p, excess, rollout in (("A", 800.0, 3000.0), ("B", 2000.0, 60.0)):
            fields = {
                "outcome": "promoted",
                "excess_bad_requests": excess + rng.normal(0, 40),
                "users_hurt": int(excess / 2),
                "escaped": True,
                "rollout_duration": rollout,
                "detected_by": "human" if human else "",
                "t_detect": 5400.0 if human else math.nan,
                "t_mitigated": 5700.0 if human else math.nan,
            }
            rows.append(row(p, i, "subtle", 0.1 / N, **fields))
            rows.append(row(p, i, "good", 0.9 / N, rollout_duration=rollout))
    return result_of(rows, ("A", "B"), {"good": 0.9, "subtle": 0.1}, horizon)


def test_when_nothing_detects_the_verdict_leads_with_it_and_names_the_horizon_cut() -> None:
    facts = Facts.build(nothing_detects())
    assert facts.nothing_catches
    paras, _ = verdict(facts)
    lead = paras[0]
    assert lead.startswith("**No policy catches most bad releases**")
    assert "no gate or alert catches any of them" in lead
    assert "under every policy, a human catches 10 of 40 after 1h 30m on average" in lead
    assert "30 are never caught within the horizon (30 fully rolled out and still serving)" in lead
    assert "The horizon (6h 00m) cuts the blast radius short" in lead
    assert "30 of 40 under **A**" in lead and "30 of 40 under **B**" in lead
    assert "lower bound" in lead
    text = " ".join(paras)
    assert "is the safest" not in text and "is the pick" not in text
    assert "The safety of" not in text
    assert "Least harm per bad release: **A**" in paras[1]
    assert "comes only from rolling out later" in paras[1]
    assert "none is named the safest" in paras[1]


def test_a_policy_whose_gate_catches_most_is_not_buried_under_the_lead() -> None:
    """The same world, but A's gate catches 30 of 40: that is most, so no lead."""
    result = nothing_detects()
    frame = result.frame
    caught = (frame["policy"] == "A") & (frame["release_class"] == "subtle")
    caught &= frame["replication"] % 4 != 0
    frame.loc[caught, ["detected_by", "t_detect", "t_mitigated", "outcome", "escaped"]] = [
        "gate",
        600.0,
        610.0,
        "rolled_back",
        False,
    ]
    facts = Facts.build(result)
    assert not facts.nothing_catches
    paras, _ = verdict(facts)
    assert not paras[0].startswith("**No policy catches")
    assert paras[0].startswith("**A** is the safest")


# ------------------------------------------------------------------ (c) gate, metric, step


def gated(run: str, metrics: str, steps: list[float], drop_gate_columns=False) -> RunResult:
    rows = []
    for i in range(N):
        if i < len(steps):
            extra = {"gate_run": run, "gate_metrics": metrics, "gate_step": steps[i]}
            rows.append(caught_row("A", i, "bad", 0.2 / N, 300.0, **extra))
        else:  # the others wait for the burn-rate alert
            rows.append(caught_row("A", i, "bad", 0.2 / N, 900.0, detected_by="alert"))
        rows.append(caught_row("A", i, "good", 0.8 / N, 0.0, rollout=1300.0))
    result = result_of(rows, ("A",), {"good": 0.8, "bad": 0.2})
    if drop_gate_columns:
        frame = result.frame.drop(columns=["gate_run", "gate_metrics", "gate_step"])
        result = RunResult(**{**result.__dict__, "frame": frame})
    return result


def test_each_policy_line_says_which_gate_metric_and_step_caught_it() -> None:
    (line,) = policy_lines(Facts.build(gated("background", "success-rate", [2.0] * 30 + [3.0] * 8)))
    assert (
        "caught by background analysis 'success-rate' in 38 of 40 bad releases "
        "(mostly at step 2) and by the SLO burn-rate alert in 2, after" in line
    )
    (line,) = policy_lines(Facts.build(gated("step-3", "error-rate,p99", [3.0] * 40)))
    assert (
        "caught by the analysis at step 3 'error-rate' and 'p99' in 40 of 40 bad releases" in line
    )
    assert "(at step" not in line  # the run's name says the step already
    (line,) = policy_lines(Facts.build(gated("flagger", "request-success-rate", [4.0] * 40)))
    assert (
        "Flagger's analysis 'request-success-rate' in 40 of 40 bad releases (held at tick 4)"
        in line
    )


def test_a_frame_without_the_gate_fields_still_reads() -> None:
    facts = Facts.build(gated("background", "success-rate", [2.0] * 38, drop_gate_columns=True))
    (line,) = policy_lines(facts)
    assert "caught by its analysis gate in 38 of 40 bad releases and by the SLO burn-rate" in line
    assert verdict(facts)[0]


# ------------------------------------------------------------------ (d) cost signs and units


def capacity_run(pods_safe: float, pods_fast: float) -> RunResult:
    rows = []
    for i in range(N):
        for p, excess, rollout, pods in (
            ("safe", 300.0, 1300.0, pods_safe),
            ("fast", 30000.0, 40.0, pods_fast),
        ):
            rows.append(caught_row(p, i, "bad", 0.2 / N, excess + i, extra_pod_seconds=pods))
            rows.append(
                caught_row(p, i, "good", 0.8 / N, 0.0, rollout=rollout)
                | {"extra_pod_seconds": pods}
            )
    return result_of(rows, ("safe", "fast"), {"good": 0.8, "bad": 0.2})


def test_a_cheaper_policy_is_not_said_to_pay_for_capacity() -> None:
    facts = Facts.build(capacity_run(pods_safe=200.0, pods_fast=5000.0))
    assert (facts.pick, facts.fastest) == ("safe", "fast")
    speed = verdict(facts)[0][1]
    assert "costs 21 min more per good release" in speed
    assert (
        "it needs less capacity than **fast** (0.056 pod-h vs 1.4 pod-h per release), not more"
        in speed
    )
    assert "more capacity" not in speed


def test_a_dearer_policy_pays_for_capacity_in_one_unit() -> None:
    facts = Facts.build(capacity_run(pods_safe=5000.0, pods_fast=200.0))
    speed = verdict(facts)[0][1]
    assert "1.3 pod-h more capacity per release (1.4 pod-h vs 0.056 pod-h)" in speed
    assert "pod-s" not in speed


def test_capacity_columns_keep_one_unit(tmp_path: Path) -> None:
    loaded = load_scenario(ROOT / "scenarios" / "seed-practice.yaml")
    out = write_report(capacity_run(200.0, 5000.0), loaded, tmp_path / "r", traces=[])
    md = (out / "report.md").read_text()
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header = next(line for line in md.splitlines() if "| Extra capacity |" in line)
    column = cells(header).index("Extra capacity")
    table = md.split(header, 1)[1].split("\n\n", 1)[0]
    values = [
        cells(line)[column] for line in table.splitlines() if line.startswith(("| safe", "| fast"))
    ]
    assert len(values) == 6 and all("pod-h" in v and "pod-s" not in v for v in values), values
    assert pod_unit([100.0, 5000.0])(100.0) == "0.028 pod-h"
    assert pod_unit([100.0, 200.0])(100.0) == "100 pod-s"
    assert fmt_pod_seconds(100.0, unit="pod-h") == "0.028 pod-h"


# ------------------------------------------------------------------ (e) significance


def noisy_tie(n: int = N) -> RunResult:
    """B differs from A by pure noise on bad releases (the interval covers 0) and is faster."""
    rng = np.random.default_rng(2)
    base = rng.normal(400, 100, n)
    rows = []
    for i in range(n):
        rows.append(caught_row("A", i, "bad", 0.2 / n, base[i]))
        rows.append(caught_row("B", i, "bad", 0.2 / n, base[i] + rng.normal(0, 60)))
        rows.append(caught_row("A", i, "good", 0.8 / n, 0.0, rollout=1500.0))
        rows.append(caught_row("B", i, "good", 0.8 / n, 0.0, rollout=300.0))
    return result_of(rows, ("A", "B"), {"good": 0.8, "bad": 0.2})


@pytest.mark.parametrize("n", [N, 2, 1])
def test_a_difference_covering_zero_is_never_significant(n: int, tmp_path: Path) -> None:
    facts = Facts.build(noisy_tie(n))
    other = "B" if facts.safest == "A" else "A"
    pooled = facts.pooled(other)
    assert pooled is not None
    covers = math.isnan(pooled["ci_low"]) or pooled["ci_low"] <= 0 <= pooled["ci_high"]
    assert covers and not pooled["significant"]
    text = " ".join(verdict(facts)[0])
    assert significant_claims(text) == [], text
    if n > 2:
        assert "**B** is the pick" in text and "not significant" in text
    loaded = load_scenario(ROOT / "scenarios" / "seed-practice.yaml")
    md = (write_report(noisy_tie(n), loaded, tmp_path / "r", traces=[]) / "report.md").read_text()
    diffs = md.split("## Paired differences", 1)[1].split("## Figures", 1)[0]
    for cell in re.findall(r"\| (\*\*)?([+-]?[\d,.]+[^|]*?)\(± ([\d,.]+)[^|]*\)", diffs):
        bold, _, _ = cell
        assert not bold or "not significant" not in cell[1]


def test_significant_means_the_interval_excludes_zero() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a = rng.normal(0, 1, 6)
        rows = [row("A", i, "bad", 1 / 6, excess_bad_requests=a[i]) for i in range(6)]
        rows += [
            row("B", i, "bad", 1 / 6, excess_bad_requests=a[i] + rng.normal(0.5, 1))
            for i in range(6)
        ]
        c = compare(pd.DataFrame(rows), "A", "B")
        for _, r in c.iterrows():
            assert bool(r["significant"]) == bool(r["ci_low"] > 0 or r["ci_high"] < 0)


def test_a_latency_shift_is_said_with_its_unit() -> None:
    """A world's fault in words: "+600 ms latency", not "+0.6 latency" (user review)."""
    from sim.report.text import describe_fault

    assert describe_fault({"latencyShift": 0.6}) == "+600 ms latency"
    assert describe_fault({"latencyShift": 2.5, "segment": "beta"}) == (
        "+2.5 s latency, only for beta"
    )
