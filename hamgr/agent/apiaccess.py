"""Who may call the REST API's unsafe (changing) methods: `Access`, checked per request.

In order, as Patroni: the caller's address must lie in ``restapi.allowlist`` when one is set
(else 403); then it must authenticate, with HTTP basic auth (``restapi.authentication``) or,
when ``restapi.verify_client`` is required, with the client certificate the TLS handshake
already verified against ``restapi.cafile`` (the handshake refuses a connection without one,
so any request that arrives here has one). Without either means unsafe methods are refused.
Safe methods (GET, HEAD, OPTIONS: health checks and state) are open to every caller that
completed the TLS handshake.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from hamgr.config.schema import RestApiConfig

__all__ = ["Access", "Denied", "authorized"]

Auth = tuple[str, str]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def authorized(header: str | None, auth: Auth) -> bool:
    """Whether the ``Authorization`` header carries `auth`'s username and password (basic)."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(user.encode(), auth[0].encode())
    password_ok = hmac.compare_digest(password.encode(), auth[1].encode())
    return bool(sep) and user_ok and password_ok


@dataclass(frozen=True)
class Denied:
    """Why an unsafe request is refused: the HTTP status and the message."""

    status: int
    message: str


def _networks(allowlist: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowlist)


@dataclass(frozen=True)
class Access:
    """The rules for unsafe methods: basic auth, certificate auth, the address allowlist."""

    auth: Auth | None = None
    cert_authenticates: bool = False
    """True with ``verify_client: required``: a verified client certificate is enough."""
    allowlist: tuple[Network, ...] = field(default=())

    @classmethod
    def from_config(cls, rest: RestApiConfig) -> Access:
        """The rules ``restapi`` sets."""
        a = rest.authentication
        return cls(
            auth=a.credentials() if a is not None else None,
            cert_authenticates=rest.certfile is not None and rest.verify_client == "required",
            allowlist=_networks(rest.allowlist),
        )

    def check(self, remote: str | None, authorization: str | None, has_cert: bool) -> Denied | None:
        """None when a caller at `remote` (its IP) with this ``Authorization`` header and
        (`has_cert`) a verified client certificate may call an unsafe method; else why not."""
        if self.allowlist:
            try:
                ip = ipaddress.ip_address((remote or "").partition("%")[0])
            except ValueError:
                ip = None
            if ip is None or not any(ip in net for net in self.allowlist):
                return Denied(403, f"{remote} is not in restapi.allowlist")
        if self.cert_authenticates and has_cert:
            return None
        if self.auth is None:
            return Denied(
                403,
                "unsafe methods are disabled on this agent: set restapi.authentication "
                "(username and password) in its configuration",
            )
        if not authorized(authorization, self.auth):
            return Denied(401, "authentication required: wrong or missing username or password")
        return None
