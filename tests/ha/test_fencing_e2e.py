"""End to end: two primaries never accept writes at once, proven from the writes' timestamps.

Three real agents (fast profile: ttl 2 s, safety margin 0.5 s) with real PostgreSQL on
127.0.0.131-133. While a test runs, one writer thread per member inserts into THAT member's
PostgreSQL directly (not through GET /primary) and records the hamgr.clock instant of each
acknowledged insert. Then the primary's agent is frozen (SIGSTOP), its member cut off from the
others (iptables on its loopback address), or its agent killed (-9), while its PostgreSQL keeps
running. Each test asserts that the old primary's last acknowledged write came strictly before
the new primary's first, and that this is not luck: the old primary kept acknowledging writes
up to shortly before its fence deadline (so without the fence it would have gone on writing
next to the new primary), and the new primary's first write came after that deadline.

The tests share one cluster (a bootstrap costs ~10 s on 2 cores) and each starts by waiting for
it to be healthy again. `AgentCluster.close()` stops every process by PID; every iptables rule
added is removed in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psycopg
import pytest
from aiohttp import web

from hamgr import clock, postgres
from hamgr.agent.process import http_connector
from hamgr.config import load_config
from hamgr.dcs.model import ClusterView
from hamgr.ha.actions import Decision, StartReplica
from hamgr.ha.execute import ActionRunner
from hamgr.postgres import PgSettings
from tests.ha.agentcluster import PASSWORD, AgentCluster, cluster_of_test
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HOSTS = ["127.0.0.131", "127.0.0.132", "127.0.0.133"]
BOOT = 90.0  # bootstrap of three members on a shared 2-core machine, with margin
FAILOVER = 30.0
REJOIN = 60.0
NEAR_DEADLINE = 0.5
"""The old primary's last acknowledged write must lie within this of its fence deadline."""
WRITE_PAUSE = 0.005
RETRY_PAUSE = 0.03
MAX_ATTEMPTS = 20_000
"""Per writer: inserts plus failed attempts; at the pauses above that is minutes of writing."""
TABLE = "fence_writes"
RULE_TAG = "hamgr-fencing-e2e"

T = TypeVar("T")


# --- writers -----------------------------------------------------------------------------------


@dataclass
class MemberWriter:
    """One thread inserting into one member's PostgreSQL; `acks` are hamgr.clock instants."""

    name: str
    connect: Callable[[], psycopg.Connection[Any]]
    acks: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def run(self, stop: threading.Event) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            for _ in range(MAX_ATTEMPTS):
                if stop.is_set():
                    return
                try:
                    if conn is None:
                        conn = self.connect()
                    conn.execute(f"INSERT INTO {TABLE} (member) VALUES (%s)", (self.name,))
                    # hamgr.clock is the clock of the fencer's deadlines.
                    self.acks.append(clock.now())
                    stop.wait(WRITE_PAUSE)
                except psycopg.Error as exc:
                    kind = type(exc).__name__
                    self.failures[kind] = self.failures.get(kind, 0) + 1
                    if conn is not None:
                        with contextlib.suppress(psycopg.Error):
                            conn.close()
                    conn = None  # every failure is retried on a fresh connection
                    stop.wait(RETRY_PAUSE)
        finally:
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()


class Writers:
    """A writer per member, started and stopped together (use as a context manager)."""

    def __init__(self, cluster: AgentCluster, via_socket: tuple[str, ...] = ()) -> None:
        self.stop = threading.Event()
        self.by_name = {
            name: MemberWriter(name, _connector(cluster, name, name in via_socket))
            for name in cluster.members
        }

    def __enter__(self) -> Writers:
        for w in self.by_name.values():
            w.thread = threading.Thread(target=w.run, args=(self.stop,), name=f"writer-{w.name}")
            w.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for w in self.by_name.values():
            if w.thread is not None:
                w.thread.join(timeout=15)
                assert not w.thread.is_alive(), f"writer {w.name} did not stop"

    def acks(self, name: str) -> list[float]:
        return list(self.by_name[name].acks)

    def acked_elsewhere(self, name: str, count: int) -> str | None:
        """A member other than `name` with at least `count` acknowledged writes, if any."""
        for other, w in self.by_name.items():
            if other != name and len(w.acks) >= count:
                return other
        return None

    def summary(self) -> str:
        return "; ".join(
            f"{n}: {len(w.acks)} acks, failures {w.failures}" for n, w in self.by_name.items()
        )


def _connector(
    cluster: AgentCluster, name: str, via_socket: bool
) -> Callable[[], psycopg.Connection[Any]]:
    """Connections to member `name`: TCP to its address, or its unix socket in `<data>.run`
    (which no firewall rule on the address reaches)."""
    m = cluster.members[name]
    host = str(m.data_dir.with_name(m.data_dir.name + ".run")) if via_socket else m.host

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=host,
            port=m.pg_port,
            user="postgres",
            password=PASSWORD,
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
            options="-c statement_timeout=2000",
        )

    return connect


# --- what the tests read -----------------------------------------------------------------------


@dataclass(frozen=True)
class FenceLine:
    """One line of the fencer's log saying it fired."""

    mono: float
    fence_at: float
    killed: tuple[int, ...]
    text: str


_FENCE = re.compile(r"clock=(?P<mono>[0-9.]+) .*FENCE fence_at=(?P<at>[0-9.]+) ")
_KILLED = re.compile(r"SIGKILL postmaster (\d+)")


_MONO = re.compile(r" clock=([0-9.]+) ")


def fencer_log(cluster: AgentCluster, name: str, since: float) -> list[str]:
    """The lines member `name`'s fencer logged after hamgr.clock instant `since`."""
    m = cluster.members[name]
    log = m.data_dir.with_name(m.data_dir.name + ".run") / "hamgr-fencer.log"
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if (t := _MONO.search(line)) and float(t[1]) >= since]


def fence_lines(cluster: AgentCluster, name: str, since: float) -> list[FenceLine]:
    """The fencer's FENCE lines of member `name` logged after hamgr.clock instant `since`."""
    found = []
    for line in fencer_log(cluster, name, since):
        match = _FENCE.search(line)
        if match:
            killed = tuple(int(p) for p in _KILLED.findall(line))
            found.append(FenceLine(float(match["mono"]), float(match["at"]), killed, line))
    return found


def healthy(cluster: AgentCluster) -> tuple[str, list[str]]:
    """Wait for one primary and every other member streaming: (primary, replicas)."""
    primary = cluster.wait_primary(BOOT)
    replicas = [n for n in cluster.members if n != primary]
    cluster.wait_streaming(replicas, BOOT)
    with cluster.connect(primary) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, member text NOT NULL)"
        )
    return primary, replicas


def mark(cluster: AgentCluster, primary: str) -> int:
    """Insert a marker row on `primary`; its id (see `rejoined`)."""
    with cluster.connect(primary) as conn:
        row = conn.execute(
            f"INSERT INTO {TABLE} (member) VALUES ('marker') RETURNING id"
        ).fetchone()
    assert row is not None
    return int(row[0])


def rejoined(cluster: AgentCluster, name: str, marker: int) -> bool:
    """Whether `name` is a streaming standby that has replayed the new primary's `marker` row
    (so it follows the new timeline, rewound if need be)."""
    if cluster.http(name, "/replica", 1.0)[0] != 200:
        return False
    try:
        with cluster.connect(name) as conn:
            row = conn.execute(
                f"SELECT pg_is_in_recovery(), EXISTS (SELECT 1 FROM {TABLE} WHERE id = %s)",
                (marker,),
            ).fetchone()
    except psycopg.Error:
        return False
    return row == (True, True)


def fencer_processes(socket_path: Path) -> list[int]:
    """PIDs of running `hamgr.fencer` processes serving `socket_path`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if b"hamgr.fencer" in argv and str(socket_path).encode() in argv:
                pids.append(int(cmdline.parent.name))
    return pids


@dataclass(frozen=True)
class Verdict:
    """The timestamps that decide whether two primaries overlapped."""

    old: str
    new: str
    old_last: float
    new_first: float

    @property
    def gap(self) -> float:
        return self.new_first - self.old_last


def judge(writers: Writers, old: str, frozen_at: float) -> Verdict:
    """Assert the old primary's last acknowledged write precedes every other member's first."""
    old_acks = writers.acks(old)
    assert old_acks and old_acks[-1] > frozen_at, (
        f"{old} acknowledged no write after the failure began: nothing was shown "
        f"({writers.summary()})"
    )
    firsts = {n: w.acks[0] for n, w in writers.by_name.items() if n != old and w.acks}
    assert firsts, f"no other member acknowledged a write ({writers.summary()})"
    new = min(firsts, key=lambda n: firsts[n])
    verdict = Verdict(old, new, old_acks[-1], firsts[new])
    print(
        f"\nold primary {old}: last write acknowledged {verdict.old_last - frozen_at:.3f} s "
        f"after the failure began; new primary {new}: first write "
        f"{verdict.new_first - frozen_at:.3f} s after it; gap {verdict.gap * 1000:.1f} ms "
        f"({writers.summary()})"
    )
    assert verdict.old_last < verdict.new_first, (
        f"TWO PRIMARIES: {old} acknowledged a write {-verdict.gap * 1000:.1f} ms after {new} "
        f"acknowledged its first"
    )
    return verdict


def check_near_deadline(verdict: Verdict, fence: FenceLine) -> None:
    """The overlap test was meaningful: the old primary wrote until shortly before its deadline
    (a fence that never fired would have let it go on), the new one only after it."""
    before = fence.fence_at - verdict.old_last
    after = verdict.new_first - fence.fence_at
    print(
        f"relative to the fence deadline: old primary's last write at {-before * 1000:+.1f} ms "
        f"(the fencer's reaction time when positive), new primary's first at "
        f"{after * 1000:+.1f} ms"
    )
    assert before < NEAR_DEADLINE, (
        f"{verdict.old} stopped writing {before:.3f} s before its deadline: the writes do not "
        "show that the fence was needed"
    )
    assert after > 0, f"{verdict.new} wrote before {verdict.old}'s fence deadline"


# --- the cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with cluster_of_test(request, "fence", HOSTS) as c:
        c.start_all()
        yield c


# --- the source address of the agent's HTTP calls ----------------------------------------------


async def test_agent_http_calls_leave_from_the_rest_address(tmp_path: Path) -> None:
    """Peer probes come from the member's own address, so cutting that address off isolates it
    (aiohttp would otherwise dial from 127.0.0.1)."""
    seen: list[str | None] = []

    async def hello(request: web.Request) -> web.Response:
        seen.append(request.remote)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.139", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        c = AgentCluster(tmp_path, ["127.0.0.138"])
        own = load_config(c.members["m1"].config, env={}, resolve=False)
        wildcard = replace(own, restapi=replace(own.restapi, listen="0.0.0.0:8008"))
        for config, expected in ((own, "127.0.0.138"), (wildcard, "127.0.0.1")):
            async with (
                aiohttp.ClientSession(connector=http_connector(config)) as http,
                http.get(f"http://127.0.0.139:{port}/") as resp,
            ):
                assert resp.status == 200
            assert seen[-1] == expected, f"{config.restapi.listen}: probe came from {seen[-1]}"
    finally:
        await runner.cleanup()


# --- no primary without the leader key ---------------------------------------------------------


async def test_starting_a_standby_with_no_leader_never_makes_a_primary(
    make_pg: Callable[..., PgSettings],
) -> None:
    """StartReplica(None) ("no leader: starting PostgreSQL as a standby to take part in the
    race") on the data dir of a fenced primary, or one whose failed pg_rewind had cleared its
    standby config, must start a standby. Started as a primary, every member of a leaderless
    cluster accepted writes at once, and each demoted itself and started again, forever."""
    pg = make_pg("fenced")
    await postgres.initdb(pg, postgres.InitdbOptions(no_sync=True))
    await postgres.start(pg)
    await postgres.stop(pg, "immediate")  # as the fencer leaves it: a primary, crashed
    # Only PostgreSQL is touched by this action, never the store.
    runner = ActionRunner("fenced", None, pg)  # type: ignore[arg-type]
    assert await runner.run(Decision((StartReplica(None),), "no leader"), ClusterView())
    # A standby is started without waiting for it to be ready: wait here, bounded.
    deadline = clock.now() + 30
    state = await postgres.status(pg)
    while state.role not in ("replica", "primary") and clock.now() < deadline:
        await asyncio.sleep(0.1)
        state = await postgres.status(pg)
    assert (state.running, state.role) == (True, "replica")


# --- 1: the primary's agent frozen -------------------------------------------------------------


def test_frozen_primary_agent_is_fenced_before_a_new_primary_writes(
    cluster: AgentCluster,
) -> None:
    """SIGSTOP of the primary's agent: only its fencer can stop PostgreSQL, and does, before
    the new primary's first write; after SIGCONT the old member rejoins as a replica."""
    old, _ = healthy(cluster)
    postmaster = cluster.postmaster_pid(old)
    with Writers(cluster) as writers:
        wait_for(lambda: len(writers.acks(old)) >= 20, 10, f"writes acknowledged by {old}")
        frozen_at = clock.now()
        cluster.sigstop_agent(old)
        try:
            new = wait_for(
                lambda: writers.acked_elsewhere(old, 20), FAILOVER, "writes on a new primary"
            )
            survived = postgres_alive(postmaster)  # while nothing but the fencer could stop it
        finally:
            cluster.sigcont_agent(old)
        marker = mark(cluster, new)
        wait_for(lambda: rejoined(cluster, old, marker), REJOIN, f"{old} back as a replica")
    verdict = judge(writers, old, frozen_at)
    assert verdict.new == new
    assert not survived, f"{old}'s postmaster {postmaster} outlived the frozen agent's lease"
    fences = fence_lines(cluster, old, frozen_at)
    assert fences, f"{old}'s fencer logged no FENCE line after the freeze"
    assert postmaster in fences[0].killed, f"the fencer did not kill {postmaster}: {fences[0]}"
    check_near_deadline(verdict, fences[0])


def postgres_alive(pid: int | None) -> bool:
    """Whether process `pid` still exists (and is no zombie)."""
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# --- 2: the primary's member cut off -----------------------------------------------------------


class Partition:
    """iptables rules in INPUT that cut `host` off from every other loopback address."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.rules = [
            ["INPUT", "-d", host, "!", "-s", host],
            ["INPUT", "-s", host, "!", "-d", host],
        ]
        self.added: list[list[str]] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why iptables cannot be used here, or None."""
        if shutil.which("iptables") is None:
            return "iptables is not installed"
        probe = subprocess.run(
            ["iptables", "-w", "5", "-S", "INPUT"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode != 0:
            return f"iptables is not permitted here: {probe.stderr.strip()}"
        return None

    def _iptables(self, op: str, rule: list[str]) -> subprocess.CompletedProcess[str]:
        chain, *match = rule
        command = ["iptables", "-w", "5", op, chain, *match]
        command += ["-m", "comment", "--comment", RULE_TAG, "-j", "DROP"]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def __enter__(self) -> Partition:
        try:
            for rule in self.rules:
                done = self._iptables("-I", rule)
                assert done.returncode == 0, f"iptables refused {rule}: {done.stderr.strip()}"
                self.added.append(rule)
        except BaseException:
            self.heal()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()

    def heal(self) -> None:
        """Remove every rule this partition added (idempotent)."""
        failed = []
        while self.added:
            rule = self.added.pop()
            done = self._iptables("-D", rule)
            if done.returncode != 0:
                failed.append(f"{rule}: {done.stderr.strip()}")
        assert not failed, f"could not remove iptables rules: {failed}"


def reachable(source: str, host: str, port: int) -> bool:
    """Whether a TCP connection from `source` to host:port completes within 0.5 s."""
    try:
        with socket.create_connection((host, port), timeout=0.5, source_address=(source, 0)):
            return True
    except OSError:
        return False


def test_cut_off_primary_stops_writing_before_a_new_primary_writes(
    cluster: AgentCluster,
) -> None:
    """The primary's address cut off from the others (its agent runs on): its writes, made
    through the unix socket the partition does not reach, end before the new primary's first.
    Whether its fencer or its agent stops PostgreSQL first is a race either may win."""
    why = Partition.unavailable()
    if why is not None:
        pytest.skip(why)
    old, replicas = healthy(cluster)
    old_host = cluster.members[old].host
    other_host = cluster.members[replicas[0]].host
    with Writers(cluster, via_socket=(old,)) as writers:
        wait_for(lambda: len(writers.acks(old)) >= 20, 10, f"writes acknowledged by {old}")
        with Partition(old_host):
            cut_at = clock.now()
            assert not reachable(other_host, old_host, 7000), "the partition lets peers in"
            assert not reachable(old_host, other_host, 7000), "the partition lets the old out"
            new = wait_for(
                lambda: writers.acked_elsewhere(old, 20), FAILOVER, "writes on a new primary"
            )
        marker = mark(cluster, new)
        wait_for(lambda: rejoined(cluster, old, marker), REJOIN, f"{old} back as a replica")
    verdict = judge(writers, old, cut_at)
    assert verdict.new == new
    fences = fence_lines(cluster, old, cut_at)
    if fences:  # the fencer fired; otherwise the agent itself stopped PostgreSQL in time
        check_near_deadline(verdict, fences[0])
    # Its status page's event strip (GET /events) tells that it lost the store, and regained it.
    code, body = cluster.http(old, "/events")
    assert code == 200, body
    said = [(e["kind"], e["text"]) for e in body["events"]]
    assert ("store", f"{old} reads the cluster from the store again") in said, said
    assert any(k == "store" and t.startswith(f"{old} cannot read the store: ") for k, t in said)


# --- 3: the primary's agent killed -------------------------------------------------------------


def test_killed_primary_agent_is_fenced_and_its_successor_takes_the_fencer_over(
    cluster: AgentCluster,
) -> None:
    """kill -9 of the primary's agent: the fencer outlives it and stops the postmaster at the
    deadline; an agent started again on that member reuses that fencer (no second one)."""
    old, _ = healthy(cluster)
    m = cluster.members[old]
    socket_path = m.data_dir.with_name(m.data_dir.name + ".run") / "hamgr-fencer.sock"
    fencers = fencer_processes(socket_path)
    assert len(fencers) == 1, f"{old} should run one fencer, runs {fencers}"
    postmaster = cluster.postmaster_pid(old)
    with Writers(cluster) as writers:
        wait_for(lambda: len(writers.acks(old)) >= 20, 10, f"writes acknowledged by {old}")
        killed_at = clock.now()
        cluster.kill9_agent(old)
        new = wait_for(
            lambda: writers.acked_elsewhere(old, 20), FAILOVER, "writes on a new primary"
        )
        assert not postgres_alive(postmaster), "the old postmaster outlived its fence"
        cluster.start(old)
        marker = mark(cluster, new)
        wait_for(lambda: rejoined(cluster, old, marker), REJOIN, f"{old} back as a replica")
    verdict = judge(writers, old, killed_at)
    assert verdict.new == new
    fences = fence_lines(cluster, old, killed_at)
    assert fences, f"{old}'s fencer logged no FENCE line after its agent died"
    assert postmaster in fences[0].killed, f"the fencer did not kill {postmaster}: {fences[0]}"
    check_near_deadline(verdict, fences[0])
    assert fencer_processes(socket_path) == fencers, "the new agent did not keep the fencer"
    after_fence = fencer_log(cluster, old, fences[0].mono)
    reconnected = [x for x in after_fence if "agent connected" in x or "replaces the" in x]
    assert reconnected, f"no agent connected to {old}'s fencer after the fence"
