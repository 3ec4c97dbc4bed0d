"""`hamgr store --config FILE`: one member of the Raft store as a process of its own.

Reads the agent's configuration (the ``store.raft`` section and ``log``), opens the member's
data directory, serves Raft on ``store.raft.listen`` and clients on ``store.raft.client_listen``
(`hamgr.raft.server.rpcserver`), and prints one line on stdout when both listen::

    hamgr store: member 2 serving raft on 127.0.0.1:7002, clients on 127.0.0.1:7102

It writes its name record (``hactl members`` shows names from these; `hamgr.agent.storeadmin`) once
the store takes writes, and under systemd sends READY and watchdog beats. This is also what
``hamgr agent`` runs for a witness (a configuration without a ``postgresql`` section).
It logs to stderr. SIGTERM or SIGINT stops it cleanly (exit 0): a leader first hands its
leadership to a caught-up peer (so the others need no election), the client listener closes,
then the member (pending requests fail, storage is closed). A member whose storage fails exits
with status 1; a configuration problem exits with status 2 after listing every problem.

`settings_from_config` is the pure part (configuration in, `StoreSettings` out); `serve` runs a
member until told to stop. This is the only place where the store meets `hamgr.config`:
`hamgr.raft` knows nothing of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from hamgr.agent.gcpolicy import tune_gc
from hamgr.agent.sdnotify import Notifier, NotifyConfigError
from hamgr.agent.storeadmin import register_until_done
from hamgr.agent.storemembers import MemberRecord
from hamgr.config import Config, ConfigError, LogConfig, RaftConfig, load_config, split_address
from hamgr.config.secretfiles import read_secret_file
from hamgr.config.values import long_secret
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.server.node import RaftNode
from hamgr.raft.server.rpcserver import StoreRpcServer

__all__ = [
    "StoreSettings",
    "client_ssl_context",
    "main",
    "member_client",
    "own_record",
    "serve",
    "serve_witness",
    "settings_from_config",
    "setup_logging",
    "store_ssl_contexts",
]

log = logging.getLogger("hamgr.store")

Address = tuple[str, int]
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
ELECTION_TICKS = 10
"""Ticks per election timeout at most: the election timer's resolution is a tenth of it."""


@dataclass(frozen=True)
class StoreSettings:
    """Everything a store member needs to run, read from the configuration."""

    node_id: int
    data_dir: str
    cluster_id: str
    secret: bytes = field(repr=False)
    listen: Address
    advertise: Address
    client_listen: Address
    client_advertise: Address
    peers: dict[int, Address]
    """Node id -> Raft address of the other members."""
    client_addresses: dict[int, Address]
    """Node id -> client address of every member, this one included."""
    tick_interval: float
    """Seconds per Raft tick: the resolution of the election timer (``election_timeout`` / 10,
    or the heartbeat interval when that is shorter)."""
    election_tick: int
    snapshot_entries: int
    heartbeat_tick: int = 1
    """Ticks between two leader heartbeats: ``heartbeat_interval`` in ticks. A heartbeat longer
    than the tick costs fewer messages (and wake-ups) on every member without making the
    election timer coarser, so failure detection keeps its speed."""
    tls: tuple[str, str, str] | None = None
    """(certfile, keyfile, cafile) for mutual TLS, on the Raft and the client port."""
    join: bool = False
    """``store.raft.join``: an empty member waits to be sent the store instead of founding one."""
    scope: str = ""
    name: str = ""
    """The configuration's ``scope`` and ``name``, for this member's name record."""


def _fmt(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_secret(raft: RaftConfig) -> bytes:
    """The cluster secret: ``store.raft.secret``, else the stripped text of ``secret_file``.

    Raises ConfigError naming the key when the file cannot be read or the secret is too short.
    """
    if raft.secret is not None:
        return raft.secret.encode()
    if raft.secret_file is None:
        raise ConfigError(["store.raft.secret: required (or store.raft.secret_file)"])
    secret = read_secret_file(raft.secret_file, "store.raft.secret_file")
    problem = long_secret(secret)
    if problem:
        raise ConfigError([f"store.raft.secret_file: the secret in it {problem}"])
    return secret.encode()


def settings_from_config(config: Config) -> StoreSettings:
    """This member's store settings; raises ConfigError when the store is not the Raft one."""
    raft = config.store.raft
    if config.store.backend != "raft" or raft is None:
        raise ConfigError(
            [f"store.backend: is {config.store.backend}; hamgr store runs the raft backend only"]
        )
    heartbeat = raft.heartbeat_interval
    tick = min(heartbeat, raft.election_timeout / ELECTION_TICKS)
    advertise = split_address(raft.advertise)
    client_listen = split_address(raft.client_listen)
    client_advertise = client_listen
    if client_listen[0] in _WILDCARD_HOSTS:
        client_advertise = (advertise[0], client_listen[1])
    client_addresses = {p.node_id: split_address(p.client_address) for p in raft.peers}
    client_addresses[raft.node_id] = client_advertise
    tls = None
    if raft.tls is not None:
        tls = (raft.tls.certfile, raft.tls.keyfile, raft.tls.cafile)
    return StoreSettings(
        node_id=raft.node_id,
        data_dir=raft.data_dir,
        cluster_id=raft.cluster_id or config.scope,
        secret=read_secret(raft),
        listen=split_address(raft.listen),
        advertise=advertise,
        client_listen=client_listen,
        client_advertise=client_advertise,
        peers={p.node_id: split_address(p.address) for p in raft.peers},
        client_addresses=client_addresses,
        tick_interval=tick,
        election_tick=max(2, round(raft.election_timeout / tick)),
        heartbeat_tick=max(1, round(heartbeat / tick)),
        snapshot_entries=raft.snapshot_entries,
        tls=tls,
        join=raft.join,
        scope=config.scope,
        name=config.name,
    )


def server_ssl_context(tls: tuple[str, str, str]) -> ssl.SSLContext:
    """Mutual TLS, listening side: present our certificate, require one signed by the CA."""
    certfile, keyfile, cafile = tls
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cafile)
    ctx.load_cert_chain(certfile, keyfile)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ssl_context(tls: tuple[str, str, str]) -> ssl.SSLContext:
    """Mutual TLS, dialing side. Members are dialed by address, not by a name in their
    certificate, so the CA signature (plus the secret handshake) is what identifies them."""
    certfile, keyfile, cafile = tls
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    ctx.load_cert_chain(certfile, keyfile)
    ctx.check_hostname = False
    return ctx


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config: LogConfig, format_override: str | None = None) -> None:
    """Log to stderr at the configured level, as text or one JSON object a line
    (`format_override`: the command line's --log-format, which wins over the file)."""
    handler = logging.StreamHandler(sys.stderr)
    if (format_override or config.format) == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)


class MemberStartError(Exception):
    """The store member could not start; the message says why."""


def store_ssl_contexts(settings: StoreSettings) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """The (server, client) contexts of ``store.raft.tls`` (None without it); the client one
    serves the member's Raft links AND the agent's own store client. Raises MemberStartError."""
    if settings.tls is None:
        return None
    try:
        return server_ssl_context(settings.tls), client_ssl_context(settings.tls)
    except (OSError, ssl.SSLError) as exc:
        raise MemberStartError(f"cannot load its TLS files: {exc}") from exc


@contextlib.asynccontextmanager
async def running_member(
    settings: StoreSettings,
    contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
) -> AsyncIterator[tuple[RaftNode, StoreRpcServer]]:
    """A started store member (Raft node and client server), stopped on exit. `contexts`:
    the (server, client) TLS contexts when the caller keeps them (to reload them), else made
    from ``settings.tls`` here.

    Raises MemberStartError when TLS files, storage or either listener fail.
    """
    if contexts is None:
        contexts = store_ssl_contexts(settings)
    server_ssl, client_ssl = contexts if contexts is not None else (None, None)
    node = RaftNode(
        settings.node_id,
        settings.data_dir,
        settings.cluster_id,
        settings.secret,
        settings.listen,
        settings.advertise,
        settings.peers,
        tick_interval=settings.tick_interval,
        election_tick=settings.election_tick,
        heartbeat_tick=settings.heartbeat_tick,
        snapshot_entries=settings.snapshot_entries,
        join=settings.join,
        server_ssl=server_ssl,
        client_ssl=client_ssl,
    )
    server = StoreRpcServer(
        node,
        settings.cluster_id,
        settings.secret,
        client_addresses=dict(settings.client_addresses),
        advertise=settings.client_advertise,
        ssl_context=server_ssl,
    )
    try:
        await node.start()
    except Exception as exc:
        raise MemberStartError(f"cannot start: {exc}") from exc
    try:
        try:
            await server.start(*settings.client_listen)
        except OSError as exc:
            raise MemberStartError(
                f"cannot serve clients on {_fmt(settings.client_listen)}: {exc}"
            ) from exc
        yield node, server
    finally:
        started = time.monotonic()
        moved_to = await node.hand_off_leadership(timeout=node.election_timeout)
        if moved_to is not None:
            log.info("member %d handed store leadership to member %d", settings.node_id, moved_to)
        await server.close()
        await node.stop()
        log.info("member %d stopped in %.2f s", settings.node_id, time.monotonic() - started)


async def serve(
    settings: StoreSettings,
    stop: asyncio.Event,
    ready: Callable[[str], None] = print,
    beat: Callable[[], None] | None = None,
) -> int:
    """Run the member until `stop` is set (exit status 0) or it fails (1).

    `ready` gets the ready line once Raft and the client listener both listen; `beat` is
    called about every half second while the member runs (systemd's watchdog).
    """
    try:
        async with running_member(settings) as (node, server):
            ready(
                f"hamgr store: member {settings.node_id} serving raft on "
                f"{_fmt(node.transport.bound_address)}, clients on {_fmt(server.address)}"
            )
            registered = None
            if settings.name:
                registered = asyncio.create_task(_register(settings, stop))
            try:
                while not stop.is_set():
                    if node.state == "failed":
                        log.critical("member %d failed: %s", settings.node_id, node.failure)
                        return 1
                    if beat is not None:
                        beat()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
            finally:
                if registered is not None:
                    registered.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await registered
            log.info("member %d stopping", settings.node_id)
            return 0
    except MemberStartError as exc:
        log.critical("member %d: %s", settings.node_id, exc)
        return 1


def own_record(settings: StoreSettings) -> MemberRecord:
    """This member's name record (``hactl members`` shows names from these)."""
    return MemberRecord(
        settings.name,
        settings.node_id,
        _fmt(settings.advertise),
        _fmt(settings.client_advertise),
    )


def member_client(settings: StoreSettings, source_host: str | None = None) -> StoreClient:
    """A store client of this member's cluster: its own client address first, then the
    others' (`source_host`: the local address every connection leaves from)."""
    endpoints = [settings.client_advertise, *settings.client_addresses.values()]
    return StoreClient(
        list(dict.fromkeys(endpoints)),
        settings.cluster_id,
        settings.secret,
        ssl_context=None if settings.tls is None else client_ssl_context(settings.tls),
        source_host=source_host,
    )


async def _register(settings: StoreSettings, stop: asyncio.Event) -> None:
    """Write this member's name record once the store takes writes (until `stop`)."""
    async with member_client(settings) as client:
        await register_until_done(client, settings.scope, own_record(settings), stop)


async def _run(settings: StoreSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Under systemd (Type=notify, WatchdogSec, as deploy/systemd/hamgr.service runs a
        # witness): READY once serving, WATCHDOG while the member runs.
        notifier = Notifier.from_env()
    except NotifyConfigError as exc:
        log.error("ignoring systemd's notify socket: %s", exc)
        notifier = None

    def ready(line: str) -> None:
        print(line, flush=True)
        if notifier is not None:
            notifier.ready(status=line)

    def beat() -> None:
        if notifier is not None and notifier.watchdog_timeout is not None:
            notifier.watchdog()

    return await serve(settings, stop, ready, beat)


def serve_witness(settings: StoreSettings) -> int:
    """``hamgr agent`` on a file without a ``postgresql`` section: run the store member only,
    as ``hamgr store`` does, until SIGTERM/SIGINT; returns the exit status."""
    return asyncio.run(_run(settings))


def main(args: argparse.Namespace) -> int:
    """`hamgr store`: load the configuration, run the member; returns the exit status."""
    try:
        config = load_config(args.config, resolve=False)
        settings = settings_from_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"hamgr store: {problem}", file=sys.stderr)
        return 2
    setup_logging(config.log, getattr(args, "log_format", None))
    tune_gc()
    return asyncio.run(_run(settings))
