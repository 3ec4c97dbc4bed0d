"""The lease probe's checker, on made-up cycles."""

from __future__ import annotations

from tests.tools.leaseprobe import Cycle, check_cycles


def cycle(sends: list[float], reads: list[tuple[float, float, bool]]) -> Cycle:
    return Cycle(b"t/lease/1", ttl=3.0, put_acked=0.5, sends=sends, reads=reads)


def test_a_lease_that_lapses_after_its_last_keepalive_plus_ttl_is_fine() -> None:
    ok = cycle([0.0, 1.0, 2.0], [(1.0, 1.1, True), (4.9, 5.05, False), (5.1, 5.2, False)])
    assert check_cycles([ok]) == []


def test_a_key_gone_before_the_last_keepalive_send_plus_ttl_expired_early() -> None:
    early = cycle([0.0, 1.0, 2.0], [(4.5, 4.6, False)])  # 2.0 + 3.0 = 5.0 > 4.6
    (found,) = check_cycles([early])
    assert "expired early" in found and "0.400 s" in found


def test_a_read_that_overlaps_the_deadline_may_see_it_gone() -> None:
    assert check_cycles([cycle([2.0], [(4.9, 5.1, False)])]) == []


def test_a_key_seen_again_after_a_read_found_it_gone_is_back_from_the_dead() -> None:
    back = cycle([0.0], [(3.5, 3.6, False), (3.7, 3.8, True)])
    (found,) = check_cycles([back])
    assert "back from the dead" in found
    # a read that began before the absent one returned may still have seen it
    assert check_cycles([cycle([0.0], [(3.5, 3.6, False), (3.4, 3.65, True)])]) == []
