"""`hamgr certs`: what init and renew write (pure: files in a temporary directory, no network)."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from hamgr.cli.certs import CertError, Member, init, parse_members, renew
from hamgr.cli.main import main as hamgr_main


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)) | ips


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b,c", [Member("a", ("a",)), Member("b", ("b",)), Member("c", ("c",))]),
        ("n1=127.0.0.2", [Member("n1", ("n1", "127.0.0.2"))]),
        ("n1=127.0.0.2:8008", [Member("n1", ("n1", "127.0.0.2"))]),
        ("db=[::1]:8008", [Member("db", ("db", "::1"))]),
        ("x=db1.example.com", [Member("x", ("x", "db1.example.com"))]),
        ("n_1=10.0.0.1", [Member("n_1", ("10.0.0.1",))]),
    ],
)
def test_members_are_parsed_into_names_and_addresses(text: str, expected: list[Member]) -> None:
    assert parse_members(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a,,b", "an empty item"),
        ("a,a", "'a' is given twice"),
        ("a=", "needs an address"),
        ("a=no way", "neither an IP address nor a DNS name"),
        ("-x", "not a member name"),
        ("n_1", "give n_1=ADDRESS"),
    ],
)
def test_bad_members_are_refused_naming_the_item(text: str, problem: str) -> None:
    with pytest.raises(CertError, match=problem):
        parse_members(text)


def test_init_writes_a_ca_and_member_certificates_mode_0600(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    init(out, "demo", parse_members("n1=127.0.0.1,n2=127.0.0.2,n3=db3.example"))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["ca.crt", "ca.key"] + [f"n{i}.{e}" for i in (1, 2, 3) for e in ("crt", "key")]
    )
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    ca = _cert(out / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    n2 = _cert(out / "n2.crt")
    assert n2.issuer == ca.subject
    n2.verify_directly_issued_by(ca)
    assert _sans(n2) == {"n2", "127.0.0.2"}
    assert _sans(_cert(out / "n3.crt")) == {"n3", "db3.example"}
    usages = n2.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not n2.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_the_files_load_as_python_ssl_server_and_client_contexts(tmp_path: Path) -> None:
    init(tmp_path, "demo", parse_members("n1=127.0.0.1"))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.crt"))
    server.load_cert_chain(tmp_path / "n1.crt", tmp_path / "n1.key")
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client.load_cert_chain(tmp_path / "n1.crt", tmp_path / "n1.key")
    # The SAN matches the address a peer dials, so hostname checks pass (ssl's own matcher).
    cert = _cert(tmp_path / "n1.crt")
    assert ipaddress.ip_address("127.0.0.1") in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.IPAddress)


def test_init_refuses_a_directory_that_holds_a_ca(tmp_path: Path) -> None:
    init(tmp_path, "demo", parse_members("a"))
    with pytest.raises(CertError, match="already holds a CA; use `hamgr certs renew"):
        init(tmp_path, "demo", parse_members("a"))


def test_renew_keeps_the_ca_and_the_names_and_issues_new_keys(tmp_path: Path) -> None:
    init(tmp_path, "demo", parse_members("n1=127.0.0.1,n2=127.0.0.2"))
    ca_before = (tmp_path / "ca.crt").read_bytes()
    key_before = (tmp_path / "n1.key").read_bytes()
    serial_before = _cert(tmp_path / "n1.crt").serial_number
    written = renew(tmp_path)
    assert sorted(p.name for p in written) == ["n1.crt", "n1.key", "n2.crt", "n2.key"]
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    assert (tmp_path / "n1.key").read_bytes() != key_before
    n1 = _cert(tmp_path / "n1.crt")
    assert n1.serial_number != serial_before
    assert _sans(n1) == {"n1", "127.0.0.1"}
    n1.verify_directly_issued_by(_cert(tmp_path / "ca.crt"))
    assert stat.S_IMODE((tmp_path / "n1.key").stat().st_mode) == 0o600
    renew(tmp_path, parse_members("n4=127.0.0.4"))  # a new member from the same CA
    assert _sans(_cert(tmp_path / "n4.crt")) == {"n4", "127.0.0.4"}


def test_renew_without_a_ca_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="cannot read the CA in"):
        renew(tmp_path)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    argv = ["certs", "init", "--cluster", "x", "--members", "a=127.0.0.1", "--out", str(out)]
    assert hamgr_main(argv) == 0
    assert str(out / "a.key") in capsys.readouterr().out
    assert hamgr_main(argv) == 1
    assert "already holds a CA" in capsys.readouterr().err
    assert hamgr_main(["certs", "renew", "--out", str(out), "--days", "0"]) == 1
    assert "--days: must be at least 1" in capsys.readouterr().err
