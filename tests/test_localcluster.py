"""The local-cluster builder's files (`hamgr.cli.localcluster`), checked by the agent's own loader.

Pure: configuration files and certificates under tmp_path, no process started. The processes
it runs are exercised by the demo's test (tests/test_demo.py) and every AgentCluster test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hamgr.agent.setup import load_agent_setup
from hamgr.cli.certs import existing_members
from hamgr.cli.localcluster import (
    Layout,
    LocalCluster,
    MemberSpec,
    Ports,
    all_on_host,
    one_per_host,
)


def test_members_sharing_an_address_get_ports_of_their_own(tmp_path: Path) -> None:
    specs = all_on_host("127.0.0.1", ["a", "b"], Ports(7440, 7540, 8040, 5440))
    c = LocalCluster(
        tmp_path, specs, scope="s", password="pw", layout=Layout("data{node_id}", "store{node_id}")
    )
    paths = c.write_configs()
    b = load_agent_setup(paths[1], env={})
    assert b.me.api_url == "http://127.0.0.1:8042"
    assert b.me.conn_url == "127.0.0.1:5442"
    assert b.config.postgresql.data_dir == str(tmp_path / "data2")
    assert b.store is not None and b.store.data_dir == str(tmp_path / "store2")
    raft = yaml.safe_load(paths[1].read_text())["store"]["raft"]
    assert raft["peers"] == [
        {"node_id": 1, "address": "127.0.0.1:7441", "client_address": "127.0.0.1:7541"}
    ]
    assert c.members["b"].run_dir == tmp_path / "data2.run"
    assert (tmp_path / "store-secret").stat().st_mode & 0o777 == 0o600


def test_settings_witnesses_overrides_and_a_joining_member(tmp_path: Path) -> None:
    specs = one_per_host(["127.0.0.11", "127.0.0.12"], "m")
    specs[1] = MemberSpec("m2", 2, "127.0.0.12", witness=True)
    c = LocalCluster(
        tmp_path,
        specs,
        scope="s",
        password="pw",
        profile="fast",
        pg_parameters={"shared_buffers": "16MB"},
        bootstrap_dcs={"ttl": 9},
        overrides={"m1": {"tags": {"nofailover": True}}},
    )
    m1, m2 = (yaml.safe_load(p.read_text()) for p in c.write_configs())
    assert m1["timing_profile"] == "fast" and m1["tags"] == {"nofailover": True}
    assert m1["postgresql"]["parameters"] == {"shared_buffers": "16MB"}
    assert m1["bootstrap"] == {"dcs": {"ttl": 9}}
    assert "postgresql" not in m2 and "restapi" not in m2 and "bootstrap" not in m2
    load_agent_setup(c.members["m1"].config, env={})
    new = c.add_member(MemberSpec("m3", 3, "127.0.0.13"))
    raft = yaml.safe_load(new.config.read_text())["store"]["raft"]
    assert raft["join"] is True and [p["node_id"] for p in raft["peers"]] == [1, 2]
    assert "join" not in m1["store"]["raft"]
    with pytest.raises(ValueError, match="exists already"):
        c.add_member(MemberSpec("m3", 4, "127.0.0.14"))
    with pytest.raises(ValueError, match="must differ"):
        LocalCluster(tmp_path, [specs[0], specs[0]], scope="s", password="pw")


def test_tls_certificates_are_made_once_and_issued_only_where_missing(tmp_path: Path) -> None:
    specs = one_per_host(["127.0.0.11", "127.0.0.12"], "m")
    c = LocalCluster(
        tmp_path, specs, scope="s", password="pw", tls=True, tls_clients={"client": "127.0.0.1"}
    )
    c.write_configs()
    assert c.ssl_context is not None and c.members["m1"].api == "https://127.0.0.11:8008"
    setup = load_agent_setup(c.members["m1"].config, env={})
    assert setup.store is not None and setup.store.tls is not None
    assert [m.name for m in existing_members(tmp_path / "tls")] == ["client", "m1", "m2"]
    key = (tmp_path / "tls" / "m1.key").read_bytes()
    c.add_member(MemberSpec("m3", 3, "127.0.0.13"))
    assert (tmp_path / "tls" / "m1.key").read_bytes() == key, "a running member's key is kept"
    assert existing_members(tmp_path / "tls")[-1].hosts == ("m3", "127.0.0.13")
