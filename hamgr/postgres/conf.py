"""Write hamgr's managed files into the data directory and the runtime directory.

`write_config` makes the data dir match `PgSettings` (hamgr.conf, pg_hba.conf, the include
lines in postgresql.conf, the password file); `write_standby_config` / `clear_standby_config`
switch the recovery part. A running server picks changes up on reload (`control.reload`),
except standby.signal and a few parameters that need a restart.
"""

from __future__ import annotations

from hamgr.postgres import render
from hamgr.postgres.errors import StateError
from hamgr.postgres.files import ensure_dir, read_text, remove_file, write_file
from hamgr.postgres.process import RunAs, resolve_run_as
from hamgr.postgres.settings import PgSettings

STANDBY_SIGNAL = "standby.signal"
RECOVERY_SIGNAL = "recovery.signal"


def ensure_runtime_dir(settings: PgSettings, run_as: RunAs | None = None) -> None:
    """Create the runtime dir (socket, log, password file) owned by the OS user, mode 0700."""
    ensure_dir(settings.runtime_dir, run_as or resolve_run_as(settings.os_user))


def write_passfile(settings: PgSettings, run_as: RunAs | None = None) -> None:
    """(Re)write the libpq password file; libpq requires it to be 0600 and owned by its reader."""
    run_as = run_as or resolve_run_as(settings.os_user)
    ensure_dir(settings.runtime_dir, run_as)
    write_file(settings.passfile, render.render_pgpass(settings), run_as)


def write_config(settings: PgSettings) -> None:
    """Make the managed files of an existing data dir match `settings`.

    Called after initdb, pg_basebackup and pg_rewind (the last two copy the source's config
    files, with the source's port and socket). Leaves the recovery part alone, except that a
    missing hamgr-recovery.conf is created empty.
    """
    run_as = resolve_run_as(settings.os_user)
    conf_path = settings.data_dir / "postgresql.conf"
    current = read_text(conf_path)
    if current is None:
        raise StateError(
            f"{conf_path} does not exist: {settings.data_dir} is not an initialized data dir"
        )
    ensure_runtime_dir(settings, run_as)
    updated = render.with_includes(current)
    if updated != current:
        write_file(conf_path, updated, run_as)
    managed = render.render_managed_conf(settings)
    write_file(settings.data_dir / render.MANAGED_CONF, managed, run_as)
    write_file(settings.data_dir / "pg_hba.conf", render.render_hba(settings), run_as)
    if not (settings.data_dir / render.RECOVERY_CONF).exists():
        clear_standby_config(settings)
    write_passfile(settings, run_as)


def write_managed_conf(settings: PgSettings) -> None:
    """Rewrite hamgr.conf alone from `settings` (its parameters changed): a reload makes a
    running server read it; parameters that need a restart then show in pg_settings as
    ``pending_restart`` until one."""
    content = render.render_managed_conf(settings)
    write_file(settings.data_dir / render.MANAGED_CONF, content, resolve_run_as(settings.os_user))


def write_standby_config(
    settings: PgSettings,
    primary_host: str,
    primary_port: int,
    slot_name: str | None,
    application_name: str,
) -> None:
    """Write the standby settings and standby.signal (read at the next start)."""
    run_as = resolve_run_as(settings.os_user)
    write_passfile(settings, run_as)
    content = render.render_recovery_conf(
        settings, primary_host, primary_port, slot_name, application_name
    )
    write_file(settings.data_dir / render.RECOVERY_CONF, content, run_as)
    write_file(settings.data_dir / STANDBY_SIGNAL, "", run_as)
    clear_sync_conf(settings)


def write_detached_config(settings: PgSettings) -> None:
    """Keep this standby in recovery but stream from nobody (read on reload)."""
    run_as = resolve_run_as(settings.os_user)
    content = render.render_detached_recovery_conf()
    write_file(settings.data_dir / render.RECOVERY_CONF, content, run_as)
    write_file(settings.data_dir / STANDBY_SIGNAL, "", run_as)


def write_sync_conf(settings: PgSettings, standby_names: str) -> None:
    """Write hamgr-sync.conf (read at the next start or reload)."""
    run_as = resolve_run_as(settings.os_user)
    content = render.render_sync_conf(standby_names)
    write_file(settings.data_dir / render.SYNC_CONF, content, run_as)


def clear_sync_conf(settings: PgSettings) -> None:
    """Empty hamgr-sync.conf: a standby's copy (pg_basebackup and pg_rewind copy the primary's)
    must not become the synchronous_standby_names of a later promotion."""
    write_sync_conf(settings, "")


def clear_standby_config(settings: PgSettings) -> None:
    """Forget the upstream: empty hamgr-recovery.conf and remove the recovery signal files."""
    run_as = resolve_run_as(settings.os_user)
    write_file(settings.data_dir / render.RECOVERY_CONF, render.render_no_recovery_conf(), run_as)
    remove_file(settings.data_dir / STANDBY_SIGNAL)
    remove_file(settings.data_dir / RECOVERY_SIGNAL)
