"""A local cluster on this machine: N `hamgr agent` processes on 127.0.x.y, written and run.

The one builder behind the demo (`python -m hamgr.cli.demo`), the integration tests
(`tests/ha/agentcluster.py`) and the benchmarks (`bench/hacluster.py`): given a root directory
and the members (name, node id, loopback host, ports), it writes each member's configuration
file (embedded store with every other member as a peer, or an etcd; REST API; PostgreSQL; the
store's shared secret; with TLS the certificates of ``hamgr certs``), starts and stops the agent
processes, and finds the PIDs of what they run (agent, postmaster, fencer) so that everything is
stopped by PID. What differs between its users (names, ports, timing profile, PostgreSQL
parameters, top-level overrides) is passed in; the observation each of them needs (waiting for a
primary, SQL) stays with them.

Each member's files lie under the root: ``<name>.yaml``, ``<name>.log`` and the data and store
directories of `Layout` (``<name>-data``, ``<name>-store`` unless told otherwise); its run
directory (fencer socket, pid file and log) is PostgreSQL's data directory plus ``.run``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hamgr.cli import certs
from hamgr.fencer.postmasterproc import kill_postmaster, postmaster_identity, read_postmaster_pid
from hamgr.fencer.process import pid_file_for
from hamgr.postgres.settings import default_run_dir

API_USER = "admin"
"""The REST API's basic-auth user in every local cluster (the password is the cluster's)."""
FENCER_SOCKET = "hamgr-fencer.sock"
"""The fencer's socket in a member's run directory (the agent's default)."""


@dataclass(frozen=True)
class Ports:
    """The TCP ports one member listens on (store peers, store clients, REST, PostgreSQL)."""

    store: int = 7000
    client: int = 7100
    api: int = 8008
    pg: int = 5432

    def shifted(self, by: int) -> Ports:
        """These ports plus `by` each: members sharing one address get ports of their own."""
        return Ports(self.store + by, self.client + by, self.api + by, self.pg + by)


@dataclass(frozen=True)
class Layout:
    """Where a member's directories lie under the root: ``str.format`` patterns given the
    member's ``name`` and ``node_id``."""

    data: str = "{name}-data"
    store: str = "{name}-store"


@dataclass(frozen=True)
class MemberSpec:
    """One member to configure: its name, store node id, loopback address and ports. A
    `witness` runs a store member only (no REST API, no PostgreSQL)."""

    name: str
    node_id: int
    host: str
    ports: Ports = Ports()
    witness: bool = False


def one_per_host(hosts: Sequence[str], prefix: str) -> list[MemberSpec]:
    """Members ``<prefix>1..N``, one per address in `hosts`, each on the default ports."""
    return [MemberSpec(f"{prefix}{i}", i, host) for i, host in enumerate(hosts, start=1)]


def all_on_host(host: str, names: Sequence[str], base: Ports) -> list[MemberSpec]:
    """Members `names` sharing address `host`, member i (1-based) on `base` shifted by i."""
    return [MemberSpec(name, i, host, base.shifted(i)) for i, name in enumerate(names, start=1)]


@dataclass
class LocalMember:
    """A configured member: its addresses, its files, and its agent process once started."""

    spec: MemberSpec
    root: Path
    layout: Layout = Layout()
    scheme: str = "http"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def node_id(self) -> int:
        return self.spec.node_id

    @property
    def host(self) -> str:
        return self.spec.host

    @property
    def witness(self) -> bool:
        return self.spec.witness

    @property
    def config(self) -> Path:
        return self.root / f"{self.name}.yaml"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def data_dir(self) -> Path:
        return self.root / self.layout.data.format(name=self.name, node_id=self.node_id)

    @property
    def store_dir(self) -> Path:
        return self.root / self.layout.store.format(name=self.name, node_id=self.node_id)

    @property
    def run_dir(self) -> Path:
        return default_run_dir(self.data_dir)

    @property
    def fencer_socket(self) -> Path:
        return self.run_dir / FENCER_SOCKET

    @property
    def api(self) -> str:
        return f"{self.scheme}://{self.host}:{self.spec.ports.api}"

    @property
    def pg_port(self) -> int:
        return self.spec.ports.pg

    @property
    def pg_address(self) -> str:
        return f"{self.host}:{self.spec.ports.pg}"

    @property
    def store_address(self) -> str:
        return f"{self.host}:{self.spec.ports.store}"

    @property
    def client_address(self) -> str:
        return f"{self.host}:{self.spec.ports.client}"


class LocalCluster:
    """Members configured under `root` (see the module doc); nothing runs until `start`.

    `password` is every PostgreSQL user's and the REST API's (user `API_USER`). `profile` sets
    ``timing_profile`` (the agents' default when None); `pg_parameters` each member's
    ``postgresql.parameters`` and `bootstrap_dcs` its ``bootstrap.dcs`` (cluster-wide settings).
    With `etcd_hosts` the agents use that etcd (``store.backend: etcd``) instead of embedded
    store members. With `tls` the REST API and the store run over TLS with certificates in
    ``root/tls`` (made once, kept, reissued for a member whose addresses changed), plus one
    certificate per entry of `tls_clients` (name -> address, e.g. a client's). `overrides` maps
    a member's name to top-level keys that replace the builder's in its file.
    """

    def __init__(
        self,
        root: Path,
        members: Sequence[MemberSpec],
        *,
        scope: str,
        password: str,
        profile: str | None = None,
        layout: Layout = Layout(),
        pg_parameters: Mapping[str, object] | None = None,
        bootstrap_dcs: Mapping[str, object] | None = None,
        etcd_hosts: Sequence[str] | None = None,
        tls: bool = False,
        tls_clients: Mapping[str, str] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must differ: {names}")
        self.root = root
        self.scope = scope
        self.password = password
        self.profile = profile
        self.layout = layout
        self.pg_parameters = dict(pg_parameters or {})
        self.bootstrap_dcs = dict(bootstrap_dcs or {})
        self.etcd_hosts = list(etcd_hosts) if etcd_hosts else None
        self.tls_clients = dict(tls_clients or {})
        self.overrides = {name: dict(keys) for name, keys in (overrides or {}).items()}
        scheme = "https" if tls else "http"
        self.members: dict[str, LocalMember] = {
            m.name: LocalMember(m, root, layout, scheme) for m in members
        }
        self.retired: list[LocalMember] = []
        """Members no longer counted (see `retire`); `close` still stops their processes."""
        self.secret = root / "store-secret"
        self.tls_dir: Path | None = root / "tls" if tls else None
        self.ssl_context: ssl.SSLContext | None = None
        """Trusts the cluster's CA once the certificates exist (None without TLS)."""

    @property
    def backend(self) -> str:
        """The store the agents use: "etcd" or "raft" (their embedded members)."""
        return "etcd" if self.etcd_hosts else "raft"

    # -- configuration --------------------------------------------------------------------------

    def write_configs(self) -> list[Path]:
        """Write every member's configuration file (the root, the store's shared secret and with
        TLS the certificates first, each made only when missing); the files, in member order."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # PostgreSQL runs as its own OS user and must reach its dirs
        if not self.secret.exists():
            self.secret.write_text(secrets.token_hex(24))
            os.chmod(self.secret, 0o600)
        self._ensure_certs()
        for m in self.members.values():
            self._write(m, join=False)
        return [m.config for m in self.members.values()]

    def add_member(self, spec: MemberSpec) -> LocalMember:
        """A new member for a running cluster (not started): its configuration names every
        current member as a peer and sets ``store.raft.join`` (it is sent the store once
        added, e.g. with ``hactl members add``); the other members' files are left as they
        are."""
        if spec.name in self.members:
            raise ValueError(f"member {spec.name!r} exists already")
        scheme = "https" if self.tls_dir is not None else "http"
        m = LocalMember(spec, self.root, self.layout, scheme)
        self.members[spec.name] = m
        self._ensure_certs()
        self._write(m, join=True)
        return m

    def retire(self, name: str) -> LocalMember:
        """Stop counting member `name` (a host lost for good); `close` still stops its
        processes."""
        m = self.members.pop(name)
        self.retired.append(m)
        return m

    def config_of(self, m: LocalMember, *, join: bool = False) -> dict[str, Any]:
        """Member `m`'s configuration, as written to its file."""
        config: dict[str, Any] = {"scope": self.scope, "name": m.name}
        if self.profile is not None:
            config["timing_profile"] = self.profile
        tls = self._tls_files(m)
        if not m.witness:
            restapi: dict[str, Any] = {
                "listen": f"{m.host}:{m.spec.ports.api}",
                "authentication": {"username": API_USER, "password": self.password},
            }
            config["restapi"] = {**restapi, **tls}
        config["store"] = self._store(m, join, tls)
        if not m.witness:
            postgresql: dict[str, Any] = {
                "data_dir": str(m.data_dir),
                "listen": m.pg_address,
                "authentication": {
                    "superuser": {"username": "postgres", "password": self.password},
                    "replication": {"username": "replicator", "password": self.password},
                },
            }
            if self.pg_parameters:
                postgresql["parameters"] = copy.deepcopy(self.pg_parameters)
            config["postgresql"] = postgresql
            if self.bootstrap_dcs:
                config["bootstrap"] = {"dcs": copy.deepcopy(self.bootstrap_dcs)}
        config.update(copy.deepcopy(self.overrides.get(m.name, {})))
        return config

    def _store(self, m: LocalMember, join: bool, tls: dict[str, str]) -> dict[str, Any]:
        if self.etcd_hosts:
            return {"backend": "etcd", "etcd": {"hosts": list(self.etcd_hosts)}}
        peers = [
            {"node_id": p.node_id, "address": p.store_address, "client_address": p.client_address}
            for p in self.members.values()
            if p is not m
        ]
        raft: dict[str, Any] = {
            "data_dir": str(m.store_dir),
            "node_id": m.node_id,
            "listen": m.store_address,
            "client_listen": m.client_address,
            "secret_file": str(self.secret),
            "peers": peers,
        }
        if join:
            raft["join"] = True
        if tls:
            raft["tls"] = dict(tls)
        return {"raft": raft}

    def _tls_files(self, m: LocalMember) -> dict[str, str]:
        if self.tls_dir is None:
            return {}
        return {
            "certfile": str(self.tls_dir / f"{m.name}.crt"),
            "keyfile": str(self.tls_dir / f"{m.name}.key"),
            "cafile": str(self.tls_dir / "ca.crt"),
        }

    def _write(self, m: LocalMember, *, join: bool) -> None:
        m.config.write_text(yaml.safe_dump(self.config_of(m, join=join), sort_keys=False))

    def _ensure_certs(self) -> None:
        """With TLS: the CA and a certificate per member and per `tls_clients` entry (its name
        and address as SANs), made on the first call; later, issued from the same CA only for
        those missing or whose addresses changed."""
        if self.tls_dir is None:
            return
        wanted = [certs.Member(m.name, (m.name, m.host)) for m in self.members.values()]
        wanted += [certs.Member(name, (name, host)) for name, host in self.tls_clients.items()]
        if not (self.tls_dir / "ca.key").exists():
            certs.init(self.tls_dir, self.scope, wanted)
        else:
            have = set(certs.existing_members(self.tls_dir))
            changed = [w for w in wanted if w not in have]
            if changed:
                certs.renew(self.tls_dir, changed)
        self.ssl_context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))

    # -- processes ------------------------------------------------------------------------------

    def launcher(self, m: LocalMember) -> list[str]:
        """The command that runs `hamgr` for member `m` (a subclass may wrap it, e.g. to run
        the member in a network namespace of its own)."""
        return [sys.executable, "-m", "hamgr"]

    def start(
        self, name: str, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        """Start member `name`'s agent (it starts its PostgreSQL and fencer itself) in a session
        of its own, appending to its log; `env` is added to ours. Refuses a running one."""
        m = self.members[name]
        if m.proc is not None and m.proc.poll() is None:
            raise RuntimeError(f"agent {name} is already running (pid {m.proc.pid})")
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(
                [*self.launcher(m), "agent", "--config", str(m.config), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **env} if env else None,
            )
        return m.proc

    def start_all(self) -> None:
        """Start every member's agent, in member order."""
        for name in self.members:
            self.start(name)

    def agent_running(self, name: str) -> bool:
        proc = self.members[name].proc
        return proc is not None and proc.poll() is None

    def agent_pid(self, name: str) -> int:
        """The PID of member `name`'s running agent; RuntimeError when it does not run."""
        proc = self.members[name].proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"agent {name} is not running")
        return proc.pid

    def postmaster_pid(self, name: str) -> int | None:
        """The PID in member `name`'s postmaster.pid, if the file is there (unchecked: see
        `kill9_postgres` for a kill that checks the process)."""
        try:
            return read_postmaster_pid(self.members[name].data_dir)
        except (OSError, ValueError):
            return None

    def fencer_pid(self, name: str) -> int | None:
        """The PID of member `name`'s fencer, if it runs: from its pid file, checked against the
        process's command line (which names its socket), since a PID may be reused."""
        return _fencer_pid(self._member(name).fencer_socket)

    def terminate(self, name: str, timeout: float = 40.0) -> int:
        """SIGTERM member `name`'s agent (an orderly stop) and wait; its exit status."""
        proc = self._member(name).proc
        if proc is None:
            raise RuntimeError(f"agent {name} was never started")
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def kill9_agent(self, name: str) -> None:
        """SIGKILL member `name`'s agent (as a crash would) and reap it."""
        m = self._member(name)
        if m.proc is None:
            return
        if m.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                m.proc.kill()
        m.proc.wait(timeout=10)

    def kill9_postgres(self, name: str) -> None:
        """SIGKILL member `name`'s postmaster and every process below it, if it runs (checked
        by its identity in /proc: a reused PID is left alone)."""
        ident = postmaster_identity(self._member(name).data_dir)
        if ident is not None:
            kill_postmaster(*ident)

    def kill9_fencer(self, name: str) -> None:
        """SIGKILL member `name`'s fencer (which outlives its agent by design), if it runs."""
        pid = self.fencer_pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop everything this cluster started, by PID, as a host crash would (SIGKILL):
        every agent (retired members' too), then each member's postmaster with its children,
        then its fencer. An orderly stop is `terminate`, member by member."""
        everyone = [*self.members.values(), *self.retired]
        for m in everyone:
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.kill()
        for m in everyone:
            if m.proc is not None:
                m.proc.wait(timeout=10)
        for m in everyone:
            self.kill9_postgres(m.name)
            self.kill9_fencer(m.name)

    def _member(self, name: str) -> LocalMember:
        """A current or retired member by name."""
        if name in self.members:
            return self.members[name]
        for m in self.retired:
            if m.name == name:
                return m
        raise KeyError(name)

    # -- observation ----------------------------------------------------------------------------

    def http(self, name: str, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        """GET a member's REST path: (status, JSON body or None); (0, None) when unreachable."""
        url = self.members[name].api + path
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=self.ssl_context) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, OSError):
            return 0, None

    def log_tails(self, lines: int = 15) -> str:
        """The last `lines` lines of every member's agent log, for a failure message."""
        out = []
        for m in self.members.values():
            try:
                text = m.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = []
            out.append(f"--- {m.name} ({m.log})\n" + "\n".join(text))
        return "\n".join(out)


def _fencer_pid(socket: Path) -> int | None:
    """The PID in the pid file beside `socket` if that process runs and names `socket` on its
    command line (not a reused PID)."""
    try:
        pid = int(pid_file_for(socket).read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(socket).encode() in cmdline else None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
