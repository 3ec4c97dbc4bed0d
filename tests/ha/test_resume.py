"""A restarted agent's resume, without I/O: the lease file, which key counts as ours, and
the decision once the lease and its leader key were taken back."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hamgr.dcs.common import StoredKey
from hamgr.dcs.model import LeaderKey
from hamgr.dcs.session import held_leader
from hamgr.ha import Demote, RenewLease, decide
from hamgr.ha.leasefile import LeaseFile
from tests.ha.builders import NOW, local, primary, view

LEADER = "/hamgr/c/leader"


def test_lease_file_round_trip_is_private(tmp_path: Path) -> None:
    f = LeaseFile(tmp_path, "c", "a")
    assert f.load() is None
    f.save(12345)
    assert f.load() == 12345
    assert stat.S_IMODE(f.path.stat().st_mode) == 0o600
    f.save(678)
    assert f.load() == 678
    assert [p.name for p in tmp_path.iterdir()] == [f.path.name], "no temporary file left"
    f.remove()
    assert f.load() is None
    f.remove()  # absent is fine


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"scope": "c", "name": "a"}),
        json.dumps({"scope": "c", "name": "a", "lease": "12"}),
        json.dumps({"scope": "c", "name": "a", "lease": 0}),
        json.dumps({"scope": "c", "name": "a", "lease": True}),
        json.dumps({"scope": "other", "name": "a", "lease": 12}),
        json.dumps({"scope": "c", "name": "b", "lease": 12}),
    ],
)
def test_a_foreign_or_broken_lease_file_is_never_trusted(tmp_path: Path, content: str) -> None:
    f = LeaseFile(tmp_path, "c", "a")
    f.path.write_text(content)
    assert f.load() is None


@pytest.mark.parametrize(
    ("value", "lease", "ours"),
    [
        (b"a", 42, True),  # my name, my lease
        (b"a", 41, False),  # my name on another lease (an older session's, or forged)
        (b"b", 42, False),  # another member's key on my lease: not mine either
        (b"a", 0, False),  # a key attached to no lease
    ],
)
def test_only_my_name_on_my_lease_is_my_leader_key(value: bytes, lease: int, ours: bool) -> None:
    kv = StoredKey(LEADER, value, create_revision=9, mod_revision=9, lease=lease)
    assert held_leader(kv, 42, "a") == (LeaderKey("a", 9) if ours else None)
    assert held_leader(None, 42, "a") is None


def test_a_resumed_holder_keeps_its_primary() -> None:
    """Leader key and lease taken back (leader_revision set, deadline from the new keepalive):
    the running primary stays primary."""
    d = decide(view(leader="a", revision=7), local("a", primary(), leader=True))
    assert RenewLease() in d.actions
    assert not any(isinstance(x, Demote) for x in d.actions), d.reason
    assert "I am the leader" in d.reason


def test_without_the_lease_taken_back_the_key_in_my_name_is_not_mine() -> None:
    """The previous run's key names me but this run could not renew its lease: the key
    expires (or is already gone), so the primary must not keep accepting writes."""
    d = decide(view(leader="a", revision=7), local("a", primary()))
    assert d.actions == (Demote("immediate"),), d.reason
    assert "previous run" in d.reason


def test_a_resumed_deadline_that_passed_still_fences() -> None:
    d = decide(
        view(leader="a", revision=7),
        local("a", primary(), leader_revision=7, fence_at=NOW - 0.1),
    )
    assert d.actions == (Demote("immediate"),)
