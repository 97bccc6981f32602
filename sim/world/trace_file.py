"""Reading a recorded trace's per-minute counts from a CSV file the scenario names: a file that
may be anything, so its errors name the file, line and rule and never what it holds."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from policies.base import read_text_file
from policies.errors import PolicyError

__all__ = ["MAX_TRACE_BYTES", "read_trace"]

MAX_TRACE_BYTES = 16 * 1024 * 1024
"""A trace file is read up to this size (16 MiB: a year of per-minute counts fits)."""
_COUNT = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)


def read_trace(path: Path, column: str) -> tuple[float, ...]:
    """Per-minute counts from ``column`` of a CSV file with a header row.

    The file may be anything a scenario names (``/etc/passwd`` included), so its errors name
    the file, line and rule and never show what the file holds; only a regular UTF-8 file
    (``read_text_file``) is read, and a count is plain ASCII digits (``float()`` would read
    "nan", "1_000" and "１２").
    """
    where = f"trace file {str(path)!r}"
    try:
        text = read_text_file(path, limit=MAX_TRACE_BYTES)
    except PolicyError as exc:  # names the file and rule, never its bytes
        if exc.message.startswith("cannot read file"):
            raise ValueError(f"cannot read {where}{exc.message[16:]}") from None
        line = f" {exc.path}" if exc.path else ""
        raise ValueError(f"{where}{line}: {exc.message}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    counts: list[float] = []
    try:
        header = [name.strip() for name in next(reader, [])]
        if column not in header:
            raise ValueError(f"{where} has no column {column!r} (its header has {len(header)})")
        index = header.index(column)
        for row in reader:
            if not row:
                continue  # a blank line, as csv.DictReader skips it
            value = row[index].strip() if index < len(row) else ""
            if not _COUNT.fullmatch(value):
                raise ValueError(
                    f"{where} line {reader.line_num}: {column} is not a number (value not shown)"
                )
            counts.append(float(value))
    except csv.Error as exc:
        raise ValueError(f"{where} line {reader.line_num}: not CSV ({exc})") from None
    if not counts:
        raise ValueError(f"{where} has no rows")
    return tuple(counts)
