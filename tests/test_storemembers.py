"""The rules of `hactl members` (hamgr.agent.storemembers), as tables: what is refused and why,
which id a new member gets, what GET /store/members shows. No I/O."""

from __future__ import annotations

import pytest

from hamgr.agent.storemembers import (
    MemberProbe,
    MemberRecord,
    MembershipRefused,
    StoreConf,
    check_add,
    check_remove,
    members_json,
    next_node_id,
)

RECORDS = [
    MemberRecord("m1", 1, "127.0.0.1:7000", "127.0.0.1:7100"),
    MemberRecord("m2", 2, "127.0.0.2:7000", "127.0.0.2:7100"),
    MemberRecord("m3", 3, "127.0.0.3:7000", "127.0.0.3:7100"),
]
THREE = StoreConf((1, 2, 3), (), leader=1, term=4)


@pytest.mark.parametrize(
    ("conf", "name", "address", "node_id", "refusal"),
    [
        (StoreConf((1, 2), (), leader=1), "m4", "127.0.0.4:7000", 4, None),
        (StoreConf((1, 2), (), leader=0), "m4", "127.0.0.4:7000", 4, "no leader"),
        (StoreConf((1, 2), (4,), leader=1), "m5", "127.0.0.5:7000", 5, "another change is pending"),
        (THREE, "m2", "127.0.0.9:7000", 4, "m2 is already store member 2"),
        (THREE, "m4", "127.0.0.2:7000", 4, "already the address of m2"),
        (THREE, "m4", "127.0.0.4:7000", 3, "node id 3 is already m3"),
        # m3 was removed (its record kept): its id is never given again.
        (StoreConf((1, 2), (), leader=1), "m4", "127.0.0.4:7000", 3, "ids are never reused"),
    ],
)
def test_add_is_refused_with_a_reason(
    conf: StoreConf, name: str, address: str, node_id: int, refusal: str | None
) -> None:
    if refusal is None:
        check_add(conf, RECORDS, name, address, node_id)
        return
    with pytest.raises(MembershipRefused, match=refusal):
        check_add(conf, RECORDS, name, address, node_id)


@pytest.mark.parametrize(
    ("conf", "who", "answering", "expect"),
    [
        # A dead host in a 3-voter store: removing it leaves 2 voters that both answer.
        (THREE, "m3", {1, 2}, 3),
        (THREE, "3", {1, 2}, 3),
        # Removing a live one while m3 is dead leaves {m2, m3}: only one answers, no majority.
        (THREE, "m2", {1, 2}, "only 1 answer"),
        (StoreConf((1,), (), leader=1), "m1", {1}, "last voter"),
        (StoreConf((1, 2), (3,), leader=1), "m3", {1, 2}, 3),  # a learner: always safe
        (THREE, "m9", {1, 2, 3}, "no store member named m9"),
        (StoreConf((1, 2, 3), (), leader=0), "m3", {1, 2}, "no leader"),
        # Five voters, two dead: removing one dead leaves 4 with 3 answering.
        (StoreConf((1, 2, 3, 4, 5), (), leader=1), "5", {1, 2, 3}, 5),
        # ... but removing a live one leaves 4 with 2 answering.
        (StoreConf((1, 2, 3, 4, 5), (), leader=1), "m3", {1, 2, 3}, "only 2 answer"),
    ],
)
def test_remove_is_refused_when_no_majority_would_answer(
    conf: StoreConf, who: str, answering: set[int], expect: int | str
) -> None:
    if isinstance(expect, int):
        assert check_remove(conf, RECORDS, who, answering) == expect
        return
    with pytest.raises(MembershipRefused, match=expect):
        check_remove(conf, RECORDS, who, answering)


def test_next_id_is_above_every_id_ever_recorded() -> None:
    assert next_node_id(RECORDS, StoreConf((1, 2), ())) == 4
    assert next_node_id([], StoreConf((1, 2, 7), ())) == 8
    assert next_node_id([], StoreConf((), ())) == 1


def test_record_round_trip_and_garbage_ignored() -> None:
    rec = MemberRecord("w", 9, "127.0.0.9:7000", "127.0.0.9:7100", removed=True)
    assert MemberRecord.from_json("w", rec.to_json()) == rec
    assert MemberRecord.from_json("w", b"not json") is None
    assert MemberRecord.from_json("w", b'{"node_id": -1}') is None


def test_members_view_names_roles_leader_and_applied() -> None:
    conf = StoreConf((1, 2), (4,), leader=2, term=7)
    records = [*RECORDS, MemberRecord("m4", 4, "127.0.0.4:7000", "127.0.0.4:7100")]
    probes = {
        1: MemberProbe("follower", 30),
        2: MemberProbe("leader", 31),
        4: MemberProbe(error="x"),
    }
    out = members_json("it", conf, records, probes, {})
    assert (out["leader"], out["term"], out["voters"], out["learners"]) == (2, 7, [1, 2], [4])
    rows = [(m["name"], m["role"], m["raft_leader"], m["applied"]) for m in out["members"]]
    assert rows == [
        ("m1", "voter", False, 30),
        ("m2", "voter", True, 31),
        ("m4", "learner", False, None),
    ]
    assert out["members"][2]["error"] == "x"
