"""HAMGR_* environment variables laid over the file's data before it is checked.

``HAMGR_SECTION__KEY`` names a key path (the rules are in the package docstring). :func:`merge_env`
puts each variable's text at its key wrapped in :class:`EnvValue`, so that the loader can name
the variable in a problem and decide by the key's type (:func:`wants_text`) whether to take the
text as it is or parse it as YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args, get_origin

from hamgr.config.problems import fmt_path, show

ENV_PREFIX = "HAMGR_"
#: HAMGR_* variables that are not configuration keys (see the package docstring).
ENV_ALLOWED = frozenset({"HAMGR_CONFIG", "HAMGR_PG_BINDIR"})
_ENV_ALLOWED_PREFIX = "HAMGR_TEST_"
_ENV_ALLOWED_PREFIX = "HAMGR_TEST_"


@dataclass(frozen=True)
class EnvValue:
    """A value that came from an environment variable: its name and its raw text."""

    name: str
    text: str


class EnvSection(dict[Any, Any]):
    """A section that exists only because environment variables named keys inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []


def merge_env(
    data: Mapping[Any, Any], env: Mapping[str, str], problems: list[str]
) -> dict[Any, Any]:
    """Copy ``data`` with HAMGR_* variables laid over it (copying only what they touch).

    Variables that do not start with HAMGR_ are ignored; a malformed or conflicting name is
    added to ``problems``.
    """
    out = dict(data)
    mine = {id(out)}
    for name in sorted(env):
        upper = name.upper()
        if (
            not upper.startswith(ENV_PREFIX)
            or upper in ENV_ALLOWED
            or upper.startswith(_ENV_ALLOWED_PREFIX)
        ):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            problems.append(
                f'{name}: expected HAMGR_KEY or HAMGR_SECTION__KEY (parts joined by "__")'
            )
            continue
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = EnvSection()
            elif isinstance(child, EnvValue):
                problems.append(f"{name}: conflicts with {child.name}")
                break
            elif not isinstance(child, Mapping):
                where = fmt_path(tuple(parts[: depth + 1]))
                problems.append(f"{name}: {where} holds {show(child)} in the file, not a section")
                break
            elif id(child) not in mine:
                child = dict(child)
                mine.add(id(child))
            if isinstance(child, EnvSection):
                child.names.append(name)
            node[part] = child
            node = cast(dict[Any, Any], child)  # ours: created or copied above
        else:
            old = node.get(parts[-1])
            if isinstance(old, EnvValue | EnvSection):
                first = old.name if isinstance(old, EnvValue) else ", ".join(old.names)
                problems.append(f"{name}: conflicts with {first}")
            else:
                node[parts[-1]] = EnvValue(name, env[name])
    return out


def wants_text(base: Any) -> bool:
    """Does a key of this type take an environment variable's text as it is?"""
    return base is str or (
        get_origin(base) is Literal and all(isinstance(c, str) for c in get_args(base))
    )
