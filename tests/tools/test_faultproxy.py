"""FaultProxy, Mesh and ThreadedMesh over real sockets on 127.0.0.51-59."""

from __future__ import annotations

import asyncio
import os
import socket
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from hamgr.raft.core.types import Message, MsgType
from hamgr.raft.net.transport import PeerTransport, TransportLimits
from tests.tools.faultproxy import (
    MAX_RETRIES,
    RETRANSMIT,
    CutMode,
    FaultProxy,
    LinkFaults,
    LinkState,
    Mesh,
    ThreadedMesh,
)
from tests.tools.poll import wait_for_async
from tests.tools.virtualtimer import VirtualTimer

WAIT = 5.0
"""Deadline (seconds) for anything a test waits on."""
QUIET = 0.3
"""How long a test watches for something that must NOT happen (a blackhole delivering)."""

pytestmark = pytest.mark.timeout(60)


class EchoServer:
    """Echoes every byte back, and records what each connection sent and, on `clock`, when
    each chunk of it arrived."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.received: list[bytearray] = []
        self.arrivals: list[float] = []
        self.clock = clock
        self.closed = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, 0)
        return host, self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def total(self) -> bytes:
        return b"".join(self.received)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        self.received.append(got)
        try:
            while data := await reader.read(65536):
                self.arrivals.append(self.clock())
                got += data
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except OSError:
            pass
        finally:
            self.closed += 1
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[EchoServer, tuple[str, int]]]:
    server = EchoServer()
    address = await server.start("127.0.0.51")
    yield server, address
    await server.stop()


@pytest.fixture
async def proxy(echo: tuple[EchoServer, tuple[str, int]]) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(("127.0.0.52", 0), echo[1])
    await p.start()
    yield p
    await p.stop()


async def connect(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(WAIT):
        return await asyncio.open_connection(*address)


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> None:
    writer.write(payload)
    async with asyncio.timeout(WAIT):
        assert await reader.readexactly(len(payload)) == payload


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True once the connection ends (EOF or reset); False if still open after QUIET."""
    try:
        async with asyncio.timeout(QUIET):
            while True:
                if not await reader.read(65536):
                    return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# --- FaultProxy ---------------------------------------------------------------------------------


async def test_bytes_flow_both_ways_intact(
    echo: tuple[EchoServer, tuple[str, int]], proxy: FaultProxy
) -> None:
    server, _ = echo
    assert proxy.address[0] == "127.0.0.52" and proxy.address[1] != 0
    reader, writer = await connect(proxy.address)
    payload = os.urandom(1 << 20)
    writer.write(payload)
    async with asyncio.timeout(WAIT):
        assert await reader.readexactly(len(payload)) == payload
    # Half-close passes through: the server sees EOF, answers with its own.
    writer.write_eof()
    async with asyncio.timeout(WAIT):
        assert await reader.read() == b""
    writer.close()
    assert server.total == payload
    assert proxy.stats.bytes_to_target == proxy.stats.bytes_to_client == len(payload)
    assert proxy.stats.accepted == 1
    await wait_for_async(lambda: proxy.active_connections == 0, WAIT)


async def test_refuse_resets_connections_refuses_new_ones_and_heal_restores(
    echo: tuple[EchoServer, tuple[str, int]], proxy: FaultProxy
) -> None:
    server, _ = echo
    reader, writer = await connect(proxy.address)
    await roundtrip(reader, writer, b"before")
    proxy.cut()
    assert proxy.state is LinkState.REFUSING
    assert await closed_by_peer(reader)
    await wait_for_async(lambda: server.closed == 1, WAIT)  # the target's side is gone too
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy.address)
    writer.close()

    port = proxy.address[1]
    proxy.heal()
    assert proxy.state is LinkState.OPEN and proxy.address[1] == port
    reader, writer = await connect(proxy.address)
    await roundtrip(reader, writer, b"after")
    writer.close()


async def test_blackhole_holds_connections_open_and_delivers_nothing_until_healed(
    echo: tuple[EchoServer, tuple[str, int]], proxy: FaultProxy
) -> None:
    server, _ = echo
    r1, w1 = await connect(proxy.address)
    await roundtrip(r1, w1, b"one")
    proxy.cut(CutMode.BLACKHOLE)
    assert proxy.state is LinkState.BLACKHOLED
    w1.write(b"-held")
    r2, w2 = await connect(proxy.address)  # accepted, and held
    w2.write(b"two")
    assert not await closed_by_peer(r1)  # open, and nothing comes back
    assert not await closed_by_peer(r2)
    assert server.total == b"one" and len(server.received) == 1  # nothing reached the target
    await wait_for_async(lambda: proxy.active_connections == 2, WAIT)

    proxy.heal()
    async with asyncio.timeout(WAIT):
        assert await r1.readexactly(5) == b"-held"
        assert await r2.readexactly(3) == b"two"
    assert sorted(bytes(b) for b in server.received) == [b"one-held", b"two"]
    for w in (w1, w2):
        w.close()


async def test_blackhole_then_refuse_then_heal(
    echo: tuple[EchoServer, tuple[str, int]], proxy: FaultProxy
) -> None:
    r1, w1 = await connect(proxy.address)
    proxy.cut("blackhole")
    r3, w3 = await connect(proxy.address)  # held by the blackhole
    await wait_for_async(lambda: proxy.active_connections == 2, WAIT)
    proxy.cut("refuse")
    assert await closed_by_peer(r1)
    assert await closed_by_peer(r3)
    await wait_for_async(lambda: proxy.active_connections == 0, WAIT)
    w3.close()
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy.address)
    proxy.cut(CutMode.BLACKHOLE)  # listening again, holding
    r2, w2 = await connect(proxy.address)
    w2.write(b"x")
    assert not await closed_by_peer(r2)
    proxy.heal()
    async with asyncio.timeout(WAIT):
        assert await r2.readexactly(1) == b"x"
    for w in (w1, w2):
        w.close()


async def test_delay_holds_each_chunk_in_order() -> None:
    """The delay is read off the proxy's virtual timer (its waits move it): what reaches the
    echo server arrived 0.2 s after it was sent, and its echo 0.2 s after that."""
    timer = VirtualTimer()
    echo = EchoServer(timer.now)
    target = await echo.start("127.0.0.51")
    try:
        async with FaultProxy(("127.0.0.52", 0), target, timer=timer) as proxy:
            reader, writer = await connect(proxy.address)
            await roundtrip(reader, writer, b"warm")
            assert timer.sleeps == [], "no delay, no wait"
            warm = len(echo.arrivals)
            proxy.delay(0.2)
            assert proxy.current_delay == 0.2
            sent = timer.now()
            for i in range(5):
                writer.write(b"%d" % i)
                await asyncio.sleep(0.01)
            async with asyncio.timeout(WAIT):
                assert await reader.readexactly(5) == b"01234"
            arrived = echo.arrivals[warm]  # the first chunk after "warm"
            assert arrived >= sent + 0.2, "held 0.2 s on the way to the target"
            assert timer.now() >= arrived + 0.2, "and its echo 0.2 s on the way back"
            proxy.delay(0)
            waited = len(timer.sleeps)
            await roundtrip(reader, writer, b"fast again")
            assert len(timer.sleeps) == waited, "no delay again, no wait"
            writer.close()
    finally:
        await echo.stop()


async def test_unreachable_target_closes_the_client_connection() -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.53", 0))  # bound, not listening: connecting is refused
    try:
        async with FaultProxy(("127.0.0.52", 0), dead.getsockname()) as p:
            reader, writer = await connect(p.address)
            assert await closed_by_peer(reader)
            assert p.stats.upstream_failures == 1
            writer.close()
    finally:
        dead.close()


async def test_stop_resets_connections_and_frees_the_port(
    echo: tuple[EchoServer, tuple[str, int]],
) -> None:
    p = FaultProxy(("127.0.0.52", 0), echo[1])
    await p.start()
    reader, writer = await connect(p.address)
    await roundtrip(reader, writer, b"x")
    await p.stop()
    assert await closed_by_peer(reader)
    writer.close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(p.address)
    with pytest.raises(RuntimeError, match="not running"):
        p.heal()
    await p.stop()  # twice is fine


async def test_bad_arguments_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"target address .* port in 1\.\.65535"):
        FaultProxy(("127.0.0.52", 0), ("127.0.0.51", 0))
    with pytest.raises(ValueError, match=r"listen address must be a \(host, port\) tuple"):
        FaultProxy("127.0.0.52:0", ("127.0.0.51", 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connect_timeout must be positive"):
        FaultProxy(("127.0.0.52", 0), ("127.0.0.51", 1), connect_timeout=0)
    p = FaultProxy(("127.0.0.52", 0), ("127.0.0.51", 1))
    with pytest.raises(RuntimeError, match="not running"):
        p.cut()
    await p.start()
    try:
        with pytest.raises(ValueError, match="unknown cut mode 'sideways'; expected one of"):
            p.cut("sideways")
        with pytest.raises(ValueError, match="delay must be a number of seconds"):
            p.delay(-1)
        with pytest.raises(RuntimeError, match="can be started once"):
            await p.start()
        assert p.state is LinkState.OPEN
    finally:
        await p.stop()
    with pytest.raises(ValueError, match="at least 2 members"):
        Mesh({1: ("127.0.0.51", 1)})


# --- Mesh ---------------------------------------------------------------------------------------


class Member:
    """A member's real listener: records (sender, text) lines sent to it."""

    def __init__(self, member_id: int) -> None:
        self.id = member_id
        self.lines: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        host = f"127.0.0.{53 + self.id}"
        self._server = await asyncio.start_server(self._serve, host, 0)
        return host, self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                self.lines.append(line)
        except OSError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[dict[int, Member], Mesh[int]]]:
    members = {i: Member(i) for i in (1, 2, 3)}
    addresses = {i: await m.start() for i, m in members.items()}
    mesh = Mesh(addresses)
    await mesh.start()
    yield members, mesh
    await mesh.stop()
    for m in members.values():
        await m.stop()


SENT: list[tuple[int, bytes]] = []


async def delivers(
    members: dict[int, Member], mesh: Mesh[int], a: int, b: int, timeout: float
) -> bool:
    """Whether a line sent by a to b over a fresh connection arrives within `timeout`
    (refused: known at once)."""
    line = b"%d->%d %s\n" % (a, b, os.urandom(4).hex().encode())
    SENT.append((b, line))
    try:
        _, writer = await connect(mesh.peers(a)[b])
    except ConnectionRefusedError:
        return False
    writer.write(line)
    try:
        await wait_for_async(lambda: line in members[b].lines, timeout)
        return True
    except AssertionError:
        return False
    finally:
        writer.close()


async def reachable(
    members: dict[int, Member], mesh: Mesh[int], expected: set[tuple[int, int]]
) -> set[tuple[int, int]]:
    """The links that deliver: waiting up to WAIT on those expected to, QUIET on the others."""
    links = [(a, b) for a in members for b in members if a != b]
    ok = await asyncio.gather(
        *(delivers(members, mesh, a, b, WAIT if (a, b) in expected else QUIET) for a, b in links)
    )
    return {link for link, good in zip(links, ok, strict=True) if good}


async def expect_links(
    members: dict[int, Member], mesh: Mesh[int], expected: set[tuple[int, int]]
) -> None:
    assert await reachable(members, mesh, expected) == expected


ALL = {(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)}


async def test_mesh_cuts_each_directed_link_on_its_own(
    cluster: tuple[dict[int, Member], Mesh[int]],
) -> None:
    members, mesh = cluster
    peers = mesh.addresses()
    assert set(peers) == {1, 2, 3} and set(peers[1]) == {2, 3}
    assert len({addr for p in peers.values() for addr in p.values()}) == 6  # one proxy per link
    assert peers[1][2][0] == "127.0.0.55"  # listening on the target member's host
    await expect_links(members, mesh, ALL)

    mesh.cut(1, 2)
    await expect_links(members, mesh, ALL - {(1, 2)})
    mesh.isolate(3)
    await expect_links(members, mesh, {(2, 1)})
    mesh.heal_all()
    await expect_links(members, mesh, ALL)

    SENT.clear()
    mesh.partition([1], [2, 3], mode="blackhole")
    await expect_links(members, mesh, {(2, 3), (3, 2)})
    assert mesh.state()[(1, 2)] is LinkState.BLACKHOLED
    mesh.heal(1, 2)
    await expect_links(members, mesh, {(1, 2), (2, 3), (3, 2)})
    mesh.heal_all()
    # Lines sent into the blackhole arrive once it heals: nothing was lost.
    await wait_for_async(lambda: all(line in members[b].lines for b, line in SENT), WAIT)


async def test_mesh_refuses_bad_requests(cluster: tuple[dict[int, Member], Mesh[int]]) -> None:
    _, mesh = cluster
    with pytest.raises(ValueError, match="no link from member 1 to itself"):
        mesh.cut(1, 1)
    with pytest.raises(KeyError, match="unknown member 7"):
        mesh.cut(1, 7)
    with pytest.raises(ValueError, match="in two groups"):
        mesh.partition([1, 2], [2, 3])
    with pytest.raises(KeyError, match=r"unknown members \[9\]"):
        mesh.partition([1], [9])
    with pytest.raises(RuntimeError, match="start the mesh first"):
        Mesh({1: ("127.0.0.51", 1), 2: ("127.0.0.52", 1)}).peers(1)


async def test_mesh_between_real_raft_transports() -> None:
    """Two PeerTransports dial each other through the mesh: a cut link stops exactly one way."""
    secret = b"fault-proxy-test-secret-0123456789"
    inbox: dict[int, list[Message]] = {1: [], 2: []}
    limits = TransportLimits(backoff_initial=0.02, backoff_max=0.2)
    transports = {
        i: PeerTransport(
            i, "fault-test", secret, (f"127.0.0.{55 + i}", 0), {}, inbox[i].append, limits=limits
        )
        for i in (1, 2)
    }
    for t in transports.values():
        await t.start()
    mesh = Mesh({i: t.bound_address for i, t in transports.items()})
    await mesh.start()
    for i, t in transports.items():
        for peer, address in mesh.peers(i).items():
            t.set_peer(peer, address)

    counter = iter(range(1, 1_000_000))

    async def gets_through(frm: int, to: int, deadline: float) -> bool:
        """Send fresh messages every 20 ms until one arrives or the deadline passes."""
        sent: set[int] = set()
        try:
            async with asyncio.timeout(deadline):
                while not sent & {m.commit for m in inbox[to]}:
                    n = next(counter)
                    sent.add(n)
                    transports[frm].send(
                        Message(MsgType.HEARTBEAT, to=to, frm=frm, term=1, commit=n)
                    )
                    await asyncio.sleep(0.02)
            return True
        except TimeoutError:
            return False

    try:
        assert await gets_through(1, 2, WAIT) and await gets_through(2, 1, WAIT)
        mesh.cut(1, 2)
        assert not await gets_through(1, 2, QUIET * 2)
        assert await gets_through(2, 1, WAIT)
        mesh.heal(1, 2)
        assert await gets_through(1, 2, WAIT)
        mesh.cut(2, 1, CutMode.BLACKHOLE)
        assert not await gets_through(2, 1, QUIET * 2)
        assert await gets_through(1, 2, WAIT)
        mesh.heal_all()
        assert await gets_through(2, 1, WAIT)
    finally:
        await mesh.stop()
        for t in transports.values():
            await t.stop()


# --- ThreadedMesh -------------------------------------------------------------------------------


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


@pytest.fixture
def echo_threads() -> Iterator[dict[str, tuple[str, int]]]:
    """Blocking echo servers, one per member, each in its own thread."""
    servers = {}
    threads = []
    for name, host in (("a", "127.0.0.57"), ("b", "127.0.0.58"), ("c", "127.0.0.59")):
        server = socketserver.ThreadingTCPServer((host, 0), _EchoHandler)
        server.daemon_threads = True
        servers[name] = server
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        threads.append(thread)
    yield {name: s.server_address for name, s in servers.items()}  # type: ignore[misc]
    for s in servers.values():
        s.shutdown()
        s.server_close()
    for t in threads:
        t.join(WAIT)


def echo_once(address: tuple[str, int], payload: bytes, timeout: float = WAIT) -> bytes | None:
    """Send and read the echo with blocking calls; None when refused, reset or silent for
    `timeout` seconds."""
    try:
        with socket.create_connection(address, timeout=WAIT) as s:
            s.settimeout(timeout)
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = s.recv(65536)
                if not chunk:
                    return None
                got += chunk
            return got
    except (ConnectionRefusedError, ConnectionResetError, TimeoutError):
        return None


def test_threaded_mesh_from_blocking_code(echo_threads: dict[str, tuple[str, int]]) -> None:
    with ThreadedMesh(echo_threads) as mesh:
        peers = mesh.addresses()
        assert echo_once(peers["a"]["b"], b"hello") == b"hello"
        mesh.cut("a", "b")
        assert echo_once(peers["a"]["b"], b"x", QUIET) is None
        assert echo_once(peers["b"]["a"], b"back") == b"back"
        mesh.isolate("c", CutMode.BLACKHOLE)
        assert echo_once(peers["a"]["c"], b"x", QUIET) is None
        assert mesh.state()[("c", "a")] is LinkState.BLACKHOLED
        mesh.heal_all()
        for a in peers:
            for b in peers[a]:
                assert echo_once(peers[a][b], f"{a}{b}".encode()) == f"{a}{b}".encode()
        # A delay set from blocking code holds what is sent (when a held chunk is released is
        # test_delay_holds_each_chunk_in_order's business); delay 0 lets it through again.
        forwarded = mesh.stats("a", "b").bytes_to_target
        mesh.delay("a", "b", 600.0)
        assert echo_once(peers["a"]["b"], b"held", QUIET) is None
        assert mesh.stats("a", "b").bytes_to_target == forwarded, "the delay held it back"
        mesh.delay("a", "b", 0)
        assert echo_once(peers["a"]["b"], b"slow") == b"slow"
        assert mesh.stats("a", "b").bytes_to_target >= len(b"hello" + b"ab" + b"slow")
    with pytest.raises(RuntimeError, match="not running"):
        mesh.cut("a", "b")
    # The proxies are gone with it.
    assert echo_once(peers["a"]["b"], b"x", QUIET) is None


# --- LinkFaults: delay, jitter and loss of one direction (pure) ---------------------------------


def test_jitter_stays_within_its_bound_and_never_below_zero() -> None:
    faults = LinkFaults(seed=7)
    faults.set(delay=0.05, jitter=0.03)
    waits = [faults.due(100.0) - 100.0 for _ in range(2000)]
    assert min(waits) >= 0.02 - 1e-9 and max(waits) <= 0.08 + 1e-9
    assert max(waits) - min(waits) > 0.05  # it does vary
    faults.set(delay=0.01, jitter=0.05)
    assert min(faults.due(0.0) for _ in range(2000)) == 0.0


def test_a_lost_chunk_arrives_one_or_more_retransmission_timeouts_late() -> None:
    faults = LinkFaults(seed=3)
    faults.set(loss=0.5)
    waits = [faults.due(0.0) for _ in range(2000)]
    allowed = {round((2**k - 1) * RETRANSMIT, 6) for k in range(MAX_RETRIES + 1)}
    assert {round(w, 6) for w in waits} <= allowed
    on_time = sum(1 for w in waits if w == 0.0)
    assert 800 < on_time < 1200  # about half
    assert faults.lost >= 1000 - on_time


def test_the_same_seed_draws_the_same_delays() -> None:
    a, b = LinkFaults(seed=11), LinkFaults(seed=11)
    for f in (a, b):
        f.set(delay=0.1, jitter=0.05, loss=0.1)
    assert [a.due(0) for _ in range(100)] == [b.due(0) for _ in range(100)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": 1.0}, "loss must be a probability"),
        ({"loss": -0.1}, "loss must be a probability"),
        ({"jitter": -1}, "must be a number of seconds"),
    ],
)
def test_bad_link_faults_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LinkFaults().set(**kwargs)
