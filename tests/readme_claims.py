"""The README's prose checked against what its commands produced (tests/test_readme.py runs
the commands and calls these with the command's working folder and output)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_sentence(pattern: str) -> re.Match[str]:
    text = " ".join(README.read_text(encoding="utf-8").split())
    found = re.search(pattern, text)
    assert found, pattern
    return found


def check_tune(cwd: Path, stdout: str) -> None:
    """'a tune simulates fewer releases than an exhaustive grid at the same resolution would;
    `tune.md` states both counts'."""
    readme_sentence(
        r"a tune simulates fewer releases than an exhaustive grid at the same resolution "
        r"would; `tune.md` states both counts"
    )
    tune = " ".join((cwd / "reports" / "tune-canary-tune" / "tune.md").read_text().split())
    counts = re.search(r"([\d,]+) simulated releases .*? against ([\d,]+) for an exhaustive", tune)
    assert counts, tune[:3000]
    spent, grid = (int(c.replace(",", "")) for c in counts.groups())
    assert 0 < spent < grid


def check_compare(cwd: Path, stdout: str) -> None:
    """`compare.yaml finds the fix safer`, by about the canary's share (a third)."""
    readme_sentence(r"`compare.yaml` finds the fix safer")
    assert "**checkout-nginx** is the safest" in stdout
    import pandas as pd

    frame = pd.read_parquet(cwd / "compare-report" / "results.parquet")
    bad = frame[frame.release_class == "fails-5pct"].groupby("policy").excess_bad_requests.mean()
    assert 2 <= bad["as-shipped"] / bad["checkout-nginx"] <= 4.5  # 1/3 against 1/10 of traffic


def check_seed_practice_row(cwd: Path, stdout: str) -> None:
    """The shipped-scenarios row of seed-practice: ~2 minutes, ~360 bad requests, ~90x."""
    row = readme_sentence(
        r"`seed-practice` \| a 20 %-first canary catches a 5 % bug in ~(\d+) minutes with "
        r"~(\d+) bad requests; blue-green waits for the SLO alert and hurts ~(\d+)× more"
    )
    minutes, bad, times = (float(g) for g in row.groups())
    import pandas as pd

    frame = pd.read_parquet(cwd / "reports/seed-practice/results.parquet")
    fails = frame[frame.release_class == "fails-5pct"].groupby("policy")
    excess = fails.excess_bad_requests.mean()
    assert abs(fails.t_detect.mean()["canary-20-first"] / 60 - minutes) <= 0.5
    assert abs(excess["canary-20-first"] - bad) <= 0.05 * bad
    assert abs(excess["bluegreen"] / excess["canary-20-first"] - times) <= 0.05 * times
    detected = fails.detected_by.agg(lambda d: (d == "alert").mean())
    assert detected["bluegreen"] >= 0.5  # blue-green waits for the SLO alert


def check_explain_shipped(cwd: Path, stdout: str) -> None:
    """'no router: setWeight 10 = 1 pod of 3 = 33.3 %'."""
    step0 = next(line.split() for line in stdout.splitlines() if line.startswith("0 "))
    assert step0[-7:] == ["1", "/", "2", "33.3", "%", "(asked", "10", "%)"][-7:], step0


def check_explain_fixed(cwd: Path, stdout: str) -> None:
    """'behind nginx: setWeight 10 is 10 %'."""
    step0 = next(line.split() for line in stdout.splitlines() if line.startswith("0 "))
    assert step0[-2:] == ["10", "%"], step0


def check_sensitivity(cwd: Path, stdout: str) -> None:
    """'For the seed practice nothing flips within these ranges: the canary stays the safest and
    blue-green the fastest at every end, and the gap moves most with the traffic rate.'"""
    import pandas as pd

    readme_sentence(r"For the seed\s+practice nothing flips within these ranges")
    readme_sentence(r"the gap moves most with the traffic rate")
    table = pd.read_csv(cwd / "reports/seed-practice-sensitivity/sensitivity.csv")
    assert set(table.safest) == {"canary-20-first"} and set(table.fastest) == {"bluegreen"}
    ends = table[table.assumption != "base"].groupby("assumption").key_difference
    swing = ends.max() - ends.min()
    assert swing.idxmax() == "traffic", swing


def check_calibration(cwd: Path, stdout: str) -> None:
    """Whichever its verdict (VERDICT_CODES), the calibration wrote its report."""
    assert (cwd / "calibration" / "report.md").is_file(), stdout


def check_hold(cwd: Path, stdout: str) -> None:
    """The hold experiment wrote its records, its comparison and its offline replay."""
    report = (cwd / "hold" / "report.md").read_text()
    assert "| 20 %: canary error rate |" in report and "| live, last window lost |" in report
    assert sorted(p.name for p in (cwd / "hold" / "records").iterdir()) == [
        "live-20.json",
        "live-50.json",
    ], stdout
