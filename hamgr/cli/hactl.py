"""hactl, the operator CLI: it talks to the agents' REST APIs (see hamgr/agent/api.py).

Which agent: every ``--url URL`` in order, else ``restapi.connect_address`` of the agent
configuration given with ``-c FILE`` (or ``$HAMGR_CONFIG``). hactl asks the first that answers
for ``/cluster`` and reaches each member at the ``api_url`` it publishes there. Credentials for
the changing commands: the configuration's ``restapi.authentication``, or ``--username`` with
the password in ``$HACTL_PASSWORD``. TLS: https agents are checked against ``--cacert`` (else
the configuration's ``restapi.cafile``, else the system's CAs); ``--cert``/``--key`` (else
``restapi.certfile``/``keyfile``) is presented to agents that ask for a client certificate.

Every error is one line on stderr and exit code 1 (usage errors: exit code 2); a network error
names the URL. Commands that move the primary, restart PostgreSQL or rebuild a replica ask for
confirmation on a terminal and refuse without one unless given ``--force``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from hamgr.cli import (
    ctl_editconfig,
    ctl_list,
    ctl_members,
    ctl_pause,
    ctl_query,
    ctl_reinit,
    ctl_remove,
    ctl_restart,
    ctl_show,
    ctl_switch,
    ctl_topology,
    ctl_version,
)
from hamgr.cli.ctl_client import Client, Command, CtlError, basic_auth
from hamgr.cli.ctl_members import cmd_members
from hamgr.config.problems import ConfigError
from hamgr.tls import TlsFiles, client_context, rest_files

# The module docstring is hactl's --help text. This module builds the parser and runs the chosen
# command; each command lives in a ctl_* module that registers it (its options and function),
# with the HTTP client they share in ctl_client.py and the tables in ctl_output.py.


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, exit code 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- Command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """hactl's parser: the common options, and every command's (in the order of --help)."""
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("-c", "--config", help="the agent's configuration file ($HAMGR_CONFIG)")
    common.add_argument("--url", action="append", help="an agent's REST API URL (repeatable)")
    common.add_argument(
        "--username", help="REST API user; the password is read from $HACTL_PASSWORD"
    )
    common.add_argument("--timeout", type=float, help="seconds to wait for an answer (default 10)")
    common.add_argument(
        "--cacert", help="CA file to check https agents with (default: restapi.cafile of -c)"
    )
    common.add_argument(
        "--cert", help="client certificate for agents that ask for one (default: restapi.certfile)"
    )
    common.add_argument("--key", help="the client certificate's key (default: restapi.keyfile)")
    parser = _Parser(prog="hactl", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, run: Command, help: str, **options: Any) -> argparse.ArgumentParser:
        parents = options.pop("parents", [common])
        p = sub.add_parser(name, help=help, description=help, parents=parents, **options)
        p.set_defaults(run=run)
        return p

    for module in (ctl_list, ctl_switch, ctl_pause, ctl_show, ctl_editconfig, ctl_restart):
        module.register(command)
    ctl_reinit.register(command)
    ctl_members.register(command, common)  # its add and remove take the common options too
    for extra in (ctl_topology, ctl_query, ctl_version, ctl_remove):
        extra.register(command)
    return parser


def _ssl_context(a: argparse.Namespace, files: TlsFiles) -> ssl.SSLContext | bool:
    """The TLS context for https agents: --cacert/--cert/--key over the configuration's
    ``restapi`` files; True (the system's CAs, no client certificate) when none is given."""
    files = TlsFiles(
        getattr(a, "cert", None) or files.certfile,
        getattr(a, "key", None) or files.keyfile,
        getattr(a, "cacert", None) or files.cafile,
    )
    if getattr(a, "key", None) and not getattr(a, "cert", None):
        raise CtlError("--key needs --cert")
    if files == TlsFiles():
        return True
    try:
        return client_context(files)
    except (OSError, ssl.SSLError) as e:
        raise CtlError(
            f"cannot load the TLS files ({files.certfile}, {files.cafile}): {e}"
        ) from None


def _targets(a: argparse.Namespace) -> tuple[list[str], str | None]:
    """The agents' URLs and the credentials, from the options and the configuration file."""
    urls: list[str] = list(getattr(a, "url", None) or [])
    auth: str | None = None
    a.tls_files = TlsFiles()
    path = getattr(a, "config", None) or os.environ.get("HAMGR_CONFIG")
    if path:
        from hamgr.config import load_config

        try:
            config = load_config(path, resolve=False)
        except ConfigError as e:
            raise CtlError(f"{path}: {'; '.join(e.problems)}") from None
        api = config.restapi
        if api.certfile is not None:
            a.tls_files = rest_files(api)
        if not urls:
            urls = [f"{'https' if api.certfile else 'http'}://{api.connect_address}"]
        if api.authentication is not None:
            auth = basic_auth(*api.authentication.credentials())
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise CtlError(f"--url: expected http://host:port or https://host:port, got {url!r}")
    if not urls:
        raise CtlError("which agent? give --url URL or -c CONFIG (or set $HAMGR_CONFIG)")
    username = getattr(a, "username", None)
    if username:
        password = os.environ.get("HACTL_PASSWORD")
        if password is None:
            if not sys.stdin.isatty():
                raise CtlError("--username needs the password in $HACTL_PASSWORD")
            password = getpass.getpass(f"Password for {username}: ")
        auth = basic_auth(username, password)
    return urls, auth


async def _run(a: argparse.Namespace) -> None:
    before = getattr(a, "before_agents", None)  # e.g. remove, which talks to the store
    if before is not None and await before(a):
        return
    urls, auth = _targets(a)
    a.urls = urls  # for a command that asks again (list --watch)
    connector = aiohttp.TCPConnector(ssl=_ssl_context(a, a.tls_files))
    has_cert = bool(getattr(a, "cert", None) or a.tls_files.certfile)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(session, auth, a.timeout, has_cert)
        if a.run is cmd_members:
            # The store's membership matters most while the cluster view may not be readable
            # (a member lost, an election): ask the agent for it alone.
            url, store = await client.find_cluster(urls, "/store/members")
            await a.run(client, url, store, a)
            return
        url, cluster = await client.find_cluster(urls)
        await a.run(client, url, cluster, a)


def main(argv: list[str] | None = None) -> int:
    """Run hactl; returns the exit code (0 done, 1 failed, 2 usage error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already reported on one line
        return e.code if isinstance(e.code, int) else 2
    args.timeout_given = hasattr(args, "timeout")
    args.timeout = getattr(args, "timeout", 10.0)
    if not args.timeout > 0:
        print("hactl: error: --timeout must be > 0", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run(args))
    except CtlError as e:
        print(f"hactl: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hactl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
