"""`hamgr store-ctl`: a small operator tool that talks to the store like any client.

Either point it at a member's configuration (``--config FILE``: endpoints, cluster id, secret
and TLS come from there) or name them (``--endpoints h:p,h:p --secret-file F --cluster-id ID``).
Commands: ``put KEY VALUE [--lease ID]``, ``get KEY [--prefix] [--limit N] [--serializable]``,
``del KEY [--prefix]``, ``lease ID`` (a lease's granted TTL, the time left on the Raft
leader's clock and the keys attached to it) and ``status`` (every endpoint). Answers are
printed one JSON object a line; keys and values are shown as UTF-8 text (undecodable bytes
escaped as \\xNN).
Exit status: 0 done, 1 the store refused or could not answer, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used, so that building hamgr's parser stays cheap
    from hamgr.raft.client.storeclient import StoreClient
    from hamgr.raft.kv.kvresults import KeyValue

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options and sub-commands of `hamgr store-ctl`."""
    parser.add_argument("--config", help="a member's configuration file (gives everything)")
    parser.add_argument("--endpoints", help="client addresses: host:port,host:port")
    parser.add_argument("--secret-file", help="file holding the cluster secret")
    parser.add_argument("--cluster-id", help="the cluster id (store.raft.cluster_id or scope)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    commands = parser.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)
    put = commands.add_parser("put", help="set a key")
    put.add_argument("key")
    put.add_argument("value")
    put.add_argument("--lease", type=int, default=0, help="attach to this lease id")
    get = commands.add_parser("get", help="read a key, or every key under a prefix")
    get.add_argument("key")
    get.add_argument("--prefix", action="store_true")
    get.add_argument("--limit", type=int, default=0)
    get.add_argument("--serializable", action="store_true", help="local read, maybe stale")
    delete = commands.add_parser("del", help="delete a key, or every key under a prefix")
    delete.add_argument("key")
    delete.add_argument("--prefix", action="store_true")
    lease = commands.add_parser("lease", help="a lease's granted TTL, time left and keys")
    lease.add_argument("lease_id", type=int)
    commands.add_parser("status", help="the state of every endpoint")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _kv(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": _text(kv.key),
        "value": _text(kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }


def _client(args: argparse.Namespace) -> StoreClient:
    """The client the options describe; raises ConfigError (or ValueError) when they do not."""
    from hamgr.agent.storemember import client_ssl_context, settings_from_config
    from hamgr.config import ConfigError, load_config, split_address
    from hamgr.raft.client.storeclient import StoreClient

    if args.config:
        settings = settings_from_config(load_config(args.config, resolve=False))
        endpoints = [settings.client_advertise] + [
            a for i, a in sorted(settings.client_addresses.items()) if i != settings.node_id
        ]
        ssl_context = None if settings.tls is None else client_ssl_context(settings.tls)
        return StoreClient(
            endpoints,
            args.cluster_id or settings.cluster_id,
            settings.secret,
            timeout=args.timeout,
            ssl_context=ssl_context,
        )
    missing = [
        opt
        for opt, value in (
            ("--endpoints", args.endpoints),
            ("--secret-file", args.secret_file),
            ("--cluster-id", args.cluster_id),
        )
        if not value
    ]
    if missing:
        raise ConfigError([f"give --config, or {', '.join(missing)}"])
    try:
        endpoints = [split_address(e.strip()) for e in args.endpoints.split(",") if e.strip()]
    except ValueError as exc:
        raise ConfigError([f"--endpoints: {exc}"]) from None
    try:
        secret = Path(args.secret_file).read_text(encoding="utf-8").strip().encode()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"--secret-file: cannot read {args.secret_file}: {exc}"]) from None
    return StoreClient(endpoints, args.cluster_id, secret, timeout=args.timeout)


async def _run(client: StoreClient, args: argparse.Namespace) -> list[dict[str, Any]]:
    from hamgr.raft.errors import StoreError

    key = args.key.encode() if hasattr(args, "key") else b""
    async with client:
        if args.ctl_command == "put":
            put = await client.put(key, args.value.encode(), args.lease)
            return [{"revision": put.revision}]
        if args.ctl_command == "get":
            got = await client.get(
                key, prefix=args.prefix, limit=args.limit, serializable=args.serializable
            )
            return [_kv(kv) for kv in got.kvs] + [
                {"revision": got.revision, "count": got.count, "more": got.more}
            ]
        if args.ctl_command == "del":
            deleted = await client.delete(key, args.prefix)
            return [{"revision": deleted.revision, "deleted": deleted.deleted}]
        if args.ctl_command == "lease":
            ttl = await client.lease_ttl(args.lease_id)
            return [
                {
                    "lease": ttl.lease_id,
                    "granted_ttl": ttl.granted_ttl,
                    "remaining": ttl.remaining,
                    "keys": [_text(k) for k in ttl.keys],
                }
            ]
        out: list[dict[str, Any]] = []
        for endpoint, answer in (await client.statuses()).items():
            entry: dict[str, Any] = {"endpoint": f"{endpoint[0]}:{endpoint[1]}"}
            if isinstance(answer, StoreError):
                entry["error"] = str(answer)
            else:
                entry.update(dataclasses.asdict(answer))
            out.append(entry)
        return out


def main(args: argparse.Namespace) -> int:
    """Run one store-ctl command; returns the exit status."""
    from hamgr.config import ConfigError
    from hamgr.raft.errors import StoreError

    try:
        client = _client(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"hamgr store-ctl: {problem}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"hamgr store-ctl: {exc}", file=sys.stderr)
        return 2
    try:
        lines = asyncio.run(_run(client, args))
    except StoreError as exc:
        print(f"hamgr store-ctl: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a key the store cannot take (e.g. empty)
        print(f"hamgr store-ctl: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(json.dumps(line))
    status_failed = args.ctl_command == "status" and any("error" in line for line in lines)
    return 1 if status_failed else 0
