"""The stored form of every JSON key, pinned by literal documents.

Each document below is byte for byte what the agents write today (compact, key-sorted JSON).
Agents of different versions share one store during a rolling upgrade, so both directions
matter: what an older agent wrote must decode to the value shown, and what this version
writes for that value must be the same bytes, so that an older agent reads it. Pure; no store.
"""

from __future__ import annotations

from typing import Any

import pytest

from hamgr.dcs import (
    DcsError,
    MemberState,
    MemberTags,
    SwitchoverRequest,
    TimelineEntry,
    scope_keys,
)
from hamgr.dcs.common import RangeSnapshot, StoredKey, build_view, encode_history, encode_value
from hamgr.dcs.model import PrimaryPosition, SyncState
from hamgr.dcs.restartrequest import RestartRequest

KEYS = scope_keys("c1")

MEMBER_DOC = (
    b'{"api_url":"http://10.0.0.2:8008","conn_url":"10.0.0.2:5432","fence_token":0,'
    b'"fencer":"","name":"b","paused":false,"pending_restart":[],"reason":"",'
    b'"received_lsn":null,"replayed_lsn":null,"role":"uninitialized","scheduled_restart":null,'
    b'"state":"stopped","store_id":0,"tags":{"clonefrom":false,"failover_priority":1,'
    b'"nofailover":false,"noloadbalance":false,"nosync":false},"timeline":null}'
)
MEMBER = MemberState("b", "http://10.0.0.2:8008", "10.0.0.2:5432")

FULL_MEMBER_DOC = (
    b'{"api_url":"https://a.example:8443","conn_url":"[::1]:5433","fence_token":17,'
    b'"fencer":"armed","name":"a","paused":true,"pending_restart":["max_connections",'
    b'"shared_buffers"],"reason":"holds the leader key","received_lsn":100,"replayed_lsn":90,'
    b'"role":"primary","scheduled_restart":{"postgres_version":"15.4","restart_pending":true,'
    b'"role":"replica","schedule":"2026-12-07T16:00:00+00:00","timeout":30.0},'
    b'"state":"running","store_id":3,"tags":{"clonefrom":true,"failover_priority":2,'
    b'"nofailover":false,"noloadbalance":true,"nosync":true},"timeline":4}'
)
SCHEDULED = RestartRequest(
    schedule="2026-12-07T16:00:00+00:00",
    restart_pending=True,
    role="replica",
    postgres_version="15.4",
    timeout=30.0,
)

FULL_MEMBER = MemberState(
    name="a",
    api_url="https://a.example:8443",
    conn_url="[::1]:5433",
    role="primary",
    state="running",
    timeline=4,
    received_lsn=100,
    replayed_lsn=90,
    tags=MemberTags(
        nofailover=False, noloadbalance=True, nosync=True, clonefrom=True, failover_priority=2
    ),
    fence_token=17,
    reason="holds the leader key",
    paused=True,
    store_id=3,
    fencer="armed",
    pending_restart=("max_connections", "shared_buffers"),
    scheduled_restart=SCHEDULED,
)
SWITCHOVER_DOC = (
    b'{"candidate":"b","kind":"switchover","leader":"a","requested_by":"operator",'
    b'"scheduled_at":1796659200.5}'
)
SWITCHOVER = SwitchoverRequest("switchover", "a", "b", 1796659200.5)
FAILOVER_DOC = (
    b'{"candidate":"c","kind":"failover","leader":null,"requested_by":"shutdown",'
    b'"scheduled_at":null}'
)
FAILOVER = SwitchoverRequest("failover", None, "c", None, requested_by="shutdown")

HISTORY_DOC = (
    b'[{"at":1.0,"new_leader":"a","reason":"","switch_lsn":0,"timeline":1},'
    b'{"at":1796659200.25,"new_leader":"b","reason":"failover: a lost its lease",'
    b'"switch_lsn":83886240,"timeline":2}]'
)
HISTORY = (
    TimelineEntry(1, 0, "", 1.0, "a"),
    TimelineEntry(2, 83886240, "failover: a lost its lease", 1796659200.25, "b"),
)

SYNC_DOC = b'{"acks":1,"leader":"a","members":["b","c"]}'
SYNC = SyncState("a", ("b", "c"), 1)
POSITION_DOC = b'{"leader":"a","lsn":83886240,"timeline":2}'
POSITION = PrimaryPosition("a", 2, 83886240)


def view_of(key: str, doc: bytes) -> Any:
    return build_view(KEYS, RangeSnapshot(5, (StoredKey(key, doc, 2, 3),)))


def test_member_documents_decode_and_encode_to_the_same_bytes() -> None:
    assert view_of(KEYS.member("b"), MEMBER_DOC).members == (MEMBER,)
    assert encode_value(MEMBER) == MEMBER_DOC
    assert view_of(KEYS.member("a"), FULL_MEMBER_DOC).members == (FULL_MEMBER,)
    assert encode_value(FULL_MEMBER) == FULL_MEMBER_DOC


def test_switchover_documents() -> None:
    assert view_of(KEYS.switchover, SWITCHOVER_DOC).switchover == SWITCHOVER
    assert encode_value(SWITCHOVER) == SWITCHOVER_DOC
    assert view_of(KEYS.switchover, FAILOVER_DOC).switchover == FAILOVER
    assert encode_value(FAILOVER) == FAILOVER_DOC


def test_history_sync_and_position_documents() -> None:
    assert view_of(KEYS.history, HISTORY_DOC).history == HISTORY
    assert encode_history(HISTORY) == HISTORY_DOC
    assert view_of(KEYS.sync, SYNC_DOC).sync == SYNC
    assert encode_value(SYNC) == SYNC_DOC
    assert view_of(KEYS.position, POSITION_DOC).position == POSITION
    assert encode_value(POSITION) == POSITION_DOC


def test_older_documents_take_the_defaults() -> None:
    """Fields a document does not carry (written before they existed) take their defaults.
    (A history entry has carried every field since the first version: all are required.)"""
    minimal = b'{"api_url":"http://10.0.0.2:8008","conn_url":"10.0.0.2:5432","name":"b"}'
    assert view_of(KEYS.member("b"), minimal).members == (MEMBER,)
    assert view_of(KEYS.switchover, b'{"kind":"failover","candidate":"c"}').switchover == (
        SwitchoverRequest("failover", None, "c")
    )
    assert view_of(KEYS.sync, b'{"leader":"a"}').sync == SyncState("a")
    tags = b'{"name":"b","api_url":"http://10.0.0.2:8008","conn_url":"10.0.0.2:5432","tags":{}}'
    assert view_of(KEYS.member("b"), tags).members == (MEMBER,)


@pytest.mark.parametrize(
    ("key", "doc"),
    [
        (KEYS.member("b"), MEMBER_DOC[:-1] + b',"added_later":{"x":1}}'),
        (KEYS.member("a"), FULL_MEMBER_DOC.replace(b'"nosync":true', b'"nosync":true,"new":1')),
        (KEYS.member("a"), FULL_MEMBER_DOC.replace(b'"timeout":30.0', b'"timeout":30.0,"n":1')),
        (KEYS.history, HISTORY_DOC.replace(b'"timeline":1}', b'"timeline":1,"new":[]}')),
        (KEYS.sync, SYNC_DOC[:-1] + b',"new":true}'),
        (KEYS.position, POSITION_DOC[:-1] + b',"new":"x"}'),
    ],
)
def test_what_agents_write_tolerates_fields_added_later(key: str, doc: bytes) -> None:
    """A newer agent's extra fields do not stop an older one from reading its keys."""
    view_of(key, doc)


def test_an_unknown_field_in_a_switchover_request_is_refused() -> None:
    """Operators submit requests: a misspelt field is an error, not a silent no-op."""
    with pytest.raises(DcsError, match="at: unknown field"):
        view_of(KEYS.switchover, b'{"kind":"failover","candidate":"c","at":5}')
