"""Rules across keys, run on a Config whose single values are already checked.

Each rule reads the values it compares with ``Loader.need``, which skips the rule (raises
:class:`~hamgr.config.problems.Skip`) when one of them was already reported as wrong or sits in
an absent section, and reports at the key to change. The timing rules are listed in the package
docstring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from hamgr.config.methods import bootstrap_method_problems, replica_method_problems
from hamgr.config.problems import Skip, fmt_path
from hamgr.config.schema import Config
from hamgr.config.timing import timing_problems
from hamgr.config.values import split_address

if TYPE_CHECKING:
    from hamgr.config.validate import Loader

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})

# "Loader" is quoted: validate imports this module, so Loader is only imported for type checks.
_Check = Callable[[Config, "Loader"], None]
#: Every rule below, in the order Loader.load runs them.
CHECKS: list[_Check] = []


def _check(fn: _Check) -> _Check:
    CHECKS.append(fn)
    return fn


def _reachable(c: Config, L: Loader, *path: str) -> None:
    address = L.need(c, *path)
    host, _ = split_address(address)
    if host in _WILDCARD_HOSTS:
        L.report(
            tuple(path),
            f"{host} is a listen-on-all address, not one other members can connect to; set it "
            "to this host's reachable address (it defaults to listen)",
        )


@_check
def _replica_methods(c: Config, L: Loader) -> None:
    methods = L.need(c, "postgresql", "create_replica_methods")
    configured = L.need(c, "postgresql", "replica_methods")
    for where, problem in replica_method_problems(methods, configured):
        L.report(("postgresql", *where), problem)


@_check
def _bootstrap_methods(c: Config, L: Loader) -> None:
    method = L.need(c, "bootstrap", "method")
    configured = L.need(c, "bootstrap", "methods")
    for where, problem in bootstrap_method_problems(method, configured):
        L.report(("bootstrap", *where), problem)
    if c.bootstrap.post_bootstrap is not None and c.bootstrap.post_init is not None:
        L.report(("bootstrap", "post_init"), "the same as bootstrap.post_bootstrap: set one")


@_check
def _restore_command_once(c: Config, L: Loader) -> None:
    given = L.need(c, "postgresql", "recovery_conf", "restore_command")
    if "restore_command" in L.need(c, "postgresql", "parameters"):
        L.report(
            ("postgresql", "parameters", "restore_command"),
            "also set as postgresql.recovery_conf.restore_command " + f"({given!r}): set one",
        )


@_check
def _restapi_reachable(c: Config, L: Loader) -> None:
    _reachable(c, L, "restapi", "connect_address")


@_check
def _postgres_reachable(c: Config, L: Loader) -> None:
    _reachable(c, L, "postgresql", "connect_address")


@_check
def _raft_reachable(c: Config, L: Loader) -> None:
    _reachable(c, L, "store", "raft", "advertise")


@_check
def _restapi_tls_pair(c: Config, L: Loader) -> None:
    cert = L.need(c, "restapi", "certfile", none_ok=True)
    key = L.need(c, "restapi", "keyfile", none_ok=True)
    if cert is not None and key is None:
        L.report(("restapi", "keyfile"), "required when restapi.certfile is set")
    if key is not None and cert is None:
        L.report(("restapi", "certfile"), "required when restapi.keyfile is set")


@_check
def _restapi_client_verification(c: Config, L: Loader) -> None:
    verify = L.need(c, "restapi", "verify_client")
    if verify == "none":
        return
    if L.need(c, "restapi", "certfile", none_ok=True) is None:
        L.report(("restapi", "verify_client"), f"{verify} needs TLS: set restapi.certfile")
    elif L.need(c, "restapi", "cafile", none_ok=True) is None:
        L.report(
            ("restapi", "cafile"),
            f"required when restapi.verify_client is {verify} (the CA of client certificates)",
        )


@_check
def _restapi_cafile_needs_tls(c: Config, L: Loader) -> None:
    if L.need(c, "restapi", "cafile", none_ok=True) is not None and (
        L.need(c, "restapi", "certfile", none_ok=True) is None
    ):
        L.report(("restapi", "cafile"), "only used with TLS: set restapi.certfile and keyfile")


@_check
def _client_address_defaults(c: Config, L: Loader) -> None:
    """A client address left to its default (Raft port + 100) needs a port that exists."""
    pairs: list[tuple[tuple[str | int, ...], tuple[str | int, ...]]] = [
        (("store", "raft", "listen"), ("store", "raft", "client_listen"))
    ]
    for i, _ in enumerate(L.need(c, "store", "raft", "peers", below=False)):
        base = ("store", "raft", "peers", i)
        pairs.append(((*base, "address"), (*base, "client_address")))
    for raft_key, client_key in pairs:
        try:
            raft_address = L.need(c, *raft_key)
            client_address = L.need(c, *client_key)
        except Skip:
            continue
        if not client_address:
            L.report(
                client_key,
                f"required: its default, the port of {fmt_path(raft_key)} + 100, is above 65535 "
                f"({raft_address})",
            )


@_check
def _distinct_listen_addresses(c: Config, L: Loader) -> None:
    keys = [
        ("restapi", "listen"),
        ("postgresql", "listen"),
        ("store", "raft", "listen"),
        ("store", "raft", "client_listen"),
    ]
    seen: dict[tuple[str, int], tuple[str, ...]] = {}
    for path in keys:
        try:
            address = L.need(c, *path)
        except Skip:
            continue
        if not address:  # an unset default, reported by _client_address_defaults
            continue
        where = split_address(address)
        if where in seen:
            L.report(path, f"same address as {fmt_path(seen[where])} ({address})")
        seen.setdefault(where, path)


@_check
def _backend_section(c: Config, L: Loader) -> None:
    backend = L.need(c, "store", "backend")
    section = L.need(c, "store", backend, below=False, none_ok=True)
    if section is None:
        needs = "data_dir, node_id and secret" if backend == "raft" else "hosts"
        L.report(
            ("store", backend),
            f"required when store.backend is {backend} (with at least {needs})",
        )


@_check
def _raft_secret(c: Config, L: Loader) -> None:
    secret = L.need(c, "store", "raft", "secret", none_ok=True)
    secret_file = L.need(c, "store", "raft", "secret_file", none_ok=True)
    if secret is None and secret_file is None:
        L.report(("store", "raft", "secret"), "required (or store.raft.secret_file)")
    elif secret is not None and secret_file is not None:
        L.report(
            ("store", "raft", "secret_file"),
            "set either store.raft.secret or store.raft.secret_file, not both",
        )


@_check
def _password_files(c: Config, L: Loader) -> None:
    """A password and a file to read it from are exclusive; the REST API needs one of them."""
    roles: list[tuple[str, ...]] = [
        ("postgresql", "authentication", role) for role in ("superuser", "replication", "rewind")
    ]
    for path in [("restapi", "authentication"), *roles]:
        with contextlib.suppress(Skip):
            section = L.need(c, *path)
            where = ".".join(path)
            if section.password is not None and section.password_file is not None:
                L.report(
                    (*path, "password_file"),
                    f"set either {where}.password or {where}.password_file, not both",
                )
            elif (
                path[0] == "restapi" and section.password is None and section.password_file is None
            ):
                L.report((*path, "password"), f"required (or {where}.password_file)")


@_check
def _raft_peers(c: Config, L: Loader) -> None:
    peers = L.need(c, "store", "raft", "peers", below=False)
    own_ids: dict[int, str] = {}
    own_addresses: dict[tuple[str, int], str] = {}
    with contextlib.suppress(Skip):
        own_ids[L.need(c, "store", "raft", "node_id")] = "this member's own store.raft.node_id"
    try:
        advertise = split_address(L.need(c, "store", "raft", "advertise"))
        own_addresses[advertise] = "this member's own store.raft.advertise"
    except Skip:
        pass
    for i, _ in enumerate(peers):
        base = ("store", "raft", "peers", i)
        try:
            node_id = L.need(c, *base, "node_id")
            if node_id in own_ids:
                L.report((*base, "node_id"), f"{node_id} is already {own_ids[node_id]}")
            own_ids.setdefault(node_id, f"the node_id of {fmt_path(base)}")
        except Skip:
            pass
        try:
            address = L.need(c, *base, "address")
            where = split_address(address)
            if where in own_addresses:
                L.report((*base, "address"), f"{address} is already {own_addresses[where]}")
            own_addresses.setdefault(where, f"the address of {fmt_path(base)}")
        except Skip:
            pass


@_check
def _raft_heartbeat(c: Config, L: Loader) -> None:
    heartbeat = L.need(c, "store", "raft", "heartbeat_interval")
    election = L.need(c, "store", "raft", "election_timeout")
    if not heartbeat < election / 2:
        L.report(
            ("store", "raft", "heartbeat_interval"),
            f"must be < store.raft.election_timeout / 2 = {election / 2:g}, got {heartbeat:g}",
        )


@_check
def _etcd_credentials(c: Config, L: Loader) -> None:
    username = L.need(c, "store", "etcd", "username", none_ok=True)
    password = L.need(c, "store", "etcd", "password", none_ok=True)
    if (username is None) != (password is None):
        missing = "password" if password is None else "username"
        other = "username" if password is None else "password"
        L.report(("store", "etcd", missing), f"required when store.etcd.{other} is set")


@_check
def _etcd_cacert(c: Config, L: Loader) -> None:
    cacert = L.need(c, "store", "etcd", "cacert", none_ok=True)
    if cacert is not None and L.need(c, "store", "etcd", "protocol") != "https":
        L.report(("store", "etcd", "cacert"), "only used with store.etcd.protocol https")


@_check
def _etcd_client_cert(c: Config, L: Loader) -> None:
    cert = L.need(c, "store", "etcd", "cert", none_ok=True)
    key = L.need(c, "store", "etcd", "key", none_ok=True)
    if (cert is None) != (key is None):
        missing, other = ("key", "cert") if key is None else ("cert", "key")
        L.report(("store", "etcd", missing), f"required when store.etcd.{other} is set")
    elif cert is not None and L.need(c, "store", "etcd", "protocol") != "https":
        L.report(("store", "etcd", "cert"), "only used with store.etcd.protocol https")


_MANAGED_PARAMETERS = {
    "port": "postgresql.listen",
    "listen_addresses": "postgresql.listen",
    "data_directory": "postgresql.data_dir",
}


@_check
def _managed_parameters(c: Config, L: Loader) -> None:
    for path in (("postgresql", "parameters"), ("bootstrap", "dcs", "postgresql", "parameters")):
        try:
            parameters = L.need(c, *path)
        except Skip:
            continue
        for name in parameters:
            if name in _MANAGED_PARAMETERS:
                L.report(
                    (*path, name),
                    f"set by hamgr from {_MANAGED_PARAMETERS[name]}; remove it here",
                )


@_check
def _timing(c: Config, L: Loader) -> None:
    where = ("bootstrap", "dcs")
    for key, message in timing_problems(
        L.need(c, *where, "ttl"),
        L.need(c, *where, "loop_wait"),
        L.need(c, *where, "retry_timeout"),
        L.need(c, *where, "safety_margin"),
        "bootstrap.dcs.",
    ):
        L.report((*where, key), message)


@_check
def _minimum_lease_ttl(c: Config, L: Loader) -> None:
    if L.need(c, "store", "backend") != "raft":
        return
    ttl = L.need(c, "bootstrap", "dcs", "ttl")
    election = L.need(c, "store", "raft", "election_timeout")
    if ttl < 1.5 * election:
        L.report(
            ("bootstrap", "dcs", "ttl"),
            f"must be >= 1.5 * store.raft.election_timeout = {1.5 * election:g} (the minimum "
            f"lease TTL), got {ttl:g}",
        )


@_check
def _watchdog_margin(c: Config, L: Loader) -> None:
    if L.need(c, "watchdog", "mode") == "off":
        return
    margin = L.need(c, "watchdog", "safety_margin")
    ttl = L.need(c, "bootstrap", "dcs", "ttl")
    loop_wait = L.need(c, "bootstrap", "dcs", "loop_wait")
    if not margin < ttl - loop_wait:
        L.report(
            ("watchdog", "safety_margin"),
            f"must be < bootstrap.dcs.ttl - bootstrap.dcs.loop_wait = {ttl - loop_wait:g} so "
            f"that a loop on time feeds the watchdog before it fires, got {margin:g}",
        )
