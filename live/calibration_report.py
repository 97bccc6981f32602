"""The calibration report: what a person reads, and the one-line summaries printed as it runs."""

from __future__ import annotations

import math
from types import SimpleNamespace

from live.case_tests import CaseTest, passes

__all__ = [
    "describe_coverage",
    "describe_live",
    "describe_prediction",
    "describe_test",
    "describe_tests",
    "markdown",
]


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def describe_prediction(p) -> str:
    out = ", ".join(f"{k} {v:.3f}" for k, v in p.outcome.items() if v)
    return (
        f"predicted {p.run} ({p.replications} replications, {p.wall_s:.1f} s): outcome {out}; "
        f"bad requests 95% [{_fmt(p.bad_requests[0])}, {_fmt(p.bad_requests[2])}]; "
        f"detection {_fmt(p.t_detect)} s (P {p.p_detect:.3f})"
    )


def describe_live(live, checks) -> str:
    marks = "; ".join(
        f"{c.quantity} {_fmt(c.measured)} {'in' if c.inside else 'OUTSIDE'} {_fmt(c.predicted)}"
        for c in checks
    )
    return f"live {live.run}#{live.repeat} ({live.wall_s:.1f} s): {live.outcome}; {marks}"


def describe_test(t: CaseTest) -> str:
    p = "—" if math.isnan(t.p_value) else f"{t.p_value:.3g}"
    return f"{t.run} {t.quantity}: live {t.live}, simulated {t.simulated} ({t.test} p = {p})"


def describe_tests(tests: list[CaseTest]) -> str:
    low = min(tests, key=lambda t: t.p_value)
    verdict = "no test rejects" if passes(tests) else "a test REJECTS"
    return (
        f"{len(tests)} per-case tests: {verdict} at 0.05 / {len(tests)} "
        f"(lowest p = {low.p_value:.3g}, {low.run} {low.quantity})"
    )


def describe_coverage(c: dict) -> str:
    return (
        f"inside the 95% intervals: {c['inside']}/{c['checks']} "
        f"(P(X <= {c['inside']}) = {c['p_value']:.3f} under Binomial({c['checks']}, 0.95))"
    )


def markdown(report: dict) -> str:
    """The report a person reads: predicted interval against measured value, per run."""
    name = report["scenario"]["name"]
    lines = [f"# Calibration: {name}", ""]
    lines += [
        "| run | quantity | predicted 95 % | measured | inside | rank |",
        "|---|---|---|---|---|---|",
    ]
    for c in report.get("checks", []):
        mark = "yes" if c["inside"] else "**no**"
        lines.append(
            f"| {c['run']}#{c['repeat']} | {c['quantity']} | {_fmt(c['predicted'])} "
            f"| {_fmt(c['measured'])} | {mark} | {_fmt(c.get('rank'))} |"
        )
    if "coverage" in report:
        lines += ["", describe_coverage(report["coverage"]), ""]
    if report.get("tests"):
        lines += [
            "## Per case: outcome and detection-time tests",
            "",
            "| run | quantity | live | simulated | test | p |",
            "|---|---|---|---|---|---|",
        ]
        for t in report["tests"]:
            lines.append(
                f"| {t['run']} | {t['quantity']} | {t['live']} | {t['simulated']} "
                f"| {t['test']} | {t['p_value']:.3g} |"
            )
        lines += ["", describe_tests([CaseTest(**t) for t in report["tests"]]), ""]
    lines += ["## Predictions", ""]
    for p in report["predictions"].values():
        lines.append(f"- {describe_prediction(SimpleNamespace(**p))}")
    if report.get("live_seed") is not None:
        lines += ["", f"Live seed: {report['live_seed']} (reproduce with `--seed`)."]
    return "\n".join(lines) + "\n"
