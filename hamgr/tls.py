"""TLS contexts of the REST API, its clients and the agent's store client, built from the files
the configuration names, and reloaded in place.

One `ssl.SSLContext` is made per role and kept for the life of the process: `reload` loads the
files again into the SAME context, so the listeners and connectors that hold it present the new
certificate (and trust the new CA) on their next handshake, with no restart and no dropped
connection. A renewed certificate therefore takes effect on SIGHUP or ``hactl reload``.
`load_verify_locations` adds to what a context trusts, it never forgets: during a CA rotation the
old and the new CA are both trusted until the process restarts.

Peers are dialed by their advertised address, and ``hamgr certs`` puts that address in each
member's certificate, so the REST clients check host names. The store's contexts
(`hamgr.agent.storemember`) do not: members there are told apart by the cluster secret's handshake.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from hamgr.config.schema import RestApiConfig

__all__ = [
    "TlsFiles",
    "client_context",
    "reload",
    "rest_client_context",
    "rest_files",
    "rest_server_context",
]

_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its key and the CA to check the other side with (each may be absent)."""

    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None

    def load_into(self, ctx: ssl.SSLContext) -> None:
        """Load (or load again) these files into `ctx`. Raises OSError or ssl.SSLError."""
        if self.certfile is not None:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        if self.cafile is not None:
            ctx.load_verify_locations(cafile=self.cafile)


def rest_files(rest: RestApiConfig) -> TlsFiles:
    """The REST API's TLS files from ``restapi``."""
    return TlsFiles(rest.certfile, rest.keyfile, rest.cafile)


def rest_server_context(rest: RestApiConfig) -> ssl.SSLContext | None:
    """The REST API's listening context (None: plain HTTP, no ``restapi.certfile``).

    ``verify_client`` none: no client certificate is asked for; optional: one is asked for and
    checked against ``cafile`` when sent; required: a connection without one is refused.
    """
    if rest.certfile is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    rest_files(rest).load_into(ctx)
    ctx.verify_mode = _VERIFY[rest.verify_client]
    return ctx


def client_context(files: TlsFiles, check_hostname: bool = True) -> ssl.SSLContext:
    """A dialing context: trusts ``files.cafile`` (else the system's CAs) and presents
    ``files.certfile`` when given (for servers that ask for a client certificate)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    files.load_into(ctx)
    ctx.check_hostname = check_hostname
    return ctx


def rest_client_context(rest: RestApiConfig) -> ssl.SSLContext | None:
    """The context the agent dials its peers' REST APIs with (None without REST TLS): this
    member's certificate as client certificate, ``restapi.cafile`` as the peers' CA."""
    if rest.certfile is None:
        return None
    return client_context(rest_files(rest))


def reload(ctx: ssl.SSLContext | None, files: TlsFiles) -> None:
    """Load `files` again into `ctx` (nothing without a context). Raises OSError, SSLError."""
    if ctx is not None:
        files.load_into(ctx)
