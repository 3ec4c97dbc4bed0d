"""The agent's side of ``hactl members``: reads and changes the embedded store's membership.

`StoreAdmin` holds this host's store member (`RaftNode`, for the membership it applied) and a
`StoreClient` (membership changes and record writes go to the Raft leader through it; each
member is asked its own state on its client port). The rules are in `hamgr.agent.storemembers`;
the REST API (`hamgr.agent.apiactions`, ``/store/members``) calls this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from hamgr.agent.storemembers import (
    MemberProbe,
    MemberRecord,
    MembershipRefused,
    StoreConf,
    check_add,
    check_remove,
    members_json,
    next_node_id,
    records_prefix,
)
from hamgr.config import split_address
from hamgr.dcs.base import DcsError
from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.errors import StoreError
from hamgr.raft.server.node import RaftNode

__all__ = ["StoreAdmin", "register_until_done"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
CLIENT_PORT_OFFSET = 100
"""A member added at run time serves clients on its Raft port + 100 unless told otherwise
(the default of ``store.raft.client_listen``; the store's redirects assume the same)."""


def _fmt(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(text: str, what: str) -> Address:
    try:
        return split_address(text)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _need_leader(conf: StoreConf) -> None:
    if conf.leader == 0:
        raise MembershipRefused(
            "the store has no leader now: no membership change can commit (hactl members "
            "shows which members answer)"
        )


class StoreAdmin:
    """Membership reads and changes for the store that `node` is a member of."""

    def __init__(
        self,
        scope: str,
        node: RaftNode,
        client: StoreClient,
        client_addresses: Mapping[int, Address],
        probe_timeout: float = 1.0,
    ) -> None:
        self.scope = scope
        self.node = node
        self.client = client
        self.client_addresses = dict(client_addresses)
        self.probe_timeout = probe_timeout

    def conf(self) -> StoreConf:
        """The membership this member has applied, and the leader it knows."""
        st = self.node.status()
        return StoreConf(
            tuple(st.get("voters", ())),
            tuple(st.get("learners", ())),
            int(st.get("leader", 0)),
            int(st.get("term", 0)),
        )

    async def records(self, *, local: bool = False) -> list[MemberRecord]:
        """Every name record: a linearizable read through the leader, or with `local` this
        member's own copy (no leader needed: for showing, not for deciding)."""
        prefix = records_prefix(self.scope)
        if local:
            got = self.node.kv.range(prefix.encode(), prefix=True)
        else:
            try:
                got = await self.client.get(prefix.encode(), prefix=True)
            except StoreError as exc:
                raise DcsError(f"reading the store member records: {exc}") from exc
        out = []
        for kv in got.kvs:
            rec = MemberRecord.from_json(kv.key.decode()[len(prefix) :], kv.value)
            if rec is not None:
                out.append(rec)
        return out

    def _addresses(self, records: list[MemberRecord], conf: StoreConf) -> dict[int, Address]:
        """Node id -> client address: from the records, else the configuration, else the
        Raft address + 100."""
        out: dict[int, Address] = {}
        named = {r.node_id: r for r in records if not r.removed}
        for node_id in [*conf.voters, *conf.learners]:
            rec = named.get(node_id)
            if rec is not None and rec.client_address:
                out[node_id] = split_address(rec.client_address)
            elif node_id in self.client_addresses:
                out[node_id] = self.client_addresses[node_id]
            else:
                raft = self.node.address_of(node_id)
                if raft is not None:
                    out[node_id] = (raft[0], raft[1] + CLIENT_PORT_OFFSET)
        return out

    async def probes(self, endpoints: Mapping[int, Address]) -> dict[int, MemberProbe]:
        """Each member's own answer (role, applied index), asked at once, or the error."""

        async def one(endpoint: Address) -> MemberProbe:
            try:
                st = await self.client.status(endpoint, timeout=self.probe_timeout)
            except StoreError as exc:
                return MemberProbe(error=str(exc) or type(exc).__name__)
            if not st.role:
                return MemberProbe(error=f"not running ({st.state})")
            return MemberProbe(st.role, st.applied, st.term)

        ids = list(endpoints)
        answers = await asyncio.gather(*(one(endpoints[i]) for i in ids))
        return dict(zip(ids, answers, strict=True))

    async def view(self) -> dict[str, Any]:
        """``GET /store/members``: answers without a Raft leader too (when it matters most)."""
        conf = self.conf()
        records = await self.records(local=True)
        endpoints = self._addresses(records, conf)
        probes = await self.probes(endpoints)
        addresses = {}
        for node_id in [*conf.voters, *conf.learners]:
            raft = self.node.address_of(node_id)
            client = endpoints.get(node_id)
            addresses[node_id] = (
                _fmt(raft) if raft else "",
                _fmt(client) if client else "",
            )
        return members_json(self.scope, conf, records, probes, addresses)

    async def add(
        self, name: str, address: str, node_id: int | None = None, client_address: str = ""
    ) -> dict[str, Any]:
        """Add `name` at Raft `address` as a learner (the leader promotes it once caught up).
        Raises MembershipRefused, ValueError (a bad address) or DcsError."""
        raft = _address(address, "address")
        client = (
            _address(client_address, "client_address")
            if client_address
            else (raft[0], raft[1] + CLIENT_PORT_OFFSET)
        )
        conf = self.conf()
        _need_leader(conf)
        records = await self.records()
        chosen = node_id if node_id is not None else next_node_id(records, conf)
        check_add(conf, records, name, _fmt(raft), chosen)
        record = MemberRecord(name, chosen, _fmt(raft), _fmt(client))
        try:
            await self._put(record)
            await self.client.member_add(chosen, raft)
        except StoreError as exc:
            raise DcsError(f"adding {name} (store member {chosen}): {exc}") from exc
        log.info("store: added %s as member %d at %s (learner)", name, chosen, _fmt(raft))
        return {
            "message": f"{name} added as store member {chosen} (a learner; it becomes a voter "
            "by itself once caught up): start its agent with store.raft.node_id "
            f"{chosen} and store.raft.join true",
            "node_id": chosen,
        }

    async def remove(self, who: str) -> dict[str, Any]:
        """Remove member `who` (name or node id); a Raft leader hands over first.
        Raises MembershipRefused or DcsError."""
        conf = self.conf()
        _need_leader(conf)
        records = await self.records()
        endpoints = self._addresses(records, conf)
        probes = await self.probes(endpoints)
        answering = [i for i, p in probes.items() if not p.error]
        node_id = check_remove(conf, records, who, answering)
        try:
            if node_id == conf.leader:
                others = [v for v in conf.voters if v != node_id and v in answering]
                target = max(others, key=lambda v: probes[v].applied)
                log.info("store: moving leadership from member %d to %d first", node_id, target)
                await self.client.transfer_leadership(target)
            await self.client.member_remove(node_id)
            for rec in records:
                if rec.node_id == node_id and not rec.removed:
                    await self._put(
                        MemberRecord(rec.name, rec.node_id, rec.address, rec.client_address, True)
                    )
        except StoreError as exc:
            raise DcsError(f"removing store member {node_id}: {exc}") from exc
        log.info("store: removed member %d (%s)", node_id, who)
        return {"message": f"store member {node_id} removed", "node_id": node_id}

    async def _put(self, record: MemberRecord) -> None:
        key = (records_prefix(self.scope) + record.name).encode()
        await self.client.put(key, record.to_json())


async def register_until_done(
    client: StoreClient,
    scope: str,
    record: MemberRecord,
    stop: asyncio.Event,
    interval: float = 1.0,
) -> bool:
    """Write this member's own name record, retrying every `interval` until it is written
    (True) or `stop` is set (False). A record already there is left as it is unless it
    names another id or address (a host rebuilt under the same name)."""
    key = (records_prefix(scope) + record.name).encode()
    while not stop.is_set():
        try:
            got = await client.get(key)
            old = MemberRecord.from_json(record.name, got.kvs[0].value) if got.kvs else None
            if old is None or (old.node_id, old.address, old.client_address) != (
                record.node_id,
                record.address,
                record.client_address,
            ):
                await client.put(key, record.to_json())
            return True
        except StoreError as exc:
            log.debug("registering %s in the store: %s (retrying)", record.name, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    return False
