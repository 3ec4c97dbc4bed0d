"""What a single value may be: rules on one value, and the markers that put them on fields.

Types, bounds, lengths and patterns are msgspec's: the field's type and its :class:`msgspec.Meta`
constraints (``Meta(gt=0)``, ``Meta(min_length=1)``, ``Meta(pattern=..., description=...)``),
which msgspec checks (:mod:`hamgr.config.msgspecwords` words its errors) and the JSON Schema
(:mod:`hamgr.config.jsonschema`) states, so each bound is written once. What JSON Schema cannot
say (an address, an absolute path) is a :class:`Rule`: a check on a value whose type is already
right that returns a problem or None. A schema field carries these, whether it is a secret, and
any loader of its own in ``Annotated`` markers (:class:`msgspec.Meta`, :class:`Rule`,
:data:`SECRET`, :class:`Custom`); :func:`shape` reads them back off the type for the loader and
for dump_effective. :func:`split_address` is also used by the cross-key rules.

Sections are msgspec Structs on the :class:`Section` base (frozen, unknown keys refused), walked
with :func:`is_section`, :func:`section_names` and :func:`section_defaults`.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    cast,
)

import msgspec

from hamgr.config.msgspecwords import value_problem
from hamgr.config.problems import show

if TYPE_CHECKING:
    from hamgr.config.validate import Loader

_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")

MEMBER_NAME = msgspec.Meta(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$(?!\n)",
    description='1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit',
)
"""A scope or member name: it becomes part of store keys, file names and URLs."""
NON_EMPTY = msgspec.Meta(min_length=1)
"""Text that must not be empty (a name, a path, a command...)."""
LONG_SECRET = msgspec.Meta(min_length=16)
"""A shared secret (the Raft group's): long enough not to be guessed."""


def split_address(address: str, *, any_port: bool = False) -> tuple[str, int]:
    """Split ``"host:port"`` (IPv6 as ``"[::1]:5432"``) into host and port; with `any_port`,
    port 0 (bind any free port, as tests do) is accepted too.

    Raises ValueError with a message that says what is wrong, fit for a config problem.
    """
    got = f", got {show(address)}"
    plain = 'expected "host:port"'
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f'{plain} with an IPv6 host in brackets like "[::1]:5432"{got}')
    else:
        host, sep, port = address.rpartition(":")
        if ":" in host:
            raise ValueError(f'{plain} with an IPv6 host in brackets like "[::1]:5432"{got}')
        if not sep or not _is_host(host):
            raise ValueError(plain + got)
    if not _PORT.fullmatch(port) or not (0 if any_port else 1) <= int(port) <= 65535:
        raise ValueError(f"{plain} with a port in 1..65535{got}")
    return host, int(port)


def _is_host(host: str) -> bool:
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    labels = host.split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def address_problem(value: str) -> str | None:
    try:
        split_address(value)
    except ValueError as e:
        return str(e)
    return None


def abs_path_problem(value: str) -> str | None:
    if "\0" in value or not os.path.isabs(value):
        return f"expected an absolute path, got {show(value)}"
    return None


def member_name_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a scope or member name (:data:`MEMBER_NAME`), or None."""
    return value_problem(Annotated[str, MEMBER_NAME], value)


def cidr_problem(value: str) -> str | None:
    """An IP address or network in CIDR notation (``10.0.0.0/8``, ``127.0.0.2``, ``::1/128``)."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"expected an IP address or a CIDR network such as 10.0.0.0/8, got {value!r}"
    return None


def long_secret(value: str) -> str | None:
    """What is wrong with ``value`` as a shared secret (:data:`LONG_SECRET`), or None."""
    return value_problem(Annotated[str, LONG_SECRET], value, secret=True)


# --- Markers read by the loader from Annotated types -------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A check on a value whose type is already right: returns a problem or None."""

    check: Callable[[Any], str | None]


class SecretMark:
    """The value is never shown in messages and is redacted by dump_effective."""


SECRET = SecretMark()


@dataclass(frozen=True)
class Custom:
    """A value with its own loader: (loader, raw value, path, env name) -> value or BAD."""

    load: Callable[[Loader, Any, tuple[str | int, ...], str | None], Any]


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every section of the configuration: a frozen msgspec Struct that refuses keys
    it does not declare (subclasses inherit these options)."""


def is_section(tp: object) -> bool:
    """Is ``tp`` a section type (a msgspec Struct)?"""
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def section_names(cls: type) -> list[str]:
    """The key names of the section type ``cls``, in declaration order."""
    return list(cast(Any, cls).__struct_fields__)


def section_defaults(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The default of each key of the Struct ``cls`` (made afresh where it is mutable);
    :data:`REQUIRED` for a key that has none."""
    out: dict[str, Any] = {}
    for f in _fields(cls):
        if f.default is not msgspec.NODEFAULT:
            out[f.name] = f.default
        elif f.default_factory is not msgspec.NODEFAULT:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = REQUIRED
    return out


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(cls)  # evaluates the annotations: worth doing once


REQUIRED: Any = object()
"""The default of a key that has none."""
