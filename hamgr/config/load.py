"""Reading the configuration at the edge: the file, and what only this machine can tell.

:func:`load_config` reads the YAML file (problems name the line and column), checks it with
:func:`~hamgr.config.validate.parse_config`, then :func:`resolve_local` finds PostgreSQL's
programs (:func:`find_bin_dir`), reads the Raft secret file and checks that the files the
configuration names are readable. What the agent builds from a loaded configuration, and the
checks that come with it, are in :mod:`hamgr.agent.setup` (``hamgr validate-config`` runs both).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from hamgr.config.problems import ConfigError
from hamgr.config.schema import Config
from hamgr.config.secretfiles import read_password_files, try_secret_file
from hamgr.config.strict_yaml import parse_yaml
from hamgr.config.validate import parse_config
from hamgr.config.values import long_secret


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, resolve: bool = True
) -> Config:
    """Read, parse and check the YAML file at ``path`` (with ``env``, else ``os.environ``).

    Reads the ``password_file`` keys (:func:`read_password_files`); with ``resolve`` (the
    default) also does :func:`resolve_local`. Raises ConfigError.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{source}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{source}: not UTF-8 text (byte {e.start})"]) from None
    data, problems = parse_yaml(text, source)
    if data is None and not problems:
        problems = [f"{source}: the file is empty"]
    if problems and data is None:
        raise ConfigError(problems)
    try:
        config = parse_config(data, os.environ if env is None else env)
    except ConfigError as e:
        raise ConfigError(problems + e.problems) from None
    if problems:
        raise ConfigError(problems)
    config = read_password_files(config)
    return resolve_local(config) if resolve else config


def find_bin_dir(
    pg_config: str = "pg_config", search_root: str | Path = "/usr/lib/postgresql"
) -> str | None:
    """Where PostgreSQL's programs are: ``pg_config --bindir``, else the newest
    ``<search_root>/<version>/bin`` that has ``pg_ctl``; None when neither is found."""
    try:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
        bindir = result.stdout.strip()
        if result.returncode == 0 and bindir and os.path.isfile(os.path.join(bindir, "pg_ctl")):
            return bindir
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[tuple[tuple[int, ...], str]] = []
    root = Path(search_root)
    for candidate in root.glob("*/bin") if root.is_dir() else []:
        version = candidate.parent.name
        if re.fullmatch(r"[0-9]+(\.[0-9]+)*", version) and (candidate / "pg_ctl").is_file():
            found.append((tuple(int(p) for p in version.split(".")), str(candidate)))
    return max(found)[1] if found else None


def resolve_local(config: Config) -> Config:
    """Fill in and check what only this machine can tell; raises ConfigError listing problems.

    Finds ``postgresql.bin_dir`` when it is not set (or checks it has pg_ctl), reads
    ``store.raft.secret_file`` into ``store.raft.secret``, and checks that the TLS and CA files
    the config names are readable files.
    """
    problems: list[str] = []

    def readable(path: str | None, key: str) -> None:
        if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            problems.append(f"{key}: {path} is not a readable file")

    pg = config.postgresql
    bin_dir = pg.bin_dir if pg is not None else None
    if pg is None:  # a witness: no PostgreSQL to find
        pass
    elif bin_dir is None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            problems.append(
                "postgresql.bin_dir: not set, and PostgreSQL was not found (no pg_config on "
                "PATH, no /usr/lib/postgresql/*/bin with pg_ctl); set it"
            )
    elif not os.path.isfile(os.path.join(bin_dir, "pg_ctl")):
        problems.append(f"postgresql.bin_dir: {bin_dir} has no pg_ctl")
    readable(config.restapi.certfile, "restapi.certfile")
    readable(config.restapi.keyfile, "restapi.keyfile")
    readable(config.restapi.cafile, "restapi.cafile")
    store = config.store
    raft = store.raft
    if raft is not None:
        if raft.tls is not None:
            for name in ("certfile", "keyfile", "cafile"):
                readable(getattr(raft.tls, name), f"store.raft.tls.{name}")
        if raft.secret_file is not None:
            secret, unusable = try_secret_file(raft.secret_file, "store.raft.secret_file")
            if secret is None:
                problems.append(unusable or "store.raft.secret_file: unusable")
            else:
                problem = long_secret(secret)
                if problem:
                    problems.append(f"store.raft.secret_file: the secret in it {problem}")
                raft = dataclasses.replace(raft, secret=secret)
    if store.etcd is not None:
        readable(store.etcd.cacert, "store.etcd.cacert")
        readable(store.etcd.cert, "store.etcd.cert")
        readable(store.etcd.key, "store.etcd.key")
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(
        config,
        postgresql=None if pg is None else dataclasses.replace(pg, bin_dir=bin_dir),
        store=dataclasses.replace(store, raft=raft),
    )
