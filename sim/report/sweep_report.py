"""A sweep's own report: the answer across the cells, in the run report's house style (DESIGN §6).

``write_sweep_report`` writes report.html (self-contained, figures embedded), report.md and
figures/*.png into a sweep's folder, beside the sweep.csv and results.parquet that
sim/runs/sweep.py writes first (results before figures, as in a run). Top to bottom: the verdict
across the cells (sim/report/sweep_verdict.py), a table of the cells with the safest and fastest
policy in each and a link to each cell's own report (cells/<name>/report.html), a table per
metric, and the figures: each metric against the swept value with 95 % bands (one path), small
multiples and a map of the winner per cell (two paths); with more paths the tables are the
figures. A part that cannot be drawn says so in its place and is returned as a problem.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import quote

from policies.errors import one_line
from sim.report import sweep_figures
from sim.report.content import incomplete_notice
from sim.report.plotting import policy_colors
from sim.report.render import (
    Box,
    Bullets,
    Cell,
    Figure,
    Footer,
    Heading,
    Para,
    Table,
    md_escape,
    to_html,
    to_markdown,
)
from sim.report.sweep_facts import METRICS, CellFacts, SweepFacts, _log_axis, is_numeric, short_path
from sim.report.sweep_verdict import sweep_verdict, value_text
from sim.report.text import fmt_count, fmt_duration, fmt_pct
from sim.runs.files import atomic_write_bytes

__all__ = ["SWEEP_FILES", "build_sweep_blocks", "write_sweep_report"]

SWEEP_FILES = ("report.html", "report.md", "sweep.csv", "results.parquet")
"""What every sweep folder holds, besides figures/ and cells/."""
_FMT = {"count": fmt_count, "duration": fmt_duration, "share": fmt_pct}
_PANELS = 6
"""Most small multiples in one figure; a wider second path is left to the tables."""


def write_sweep_report(loaded, grid, swept, out_dir) -> list[tuple[str, str]]:
    """Write the sweep's report into ``out_dir``; return what could not be drawn
    (``[(what, why)]``, also said in the report). ``loaded``: the swept scenario; ``grid``:
    {path: values}; ``swept``: the cells (sim.runs.sweep.SweptCell) in grid order."""
    out = Path(out_dir)
    problems: list[tuple[str, str]] = []
    try:
        sf = SweepFacts.build(dict(grid), swept)
        blocks, figs = build_sweep_blocks(loaded, sf, problems)
    except Exception as exc:  # the results are written: say what is missing, keep the files
        problems.append(("sweep report", one_line(exc)))
        blocks = [
            Heading(f"Sweep report: {loaded.scenario.name}", 1),
            Para(
                f"**This report could not be built** ({one_line(exc)}). The numbers are in "
                "sweep.csv and results.parquet, each cell's report under cells/.",
                "problem",
            ),
        ]
        figs, sf = [], None
    (out / "figures").mkdir(parents=True, exist_ok=True)
    os.chmod(out / "figures", 0o755)
    for fig in figs:
        atomic_write_bytes(out / "figures" / f"{fig.name}.png", fig.png)
    names = [c.name for c in sf.cells] if sf is not None else []
    title = f"rolloutsim sweep: {loaded.scenario.name}"
    atomic_write_bytes(
        out / "report.md", _links(to_markdown(blocks), names, markdown=True).encode()
    )
    atomic_write_bytes(
        out / "report.html", _links(to_html(blocks, title), names, markdown=False).encode()
    )
    return problems


def _token(i: int) -> str:
    return f"@@cell-link-{i}@@"


def _links(text: str, names: list[str], *, markdown: bool) -> str:
    """Each cell's link where the cells table holds its token (the renderers escape all markup,
    so links go in after rendering; cell names are already safe folder names)."""
    for i, name in reversed(list(enumerate(names))):
        target = quote(f"cells/{name}/report.{'md' if markdown else 'html'}", safe="/=,.-_")
        if markdown:
            link = f"[{md_escape(name)}]({target})"
        else:
            link = f'<a href="{html.escape(target)}">{html.escape(name)}</a>'
        text = text.replace(_token(i), link)
    return text


def build_sweep_blocks(loaded, sf: SweepFacts, problems: list) -> tuple[list, list[Figure]]:
    """The report as blocks, and its figures in order; ``problems`` gets what was not drawn."""
    policies = list(dict.fromkeys(p for c in sf.cells for p in c.facts.policies))
    colors = policy_colors(policies)

    def guarded(what: str, build) -> list:
        try:
            return build()
        except Exception as exc:  # a section that fails says so; the rest is still written
            problems.append((what, one_line(exc)))
            return [Para(f"Not shown: the {what} could not be drawn ({one_line(exc)}).", "problem")]

    def verdict_box() -> list:
        paras, notes = sweep_verdict(sf)
        inner = [Heading("Verdict across the cells", 2, "verdict"), *(Para(p) for p in paras)]
        return [Box((*inner, *([Bullets(tuple(notes), "notes")] if notes else [])))]

    blocks: list = [Heading(f"Sweep report: {loaded.scenario.name}", 1)]
    blocks += guarded("introduction", lambda: [Para(_lede(loaded, sf, policies), "lede")])
    at_top = len(blocks)
    blocks += guarded("verdict", verdict_box)
    blocks.append(Heading("Cells"))
    blocks.append(
        Para(
            "The winner in each cell by the run report's rule: *safest*, fewest excess bad "
            "requests per bad release; *fastest*, shortest time to full rollout of a good "
            "release. The small print says whether it wins significantly (paired differences "
            "against every other policy, 95 %); each cell's own report has the evidence."
        )
    )
    blocks += guarded("cells table", lambda: [_cells_table(sf)])
    blocks.append(Heading("Blast radius and cost in each cell"))
    blocks.append(Para("Means with their 95 % confidence interval; the best mean in bold."))
    for metric, judged_on, title, kind in METRICS:
        blocks.append(Heading(title, 3))
        blocks += guarded(
            f"{title} table", lambda m=metric, j=judged_on, k=kind: [_metric_table(sf, m, j, k)]
        )
    figs: list[Figure] = []
    blocks.append(Heading("Figures"))
    for heading, build in _figure_sections(sf, colors):
        blocks.append(Heading(heading, 3))
        drawn = guarded(f"figure “{heading}”", build)
        figs += [b for b in drawn if isinstance(b, Figure)]
        blocks += drawn
    blocks.append(Footer(_footer(loaded, sf)))
    if problems:
        blocks.insert(at_top, incomplete_notice(problems, "sweep.csv and results.parquet"))
    return blocks, figs


def _lede(loaded, sf: SweepFacts, policies: list[str]) -> str:
    swept = "; ".join(f"{p} over {', '.join(value_text(v) for v in sf.axes[p])}" for p in sf.paths)
    reps = sf.cells[0].facts.frame.groupby("release_class").size() // max(1, len(policies))
    counts = {int(n) for n in reps}
    per = (
        f"{counts.pop():,}"
        if len(counts) == 1
        else ", ".join(f"{c} {int(n):,}" for c, n in reps.items())
    )
    seeds = sorted({c.seed for c in sf.cells})
    seed = f"seed {seeds[0]} in every cell" if len(seeds) == 1 else "seeds as each cell sets"
    return (
        f"Ran **{loaded.scenario.name}** on {len(sf.cells)} cells ({swept}), each a run of "
        f"{len(policies)} policies ({', '.join(policies)}) with {per} replications per release "
        f"class, {seed}."
    )


def _winner_cell(c: CellFacts, what: str) -> Cell:
    name = getattr(c, what)
    sure = bool(c.safe_clear if what == "safest" else c.fast_clear)
    sub = ["significant" if sure else "not significant"]
    if what == "safest" and not c.catches:
        sub.insert(0, "no policy catches most bad releases")
    return Cell(name, tuple(sub), strong=sure)


def _cells_table(sf: SweepFacts) -> Table:
    columns = [short_path(p) for p in sf.paths] + ["Safest", "Fastest", "Cell report"]
    rows: list = []
    for i, c in enumerate(sf.cells):
        values = [value_text(c.values[p]) for p in sf.paths]
        rows.append(
            [*values, _winner_cell(c, "safest"), _winner_cell(c, "fastest"), Cell(_token(i))]
        )
    return Table(columns, rows)


def _metric_table(sf: SweepFacts, metric: str, judged_on: str, kind: str) -> Table:
    fmt = _FMT[kind]
    policies = list(dict.fromkeys(p for c in sf.cells for p in c.facts.policies))
    rows: list = []
    for c in sf.cells:
        stats = {p: c.metric(p, metric, judged_on) for p in c.facts.policies}
        known = [m for m, _, _ in stats.values() if m == m]
        best = min(known) if known else None
        row: list = [value_text(c.values[p]) for p in sf.paths]
        for p in policies:
            if p not in stats:
                row.append(Cell("—"))
                continue
            mean, lo, hi = stats[p]
            sub = () if lo != lo else (f"{fmt(lo)} to {fmt(hi)}",)
            row.append(Cell(fmt(mean), sub, strong=mean == best and len(set(known)) > 1))
        rows.append(row)
    return Table([short_path(p) for p in sf.paths] + policies, rows)


# ---------------------------------------------------------------------------- figures


def _figure_sections(sf: SweepFacts, colors) -> list[tuple[str, Callable[[], list]]]:
    if len(sf.paths) == 1:
        return [("Each metric against the swept value", lambda: [_lines_figure(sf, colors)])]
    if len(sf.paths) == 2:
        out: list[tuple[str, Callable[[], list]]] = [
            ("The winner in each cell", lambda: [_map_figure(sf, colors)])
        ]
        for metric in METRICS:
            out.append((metric[2], partial(_multiples, sf, colors, *metric)))
        return out
    return [
        (
            "No figures",
            lambda: [
                Para(
                    f"With {len(sf.paths)} swept paths the tables above are the figures: "
                    "sweep.csv and results.parquet hold every number to plot your own."
                )
            ],
        )
    ]


def _x(values) -> tuple[tuple[float, ...], tuple[str, ...], bool]:
    ticks = tuple(value_text(v) for v in values)
    if is_numeric(values):
        return tuple(float(v) for v in values), ticks, _log_axis(values)
    return tuple(float(i) for i in range(len(values))), ticks, False


def _panel(
    sf: SweepFacts, colors, path: str, line: list[CellFacts], metric, judged_on, title, kind
):
    from sim.report.sweep_figures import Panel

    x, ticks, log = _x([c.values[path] for c in line])
    series = {}
    for p in colors:
        stats = [
            c.metric(p, metric, judged_on) if p in c.facts.policies else (float("nan"),) * 3
            for c in line
        ]
        series[p] = tuple(list(s) for s in zip(*stats))
    return Panel(title, x, ticks, path, series, kind, log)  # type: ignore[arg-type]


def _lines_figure(sf: SweepFacts, colors) -> Figure:
    path = sf.paths[0]
    ((_, line),) = sf.lines(path)
    panels = [_panel(sf, colors, path, line, m, j, t, k) for m, j, t, k in METRICS]
    title = (
        f"Blast radius and cost against {short_path(path)}: where the lines cross, the answer"
        " changes"
    )
    png = sweep_figures.against(panels, colors, title=title)
    caption = (
        "Per policy, the mean of each metric in each cell with its 95 % confidence band: blast "
        "radius per bad release (top), the cost on good releases (bottom). Cells share their "
        "random numbers, so the lines move only by what the swept value changes."
    )
    return Figure("sweep-metrics", title, caption, png)


def _multiples(sf: SweepFacts, colors, metric, judged_on, title, kind) -> list:
    x_path, by = _axes(sf)
    lines = sf.lines(x_path)
    if len(lines) > _PANELS:
        return [
            Para(
                f"Not drawn: {len(lines)} values of {short_path(by)} are more than "
                f"{_PANELS} panels; see the table above."
            )
        ]
    panels = []
    for fixed, line in lines:
        label = ", ".join(f"{short_path(p)} = {value_text(v)}" for p, v in fixed)
        panels.append(_panel(sf, colors, x_path, line, metric, judged_on, label, kind))
    fig_title = f"{title}, against {short_path(x_path)}, one panel per {short_path(by)}"
    png = sweep_figures.against(panels, colors, title=fig_title)
    caption = "Per policy, the mean in each cell with its 95 % confidence band."
    return [Figure(f"sweep-{metric.replace('_', '-')}", fig_title, caption, png)]


def _axes(sf: SweepFacts) -> tuple[str, str]:
    """(the path on the x axis, the path across panels): numbers and more values go on x."""
    a, b = sf.paths
    score = {p: (is_numeric(sf.axes[p]), len(sf.axes[p])) for p in (a, b)}
    return (a, b) if score[a] >= score[b] else (b, a)


def _map_figure(sf: SweepFacts, colors) -> Figure:
    rows_path, cols_path = sf.paths
    rows = [value_text(v) for v in sf.axes[rows_path]]
    cols = [value_text(v) for v in sf.axes[cols_path]]
    where = {
        (value_text(c.values[rows_path]), value_text(c.values[cols_path])): c for c in sf.cells
    }
    maps = []
    for what, name in (
        ("safest", "Safest (excess bad requests)"),
        ("fastest", "Fastest (good release)"),
    ):
        winners = [["" for _ in cols] for _ in rows]
        strong = [[False for _ in cols] for _ in rows]
        for r, rv in enumerate(rows):
            for k, cv in enumerate(cols):
                c = where.get((rv, cv))
                if c is None:
                    continue
                blank = what == "safest" and not c.catches
                winners[r][k] = "" if blank else getattr(c, what)
                strong[r][k] = bool(c.safe_clear if what == "safest" else c.fast_clear)
        maps.append((name, winners, strong))
    grid = f"{short_path(rows_path)} × {short_path(cols_path)}"
    title = f"The safest and the fastest policy in each cell of {grid}"
    png = sweep_figures.winner_map(
        rows,
        cols,
        maps,
        colors,
        title=title,
        ylabel=short_path(rows_path),
        xlabel=short_path(cols_path),
    )
    caption = (
        "Solid: the winner is significantly better than every other policy there (paired, "
        "95 %); hatched: it leads within the noise. Grey: no policy catches most bad releases."
    )
    return Figure("sweep-winners", title, caption, png)


def _footer(loaded, sf: SweepFacts) -> tuple[tuple[str, str], ...]:
    from sim.runs.provenance import package_version

    ours = package_version()
    path = getattr(loaded, "path", None)
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return (
        ("Scenario", loaded.scenario.name + (f" ({path})" if path else "")),
        (
            "Swept",
            "; ".join(f"{p}: {', '.join(value_text(v) for v in sf.axes[p])}" for p in sf.paths),
        ),
        ("Cells", f"{len(sf.cells)} (each with its report under cells/)"),
        ("Seeds", ", ".join(str(s) for s in sorted({c.seed for c in sf.cells}))),
        ("rolloutsim", ours),
        ("Written", created),
        ("Files", "sweep.csv (one row per cell and policy), results.parquet, figures/, cells/"),
    )
