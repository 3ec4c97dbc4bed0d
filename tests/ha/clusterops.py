"""What the integration tests of tests/ha/test_cluster.py do to and ask of an AgentCluster.

Waiting on conditions with deadlines, REST calls with the API's credentials, SQL on a member,
the store's leader, a member's log since a point, freezing a primary's WAL senders (to make its
timeline diverge), a client that writes through whichever member is primary, and HAProxy run
from deploy/haproxy/haproxy.cfg. Every process started here is stopped by PID.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from tests.ha.agentcluster import API_AUTH, PASSWORD, AgentCluster
from tests.tools.poll import wait_for

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
HAPROXY_CFG = REPO / "deploy" / "haproxy" / "haproxy.cfg"


def during(seconds: float, check: Callable[[], None], interval: float = 0.2) -> int:
    """Run `check()` (it raises on a violation) repeatedly for `seconds`; returns how often."""
    end = time.monotonic() + seconds
    count = 0
    while True:
        check()
        count += 1
        if time.monotonic() >= end:
            return count
        time.sleep(interval)


# -- REST ------------------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def call(
    c: AgentCluster,
    name: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: tuple[str, str] | None = API_AUTH,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """`method path` on member `name`'s REST API: (status, JSON body or None); (0, None) when
    the member does not answer."""
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = _basic(*auth)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        c.members[name].api + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=c.ssl_context) as resp:
            return resp.status, _json(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())
    except (urllib.error.URLError, OSError):
        return 0, None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def status_of(c: AgentCluster, name: str) -> dict[str, Any]:
    """Member `name`'s GET /patroni, or {} when it does not answer."""
    code, body = c.http(name, "/patroni")
    return body if code == 200 and isinstance(body, dict) else {}


def streaming_on(c: AgentCluster, name: str, timeline: int) -> bool:
    """`name` answers GET /replica 200 (a streaming standby) on `timeline`."""
    code, body = c.http(name, "/replica")
    return code == 200 and isinstance(body, dict) and body.get("timeline") == timeline


def hactl(c: AgentCluster, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `hactl --url <member name's API> ARGS` with the API's credentials."""
    env = {**os.environ, "HACTL_PASSWORD": API_AUTH[1]}
    argv = [sys.executable, "-m", "hamgr.cli.hactl", *args, "--url", c.members[name].api]
    if c.tls_dir is not None:
        argv += ["--cacert", str(c.tls_dir / "ca.crt")]
    return subprocess.run(
        [*argv, "--username", API_AUTH[0]],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def store_leader(c: AgentCluster, via: str) -> str | None:
    """The member whose store node leads the Raft group now (asked with `hamgr store-ctl
    status` through member `via`'s configuration), or None when no leader is known."""
    try:
        out = subprocess.run(
            [
                *(sys.executable, "-m", "hamgr", "store-ctl"),
                *("--config", str(c.members[via].config), "--timeout", "2", "status"),
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except subprocess.TimeoutExpired:
        return None
    ids = {m.node_id: m.name for m in c.members.values()}
    for line in out.splitlines():
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            leader = ids.get(int(json.loads(line).get("leader") or 0))
            if leader is not None:
                return leader
    return None


def seed_bootstrap_claim(c: AgentCluster, timeout: float = 60.0) -> None:
    """Leave the store as a claimant that died while bootstrapping would: ``initialize``
    claimed (empty) and no leader. The members' stores run alone (`hamgr store` on the agents'
    configurations) while `hamgr store-ctl put` writes the claim; then they are stopped."""
    stores: list[subprocess.Popen[bytes]] = []
    try:
        for m in c.members.values():
            with open(m.log, "ab") as log:
                stores.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "hamgr", "store", "--config", str(m.config)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        first = next(iter(c.members.values()))
        put = [
            *(sys.executable, "-m", "hamgr", "store-ctl", "--config", str(first.config)),
            *("--timeout", "2", "put", f"/hamgr/{c.scope}/initialize", ""),
        ]
        wait_for(
            lambda: (
                subprocess.run(put, capture_output=True, timeout=30, check=False).returncode == 0
            ),
            timeout,
            "the bootstrap claim written to the store",
            interval=0.5,
        )
    finally:
        for proc in stores:
            proc.terminate()
        for proc in stores:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# -- logs ------------------------------------------------------------------------------------


def log_size(c: AgentCluster, name: str) -> int:
    """Where member `name`'s agent log ends now (for `log_since`)."""
    try:
        return c.members[name].log.stat().st_size
    except FileNotFoundError:
        return 0


def log_since(c: AgentCluster, name: str, offset: int = 0) -> str:
    """Member `name`'s agent log from byte `offset` on."""
    try:
        with c.members[name].log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def decisions(text: str) -> list[str]:
    """The HA loop's decision lines in a piece of agent log."""
    return [line for line in text.splitlines() if "hamgr.ha.loop: decision:" in line]


# -- SQL -------------------------------------------------------------------------------------


def sql(c: AgentCluster, name: str, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement on member `name` (autocommit); its rows ([] when none)."""
    with c.connect(name) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def try_sql(c: AgentCluster, name: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    """`sql()`, or None when the member cannot answer now (down, starting, recovering)."""
    try:
        return sql(c, name, query, params)
    except psycopg.Error:
        return None


def has_row(c: AgentCluster, name: str, table: str, value: int) -> bool:
    rows = try_sql(c, name, f"SELECT count(*) FROM {table} WHERE x = %s", (value,))
    return bool(rows) and rows[0][0] == 1


# -- processes -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def walsender_pids(c: AgentCluster, name: str) -> list[int]:
    """The WAL sender processes of member `name`'s postmaster."""
    pm = c.postmaster_pid(name)
    if pm is None:
        return []
    found = []
    for pid in _children(pm):
        with contextlib.suppress(OSError):
            if b"walsender" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def freeze_walsenders(c: AgentCluster, name: str, expected: int) -> list[int]:
    """SIGSTOP the `expected` WAL senders of member `name`: WAL written from now on reaches no
    standby (what a primary writes just before its host dies, with asynchronous replication).
    """

    def all_there() -> list[int] | None:
        found = walsender_pids(c, name)
        return found if len(found) == expected else None

    pids = wait_for(all_there, 10, f"{expected} WAL senders on {name}")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


class Writer(threading.Thread):
    """A client inserting sequence numbers into `table` (autocommit), each through whichever
    member answers GET /primary with 200, reconnecting after any error.

    `acked` lists every number whose INSERT returned success; `errors` counts the failures.
    Runs until `stop()` or `limit` seconds, whichever comes first.
    """

    def __init__(self, c: AgentCluster, table: str, limit: float = 90.0) -> None:
        super().__init__(name=f"writer-{table}", daemon=True)
        self.c = c
        self.table = table
        self.limit = limit
        self.acked: list[int] = []
        self.by_member: dict[str, int] = {}
        self.errors = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the writer did not stop"

    def count(self) -> int:
        return len(self.acked)

    def run(self) -> None:
        end = time.monotonic() + self.limit
        seq = 0
        conn: psycopg.Connection[Any] | None = None
        member = ""
        while not self._halt.is_set() and time.monotonic() < end:
            if conn is None:
                primaries = self.c.primaries()
                if len(primaries) != 1:
                    self._halt.wait(0.05)
                    continue
                member = primaries[0]
                try:
                    conn = self.c.connect(member)
                except psycopg.Error:
                    self.errors += 1
                    self._halt.wait(0.05)
                    continue
            seq += 1
            try:
                conn.execute(f"INSERT INTO {self.table} (x) VALUES (%s)", (seq,))
            except psycopg.Error:
                self.errors += 1
                with contextlib.suppress(psycopg.Error):
                    conn.close()
                conn = None
                continue
            self.acked.append(seq)
            self.by_member[member] = self.by_member.get(member, 0) + 1
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


# -- HAProxy ---------------------------------------------------------------------------------


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None,
    )


@contextlib.contextmanager
def running_haproxy(c: AgentCluster, listen: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """HAProxy in the foreground, configured by deploy/haproxy/haproxy.cfg (the production
    example: its site values come from the environment) pointing at `c`'s members and
    listening on `listen`; killed by PID on exit."""
    binary = haproxy_binary()
    assert binary is not None, "haproxy is not installed"
    env = {**os.environ, "HAMGR_LISTEN": listen, "HAMGR_API_PORT": "8008"}
    if c.tls_dir is not None:  # health checks over TLS (check-ssl), the cluster CA verified
        env["HAMGR_API_CAFILE"] = str(c.tls_dir / "ca.crt")
    members = list(c.members.values())
    assert len(members) == 3, "deploy/haproxy/haproxy.cfg names three members"
    for i, m in enumerate(members, start=1):
        env[f"HAMGR_PG{i}"] = f"{m.host}:{m.pg_port}"
    check = subprocess.run(
        [binary, "-c", "-f", str(HAPROXY_CFG)], env=env, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, f"haproxy -c rejects {HAPROXY_CFG}:\n{check.stdout}{check.stderr}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(HAPROXY_CFG)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def connect_through(listen: str) -> psycopg.Connection[Any]:
    """A superuser autocommit connection to whatever HAProxy at `listen` routes to."""
    host, _, port = listen.rpartition(":")
    return psycopg.connect(
        host=host,
        port=int(port),
        user="postgres",
        password=PASSWORD,
        dbname="postgres",
        connect_timeout=2,
        autocommit=True,
    )


def reached_through(listen: str) -> tuple[str, bool] | None:
    """(server address, in recovery) of the PostgreSQL reached through HAProxy, or None."""
    try:
        with connect_through(listen) as conn:
            row = conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return None
    return (str(row[0]), bool(row[1])) if row else None
