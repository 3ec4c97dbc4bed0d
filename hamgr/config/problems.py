"""How the configuration's problems are named and shown, for every step that finds one.

A problem reads ``<key path>: <what is wrong>`` (``store.raft.peers[1].address: expected
"host:port", got "abc"``), and every problem found is raised at once in one :class:`ConfigError`.
:data:`BAD` and :class:`Skip` let a later step know that a value was already reported as wrong,
so that each mistake is reported once and does not set off others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

#: Where a value sits in the file: section and key names, and list indexes.
KeyPath = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration is not usable; ``problems`` lists every mistake, one message each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))


class BadValue:
    """Returned by a loader step that has already reported why the value is unusable."""


BAD: Any = BadValue()


class Skip(Exception):
    """A cross-key check needs a value that is already reported as wrong."""


_PLAIN_KEY = re.compile(r"[\w-]+")


def fmt_path(path: KeyPath) -> str:
    """A key path as the file spells it: ``("store", "peers", 1)`` reads ``store.peers[1]``.

    A key that is not a plain name (empty, or with dots, brackets or spaces) is quoted, so that
    ``log: {"": 0}`` reads ``log.""``, not a path ending in a bare dot.
    """
    out = ""
    for part in path:
        if isinstance(part, str) and not _PLAIN_KEY.fullmatch(part):
            part = json.dumps(part)
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def show(value: object) -> str:
    """A short rendering of a YAML value for messages."""
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 80 else value[:77] + "...")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def kind(value: object) -> str:
    """What a value is, without showing it (for secrets)."""
    for types_, word in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (Mapping, "a mapping"),
    ):
        if isinstance(value, types_):
            return word
    return "null" if value is None else f"a {type(value).__name__}"
