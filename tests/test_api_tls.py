"""The REST API over TLS on real sockets (127.0.0.x, port 0): certificates from `hamgr certs`,
``restapi.verify_client``, a client certificate standing in for the password, the allowlist, and
a renewed certificate picked up by reloading the running context (no restart)."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from cryptography import x509

from hamgr import tls
from hamgr.agent.api import serve
from hamgr.agent.apiaccess import Access
from hamgr.cli.certs import init, parse_members, renew
from hamgr.cli.ctl_client import basic_auth
from hamgr.cli.healthcheck import check, local_url
from hamgr.config.schema import ApiAuthentication, RestApiConfig
from tests.apifake import FakeAgent, FakeStore, cluster3, status

AUTH = ("admin", "s3cret-pass")
URLS = {n: f"https://127.0.0.1:{p}" for n, p in (("a", 8008), ("b", 8009), ("c", 8010))}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tls")
    init(out, "demo", parse_members("n1=127.0.0.1,client=127.0.0.2"))
    return out


def rest_config(certs: Path, **kw: Any) -> RestApiConfig:
    return RestApiConfig(
        listen="127.0.0.1:0",
        certfile=str(certs / "n1.crt"),
        keyfile=str(certs / "n1.key"),
        cafile=str(certs / "ca.crt"),
        authentication=ApiAuthentication(username=AUTH[0], password=AUTH[1]),
        **kw,
    )


class Served:
    """An agent served over TLS by `serve` from a ``restapi`` section."""

    def __init__(self, rest: RestApiConfig) -> None:
        self.rest = rest
        self.ctx = tls.rest_server_context(rest)
        self.port = 0

    async def __aenter__(self) -> Served:
        store = FakeStore(cluster3(URLS))
        agent = FakeAgent("a", store, status(store.view.members[0]))
        self.runner = await serve(
            agent, "127.0.0.1:0", None, ssl_context=self.ctx, access=Access.from_config(self.rest)
        )
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    async def call(
        self,
        method: str,
        path: str,
        *,
        client: ssl.SSLContext | bool,
        auth: bool = False,
        source: str | None = None,
        scheme: str = "https",
    ) -> int:
        conn = aiohttp.TCPConnector(ssl=client, local_addr=(source, 0) if source else None)
        headers = {"Authorization": basic_auth(*AUTH)} if auth else {}
        async with (
            aiohttp.ClientSession(connector=conn) as session,
            session.request(
                method, f"{scheme}://127.0.0.1:{self.port}{path}", headers=headers
            ) as resp,
        ):
            return resp.status


def anonymous(certs: Path) -> ssl.SSLContext:
    """Trusts the cluster CA, presents no certificate (as hactl with --cacert only)."""
    return tls.client_context(tls.TlsFiles(cafile=str(certs / "ca.crt")))


def with_cert(certs: Path) -> ssl.SSLContext:
    files = tls.TlsFiles(
        str(certs / "client.crt"), str(certs / "client.key"), str(certs / "ca.crt")
    )
    return tls.client_context(files)


@pytest.fixture
async def none_api(certs: Path) -> AsyncIterator[Served]:
    async with Served(rest_config(certs)) as served:
        yield served


async def test_tls_is_served_and_checked_by_host_name(none_api: Served, certs: Path) -> None:
    assert await none_api.call("GET", "/patroni", client=anonymous(certs)) == 200
    assert await none_api.call("POST", "/reload", client=anonymous(certs)) == 401
    assert await none_api.call("POST", "/reload", client=anonymous(certs), auth=True) == 202
    # A client that does not trust the cluster CA refuses the agent's certificate.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await none_api.call("GET", "/patroni", client=ssl.create_default_context())


async def test_plain_http_is_refused(none_api: Served, certs: Path) -> None:
    with pytest.raises(aiohttp.ClientError):
        await none_api.call("GET", "/patroni", client=False, scheme="http")


async def test_verify_client_required_refuses_clients_without_a_certificate(
    certs: Path,
) -> None:
    async with Served(rest_config(certs, verify_client="required")) as served:
        with pytest.raises(aiohttp.ClientError):
            await served.call("GET", "/patroni", client=anonymous(certs))
        assert await served.call("GET", "/patroni", client=with_cert(certs)) == 200
        # The verified certificate stands in for the password of unsafe methods.
        assert await served.call("POST", "/reload", client=with_cert(certs)) == 202


async def test_verify_client_optional_checks_a_certificate_only_when_sent(
    certs: Path, tmp_path: Path
) -> None:
    async with Served(rest_config(certs, verify_client="optional")) as served:
        assert await served.call("GET", "/patroni", client=anonymous(certs)) == 200
        assert await served.call("GET", "/patroni", client=with_cert(certs)) == 200
        # optional: a certificate is not a password.
        assert await served.call("POST", "/reload", client=with_cert(certs)) == 401
        other = tmp_path / "other"
        init(other, "other", parse_members("x=127.0.0.2"))
        stranger = tls.client_context(
            tls.TlsFiles(str(other / "x.crt"), str(other / "x.key"), str(certs / "ca.crt"))
        )
        with pytest.raises(aiohttp.ClientError):  # signed by another CA: refused
            await served.call("GET", "/patroni", client=stranger)


async def test_allowlist_limits_unsafe_methods_by_address(certs: Path) -> None:
    async with Served(rest_config(certs, allowlist=("127.0.0.2/32",))) as served:
        ctx = anonymous(certs)
        assert await served.call("POST", "/reload", client=ctx, auth=True) == 403
        assert await served.call("GET", "/patroni", client=ctx) == 200  # safe: open
        assert (
            await served.call("POST", "/reload", client=ctx, auth=True, source="127.0.0.2") == 202
        )
        assert await served.call("POST", "/reload", client=ctx, source="127.0.0.2") == 401


@pytest.mark.parametrize(
    ("access", "remote", "header", "cert", "expected"),
    [
        (Access(), "127.0.0.1", None, False, 403),
        (Access(auth=AUTH), "127.0.0.1", None, False, 401),
        (Access(auth=AUTH), "127.0.0.1", basic_auth(*AUTH), False, None),
        (Access(auth=AUTH), "127.0.0.1", basic_auth("admin", "wrong"), False, 401),
        (Access(cert_authenticates=True), "127.0.0.1", None, True, None),
        (Access(cert_authenticates=True), "127.0.0.1", None, False, 403),
        (Access(auth=AUTH, cert_authenticates=False), "127.0.0.1", None, True, 401),
        (
            Access.from_config(RestApiConfig(allowlist=("10.0.0.0/8",))),
            "10.1.2.3",
            None,
            False,
            403,
        ),
        (
            Access.from_config(RestApiConfig(allowlist=("10.0.0.0/8",))),
            "11.0.0.1",
            None,
            False,
            403,
        ),
        (
            Access(
                auth=AUTH, allowlist=Access.from_config(RestApiConfig(allowlist=("::1",))).allowlist
            ),
            "::1",
            basic_auth(*AUTH),
            False,
            None,
        ),
        (Access.from_config(RestApiConfig(allowlist=("10.0.0.0/8",))), None, None, False, 403),
    ],
)
def test_access_rules(
    access: Access, remote: str | None, header: str | None, cert: bool, expected: int | None
) -> None:
    denied = access.check(remote, header, cert)
    assert (denied.status if denied else None) == expected
    if denied is not None and access.allowlist and remote != "10.1.2.3":
        assert "restapi.allowlist" in denied.message


async def _served_serial(port: int, certs: Path) -> int:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=anonymous(certs))
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def test_a_renewed_certificate_is_served_after_a_reload_without_restart(
    tmp_path: Path,
) -> None:
    init(tmp_path, "demo", parse_members("n1=127.0.0.1,client=127.0.0.2"))
    async with Served(rest_config(tmp_path)) as served:
        before = await _served_serial(served.port, tmp_path)
        renew(tmp_path)
        assert await _served_serial(served.port, tmp_path) == before  # until reloaded
        tls.reload(served.ctx, tls.rest_files(served.rest))
        renewed = x509.load_pem_x509_certificate((tmp_path / "n1.crt").read_bytes())
        assert await _served_serial(served.port, tmp_path) == renewed.serial_number != before


async def test_the_health_check_command_speaks_tls_with_the_member_files(certs: Path) -> None:
    async with Served(rest_config(certs, verify_client="required")) as served:
        rest = msgspec.structs.replace(served.rest, listen=f"0.0.0.0:{served.port}")
        assert local_url(rest, "/liveness") == f"https://127.0.0.1:{served.port}/liveness"
        # The member's own certificate is presented: verify_client required lets it in.
        assert await check(rest, "/patroni") == 200
        assert await check(rest, "/replica") == 503


async def _hactl(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hamgr.cli.hactl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_hactl_speaks_tls_with_its_options(certs: Path) -> None:
    async with Served(rest_config(certs, verify_client="required")) as served:
        url = f"https://127.0.0.1:{served.port}"
        ca, crt, key = (str(certs / f) for f in ("ca.crt", "client.crt", "client.key"))
        code, out = await _hactl("--url", url, "--cacert", ca, "--cert", crt, "--key", key, "list")
        assert code == 0, out
        assert "Cluster: demo" in out
        code, out = await _hactl("--url", url, "--cert", crt, "--key", key, "list")
        assert code == 1 and "certificate verify failed" in out and "--cacert" in out, out
        code, out = await _hactl("--url", url, "--cacert", ca, "list")
        assert code == 1 and "wants --cert and --key" in out, out  # verify_client required
        code, out = await _hactl("--url", url, "--cacert", ca, "--key", key, "list")
        assert code == 1 and "--key needs --cert" in out
