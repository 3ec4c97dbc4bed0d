"""What every route module of the agent's REST API answers a failure with.

A handler raises :class:`HttpError` (or answers :func:`error_response` itself); the middleware
of hamgr/agent/api.py turns it, and every other failure, into ``{"error": "<message>"}`` with
its status code.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


class HttpError(Exception):
    """An answer other than success, with the message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status, headers=headers)
