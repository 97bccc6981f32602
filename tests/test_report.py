"""Reports as a colleague meets them: every file there, numbers that match the run, a verdict
by DESIGN §6's rule, an HTML page that needs nothing from the network, and a folder that is
replaced whole or not at all.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.engine.outcome import OUTCOME_FIELDS, Outcome
from sim.report import figures
from sim.report import write as report_module
from sim.report.facts import Facts
from sim.report.text import fmt_count, fmt_duration, fmt_pct, fmt_pod_seconds
from sim.report.verdict import verdict
from sim.report.write import REPORT_FILES, ReportIncomplete, example_traces, write_report
from sim.runs.runner import RunResult, run
from sim.runs.scenario import load_scenario
from sim.runs.summary import MIXTURE

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "seed-practice.yaml"
FIGURES = {"blast-radius", "pareto", "timeline-1", "timeline-2", "users-hurt"}
_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def loaded():
    """seed-practice with a 1 h horizon: every policy settles well inside it, and it is quick."""
    full = load_scenario(SCENARIO)
    world = full.world.model_copy(update={"horizon": 3600.0})
    return dataclasses.replace(full, scenario=full.scenario.model_copy(update={"world": world}))


@pytest.fixture(scope="module")
def result(loaded):
    return run(
        loaded.world,
        loaded.policies,
        replications=20,
        seed=loaded.scenario.seed,
        backend="inprocess",
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory, result, loaded) -> Path:
    return write_report(result, loaded, tmp_path_factory.mktemp("r") / "report")


def _verdict_html(html: str) -> str:
    return html.split('<section class="verdict">', 1)[1].split("</section>", 1)[0]


def _safest(result) -> str:
    """Safety is judged per bad release (the one bad class here), never on the mixture."""
    bad = result.summary().xs("fails-5pct", level="release_class")
    return str(bad["excess_bad_requests_mean"].idxmin())


# ---------------------------------------------------------------------------- the folder


def test_every_file_is_there(report: Path) -> None:
    for name in REPORT_FILES:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    pngs = {p.stem for p in (report / "figures").glob("*.png")}
    assert pngs == FIGURES
    for p in (report / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = [p.name for p in report.parent.iterdir() if p.name != report.name]
    assert leftovers == []


def test_results_parquet_round_trips_to_the_run_frame(report: Path, result) -> None:
    back = pd.read_parquet(report / "results.parquet")
    pd.testing.assert_frame_equal(back, result.frame)
    assert list(back.columns) == [*OUTCOME_FIELDS, "weight"]


def test_summary_csv_has_every_policy_class_and_metric(report: Path, result) -> None:
    summary = pd.read_csv(report / "summary.csv")
    assert set(summary["policy"]) == set(result.policies)
    assert set(summary["release_class"]) == {*result.classes, MIXTURE}
    for metric in ("excess_bad_requests", "users_hurt", "error_budget_used", "t_detect"):
        for stat in ("mean", "ci_low", "ci_high", "p50", "p95"):
            assert f"{metric}_{stat}" in summary.columns
    mix = summary[summary["release_class"] == MIXTURE].set_index("policy")
    expected = result.summary().xs(MIXTURE, level="release_class")
    assert np.allclose(mix["excess_bad_requests_mean"], expected["excess_bad_requests_mean"])


def test_resolved_scenario_reloads_as_what_ran(report: Path, result) -> None:
    path = report / "scenario.resolved.yaml"
    text = path.read_text()
    for key in ("rolloutsim:", "digest:", "wall_time_s:", "seed:", "replications:"):
        assert f"# {key}" in text
    again = load_scenario(path)
    assert again.world.to_dict() == result.world
    assert {n: p.to_dict() for n, p in again.policies.items()} == result.policy_specs
    assert again.scenario.seed == result.seed
    assert again.scenario.replications == result.replications


# ---------------------------------------------------------------------------- the page


def test_html_is_self_contained_with_one_embedded_png_per_figure(report: Path) -> None:
    html = (report / "report.html").read_text()
    images = _IMG.findall(html)
    assert len(images) == len(FIGURES) == html.count("<img ")
    files = {p.read_bytes() for p in (report / "figures").glob("*.png")}
    assert {base64.b64decode(i) for i in images} == files
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"<script|@import|url\(", html, re.I)


def test_verdict_comes_first_and_names_the_safest_policy(report: Path, result) -> None:
    html = (report / "report.html").read_text()
    safest = _safest(result)
    assert safest == "canary-20-first"  # the scenario's documented answer
    assert html.index('class="verdict"') < html.index("<table")
    text = _verdict_html(html)
    assert f"<strong>{safest}</strong> is the safest" in text
    assert "<strong>bluegreen</strong> is the fastest" in text
    per_bad = r"paired difference \+[\d,]+ per bad release, 95 % CI \+[\d,]+ to \+[\d,]+, "
    assert re.search(per_bad + "significant", text)


def test_markdown_says_the_same_and_links_the_figures(report: Path) -> None:
    md = (report / "report.md").read_text()
    assert "## Verdict" in md and "**canary-20-first** is the safest" in md
    links = re.findall(r"!\[[^\]]+\]\((figures/[^)]+\.png)\)", md)
    assert {Path(link).stem for link in links} == FIGURES
    assert all((report / link).is_file() for link in links)


def test_numbers_are_for_humans_and_never_is_a_dash(report: Path, result) -> None:
    md = (report / "report.md").read_text()
    bad = result.summary().loc[("bluegreen", "fails-5pct"), "excess_bad_requests_mean"]
    assert f"{bad:,.0f}" in md  # thousands separators
    assert "— (never)" in md  # a good release is never detected
    assert re.search(r"in 20 % of releases", md)  # the rate at which an event happened
    assert not re.search(r"\bnan\b", md, re.I)
    footer = md.split("\n---\n", 1)[1]
    for key in ("Seed", "Replications", "Failed replications", "Digest", "rolloutsim", "Written"):
        assert f"**{key}**" in footer


@pytest.mark.parametrize(
    ("fmt", "value", "text"),
    [
        (fmt_duration, 38.4, "38 s"),
        (fmt_duration, 100, "1m 40s"),
        (fmt_duration, 1320, "22 min"),
        (fmt_duration, 3900, "1h 05m"),
        (fmt_duration, math.nan, "—"),
        (fmt_count, 31003.4, "31,003"),
        (fmt_count, -2.52, "-2.5"),
        (fmt_count, 3.0, "3"),
        (fmt_pct, 0.05, "5 %"),
        (fmt_pct, 0.000054, "0.0054 %"),
        (fmt_pod_seconds, 5040, "1.4 pod-h"),
    ],
)
def test_formatting(fmt, value, text) -> None:
    assert fmt(value) == text


# ---------------------------------------------------------------------------- atomic writes


def test_a_failure_while_writing_the_results_leaves_the_old_report_untouched(
    tmp_path: Path, result, loaded, monkeypatch
) -> None:
    out = write_report(result, loaded, tmp_path / "report", traces=[])
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_module, "_write_results", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(result, loaded, out, traces=[])
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no partial folder left


def test_a_figure_that_fails_is_named_in_its_place_and_the_rest_is_written(
    tmp_path: Path, result, loaded, monkeypatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr(figures, "pareto_front", broken)
    with pytest.raises(ReportIncomplete, match="no ink") as caught:
        write_report(result, loaded, tmp_path / "report", traces=[])
    out = tmp_path / "report"
    assert "\n" not in str(caught.value) and "report.md" in str(caught.value)
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), result.frame)
    md = (out / "report.md").read_text()
    assert "**This report is incomplete.**" in md
    what = "the figure “Speed against safety” could not be drawn (RuntimeError: no ink)"
    assert f"Not shown: {what}" in md
    assert {p.stem for p in (out / "figures").glob("*.png")} == {"blast-radius", "users-hurt"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    monkeypatch.undo()  # the next run replaces it like any report
    assert write_report(result, loaded, out, traces=[]) == out


def test_a_new_report_replaces_the_old_one_whole(tmp_path: Path, result, loaded) -> None:
    out = write_report(result, loaded, tmp_path / "report", traces=[])
    (out / "stale.txt").write_text("from the old report")
    write_report(result, loaded, out, traces=[])
    assert not (out / "stale.txt").exists()
    assert {p.stem for p in (out / "figures").glob("*.png")} == FIGURES - {
        "timeline-1",
        "timeline-2",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_folder_that_is_not_a_report_is_never_replaced(tmp_path: Path, result, loaded) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"no report\.html"):
        write_report(result, loaded, tmp_path, traces=[])
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------- traces


def test_example_traces_rerun_the_runners_replications(loaded, result) -> None:
    traces = example_traces(loaded, seed=result.seed, frame=result.frame)
    assert [(t.policy, t.release_class) for t in traces] == [
        (p, c) for p in result.policies for c in ("fails-5pct", "good")
    ]
    frame = result.frame.set_index(["policy", "release_class", "replication"])
    for t in traces:
        row = frame.loc[(t.policy, t.release_class, t.replication)]
        assert int(t.canary_requests.sum()) == int(row["candidate_requests"])
        assert int(t.canary_errors.sum()) == int(row["failed_requests"])


# ---------------------------------------------------------------------------- the rule


def _synthetic(n: int = 40) -> RunResult:
    """Three policies on common random numbers: slow-safe, as safe but fast, fast and unsafe."""
    rng = np.random.default_rng(7)
    noise = {c: rng.normal(0, 30, n) for c in ("good", "bad")}
    shape = {  # policy: (excess on a bad release, rollout seconds)
        "slow-safe": (300.0, 1500.0),
        "quick-safe": (300.0, 300.0),
        "fast-risky": (20000.0, 40.0),
    }
    rows = []
    for p, (excess, rollout) in shape.items():
        for c, prob in (("good", 0.9), ("bad", 0.1)):
            for i in range(n):
                o = Outcome(p, i, 0, c, c == "bad", outcome="promoted")
                own = rng.normal(0, 5)  # what differs between policies on the same release
                o.excess_bad_requests = (excess if c == "bad" else 0.0) + noise[c][i] + own
                o.users_hurt = max(0, int(o.excess_bad_requests))
                o.rollout_duration = rollout + rng.normal(0, 5)
                o.t_detect = 60.0 if c == "bad" else math.nan
                o.detected_by = "gate" if c == "bad" else ""
                rows.append(o.to_dict() | {"weight": prob / n})
    frame = pd.DataFrame(rows, columns=[*OUTCOME_FIELDS, "weight"])
    return RunResult(
        frame=frame,
        policies=tuple(shape),
        classes=("good", "bad"),
        failed=0,
        seed=0,
        replications={"good": n, "bad": n},
        world={},
        policy_specs={p: {"kind": "Canary", "name": p} for p in shape},
    )


def test_verdict_picks_the_fastest_policy_not_significantly_less_safe() -> None:
    facts = Facts.build(_synthetic())
    assert facts.safest in ("slow-safe", "quick-safe")
    assert facts.pick == "quick-safe"
    assert facts.fastest == "fast-risky"
    paras, _ = verdict(facts)
    assert paras[0].startswith("**quick-safe** is the pick") or paras[0].startswith(
        "**quick-safe** is the safest"
    )
    assert "not significant" in paras[0] or "not significant" in " ".join(paras)
    assert "**fast-risky** is the fastest" in paras[1]


def test_one_policy_and_no_bad_release_still_make_a_readable_report(tmp_path: Path, loaded):
    full = _synthetic()
    frame = full.frame[
        (full.frame["policy"] == "quick-safe") & (full.frame["release_class"] == "good")
    ]
    frame = frame.assign(weight=1.0 / len(frame))
    result = dataclasses.replace(
        full,
        frame=frame,
        policies=("quick-safe",),
        classes=("good",),
        replications={"good": len(frame)},
        policy_specs={"quick-safe": {"kind": "Canary"}},
    )
    out = write_report(result, loaded, tmp_path / "report", traces=[])
    md = (out / "report.md").read_text()
    assert "Only one policy was simulated, **quick-safe**" in md
    assert "No release class carries a fault" in md
    assert {p.stem for p in (out / "figures").glob("*.png")} == {
        "blast-radius",
        "pareto",
        "users-hurt",
    }


def test_importing_the_report_modules_draws_nothing() -> None:
    import subprocess
    import sys

    code = (
        "import sys, sim.report.write, sim.report.figures\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_digest_note_says_what_differs_from_the_file(report: Path, result, loaded) -> None:
    """The run's seed is the file's, its replications are not (20 against the file's 100), and
    its world is the one loaded: the footer says exactly that, not "changed"."""
    md = (report / "report.md").read_text()
    digest = next(line for line in md.splitlines() if "**Digest**" in line)
    assert "replications good 20, fails-5pct 20 given to the run; the file says 100" in digest
    assert "seed" not in digest and "differ from the file" not in digest
    reseeded = dataclasses.replace(result, seed=7)
    world = loaded.world.model_copy(update={"horizon": 7200.0})
    edited = dataclasses.replace(reseeded, world=world.to_dict())
    said = report_module._differs(edited, loaded)
    assert said[0] == "seed 7 given to the run; the file says 1"
    assert said[-1].startswith("the world or the policies differ from the file")
