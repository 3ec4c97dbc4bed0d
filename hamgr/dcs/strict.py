"""Decoding JSON into the model's msgspec Structs, with errors that name the field.

The values the store holds (hamgr/dcs/model.py, hamgr/dcs/restartrequest.py) and the REST
bodies (hamgr/agent/apibodies.py) are frozen :class:`msgspec.Struct` classes: types, defaults and
bounds (``Meta(ge=1)``, a name's ``Meta(pattern=...)``, a ``Literal`` of choices) stated once in
the annotations; what one annotation cannot say (an address, one field against another) in
``__post_init__``, which msgspec runs both when it decodes and when code builds a value,
raising :class:`ModelError`.

:func:`decode` and :func:`convert` turn msgspec's ``ValidationError`` (``Expected `int`, got
`str` - at `$.members[1].timeline```) into a :class:`ModelError` whose ``field`` is the dotted
path (``members[1].timeline``), as DcsError messages and 400 answers show it; a pattern that
the type describes (``Meta(description=...)``) is named by its description, not its regex.
"""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar, overload

import msgspec
from msgspec import inspect

from hamgr.config.problems import show

T = TypeVar("T")
_UNKNOWN: Any = object()

_AT = re.compile(r"(.*?)(?: - at `\$\.?(.*)`)?", re.S)
_FIELD = re.compile(r"Object (missing required|contains unknown) field `([^`]*)`")
_PATTERN = re.compile(r"Expected `[^`]*` matching regex (.*)", re.S)
_STEP = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


class ModelError(ValueError):
    """A stored or submitted value is malformed; ``field`` names where (``members[1].role``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def under(self, prefix: str) -> ModelError:
        """The same problem, seen from the value that contains this one."""
        return ModelError(f"{prefix}.{self.field}" if prefix else self.field, self.problem)


@functools.cache
def _described_patterns(into: Any) -> dict[str, str]:
    """Regex (as msgspec's errors quote it: its repr) -> description, for every described
    string pattern in the type ``into``."""
    found: dict[str, str] = {}
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, inspect.Metadata):
            about = (node.extra_json_schema or {}).get("description")
            if about and isinstance(node.type, inspect.StrType) and node.type.pattern:
                found[repr(node.type.pattern)] = about
            walk(node.type)
        for field in getattr(node, "fields", ()):
            walk(field.type)
        for attr in ("type", "item_type", "key_type", "value_type"):
            if isinstance(node, inspect.Type) and hasattr(node, attr):
                walk(getattr(node, attr))
        for child in (*getattr(node, "types", ()), *getattr(node, "item_types", ())):
            walk(child)

    walk(inspect.type_info(into))
    return found


def _value_at(data: Any, path: str) -> Any:
    """The value at ``path`` (``members[1].name``) in parsed JSON, or _UNKNOWN."""
    for index, key in _STEP.findall(path):
        try:
            data = data[int(index)] if index else data[key]
        except (LookupError, TypeError):
            return _UNKNOWN
    return data


def model_error(exc: msgspec.ValidationError, into: Any = None, data: Any = _UNKNOWN) -> ModelError:
    """``exc`` (decoding ``data`` as ``into``) as a ModelError naming the field (a ModelError
    from ``__post_init__`` keeps its own field, seen from the value that contains it)."""
    found = _AT.fullmatch(str(exc))
    message, path = (found[1], found[2] or "") if found else (str(exc), "")
    if isinstance(exc.__cause__, ModelError):
        return exc.__cause__.under(path)
    named = _FIELD.fullmatch(message)
    if named:
        problem = "required field is missing" if named[1] == "missing required" else "unknown field"
        key = named[2]
        return ModelError(
            f"{path}.{key}" if path and not key.startswith("[") else path + key, problem
        )
    pattern = _PATTERN.fullmatch(message)
    if pattern and into is not None and pattern[1] in _described_patterns(into):
        value = _value_at(data, path)
        got = "" if value is _UNKNOWN else f", got {show(value)}"
        return ModelError(path or "value", f"expected {_described_patterns(into)[pattern[1]]}{got}")
    return ModelError(path or "value", message[:1].lower() + message[1:])


def _parsed(raw: bytes | str) -> Any:
    """``raw`` as plain JSON values, for showing the bad one (msgspec stops at the first
    problem, so the rest of the document may not even parse: then _UNKNOWN)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.MsgspecError:
        return _UNKNOWN


def decode(raw: bytes | str, into: type[T]) -> T:
    """The JSON document ``raw`` as ``into``. Raises ModelError naming the field, or
    ``value: not valid JSON`` when ``raw`` does not parse."""
    try:
        return msgspec.json.decode(raw, type=into)
    except msgspec.ValidationError as exc:
        raise model_error(exc, into, _parsed(raw)) from None
    except msgspec.DecodeError as exc:
        raise ModelError("value", f"not valid JSON ({exc})") from None


@overload
def convert(data: Any, into: type[T]) -> T: ...


@overload
def convert(data: Any, into: Any) -> Any: ...


def convert(data: Any, into: Any) -> Any:
    """Already parsed JSON (dicts, lists, numbers) as ``into``, checked as :func:`decode`
    checks a document (no coercion: ``"1"`` is no integer). ``into`` may be a plain annotated
    type (``convert(name, MemberName)`` checks one name)."""
    try:
        return msgspec.convert(data, into)
    except msgspec.ValidationError as exc:
        raise model_error(exc, into, data) from None
