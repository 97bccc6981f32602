"""One report, two renderings: self-contained HTML and Markdown from the same blocks.

The report's content is a list of small blocks (headings, paragraphs, tables, figures); both
renderers walk the same list, so report.html and report.md cannot drift apart. The HTML embeds
its figures as base64 PNG and its CSS inline: it makes no request, works offline and survives
being mailed around. Text may carry ``**bold**`` (policy names) and ``*italic*``; nothing else
is markup: both renderers escape everything else, so a name is shown as written, never run
(``<script>``) or read as structure (a newline and ``#`` in Markdown).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

__all__ = [
    "Box",
    "Bullets",
    "Cell",
    "Figure",
    "Footer",
    "Group",
    "Heading",
    "Para",
    "Table",
    "md_escape",
    "to_html",
    "to_markdown",
]


@dataclass(frozen=True)
class Cell:
    """A table value with optional small print under it (an interval, a rate)."""

    text: str
    sub: tuple[str, ...] = ()
    strong: bool = False


@dataclass(frozen=True)
class Group:
    """A full-width row that heads the rows below it (e.g. one release class)."""

    label: str


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell | str] | Group]
    note: str = ""


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    text: str
    cls: str = ""


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    cls: str = ""


@dataclass(frozen=True)
class Figure:
    name: str  # file name under figures/, without .png
    title: str
    caption: str
    png: bytes = field(repr=False)


@dataclass(frozen=True)
class Box:
    """Blocks set apart (the verdict): a tinted box in HTML, a quote in Markdown."""

    blocks: tuple
    cls: str = "verdict"


@dataclass(frozen=True)
class Footer:
    items: tuple[tuple[str, str], ...]


CSS = """
:root { color-scheme: light; }
*, *::before, *::after { box-sizing: border-box; }
body { margin: 0; background: #fff; color: #1d1d1f;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1060px; margin: 0 auto; padding: 28px 28px 12px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.08em; margin: 22px 0 6px; }
p { margin: 8px 0; }
.lede { color: #444; margin-bottom: 18px; }
.verdict { border-left: 5px solid #0072B2; background: #f2f7fb; padding: 12px 18px;
  margin: 14px 0 8px; border-radius: 0 6px 6px 0; }
.verdict p { font-size: 1.07em; margin: 6px 0; }
.verdict h2 { margin-top: 0; border-bottom: none; }
.notes { color: #6b4e00; font-size: 0.95em; }
.problem { color: #8a1c1c; background: #fdf2f2; border-left: 4px solid #c00000;
  padding: 6px 12px; border-radius: 0 4px 4px 0; }
ul { padding-left: 1.3em; margin: 6px 0; }
li { margin: 4px 0; }
.scroll { overflow-x: auto; margin: 8px 0 4px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; width: 100%;
  font-size: 0.93em; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e6e6e6; vertical-align: top; }
thead th { text-align: right; font-weight: 600; border-bottom: 2px solid #bbb;
  background: #fafafa; }
thead th:first-child, td:first-child { text-align: left; }
td { text-align: right; white-space: nowrap; }
td:first-child { font-weight: 600; }
tr.group th { text-align: left; background: #f0f3f6; font-weight: 600; color: #333;
  padding-top: 8px; }
.sub { display: block; color: #6a6a6a; font-size: 0.84em; line-height: 1.3; }
td.strong .v { font-weight: 700; }
.note { color: #555; font-size: 0.9em; margin: 4px 0 0; }
figure { margin: 26px 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee;
  border-radius: 4px; }
figcaption { color: #555; font-size: 0.92em; margin-top: 6px; }
footer { max-width: 1060px; margin: 24px auto 30px; padding: 12px 28px 0; color: #555;
  font-size: 0.86em; border-top: 1px solid #ddd; }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
footer dt { font-weight: 600; }
footer dd { margin: 0; word-break: break-all; }
"""

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)([^*]+?)(?<!\s)\*(?![*\w])")


def _inline(text: str) -> str:
    """Escape, then ``**bold**`` and ``*italic*``: the only markup text may carry."""
    out = _BOLD.sub(r"<strong>\1</strong>", html.escape(text, quote=False))
    return _ITALIC.sub(r"<em>\1</em>", out)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _html_cell(c: Cell | str) -> str:
    if not isinstance(c, Cell):
        c = Cell(str(c))
    cls = ' class="strong"' if c.strong else ""
    sub = "".join(f'<span class="sub">{_inline(s)}</span>' for s in c.sub)
    return f'<td{cls}><span class="v">{_inline(c.text)}</span>{sub}</td>'


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{_inline(c)}</th>" for c in t.columns)
    body = []
    for row in t.rows:
        if isinstance(row, Group):
            body.append(
                f'<tr class="group"><th colspan="{len(t.columns)}">{_inline(row.label)}</th></tr>'
            )
        else:
            body.append("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>")
    note = f'<p class="note">{_inline(t.note)}</p>' if t.note else ""
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def _html_blocks(blocks, foot: list[str]) -> list[str]:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            if b.level == 1:
                out.append(f"<h1>{_inline(b.text)}</h1>")
            else:
                aid = b.anchor or _anchor(b.text)
                out.append(f'<h{b.level} id="{aid}">{_inline(b.text)}</h{b.level}>')
        elif isinstance(b, Para):
            cls = f' class="{b.cls}"' if b.cls else ""
            out.append(f"<p{cls}>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            cls = f' class="{b.cls}"' if b.cls else ""
            items = "".join(f"<li>{_inline(i)}</li>" for i in b.items)
            out.append(f"<ul{cls}>{items}</ul>")
        elif isinstance(b, Table):
            out.append(_html_table(b))
        elif isinstance(b, Figure):
            data = base64.b64encode(b.png).decode("ascii")
            out.append(
                f'<figure id="fig-{b.name}"><img src="data:image/png;base64,{data}" '
                f'alt="{html.escape(b.title)}">'
                f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
            )
        elif isinstance(b, Box):
            inner = "\n".join(_html_blocks(b.blocks, foot))
            out.append(f'<section class="{b.cls}">{inner}</section>')
        elif isinstance(b, Footer):
            rows = "".join(
                f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in b.items
            )
            foot.append(f"<footer><dl>{rows}</dl></footer>")
    return out


def to_html(blocks, title: str) -> str:
    """A complete, self-contained HTML page (no external resource of any kind)."""
    foot: list[str] = []
    body = "\n".join(_html_blocks(blocks, foot))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body><main>\n{body}\n</main>\n{''.join(foot)}\n</body></html>\n"
    )


_MARKUP = re.compile(rf"{_BOLD.pattern}|{_ITALIC.pattern}")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>~|&])")
_MD_BLOCK_START = re.compile(r"^(?:[#>+=-]|\d+[.)])")


def _literal(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _line(text: str) -> str:
    """Escape what would start a heading, quote, list or rule at the start of a line."""
    return _MD_BLOCK_START.sub(lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1], text, count=1)


def md_escape(text: str) -> str:
    """``text`` as literal Markdown: one line (a newline in a name cannot start a heading), and
    every character Markdown or HTML would read as markup backslash-escaped (``<script>``,
    ``<img onerror>``, links, code, emphasis, a leading ``#``, ``>``, ``-`` or ``1.``)."""
    return _line(_literal(" ".join(text.splitlines())))


def _md_text(text: str) -> str:
    """Report text in Markdown: ``**bold**`` and ``*italic*`` kept, everything else literal."""
    out, pos = [], 0
    text = " ".join(text.splitlines())
    for m in _MARKUP.finditer(text):
        bold = m.group(1) is not None
        mark = "**" if bold else "*"
        out += [_literal(text[pos : m.start()]), mark, _literal(m.group(1 if bold else 2)), mark]
        pos = m.end()
    out.append(_literal(text[pos:]))
    return _line("".join(out))


def _md_cell(c: Cell | str) -> str:
    if not isinstance(c, Cell):
        return _md_text(str(c))
    text = f"**{_md_text(c.text)}**" if c.strong else _md_text(c.text)
    if c.sub:
        text += " (" + "; ".join(_md_text(s) for s in c.sub) + ")"
    return text


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(_md_text(c) for c in t.columns) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(t.columns) - 1)) + "|")
    for row in t.rows:
        if isinstance(row, Group):
            lines.append(f"| **{_md_text(row.label)}** |" + " |" * (len(t.columns) - 1))
        else:
            lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    if t.note:
        lines += ["", f"_{_md_text(t.note)}_"]
    return "\n".join(lines)


def to_markdown(blocks, figure_dir: str = "figures") -> str:
    """The same report in Markdown; figures are linked PNG files under ``figure_dir``."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + _md_text(b.text))
        elif isinstance(b, Para):
            out.append(_md_text(b.text))
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {_md_text(i)}" for i in b.items))
        elif isinstance(b, Table):
            out.append(_md_table(b))
        elif isinstance(b, Figure):
            link = f"![{md_escape(b.title)}]({figure_dir}/{b.name}.png)"
            out.append(f"{link}\n\n_{_md_text(b.caption)}_")
        elif isinstance(b, Box):
            inner = to_markdown(b.blocks, figure_dir).rstrip("\n")
            out.append("\n".join(("> " + line).rstrip() for line in inner.split("\n")))
        elif isinstance(b, Footer):
            rows = (f"- **{_md_text(k)}**: {_md_text(v)}" for k, v in b.items)
            out.append("---\n\n" + "\n".join(rows))
    return "\n\n".join(out) + "\n"
