"""Three real agents with the REST API and the store over TLS, certificates from `hamgr certs
init`: they bootstrap, hactl (over TLS, the cluster CA given) switches the primary over, a
kill -9 of the primary fails over, HAProxy (check-ssl, the CA verified) follows the primary, a
plain-HTTP client gets no answer, and renewed certificates are served after ``hactl reload``
without a restart.

Real PostgreSQL, real processes on 127.0.0.151-153 (HAProxy on .154); run under the shared
lock. Everything waits on a condition with a deadline; every process is stopped by PID.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.ha.agentcluster import AgentCluster, cluster_of_test
from tests.ha.clusterops import (
    call,
    connect_through,
    hactl,
    haproxy_binary,
    reached_through,
    running_haproxy,
    sql,
    status_of,
)
from tests.tools.poll import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTS = ["127.0.0.151", "127.0.0.152", "127.0.0.153"]
HAPROXY_LISTEN = "127.0.0.154:15432"
BOOT = 90.0
FAILOVER = 30.0


@pytest.fixture
def cluster(pg_bindir: Path, request: pytest.FixtureRequest) -> Iterator[AgentCluster]:
    with cluster_of_test(request, "tls", HOSTS, scope="tls", tls=True) as c:
        yield c


def plain_http_answers(c: AgentCluster, name: str) -> bool:
    """Whether the agent answers plain HTTP (it must not: it speaks TLS only)."""
    url = f"http://{c.members[name].host}:8008/patroni"
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def served_serial(c: AgentCluster, name: str, port: int = 8008) -> int:
    """The serial number of the certificate member `name` presents now on `port` (the REST
    API; 7000: its store member, which asks for a client certificate)."""
    assert c.ssl_context is not None and c.tls_dir is not None
    ctx = c.ssl_context
    if port != 8008:
        ctx = ssl.create_default_context(cafile=str(c.tls_dir / "ca.crt"))
        ctx.load_cert_chain(c.tls_dir / "client.crt", c.tls_dir / "client.key")
        ctx.check_hostname = False
    with (
        socket.create_connection((c.members[name].host, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=c.members[name].host) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def file_serial(c: AgentCluster, name: str) -> int:
    assert c.tls_dir is not None
    return x509.load_pem_x509_certificate((c.tls_dir / f"{name}.crt").read_bytes()).serial_number


def routed_to(host: str) -> bool:
    return all(reached_through(HAPROXY_LISTEN) == (host, False) for _ in range(3))


def test_a_tls_cluster_switches_over_fails_over_and_reloads_certificates(
    cluster: AgentCluster,
) -> None:
    c = cluster
    assert c.tls_dir is not None
    c.start_all()
    primary = c.wait_primary(BOOT)
    replicas = [n for n in c.members if n != primary]
    c.wait_streaming(replicas, BOOT)
    host = {n: m.host for n, m in c.members.items()}

    # Every member publishes an https URL, and peers reach each other there (the WAL probes).
    code, cl = c.http(primary, "/cluster")
    assert code == 200
    assert sorted(m["api_url"] for m in cl["members"]) == [f"https://{h}:8008" for h in HOSTS]
    assert not any(plain_http_answers(c, n) for n in c.members)
    # Without the cluster CA a client does not trust the agents.
    plain = subprocess.run(
        [sys.executable, "-m", "hamgr.cli.hactl", "--url", c.members[primary].api, "list"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert plain.returncode == 1 and "--cacert" in plain.stderr, plain.stderr
    listed = hactl(c, primary, "list")
    assert listed.returncode == 0, listed.stderr
    assert all(n in listed.stdout for n in c.members)
    # The agents' own store clients connect over mutual TLS: the store answers writes.
    sql(c, primary, "CREATE TABLE t (x int)")

    with_haproxy = haproxy_binary() is not None
    with contextlib.ExitStack() as stack:
        haproxy = None
        if with_haproxy:
            haproxy = stack.enter_context(
                running_haproxy(c, HAPROXY_LISTEN, c.root / "haproxy.log")
            )
        if haproxy is not None:
            wait_for(
                lambda: routed_to(host[primary]), 20, f"HAProxy (check-ssl) routing to {primary}"
            )

        # Switchover with hactl over TLS.
        target = replicas[0]
        done = hactl(
            c, primary, "switchover", "--leader", primary, "--candidate", target, "--force"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        new = c.wait_primary(FAILOVER, exclude=(primary,))
        assert new == target
        if haproxy is not None:
            wait_for(lambda: routed_to(host[new]), 20, f"HAProxy routing to {new}")
            with connect_through(HAPROXY_LISTEN) as conn:
                conn.execute("INSERT INTO t VALUES (1)")

        # kill -9 of the primary (agent and postmaster): a replica takes over, once one has
        # reached the new timeline (none is promoted before: it could lose the switchover's WAL).
        c.wait_streaming([n for n in c.members if n != new], FAILOVER, upstream=new)
        c.kill9_agent(new)
        c.kill9_postgres(new)
        survivor = c.wait_primary(FAILOVER, exclude=(new,))
        assert survivor != new
        if haproxy is not None:
            wait_for(lambda: routed_to(host[survivor]), 20, f"HAProxy routing to {survivor}")
            with connect_through(HAPROXY_LISTEN) as conn:
                conn.execute("INSERT INTO t VALUES (2)")
                assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)

    # Rotation without downtime: renew from the same CA, reload, the new certificate is served.
    alive = [n for n in c.members if n != new]
    before = {n: served_serial(c, n) for n in alive}
    assert all(served_serial(c, n, 7000) == before[n] for n in alive)  # one cert, both sides
    renewed = subprocess.run(
        [sys.executable, "-m", "hamgr", "certs", "renew", "--out", str(c.tls_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert renewed.returncode == 0, renewed.stderr
    reloaded = hactl(c, survivor, "reload", *alive)
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    for n in alive:
        wait_for(
            lambda n=n: served_serial(c, n) == file_serial(c, n) != before[n] or None,
            20,
            f"{n} serving its renewed certificate",
        )
        assert served_serial(c, n, 7000) == file_serial(c, n)  # the store's listener too
    # Still one cluster over TLS after the reload: the survivor keeps its key, the store works.
    wait_for(lambda: status_of(c, survivor).get("role") == "primary" or None, 20, "primary")
    assert call(c, survivor, "POST", "/reload", {})[0] == 202
    if not with_haproxy:
        pytest.skip(
            "haproxy is not installed: the HAProxy part did not run (apt-get install haproxy)"
        )
