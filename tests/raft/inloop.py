"""A store cluster in the test's event loop: RaftNodes with their StoreRpcServers on loopback
addresses, real sockets and data directories, reached through StoreClient. Shared by the client
tests (tests/raft/test_client.py) and the embedded-store DCS tests (tests/dcs/stores.py)."""

from __future__ import annotations

import socket
from pathlib import Path

from hamgr.raft.client.storeclient import StoreClient
from hamgr.raft.server.node import RaftNode
from hamgr.raft.server.rpcserver import StoreRpcServer
from tests.tools.poll import wait_for_async
from tests.tools.steppedclock import SteppedClock

Address = tuple[str, int]


def free_port(host: str) -> int:
    """A TCP port free on `host` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class InLoopStore:
    """Members `hosts` (node id -> loopback address), each a RaftNode with a StoreRpcServer on
    its own client port; restartable one by one from their data directories under `root`."""

    def __init__(
        self,
        root: Path,
        hosts: dict[int, str],
        cluster_id: str,
        secret: bytes,
        *,
        tick: float,
        election_tick: int,
        clock: SteppedClock | None = None,
    ) -> None:
        """`clock` is the nodes' (a `SteppedClock` the test may move; a fresh one by default,
        which reads `time.monotonic`)."""
        self.root = root
        self.hosts = dict(hosts)
        self.ids = tuple(sorted(hosts))
        self.cluster_id = cluster_id
        self.secret = secret
        self._tick = tick
        self._election_tick = election_tick
        self.clock = clock if clock is not None else SteppedClock()
        self.raft = {i: (h, free_port(h)) for i, h in self.hosts.items()}
        self.clients: dict[int, Address] = {}  # filled as servers bind port 0, then kept
        self.nodes: dict[int, RaftNode] = {}
        self.servers: dict[int, StoreRpcServer] = {}

    async def start(self, i: int) -> None:
        node = RaftNode(
            i,
            self.root / f"n{i}",
            self.cluster_id,
            self.secret,
            self.raft[i],
            None,
            {j: a for j, a in self.raft.items() if j != i},
            tick_interval=self._tick,
            election_tick=self._election_tick,
            request_timeout=2.0,
            clock=self.clock.for_node(i),
        )
        await node.start()
        server = StoreRpcServer(node, self.cluster_id, self.secret, client_addresses=self.clients)
        await server.start(self.hosts[i], self.clients.get(i, (None, 0))[1])
        self.nodes[i], self.servers[i] = node, server
        self.clients[i] = server.address

    async def start_all(self) -> None:
        for i in self.ids:
            await self.start(i)

    async def stop(self, i: int) -> None:
        server, node = self.servers.pop(i, None), self.nodes.pop(i, None)
        if server is not None:
            await server.close()
        if node is not None:
            await node.stop()

    async def stop_all(self) -> None:
        for i in list(self.nodes):
            await self.stop(i)

    async def leader(self, timeout: float = 10.0) -> int:
        """The id of the one leader every running member agrees on (waits for it)."""

        def agreed() -> bool:
            leaders = [n.id for n in self.nodes.values() if n.is_leader]
            return len(leaders) == 1 and all(
                n.status()["leader"] == leaders[0] for n in self.nodes.values()
            )

        await wait_for_async(agreed, timeout, "one agreed Raft leader")
        return next(n.id for n in self.nodes.values() if n.is_leader)

    def client(self, ids: tuple[int, ...] | None = None, **options: object) -> StoreClient:
        """A StoreClient of members `ids` (default: all), 5 s timeout unless given."""
        options.setdefault("timeout", 5.0)
        return StoreClient(
            [self.clients[i] for i in (ids or self.ids)],
            self.cluster_id,
            self.secret,
            **options,  # type: ignore[arg-type]
        )
