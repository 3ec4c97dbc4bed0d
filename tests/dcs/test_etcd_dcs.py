"""EtcdDcs against a real etcd: three etcd processes on 127.0.0.81-83 (data in a tmp dir, killed
by PID afterwards), through the HTTP/JSON gateway. Skipped, with the reason, when no etcd server
binary is installed.

The shared contract (`tests/dcs/contract.py`) runs first; then what only this backend has:
failover past a dead host, a member stopped under a live session, and authentication.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from hamgr.cli.certs import init, parse_members
from hamgr.cli.ctl_remove import AWARE
from hamgr.config.schema import EtcdConfig
from hamgr.dcs import DcsError
from hamgr.dcs.etcd import EtcdDcs
from tests.dcs.contract import CHECKS, Check, member, new_scope
from tests.dcs.stores import EtcdStore, etcd_binary, free_port, pids_alive
from tests.ha.agentcluster import AgentCluster
from tests.tools.virtualtimer import VirtualTimer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

BINARY = etcd_binary()
if BINARY is None:
    pytest.skip(
        "no etcd server binary (set HAMGR_ETCD_BIN or install etcd-server)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def etcd_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdStore]:
    assert BINARY is not None
    s = EtcdStore(tmp_path_factory.mktemp("etcd"), BINARY)
    try:
        s.start_all()
        yield s
    finally:
        s.stop_all()
        assert pids_alive(s) == []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store(etcd_processes: EtcdStore) -> EtcdStore:
    await etcd_processes.wait_ready()
    return etcd_processes


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_contract(store: EtcdStore, check: Check) -> None:
    await check(store)


async def test_a_dead_first_host_is_skipped(store: EtcdStore) -> None:
    dead = f"127.0.0.89:{free_port('127.0.0.89')}"
    dcs = EtcdDcs(
        new_scope("deadhost"), "a", [dead, *store.endpoints], ttl=2.0, attempt_timeout=0.5
    )
    try:
        await dcs.touch_member(member("a"))
        assert (await dcs.acquire_leader()) is not None
        assert (await dcs.keepalive()).ok
        assert (await dcs.get_cluster()).member("a") is not None
    finally:
        await dcs.close()


async def test_bad_settings_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="host:port"):
        EtcdDcs("s", "a", ["no-port-here"])
    with pytest.raises(ValueError, match="together"):
        EtcdDcs("s", "a", ["127.0.0.1:2379"], username="u")
    with pytest.raises(ValueError, match="protocol"):
        EtcdDcs("s", "a", ["127.0.0.1:2379"], protocol="ftp")
    with pytest.raises(ValueError, match="name"):
        EtcdDcs("s", "not a name", ["127.0.0.1:2379"])
    config = EtcdConfig(hosts=("127.0.0.1:2379",), username="u", password="p")
    dcs = EtcdDcs.from_config(config, "s", "a", ttl=4.0)
    assert dcs.transport.urls == ["http://127.0.0.1:2379"] and dcs.ttl == 4.0


@pytest.fixture
def single_etcd(tmp_path: Path) -> Iterator[EtcdStore]:
    """A one-member etcd of its own (stopped by PID afterwards), for tests that change it."""
    assert BINARY is not None
    s = EtcdStore(tmp_path, BINARY, size=1, first_host=84)
    try:
        s.start_all()
        yield s
    finally:
        s.stop_all()
        assert pids_alive(s) == []


async def test_authentication(single_etcd: EtcdStore) -> None:
    await single_etcd.wait_ready()
    await single_etcd.enable_auth("hamgr", "pw-1", "/hamgr/")
    hosts = single_etcd.endpoints
    scope = new_scope("auth")
    good = EtcdDcs(scope, "a", hosts, username="hamgr", password="pw-1", ttl=2.0)
    try:
        await good.touch_member(member("a"))
        assert await good.acquire_leader() is not None
        assert (await good.keepalive()).ok
        await good.get_cluster()
        assert await good.watch(0.2) is False
        good.transport._token = "expired-or-forged"  # a token etcd does not know
        assert (await good.get_cluster()).member("a") is not None, "the token is renewed"
    finally:
        await good.close()
    # A refusal is final: no pause, so no second try, and nothing of the budget spent (the
    # session and its transport pause and count their budgets on `timer` alone).
    for username, password in (("hamgr", "wrong"), (None, None)):
        timer = VirtualTimer()
        bad = EtcdDcs(
            scope, "b", hosts, username=username, password=password, retry_timeout=2.0, timer=timer
        )
        try:
            with pytest.raises(DcsError, match="get_cluster"):
                await bad.get_cluster()
        finally:
            await bad.close()
        assert timer.sleeps == [], "a refusal must not wait for retry_timeout"


async def test_a_stopped_member_does_not_stop_the_session(
    tmp_path: Path,
) -> None:
    assert BINARY is not None
    s = EtcdStore(tmp_path, BINARY, size=3, first_host=85)
    try:
        s.start_all()
        await s.wait_ready()
        dcs = s.session(new_scope("memberdown"), "a", retry_timeout=3.0)
        try:
            await dcs.touch_member(member("a"))
            key = await dcs.acquire_leader()
            assert key is not None
            s.stop(s.names[0])  # the host the session talks to first
            assert (await dcs.keepalive()).ok
            view = await dcs.get_cluster()
            assert view.leader == key and view.member("a") is not None
        finally:
            await dcs.close()
    finally:
        s.stop_all()
        assert pids_alive(s) == []


async def test_tls_with_client_certificates(tmp_path: Path) -> None:
    """etcd serving clients over https with --client-cert-auth (certificates from `hamgr
    certs`): store.etcd protocol https + cacert + cert/key work; a client without the
    certificate, trusting another CA, or speaking plain HTTP is refused with a DcsError."""
    assert BINARY is not None
    certs = tmp_path / "tls"
    init(certs, "etcd", parse_members("e1=127.0.0.87,client=127.0.0.1"))
    (tmp_path / "etcd").mkdir()
    s = EtcdStore(tmp_path / "etcd", BINARY, size=1, first_host=87, tls_dir=certs)
    try:
        s.start_all()
        await s.wait_ready()
        scope = new_scope("tls")
        config = EtcdConfig(hosts=tuple(s.endpoints), **s.tls_options)
        good = EtcdDcs.from_config(config, scope, "a", ttl=2.0)
        try:
            assert good.transport.urls[0].startswith("https://127.0.0.87:")
            await good.touch_member(member("a"))
            assert await good.acquire_leader() is not None
            assert (await good.keepalive()).ok
            assert (await good.get_cluster()).member("a") is not None
            assert await good.watch(0.2) is False
        finally:
            await good.close()
        other = tmp_path / "other"
        init(other, "other", parse_members("client=127.0.0.1"))
        opts = s.tls_options
        refused = {
            "no client certificate": {"protocol": "https", "cacert": opts["cacert"]},
            "another CA": {**opts, "cacert": str(other / "ca.crt")},
            "a certificate of another CA": {
                **opts,
                "cert": str(other / "client.crt"),
                "key": str(other / "client.key"),
            },
            "plain http": {},
        }
        for why, kw in refused.items():
            bad = EtcdDcs(scope, "b", s.endpoints, retry_timeout=1.0, attempt_timeout=0.5, **kw)
            try:
                with pytest.raises(DcsError, match="get_cluster"):
                    await bad.get_cluster()
            except BaseException:
                print(f"not refused: {why}")
                raise
            finally:
                await bad.close()
    finally:
        s.stop_all()
        assert pids_alive(s) == []


async def test_etcd_client_certificate_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="cert and key must be given together"):
        EtcdDcs("s", "a", ["127.0.0.1:2379"], protocol="https", cert="/c")
    with pytest.raises(ValueError, match='need protocol "https"'):
        EtcdDcs("s", "a", ["127.0.0.1:2379"], cert="/c", key="/k")


async def _hactl_remove(config: Path, scope: str, answers: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hamgr.cli.hactl", "-c", str(config), "remove", scope,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(answers.encode()), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_hactl_remove_wipes_a_scope_in_etcd(store: EtcdStore, tmp_path: Path) -> None:
    """hactl remove on the etcd backend (its store from store.etcd of -c FILE): refused while a
    member holds the leader key, then, with the typed confirmations, every key of the scope
    gone and another scope in the same etcd untouched."""
    scope, kept = new_scope("rm"), new_scope("rmkept")
    config = AgentCluster(tmp_path, ["127.0.0.1"], scope=scope, etcd_hosts=store.endpoints)
    path = config.members["m1"].config
    dcs = EtcdDcs(scope, "a", store.endpoints, ttl=2.0)
    other = EtcdDcs(kept, "a", store.endpoints, ttl=2.0)
    try:
        await dcs.touch_member(member("a"))
        key = await dcs.acquire_leader()
        assert key is not None
        await other.touch_member(member("a"))
        yes = f"{scope}\n{AWARE}\n"
        code, _, err = await _hactl_remove(path, scope, yes)
        assert code == 1 and f"a holds the leader key of cluster {scope}" in err, err
        assert (await dcs.get_cluster()).member("a") is not None
        assert await dcs.release_leader(key)
        code, out, err = await _hactl_remove(path, scope, f"{scope}\nyes\n")
        assert code == 1 and "nothing removed" in err, err
        code, out, err = await _hactl_remove(path, scope, yes)
        assert code == 0 and f"Removed cluster {scope}: " in out, err
        assert (await dcs.get_cluster()).member("a") is None
        assert (await other.get_cluster()).member("a") is not None
        code, _, err = await _hactl_remove(path, scope, yes)
        assert code == 1 and "has no keys in the store: nothing to remove" in err, err
    finally:
        await dcs.close()
        await other.close()
