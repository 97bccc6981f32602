"""One error hierarchy for everything a user can get wrong, so the CLI can catch it in one place."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

__all__ = [
    "MAX_PROBLEMS",
    "NotExpressibleError",
    "PolicyError",
    "RolloutsimError",
    "belongs_under",
    "did_you_mean",
    "keys_at",
    "models_at",
    "one_line",
]


class RolloutsimError(Exception):
    """Base of every error rolloutsim raises on purpose (bad input, impossible request)."""


class PolicyError(RolloutsimError, ValueError):
    """Bad declarative input: names the file (if any), the field path and the rule broken.

    ``str(err)`` is one line per problem, e.g.
    ``policy.yaml: steps[3].pause.duration: "10x" is not a duration``; a file with several
    problems lists each (``more``), so one edit-and-rerun fixes them all, up to
    ``MAX_PROBLEMS`` lines (a hostile file may hold 50,000 of them).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        file: str | None = None,
        more: Sequence[PolicyError] = (),
    ) -> None:
        self.message = message
        self.path = path
        self.file = file
        self.more = tuple(p for m in more for p in m.problems)
        super().__init__(self.__str__())

    @classmethod
    def several(cls, errors: Sequence[PolicyError]) -> PolicyError:
        """One error listing every problem of ``errors`` (each keeps its own file and path)."""
        first, *rest = [p for e in errors for p in e.problems]
        return cls(first.message, path=first.path, file=first.file, more=rest)

    @property
    def problems(self) -> tuple[PolicyError, ...]:
        """Each problem as a one-line error, this one first."""
        first = self if not self.more else PolicyError(self.message, path=self.path, file=self.file)
        return (first, *self.more)

    def with_file(self, file: str) -> PolicyError:
        more = [m if m.file else m.with_file(file) for m in self.more]
        return PolicyError(self.message, path=self.path, file=file, more=more)

    def line(self) -> str:
        """The first problem's line: ``file: path: message``."""
        where = ": ".join(part for part in (self.file, _short(self.path)) if part)
        return _short(f"{where}: {self.message}" if where else self.message, MAX_LINE)

    def __str__(self) -> str:
        lines = [self.line(), *(m.line() for m in self.more[: MAX_PROBLEMS - 1])]
        hidden = len(self.more) - (MAX_PROBLEMS - 1)
        if hidden > 0:
            where = f"{self.file}: " if self.file else ""
            lines.append(f"{where}{hidden} more problems not listed (at most {MAX_PROBLEMS} are)")
        return "\n".join(lines)


MAX_LINE = 600
"""The longest error line: a message quoting a hostile input is cut, never echoed whole."""
MAX_PROBLEMS = 30
"""Problems one error lists, one line each; the rest are counted in a last line."""


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class NotExpressibleError(RolloutsimError):
    """A policy an executor cannot express: refused, never silently approximated."""

    def __init__(self, executor: str, field: str, reason: str) -> None:
        self.executor = executor
        self.field = field
        self.reason = reason
        super().__init__(f"{executor} cannot express {field}: {reason}")


def did_you_mean(key: str, valid: list[str] | None) -> str:
    """`` (did you mean X?)`` with the closest valid key (case ignored), or a short list of
    the valid keys when none is close, or nothing."""
    if valid is None:
        return ""
    lowered = {k.lower(): k for k in valid}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {lowered[close[0]]}?)"
    if not valid:
        return " (this mapping takes no keys)"
    return f" (valid here: {', '.join(valid)})" if len(valid) <= 8 else ""


def belongs_under(key: str, models: list[Any]) -> str:
    """`` (it goes under rate: {diurnal: ...})`` when ``key`` is a key one level down, under
    one of the models' own keys (read from their JSON Schema, hand-parsed forms included)."""
    for model in models:
        try:
            schema = model.model_json_schema(by_alias=True)
        except RuntimeError:  # pydantic: a field with no JSON Schema
            continue
        defs = schema.get("$defs", {})
        for name, prop in schema.get("properties", {}).items():
            if key in _schema_keys(prop, defs):
                return f" (it goes under {name}: write {name}: {{{key}: ...}})"
    return ""


def _schema_keys(node: Any, defs: dict[str, Any], depth: int = 0) -> set[str]:
    """The property names an object of this schema (or any of its alternatives) takes."""
    if not isinstance(node, dict) or depth > 4:
        return set()
    if "$ref" in node:
        return _schema_keys(defs.get(node["$ref"].rsplit("/", 1)[-1]), defs, depth + 1)
    keys = set(node.get("properties", {}))
    for alternative in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(alternative, ()):
            keys |= _schema_keys(sub, defs, depth + 1)
    return keys


def keys_at(cls: Any, loc: tuple[Any, ...]) -> list[str] | None:
    """The YAML keys a model accepts at ``loc`` (an error's location, pydantic's union member
    tags included): what an unknown key there could have meant."""
    models = models_at(cls, loc)
    if not models:
        return None  # a form read by hand (a distribution, a rate): its parser names keys
    return sorted({f.alias or name for m in models for name, f in m.model_fields.items()})


def models_at(cls: Any, loc: tuple[Any, ...]) -> list[Any]:
    """The model classes a value at ``loc`` may be (pydantic's union member tags followed)."""
    types = [cls]
    for part in loc:
        if not (isinstance(part, str) and part.startswith("function-")):
            types = [t for each in types for t in _step(each, part)]
    return [m for each in types for m in _members(each) if _is_model(m)]


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and hasattr(t, "model_fields")  # a pydantic model


def _members(t: Any) -> list[Any]:
    """A type's alternatives: a union's members (nested, Annotated unwrapped), else itself."""
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    if get_origin(t) in (Union, UnionType):
        return [m for arg in get_args(t) for m in _members(arg)]
    return [t]


def _tags(t: Any) -> set[str]:
    """What pydantic calls a union member in an error's location."""
    default = getattr(t, "model_fields", {}).get("kind")
    return {getattr(t, "__name__", str(t)), str(getattr(default, "default", ""))}


def _step(t: Any, part: Any) -> list[Any]:
    """The types found one location part below ``t``."""
    members = _members(t)
    if isinstance(part, str) and len(members) > 1:
        tagged = [m for m in members if part in _tags(m)]
        if tagged:
            return tagged
    out: list[Any] = []
    for m in members:
        origin, args = get_origin(m), get_args(m)
        if _is_model(m):
            out += [f.annotation for n, f in m.model_fields.items() if part in (n, f.alias)]
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int) and args:
            fixed = origin is tuple and args[-1] is not Ellipsis
            out.append(args[part] if fixed and part < len(args) else args[0])
        elif origin is dict and len(args) == 2:
            out.append(args[1])
    return out


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line: how a failure is recorded beside the results."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
