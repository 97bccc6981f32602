"""The base of every declarative object: frozen, validated, camelCase in YAML, one-line errors.

A policy or scenario is data (STYLE "Scenario files are data"): it is read with a strict safe
YAML loader, validated once by pydantic against exact keys, and every failure becomes a
``PolicyError`` naming the field path (``steps[3].pause.duration``) and the rule broken.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from policies.errors import PolicyError, belongs_under, did_you_mean, keys_at, models_at

__all__ = [
    "FlowKey",
    "IntOrPercent",
    "Model",
    "brief",
    "decode_utf8",
    "dump_yaml",
    "find_flow_key",
    "format_path",
    "load_yaml",
    "read_text_file",
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


MAX_MESSAGE = 400
"""Characters of an error's message: a value it quotes may be a 50,000-node alias expansion."""


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: what an error may quote of an input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def _cut(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def _message(error: ErrorDetails, cls: type[BaseModel] | None = None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        loc = tuple(error["loc"])
        return "unknown key" + (_suggest(cls, loc) if cls else "")
    if kind == "missing":
        return "is required"
    if kind in _RULES:
        rule = _RULES[kind].format(**error.get("ctx", {}))
        value = error.get("input")
        shown = "" if isinstance(value, dict | list | tuple) else f"{brief(value)} "
        return f"{shown}{rule}".replace("'", '"') if kind == "literal_error" else f"{shown}{rule}"
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    value = error.get("input")
    if isinstance(value, dict | list):
        return msg
    return f"{brief(value)}: {msg}"


def _suggest(cls: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """What an unknown key at ``loc`` could have meant: a near key there, or the key it goes
    under (``traffic: {diurnal: ...}`` is ``traffic: {rate: {diurnal: ...}}``)."""
    key, valid = str(loc[-1]), keys_at(cls, loc[:-1])
    hint = did_you_mean(key, valid)
    if valid and "did you mean" not in hint:
        hint = belongs_under(key, models_at(cls, loc[:-1])) or hint
    return hint


def validate_model(cls: type[M], data: Any, *, file: str | None = None, path: str = "") -> M:
    """Validate ``data`` as ``cls``; a failure is one ``PolicyError`` listing every problem,
    one line each, an unknown key with the closest valid one."""
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
        problems = []
        for error in errors:
            loc = format_path(tuple(error["loc"]))
            full = ".".join(p for p in (path, loc) if p) if not loc.startswith("[") else path + loc
            problems.append(PolicyError(_cut(_message(error, cls)), path=full, file=file))
        raise PolicyError.several(problems) from None
    except PolicyError as exc:
        more = [m if m.file else m.with_file(file) for m in exc.more] if file else exc.more
        raise PolicyError(_cut(exc.message), path=exc.path or path, file=file, more=more) from None


MAX_FILE_BYTES = 1024 * 1024
"""A scenario, policy or manifest file is read only up to this size (1 MiB: about a second
of parsing for the pure-Python parser)."""
MAX_DEPTH = 100
"""Deepest nesting of sequences and mappings in a YAML document."""
MAX_NODES = 50_000
"""Nodes one YAML text may hold, aliases counted as if expanded (a billion-laughs bound; the
pure-Python parser builds about 30,000 nodes a second: this also bounds the time)."""
MAX_INT_DIGITS = 40
"""Digits of a YAML integer (a 128-bit seed has 39)."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also refuses duplicate keys (YAML says keys are unique) and
    bounds the work a text can ask for: nesting depth, nodes, alias expansion, integer size.

    Nodes are counted as the composer builds them: each node counts one, each alias the size
    of what it stands for (already known, as the anchored node was built first), so a
    billion-laughs text is refused after a handful of aliases, before anything is expanded.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._count = 0  # nodes of this text so far, aliases counted expanded
        self._sizes: dict[int, int] = {}  # id(node) -> its expanded size, once complete

    def _counted(self, size: int, mark: Any, what: str) -> None:
        self._count += size
        if self._count > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"{what} more than {MAX_NODES:,} nodes (the limit)", mark
            )

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                size = self._sizes.get(id(target))
                if size is None:
                    raise yaml.composer.ComposerError(
                        None, None, f"alias *{event.anchor} refers to itself", event.start_mark
                    )
                what = f"alias *{event.anchor} expands the text to"
                self._counted(size, event.start_mark, what)
            return super().compose_node(parent, index)
        self._depth += 1
        mark = self.peek_event().start_mark
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nesting deeper than {MAX_DEPTH} levels (the limit)", mark
            )
        before = self._count
        self._counted(1, mark, "the text holds")
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._count - before
        return node

    def compose_document(self) -> Any:
        node = super().compose_document()
        self._sizes.clear()  # anchors do not outlive their document
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value).replace("_", "").lstrip("+-")
        digits = len(text.removeprefix("0x").removeprefix("0b"))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"an integer of {digits} digits (at most {MAX_INT_DIGITS})",
                node.start_mark,
            )
        return super().construct_yaml_int(node)


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
                None, None, f"duplicate key {brief(key)}", key_node.start_mark
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
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def load_yaml(text: str, *, file: str | None = None, multi: bool = False) -> Any:
    """Parse YAML safely; a syntax error, a Python tag or a bound exceeded (size, depth, alias
    expansion, integer digits) becomes a one-line ``PolicyError``."""
    if len(text) > MAX_FILE_BYTES:
        raise PolicyError(f"YAML text longer than {_MIB} (the limit)", file=file)
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
        raise PolicyError(_cut(f"invalid YAML: {problem}"), path=where, file=file) from None


_MIB = f"{MAX_FILE_BYTES / 1024 / 1024:g} MiB"
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_text_file(path: str | Path, *, limit: int = MAX_FILE_BYTES) -> str:
    """A regular file's UTF-8 text, refused in one line if it is anything else.

    The type is checked on the open descriptor (non-blocking, so a pipe cannot hang the
    open) before a byte is read: ``/dev/zero``, a FIFO or a directory never reaches the
    parser. Errors name the file and the rule, never the file's contents.
    """
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise PolicyError(f"cannot read file: {exc.strerror}", file=name) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "a special file")
            raise PolicyError(f"is {kind}, not a regular file", file=name)
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise PolicyError(f"cannot read file: {exc.strerror}", file=name) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise PolicyError(f"is larger than {limit / 1024 / 1024:g} MiB (the limit)", file=name)
    return decode_utf8(data, file=name)


def decode_utf8(data: bytes, *, file: str | None = None) -> str:
    """UTF-8 text (a leading BOM dropped); UTF-16/32 and binary files are one-line errors."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise PolicyError("is UTF-32 text (it starts with a byte-order mark): use UTF-8", file=file)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise PolicyError("is UTF-16 text (it starts with a byte-order mark): use UTF-8", file=file)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise PolicyError(
            "holds a NUL byte: a binary file or UTF-16/32 text, not UTF-8 text",
            path=_line(data, nul),
            file=file,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            path=_line(data, exc.start),
            file=file,
        ) from None
    return text.removeprefix("\ufeff")


def _line(data: bytes, offset: int) -> str:
    return f"line {data.count(10, 0, offset) + 1}"  # 10: the newline byte


def read_yaml_file(path: str | Path, *, multi: bool = False) -> Any:
    """Read (``read_text_file``) and parse a YAML file; every failure is a ``PolicyError``."""
    return load_yaml(read_text_file(path), file=str(path), multi=multi)


def dump_yaml(data: Any) -> str:
    """YAML text for plain data, keys in the order given (as a user would write them)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
