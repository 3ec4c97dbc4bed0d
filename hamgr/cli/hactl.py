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
import base64
import datetime as dt
import getpass
import json
import os
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import yaml

from hamgr.config.problems import ConfigError
from hamgr.tls import TlsFiles, client_context, rest_files

MB = 1 << 20
_COLUMNS = ("Member", "Host", "Role", "State", "TL", "Lag in MB")


class CtlError(Exception):
    """Ends hactl with this one line on stderr and exit code 1."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, exit code 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- Talking to agents ----------------------------------------------------------------------


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


# --- Output ---------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A patronictl-style table; ``title`` sits in the top border."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    top = border
    if title and len(title) + 4 <= len(border):
        top = f"+ {title} " + border[len(title) + 3 :]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [top] if top != border else [title, border]
    out += [line(list(headers)), border, *(line(r) for r in cells), border]
    return "\n".join(out)


def _lag_mb(member: dict[str, Any]) -> object:
    if member["role"] in ("leader", "standby_leader"):
        return None
    return "unknown" if member["lag"] is None else round(member["lag"] / MB)


def list_rows(cluster: dict[str, Any], reasons: bool) -> list[dict[str, Any]]:
    """One row per member, keyed by the table's column names.

    As patronictl, a "Pending restart" column appears when some member's PostgreSQL waits for
    a restart to take a changed parameter: ``*`` and the parameters' names on those members.
    """
    pending = any(m.get("pending_restart") for m in cluster["members"])
    rows = []
    for m in cluster["members"]:
        row = {
            "Member": m["name"],
            "Host": f"[{m['host']}]:{m['port']}"
            if ":" in m["host"]
            else f"{m['host']}:{m['port']}",
            "Role": str(m["role"]).replace("_", " ").title(),
            "State": m["state"],
            "TL": m["timeline"],
            "Lag in MB": _lag_mb(m),
        }
        if pending:
            names = m.get("pending_restart_reason") or []
            mark = f"* ({', '.join(names)})" if names else "*"
            row["Pending restart"] = mark if m.get("pending_restart") else ""
        if any(x.get("scheduled_restart") for x in cluster["members"]):
            planned = m.get("scheduled_restart") or {}
            row["Scheduled restart"] = planned.get("schedule") or ""
        if reasons:
            row["Reason"] = m["reason"]
        rows.append(row)
    return rows


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def render(rows: list[dict[str, Any]], fmt: str, title: str = "") -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(rows, sort_keys=False, default_flow_style=False).rstrip()
    headers = list(rows[0]) if rows else []
    return table(headers, [list(r.values()) for r in rows], title) if rows else "(none)"


# --- Commands -------------------------------------------------------------------------------

Command = Callable[[Client, str, dict[str, Any], argparse.Namespace], Coroutine[Any, Any, None]]


async def cmd_list(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    rows = list_rows(cluster, a.reasons)
    if a.format != "pretty":
        print(render([{"Cluster": cluster["scope"], **r} for r in rows], a.format))
        return
    print(render(rows, "pretty", f"Cluster: {cluster['scope']}"))
    leader = cluster["leader"]
    if leader:
        print(f" Leader: {leader} (fencing token {cluster['fence_token']})")
    else:
        print(" Leader: none")
    if cluster["pause"]:
        print(" Maintenance mode: on")
    fencer = next((m.get("fencer") for m in cluster["members"] if m["name"] == leader), None)
    if fencer:
        why = " (paused: PostgreSQL is left alone)" if cluster["pause"] else ""
        print(f" Fencer: {fencer}{why}")
    req = cluster["switchover"]
    if req:
        at = f" at {_when(req['scheduled_at'])}" if req["scheduled_at"] else ""
        who = " ".join(
            f"{word} {req[key]}"
            for word, key in (("from", "leader"), ("to", "candidate"))
            if req[key]
        )
        print(f" Pending {req['kind']}: {who}{at}")


async def cmd_switchover(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    leader = a.leader or cluster["leader"]
    if not leader:
        raise CtlError("the cluster has no leader: use hactl failover --candidate NAME")
    body: dict[str, Any] = {"leader": leader}
    if a.candidate:
        body["candidate"] = a.candidate
    if a.scheduled:
        body["scheduled_at"] = a.scheduled
    to = f" to {a.candidate}" if a.candidate else ""
    when = f" at {a.scheduled}" if a.scheduled else " now"
    confirm(f"Switch over cluster {cluster['scope']} from {leader}{to}{when}?", a.force)
    answer = await client.call("POST", url, "/switchover", body, timeout=a.timeout + 60)
    print(answer["message"])


async def cmd_failover(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    current = cluster["leader"]
    what = f"demoting {current}" if current else "with no leader now"
    if current and any(m.get("role") == "standby_leader" for m in cluster["members"]):
        what = f"{current} hands the standby leader's role over; nobody is promoted"
    if cluster["pause"]:
        what = "paused: nobody is demoted"
        if a.force_paused:
            what += (
                f"; FORCED: if {current or 'the old primary'} still runs PostgreSQL as primary, "
                f"it and {a.candidate} both accept writes: two primaries"
            )
    confirm(f"Fail over cluster {cluster['scope']} to {a.candidate} ({what})?", a.force)
    force = a.ignore_sync or (a.force_paused and cluster["pause"])
    answer = await client.call(
        "POST",
        url,
        "/failover",
        {"candidate": a.candidate, **({"force": True} if force else {})},
        timeout=a.timeout + 60,
    )
    print(answer["message"])


async def _set_pause(client: Client, url: str, cluster: dict[str, Any], pause: bool) -> None:
    if cluster["pause"] == pause:
        raise CtlError(f"cluster {cluster['scope']} is already {'paused' if pause else 'resumed'}")
    await client.call("PATCH", url, "/config", {"pause": pause})
    print(f"Success: cluster management is {'paused' if pause else 'resumed'}")


async def cmd_pause(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    await _set_pause(client, url, cluster, True)


async def cmd_resume(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    await _set_pause(client, url, cluster, False)


async def cmd_history(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    lines = await client.call("GET", url, "/history")  # Patroni's history lines
    rows = [
        {"TL": tl, "LSN": lsn, "Reason": why, "Timestamp": at, "New Leader": new}
        for tl, lsn, why, at, new in lines
    ]
    print(render(rows, a.format))


async def cmd_show_config(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    settings = await client.call("GET", url, "/config")
    print(yaml.safe_dump(settings, sort_keys=True, default_flow_style=False).rstrip())


def settings_patch(assignments: Sequence[str]) -> dict[str, Any]:
    """``["ttl=10", "parameters.work_mem=64MB"]`` as a merge patch (values read as YAML)."""
    patch: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise CtlError(f"--set: expected key=value (e.g. ttl=10), got {item!r}")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        *parents, last = key.split(".")
        node = patch
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CtlError(f"--set: {key} conflicts with another --set")
        node[last] = value
    return patch


async def cmd_edit_config(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    if not a.set or a.apply or a.replace:
        from hamgr.cli.ctl_editconfig import edit_whole

        await edit_whole(client, url, cluster, a)
        return
    patch = settings_patch(a.set)
    confirm(f"Apply {json.dumps(patch)} to cluster {cluster['scope']}?", a.force)
    settings = await client.call("PATCH", url, "/config", patch)
    print("Configuration changed:")
    print(yaml.safe_dump(settings, sort_keys=True, default_flow_style=False).rstrip())


async def cmd_reinit(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    targets = [(name, member_url(cluster, name)) for name in a.members]
    confirm(
        f"Wipe the data directory of {', '.join(a.members)} and clone it again from the leader?",
        a.force,
    )
    for name, target in targets:
        await client.call("POST", target, "/reinitialize")
        print(f"Success: reinitialize started on {name}")


async def cmd_reload(
    client: Client, url: str, cluster: dict[str, Any], a: argparse.Namespace
) -> None:
    names = a.members or [m["name"] for m in cluster["members"]]
    for name, target in [(n, member_url(cluster, n)) for n in names]:
        await client.call("POST", target, "/reload")
        print(f"{name}: reload scheduled")


def members_rows(store: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per store member (``GET /store/members``), keyed by the table's columns."""
    rows = []
    for m in store["members"]:
        role = m["role"] + (" (Raft leader)" if m["raft_leader"] else "")
        rows.append(
            {
                "Member": m["name"] or "?",
                "Node id": m["node_id"],
                "Role": role,
                "Address": m["address"],
                "Applied": m["applied"] if m["applied"] is not None else "unreachable",
            }
        )
    return rows


async def cmd_members(
    client: Client, url: str, store: dict[str, Any], a: argparse.Namespace
) -> None:
    """``store`` is the agent's ``GET /store/members`` answer (not the cluster view)."""
    action = getattr(a, "members_action", None)
    if action == "add":
        body: dict[str, Any] = {"name": a.name, "address": a.address}
        if a.id is not None:
            body["node_id"] = a.id
        if a.client_address:
            body["client_address"] = a.client_address
        answer = await client.call("POST", url, "/store/members", body, timeout=a.timeout + 10)
        print(answer["message"])
        return
    if action == "remove":
        confirm(f"Remove {a.name} from the store of cluster {store['scope']}?", a.force)
        path = f"/store/members/{quote(a.name, safe='')}"
        answer = await client.call("DELETE", url, path, timeout=a.timeout + 10)
        print(answer["message"])
        return
    rows = members_rows(store)
    fmt = getattr(a, "format", "pretty")
    if fmt != "pretty":
        print(render(rows, fmt))
        return
    print(render(rows, "pretty", f"Store of cluster {store['scope']}"))
    leader = next((r["Member"] for r in rows if r["Role"].endswith("(Raft leader)")), None)
    print(f" Raft leader: {leader or 'none'} (term {store['term']})")


# --- Command line ---------------------------------------------------------------------------


def _scheduled(text: str) -> str | None:
    """``--scheduled``: ISO 8601 (no timezone: local time) or ``now``, as ISO with a timezone."""
    if text.lower() == "now":
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time like 2030-01-31T04:00 or 'now', got {text!r}"
        ) from None
    return (when if when.tzinfo else when.astimezone()).isoformat()


def build_parser() -> argparse.ArgumentParser:
    # Commands in modules of their own, which import this one (so they are imported here).
    from hamgr.cli import ctl_editconfig, ctl_query, ctl_remove, ctl_topology, ctl_version

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

    def fmt(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--format", choices=("pretty", "json", "yaml"), default="pretty")

    p = command("list", cmd_list, "show the members, the leader and the maintenance mode")
    fmt(p)
    p.add_argument("-r", "--reasons", action="store_true", help="add each member's last reason")
    p = command("switchover", cmd_switchover, "move the primary to another member, cleanly")
    p.add_argument("--leader", help="the current leader (default: as the cluster says)")
    p.add_argument("--candidate", help="the member to promote (default: the best replica)")
    p.add_argument("--scheduled", type=_scheduled, help="when: ISO 8601 time, or now")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    p = command("failover", cmd_failover, "promote a named member, even without a leader")
    p.add_argument(
        "--ignore-sync",
        action="store_true",
        help="in synchronous mode, promote a member outside the synchronous set (it may lack "
        "acknowledged commits)",
    )
    p.add_argument(
        "--force-paused",
        action="store_true",
        help="while paused, fail over although the old primary's agent does not confirm that "
        "its PostgreSQL stopped: if it still runs, two primaries accept writes",
    )
    p.add_argument("--candidate", required=True, help="the member to promote")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    command("pause", cmd_pause, "stop automatic failover and PostgreSQL management")
    command("resume", cmd_resume, "resume automatic failover and PostgreSQL management")
    fmt(command("history", cmd_history, "show the cluster's timeline history"))
    command("show-config", cmd_show_config, "show the cluster's dynamic settings")
    p = command("edit-config", cmd_edit_config, "change the cluster's dynamic settings")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. ttl=10, pause=true")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    ctl_editconfig.add_arguments(p)  # --apply, --replace, -q; without them: $EDITOR
    from hamgr.cli.ctl_restart import add_commands as add_restart_commands  # it imports this module

    add_restart_commands(command)
    p = command("reinit", cmd_reinit, "rebuild replicas: empty their data and clone the leader")
    p.add_argument("members", nargs="+", metavar="MEMBER")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    p = command("reload", cmd_reload, "make the agents re-read their configuration")
    p.add_argument("members", nargs="*", metavar="MEMBER", help="default: every member")
    p = command(
        "members",
        cmd_members,
        "show the store's members (voters, learners, Raft leader, applied index); change them",
    )
    fmt(p)
    change = p.add_subparsers(dest="members_action", metavar="ACTION")
    add = change.add_parser(
        "add",
        parents=[common],
        help="add a host to the store as a learner (a voter by itself once caught up)",
        description="Add a host to the store as a learner; the Raft leader makes it a voter "
        "once it has caught up. Start its agent with store.raft.join true and the node id "
        "printed here; it clones PostgreSQL once it votes.",
    )
    add.add_argument("name", help="the new member's name (its configuration's name)")
    add.add_argument("address", help="its store.raft.advertise address, host:port")
    add.add_argument("--id", type=int, help="its store.raft.node_id (default: the next unused)")
    add.add_argument("--client-address", help="its store client address (default: port + 100)")
    rm = change.add_parser(
        "remove",
        parents=[common],
        help="remove a member (a dead host) from the store",
        description="Remove a member from the store; refused when the voters left that "
        "answer would be no majority.",
    )
    rm.add_argument("name", help="the member's name (or its node id)")
    rm.add_argument("--force", action="store_true", help="do not ask for confirmation")
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
    # Run as hamgr.cli.hactl, not __main__: the command modules import it (and its CtlError).
    from hamgr.cli.hactl import main as ctl_main

    sys.exit(ctl_main())
