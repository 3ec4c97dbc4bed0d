"""The configuration in force as plain data, and every key path the schema has.

:func:`dump_effective` gives every key with its value, secrets redacted unless asked, and its
output parses back to the same Config; :func:`schema_paths` lists every key for docs and tests.
Both walk the schema's sections by their type hints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, get_args, get_origin

from hamgr.config.msgspecwords import field_types, shape
from hamgr.config.schema import Config
from hamgr.config.values import SECRET, is_section, section_names

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
    cls: type = type(value)
    if is_section(cls):
        hints = field_types(cls)
        out: dict[str, Any] = {}
        for name in section_names(cls):
            item = getattr(value, name)
            if redact and item is not None and SECRET in shape(hints[name])[2]:
                out[name] = REDACTED
            else:
                out[name] = _dump(item, redact)
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
    for name in section_names(cls):
        path = f"{prefix}{name}"
        yield path
        base, _, _ = shape(field_types(cls)[name])
        if get_origin(base) is tuple:
            item, _, _ = shape(get_args(base)[0])
            if is_section(item):
                yield from _paths(item, f"{path}[].")
        elif is_section(base):
            yield from _paths(base, f"{path}.")
