"""PostgreSQL's log sequence numbers: the one parser and the one spelling (``0/3000060``).

An LSN is a byte position in the WAL; hamgr keeps it as an int everywhere (the store's
records, decide()'s inputs, the REST API's lag figures) and spells it as PostgreSQL does only
when it reads SQL output or writes a message for people. Standard library only, so the pure
HA core and the PostgreSQL driver share it without one importing the other.
"""

from __future__ import annotations

import re

__all__ = ["format_lsn", "parse_lsn", "parse_optional_lsn", "show_lsn"]

_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text: str) -> int:
    """Turn PostgreSQL's 'XXXXXXXX/XXXXXXXX' LSN notation into a byte position."""
    match = _LSN_RE.match(text.strip())
    if not match:
        raise ValueError(f"not an LSN: {text!r} (expected hex 'X/X', e.g. '0/3000060')")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def parse_optional_lsn(text: str | None) -> int | None:
    """`parse_lsn`, passing None (SQL NULL) through."""
    return None if text is None else parse_lsn(text)


def format_lsn(lsn: int) -> str:
    """Inverse of `parse_lsn`: 0x3000060 -> '0/3000060'."""
    if not 0 <= lsn < 1 << 64:
        raise ValueError(f"LSN out of range: {lsn}")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def show_lsn(lsn: int | None) -> str:
    """`format_lsn` for messages: an unknown position (None) reads "unknown"."""
    return "unknown" if lsn is None else format_lsn(lsn)
