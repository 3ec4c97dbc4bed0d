"""EtcdDcs: the :class:`~hamgr.dcs.base.Dcs` of one agent, backed by an existing etcd v3 cluster.

For sites that already run etcd. It speaks etcd's HTTP/JSON gateway (``POST /v3/kv/range``,
``/v3/kv/put``, ``/v3/kv/deleterange``, ``/v3/kv/txn``, ``/v3/lease/grant``,
``/v3/lease/keepalive``, ``/v3/lease/revoke``, and the streaming ``/v3/watch``) with aiohttp, so
it needs no gRPC stack. Keys and values travel base64-encoded; int64 fields are JSON strings.

Endpoints: a call goes to the member that last answered, else to the next host in turn; a host
that cannot be reached, or that answers "no leader", "too many requests" or a 5xx, sends the
call to the next one until the call's budget is spent. A write whose connection broke (or that
timed out) after it was sent, or that etcd answers "request timed out" or "leader changed",
may have applied: it raises ``OutcomeUnknown`` and the session decides what to do.

Authentication: with a ``username`` the transport asks ``/v3/auth/authenticate`` for a token
and sends it in the ``Authorization`` header; an expired token is renewed once per call. TLS:
``protocol="https"`` with an optional ``cacert`` (etcd's CA; else the system's) and an optional
client certificate ``cert`` + ``key`` (etcd's ``--client-cert-auth``); host names are checked.

etcd counts leases in whole seconds, so a TTL is rounded up; etcd raises it to its own minimum
(1.5 election timeouts, rounded up) and the granted TTL is what keepalives report.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from hamgr.config.schema import EtcdConfig
from hamgr.config.values import split_address
from hamgr.dcs.common import (
    MONOTONIC,
    Compare,
    Delete,
    LeaseExists,
    LeaseGone,
    OutcomeUnknown,
    Put,
    RangeSnapshot,
    StoredKey,
    StoreRefused,
    StoreUnavailable,
    Target,
    Timer,
    TxnOutcome,
    Watched,
    prefix_end,
)
from hamgr.dcs.session import KvSession
from hamgr.dcs.settings import DynamicSettings

__all__ = ["EtcdDcs", "EtcdTransport"]

_DEFAULTS = DynamicSettings()

_PAUSE = 0.05
"""Pause before asking the next host after one could not serve the call."""

_MAX_STREAM_MESSAGE = 64 * 1024 * 1024
"""Largest single message accepted from a watch stream."""

# Messages of errors that etcd returns before proposing anything: safe to send again.
_NOT_APPLIED = ("no leader", "too many requests", "not capable", "not enough started members")
# Messages of errors after which a write may still apply.
_MAYBE_APPLIED = ("request timed out", "leader changed", "timeout", "unhealthy")
_AUTH_TOKEN_EXPIRED = ("invalid auth token", "user name is empty")
_GRPC_UNAUTHENTICATED = 16


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected base64 text, got {type(text).__name__}")
    return base64.b64decode(text, validate=True)


def _int(data: dict[str, Any], key: str) -> int:
    """An int64 field (etcd sends them as strings and omits zeros)."""
    return int(data.get(key, 0) or 0)


class _EtcdError(Exception):
    """An error answer from etcd, with its gRPC code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error_of(status: int, data: object) -> _EtcdError | None:
    """The error carried by a gateway answer (a plain error body or a stream's error frame)."""
    if not isinstance(data, dict):
        return _EtcdError(status, 0, f"unexpected answer {data!r:.200}")
    error = data.get("error")
    if isinstance(error, dict):  # a stream's error frame
        code = int(error.get("grpc_code", error.get("code", 0)) or 0)
        return _EtcdError(status, code, str(error.get("message", error)))
    if error is not None or status != 200:
        message = str(data.get("message") or error or f"HTTP status {status}")
        return _EtcdError(status, int(data.get("code", 0) or 0), message)
    return None


class EtcdTransport:
    """:class:`~hamgr.dcs.common.KvTransport` over etcd's HTTP/JSON gateway; see the module.

    ``timer`` counts each call's timeout and waits the pauses between hosts (tests pass their
    own)."""

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        protocol: str = "http",
        username: str | None = None,
        password: str | None = None,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        attempt_timeout: float = 1.0,
        timer: Timer = MONOTONIC,
    ) -> None:
        if protocol not in ("http", "https"):
            raise ValueError(f'etcd protocol must be "http" or "https", got {protocol!r}')
        if not hosts:
            raise ValueError("etcd needs at least one host")
        if (username is None) != (password is None):
            raise ValueError("etcd username and password must be given together")
        if cacert is not None and protocol != "https":
            raise ValueError('etcd cacert needs protocol "https"')
        if (cert is None) != (key is None):
            raise ValueError("etcd cert and key must be given together")
        if cert is not None and protocol != "https":
            raise ValueError('etcd cert and key need protocol "https"')
        if not attempt_timeout > 0:
            raise ValueError(f"attempt_timeout must be > 0 seconds, got {attempt_timeout!r}")
        urls = []
        for host in hosts:
            name, port = split_address(host)  # raises ValueError naming the bad host
            shown = f"[{name}]" if ":" in name else name
            urls.append(f"{protocol}://{shown}:{port}")
        self.urls = urls
        self.username = username
        self._password = password
        self._ssl: ssl.SSLContext | None = None
        if protocol == "https":  # etcd's certificate checked against cacert (else the system's)
            self._ssl = ssl.create_default_context(cafile=cacert)
            if cert is not None:  # a client certificate, for etcd's --client-cert-auth
                self._ssl.load_cert_chain(cert, key)
        self.attempt_timeout = float(attempt_timeout)
        self.timer = timer
        self._current = 0
        self._token: str | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- plumbing

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.attempt_timeout),
            )
        return self._session

    def _hosts(self) -> str:
        return ", ".join(self.urls)

    def _next_host(self) -> None:
        self._current = (self._current + 1) % len(self.urls)

    async def _headers(self, url: str) -> dict[str, str]:
        """The Authorization header, authenticating first when needed."""
        if self.username is None:
            return {}
        if self._token is None:
            body = {"name": self.username, "password": self._password}
            async with asyncio.timeout(self.attempt_timeout):
                async with self._http().post(url + "/v3/auth/authenticate", json=body) as resp:
                    status, raw = resp.status, await resp.read()
            data = _parse(raw)
            error = _error_of(status, data)
            if error is not None:
                if status >= 500 or any(m in error.message for m in _NOT_APPLIED):
                    raise _Retry(f"authenticate at {url}: {error.message}")
                raise StoreRefused(
                    f"etcd at {url} refused the credentials of user {self.username!r}: "
                    f"{error.message}"
                )
            assert isinstance(data, dict)
            self._token = str(data.get("token", ""))
        return {"Authorization": self._token}

    async def _post(self, path: str, body: dict[str, Any], *, timeout: float, write: bool) -> Any:
        """POST one request, failing over between hosts until answered or ``timeout``."""
        end = self.timer.now() + timeout
        last: object = None
        renewed_token = False
        while True:
            left = end - self.timer.now()
            if left <= 0:
                raise StoreUnavailable(
                    f"{path}: no answer from etcd ({self._hosts()}) within {timeout:g} s; "
                    f"last error: {last}"
                )
            url = self.urls[self._current]
            sent = False
            try:
                # A read that one member is slow to answer is asked of the next; a write waits
                # (it goes through the etcd leader wherever it is sent).
                async with asyncio.timeout(left if write else min(left, self.attempt_timeout)):
                    headers = await self._headers(url)
                    sent = True
                    async with self._http().post(url + path, json=body, headers=headers) as resp:
                        status, raw = resp.status, await resp.read()
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
                last = exc
            except _Retry as exc:
                last = exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if write and sent:
                    raise OutcomeUnknown(
                        f"{path} at {url}: {type(exc).__name__} {exc} after the request was "
                        "sent: it may or may not have applied"
                    ) from exc
                last = f"{url}: {type(exc).__name__} {exc}".rstrip()
            else:
                data = _parse(raw)
                error = _error_of(status, data)
                if error is None:
                    return data
                problem = f"{path} at {url}: {error.message}"
                if self.username is not None and not renewed_token and _token_expired(error):
                    self._token, renewed_token = None, True
                    continue
                if "lease not found" in error.message:
                    raise LeaseGone(problem)
                if "lease already exists" in error.message:
                    raise LeaseExists(problem)
                if any(m in error.message for m in _NOT_APPLIED):
                    last = problem
                elif write and (status >= 500 or any(m in error.message for m in _MAYBE_APPLIED)):
                    raise OutcomeUnknown(f"{problem}: the write may or may not have applied")
                elif status >= 500 or any(m in error.message for m in _MAYBE_APPLIED):
                    last = problem
                else:
                    raise StoreRefused(problem)
            self._next_host()
            await self.timer.sleep(max(0.0, min(_PAUSE, end - self.timer.now())))

    # -- KvTransport

    async def range(self, key: str, *, prefix: bool, timeout: float) -> RangeSnapshot:
        raw_key = key.encode()
        body: dict[str, Any] = {"key": _b64(raw_key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(raw_key))
        data = await self._post("/v3/kv/range", body, timeout=timeout, write=False)
        try:
            return _snapshot(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreRefused(f"/v3/kv/range: malformed answer from etcd: {exc}") from exc

    async def put(self, op: Put, *, timeout: float) -> int:
        data = await self._post("/v3/kv/put", _put_body(op), timeout=timeout, write=True)
        return _int(data.get("header", {}), "revision")

    async def delete(self, key: str, *, timeout: float) -> int:
        body = {"key": _b64(key.encode())}
        data = await self._post("/v3/kv/deleterange", body, timeout=timeout, write=True)
        return _int(data.get("header", {}), "revision")

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Put | Delete], *, timeout: float
    ) -> TxnOutcome:
        body = {
            "compare": [_compare_body(c) for c in compares],
            "success": [_op_body(o) for o in success],
            "failure": [],
        }
        data = await self._post("/v3/kv/txn", body, timeout=timeout, write=True)
        return TxnOutcome(
            bool(data.get("succeeded", False)), _int(data.get("header", {}), "revision")
        )

    async def lease_grant(self, lease_id: int, ttl: float, *, timeout: float) -> float:
        body = {"ID": str(lease_id), "TTL": str(max(1, math.ceil(ttl)))}
        data = await self._post("/v3/lease/grant", body, timeout=timeout, write=True)
        granted = _int(data, "TTL")
        if granted <= 0:
            raise StoreRefused(f"/v3/lease/grant: etcd refused the lease: {data!r:.200}")
        return float(granted)

    async def lease_keepalive(self, lease_id: int, *, timeout: float) -> float:
        data = await self._post(
            "/v3/lease/keepalive", {"ID": str(lease_id)}, timeout=timeout, write=False
        )
        ttl = _int(data.get("result", data), "TTL")
        if ttl <= 0:  # etcd answers a keepalive of an unknown lease with TTL 0
            raise LeaseGone(f"/v3/lease/keepalive: lease {lease_id} not found")
        return float(ttl)

    async def lease_revoke(self, lease_id: int, *, timeout: float) -> None:
        await self._post("/v3/lease/revoke", {"ID": str(lease_id)}, timeout=timeout, write=True)

    async def wait_for_change(
        self, prefix: str, seen: RangeSnapshot | None, timeout: float, ignore: str = ""
    ) -> Watched:
        """Stream ``/v3/watch`` on the prefix from the revision after ``seen``.

        ``CHANGE`` at the first event not under ``ignore`` (or when the history since ``seen``
        was compacted away); when ``timeout`` passes with the watch in place, ``QUIET`` only if
        no event at all arrived AND every member that opened the watch stood exactly at
        ``seen``'s revision when it did (etcd replays older events from a background sync up to
        ~100 ms later, so silence right after the creation proves nothing otherwise), else
        ``OTHER``; StoreUnavailable when no host would open the watch within ``timeout``.
        """
        raw = prefix.encode()
        create: dict[str, Any] = {"key": _b64(raw), "range_end": _b64(prefix_end(raw))}
        if seen is not None:
            create["start_revision"] = str(seen.revision + 1)
        body = {"create_request": create}
        end = self.timer.now() + timeout
        state = _WatchState()
        while True:
            left = end - self.timer.now()
            if left <= 0:
                if state.created:
                    return state.ending(seen)
                raise StoreUnavailable(
                    f"/v3/watch: could not open a watch on etcd ({self._hosts()}) within "
                    f"{timeout:g} s; last error: {state.last}"
                )
            url = self.urls[self._current]
            try:
                async with asyncio.timeout(left):
                    if await self._watch_once(url, body, state, ignore):
                        return Watched.CHANGE
            except TimeoutError:
                if state.created:
                    return state.ending(seen)
                state.last = f"{url}: no answer within {timeout:g} s"
                continue
            except (_Retry, aiohttp.ClientError, OSError, ValueError) as exc:
                state.last = exc
                self._next_host()
            await self.timer.sleep(max(0.0, min(_PAUSE, end - self.timer.now())))

    async def _watch_once(
        self, url: str, body: dict[str, Any], state: _WatchState, ignore: str = ""
    ) -> bool:
        """One watch stream at ``url``: True at a change; False when the stream ended (or the
        token was renewed) and should be opened again."""
        headers = await self._headers(url)
        async with self._http().post(url + "/v3/watch", json=body, headers=headers) as resp:
            async for message in _stream_messages(resp):
                error = _error_of(resp.status, message)
                if error is not None:
                    if self.username is not None and not state.renewed and _token_expired(error):
                        self._token, state.renewed = None, True
                        return False
                    retry = error.status >= 500 or any(
                        m in error.message for m in _NOT_APPLIED + _MAYBE_APPLIED
                    )
                    if not retry:
                        raise StoreRefused(f"/v3/watch at {url}: {error.message}")
                    raise _Retry(f"/v3/watch at {url}: {error.message}")
                result = message.get("result", {})
                if _int(result, "compact_revision") > 0:
                    return True  # history since `seen` is gone: re-read
                events = result.get("events") or ()
                if any(_counts(e, ignore) for e in events):
                    return True
                state.events = state.events or bool(events)
                if result.get("created"):
                    state.created = True
                    state.revisions.add(_int(result.get("header", {}), "revision"))
                if result.get("canceled"):
                    reason = result.get("cancel_reason", "watch canceled")
                    raise _Retry(f"/v3/watch at {url}: {reason}")
        state.last = f"{url}: the watch stream ended"
        return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _counts(event: object, ignore: str) -> bool:
    """Does a watch event wake the loop (its key is not under ``ignore``)?"""
    if not ignore or not isinstance(event, dict):
        return True
    kv = event.get("kv")
    raw = kv.get("key") if isinstance(kv, dict) else None
    try:
        key = base64.b64decode(raw).decode() if isinstance(raw, str) else ""
    except (ValueError, UnicodeDecodeError):
        return True
    return not key.startswith(ignore)


class _Retry(Exception):
    """This host could not serve the request now: try the next one."""


class _WatchState:
    """What one wait_for_change learned across its attempts."""

    def __init__(self) -> None:
        self.created = False
        self.renewed = False
        self.last: object = None
        self.events = False
        """Events under the prefix arrived (all under ``ignore``, else the watch ended)."""
        self.revisions: set[int] = set()
        """The store revision at each opening of the watch (its answer's header)."""

    def ending(self, seen: RangeSnapshot | None) -> Watched:
        """How a watch that timed out in place ends (see wait_for_change)."""
        if seen is None or self.events or self.revisions != {seen.revision}:
            return Watched.OTHER
        return Watched.QUIET


def _token_expired(error: _EtcdError) -> bool:
    return error.code == _GRPC_UNAUTHENTICATED or any(
        m in error.message for m in _AUTH_TOKEN_EXPIRED
    )


def _parse(raw: bytes) -> Any:
    """The first JSON message of an answer (a stream answer holds one per line)."""
    text = raw.decode("utf-8", "replace").strip()
    first = text.split("\n", 1)[0] if text else ""
    try:
        return json.loads(first) if first else {}
    except ValueError:
        return f"not JSON: {text[:200]}"


async def _stream_messages(resp: aiohttp.ClientResponse) -> AsyncIterator[Any]:
    """The JSON messages of a streaming answer, one per line, as they arrive."""
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        if len(buffer) > _MAX_STREAM_MESSAGE:
            raise ValueError(f"a watch message exceeds {_MAX_STREAM_MESSAGE} bytes")
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


def _snapshot(data: dict[str, Any]) -> RangeSnapshot:
    kvs = []
    for i, kv in enumerate(data.get("kvs", [])):
        raw_key = _unb64(kv.get("key"), f"kvs[{i}].key")
        kvs.append(
            StoredKey(
                raw_key.decode("utf-8", "replace"),
                _unb64(kv.get("value", ""), f"kvs[{i}].value"),
                _int(kv, "create_revision"),
                _int(kv, "mod_revision"),
                _int(kv, "lease"),
            )
        )
    return RangeSnapshot(_int(data.get("header", {}), "revision"), tuple(kvs))


def _put_body(op: Put) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(op.key.encode()), "value": _b64(op.value)}
    if op.lease:
        body["lease"] = str(op.lease)
    return body


def _compare_body(c: Compare) -> dict[str, Any]:
    field = "create_revision" if c.target is Target.CREATE else "mod_revision"
    return {
        "key": _b64(c.key.encode()),
        "target": "CREATE" if c.target is Target.CREATE else "MOD",
        "result": "EQUAL" if c.op == "=" else "LESS",
        field: str(c.value),
    }


def _op_body(op: Put | Delete) -> dict[str, Any]:
    if isinstance(op, Put):
        return {"request_put": _put_body(op)}
    return {"request_delete_range": {"key": _b64(op.key.encode())}}


class EtcdDcs(KvSession):
    """The Dcs of agent ``name`` in cluster ``scope``, over an etcd v3 cluster at ``hosts``
    (``"host:port"`` each). ``attempt_timeout`` bounds one connection attempt, and one try of
    a read at one host. ``timer`` counts the budgets and the watch's timeout, and waits the
    pauses between tries (see :class:`KvSession`)."""

    def __init__(
        self,
        scope: str,
        name: str,
        hosts: Sequence[str],
        *,
        protocol: str = "http",
        username: str | None = None,
        password: str | None = None,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        ttl: float = _DEFAULTS.ttl,
        retry_timeout: float = _DEFAULTS.retry_timeout,
        attempt_timeout: float = 1.0,
        timer: Timer = MONOTONIC,
    ) -> None:
        transport = EtcdTransport(
            hosts,
            protocol=protocol,
            username=username,
            password=password,
            cacert=cacert,
            cert=cert,
            key=key,
            attempt_timeout=attempt_timeout,
            timer=timer,
        )
        super().__init__(scope, name, transport, ttl=ttl, retry_timeout=retry_timeout, timer=timer)
        self.transport = transport

    @classmethod
    def from_config(
        cls,
        config: EtcdConfig,
        scope: str,
        name: str,
        *,
        ttl: float = _DEFAULTS.ttl,
        retry_timeout: float = _DEFAULTS.retry_timeout,
    ) -> EtcdDcs:
        """The session described by the ``store.etcd`` config section."""
        return cls(
            scope,
            name,
            config.hosts,
            protocol=config.protocol,
            username=config.username,
            password=config.password,
            cacert=config.cacert,
            cert=config.cert,
            key=config.key,
            ttl=ttl,
            retry_timeout=retry_timeout,
        )
