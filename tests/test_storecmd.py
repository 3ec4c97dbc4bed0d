"""hamgr.agent.storemember's pure parts: every store.raft key reaches the member's settings, and
log.* sets the level and the format of what the processes log. No process is started here (the
store processes themselves are tests/raft/test_store_process.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hamgr.agent.storemember import running_member, settings_from_config, setup_logging
from hamgr.config import LogConfig, parse_config
from tests.test_config import minimal, put


def test_every_store_key_reaches_the_member_settings(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-secret-from-a-file-0123\n")
    secret.chmod(0o600)
    data = minimal()
    put(
        data,
        "store.raft",
        {
            "data_dir": "/srv/raft",
            "node_id": 3,
            "listen": "0.0.0.0:7001",
            "advertise": "10.0.0.3:7001",
            "client_listen": "0.0.0.0:7101",
            "cluster_id": "prod-a",
            "secret_file": str(secret),
            "peers": [
                {"node_id": 1, "address": "10.0.0.1:7001"},
                {"node_id": 2, "address": "10.0.0.2:7001", "client_address": "10.0.0.2:9000"},
            ],
            "heartbeat_interval": 0.2,
            "election_timeout": 2.0,
            "snapshot_entries": 500,
            "tls": {"certfile": "/c.pem", "keyfile": "/k.pem", "cafile": "/ca.pem"},
        },
    )
    s = settings_from_config(parse_config(data))
    assert (s.node_id, s.data_dir, s.cluster_id) == (3, "/srv/raft", "prod-a")
    assert s.secret == b"a-secret-from-a-file-0123"
    assert (s.listen, s.advertise) == (("0.0.0.0", 7001), ("10.0.0.3", 7001))
    # A wildcard client listener is advertised on the Raft advertise host.
    assert (s.client_listen, s.client_advertise) == (("0.0.0.0", 7101), ("10.0.0.3", 7101))
    assert s.peers == {1: ("10.0.0.1", 7001), 2: ("10.0.0.2", 7001)}
    assert s.client_addresses == {
        1: ("10.0.0.1", 7101),
        2: ("10.0.0.2", 9000),
        3: ("10.0.0.3", 7101),
    }
    assert (s.tick_interval, s.election_tick, s.snapshot_entries) == (0.2, 10, 500)
    assert s.heartbeat_tick == 1
    assert s.tls == ("/c.pem", "/k.pem", "/ca.pem")

    # cluster_id left out is the scope; an inline secret is used as it is.
    s = settings_from_config(parse_config(put(minimal(), "scope", "shop")))
    assert (s.cluster_id, s.secret) == ("shop", minimal()["store"]["raft"]["secret"].encode())


@pytest.mark.parametrize(
    ("heartbeat", "election", "expected"),
    [
        # (tick_interval, election_tick, heartbeat_tick)
        (0.3, 1.0, (0.1, 10, 3)),  # the default profile: the election timer keeps 100 ms ticks
        (0.05, 0.5, (0.05, 10, 1)),  # the fast profile
        (0.05, 1.0, (0.05, 20, 1)),  # a heartbeat finer than a tenth of the timeout is the tick
        (0.2, 2.0, (0.2, 10, 1)),
    ],
)
def test_heartbeat_interval_is_counted_in_ticks_of_a_tenth_of_the_election_timeout(
    heartbeat: float, election: float, expected: tuple[float, int, int]
) -> None:
    """heartbeat_interval sets how often the leader sends heartbeats, not the election timer's
    resolution: a longer heartbeat costs fewer messages without slower failure detection."""
    data = put(minimal(), "store.raft.heartbeat_interval", heartbeat)
    put(data, "store.raft.election_timeout", election)
    s = settings_from_config(parse_config(data))
    assert (s.tick_interval, s.election_tick, s.heartbeat_tick) == pytest.approx(expected)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test that configures it."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_log_level_and_format_are_what_the_processes_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(LogConfig(level="WARNING", format="json"))
    log = logging.getLogger("hamgr.test")
    log.info("not shown below WARNING")
    log.warning("shown at %s", "WARNING")
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert (record["level"], record["message"]) == ("WARNING", "shown at WARNING")

    setup_logging(LogConfig(level="DEBUG", format="text"))
    log.debug("debug now shown")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" DEBUG hamgr.test: debug now shown"), line
    # The command line's --log-format wins over log.format.
    setup_logging(LogConfig(format="text"), "json")
    log.info("as json")
    assert json.loads(capsys.readouterr().err.splitlines()[-1])["message"] == "as json"


@pytest.mark.parametrize("join", [False, True])
async def test_join_makes_an_empty_member_wait_instead_of_founding_a_store(
    tmp_path: Path, join: bool
) -> None:
    """store.raft.join: an empty member founds a store with its peers (it votes at once)
    unless it joins one, where it has no membership until a leader sends it the store. Its
    sockets are on ephemeral ports of 127.0.0.1 (no peer answers, none is needed)."""
    data = put(minimal(), "store.raft.data_dir", str(tmp_path / "raft"))
    put(data, "store.raft.join", join)
    settings = settings_from_config(parse_config(data))
    assert settings.join is join
    settings = dataclasses.replace(
        settings, listen=("127.0.0.1", 0), client_listen=("127.0.0.1", 0)
    )
    async with running_member(settings) as (node, _):
        if join:
            # Given time for a first election timeout, it still has no membership.
            await asyncio.sleep(node.election_timeout * 2)
            assert (node.status()["voters"], node.is_leader) == ([], False)
        else:
            deadline = asyncio.get_running_loop().time() + 10
            while not node.is_leader:
                assert asyncio.get_running_loop().time() < deadline, node.status()
                await asyncio.sleep(0.05)
            assert node.status()["voters"] == [1]
