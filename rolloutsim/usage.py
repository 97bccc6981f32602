"""The command line's usage error: a bad flag value, reported as one line with exit 2."""

from __future__ import annotations

__all__ = ["UsageError", "usage"]


class UsageError(Exception):
    """A flag or argument the command cannot take (``main`` prints it and exits 2)."""


def usage(message: str) -> UsageError:
    return UsageError(message)
