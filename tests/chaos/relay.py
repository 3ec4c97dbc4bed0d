"""The relay between hosts: every TCP connection from one member to another crosses it.

    ip netns exec hchaos-hub python -m tests.chaos.relay --listen 10.77.0.1:9900 \\
        --control FILE [--seed S]

It runs in the hub namespace (`tests.chaos.netns`), where a REDIRECT rule sends it every TCP
connection between members; it learns the real destination from SO_ORIGINAL_DST, dials it, and
pumps bytes both ways through the faults of each direction: delay, jitter and loss
(`tests.tools.faultproxy.LinkFaults`, one per directed pair of hosts, seeded), and cuts:

- ``refuse``: connections between the two hosts are reset, and new ones reset as soon as the
  hub accepted them (the relay is transparent, so the handshake completes first; a REJECT rule,
  a dead host's kernel);
- ``blackhole``: the bytes of that direction are held, not delivered (one-way loss); a new
  connection between the two waits until both directions flow again (its SYN or SYN-ACK would
  be lost). Held bytes flow in order once healed, as TCP would deliver them.

The faults come from the JSON file FILE, written whole (atomically) by the driver and read again
whenever it changes (checked every `POLL` seconds)::

    {"version": 3,
     "default": {"delay": 0.05, "jitter": 0.03, "loss": 0.0},
     "links": {"10.77.0.11>10.77.0.12": {"cut": "blackhole"}, ...}}

A link's entry overrides the default for bytes flowing from the first host to the second. Once
a version is in force the relay writes it to FILE.applied, so the driver knows when a change
took effect. It prints `relay ready` once it listens; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.tools.faultproxy import CHUNK_SIZE, QUEUE_CHUNKS, LinkFaults

POLL = 0.05
SO_ORIGINAL_DST = 80
CONNECT_TIMEOUT = 5.0
CUTS = ("refuse", "blackhole")


@dataclass(frozen=True)
class LinkRule:
    """The faults of one direction between two hosts."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    cut: str | None = None


def parse_control(text: str) -> tuple[int, dict[tuple[str, str], LinkRule], LinkRule]:
    """(version, rule per (from, to) host pair, default rule) from the control file's text.
    Raises ValueError naming the key that is wrong."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("control: expected a JSON object")
    version = data.get("version", 0)
    if not isinstance(version, int):
        raise ValueError(f"control.version: expected an integer, got {version!r}")
    default = _rule(data.get("default", {}), "control.default", LinkRule())
    links: dict[tuple[str, str], LinkRule] = {}
    for key, value in (data.get("links") or {}).items():
        src, sep, dst = key.partition(">")
        if not sep or not src or not dst:
            raise ValueError(f"control.links: key {key!r} is not 'FROM>TO'")
        links[(src, dst)] = _rule(value, f"control.links[{key!r}]", default)
    return version, links, default


def _rule(value: Any, where: str, base: LinkRule) -> LinkRule:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object")
    unknown = set(value) - {"delay", "jitter", "loss", "cut"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    cut = value.get("cut", base.cut)
    if cut is not None and cut not in CUTS:
        raise ValueError(f"{where}.cut: {cut!r} is not one of {CUTS}")
    rule = LinkRule(
        delay=float(value.get("delay", base.delay)),
        jitter=float(value.get("jitter", base.jitter)),
        loss=float(value.get("loss", base.loss)),
        cut=cut,
    )
    LinkFaults().set(delay=rule.delay, jitter=rule.jitter, loss=rule.loss)  # validates
    return rule


class _Direction:
    """One direction between two hosts: its faults and whether its bytes flow."""

    def __init__(self, seed: int) -> None:
        self.faults = LinkFaults(seed)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.refused = False

    def apply(self, rule: LinkRule) -> None:
        self.faults.set(delay=rule.delay, jitter=rule.jitter, loss=rule.loss)
        self.refused = rule.cut == "refuse"
        if rule.cut == "blackhole":
            self.flowing.clear()
        else:
            self.flowing.set()


class Relay:
    """Accepts redirected connections on `listen` and relays them with the faults in force."""

    def __init__(self, listen: tuple[str, int], control: Path, seed: int) -> None:
        self.listen = listen
        self.control = control
        self.seed = seed
        self.default = LinkRule()
        self.rules: dict[tuple[str, str], LinkRule] = {}
        self.directions: dict[tuple[str, str], _Direction] = {}
        self.conns: dict[tuple[str, str], set[asyncio.Task[None]]] = {}
        self.stop = asyncio.Event()
        self._mtime = -1

    def direction(self, src: str, dst: str) -> _Direction:
        found = self.directions.get((src, dst))
        if found is None:
            pair_seed = self.seed ^ zlib.crc32(f"{src}>{dst}".encode())
            found = self.directions[(src, dst)] = _Direction(pair_seed)
            found.apply(self.rules.get((src, dst), self.default))
        return found

    def reload(self) -> None:
        """Read the control file if it changed and put its rules in force."""
        try:
            mtime = self.control.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            version, self.rules, self.default = parse_control(self.control.read_text())
        except (OSError, ValueError) as exc:
            print(f"relay: control file {self.control}: {exc}", file=sys.stderr, flush=True)
            return
        for (src, dst), d in self.directions.items():
            d.apply(self.rules.get((src, dst), self.default))
        for pair, tasks in self.conns.items():
            if self.direction(*pair).refused or self.direction(pair[1], pair[0]).refused:
                for task in list(tasks):
                    task.cancel()
        applied = self.control.with_name(self.control.name + ".applied")
        tmp = applied.with_name(applied.name + ".tmp")
        tmp.write_text(str(version))
        os.replace(tmp, applied)

    async def watch(self) -> None:
        while not self.stop.is_set():
            self.reload()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), POLL)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        src = writer.get_extra_info("peername")[0]
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        (port,) = struct.unpack("!H", raw[2:4])
        dst = socket.inet_ntoa(raw[4:8])
        forth, back = self.direction(src, dst), self.direction(dst, src)
        task = asyncio.current_task()
        assert task is not None
        tasks = self.conns.setdefault((src, dst), set())
        tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            if forth.refused or back.refused:
                return
            await forth.flowing.wait()
            await back.flowing.wait()
            async with asyncio.timeout(CONNECT_TIMEOUT):
                up_reader, upstream = await asyncio.open_connection(dst, port)
            pumps = [
                asyncio.create_task(self.pump(reader, upstream, forth)),
                asyncio.create_task(self.pump(up_reader, writer, back)),
            ]
            try:
                await asyncio.gather(*pumps)
            finally:
                for p in pumps:
                    p.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            tasks.discard(task)
            for w in (writer, upstream):
                if w is not None:
                    w.transport.abort()

    async def pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: _Direction
    ) -> None:
        """Copy src to dst in order, each chunk when its faults say, none while blackholed."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            while True:
                data = await src.read(CHUNK_SIZE)
                await queue.put((way.faults.due(loop.time()), data))
                if not data:
                    return

        reading = asyncio.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await way.flowing.wait()
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    async def run(self) -> None:
        self.reload()
        server = await asyncio.start_server(self.handle, *self.listen, reuse_address=True)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        print("relay ready", flush=True)
        watcher = asyncio.create_task(self.watch())
        await self.stop.wait()
        server.close()
        for tasks in self.conns.values():
            for task in list(tasks):
                task.cancel()
        await watcher


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    ap.add_argument("--control", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        ap.error(f"--listen: expected HOST:PORT, got {args.listen!r}")
    asyncio.run(Relay((host, int(port)), args.control, args.seed).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
