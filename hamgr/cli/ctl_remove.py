"""``hactl remove CLUSTER``: wipe a cluster's keys (``/hamgr/CLUSTER/...``) from the store.

As patronictl remove, this talks to the store itself, not to an agent: the configuration of
``-c FILE`` (or ``$HAMGR_CONFIG``) gives the store (the embedded Raft store's client
addresses, secret and TLS, or ``store.etcd``) and the scope, and CLUSTER must be that scope.
It lists the keys, then asks for the cluster name to be typed again and for the words
``Yes I am aware``; anything else removes nothing.

Where Patroni asks for the leader's name when the cluster has a leader, hamgr refuses: the
leader key is held by a live agent whose lease keeps its fencer armed, so deleting the key
lets another member take it and promote while the old primary still accepts writes. Stop the
primary's agent (its key goes with its lease within ``ttl``) or let the cluster lose its
leader first. The delete is one transaction guarded by the leader key's absence, so a leader
elected meanwhile also makes it remove nothing. Agents still running write their member keys
again; the command names them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from hamgr.cli.ctl_client import CtlError
from hamgr.config.problems import ConfigError
from hamgr.dcs.base import scope_keys
from hamgr.dcs.common import (
    Compare,
    Delete,
    KvTransport,
    OutcomeUnknown,
    RangeSnapshot,
    StoreRefused,
    StoreUnavailable,
    Target,
)

AWARE = "Yes I am aware"


def transport_for(path: str, timeout: float) -> tuple[str, KvTransport]:
    """The configuration's scope and a store transport built from its ``store`` section."""
    from hamgr.config import load_config

    try:
        config = load_config(path, resolve=False)
    except ConfigError as e:
        raise CtlError(f"{path}: {'; '.join(e.problems)}") from None
    if config.store.backend == "etcd":
        from hamgr.dcs.etcd import EtcdDcs

        etcd = config.store.etcd
        if etcd is None:
            raise CtlError(f"{path}: store.backend is etcd but there is no store.etcd section")
        return config.scope, EtcdDcs.from_config(etcd, config.scope, "hactl").transport
    from hamgr.agent.storemember import client_ssl_context, settings_from_config
    from hamgr.dcs.raft import RaftTransport
    from hamgr.raft.client.storeclient import StoreClient

    try:
        settings = settings_from_config(config)
    except ConfigError as e:
        raise CtlError(f"{path}: {'; '.join(e.problems)}") from None
    endpoints = [settings.client_advertise] + [
        a for i, a in sorted(settings.client_addresses.items()) if i != settings.node_id
    ]
    ssl_context = None if settings.tls is None else client_ssl_context(settings.tls)
    client = StoreClient(
        endpoints, settings.cluster_id, settings.secret, timeout=timeout, ssl_context=ssl_context
    )
    return config.scope, RaftTransport(client)


def describe(scope: str, snap: RangeSnapshot) -> tuple[str | None, list[str], list[str]]:
    """The leader key's holder (None: no leader), the members with a key, and every key."""
    keys = scope_keys(scope)
    leader_kv = snap.get(keys.leader)
    leader = leader_kv.value.decode("utf-8", "replace") if leader_kv else None
    members = [kv.key[len(keys.members) :] for kv in snap.kvs if kv.key.startswith(keys.members)]
    return leader, members, [kv.key for kv in snap.kvs]


def typed_confirmations(scope: str, ask: Callable[[str], str]) -> None:
    """patronictl's two questions: the cluster name, then the words ``Yes I am aware``."""
    if ask("Please confirm the cluster name to remove: ").strip() != scope:
        raise CtlError("the cluster names do not match: nothing removed")
    words = ask(
        f"You are about to remove all information in the store for {scope}, "
        f'please type: "{AWARE}": '
    ).strip()
    if words != AWARE:
        raise CtlError(f'you did not type "{AWARE}" exactly: nothing removed')


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        return ""


async def remove(a: argparse.Namespace, ask: Callable[[str], str] = _ask) -> None:
    """Check, confirm, then delete every key of the cluster in one guarded transaction."""
    path = getattr(a, "config", None) or os.environ.get("HAMGR_CONFIG")
    if not path:
        raise CtlError("remove talks to the store: give the configuration with -c FILE")
    scope, transport = transport_for(path, a.timeout)
    if a.cluster != scope:
        raise CtlError(
            f"cluster {a.cluster} is not the configured scope ({scope} in {path}): nothing removed"
        )
    keys = scope_keys(scope)
    try:
        snap = await transport.range(keys.prefix, prefix=True, timeout=a.timeout)
        leader, members, names = describe(scope, snap)
        if not names:
            raise CtlError(f"cluster {scope} has no keys in the store: nothing to remove")
        if leader is not None:
            raise CtlError(
                f"{leader} holds the leader key of cluster {scope}: refused, because removing "
                f"it lets another member promote while {leader}'s PostgreSQL still accepts "
                f"writes (its lease keeps its fencer armed). Stop {leader}'s agent and wait "
                "until the cluster has no leader, then remove"
            )
        print(f"Cluster {scope}: {len(names)} keys in the store")
        for name in names:
            print(f"  {name}")
        typed_confirmations(scope, ask)
        outcome = await transport.txn(
            [Compare(keys.leader, Target.CREATE, "=", 0)],
            [Delete(k) for k in names],
            timeout=a.timeout,
        )
        if not outcome.succeeded:
            raise CtlError(f"cluster {scope} got a leader meanwhile: nothing removed")
    except OutcomeUnknown as e:
        raise CtlError(
            f"the store of {path} did not confirm the delete ({e}): it may or may not have "
            f"happened; look with hamgr store-ctl --config {path} get /hamgr/{scope}/ --prefix"
        ) from None
    except (StoreUnavailable, StoreRefused) as e:
        raise CtlError(f"the store of {path} did not answer: {e}") from None
    finally:
        await transport.close()
    print(f"Removed cluster {scope}: {len(names)} keys deleted")
    live = [m for m in members if (kv := snap.get(keys.member(m))) is not None and kv.lease]
    if live:
        print(f" Running agents write their member keys again: {', '.join(live)}")


async def before_agents(a: argparse.Namespace) -> bool:
    """remove needs no agent: it runs here and is done."""
    await remove(a)
    return True


async def _unused(*args: Any) -> None:  # pragma: no cover - remove never reaches the agents
    raise CtlError("remove talks to the store, not to agents")


def register(command: Any) -> None:
    """Add ``remove`` to hactl's parser (``command`` is build_parser's helper)."""
    p = command(
        "remove",
        _unused,
        "wipe a cluster's keys from the store (typed confirmations; refused while it has a leader)",
    )
    p.add_argument("cluster", metavar="CLUSTER", help="the cluster's name (the configured scope)")
    p.set_defaults(before_agents=before_agents)
