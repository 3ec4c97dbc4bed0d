"""`hamgr certs`: a cluster CA and one certificate per member, for the REST API and the store.

``hamgr certs init --cluster NAME --members a=10.0.0.1,b=10.0.0.2,c --out DIR`` writes into DIR::

    ca.crt ca.key             the cluster's certificate authority (self-signed, EC P-256)
    <member>.crt <member>.key one per member, signed by the CA, usable as TLS server AND client
                              (extended key usages serverAuth + clientAuth)

Each member's certificate names its member name and its address as subject alternative names
(an IP address SAN for an IP such as 127.0.0.2, a DNS name otherwise), so peers, hactl and load
balancers that dial it by address verify it with hostname checks on. ``renew`` keeps the CA and
issues every member (or the named ones) a new key and certificate with the same names; the old
certificates stay valid until they expire, so members pick up the new ones one at a time
(SIGHUP or ``hactl reload``) without downtime. Every file is written with mode 0600, replaced
atomically (write, fsync, rename).

The X.509 work is the ``cryptography`` library's; this module only decides what goes in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertError",
    "Member",
    "add_arguments",
    "init",
    "issue_member",
    "main",
    "make_ca",
    "parse_members",
    "renew",
]

CA_DAYS = 3650
"""Validity of the cluster CA (renewing member certificates never touches it)."""
MEMBER_DAYS = 365
"""Default validity of a member's certificate."""
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62})$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


class CertError(Exception):
    """A bad argument or an unusable directory; the message names what is wrong."""


@dataclass(frozen=True)
class Member:
    """One member to certify: its name and the addresses it is reached by (DNS names, IPs)."""

    name: str
    hosts: tuple[str, ...]


def _host_of(address: str) -> str:
    """The host of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if address.startswith("["):
        host, sep, _ = address[1:].partition("]")
        return host if sep else address
    if address.count(":") == 1:
        return address.partition(":")[0]
    return address


def _check_host(host: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _DNS.match(host):
        raise CertError(f"{where}: {host!r} is neither an IP address nor a DNS name")
    return host.lower()


def parse_members(text: str) -> list[Member]:
    """``a,b=10.0.0.2,c=db3.example:8008`` -> members; each address (port dropped) becomes a
    SAN next to the name. Raises CertError naming the bad item."""
    members: list[Member] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise CertError(f"--members: an empty item in {text!r}")
        name, sep, address = item.partition("=")
        name = name.strip()
        if not _NAME.match(name):
            raise CertError(
                f"--members: {name!r} is not a member name (letters, digits, '.', '_', '-')"
            )
        if any(m.name == name for m in members):
            raise CertError(f"--members: {name!r} is given twice")
        hosts: list[str] = []
        if _DNS.match(name):
            hosts.append(name.lower())
        if sep:
            if not address.strip():
                raise CertError(f"--members: {name}= needs an address after '='")
            host = _check_host(_host_of(address.strip()), f"--members: {name}")
            if host not in hosts:
                hosts.append(host)
        if not hosts:
            raise CertError(f"--members: {name!r} is no DNS name: give {name}=ADDRESS")
        members.append(Member(name, tuple(hosts)))
    return members


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_ca(
    cluster: str, now: dt.datetime, days: int = CA_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed CA for `cluster`, valid from `now` (less a minute of clock skew)."""
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hamgr"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"hamgr cluster {cluster} CA"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_member(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    member: Member,
    now: dt.datetime,
    days: int = MEMBER_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new key and a certificate for `member`, signed by the CA: serverAuth + clientAuth,
    its name and addresses as SANs, valid from `now` (less a minute) for `days`."""
    if days < 1:
        raise CertError(f"--days: must be at least 1, got {days}")
    key = _new_key()
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hamgr"),
                    x509.NameAttribute(NameOID.COMMON_NAME, member.name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in member.hosts]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600, atomically (a crash leaves the old file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_member(
    out: Path, member: Member, pair: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
) -> None:
    key, cert = pair
    _write_private(out / f"{member.name}.key", _key_pem(key))
    _write_private(out / f"{member.name}.crt", cert.public_bytes(serialization.Encoding.PEM))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init(out: Path, cluster: str, members: list[Member], days: int = MEMBER_DAYS) -> list[Path]:
    """Create DIR (mode 0700) with a new CA and a certificate per member; the files written.

    Refuses a DIR that already holds a CA (``renew`` reuses it)."""
    if not cluster.strip():
        raise CertError("--cluster: must not be empty")
    if (out / "ca.key").exists() or (out / "ca.crt").exists():
        raise CertError(f"--out: {out} already holds a CA; use `hamgr certs renew --out {out}`")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = _now()
    ca_key, ca_cert = make_ca(cluster, now)
    _write_private(out / "ca.key", _key_pem(ca_key))
    _write_private(out / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    for member in members:
        _write_member(out, member, issue_member(ca_key, ca_cert, member, now, days))
    return [out / "ca.crt", out / "ca.key"] + [
        out / f"{m.name}.{ext}" for m in members for ext in ("crt", "key")
    ]


def _load_ca(out: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertError(f"--out: cannot read the CA in {out}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"--out: {out / 'ca.key'} is not the EC key hamgr certs makes")
    return key, cert


def existing_members(out: Path) -> list[Member]:
    """The members certified in DIR, with the names their certificates carry (sorted)."""
    members = []
    for path in sorted(out.glob("*.crt")):
        if path.name == "ca.crt":
            continue
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound) as exc:
            raise CertError(f"--out: cannot read {path}: {exc}") from None
        hosts = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        hosts = san.get_values_for_type(x509.DNSName) + hosts
        members.append(Member(path.stem, tuple(hosts)))
    return members


def renew(out: Path, members: list[Member] | None = None, days: int = MEMBER_DAYS) -> list[Path]:
    """New keys and certificates from the CA already in DIR: for `members` (new names are
    added), else for every member certified there, with the names it had. The files written."""
    ca_key, ca_cert = _load_ca(out)
    chosen = members if members is not None else existing_members(out)
    if not chosen:
        raise CertError(f"--out: {out} holds no member certificate; give --members")
    now = _now()
    for member in chosen:
        _write_member(out, member, issue_member(ca_key, ca_cert, member, now, days))
    return [out / f"{m.name}.{ext}" for m in chosen for ext in ("crt", "key")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``hamgr certs`` sub-commands: init and renew."""
    sub = parser.add_subparsers(dest="certs_command", metavar="init|renew", required=True)
    p = sub.add_parser("init", help="create a cluster CA and a certificate per member")
    p.add_argument("--cluster", required=True, help="the cluster's name (scope)")
    p.add_argument(
        "--members",
        required=True,
        help="NAME[=ADDRESS],...: each member and the address it is reached by (a SAN)",
    )
    p.add_argument("--out", required=True, help="the directory to write (created, mode 0700)")
    p.add_argument("--days", type=int, default=MEMBER_DAYS, help="member certificate validity")
    p = sub.add_parser("renew", help="new member certificates from the existing CA")
    p.add_argument("--out", required=True, help="the directory holding ca.crt and ca.key")
    p.add_argument("--members", help="NAME[=ADDRESS],... (default: every member in --out)")
    p.add_argument("--days", type=int, default=MEMBER_DAYS, help="member certificate validity")


def main(args: argparse.Namespace) -> int:
    """Run ``hamgr certs init|renew``; 0 done, 1 with the problem on stderr."""
    out = Path(args.out)
    try:
        if args.certs_command == "init":
            written = init(out, args.cluster, parse_members(args.members), args.days)
        else:
            members = parse_members(args.members) if args.members else None
            written = renew(out, members, args.days)
    except (CertError, OSError) as exc:
        print(f"hamgr certs: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
