"""The configuration in force as plain data, and every key path the schema has.

:func:`dump_effective` gives every key with its value, secrets redacted unless asked, and its
output parses back to the same Config; :func:`schema_paths` lists every key for docs and tests.
Both walk the schema's dataclasses by their type hints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, get_args, get_origin

from hamgr.config.schema import Config
from hamgr.config.values import SECRET, field_types, shape

REDACTED = "<redacted>"


def dump_effective(config: Config, *, redact: bool = True) -> dict[str, Any]:
    """The configuration in force as plain YAML/JSON-able data, every key with its value.

    Secrets (passwords, the Raft secret) read ``<redacted>`` unless ``redact`` is False;
    ``parse_config(dump_effective(c, redact=False)) == c``.
    """
    out = _dump(config, redact)
    assert isinstance(out, dict)
    return out


def _dump(value: Any, redact: bool) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = field_types(type(value))
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if redact and item is not None and SECRET in shape(hints[f.name])[2]:
                out[f.name] = REDACTED
            else:
                out[f.name] = _dump(item, redact)
        return out
    if isinstance(value, list | tuple):
        return [_dump(v, redact) for v in value]
    if isinstance(value, Mapping):
        return {k: _dump(v, redact) for k, v in value.items()}
    return value


def schema_paths() -> Iterator[str]:
    """Every key path the file can hold (``peers[]`` for list items), for docs and tests."""
    yield from _paths(Config, "")


def _paths(cls: type, prefix: str) -> Iterator[str]:
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        yield path
        base, _, _ = shape(field_types(cls)[f.name])
        if get_origin(base) is tuple:
            item, _, _ = shape(get_args(base)[0])
            if dataclasses.is_dataclass(item):
                yield from _paths(item, f"{path}[].")  # type: ignore[arg-type]
        elif dataclasses.is_dataclass(base):
            yield from _paths(base, f"{path}.")  # type: ignore[arg-type]
