"""RaftNode.stop() called while start() is still opening storage and the transport: it waits
for the start to end and then tears everything down, so no driver task, ticker or listening
socket outlives the stopped node (before, start() went on to open them after stop returned)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from hamgr.raft.server.node import RaftNode

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("steps", [1, 2, 5])
async def test_stop_during_start_leaves_nothing_running(tmp_path: Path, steps: int) -> None:
    port = _free_port()
    node = RaftNode(
        1, tmp_path / "n1", "stop-while-starting", b"s" * 32, (HOST, port), None, {},
        tick_interval=0.03, election_tick=10, request_timeout=2.0,
    )  # fmt: skip
    starting = asyncio.create_task(node.start())
    for _ in range(steps):  # let start() get that far into opening storage
        await asyncio.sleep(0)
    assert node.state == "starting"
    await node.stop()
    assert starting.done(), "stop() returned while start() was still running"
    assert node.state == "stopped"
    assert all(t.done() for t in node._tasks)
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=1.0).close()
