"""A local hamgr cluster for benchmarks: N `hamgr agent` processes with real PostgreSQL.

Each member gets its own loopback address (store, store clients, REST and PostgreSQL all bind
it, on the same ports everywhere: 7000, 7100, 8008, 5432), its own directories under one root,
and the chosen timing profile. Agents log to `<root>/<name>.log`. With `sync` other than "off"
each member's config also carries `bootstrap.dcs.synchronous_mode` (that string),
`synchronous_node_count: 1` and `synchronous_mode_strict: false`; with "off" nothing is written,
so the agents run on their defaults. The files are written and the agents run by
`hamgr.cli.localcluster` (the builder the demo and the tests use too); what is here is the
benchmarks' own observation (settled, behind, fencer logs). Everything started here is killed
by PID on `close()`: agents, then each member's postmaster and its children, then fencers
(found through their pid files), whatever happened.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from hamgr.cli.localcluster import API_USER, LocalCluster, Ports, one_per_host

PASSWORD = "bench-password"
PG_PORT = Ports().pg
API_PORT = Ports().api
MARKER_TABLE = "bench_marker"
"""Rows written on the primary to see which standbys replay its writes (`Cluster.behind`)."""
T = TypeVar("T")
_FENCER_LINE = re.compile(r" mono=([0-9.]+) hamgr-fencer\[\d+\]: (.*)")
SMALL_PG: dict[str, object] = {"shared_buffers": "16MB"}
"""Each member's own parameters."""
SMALL_PG_CLUSTER: dict[str, object] = {
    "max_connections": 40,
    "max_wal_senders": 6,
    "wal_keep_size": "64MB",
}
"""Cluster-wide parameters (bootstrap.dcs): those that must be the same on every member."""


class Cluster(LocalCluster):
    """Agents named pg1..pgN on `hosts` (one member each), configured under `root` by
    `hamgr.cli.localcluster` (files written at once). With `tls` the REST API and the store run
    over TLS, certificates like ``hamgr certs init`` makes in ``root/tls`` (`tls_dir`;
    `ssl_context` trusts its CA)."""

    def __init__(
        self,
        root: Path,
        hosts: list[str],
        *,
        profile: str,
        scope: str = "bench",
        sync: str = "off",
        tls: bool = False,
    ):
        dcs: dict[str, object] = {"postgresql": {"parameters": dict(SMALL_PG_CLUSTER)}}
        if sync != "off":
            dcs.update(
                synchronous_mode=sync, synchronous_node_count=1, synchronous_mode_strict=False
            )
        super().__init__(
            root,
            one_per_host(hosts, "pg"),
            scope=scope,
            password=PASSWORD,
            profile=profile,
            pg_parameters=SMALL_PG,
            bootstrap_dcs=dcs,
            tls=tls,
        )
        self.sync = sync
        self.write_configs()

    def config_problems(self) -> str | None:
        """What `hamgr validate-config` says against any member's file, or None if all pass."""
        for m in self.members.values():
            done = subprocess.run(
                [sys.executable, "-m", "hamgr", "validate-config", str(m.config)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if done.returncode != 0:
                return f"{m.config}:\n{done.stdout}{done.stderr}"
        return None

    # -- processes ----------------------------------------------------------------------------

    def fencer_log(self, name: str) -> list[tuple[float, str]]:
        """Member `name`'s fencer log: (CLOCK_MONOTONIC instant, message) per line."""
        try:
            text = (self.members[name].run_dir / "hamgr-fencer.log").read_text(errors="replace")
        except OSError:
            return []
        found = []
        for line in text.splitlines():
            stamp = _FENCER_LINE.search(line)
            if stamp:
                found.append((float(stamp[1]), stamp[2]))
        return found

    def fence_lines(self, name: str, since: float) -> list[str]:
        """The FENCE lines member `name`'s fencer logged after monotonic instant `since`."""
        return [
            text
            for mono, text in self.fencer_log(name)
            if mono >= since and text.startswith("FENCE ")
        ]

    def kill9(self, name: str) -> None:
        """SIGKILL member `name`'s agent and its postmaster with every child, as a host crash
        would (its fencer, a separate process, is left alone)."""
        m = self.members[name]
        pm = self.postmaster_pid(name)
        victims = [pm, *_children(pm)] if pm is not None else []
        if m.proc is not None and m.proc.poll() is None:
            victims.insert(0, m.proc.pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if m.proc is not None:
            m.proc.wait(timeout=10)

    def reclone(self, name: str) -> None:
        """Kill member `name`, delete its PostgreSQL data dir and start its agent again, which
        then clones the primary afresh (the repair for a member that cannot rejoin)."""
        self.kill9(name)
        shutil.rmtree(self.members[name].data_dir, ignore_errors=True)
        self.start(name)

    def post(self, name: str, path: str, body: dict[str, Any], timeout: float) -> tuple[int, Any]:
        """POST JSON to a member's REST path with the API's basic auth."""
        req = urllib.request.Request(
            self.members[name].api + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        token = _basic(API_USER, PASSWORD)
        req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)

    def primaries(self, names: list[str] | None = None) -> list[str]:
        """Members (of `names`, default all) whose GET /primary answers 200 right now."""
        names = list(self.members) if names is None else names
        return [n for n in names if self.http(n, "/primary", 1.0)[0] == 200]

    def streaming(self, name: str) -> bool:
        return self.http(name, "/replica", 1.0)[0] == 200

    def settled(self) -> str | None:
        """The primary when exactly one member serves as primary and every other streams (by
        their REST APIs: see `behind` for what that does not show)."""
        found = self.primaries()
        if len(found) != 1:
            return None
        others = [n for n in self.members if n != found[0]]
        return found[0] if all(self.streaming(n) for n in others) else None

    def behind(self, primary: str, timeout: float) -> list[str]:
        """The members other than `primary` that have not replayed a marker row written on
        `primary` now within `timeout` seconds. GET /replica can answer 200 for a standby whose
        WAL receiver keeps failing (one that diverged and was never rewound); only a row
        replayed shows that it follows the primary's timeline."""
        try:
            with self.connect(primary) as conn:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (id bigserial PRIMARY KEY)"
                )
                row = conn.execute(
                    f"INSERT INTO {MARKER_TABLE} DEFAULT VALUES RETURNING id"
                ).fetchone()
        except psycopg.Error:
            return [n for n in self.members if n != primary]
        assert row is not None
        marker = int(row[0])

        def has_marker(name: str) -> bool:
            try:
                with self.connect(name) as conn:
                    sql = f"SELECT EXISTS (SELECT 1 FROM {MARKER_TABLE} WHERE id = %s)"
                    found = conn.execute(sql, (marker,)).fetchone()
            except psycopg.Error:
                return False
            return bool(found and found[0])

        behind = [n for n in self.members if n != primary]
        deadline = time.monotonic() + timeout
        while behind and time.monotonic() < deadline:
            behind = [n for n in behind if not has_marker(n)]
            if behind:
                time.sleep(0.2)
        return behind

    def healthy(self, timeout: float) -> str | None:
        """Wait (at most `timeout` s) until `settled()` and no member is `behind`; the primary,
        or None."""
        deadline = time.monotonic() + timeout
        while True:
            primary = wait_for(self.settled, max(0.0, deadline - time.monotonic()), 0.3)
            if primary is None:
                return None
            left = deadline - time.monotonic()
            if not self.behind(primary, max(0.5, min(left, 10.0))):
                return primary
            if time.monotonic() >= deadline:
                return None

    def wait_settled(self, timeout: float) -> str:
        """Wait until `healthy()`; its primary."""
        primary = self.healthy(timeout)
        if primary is None:
            raise TimeoutError(
                f"the cluster did not settle (one primary, all others streaming and replaying "
                f"its writes) within {timeout:g} s; logs:\n{self.log_tails()}"
            )
        return primary

    def store_leader(self) -> str | None:
        """The member leading the Raft store now, asked through `hamgr store-ctl status`."""
        any_member = next(iter(self.members.values()))
        try:
            out = subprocess.run(
                [
                    *(sys.executable, "-m", "hamgr", "store-ctl"),
                    *("--config", str(any_member.config), "--timeout", "2", "status"),
                ],
                capture_output=True,
                text=True,
                timeout=15,
            ).stdout
        except subprocess.TimeoutExpired:
            return None
        for line in out.splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                status = json.loads(line)
                leader = int(status.get("leader") or 0)
                for m in self.members.values():
                    if m.node_id == leader:
                        return m.name
        return None

    def connect(self, name: str) -> psycopg.Connection[Any]:
        """A superuser autocommit connection straight to member `name`'s PostgreSQL, for the
        benchmark's own bookkeeping (tables, markers): its commits do not wait for a
        synchronous standby (synchronous_commit=local), which statement_timeout could not
        bound, so that a missing standby never blocks the benchmark itself."""
        m = self.members[name]
        return psycopg.connect(
            host=m.host,
            port=PG_PORT,
            user="postgres",
            password=PASSWORD,
            dbname="postgres",
            connect_timeout=3,
            autocommit=True,
            options="-c synchronous_commit=local",
        )

    def sync_standby_names(self, name: str) -> str:
        """`SHOW synchronous_standby_names` on member `name` ('' when unset)."""
        with self.connect(name) as conn:
            row = conn.execute("SHOW synchronous_standby_names").fetchone()
        return str(row[0]) if row else ""


def wait_for(probe: Callable[[], T | None], timeout: float, interval: float) -> T | None:
    """Call `probe` until it returns something other than None, for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(interval)


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _children(pid: int) -> list[int]:
    """The direct children of `pid` (a postmaster's backends and auxiliary processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """Whether `pid` runs with `data_dir` as its working directory (a PID may be reused)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == data_dir.resolve()
    except OSError:
        return False
