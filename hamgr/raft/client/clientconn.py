"""One pipelined connection from a `StoreClient` to a member: requests go out tagged with an id,
answers are matched back to their callers in any order (see `hamgr.raft.client.storeclient`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

from hamgr.raft.errors import InvalidRequestError
from hamgr.raft.net.framing import ConnectionClosed, FrameKind, ProtocolError
from hamgr.raft.net.handshake import AuthenticatedConnection, format_address
from hamgr.raft.net.rpc import (
    Call,
    ErrorCode,
    ErrorInfo,
    Request,
    decode_response,
    encode_request,
    op_of,
)
from hamgr.raft.net.rpcbase import Address, RpcOp
from hamgr.raft.net.rpcresults import decode_result

__all__ = ["Channel", "LostError", "NotSentError"]


class NotSentError(Exception):
    """The connection was unusable before the request left: nothing was sent."""


class LostError(Exception):
    """The connection broke after the request was sent: its outcome is unknown."""


class Channel:
    """One authenticated connection to a member, with every request pending on it by id."""

    def __init__(
        self,
        conn: AuthenticatedConnection,
        endpoint: Address,
        max_request_size: int,
        max_response_size: int,
    ) -> None:
        self.conn = conn
        self.endpoint = endpoint
        self._max_request_size = max_request_size
        self._max_response_size = max_response_size
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[RpcOp, asyncio.Future[tuple[ErrorInfo | None, Any]]]] = {}
        self.failure: BaseException | None = None
        self._reader = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"store-client-{format_address(endpoint)}"
        )

    @property
    def usable(self) -> bool:
        return self.failure is None and not self.conn.is_closing()

    async def call(self, call: Call) -> tuple[ErrorInfo | None, Any]:
        """Send one request and wait for its answer: (error, None) or (None, typed result)."""
        if not self.usable:
            raise NotSentError(f"connection to {format_address(self.endpoint)} is closed")
        op = op_of(call)
        rid = next(self._ids)
        payload = encode_request(Request(rid, call))
        if len(payload) > self._max_request_size:
            raise InvalidRequestError(
                f"{op.value}: the request is {len(payload)} bytes, more than the "
                f"{self._max_request_size} a member accepts",
                ErrorCode.BAD_REQUEST.value,
            )
        fut: asyncio.Future[tuple[ErrorInfo | None, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[rid] = (op, fut)
        try:
            try:
                await self.conn.send(FrameKind.CLIENT_REQUEST, payload)
            except (OSError, ConnectionError) as exc:
                raise LostError(
                    f"connection to {format_address(self.endpoint)} lost: {exc}"
                ) from exc
            return await fut
        finally:
            self._pending.pop(rid, None)

    async def _read_loop(self) -> None:
        reason: BaseException
        try:
            while True:
                kind, payload = await self.conn.read_frame()
                if kind is not FrameKind.CLIENT_RESPONSE:
                    raise ProtocolError(f"unexpected {kind.name} frame from the member")
                response = decode_response(payload, max_size=self._max_response_size)
                entry = self._pending.get(response.id)
                if entry is None:
                    if response.id == 0 and response.error is not None:
                        raise ProtocolError(f"member closed the connection: {response.error}")
                    continue  # the answer to a call that gave up waiting
                op, fut = entry
                if fut.done():
                    continue
                if response.error is not None:
                    fut.set_result((response.error, None))
                else:
                    assert response.body is not None
                    fut.set_result((None, decode_result(op, response.body)))
        except asyncio.CancelledError:
            reason = ConnectionClosed("client closed")
        except Exception as exc:  # closed, protocol or format error: this connection is done
            reason = exc
        self.failure = reason
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(
                    LostError(f"connection to {format_address(self.endpoint)}: {reason}")
                )
        await self.conn.close()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
