"""`hamgr healthcheck --config FILE`: ask this host's agent one health path, exit 0 on 200.

For container and service-manager health checks, which cannot be told TLS details: it reads the
agent's configuration (with HAMGR_* overrides, as the agent), dials ``restapi.listen`` on the
loopback address when it listens on all addresses, and speaks https when ``restapi.certfile`` is
set, checking the agent's certificate against ``restapi.cafile`` and presenting the member's
own certificate (an agent with ``verify_client: required`` asks for one). Host names are not
checked: the loopback address is not one the certificate names, and the CA signature is what
tells this agent's certificate from any other.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp

from hamgr.config import ConfigError, load_config, split_address
from hamgr.config.schema import RestApiConfig
from hamgr.tls import client_context, rest_files

__all__ = ["add_arguments", "check", "local_url", "main"]

_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def local_url(rest: RestApiConfig, path: str) -> str:
    """The URL of `path` on this host's agent (``restapi.listen``, loopback for all-addresses)."""
    host, port = split_address(rest.listen)
    host = _LOOPBACK.get(host, host)
    scheme = "https" if rest.certfile else "http"
    return f"{scheme}://[{host}]:{port}{path}" if ":" in host else f"{scheme}://{host}:{port}{path}"


async def check(rest: RestApiConfig, path: str = "/liveness", timeout: float = 2.0) -> int:
    """The HTTP status of `path` on this host's agent. Raises aiohttp.ClientError, TimeoutError,
    OSError (TLS files) when there is no answer."""
    ctx = client_context(rest_files(rest), check_hostname=False) if rest.certfile else False
    conn = aiohttp.TCPConnector(ssl=ctx)
    async with (
        aiohttp.ClientSession(connector=conn) as session,
        session.get(local_url(rest, path), timeout=aiohttp.ClientTimeout(total=timeout)) as resp,
    ):
        return resp.status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` (required), ``--path`` (default /liveness), ``--timeout``."""
    parser.add_argument("--config", required=True, help="the agent's YAML configuration file")
    parser.add_argument("--path", default="/liveness", help="the health path (default /liveness)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")


def main(args: argparse.Namespace) -> int:
    """0 when the agent answers 200, 1 otherwise (the reason on stderr)."""
    try:
        rest = load_config(args.config, resolve=False).restapi
        status = asyncio.run(check(rest, args.path, args.timeout))
    except ConfigError as exc:
        print(f"hamgr healthcheck: {args.config}: {'; '.join(exc.problems)}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        print(f"hamgr healthcheck: no answer: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"hamgr healthcheck: {args.path} answered {status}", file=sys.stderr)
        return 1
    return 0
