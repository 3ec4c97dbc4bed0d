"""AuthenticatedConnection.send: frames sent by many tasks in one loop turn leave in one write,
in order, and are written by the time each send returns; real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hamgr.raft.net.framing import FrameKind, encode_frame
from hamgr.raft.net.handshake import (
    AuthenticatedConnection,
    AuthenticatedServer,
    ClusterAuth,
    open_authenticated,
    serve_authenticated,
)

CLUSTER = "coalesce-test"
SECRET = b"s3cret-for-coalescing-tests-0123"
WAIT = 10.0


class Receiver:
    """A member-side endpoint that records every frame it receives."""

    def __init__(self) -> None:
        self.frames: list[tuple[FrameKind, bytes]] = []
        self.changed = asyncio.Event()
        self.server: AuthenticatedServer | None = None

    async def handle(self, conn: AuthenticatedConnection) -> None:
        try:
            while True:
                self.frames.append(await conn.read_frame())
                self.changed.set()
        except Exception:
            pass

    async def wait_for(self, count: int) -> list[tuple[FrameKind, bytes]]:
        async with asyncio.timeout(WAIT):
            while len(self.frames) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.frames


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Receiver, AuthenticatedConnection]]:
    receiver = Receiver()
    receiver.server = await serve_authenticated(
        "127.0.0.1", 0, ClusterAuth(CLUSTER, 1, SECRET), receiver.handle
    )
    conn = await open_authenticated(
        *receiver.server.address, ClusterAuth(CLUSTER, 2, SECRET), expect_peer=1
    )
    yield receiver, conn
    await conn.close()
    await receiver.server.close()


def count_writes(conn: AuthenticatedConnection) -> list[int]:
    """Record the size of every write the connection makes (the real write still happens)."""
    sizes: list[int] = []
    real_write: Callable[[Any], None] = conn.writer.write

    def write(data: Any) -> None:
        sizes.append(len(data))
        real_write(data)

    conn.writer.write = write  # type: ignore[method-assign]
    return sizes


async def test_frames_sent_in_one_loop_turn_leave_in_one_write_in_order(
    pair: tuple[Receiver, AuthenticatedConnection],
) -> None:
    receiver, conn = pair
    writes = count_writes(conn)
    payloads = [b"answer-%03d" % n for n in range(50)]
    await asyncio.gather(*(conn.send(FrameKind.CLIENT_RESPONSE, p) for p in payloads))
    assert writes == [sum(len(encode_frame(FrameKind.CLIENT_RESPONSE, p)) for p in payloads)]
    frames = await receiver.wait_for(50)
    assert frames == [(FrameKind.CLIENT_RESPONSE, p) for p in payloads]


async def test_a_frame_is_written_when_send_returns(
    pair: tuple[Receiver, AuthenticatedConnection],
) -> None:
    receiver, conn = pair
    writes = count_writes(conn)
    await conn.send(FrameKind.CLIENT_REQUEST, b"first")
    assert len(writes) == 1
    conn.writer.write(encode_frame(FrameKind.CLIENT_REQUEST, b"second"))  # bypasses the queue
    await conn.send_encoded([encode_frame(FrameKind.CLIENT_REQUEST, b"third")])
    frames = await receiver.wait_for(3)
    assert [p for _, p in frames] == [b"first", b"second", b"third"]


async def test_a_large_batch_is_written_at_once(
    pair: tuple[Receiver, AuthenticatedConnection],
) -> None:
    receiver, conn = pair
    writes = count_writes(conn)
    big = bytes(AuthenticatedConnection.FLUSH_BYTES)
    sending = asyncio.ensure_future(conn.send(FrameKind.CLIENT_RESPONSE, big))
    await asyncio.sleep(0)  # the task runs up to its drain: the write happened already
    assert writes == [len(encode_frame(FrameKind.CLIENT_RESPONSE, big))]
    await sending
    assert (await receiver.wait_for(1))[0] == (FrameKind.CLIENT_RESPONSE, big)


async def test_send_on_a_closed_connection_raises(
    pair: tuple[Receiver, AuthenticatedConnection],
) -> None:
    _, conn = pair
    await conn.close()
    with pytest.raises(ConnectionError):
        await conn.send(FrameKind.CLIENT_REQUEST, b"too late")
