"""The standby leader's PostgreSQL: a standby of a remote primary (a standby cluster's leader).

Like any standby it is configured by hamgr-recovery.conf plus standby.signal, but its upstream
is the ``standby_cluster`` section of the dynamic settings: ``host``/``port`` (through the
remote's slot ``primary_slot_name``), ``restore_command`` for archived WAL, and
``recovery_min_apply_delay``. When the member follows a member again, or is promoted, the
ordinary standby config (or none) replaces this file, so these settings go with it.
"""

from __future__ import annotations

from hamgr.config.standby import StandbyCluster
from hamgr.postgres import conf, render
from hamgr.postgres.control import is_running, reload, start
from hamgr.postgres.errors import StateError
from hamgr.postgres.files import read_text, write_file
from hamgr.postgres.process import resolve_run_as
from hamgr.postgres.replication import clone_from
from hamgr.postgres.settings import PgSettings

__all__ = [
    "clone_standby_leader",
    "configure_standby_leader",
    "follow_remote",
    "refresh_standby_leader",
]


def render_standby_leader_conf(settings: PgSettings, sc: StandbyCluster) -> str:
    """Content of hamgr-recovery.conf on a standby leader."""
    info = ""
    if sc.host is not None:
        info = render.primary_conninfo(settings, sc.host, sc.port, settings.name)
    source = sc.upstream or "the WAL archive"
    return (
        f"{render.HEADER}# This node is the standby leader of a standby cluster: a standby "
        f"of {source}.\n"
        f"primary_conninfo = {render.quote_guc(info)}\n"
        f"primary_slot_name = {render.quote_guc(sc.primary_slot_name or '')}\n"
        f"restore_command = {render.quote_guc(sc.restore_command or '')}\n"
        f"recovery_min_apply_delay = {render.quote_guc(sc.recovery_min_apply_delay or '0')}\n"
        "recovery_target_timeline = 'latest'\n"
    )


def configure_standby_leader(settings: PgSettings, sc: StandbyCluster) -> None:
    """Write the standby leader's recovery config and standby.signal (read at the next start,
    or by a running standby on reload)."""
    run_as = resolve_run_as(settings.os_user)
    conf.write_passfile(settings, run_as)
    content = render_standby_leader_conf(settings, sc)
    write_file(settings.data_dir / render.RECOVERY_CONF, content, run_as)
    write_file(settings.data_dir / conf.STANDBY_SIGNAL, "", run_as)
    conf.clear_sync_conf(settings)


async def follow_remote(settings: PgSettings, sc: StandbyCluster) -> None:
    """Make this standby replicate from the remote primary now (reload; start if stopped)."""
    configure_standby_leader(settings, sc)
    if is_running(settings):
        await reload(settings)
    else:
        await start(settings, wait=False)


async def clone_standby_leader(settings: PgSettings, sc: StandbyCluster) -> None:
    """Fill the empty data directory with pg_basebackup from the remote primary (through its
    slot ``primary_slot_name``, when given) and configure it as the standby leader (not
    started): how a fresh standby cluster is bootstrapped."""
    if sc.host is None:
        raise StateError(
            "a standby cluster is bootstrapped with pg_basebackup from standby_cluster.host, "
            "which is not set"
        )
    await clone_from(settings, sc.host, sc.port, slot_name=sc.primary_slot_name)
    configure_standby_leader(settings, sc)


async def refresh_standby_leader(settings: PgSettings, sc: StandbyCluster) -> bool:
    """Bring a running standby leader's recovery config up to date with ``sc`` (a changed
    restore_command, recovery_min_apply_delay, slot or upstream): rewrite and reload only when
    the file differs. True when it did."""
    path = settings.data_dir / render.RECOVERY_CONF
    if read_text(path) == render_standby_leader_conf(settings, sc):
        return False
    configure_standby_leader(settings, sc)
    await reload(settings)
    return True
