"""No secret ever shows: three real agents whose secrets all come from files (mode 0600).

The REST password, the PostgreSQL superuser, replication and rewind passwords and the store
secret each have a distinct value. The test boots the cluster, drives a switchover, refuses a
wrong password, fetches every GET route of the REST API (read off the aiohttp app, so a new
route is covered) and /metrics on every member, runs ``hactl list`` and ``hactl show-config``,
and then searches all of it, the agents' logs and PostgreSQL's logs for each secret: none may
appear. Every process is stopped by PID whatever happens (AgentCluster.close).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hamgr.agent.api import build_app
from tests.ha.agentcluster import AgentCluster
from tests.ha.clusterops import call
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BOOT = 90.0
HOSTS = ["127.0.0.121", "127.0.0.122", "127.0.0.123"]
USER = "admin"


def _secret_files(root: Path) -> dict[str, tuple[Path, str]]:
    """A distinct secret per role, each in its own 0600 file: name -> (file, value)."""
    out = {}
    for name in ("api", "superuser", "replication", "rewind"):
        value = f"sekret-{name}-{secrets.token_hex(12)}"
        path = root / f"{name}.password"
        path.write_text(value + "\n")
        path.chmod(0o600)
        out[name] = (path, value)
    return out


def _use_files(c: AgentCluster, files: dict[str, tuple[Path, str]]) -> None:
    for m in c.members.values():
        config = yaml.safe_load(m.config.read_text())
        config["restapi"]["authentication"] = {
            "username": USER,
            "password_file": str(files["api"][0]),
        }
        config["postgresql"]["authentication"] = {
            role: {"username": user, "password_file": str(files[role][0])}
            for role, user in (
                ("superuser", "postgres"),
                ("replication", "replicator"),
                ("rewind", "rewinder"),
            )
        }
        m.config.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def cluster(pg_bindir: Path) -> Iterator[tuple[AgentCluster, dict[str, str]]]:
    root = Path(tempfile.mkdtemp(prefix="hamgr-it-secrets-", dir="/tmp"))
    os.chmod(root, 0o755)
    c = AgentCluster(root, HOSTS, scope="secrets")
    files = _secret_files(root)
    _use_files(c, files)
    values = {name: value for name, (_, value) in files.items()}
    values["store"] = (root / "store-secret").read_text().strip()
    try:
        yield c, values
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


def _get_routes() -> list[str]:
    app = build_app(None, None)  # type: ignore[arg-type]  # only its routes are read
    paths = {r.resource.canonical for r in app.router.routes() if r.method == "GET" and r.resource}
    return sorted(paths)


def _get(c: AgentCluster, name: str, path: str) -> str:
    try:
        with urllib.request.urlopen(c.members[name].api + path, timeout=10) as resp:
            return f"{resp.status} {resp.read().decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode(errors='replace')}"


def _hactl(c: AgentCluster, name: str, password: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hamgr.cli.hactl", *args, "--url", c.members[name].api,
         "--username", USER],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "HACTL_PASSWORD": password},
    )  # fmt: skip
    return f"{args} rc={done.returncode}\n{done.stdout}\n{done.stderr}"


def _pg_logs(c: AgentCluster) -> list[str]:
    out = []
    for m in c.members.values():
        for sub in ("log", "pg_log"):
            d = m.data_dir / sub
            if d.is_dir():
                out += [p.read_text(errors="replace") for p in sorted(d.iterdir()) if p.is_file()]
    return out


def test_no_secret_shows_in_any_output(cluster: tuple[AgentCluster, dict[str, str]]) -> None:
    c, values = cluster
    c.start_all()
    primary = c.wait_primary(BOOT)
    replicas = [n for n in c.members if n != primary]
    c.wait_streaming(replicas, BOOT)
    seen: list[str] = []

    # A refused call, a bad request and a switchover (the REST password from its file works).
    code, body = call(c, primary, "POST", "/switchover", {"leader": primary}, auth=(USER, "wrong"))
    assert code == 401
    seen.append(repr(body))
    code, body = call(c, primary, "PATCH", "/config", {"ttl": "soon"}, auth=(USER, values["api"]))
    assert code == 400
    seen.append(repr(body))
    ask = {"leader": primary, "candidate": replicas[0]}
    code, body = call(
        c, primary, "POST", "/switchover", ask, auth=(USER, values["api"]), timeout=60
    )
    assert code == 200, body
    seen.append(repr(body))
    wait_for(lambda: c.primaries() == [replicas[0]] or None, 60, "the new primary")
    c.wait_streaming([primary, replicas[1]], BOOT)

    routes = _get_routes()
    assert {"/cluster", "/config", "/patroni", "/metrics", "/history"} <= set(routes)
    for name in c.members:
        for path in routes:
            seen.append(f"GET {name} {path}: {_get(c, name, path)}")
    for args in (("list",), ("show-config",), ("list", "-r")):
        seen.append(_hactl(c, replicas[0], values["api"], *args))
    seen.append(_hactl(c, replicas[0], "wrong-password", "pause"))
    seen += [m.log.read_text(errors="replace") for m in c.members.values()]
    seen += _pg_logs(c)

    everything = "\n".join(seen)
    assert "members" in everything and "hamgr_" in everything  # it did collect real output
    leaks = {name: everything.count(value) for name, value in values.items() if value in everything}
    assert not leaks, f"secrets found in the outputs (times each): {leaks}"
