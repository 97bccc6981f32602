"""The team's files as ``export --onto`` edits them: read, split into documents, written back.

Each file is split at its ``---`` lines into chunks, each read by ruamel.yaml in round-trip mode
(comments, key order, quoting and flow style kept). Only a chunk whose document was edited is
written again, with the indentation the chunk itself uses, so every other byte of the file
stays as it was; documents added go at the end of the file.
"""

from __future__ import annotations

import difflib
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from policies.base import read_text_file
from policies.errors import PolicyError
from policies.importers import is_path

__all__ = ["Chunk", "File", "documents", "name_of", "read", "render", "sources", "yaml_rt"]

_SEP = re.compile(r"^---(?=[ \t]|$)", re.M)


@dataclass
class Chunk:
    head: str  # the ``---`` line that opens it, if any
    body: str
    doc: Any = None
    dirty: bool = False
    removed: bool = False


@dataclass
class File:
    name: str
    text: str
    chunks: list[Chunk]
    added: list[dict] = field(default_factory=list)


def yaml_rt() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a long query
    y.brace_single_entry_mapping_in_flow_sequence = True  # [{name: x}] stays, not [name: x]
    return y


def sources(manifests: Any) -> list[tuple[str, str, Any]]:
    """(name, text, what import_manifests is given) per file; texts are named manifest-N."""
    items = list(manifests) if isinstance(manifests, list | tuple) else [manifests]
    out: list[tuple[str, str, Any]] = []
    for i, item in enumerate(items):
        if is_path(item):
            path = Path(item)
            out.append((str(path), read_text_file(path), path))  # bounded, UTF-8, regular
        else:
            out.append((f"manifest-{i + 1}.yaml", str(item), str(item)))
    return out


def read(name: str, text: str) -> File:
    starts = [m.start() for m in _SEP.finditer(text)]
    bounds = [0, *starts] if not starts or starts[0] != 0 else starts
    chunks = []
    for a, b in zip(bounds, [*bounds[1:], len(text)], strict=True):
        part = text[a:b]
        head = ""
        if _SEP.match(part):
            line_end = part.find("\n")
            head, part = (
                (part, "") if line_end < 0 else (part[: line_end + 1], part[line_end + 1 :])
            )
        try:
            doc = yaml_rt().load(part)
        except (YAMLError, ValueError, TypeError) as exc:  # whatever it is: one line
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise PolicyError(f"invalid YAML: {problem}", file=name) from None
        chunks.append(Chunk(head, part, doc))
    return File(name, text, chunks)


def documents(files: list[File]) -> Iterator[tuple[File, Chunk, Any]]:
    """(file, chunk, document) for every object, List items included."""
    for f in files:
        for c in f.chunks:
            if isinstance(c.doc, dict) and c.doc.get("kind") == "List":
                for item in c.doc.get("items") or []:
                    yield f, c, item
            elif isinstance(c.doc, dict):
                yield f, c, c.doc


def name_of(doc: dict) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def _indents(text: str) -> tuple[int, int]:
    """(mapping indent, sequence dash offset) the document is written with."""
    mapping, offset = 0, None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for prev, line in itertools.pairwise(lines):
        if not prev.rstrip().endswith(":"):
            continue
        step = (len(line) - len(line.lstrip())) - (len(prev) - len(prev.lstrip()))
        if line.lstrip().startswith("- "):
            offset = step if offset is None and step >= 0 else offset
        elif step > 0 and not mapping:
            mapping = step
    return mapping or 2, offset or 0


def _dump(doc: Any, like: str) -> str:
    mapping, offset = _indents(like)
    y = yaml_rt()
    y.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _restore(old: str, new: str) -> str:
    """``new`` with the lines ruamel only re-indented given back as ``old`` had them.

    ruamel writes one indentation for the whole document; a team's file may mix two (``-``
    flush under one key, indented under another). Lines equal but for indentation are taken
    from the original, changed lines between them shifted alike; kept only if the result
    reads as exactly ``new`` does."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out += a[i1:i2]
            continue
        shift = 0
        inner = difflib.SequenceMatcher(
            a=[x.strip() for x in a[i1:i2]], b=[y.strip() for y in b[j1:j2]], autojunk=False
        )
        for op2, k1, k2, m1, m2 in inner.get_opcodes():
            if op2 == "equal":
                out += a[i1 + k1 : i1 + k2]
                shift = _indent(a[i1 + k2 - 1]) - _indent(b[j1 + m2 - 1])
            else:
                out += [
                    " " * max(0, _indent(y) + shift) + y.lstrip(" ") if y.strip() else y
                    for y in b[j1 + m1 : j1 + m2]
                ]
    text = "".join(out)
    try:
        same = yaml.safe_load(text) == yaml.safe_load(new)
    except (yaml.YAMLError, TypeError, ValueError):  # e.g. a flow mapping as a key
        same = False
    return text if same else new


def render(f: File) -> str:
    if not f.added and not any(c.dirty or c.removed for c in f.chunks):
        return f.text
    parts: list[str] = []
    for c in f.chunks:
        if c.removed:  # a file's opening comments are the file's, not the document's
            if not c.head and not parts:
                lines = c.body.splitlines(keepends=True)
                parts += itertools.takewhile(lambda ln: ln.startswith("#") or not ln.strip(), lines)
            continue
        body = c.body
        if c.dirty:  # the blank lines before the next ``---`` are the file's, not the key's
            tail = c.body[len(c.body.rstrip()) :]
            body = _restore(c.body, _dump(c.doc, c.body)).rstrip() + tail
        parts.append(c.head + body)
    text = "".join(parts)
    like = next((c.body for c in f.chunks if c.doc is not None), "")
    for doc in f.added:
        text += ("" if not text or text.endswith("\n") else "\n") + "---\n" + _dump(doc, like)
    return text
