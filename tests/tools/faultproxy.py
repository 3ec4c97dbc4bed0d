"""A fault-injecting TCP proxy for tests, and a full mesh of them between cluster members.

`FaultProxy` listens on one address and forwards each connection to a target. A test can cut it
in two ways, heal it, and delay what flows through it:

- ``cut(CutMode.REFUSE)``: established connections are reset (both ends) and new ones refused,
  as a firewall's REJECT rule or a dead host's kernel would do.
- ``cut(CutMode.BLACKHOLE)``: nothing is forwarded any more, but every connection stays open and
  new ones are accepted and held, as when packets are silently dropped. Bytes sent meanwhile
  wait in socket buffers and flow, in order, after ``heal()``, as TCP would deliver them once the
  path is back. (A real SYN to a blackholed address would time out: here connect succeeds.)
- ``delay(seconds)``: each chunk is delivered that long after it was read, in order, on the
  proxy's `timer` (the monotonic clock unless a test passes a virtual one).
- ``jitter(seconds)``: each chunk's delay varies by up to that much either way (never below 0).
- ``loss(probability)``: each chunk is "lost" with that probability. Over TCP a lost segment is
  not gone, it is sent again after a retransmission timeout, and everything behind it waits:
  so a lost chunk is delivered `RETRANSMIT` seconds late (doubled for each further loss of
  the same chunk, as TCP backs off), and holds up the chunks after it. Delay, jitter and loss
  live in one `LinkFaults` per direction, which a relay can also use on its own.

`Mesh` puts one proxy on each directed link between N members, so that A->B can be cut while
B->A still works (members keep one outbound connection per peer, so the link A->B is A's
connection to B and carries A's messages to B). `ThreadedMesh` runs a mesh on its own event loop
in a background thread, for tests that drive subprocesses with blocking calls.

`cut`, `heal` and `delay` are plain (not async) methods that take effect before they return, so
forgetting an ``await`` cannot silently leave a link up. Call them from the proxy's event loop
thread (`ThreadedMesh` does that for you).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import socket
import threading
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hamgr.dcs.common import MONOTONIC, Timer

log = logging.getLogger(__name__)

Address = tuple[str, int]
T = TypeVar("T")
M = TypeVar("M", bound=Hashable)

CHUNK_SIZE = 64 * 1024
QUEUE_CHUNKS = 16
"""Chunks read ahead per direction while a delay holds them; beyond that, reading pauses."""


RETRANSMIT = 0.2
"""Seconds a lost chunk arrives late: Linux's minimum TCP retransmission timeout."""
MAX_RETRIES = 6
"""A chunk is lost at most this many times in a row (then it gets through)."""


class CutMode(enum.Enum):
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


class LinkState(enum.Enum):
    OPEN = "open"
    REFUSING = "refusing"
    BLACKHOLED = "blackholed"


@dataclass
class ProxyStats:
    """What went through a proxy since it started."""

    accepted: int = 0
    """Connections accepted (including ones held by a blackhole)."""
    upstream_failures: int = 0
    """Connections closed because the target could not be reached."""
    bytes_to_target: int = 0
    bytes_to_client: int = 0


def _check_address(address: object, what: str, *, port_zero_ok: bool) -> Address:
    if (
        not isinstance(address, tuple)
        or len(address) != 2
        or not isinstance(address[0], str)
        or not isinstance(address[1], int)
        or isinstance(address[1], bool)
    ):
        raise ValueError(f"{what} must be a (host, port) tuple, got {address!r}")
    host, port = address
    low = 0 if port_zero_ok else 1
    if not host or not low <= port <= 65535:
        raise ValueError(f"{what} {address!r}: needs a host and a port in {low}..65535")
    return host, port


def _parse_mode(mode: CutMode | str) -> CutMode:
    try:
        return CutMode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in CutMode)
        raise ValueError(f"unknown cut mode {mode!r}; expected one of: {choices}") from None


def _check_delay(seconds: float) -> float:
    if not isinstance(seconds, int | float) or not 0 <= seconds < 3600:
        raise ValueError(f"delay must be a number of seconds in [0, 3600), got {seconds!r}")
    return float(seconds)


def _check_probability(p: float) -> float:
    if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p < 1:
        raise ValueError(f"loss must be a probability in [0, 1), got {p!r}")
    return float(p)


class LinkFaults:
    """Delay, jitter and loss of one direction of a link: `due(now)` says when a chunk read
    at `now` is delivered. Seeded, so a schedule replays the same draws."""

    def __init__(self, seed: int | None = None) -> None:
        self.delay = 0.0
        self.jitter = 0.0
        self.loss = 0.0
        self.lost = 0
        """Chunks that were lost (delivered late) so far."""
        self._rng = random.Random(seed)

    def set(
        self, *, delay: float | None = None, jitter: float | None = None, loss: float | None = None
    ) -> None:
        """Change any of the three (validated; the others stay)."""
        if delay is not None:
            self.delay = _check_delay(delay)
        if jitter is not None:
            self.jitter = _check_delay(jitter)
        if loss is not None:
            self.loss = _check_probability(loss)

    def due(self, now: float) -> float:
        """When a chunk read at `now` is delivered."""
        wait = self.delay
        if self.jitter:
            wait = max(0.0, wait + self._rng.uniform(-self.jitter, self.jitter))
        if self.loss:
            penalty = RETRANSMIT
            for _ in range(MAX_RETRIES):
                if self._rng.random() >= self.loss:
                    break
                self.lost += 1
                wait += penalty
                penalty *= 2
        return now + wait


class _Link:
    """One proxied connection: the client's side, once dialed the target's side, and the task
    that drives it."""

    def __init__(self, client: asyncio.StreamWriter, task: asyncio.Task[None]) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task = task

    def reset(self) -> None:
        """Reset both ends at once (RST), dropping anything unsent."""
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class FaultProxy:
    """Forwards TCP connections from `listen` to `target`, with faults on demand.

    Use within a running event loop: ``await start()``, then ``cut``/``heal``/``delay``, then
    ``await stop()`` (or ``async with``). Port 0 in `listen` picks a free port, kept for the
    proxy's life (see `address`), so refusing and healing reuse it. `timer` says when a chunk
    was read and waits until it is due (a test passes a virtual one to read delays off it).
    """

    def __init__(
        self,
        listen: Address,
        target: Address,
        *,
        name: str = "",
        connect_timeout: float = 5.0,
        timer: Timer = MONOTONIC,
    ) -> None:
        self._listen = _check_address(listen, "listen address", port_zero_ok=True)
        self.target = _check_address(target, "target address", port_zero_ok=False)
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, got {connect_timeout!r}")
        self.name = name or f"{listen[0]}:{listen[1]}->{target[0]}:{target[1]}"
        self.connect_timeout = connect_timeout
        self.timer = timer
        self.stats = ProxyStats()
        self._state = LinkState.OPEN
        self.faults = LinkFaults()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._stopped = False

    # -- lifecycle

    async def start(self) -> None:
        """Listen; connections are accepted from now on."""
        if self._started:
            raise RuntimeError(f"proxy {self.name} can be started once")
        self._loop = asyncio.get_running_loop()
        self._listen_now()
        self._started = True
        log.debug("proxy %s listening on %s", self.name, self._listen)

    async def stop(self) -> None:
        """Stop listening, reset every connection and wait for their tasks to end."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        self._close_listener()
        for link in list(self._links):
            link.reset()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> Address:
        """The address clients should dial (the bound port once started with port 0)."""
        return self._listen

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def active_connections(self) -> int:
        return len(self._links)

    # -- faults

    def cut(self, mode: CutMode | str = CutMode.REFUSE) -> None:
        """Cut the link: REFUSE resets connections and refuses new ones; BLACKHOLE holds them."""
        mode = _parse_mode(mode)
        self._require_running()
        if mode is CutMode.REFUSE:
            self._state = LinkState.REFUSING
            self._close_listener()
            for link in list(self._links):
                link.reset()
                link.task.cancel()  # it may be waiting on a blackhole, not on the socket
        else:
            self._listen_now()
            self._state = LinkState.BLACKHOLED
            self._flowing.clear()
        log.debug("proxy %s cut (%s)", self.name, mode.value)

    def heal(self) -> None:
        """Undo any cut: listen again if refusing, release what a blackhole held."""
        self._require_running()
        self._listen_now()
        self._state = LinkState.OPEN
        self._flowing.set()
        log.debug("proxy %s healed", self.name)

    def delay(self, seconds: float) -> None:
        """Deliver each chunk read from now on `seconds` after it was read (0: no delay)."""
        self.faults.set(delay=seconds)

    def jitter(self, seconds: float) -> None:
        """Vary each chunk's delay by up to `seconds` either way (0: none)."""
        self.faults.set(jitter=seconds)

    def loss(self, probability: float) -> None:
        """Lose each chunk with `probability` (delivered `RETRANSMIT` s late, see above)."""
        self.faults.set(loss=probability)

    @property
    def current_delay(self) -> float:
        return self.faults.delay

    # -- internals

    def _require_running(self) -> None:
        if not self._started or self._stopped:
            raise RuntimeError(f"proxy {self.name} is not running (start it first)")

    def _listen_now(self) -> None:
        """Bind, listen and watch the socket, all before returning: the kernel queues
        connections from here on."""
        if self._sock is not None:
            return
        host, port = self._listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"proxy {self.name}: cannot listen on {host}:{port}: {e}") from e
        self._sock = sock
        self._listen = (host, sock.getsockname()[1])
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._on_acceptable, sock)

    def _close_listener(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(sock.fileno())
            sock.close()  # what is still in the backlog gets a reset

    def _on_acceptable(self, sock: socket.socket) -> None:
        assert self._loop is not None
        for _ in range(128):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("proxy %s: accept failed: %s", self.name, e)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._handle(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
        except OSError:
            conn.close()
            return
        if self._state is LinkState.REFUSING or self._stopped:
            writer.transport.abort()
            return
        self.stats.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        link = _Link(writer, task)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a blackhole holds new connections here
            if self._stopped:
                return
            try:
                async with asyncio.timeout(self.connect_timeout):
                    up_reader, link.upstream = await asyncio.open_connection(*self.target)
            except (OSError, TimeoutError) as e:
                self.stats.upstream_failures += 1
                log.debug("proxy %s: target unreachable: %s", self.name, e)
                return
            if self._state is LinkState.REFUSING:
                return
            await self._relay(link, reader, up_reader, link.upstream)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("proxy %s: connection failed", self.name)
        finally:
            self._links.discard(link)
            link.reset()

    async def _relay(
        self,
        link: _Link,
        client_reader: asyncio.StreamReader,
        up_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
    ) -> None:
        """Pump both directions; an EOF is passed on (half-close), an error resets both ends."""
        pumps = [
            asyncio.create_task(self._pump(client_reader, upstream, to_target=True)),
            asyncio.create_task(self._pump(up_reader, link.client, to_target=False)),
        ]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            if all(t.exception() is None for t in done) and len(done) == 2:
                for writer in (upstream, link.client):
                    writer.close()
        finally:
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, to_target: bool
    ) -> None:
        """Copy src to dst, each chunk delivered `delay` after it was read, none while cut."""
        queue: asyncio.Queue[tuple[float, bytes | OSError]] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            while True:
                await self._flowing.wait()
                try:
                    data: bytes | OSError = await src.read(CHUNK_SIZE)
                except OSError as e:
                    data = e
                await queue.put((self.faults.due(self.timer.now()), data))
                if not isinstance(data, bytes) or not data:
                    return

        reader = asyncio.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                if (wait := due - self.timer.now()) > 0:
                    await self.timer.sleep(wait)
                await self._flowing.wait()  # nothing is delivered through a blackhole
                if isinstance(data, OSError):
                    raise data
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(data)
                if to_target:
                    self.stats.bytes_to_target += len(data)
                else:
                    self.stats.bytes_to_client += len(data)
                await dst.drain()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


class Mesh(Generic[M]):
    """One FaultProxy per directed link between members, so each link fails on its own.

    `members` maps each member's id to the address it really listens on. After ``await
    start()``, ``peers(a)`` gives the addresses member `a` should dial to reach each other
    member (its proxies); ``addresses()`` gives that for everyone. Proxies listen on
    `listen_host` (default: the target member's host) on free ports.
    """

    def __init__(
        self,
        members: Mapping[M, Address],
        *,
        listen_host: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        if len(members) < 2:
            raise ValueError(f"a mesh needs at least 2 members, got {len(members)}")
        self.members = {
            m: _check_address(a, f"address of member {m!r}", port_zero_ok=False)
            for m, a in members.items()
        }
        self._proxies: dict[tuple[M, M], FaultProxy] = {
            (a, b): FaultProxy(
                (listen_host or self.members[b][0], 0),
                self.members[b],
                name=f"{a!r}->{b!r}",
                connect_timeout=connect_timeout,
            )
            for a in self.members
            for b in self.members
            if a != b
        }
        self._started = False

    async def start(self) -> None:
        started: list[FaultProxy] = []
        try:
            for proxy in self._proxies.values():
                await proxy.start()
                started.append(proxy)
        except BaseException:
            for proxy in started:
                await proxy.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self._proxies.values()))

    async def __aenter__(self) -> Mesh[M]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def links(self) -> list[tuple[M, M]]:
        return list(self._proxies)

    def proxy(self, a: M, b: M) -> FaultProxy:
        """The proxy carrying a's connection to b."""
        for m in (a, b):
            if m not in self.members:
                raise KeyError(f"unknown member {m!r}; members are {list(self.members)}")
        if a == b:
            raise ValueError(f"no link from member {a!r} to itself")
        return self._proxies[(a, b)]

    def peers(self, a: M) -> dict[M, Address]:
        """For member `a`: each other member and the address `a` must dial to reach it."""
        if not self._started:
            raise RuntimeError("start the mesh first: proxy ports are picked when it starts")
        return {b: self.proxy(a, b).address for b in self.members if b != a}

    def addresses(self) -> dict[M, dict[M, Address]]:
        return {a: self.peers(a) for a in self.members}

    def cut(self, a: M, b: M, mode: CutMode | str = CutMode.REFUSE) -> None:
        """Cut the directed link a->b (b->a is untouched)."""
        self.proxy(a, b).cut(mode)

    def heal(self, a: M, b: M) -> None:
        self.proxy(a, b).heal()

    def delay(self, a: M, b: M, seconds: float) -> None:
        self.proxy(a, b).delay(seconds)

    def isolate(self, a: M, mode: CutMode | str = CutMode.REFUSE) -> None:
        """Cut every link from and to member `a`."""
        mode = _parse_mode(mode)
        for b in self.members:
            if b != a:
                self.cut(a, b, mode)
                self.cut(b, a, mode)

    def partition(self, *groups: Iterable[M], mode: CutMode | str = CutMode.REFUSE) -> None:
        """Cut every link between members of different groups (both directions)."""
        mode = _parse_mode(mode)
        sets = [set(g) for g in groups]
        unknown = [m for s in sets for m in s if m not in self.members]
        if unknown:
            raise KeyError(f"unknown members {unknown!r}; members are {list(self.members)}")
        seen: set[M] = set()
        for s in sets:
            if seen & s:
                raise ValueError(f"members {sorted(map(repr, seen & s))} are in two groups")
            seen |= s
        for i, s in enumerate(sets):
            for t in sets[i + 1 :]:
                for a in s:
                    for b in t:
                        self.cut(a, b, mode)
                        self.cut(b, a, mode)

    def heal_all(self) -> None:
        for proxy in self._proxies.values():
            proxy.heal()

    def state(self) -> dict[tuple[M, M], LinkState]:
        return {link: p.state for link, p in self._proxies.items()}


class ThreadedMesh(Generic[M]):
    """A Mesh on its own event loop in a background thread, driven with blocking calls.

    ``with ThreadedMesh(members) as mesh: ...`` or ``start()``/``stop()``. Every call waits
    until the mesh has carried it out (at most `timeout` seconds).
    """

    def __init__(
        self,
        members: Mapping[M, Address],
        *,
        listen_host: str | None = None,
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self._mesh: Mesh[M] = Mesh(
            members, listen_host=listen_host, connect_timeout=connect_timeout
        )
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def members(self) -> dict[M, Address]:
        return self._mesh.members

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("ThreadedMesh can be started once")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fault-mesh", daemon=True)
        self._thread.start()
        if not ready.wait(self._timeout):
            raise RuntimeError("the mesh's event loop did not start")
        try:
            self._run(self._mesh.start())
        except BaseException:
            self._shutdown_loop()
            raise

    def stop(self) -> None:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return
        try:
            self._run(self._mesh.stop())
        finally:
            self._shutdown_loop()

    def __enter__(self) -> ThreadedMesh[M]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def peers(self, a: M) -> dict[M, Address]:
        return self._call(self._mesh.peers, a)

    def addresses(self) -> dict[M, dict[M, Address]]:
        return self._call(self._mesh.addresses)

    def cut(self, a: M, b: M, mode: CutMode | str = CutMode.REFUSE) -> None:
        self._call(self._mesh.cut, a, b, mode)

    def heal(self, a: M, b: M) -> None:
        self._call(self._mesh.heal, a, b)

    def delay(self, a: M, b: M, seconds: float) -> None:
        self._call(self._mesh.delay, a, b, seconds)

    def isolate(self, a: M, mode: CutMode | str = CutMode.REFUSE) -> None:
        self._call(self._mesh.isolate, a, mode)

    def partition(self, *groups: Iterable[M], mode: CutMode | str = CutMode.REFUSE) -> None:
        self._call(lambda: self._mesh.partition(*groups, mode=mode))

    def heal_all(self) -> None:
        self._call(self._mesh.heal_all)

    def state(self) -> dict[tuple[M, M], LinkState]:
        return self._call(self._mesh.state)

    def stats(self, a: M, b: M) -> ProxyStats:
        return self._call(lambda: ProxyStats(**vars(self._mesh.proxy(a, b).stats)))

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async def call() -> T:
            return fn(*args)

        return self._run(call())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the mesh is not running (start it first)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    def _shutdown_loop(self) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        if not self._thread.is_alive():
            self._loop.close()
