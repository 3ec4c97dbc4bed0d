"""What every hactl command uses to talk to the agents: the HTTP client (every failure one
:class:`CtlError` line that names the URL), member URLs, and the confirmation question.

hamgr/cli/hactl.py builds the parser and the client; each command lives in a ``ctl_*`` module
and is a :data:`Command`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp


class CtlError(Exception):
    """Ends hactl with this one line on stderr and exit code 1."""


def _why(error: OSError) -> str:
    if isinstance(error, socket.gaierror) or not error.errno:
        return error.strerror or str(error)
    return os.strerror(error.errno)


def basic_auth(username: str, password: str) -> str:
    """The ``Authorization`` header value for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def base_url(api_url: str) -> str:
    """``http://host:port`` of a published api_url (which may carry a path)."""
    parts = urlsplit(api_url)
    return f"{parts.scheme}://{parts.netloc}"


class Client:
    """HTTP calls to agents, turning every failure into one CtlError line that names the URL."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth: str | None,
        timeout: float,
        has_client_cert: bool = False,
    ) -> None:
        self.session = session
        self.auth = auth
        self.timeout = timeout
        self.has_client_cert = has_client_cert

    async def call(
        self, method: str, base: str, path: str, body: Any = None, timeout: float | None = None
    ) -> Any:
        """The JSON answer of a 2xx response; CtlError for anything else."""
        url = base.rstrip("/") + path
        wait = timeout or self.timeout
        try:
            async with self.session.request(
                method,
                url,
                json=body,
                headers={"Authorization": self.auth} if self.auth and method != "GET" else None,
                timeout=aiohttp.ClientTimeout(total=wait),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientConnectorCertificateError as e:
            raise CtlError(
                f"{url}: the agent's TLS certificate is not trusted ({e.certificate_error}); "
                "give the cluster CA with --cacert (or restapi.cafile in -c FILE)"
            ) from None
        except aiohttp.ClientConnectorSSLError as e:
            raise CtlError(
                f"{url}: TLS handshake failed ({e.os_error}); an agent with "
                "restapi.verify_client required needs --cert and --key"
            ) from None
        except aiohttp.ClientConnectorError as e:
            raise CtlError(f"{url}: cannot connect ({_why(e.os_error)})") from None
        except TimeoutError:
            raise CtlError(f"{url}: no answer within {wait:g} s") from None
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as e:
            # Over TLS 1.3 an agent that requires a client certificate drops the connection
            # after the handshake: say so rather than only "reset by peer".
            hint = (
                " (an agent with restapi.verify_client required wants --cert and --key)"
                if url.startswith("https:") and not self.has_client_cert
                else ""
            )
            raise CtlError(f"{url}: {type(e).__name__}: {e}{hint}") from None
        except (aiohttp.ClientError, ValueError) as e:
            raise CtlError(f"{url}: {type(e).__name__}: {e}") from None
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError:
            data = text
        if status // 100 == 2:
            return data
        error = data.get("error") if isinstance(data, dict) else None
        message = str(error or data or "").strip().replace("\n", " ")
        hint = ""
        if status == 401:
            hint = " (set restapi.authentication in -c FILE, or --username and $HACTL_PASSWORD)"
        raise CtlError(f"{method} {url}: {status} {message}{hint}")

    async def find_cluster(
        self, urls: Sequence[str], path: str = "/cluster"
    ) -> tuple[str, dict[str, Any]]:
        """The first agent that answers ``path`` (``/cluster``), and its answer."""
        problems = []
        for url in urls:
            try:
                return url, await self.call("GET", url, path)
            except CtlError as e:
                problems.append(str(e))
        if len(problems) == 1:
            raise CtlError(problems[0])
        raise CtlError("no agent answered: " + "; ".join(problems))


def member_url(cluster: dict[str, Any], name: str) -> str:
    """The base URL of member ``name`` (CtlError naming the members if there is none)."""
    for m in cluster["members"]:
        if m["name"] == name:
            return base_url(m["api_url"])
    names = ", ".join(m["name"] for m in cluster["members"]) or "none"
    raise CtlError(f"no member named {name} in cluster {cluster['scope']} (members: {names})")


def confirm(question: str, force: bool) -> None:
    """Ask on a terminal; without one, refuse unless ``force``."""
    if force:
        return
    if not sys.stdin.isatty():
        raise CtlError(f"{question}: not confirmed (stdin is not a terminal); add --force")
    try:
        answer = input(f"{question} [y/N]: ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise CtlError("aborted: nothing changed")


Command = Callable[[Client, str, dict[str, Any], argparse.Namespace], Coroutine[Any, Any, None]]
"""A hactl command: run with the client, the answering agent's URL, its ``/cluster`` answer
(``/store/members`` for ``hactl members``) and the parsed arguments."""
