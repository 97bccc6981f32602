"""Issue #13, leaks: report.md and report.html show names as written and never run or structure
them, figures render names as text (not mathtext), tune.md escapes names too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sim.report.plotting import draw_png
from sim.report.render import Bullets, Cell, Footer, Heading, Para, Table, md_escape, to_markdown
from sim.runs.options import RunOptions
from sim.runs.scenario import load_scenario
from sim.runs.sweep import run_scenario

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "scenarios" / "policies"
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "ok\n# Injected heading",
    "[click](javascript:alert(1))",
    "`code` and | pipe",
    "$\\frac{1$ {x}_y $x^2$",
]


def _raw_html(markdown: str) -> list[str]:
    """Unescaped HTML tags a Markdown renderer would pass through (a ``<`` not after ``\\``)."""
    return re.findall(r"(?<!\\)<[a-zA-Z/!]", markdown)


@pytest.mark.parametrize("name", HOSTILE)
def test_md_escape_leaves_no_markup(name: str) -> None:
    text = md_escape(name)
    assert "\n" not in text and not _raw_html(text)
    assert not re.search(r"(?<!\\)[`\[\]]", text)
    assert re.sub(r"\\(.)", r"\1", text) == " ".join(name.splitlines())  # nothing lost


def test_markdown_keeps_our_bold_and_escapes_the_rest() -> None:
    name = HOSTILE[0]
    blocks = [
        Heading(f"Release policy report: {HOSTILE[2]}", 1),
        Para(f"**{name}** is the *pick*; **{HOSTILE[1]}** is not"),
        Para("# not a heading"),
        Bullets(("1. not a list", HOSTILE[2])),
        Table(["policy", "x"], [[Cell(HOSTILE[4], strong=True), HOSTILE[3]]]),
        Footer((("scenario", HOSTILE[2]),)),
    ]
    md = to_markdown(blocks)
    assert not _raw_html(md)
    headings = [line for line in md.splitlines() if line.startswith("#")]
    # the newline did not inject a heading: its "#" is mid-line, where it is only a character
    assert headings == ["# Release policy report: ok # Injected heading"]
    assert "**\\<script\\>alert(1)\\</script\\>** is the *pick*" in md
    assert "\\# not a heading" in md and "- 1\\. not a list" in md
    table_row = next(line for line in md.splitlines() if line.startswith("| **"))
    assert table_row.count(" | ") == 1  # the pipe in the name did not add a column


def test_figure_text_is_not_mathtext() -> None:
    """``$\\frac{1$`` is a mathtext syntax error: drawn as text, it is just characters."""

    def draw(fig) -> None:
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], label=HOSTILE[5])
        ax.set_title(HOSTILE[5])
        ax.annotate(HOSTILE[5], (0.5, 0.5))
        ax.legend()

    assert draw_png((4, 3), draw).startswith(b"\x89PNG")


def _hostile_scenario(folder: Path) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "seed-practice.yaml").read_text())
    data["world"]["horizon"] = "1h"
    data["description"] = "line one\n# Injected <script>alert(1)</script>\n"
    data["policies"] = [
        {"file": str(POLICIES / "canary-20-first.yaml"), "name": HOSTILE[0]},
        {"file": str(POLICIES / "bluegreen.yaml"), "name": HOSTILE[5]},
    ]
    path = folder / "hostile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_report_of_hostile_names_is_drawn_whole_and_escaped(tmp_path: Path) -> None:
    loaded = load_scenario(_hostile_scenario(tmp_path))
    out = tmp_path / "report"
    run_scenario(loaded, RunOptions(replications=2, backend="inprocess"), out, traces=[])
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert not _raw_html(md)
    assert [line for line in md.splitlines() if "Injected" in line and line.startswith("#")] == []
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Could not" not in md and "incomplete" not in md  # every figure drew the $ name
    assert len(list((out / "figures").glob("*.png"))) >= 3
