"""Decoding JSON into the model's msgspec Structs, with errors that name the field.

The values the store holds (hamgr/dcs/model.py, hamgr/dcs/restartrequest.py) and the REST
bodies (hamgr/agent/apibodies.py) are frozen :class:`msgspec.Struct` classes: types, defaults and
bounds (``Meta(ge=1)``, patterns with a description) stated once in the annotations; what one
annotation cannot say (an address, one field against another) in ``__post_init__``, which
msgspec runs both when it decodes and when code builds a value, raising :class:`ModelError`.

:func:`decode` and :func:`convert` turn msgspec's ``ValidationError`` (``Expected `int`, got
`str` - at `$.members[1].timeline```) into a :class:`ModelError` whose ``field`` is the dotted
path (``members[1].timeline``) and whose problem is worded by the one translator,
hamgr.config.msgspecwords (``expected an integer or null, got "x"``), as DcsError messages and
400 answers show it.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import msgspec

from hamgr.config.msgspecwords import NOTHING, problem
from hamgr.config.problems import fmt_path

T = TypeVar("T")


class ModelError(ValueError):
    """A stored or submitted value is malformed; ``field`` names where (``members[1].role``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def under(self, prefix: str) -> ModelError:
        """The same problem, seen from the value that contains this one."""
        return ModelError(f"{prefix}.{self.field}" if prefix else self.field, self.problem)


def model_error(exc: msgspec.ValidationError, into: Any, data: Any = NOTHING) -> ModelError:
    """``exc`` (decoding ``data`` as ``into``) as a ModelError naming the field, in the words of
    hamgr.config.msgspecwords (a ModelError from ``__post_init__`` keeps its own field, seen from
    the value that contains it)."""
    path, message = problem(exc, into, data)
    if isinstance(exc.__cause__, ModelError):
        return exc.__cause__.under(fmt_path(path) if path else "")
    return ModelError(fmt_path(path) if path else "value", message)


def decode(raw: bytes | str, into: type[T]) -> T:
    """The JSON document ``raw`` as ``into``. Raises ModelError naming the field, or
    ``value: not valid JSON`` when ``raw`` does not parse."""
    try:
        return msgspec.json.decode(raw, type=into)
    except msgspec.ValidationError as exc:
        raise model_error(exc, into, _parsed(raw)) from None
    except msgspec.DecodeError as exc:
        raise ModelError("value", f"not valid JSON ({exc})") from None


def _parsed(raw: bytes | str) -> Any:
    """``raw`` parsed without a type, so that a problem can show the value (NOTHING when the
    document breaks further on than msgspec read)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return NOTHING


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
