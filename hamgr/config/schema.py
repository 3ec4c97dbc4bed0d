"""The configuration's shape: one frozen msgspec Struct per section, with its defaults.

Field types say what each key accepts; the ``Annotated`` markers of :mod:`hamgr.config.values`
add the rules on single values (an address, an absolute path, a duration > 0) and mark secrets,
and the loader (:mod:`hamgr.config.validate`) reads both off the types, so that a key is declared
in one place. :data:`TIMING_PROFILES` changes some defaults by name. Nothing here reads a file or
the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr, replace

from hamgr.config.methods import (
    INITDB,
    BootstrapMethod,
    Callbacks,
    Command,
    MethodName,
    RecoveryConf,
    ReplicaMethod,
    bootstrap_method_names,
    move_named_sections,
    replica_method_names,
)
from hamgr.config.problems import BAD, fmt_path, show
from hamgr.config.standby import StandbyCluster, load_slots, load_standby_cluster
from hamgr.config.values import (
    LONG_SECRET,
    MEMBER_NAME,
    NON_EMPTY,
    SECRET,
    Custom,
    Rule,
    Section,
    abs_path_problem,
    address_problem,
    cidr_problem,
    split_address,
)

if TYPE_CHECKING:
    from hamgr.config.validate import Loader

#: Defaults each timing profile changes, by key path. Every profile satisfies every timing rule.
TIMING_PROFILES: Mapping[str, Mapping[str, float]] = {
    "default": {},
    "fast": {
        "store.raft.heartbeat_interval": 0.05,
        "store.raft.election_timeout": 0.5,
        "bootstrap.dcs.ttl": 2.0,
        "bootstrap.dcs.loop_wait": 0.5,
        "bootstrap.dcs.retry_timeout": 0.5,
        "bootstrap.dcs.safety_margin": 0.5,
        "watchdog.safety_margin": 1.0,
    },
}


def _load_initdb_option(
    loader: Loader, raw: Any, path: tuple[str | int, ...], env: str | None
) -> Any:
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((key, value),) = raw.items()
        ok_value = isinstance(value, str | int) and not isinstance(value, bool) and value != ""
        if isinstance(key, str) and key and ok_value:
            return {key: str(value)}
    loader.report(
        path,
        'expected an option name or one "name: value" pair (e.g. data-checksums or '
        f"{{encoding: UTF8}}), got {show(raw)}",
        env,
    )
    return BAD


def _load_sync_mode(loader: Loader, raw: Any, path: tuple[str | int, ...], env: str | None) -> Any:
    # YAML 1.1 reads an unquoted on/off as a boolean; Patroni's own spelling is a boolean too.
    if raw is True or (isinstance(raw, str) and raw.lower() in ("on", "true")):
        return "on"
    if raw is False or (isinstance(raw, str) and raw.lower() in ("off", "false")):
        return "off"
    if raw == "quorum":
        return "quorum"
    loader.report(path, f'expected "off", "on" or "quorum", got {show(raw)}', env)
    return BAD


def _load_postgresql(loader: Loader, raw: Any, path: tuple[str | int, ...], env: str | None) -> Any:
    names = replica_method_names(raw)
    known = list(PostgresConfig.__struct_fields__)
    moved, twice = move_named_sections(raw, names, "replica_methods", known)
    for name in twice:
        other = fmt_path((*path, "replica_methods", name))
        loader.report((*path, name), f"given twice: here and as {other}", env)
    return loader.section(PostgresConfig, moved, path, env)


def _load_bootstrap(loader: Loader, raw: Any, path: tuple[str | int, ...], env: str | None) -> Any:
    names = bootstrap_method_names(raw)
    known = list(BootstrapConfig.__struct_fields__)
    moved, twice = move_named_sections(raw, names, "methods", known)
    for name in twice:
        other = fmt_path((*path, "methods", name))
        loader.report((*path, name), f"given twice: here and as {other}", env)
    return loader.section(BootstrapConfig, moved, path, env)


_ADDRESS = 'host:port, with an IPv6 host in brackets ("[::1]:5432")'

Text = Annotated[str, NON_EMPTY]
Address = Annotated[str, Rule(address_problem), Meta(min_length=1, description=_ADDRESS)]
AbsPath = Annotated[str, Rule(abs_path_problem), Meta(min_length=1, description="an absolute path")]
Cidr = Annotated[
    str, Rule(cidr_problem), Meta(min_length=1, description="an IP address or network (10.0.0.0/8)")
]
MemberName = Annotated[str, NON_EMPTY, MEMBER_NAME]
Seconds = Annotated[float, Meta(gt=0, description="seconds")]
SecondsOrZero = Annotated[float, Meta(ge=0, description="seconds")]
PositiveInt = Annotated[int, Meta(gt=0)]
NonNegativeInt = Annotated[int, Meta(ge=0)]
Secret = Annotated[str, SECRET, NON_EMPTY]
ParameterValue = str | int | float | bool
# The declared types say what the file may hold (the JSON Schema is made from them); the
# Custom loaders turn it into what the program reads: str | dict[str, str], "off"/"on"/"quorum".
InitdbOption = Annotated[
    Text | dict[str, str | int],
    Custom(_load_initdb_option),
    Meta(description='an option name, or one "name: value" pair'),
]
# YAML reads a bare on/off as a boolean, and so does Patroni: both spellings are accepted.
SyncModeSetting = Annotated[Literal["off", "on", "quorum"] | bool, Custom(_load_sync_mode)]
BytesOrNoLimit = Annotated[int, Meta(ge=-1, description="bytes, -1: no limit")]
StandbyClusterSetting = Annotated[StandbyCluster | None, Custom(load_standby_cluster)]
SlotsSetting = Annotated[dict[str, Any], Custom(load_slots)]


# --- The configuration ----------------------------------------------------------------------


class LogConfig(Section, frozen=True, kw_only=True):
    """``log``: how the agent logs."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"


class ApiAuthentication(Section, frozen=True, kw_only=True):
    """``restapi.authentication``: basic auth required for the unsafe (changing) methods.

    Exactly one of ``password`` and ``password_file`` is set in the file; after
    :func:`load_config`, ``password`` holds the password (read from the file when that is used).
    """

    username: Text
    password: Secret | None = None
    password_file: AbsPath | None = None

    def credentials(self) -> tuple[str, str]:
        """(username, password); ValueError when the password file was not read yet."""
        if self.password is None:
            raise ValueError("restapi.authentication.password_file was not read (load_config)")
        return self.username, self.password


class RestApiConfig(Section, frozen=True, kw_only=True):
    """``restapi``: the agent's HTTP API. Without ``authentication`` unsafe methods are refused.

    ``connect_address`` left empty means the same as ``listen``. With ``certfile`` and
    ``keyfile`` it serves HTTPS; ``cafile`` is the CA its clients' certificates are checked
    against (``verify_client``: none, optional: checked when sent, required: refused without)
    and the CA the agent checks its peers' certificates against. A client certificate stands in
    for the password of unsafe methods when ``verify_client`` is required. ``allowlist``: when
    set, only these addresses or CIDR networks may call unsafe methods (as Patroni).
    """

    listen: Address = "127.0.0.1:8008"
    connect_address: Address = ""
    authentication: ApiAuthentication | None = None
    certfile: AbsPath | None = None
    keyfile: AbsPath | None = None
    cafile: AbsPath | None = None
    verify_client: Literal["none", "optional", "required"] = "none"
    allowlist: tuple[Cidr, ...] = ()

    def __post_init__(self) -> None:
        if not self.connect_address:
            force_setattr(self, "connect_address", self.listen)


CLIENT_PORT_OFFSET = 100
"""A member's store client port defaults to its Raft port + this, on the same host."""


def default_client_address(address: object) -> str:
    """The default client address for a Raft address: same host, port + CLIENT_PORT_OFFSET.

    "" when there is none (``address`` is not a valid address, or the port would pass 65535);
    the cross-key checks report that at the client key.
    """
    if not isinstance(address, str):
        return ""
    try:
        host, port = split_address(address)
    except ValueError:
        return ""
    port += CLIENT_PORT_OFFSET
    if port > 65535:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RaftPeer(Section, frozen=True, kw_only=True):
    """One of the OTHER members of the Raft group.

    ``client_address`` (where that member serves store clients) left empty means ``address``'s
    host with its port + 100.
    """

    node_id: PositiveInt
    address: Address
    client_address: Address = ""

    def __post_init__(self) -> None:
        if not self.client_address:
            force_setattr(self, "client_address", default_client_address(self.address))


class RaftTls(Section, frozen=True, kw_only=True):
    """``store.raft.tls``: mutual TLS between members (all three files)."""

    certfile: AbsPath
    keyfile: AbsPath
    cafile: AbsPath


class RaftConfig(Section, frozen=True, kw_only=True):
    """``store.raft``: this member of the embedded Raft group.

    ``advertise`` left empty means ``listen``; ``cluster_id`` left empty means ``scope``. Exactly
    one of ``secret`` and ``secret_file`` is set in the file; after :func:`load_config`,
    ``secret`` always holds the secret (read from ``secret_file`` when that is used).
    ``client_listen`` (where the store serves its clients: agents, ``hamgr store-ctl``) left
    empty means ``listen``'s host with its port + 100.
    """

    data_dir: AbsPath
    node_id: PositiveInt
    listen: Address = "127.0.0.1:7001"
    advertise: Address = ""
    client_listen: Address = ""
    cluster_id: Text = ""
    secret: Annotated[str, SECRET, LONG_SECRET] | None = None
    secret_file: AbsPath | None = None
    peers: tuple[RaftPeer, ...] = ()
    heartbeat_interval: Seconds = 0.3
    election_timeout: Seconds = 1.0
    snapshot_entries: PositiveInt = 10000
    tls: RaftTls | None = None
    join: bool = False
    """True on a host added to a running store (``hactl members add``): with an empty
    ``data_dir`` it waits for the leader to send it the store instead of founding a new store
    with its ``peers``. Without it, an empty member founds one: never set it on a founding
    member. Read only while ``data_dir`` is empty."""

    def __post_init__(self) -> None:
        if not self.advertise:
            force_setattr(self, "advertise", self.listen)
        if not self.client_listen:
            force_setattr(self, "client_listen", default_client_address(self.listen))


class EtcdConfig(Section, frozen=True, kw_only=True):
    """``store.etcd``: an existing etcd v3 cluster. With ``protocol: https`` etcd's certificate
    is checked against ``cacert`` (else the system's CAs) and ``cert`` + ``key`` is presented
    as client certificate (for etcd's ``--client-cert-auth``), as Patroni."""

    hosts: Annotated[tuple[Address, ...], Meta(min_length=1)]
    protocol: Literal["http", "https"] = "http"
    username: Text | None = None
    password: Secret | None = None
    cacert: AbsPath | None = None
    cert: AbsPath | None = None
    key: AbsPath | None = None


class StoreConfig(Section, frozen=True, kw_only=True):
    """``store``: which coordination store; the section named by ``backend`` is required."""

    backend: Literal["raft", "etcd"] = "raft"
    raft: RaftConfig | None = None
    etcd: EtcdConfig | None = None


class SuperUser(Section, frozen=True, kw_only=True):
    """``postgresql.authentication.superuser``; no password means pg_hba/.pgpass decide."""

    username: Text = "postgres"
    password: Secret | None = None
    password_file: AbsPath | None = None


class ReplicationUser(Section, frozen=True, kw_only=True):
    """``postgresql.authentication.replication``: the role replicas stream with."""

    username: Text = "replicator"
    password: Secret | None = None
    password_file: AbsPath | None = None


class RewindUser(Section, frozen=True, kw_only=True):
    """``postgresql.authentication.rewind``: the role pg_rewind uses (else the superuser)."""

    username: Text
    password: Secret | None = None
    password_file: AbsPath | None = None


class PostgresAuthentication(Section, frozen=True, kw_only=True):
    """``postgresql.authentication``. Each role's password may come from ``password_file``
    instead (not both); :func:`load_config` reads the file into ``password``."""

    superuser: SuperUser = msgspec.field(default_factory=SuperUser)
    replication: ReplicationUser = msgspec.field(default_factory=ReplicationUser)
    rewind: RewindUser | None = None


class PostgresConfig(Section, frozen=True, kw_only=True):
    """``postgresql``: the local PostgreSQL this agent manages.

    ``bin_dir`` None means "find it" (:func:`find_bin_dir`); :func:`load_config` fills it in.
    ``connect_address`` left empty means the same as ``listen``. ``pg_hba`` set is the whole
    pg_hba.conf, as given; empty means hamgr's own lines (see ``hamgr.postgres.render``).
    """

    data_dir: AbsPath
    bin_dir: AbsPath | None = None
    os_user: Text = "postgres"
    listen: Address = "127.0.0.1:5432"
    connect_address: Address = ""
    authentication: PostgresAuthentication = msgspec.field(default_factory=PostgresAuthentication)
    parameters: dict[str, ParameterValue] = msgspec.field(default_factory=dict)
    pg_hba: tuple[Text, ...] = ()
    use_pg_rewind: bool = True
    remove_data_directory_on_rewind_failure: bool = False
    create_replica_methods: Annotated[tuple[MethodName, ...], Meta(min_length=1)] = ("basebackup",)
    """Tried in order until one makes the replica; ``basebackup`` is built in, every other
    name has its section (Patroni's ``postgresql.NAME``, kept in ``replica_methods``)."""
    replica_methods: dict[MethodName, ReplicaMethod] = msgspec.field(default_factory=dict)
    callbacks: Callbacks = msgspec.field(default_factory=Callbacks)
    callback_timeout: Seconds = 600.0
    """A callback still running after this long is killed (Patroni has no limit)."""
    recovery_conf: RecoveryConf = msgspec.field(default_factory=RecoveryConf)

    def __post_init__(self) -> None:
        if not self.connect_address:
            force_setattr(self, "connect_address", self.listen)


class DcsPostgresConfig(Section, frozen=True, kw_only=True):
    """``bootstrap.dcs.postgresql``: PostgreSQL settings shared by the whole cluster."""

    parameters: dict[str, ParameterValue] = msgspec.field(default_factory=dict)
    use_slots: bool = True


class DcsConfig(Section, frozen=True, kw_only=True):
    """``bootstrap.dcs``: cluster-wide HA settings (seconds, bytes)."""

    ttl: Seconds = 6.0
    loop_wait: Seconds = 1.0
    retry_timeout: Seconds = 2.0
    maximum_lag_on_failover: NonNegativeInt = 1048576
    primary_start_timeout: SecondsOrZero = 300.0
    safety_margin: Seconds = 2.0
    member_slots_ttl: SecondsOrZero = 1800.0
    synchronous_mode: SyncModeSetting = "off"
    synchronous_mode_strict: bool = False
    synchronous_node_count: PositiveInt = 1
    maximum_lag_on_syncnode: BytesOrNoLimit = -1
    postgresql: DcsPostgresConfig = msgspec.field(default_factory=DcsPostgresConfig)
    standby_cluster: StandbyClusterSetting = None
    slots: SlotsSetting = msgspec.field(default_factory=dict)


class BootstrapConfig(Section, frozen=True, kw_only=True):
    """``bootstrap``: how a new cluster is created."""

    initdb: tuple[InitdbOption, ...] = ()
    dcs: DcsConfig = msgspec.field(default_factory=DcsConfig)
    method: MethodName = INITDB
    """initdb, or a method whose section (Patroni's ``bootstrap.NAME``) has its command."""
    methods: dict[MethodName, BootstrapMethod] = msgspec.field(default_factory=dict)
    post_bootstrap: Command | None = None
    """Run once the new cluster is up, with a superuser connection string as its argument;
    bootstrap fails when it fails. Patroni's older name ``post_init`` is the same key."""
    post_init: Command | None = None


class Tags(Section, frozen=True, kw_only=True):
    """``tags``: this member's role in failover and load balancing."""

    nofailover: bool = False
    noloadbalance: bool = False
    clonefrom: bool = False
    nosync: bool = False
    failover_priority: NonNegativeInt = 1


class WatchdogConfig(Section, frozen=True, kw_only=True):
    """``watchdog``: the Linux watchdog, a second line of fencing behind the fencer process."""

    mode: Literal["off", "automatic", "required"] = "off"
    device: AbsPath = "/dev/watchdog"
    safety_margin: SecondsOrZero = 2.0


class Config(Section, frozen=True, kw_only=True):
    """One agent's whole configuration. ``store.raft.cluster_id`` left empty means ``scope``."""

    scope: MemberName
    name: MemberName
    timing_profile: Literal["default", "fast"] = "default"
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    restapi: RestApiConfig = msgspec.field(default_factory=RestApiConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    postgresql: Annotated[PostgresConfig | None, Custom(_load_postgresql)] = None
    """Absent: this host is a witness, a store member only (no PostgreSQL, no HA loop):
    ``hamgr agent`` runs just its ``store.raft`` member, as ``hamgr store`` does."""
    bootstrap: Annotated[BootstrapConfig, Custom(_load_bootstrap)] = msgspec.field(
        default_factory=BootstrapConfig
    )
    tags: Tags = msgspec.field(default_factory=Tags)
    watchdog: WatchdogConfig = msgspec.field(default_factory=WatchdogConfig)

    def __post_init__(self) -> None:
        store = self.store
        if isinstance(store, StoreConfig) and store.raft is not None and not store.raft.cluster_id:
            raft = replace(store.raft, cluster_id=self.scope)
            force_setattr(self, "store", replace(store, raft=raft))
