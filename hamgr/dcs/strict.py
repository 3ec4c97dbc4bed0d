"""Decoding JSON into the model's msgspec Structs, with errors that name the field.

The values the store holds (hamgr/dcs/model.py, hamgr/dcs/restartrequest.py) and the REST
bodies (hamgr/agent/apibodies.py) are frozen :class:`msgspec.Struct` classes: types, defaults and
bounds (``Meta(ge=1)``) stated once in the annotations; what one annotation cannot say (a
member name, an address, one field against another) in ``__post_init__``, which msgspec runs
both when it decodes and when code builds a value, raising :class:`ModelError`.

:func:`decode` and :func:`convert` turn msgspec's ``ValidationError`` (``Expected `int`, got
`str` - at `$.members[1].timeline```) into a :class:`ModelError` whose ``field`` is the dotted
path (``members[1].timeline``), as DcsError messages and 400 answers show it.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from hamgr.dcs.jsonfields import ModelError

T = TypeVar("T")

_AT = re.compile(r"(.*?)(?: - at `\$\.?(.*)`)?", re.S)
_FIELD = re.compile(r"Object (missing required|contains unknown) field `([^`]*)`")


def model_error(exc: msgspec.ValidationError) -> ModelError:
    """``exc`` as a ModelError naming the field (a ModelError from ``__post_init__`` keeps
    its own field, seen from the value that contains it)."""
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
    return ModelError(path or "value", message[:1].lower() + message[1:])


def decode(raw: bytes | str, into: type[T]) -> T:
    """The JSON document ``raw`` as ``into``. Raises ModelError naming the field, or
    ``value: not valid JSON`` when ``raw`` does not parse."""
    try:
        return msgspec.json.decode(raw, type=into)
    except msgspec.ValidationError as exc:
        raise model_error(exc) from None
    except msgspec.DecodeError as exc:
        raise ModelError("value", f"not valid JSON ({exc})") from None


def convert(data: Any, into: type[T]) -> T:
    """Already parsed JSON (dicts, lists, numbers) as ``into``, checked as :func:`decode`
    checks a document (no coercion: ``"1"`` is no integer)."""
    try:
        return msgspec.convert(data, into)
    except msgspec.ValidationError as exc:
        raise model_error(exc) from None
