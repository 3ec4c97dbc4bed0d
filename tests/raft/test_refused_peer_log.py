"""A misconfigured peer is refused on every reconnect attempt but logged once per peer.

Real `PeerTransport`s on 127.0.0.x sockets: a peer with the wrong secret, and one with a
certificate of another CA, keep retrying (several times a second); the listening member refuses
each attempt (its `rejected_connections` counts them) and logs one warning per peer host and
reason. The limiter itself (`RepeatLimiter`) is tested without I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hamgr.agent.storemember import client_ssl_context, server_ssl_context
from hamgr.cli.certs import init, parse_members
from hamgr.raft.core.types import Message, MsgType
from hamgr.raft.net.repeatlog import RepeatLimiter
from hamgr.raft.net.transport import PeerTransport, TransportLimits

CLUSTER = "refuse-test"
SECRET = b"the-right-secret-0123456789"
WAIT = 20.0
"""Deadline (seconds) for any condition the tests wait on."""
ATTEMPTS = 5
"""Refused reconnect attempts to wait for before counting the log lines."""
LIMITS = TransportLimits(backoff_initial=0.02, backoff_max=0.1, handshake_timeout=2.0)
LOGGER = "hamgr.raft.net.transport"


async def _eventually(pred: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not pred():
            await asyncio.sleep(0.02)


def _refusals(caplog: pytest.LogCaptureFixture, host: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO
        and r.getMessage().startswith(f"refused connection from {host}:")
    ]


@pytest.fixture
async def transports() -> AsyncIterator[list[PeerTransport]]:
    started: list[PeerTransport] = []
    yield started
    for t in started:
        await t.stop()


async def _start(
    started: list[PeerTransport], node_id: int, secret: bytes, **tls: object
) -> PeerTransport:
    t = PeerTransport(
        node_id,
        CLUSTER,
        secret,
        (f"127.0.0.{40 + node_id}", 0),
        {},
        lambda m: None,
        limits=LIMITS,
        **tls,  # type: ignore[arg-type]
    )
    await t.start()
    started.append(t)
    return t


def _keep_dialing(dialer: PeerTransport, target: PeerTransport, target_id: int) -> None:
    dialer.set_peer(target_id, target.bound_address)
    dialer.send(Message(MsgType.HEARTBEAT, to=target_id, frm=dialer.node_id, term=1))


async def _send_until(dialer: PeerTransport, target: PeerTransport, target_id: int, n: int) -> None:
    """Keep a message queued so the dialer retries, until `target` refused `n` attempts."""
    async with asyncio.timeout(WAIT):
        while target.stats.rejected_connections < n:
            _keep_dialing(dialer, target, target_id)
            await asyncio.sleep(0.02)


async def test_a_peer_with_the_wrong_secret_is_logged_once_per_host(
    transports: list[PeerTransport], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    member = await _start(transports, 1, SECRET)
    wrong = await _start(transports, 2, b"a-wrong-secret-0123456789xx")
    await _send_until(wrong, member, 1, ATTEMPTS)
    refused = _refusals(caplog, "127.0.0.42")
    assert len(refused) == 1, refused
    assert "instead of proving the secret" in refused[0]
    # Another peer host with the same mistake gets its own line.
    other = await _start(transports, 3, b"a-wrong-secret-0123456789xx")
    await _send_until(other, member, 1, member.stats.rejected_connections + ATTEMPTS)
    assert len(_refusals(caplog, "127.0.0.43")) == 1
    assert len(_refusals(caplog, "127.0.0.42")) == 1
    assert wrong.stats.connect_failures >= ATTEMPTS


async def test_a_peer_with_a_certificate_of_another_ca_is_logged_once(
    transports: list[PeerTransport], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    members = parse_members("m1=127.0.0.41,m2=127.0.0.42")
    init(ours, CLUSTER, members)
    init(theirs, "another", members)
    good = (str(ours / "m1.crt"), str(ours / "m1.key"), str(ours / "ca.crt"))
    # It trusts our CA (so it would accept us) but presents a certificate our CA never signed.
    foreign = (str(theirs / "m2.crt"), str(theirs / "m2.key"), str(ours / "ca.crt"))
    member = await _start(
        transports,
        1,
        SECRET,
        server_ssl=server_ssl_context(good),
        client_ssl=client_ssl_context(good),
    )
    intruder = await _start(
        transports,
        2,
        SECRET,
        server_ssl=server_ssl_context(foreign),
        client_ssl=client_ssl_context(foreign),
    )
    await _send_until(intruder, member, 1, ATTEMPTS)
    refused = _refusals(caplog, "127.0.0.42")
    assert len(refused) == 1, refused
    assert "certificate" in refused[0].lower() or "unknown ca" in refused[0].lower()


def test_the_limiter_logs_first_then_counts_then_logs_again() -> None:
    now = [0.0]
    limiter = RepeatLimiter(interval=10.0, max_keys=2, clock=lambda: now[0])
    assert limiter.check("a") == 0
    assert [limiter.check("a") for _ in range(3)] == [None, None, None]
    now[0] = 10.0
    assert limiter.check("a") == 3
    assert limiter.check("a") is None


def test_the_limiter_memory_is_bounded() -> None:
    limiter = RepeatLimiter(interval=10.0, max_keys=2, clock=lambda: 0.0)
    for key in range(1000):
        assert limiter.check(key) == 0
    assert len(limiter) == 2
    assert limiter.check(999) is None  # the most recent are remembered
    with pytest.raises(ValueError):
        RepeatLimiter(max_keys=0)
