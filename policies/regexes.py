"""User-supplied regexes, compiled as the executors compile them: RE2 (Istio, Envoy, and Go's
``regexp`` for Argo's dryRun metric names), linear in the text's length, so no pattern can hang
a run as a backtracking engine would. A leaf module: the policy models import it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

__all__ = ["MAX_REGEX_LENGTH", "MAX_REGEX_PROGRAM", "re2_compile"]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print the error to stderr: it is ours to report
_RE2_LACKS = ("perl operator", "escape sequence", "repetition operator")
"""RE2's reasons for constructs it lacks on purpose (lookarounds, backreferences, possessive
quantifiers: what makes a backtracking engine exponential), as opposed to plain syntax errors."""
MAX_REGEX_LENGTH = 1024
"""Istio's validation refuses a StringMatch regex longer than this (istio/istio#36143)."""
MAX_REGEX_PROGRAM = 32768
"""Envoy refuses (NACKs) a route whose RE2 program is larger: ``re2.max_program_size.error_level``
as Istio's bootstrap sets it (Envoy's own default is 100)."""


@lru_cache(maxsize=512)
def re2_compile(pattern: str) -> Any:
    """A match regex compiled as Istio and Envoy compile it (RE2): linear in the value's length,
    so ``^(a+)+$`` cannot hang a run as a backtracking engine would. A pattern RE2 refuses, or
    beyond Istio's and Envoy's size limits, is a one-line ``ValueError`` (pattern, reason cut)."""
    compiled = None
    try:
        if len(pattern) > MAX_REGEX_LENGTH:
            reason = f"{len(pattern)} characters, and Istio refuses more than {MAX_REGEX_LENGTH}"
        else:
            compiled = re2.compile(pattern, _RE2_OPTIONS)
            reason = f"RE2 program size {compiled.programsize} (Envoy: {MAX_REGEX_PROGRAM} at most)"
    except re2.error as exc:
        raw = exc.args[0] if exc.args else "invalid"
        reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except UnicodeEncodeError:
        reason = "not valid Unicode (a lone surrogate)"
    if compiled is not None and compiled.programsize <= MAX_REGEX_PROGRAM:
        return compiled
    reason = reason if len(reason) <= 60 else reason[:57] + "..."
    if any(kind in reason for kind in _RE2_LACKS):
        reason += " (RE2 has no backreferences, lookarounds or possessive quantifiers)"
    shown = repr(pattern) if len(pattern) <= 60 else repr(pattern[:57] + "...")
    raise ValueError(f"{shown} is not a regex Istio and Envoy take (RE2): {reason}")
