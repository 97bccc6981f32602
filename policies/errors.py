"""One error hierarchy for everything a user can get wrong, so the CLI can catch it in one place."""

from __future__ import annotations

__all__ = ["NotExpressibleError", "PolicyError", "RolloutsimError", "one_line"]


class RolloutsimError(Exception):
    """Base of every error rolloutsim raises on purpose (bad input, impossible request)."""


class PolicyError(RolloutsimError, ValueError):
    """Bad declarative input: names the file (if any), the field path and the rule broken.

    ``str(err)`` is one line, e.g.
    ``policy.yaml: steps[3].pause.duration: "10x" is not a duration``.
    """

    def __init__(self, message: str, *, path: str = "", file: str | None = None) -> None:
        self.message = message
        self.path = path
        self.file = file
        super().__init__(self.__str__())

    def with_file(self, file: str) -> PolicyError:
        return PolicyError(self.message, path=self.path, file=file)

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, _short(self.path)) if part)
        return _short(f"{where}: {self.message}" if where else self.message, MAX_LINE)


MAX_LINE = 600
"""The longest error line: a message quoting a hostile input is cut, never echoed whole."""


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class NotExpressibleError(RolloutsimError):
    """A policy an executor cannot express: refused, never silently approximated."""

    def __init__(self, executor: str, field: str, reason: str) -> None:
        self.executor = executor
        self.field = field
        self.reason = reason
        super().__init__(f"{executor} cannot express {field}: {reason}")


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line: how a failure is recorded beside the results."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
