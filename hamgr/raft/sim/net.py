"""An in-memory peer network for real `RaftNode`s on a virtual-time loop, with faults.

`SimNetwork` stands in for TCP between members: each node gets a `SimTransport` (the
`NodeTransport` calls of `PeerTransport`), and every message crosses the wire codec (encoded and
decoded, as over TCP). Faults, all drawn from one seeded `random.Random`: drops, duplicates,
delays with jitter (so messages reorder), slow spikes, cut links (one way or both: a partition is
a set of cut links), and crashed members (a down endpoint neither sends nor receives, and a
message in flight to a member that crashed is lost, as its connection would be).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hamgr.raft.core.types import Message
from hamgr.raft.net.codec import decode_message, encode_message
from hamgr.raft.net.transport import TransportStats

__all__ = ["NetFaults", "SimNetwork", "SimTransport"]


@dataclass(frozen=True)
class NetFaults:
    """Fault rates of the network (while faults are on); delays in seconds."""

    drop: float = 0.03
    duplicate: float = 0.02
    delay: tuple[float, float] = (0.001, 0.012)
    slow_fraction: float = 0.05
    slow_extra: tuple[float, float] = (0.02, 0.15)


class SimTransport:
    """One member's endpoint: sends through the network, delivers to the node's callback."""

    def __init__(
        self, net: SimNetwork, node_id: int, on_message: Callable[[Message], None]
    ) -> None:
        self._net = net
        self.node_id = node_id
        self.on_message = on_message
        self.up = False
        self.peers: set[int] = set()
        self.stats = TransportStats()

    @property
    def bound_address(self) -> tuple[str, int]:
        """A made-up address naming the member."""
        return ("sim", self.node_id)

    @property
    def advertised_address(self) -> tuple[str, int]:
        """The same made-up address."""
        return self.bound_address

    async def start(self) -> None:
        """Attach to the network (replacing an earlier incarnation of this member)."""
        self.up = True
        self._net.attach(self)

    async def stop(self) -> None:
        """Detach: nothing more is sent or delivered."""
        self.up = False

    def send(self, msg: Message) -> None:
        """Hand `msg` to the network (which may drop, delay or duplicate it)."""
        if self.up:
            self.stats.sent += 1
            self._net.send(self, msg)

    def set_peer(self, node_id: int, address: tuple[str, int]) -> None:
        """Remember a peer (any member id is reachable; the address is not used)."""
        if node_id != self.node_id:
            self.peers.add(node_id)

    def remove_peer(self, node_id: int) -> None:
        """Forget a peer."""
        self.peers.discard(node_id)

    def connected_peers(self) -> set[int]:
        """Peers that are up and not cut off from this member."""
        return {p for p in self.peers if self._net.reachable(self.node_id, p)}


class SimNetwork:
    """Members' endpoints, cut links and fault rates; deliveries scheduled on `loop`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
        faults: NetFaults,
        on_send: Callable[[Message], None] | None = None,
    ) -> None:
        self._loop = loop
        self._rng = rng
        self.faults = faults
        self.faults_on = True
        self.blocked: Counter[tuple[int, int]] = Counter()
        """Cut links (from, to), counted: overlapping faults each undo only their own cut."""
        self.endpoints: dict[int, SimTransport] = {}
        self.on_send = on_send
        self.delivered = 0

    def endpoint(self, node_id: int, on_message: Callable[[Message], None]) -> SimTransport:
        """A transport for a (re)starting member; it joins the network when started."""
        return SimTransport(self, node_id, on_message)

    def attach(self, ep: SimTransport) -> None:
        """`ep` is now the live endpoint of its member."""
        old = self.endpoints.get(ep.node_id)
        if old is not None and old is not ep:
            old.up = False
        self.endpoints[ep.node_id] = ep

    def crash(self, node_id: int) -> None:
        """The member's process died: its endpoint goes down at once."""
        ep = self.endpoints.get(node_id)
        if ep is not None:
            ep.up = False

    def reachable(self, a: int, b: int) -> bool:
        """Both up and the link a->b and b->a not cut."""
        ea, eb = self.endpoints.get(a), self.endpoints.get(b)
        return (
            ea is not None
            and eb is not None
            and ea.up
            and eb.up
            and (a, b) not in self.blocked
            and (b, a) not in self.blocked
        )

    def cut(self, links: Iterable[tuple[int, int]]) -> None:
        """Cut each (from, to) link (once more, if another fault already cut it)."""
        self.blocked.update(links)

    def uncut(self, links: Iterable[tuple[int, int]]) -> None:
        """Undo one `cut` of each link."""
        self.blocked.subtract(links)
        self.blocked = +self.blocked  # drop links no longer cut

    def heal(self) -> None:
        """Every link works again."""
        self.blocked.clear()

    def send(self, src: SimTransport, msg: Message) -> None:
        """Schedule `msg`'s delivery (or lose it), per the fault rates."""
        if self.on_send is not None:
            self.on_send(msg)
        if (msg.frm, msg.to) in self.blocked:
            return
        f, r = self.faults, self._rng
        if self.faults_on and r.random() < f.drop:
            return
        wire = encode_message(msg)
        copies = 2 if self.faults_on and r.random() < f.duplicate else 1
        for _ in range(copies):
            delay = r.uniform(*f.delay)
            if self.faults_on and r.random() < f.slow_fraction:
                delay += r.uniform(*f.slow_extra)
            self._loop.call_later(delay, self._deliver, src, wire, msg.frm, msg.to)

    def _deliver(self, src: SimTransport, wire: bytes, frm: int, to: int) -> None:
        ep = self.endpoints.get(to)
        if ep is None or not ep.up or (frm, to) in self.blocked:
            return  # the receiver crashed (its connections with it), or the link is cut
        self.delivered += 1
        ep.stats.received += 1
        ep.on_message(decode_message(wire))
