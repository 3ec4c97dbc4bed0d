"""A store member with TLS and one without cannot talk, and both say why (real sockets on
127.0.0.1, port 0; certificates from `hamgr certs`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from hamgr.agent.storemember import client_ssl_context, server_ssl_context
from hamgr.cli.certs import init, parse_members
from hamgr.raft.net.handshake import (
    AuthenticatedConnection,
    ClusterAuth,
    HandshakeError,
    open_authenticated,
    serve_authenticated,
)

SECRET = b"s" * 24


async def _idle(conn: AuthenticatedConnection) -> None:
    await asyncio.sleep(0.1)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[str, str, str]:
    init(tmp_path, "x", parse_members("a=127.0.0.1"))
    return (str(tmp_path / "a.crt"), str(tmp_path / "a.key"), str(tmp_path / "ca.crt"))


async def test_a_plain_member_names_a_tls_dialer(
    tls: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve_authenticated("127.0.0.1", 0, ClusterAuth("x", 1, SECRET), _idle)
    try:
        with pytest.raises(OSError):
            await open_authenticated(
                "127.0.0.1",
                server.address[1],
                ClusterAuth("x", 2, SECRET),
                ssl_context=client_ssl_context(tls),
                server_hostname="127.0.0.1",
                timeout=2,
            )
        with caplog.at_level(logging.WARNING):
            await asyncio.sleep(0.2)
        assert "the peer speaks TLS and this side does not" in caplog.text
    finally:
        await server.close()


async def test_a_plain_dialer_of_a_tls_member_is_told_to_set_tls(
    tls: tuple[str, str, str],
) -> None:
    server = await serve_authenticated(
        "127.0.0.1", 0, ClusterAuth("x", 1, SECRET), _idle, ssl_context=server_ssl_context(tls)
    )
    try:
        with pytest.raises(HandshakeError, match=r"^peer closed .* dials without TLS"):
            await open_authenticated(
                "127.0.0.1", server.address[1], ClusterAuth("x", 2, SECRET), timeout=2
            )
    finally:
        await server.close()
