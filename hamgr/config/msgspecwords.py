"""msgspec's validation errors in hamgr's words: the one translator, for the config file and the
store's values alike.

msgspec checks a value's type and its ``Meta`` bounds (strictly: ``"1"`` is no integer, ``1`` no
boolean) but says what is wrong in its own terms and without the value (``Expected `int` >= 1 -
at `$.peers[0].node_id```). :func:`problem` turns its error into (key path, what is wrong) as
operators read it elsewhere: ``must be >= 1, got 0``, ``expected an integer, got "2"``, ``must be
at least 16 characters long (it has 5)``, ``expected one of "off", "on", got "of"``, a pattern
by its description. The value is shown when it is known (never a secret's: only its kind).
:func:`convert` and :func:`value_problem` check one value with msgspec and raise or return that
problem. :func:`shape` and :func:`field_types` read a declared type (its base, whether None is
allowed, its ``Annotated`` markers) for this and for the loader. Imports only the problems'
formatting.
"""

from __future__ import annotations

import ast
import functools
import math
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec

from hamgr.config.problems import KeyPath, kind, show

NOTHING: Any = object()
"""No value at hand (only its type is known: a JSON document msgspec decoded)."""
#: msgspec takes inf and nan for a float; JSON, PostgreSQL settings and hamgr's durations do not.
_NOT_FINITE = object()

_ERROR = re.compile(r"(?P<text>.*?)(?: - at `(?P<key>key` in `)?\$(?P<where>.*)`)?", re.S)
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_TYPE = re.compile(r"Expected `(?P<type>[^`]+)`, got `(?P<got>\w+)`")
_BOUND = re.compile(r"Expected `(?:int|float)` (?P<op>[<>]=?) (?P<bound>\S+)")
_LENGTH = re.compile(r"Expected `(?P<type>\w+)` of length (?P<op>[<>]=) (?P<n>\d+)")
_PATTERN = re.compile(r"Expected `str` matching regex (?P<regex>.+)", re.S)
_ENUM = re.compile(r"Invalid enum value (?P<value>.+)", re.S)
_FIELD = re.compile(r"Object (?P<what>missing required|contains unknown) field `(?P<key>[^`]*)`")

#: What msgspec's type names are, in the words of hamgr's messages.
_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping of keys",
    "null": "null",
    "bool | int | float | str": "a string, number or boolean",
}
#: What a value msgspec names by its type is, when the value itself is not at hand.
_KINDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}
_LENGTH_UNIT = {"str": "characters long", "array": "items", "object": "keys"}


class ValueProblem(ValueError):
    """A value msgspec refused: ``path`` below the value checked, ``problem`` in hamgr's words."""

    def __init__(self, path: KeyPath, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def convert(raw: Any, tp: Any, *, secret: bool = False) -> Any:
    """``raw`` (parsed YAML or JSON) as ``tp``, checked by msgspec (types strictly, ``Meta``
    bounds, non-finite numbers refused); raises :class:`ValueProblem`. A ``secret`` value is
    never shown in the problem."""
    try:
        return msgspec.convert(_NOT_FINITE if _non_finite(raw) else raw, tp)
    except msgspec.ValidationError as exc:
        raise ValueProblem(*problem(exc, tp, raw, secret=secret)) from None


def value_problem(tp: Any, value: Any, *, secret: bool = False) -> str | None:
    """What ``tp`` (its type and msgspec bounds) finds wrong with ``value``, or None."""
    try:
        convert(value, tp, secret=secret)
    except ValueProblem as exc:
        return exc.problem
    return None


def problem(
    exc: msgspec.ValidationError, tp: Any, data: Any = NOTHING, *, secret: bool = False
) -> tuple[KeyPath, str]:
    """(key path, problem) for msgspec's ``exc`` converting or decoding ``data`` as ``tp``.

    ``data`` (when at hand) lets the problem show the value; ``tp`` gives the choices of a
    Literal and the description of a pattern. A missing or unknown field is named in the path.
    """
    found = _ERROR.fullmatch(str(exc))
    assert found is not None  # the pattern matches any text
    text, path = found["text"], _path(found["where"] or "")
    if found["key"]:
        return path, f"keys must be strings ({text[:1].lower() + text[1:]})"
    field = _FIELD.fullmatch(text)
    if field:
        if field["what"] == "missing required":
            return (*path, field["key"]), "required field is missing"
        base = shape(_type_at(tp, path))[0]
        known = isinstance(base, type) and issubclass(base, msgspec.Struct)
        listed = f" (known: {', '.join(base.__struct_fields__)})" if known else ""
        return (*path, field["key"]), "unknown field" + listed
    value = _value_at(data, path)
    where = _type_at(tp, path)

    def got(msgspec_kind: str | None = None) -> str:
        if value is not NOTHING:
            return f", got {kind(value) if secret else show(value)}"
        return f", got {_KINDS.get(msgspec_kind, f'a {msgspec_kind}')}" if msgspec_kind else ""

    choices = _choices(where)
    enum = _ENUM.fullmatch(text)
    mismatch = _TYPE.fullmatch(text)
    if choices is not None and (enum or mismatch):
        if enum and value is NOTHING and not secret:
            value = _literal(enum["value"])
        listed = ", ".join(show(c) for c in choices)
        return path, f"expected one of {listed}{got(mismatch['got'] if mismatch else None)}"
    if mismatch:
        return path, f"expected {_words(mismatch['type'])}{got(mismatch['got'])}"
    bound = _BOUND.fullmatch(text)
    if bound:
        shown = ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = f", got {kind(value) if secret else _number(value)}"
        return path, f"must be {bound['op']} {_number(_literal(bound['bound']))}{shown}"
    length = _LENGTH.fullmatch(text)
    if length:
        return path, _length_problem(length["type"], length["op"], int(length["n"]), value)
    pattern = _PATTERN.fullmatch(text)
    if pattern:
        regex = _literal(pattern["regex"])
        description = _description(where, regex) or f"text matching {regex}"
        return path, f"expected {description}{got('str')}"
    return path, text[:1].lower() + text[1:] + (got() if not secret else "")


def _length_problem(type_name: str, op: str, n: int, value: Any) -> str:
    has = f" (it has {len(value)})" if isinstance(value, str | list | tuple | Mapping) else ""
    if op == ">=" and n == 1:
        return "must not be empty"
    unit = _LENGTH_UNIT.get(type_name, "long")
    return f"must be {'at least' if op == '>=' else 'at most'} {n} {unit}{has}"


def _non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _literal(text: str) -> Any:
    """A value msgspec wrote with repr() (``'x'``, ``0.0``), as that value."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _words(type_names: str) -> str:
    """msgspec's ``int | null`` as ``an integer or null``."""
    if type_names in _WORDS:
        return _WORDS[type_names]
    *first, last = [_WORDS.get(name, f"`{name}`") for name in type_names.split(" | ")]
    return f"{', '.join(first)} or {last}" if first else last


def _path(where: str) -> KeyPath:
    """msgspec's ``.members[1].timeline`` (after the ``$``) as a key path."""
    out: list[str | int] = []
    for name, index in _PART.findall(where):
        out.append(name if name else int(index) if index else "...")
    return tuple(out)


def _value_at(data: Any, path: KeyPath) -> Any:
    """The value at ``path`` in ``data``, or NOTHING."""
    for part in path:
        listed = isinstance(part, int) and isinstance(data, list | tuple) and part < len(data)
        if not listed and not (isinstance(data, Mapping) and part in data):
            return NOTHING
        data = data[part]
    return data


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The type of each field of the Struct ``cls``, with its Annotated markers."""
    return get_type_hints(cls, include_extras=True)


def shape(tp: Any) -> tuple[Any, bool, tuple[Any, ...]]:
    """Split a field type into (base type, optional?, Annotated markers)."""
    marks: tuple[Any, ...] = ()
    optional = False
    while True:
        if get_origin(tp) is Annotated:
            marks += tuple(tp.__metadata__)
            tp = tp.__origin__
        elif get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp):
            rest = [a for a in get_args(tp) if a is not type(None)]
            optional = True
            tp = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        else:
            return tp, optional, marks


def _type_at(tp: Any, path: KeyPath) -> Any:
    """The declared type at ``path`` below ``tp`` (None when it cannot be told)."""
    for part in path:
        base = shape(tp)[0]
        origin, args = get_origin(base), get_args(base)
        if isinstance(base, type) and issubclass(base, msgspec.Struct) and isinstance(part, str):
            tp = field_types(base).get(part)
        elif origin in (tuple, list) and args and isinstance(part, int):
            if origin is list or args[-1] is Ellipsis:
                tp = args[0]
            else:
                tp = args[part] if part < len(args) else None
        elif origin is dict or (origin is not None and issubclass(origin, Mapping)):
            tp = args[1] if len(args) == 2 else None
        else:
            return None
    return tp


def _choices(tp: Any) -> tuple[Any, ...] | None:
    base = shape(tp)[0]
    return get_args(base) if get_origin(base) is Literal else None


def _description(tp: Any, regex: str) -> str | None:
    """The description of the Meta in ``tp`` whose pattern is ``regex``."""
    base, _, marks = shape(tp)
    for mark in marks:
        if isinstance(mark, msgspec.Meta) and mark.pattern == regex:
            return mark.description
    for arm in get_args(base) if get_origin(base) in (Union, types.UnionType) else ():
        found = _description(arm, regex)
        if found:
            return found
    return None
