"""hactl as a real subprocess against REST APIs served on 127.0.0.1 by this test.

Two agents (``a``, the primary, and ``b``) serve the API from the plain AgentView of
tests/apifake.py; the cluster they publish points at both, so per-member commands (restart,
reload) must reach the right one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from hamgr.agent.api import serve
from hamgr.cli.ctl_list import list_rows
from hamgr.cli.hactl import main
from tests.apifake import FakeAgent, FakeStore, cluster3, status

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "admin", "s3cret-pass"
DEAD = "http://127.0.0.1:9"  # discard port: nothing listens there


class Cluster:
    def __init__(self, store: FakeStore, agents: dict[str, FakeAgent], urls: dict[str, str]):
        self.store, self.agents, self.urls = store, agents, urls


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    store = FakeStore(cluster3({"a": DEAD, "b": DEAD, "c": DEAD}))
    agents, urls, runners = {}, {}, []
    try:
        for i, name in enumerate("ab"):
            agents[name] = FakeAgent(name, store, status(store.view.members[i]))
            runner = await serve(agents[name], "127.0.0.1:0", (USER, PASSWORD))
            runners.append(runner)
            host, port = runner.addresses[0][:2]
            urls[name] = f"http://{host}:{port}"
        urls["c"] = DEAD
        store.view = cluster3(urls)
        yield Cluster(store, agents, urls)
    finally:
        for runner in runners:
            await runner.cleanup()


async def hactl(*args: str, password: str | None = PASSWORD) -> tuple[int, str, str]:
    """Run hactl with stdin not a terminal; (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HAMGR_CONFIG", "HACTL_PASSWORD")}
    env["TZ"] = "UTC"
    if password is not None:
        env["HACTL_PASSWORD"] = password
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hamgr.cli.hactl",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    return err.strip()


async def test_list_table_after_an_unreachable_agent(cluster: Cluster) -> None:
    code, out, err = await hactl("--url", DEAD, "--url", cluster.urls["a"], "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("+ Cluster: demo -")
    assert lines[1].split("|")[1:-1] == [
        " Member ",
        " Host           ",
        " Role    ",
        " State   ",
        " TL ",
        " Lag in MB ",
    ]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[3:6]]
    assert cells == [
        ["a", "127.0.0.1:5432", "Leader", "running", "2", ""],
        ["b", "127.0.0.2:5433", "Replica", "running", "2", "0"],
        ["c", "127.0.0.3:5434", "Replica", "running", "2", "30"],
    ]
    assert lines[7:] == [" Leader: a (fencing token 7)"]


async def test_list_json_yaml_and_reasons(cluster: Cluster) -> None:
    code, out, _ = await hactl("list", "-f", "json", "--url", cluster.urls["b"])
    rows = json.loads(out)
    assert code == 0 and [r["Member"] for r in rows] == ["a", "b", "c"]
    assert rows[2] == {
        "Cluster": "demo",
        "Member": "c",
        "Host": "127.0.0.3:5434",
        "Role": "Replica",
        "State": "running",
        "TL": 2,
        "Lag in MB": 30,
    }
    code, out, _ = await hactl("--url", cluster.urls["b"], "list", "-f", "yaml", "-r")
    assert code == 0 and yaml.safe_load(out)[1]["Reason"] == "following a"


async def test_list_watch_asks_again_until_stopped(cluster: Cluster) -> None:
    """hactl list -t -w: the time, then the list, again and again, each time asked anew (a
    pause set meanwhile shows up), past an agent that does not answer, until SIGTERM."""
    env = {k: v for k, v in os.environ.items() if k not in ("HAMGR_CONFIG", "HACTL_PASSWORD")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hamgr.cli.hactl", "--url", DEAD, "--url", cluster.urls["a"],
        "list", "-t", "-w", "0.2",
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []

    async def until(text: str) -> None:
        for _ in range(500):  # bounded: a showing is about ten lines
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
            assert line, f"hactl stopped:\n{''.join(lines)}"
            lines.append(line)
            if line.rstrip("\n") == text:
                return
        raise AssertionError(f"no {text!r} in:\n{''.join(lines)}")

    try:
        await until(" Leader: a (fencing token 7)")
        assert " Maintenance mode: on\n" not in lines
        code, _, err = await hactl("--url", cluster.urls["a"], "--username", USER, "pause")
        assert code == 0, err
        await until(" Maintenance mode: on")
        showings = [i for i, line in enumerate(lines) if line.startswith("+ Cluster: demo")]
        assert len(showings) >= 2
        for i in showings:  # -t: each showing starts with the time
            dt.datetime.strptime(lines[i - 1].strip(), "%Y-%m-%d %H:%M:%S")
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_switchover_reaches_the_agent(cluster: Cluster) -> None:
    args = ("--url", cluster.urls["a"], "--username", USER, "switchover")
    code, out, err = await hactl(*args, "--candidate", "b", "--force")
    assert (code, out, err) == (0, "Successfully switched over to b\n", "")
    assert cluster.agents["a"].calls == [("switchover", "a", "b", None)]
    code, out, err = await hactl(*args, "--scheduled", "2100-01-01T00:00:00+00:00", "--force")
    assert (code, out) == (0, "Switchover scheduled\n")
    assert cluster.agents["a"].calls[-1] == ("switchover", "b", None, 4102444800.0)
    code, out, _ = await hactl("--url", cluster.urls["a"], "list")
    assert " Pending switchover: from b at 2100-01-01T" in out and "Leader: b" in out


async def test_switchover_needs_confirmation_or_force(cluster: Cluster) -> None:
    code, out, err = await hactl("--url", cluster.urls["a"], "switchover", "--candidate", "b")
    assert code == 1 and out == ""
    assert _one_line(err) == (
        "hactl: Switch over cluster demo from a to b now?: not confirmed "
        "(stdin is not a terminal); add --force"
    )
    assert cluster.agents["a"].calls == []


async def test_refused_requests_are_one_line_naming_the_problem(cluster: Cluster) -> None:
    url = cluster.urls["a"]
    base = ("--url", url, "--username", USER)
    code, _, err = await hactl(*base, "switchover", "--candidate", "zz", "--force")
    assert code == 1
    assert _one_line(err) == (
        f"hactl: POST {url}/switchover: 400 candidate: zz is not a member (members: a, b, c)"
    )
    code, _, err = await hactl(*base, "switchover", "--force", password="wrong")
    assert code == 1 and _one_line(err).startswith(f"hactl: POST {url}/switchover: 401 ")
    code, _, err = await hactl("--url", url, "switchover", "--force")  # no credentials at all
    assert code == 1 and "401 authentication required" in _one_line(err)
    code, _, err = await hactl(*base, "edit-config", "--set", "ttl=-1", "--force")
    assert code == 1 and _one_line(err).endswith("400 ttl: must be > 0, got -1")
    code, _, err = await hactl(*base, "edit-config", "--set", "safety_margin=0.001", "--force")
    assert code == 1 and "400 safety_margin: must be >= loop_wait = 1: " in _one_line(err)
    assert _one_line(err).endswith(", got 0.001")
    assert cluster.agents["a"].calls == []


async def test_failover_with_credentials_from_the_config_file(
    cluster: Cluster, tmp_path: Path
) -> None:
    port = cluster.urls["a"].rsplit(":", 1)[1]
    config = {
        "scope": "demo",
        "name": "a",
        "restapi": {
            "listen": f"127.0.0.1:{port}",
            "authentication": {"username": USER, "password": PASSWORD},
        },
        "store": {"raft": {"data_dir": "/tmp/r", "node_id": 1, "secret": "x" * 16}},
        "postgresql": {"data_dir": "/tmp/d"},
    }
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = await hactl("-c", str(path), "failover", "--candidate", "b", "--force")
    assert (code, out, err) == (0, "Successfully failed over to b\n", "")
    assert cluster.agents["a"].calls == [("failover", "b")]
    path.write_text("scope: demo\nname: a\n")
    code, _, err = await hactl("-c", str(path), "list")
    assert code == 1 and _one_line(err).startswith(f"hactl: {path}: ")


async def test_unreachable_agents_are_named() -> None:
    code, out, err = await hactl("--url", DEAD, "list")
    assert code == 1 and out == ""
    assert _one_line(err) == f"hactl: {DEAD}/cluster: cannot connect (Connection refused)"
    code, _, err = await hactl("--url", DEAD, "--url", "http://127.0.0.1:7", "list")
    assert code == 1 and _one_line(err).startswith(f"hactl: no agent answered: {DEAD}/cluster")
    assert "http://127.0.0.1:7/cluster: cannot connect" in err


def test_usage_errors_exit_2_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: these fail before any network call."""
    monkeypatch.delenv("HAMGR_CONFIG", raising=False)
    for args in (["failover"], [], ["list", "-f", "xml"], ["switchover", "--scheduled", "x"]):
        assert main(args) == 2, args
        out, err = capsys.readouterr()
        assert out == "" and _one_line(err).startswith("hactl"), (args, err)
    assert main(["--timeout", "0", "list"]) == 2
    assert _one_line(capsys.readouterr().err) == "hactl: error: --timeout must be > 0"
    assert main(["list"]) == 1
    assert "give --url URL or -c CONFIG" in _one_line(capsys.readouterr().err)
    assert main(["--url", "127.0.0.1:8008", "list"]) == 1
    assert "--url: expected http://host:port" in _one_line(capsys.readouterr().err)


async def test_pause_resume_config_and_history(cluster: Cluster) -> None:
    base = ("--url", cluster.urls["b"], "--username", USER)
    assert (await hactl(*base, "pause"))[:2] == (0, "Success: cluster management is paused\n")
    assert cluster.store.view.settings.pause is True
    code, _, err = await hactl(*base, "pause")
    assert code == 1 and _one_line(err) == "hactl: cluster demo is already paused"
    code, out, _ = await hactl(*base, "list")
    assert " Maintenance mode: on" in out.splitlines()
    assert (await hactl(*base, "resume"))[:2] == (0, "Success: cluster management is resumed\n")
    code, out, err = await hactl(*base, "edit-config", "--set", "ttl=10", "--set",
                                 "parameters.work_mem=64MB", "--force")  # fmt: skip
    assert code == 0 and out.startswith("Configuration changed:\n"), err
    assert cluster.store.view.settings.ttl == 10.0
    assert dict(cluster.store.view.settings.parameters) == {"work_mem": "64MB"}
    code, out, err = await hactl(*base, "edit-config", "-p", "pg_stat_statements.track=all",
                                 "-s", "ttl=12", "--force")  # fmt: skip
    assert code == 0 and out.startswith("Configuration changed:\n"), err
    assert cluster.store.view.settings.ttl == 12.0
    assert dict(cluster.store.view.settings.parameters) == {
        "work_mem": "64MB",
        "pg_stat_statements.track": "all",
    }
    code, out, _ = await hactl(*base, "show-config")
    shown = yaml.safe_load(out)
    assert code == 0 and shown["ttl"] == 12.0 and shown["pause"] is False
    code, out, _ = await hactl(*base, "history", "-f", "json")
    assert json.loads(out)[0]["New Leader"] == "a" and json.loads(out)[0]["LSN"] == 50 << 20
    code, out, _ = await hactl(*base, "history")
    assert code == 0 and "no recovery target specified" in out


async def test_restart_and_reload_reach_the_named_members(cluster: Cluster) -> None:
    base = ("--url", cluster.urls["a"], "--username", USER)
    code, out, err = await hactl(*base, "restart", "b", "--force")
    assert (code, out, err) == (0, "Success: restarted PostgreSQL on b\n", "")
    assert cluster.agents["b"].calls == [("restart",)] and cluster.agents["a"].calls == []
    code, _, err = await hactl(*base, "restart", "zz", "--force")
    assert code == 1
    assert _one_line(err) == "hactl: no member named zz in cluster demo (members: a, b, c)"
    code, _, err = await hactl(*base, "restart", "a")
    assert code == 1 and "add --force" in _one_line(err)
    code, out, err = await hactl(*base, "reload", "a", "b")
    assert (code, out) == (0, "a: reload scheduled\nb: reload scheduled\n"), err
    code, out, err = await hactl(*base, "reload")  # every member; c is unreachable
    assert code == 1 and out == "a: reload scheduled\nb: reload scheduled\n"
    assert _one_line(err) == f"hactl: {DEAD}/reload: cannot connect (Connection refused)"
    assert cluster.agents["a"].calls == [("reload",)] * 2


async def test_reinit_reaches_the_named_replicas_and_shows_a_refusal(cluster: Cluster) -> None:
    base = ("--url", cluster.urls["a"], "--username", USER)
    code, _, err = await hactl(*base, "reinit", "b")
    assert code == 1 and "add --force" in _one_line(err)
    code, out, err = await hactl(*base, "reinit", "b", "--force")
    assert (code, out, err) == (0, "Success: reinitialize started on b\n", "")
    assert cluster.agents["b"].calls == [("reinitialize",)]
    code, _, err = await hactl(*base, "reinit", "a", "--force")  # the leader refuses
    assert code == 1 and "I am the leader, can not reinitialize" in _one_line(err)
    assert cluster.agents["a"].calls == []


def test_list_shows_pending_restart_as_patronictl_does() -> None:
    """The "Pending restart" column appears once some member waits for a restart."""

    def m(name: str, pending: list[str]) -> dict[str, object]:
        return {
            **{"name": name, "host": "10.0.0.1", "port": 5432, "role": "replica"},
            **{"state": "running", "timeline": 1, "lag": 0, "reason": "r"},
            **{"pending_restart": bool(pending), "pending_restart_reason": pending},
        }

    quiet = {"members": [m("a", []), m("b", [])]}
    assert "Pending restart" not in list_rows(quiet, reasons=False)[0]
    rows = list_rows({"members": [m("a", ["max_connections"]), m("b", [])]}, reasons=False)
    assert [r["Pending restart"] for r in rows] == ["* (max_connections)", ""]


async def test_members_on_an_agent_without_a_store_member(cluster: Cluster) -> None:
    """hactl members asks /store/members alone; an agent with no embedded store member (etcd)
    answers 404, shown as one line saying so. The live commands: tests/ha/test_members_e2e.py."""
    code, out, err = await hactl("members", "--url", cluster.urls["a"])
    assert code == 1 and out == ""
    line = _one_line(err)
    assert "/store/members: 404" in line and "no embedded store member" in line


def test_members_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAMGR_CONFIG", raising=False)
    for args in (
        ["members", "add", "m4"],
        ["members", "remove"],
        ["members", "add", "m4", "h:1", "--id", "x"],
    ):
        assert main(args) == 2, args
        out, err = capsys.readouterr()
        assert out == "" and _one_line(err).startswith("hactl"), (args, err)
