"""PendingRequests (hamgr/raft/server/pending.py): a request whose caller gave up (timed out or
cancelled) still ends cleanly when the node fails everything, without asyncio reporting "Future
exception was never retrieved" for it."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from hamgr.raft.server.pending import PendingRequests


async def _abandon(pending: PendingRequests, how: str) -> list[dict[str, Any]]:
    """Start a wait on a write, abandon it (`how`), fail everything; what asyncio reported."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    fut: asyncio.Future[Any] = loop.create_future()
    pending.enqueue(b"x", fut)
    waiter = asyncio.create_task(pending.wait(fut, "put", 0.05 if how == "timeout" else 30.0))
    await asyncio.sleep(0)
    if how == "cancel":
        waiter.cancel()
    with pytest.raises((asyncio.CancelledError, TimeoutError)):
        await waiter
    pending.fail_all(RuntimeError("node stopped"))
    await asyncio.sleep(0)  # done-callbacks run
    del fut, waiter
    gc.collect()
    return reported


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_an_abandoned_wait_leaves_no_unretrieved_exception(how: str) -> None:
    reported = await _abandon(PendingRequests(1, 16), how)
    assert not [r for r in reported if "never retrieved" in str(r.get("message"))], reported
