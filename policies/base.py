"""The base of every declarative object: frozen, validated, camelCase in YAML, one-line errors.

A policy or scenario is data (STYLE "Scenario files are data"): it is read with a strict safe
YAML loader, validated once by pydantic against exact keys, and every failure becomes a
``PolicyError`` naming the field path (``steps[3].pause.duration``) and the rule broken.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from policies.errors import PolicyError

__all__ = [
    "FlowKey",
    "IntOrPercent",
    "Model",
    "dump_yaml",
    "find_flow_key",
    "format_path",
    "load_yaml",
    "read_yaml_file",
    "resolve_int_or_percent",
    "validate_model",
]

M = TypeVar("M", bound=BaseModel)


class Model(BaseModel):
    """Immutable, exact-keyed model whose YAML keys are the camelCase of its attributes."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=True,
    )

    def __repr_args__(self):  # readable repr: only what differs from the defaults
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            field = fields.get(name) if name else None
            if (
                field is not None
                and not field.is_required()
                and value == field.get_default(call_default_factory=True)
            ):
                continue
            yield name, value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with YAML key names, defaults left out (what a user would write)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


_PERCENT = re.compile(r"^\d+(\.\d+)?%$")


def _int_or_percent(value: int | str) -> int | str:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a pod count or percentage")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; must be >= 0")
        return value
    if _PERCENT.match(value):
        if float(value[:-1]) > 100:
            raise ValueError(f'"{value}" is above 100%')
        return value
    raise ValueError(f'"{value}" is neither a pod count nor a percentage like "25%"')


IntOrPercent = Annotated[int | str, AfterValidator(_int_or_percent)]
"""Kubernetes IntOrString as the executors use it: a pod count (3) or a percentage ("25%")."""


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """Pods from an IntOrPercent of ``total`` (Kubernetes ``GetScaledValueFromIntOrPercent``)."""
    if isinstance(value, int):
        return value
    scaled = float(value.rstrip("%")) * total / 100
    whole = int(scaled)
    return whole + (1 if round_up and scaled > whole else 0)


def format_path(loc: tuple[Any, ...]) -> str:
    """``('steps', 3, 'pause', 'duration')`` -> ``steps[3].pause.duration``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-"):  # pydantic's internal validator names
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


_RULES = {
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "too_short": "needs at least {min_length} item(s)",
    "literal_error": "must be one of {expected}",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "is required"
    if kind in _RULES:
        rule = _RULES[kind].format(**error.get("ctx", {}))
        value = error.get("input")
        shown = "" if isinstance(value, dict | list | tuple) else f"{value!r} "
        return f"{shown}{rule}".replace("'", '"') if kind == "literal_error" else f"{shown}{rule}"
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    value = error.get("input")
    if isinstance(value, dict | list):
        return msg
    return f"{value!r}: {msg}"


def validate_model(cls: type[M], data: Any, *, file: str | None = None, path: str = "") -> M:
    """Validate ``data`` as ``cls``; a failure is one ``PolicyError`` line (first of N errors)."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        locs = [tuple(e["loc"]) for e in errors]
        errors = [  # drop knock-on errors of a container whose item already failed
            e
            for e, loc in zip(errors, locs)
            if not any(other != loc and other[: len(loc)] == loc for other in locs)
        ]
        first = errors[0]
        loc = format_path(tuple(first["loc"]))
        full = ".".join(p for p in (path, loc) if p) if not loc.startswith("[") else path + loc
        message = _message(first)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise PolicyError(message, path=full, file=file) from None
    except PolicyError as exc:
        raise PolicyError(exc.message, path=exc.path or path, file=file) from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also refuses duplicate keys (YAML says keys are unique)."""


class FlowKey(str):
    """A mapping used as a mapping key, kept as its YAML text so that the document loads.

    An unquoted ``{{args.x}}`` (a Helm or Argo placeholder) is a flow mapping whose key is the
    mapping ``{args.x}``: JSON (and so the API server) has no such key, but a file may carry
    one in an object nobody uses. ``find_flow_key`` finds it where it is used.
    """


def _key(loader: _StrictLoader, key_node: yaml.Node, deep: bool) -> Any:
    key = loader.construct_object(key_node, deep=deep)
    try:
        hash(key)
    except TypeError:
        start, end = key_node.start_mark, key_node.end_mark
        buffer = getattr(start, "buffer", None)
        text = buffer[start.pointer : end.pointer] if buffer else repr(key)
        return FlowKey(text.rstrip("\x00"))
    return key


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # ``<<: *anchor`` merges keys that the mapping's own may override
        key = _key(loader, key_node, deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return {_key(loader, k, deep): loader.construct_object(v, deep=deep) for k, v in node.value}


def find_flow_key(node: Any, path: str = "") -> str | None:
    """The path of the first ``FlowKey`` in plain data (None: there is none)."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, FlowKey):
                return here
            found = find_flow_key(value, here)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = find_flow_key(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, *, file: str | None = None, multi: bool = False) -> Any:
    """Parse YAML safely; a syntax error or a Python tag becomes a one-line ``PolicyError``."""
    try:
        if multi:
            return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "could not determine a constructor" in str(problem) or "python/" in str(problem):
            tag = re.search(r"tag '([^']*)'", str(problem))
            problem = (
                f"tag {tag.group(1) if tag else ''} is not allowed: YAML here is plain data".strip()
            )
        raise PolicyError(f"invalid YAML: {problem}", path=where, file=file) from None


def read_yaml_file(path: str | Path, *, multi: bool = False) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is a ``PolicyError`` too."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read file: {exc.strerror}", file=str(path)) from None
    return load_yaml(text, file=str(path), multi=multi)


def dump_yaml(data: Any) -> str:
    """YAML text for plain data, keys in the order given (as a user would write them)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
