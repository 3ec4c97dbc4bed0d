"""Reading JSON objects into the store's model, with errors that name the field.

:class:`ModelError` carries the dotted path of the bad field (``members[1].timeline``);
:class:`JsonObject` reads typed fields out of one object; the ``check_*`` helpers state the
value rules that the model's ``__post_init__`` methods apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from hamgr.config.problems import show
from hamgr.config.values import member_name_problem

#: Marks a required field in :class:`JsonObject`'s getters.
MISSING: Any = object()


class ModelError(ValueError):
    """A stored or submitted value is malformed; ``field`` names where (``members[1].role``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def under(self, prefix: str) -> ModelError:
        """The same problem, seen from the value that contains this one."""
        return ModelError(f"{prefix}.{self.field}" if prefix else self.field, self.problem)


def fail(name: str, expected: str, got: object) -> NoReturn:
    raise ModelError(name, f"expected {expected}, got {show(got)}")


class JsonObject:
    """Reads typed fields out of one JSON object, naming the field in every error."""

    def __init__(self, data: object, path: str, known: Iterable[str] | None = None) -> None:
        if not isinstance(data, Mapping):
            fail(path or "value", "an object", data)
        self.data: Mapping[str, Any] = data
        self.path = path
        if known is not None:
            unknown = sorted(str(k) for k in data if k not in set(known))
            if unknown:
                raise ModelError(self.name(unknown[0]), "unknown field")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any) -> Any:
        value = self.data.get(key, default)
        if value is MISSING:
            raise ModelError(self.name(key), "required field is missing")
        if value is None and default is not None:
            raise ModelError(self.name(key), "must not be null")
        return value

    def text(self, key: str, default: Any = MISSING) -> Any:
        value = self.get(key, default)
        if value is not None and not isinstance(value, str):
            fail(self.name(key), "a string", value)
        return value

    def integer(self, key: str, default: Any = MISSING) -> Any:
        value = self.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            fail(self.name(key), "an integer", value)
        return value

    def number(self, key: str, default: Any = MISSING) -> Any:
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(self.name(key), "a number", value)
        return float(value)

    def flag(self, key: str, default: Any = MISSING) -> Any:
        value = self.get(key, default)
        if not isinstance(value, bool):
            fail(self.name(key), "true or false", value)
        return value

    def items(self, key: str) -> list[Any]:
        value = self.get(key, [])
        if not isinstance(value, list | tuple):
            fail(self.name(key), "a list", value)
        return list(value)

    def build(self, cls: type[Any], **kwargs: Any) -> Any:
        try:
            return cls(**kwargs)
        except ModelError as e:
            raise e.under(self.path) from None


def check_name(name: str, value: object) -> None:
    problem = member_name_problem(value) if isinstance(value, str) else "expected a string"
    if problem:
        raise ModelError(name, problem)


def check_int(name: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise ModelError(name, f"expected an integer >= {minimum}, got {value}")


def check_seconds(name: str, value: float, *, zero_ok: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if zero_ok else value > 0)
    if not ok:
        raise ModelError(name, f"must be {'>= 0' if zero_ok else '> 0'}, got {value:g}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(name, " or ".join(f'"{c}"' for c in choices), value)
