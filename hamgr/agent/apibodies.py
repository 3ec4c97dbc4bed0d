"""The JSON bodies the REST API accepts, declared once as msgspec Structs.

A handler reads its body with :func:`read_body`: types, required fields and bounds are checked
by msgspec while decoding, unknown fields are refused (a typo is an error, not a silent
no-op), and a bad body becomes a ModelError naming the field, which the API answers with 400
(``leader: expected a string, got 5``). What depends on the cluster (is the leader current,
is the candidate a member) is checked by the handler afterwards. hamgr/agent/openapi.yaml describes
the same shapes. ``POST /restart``'s body, ``RestartBody``, lives with the restart's rules
(hamgr/ha/restartplan.py); ``PATCH /config`` is a merge patch of the dynamic settings.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec
from aiohttp import web
from msgspec import Meta

from hamgr.dcs.model import MemberName
from hamgr.dcs.strict import ModelError, decode

T = TypeVar("T")


class SwitchoverBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /switchover: the current ``leader`` (required: a failover needs none), the
    ``candidate`` (None: the best replica), ``scheduled_at`` (ISO 8601 with a timezone, or
    epoch seconds; None: now)."""

    leader: MemberName
    candidate: MemberName | None = None
    scheduled_at: str | float | None = None


class FailoverBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /failover: promote ``candidate``; ``force`` takes the risks a check refuses
    (a candidate outside the synchronous set, a paused cluster's unconfirmed primary)."""

    candidate: MemberName
    force: bool = False


class NoBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /reinitialize and /reload: no fields (an empty body or ``{}``)."""


class StoreMemberBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /store/members: add store member ``name`` whose Raft listener is ``address``
    (``host:port``), with node id ``node_id`` (None: the next free one) and client address
    ``client_address`` (empty: none)."""

    name: MemberName
    address: str
    node_id: Annotated[int, Meta(ge=1)] | None = None
    client_address: str = ""


async def read_body(request: web.Request, into: type[T], optional: bool = False) -> T:
    """The request's JSON body as ``into`` (an empty body reads as ``{}`` when ``optional``).

    Raises ModelError naming the field, ``body`` for the body as a whole."""
    raw = await request.read()
    if not raw.strip():
        if not optional:
            raise ModelError("body", "expected a JSON object, got nothing")
        raw = b"{}"
    try:
        return decode(raw, into)
    except ModelError as e:
        raise (ModelError("body", e.problem) if e.field == "value" else e) from None
