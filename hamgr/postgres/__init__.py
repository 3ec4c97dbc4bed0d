"""The local PostgreSQL instance: initdb, start/stop, promote, follow, rewind, clone, status.

Everything runs PostgreSQL's own programs as an unprivileged OS user (see process.py) and
talks SQL over the local unix socket with short timeouts (see sql.py). Modules:
settings (what to run), initdbopts (how a cluster is created), render/conf (managed config
files), control (lifecycle), status/controldata (observation, heldconn: the loop's persistent
connection), replication (standby, clone,
rewind, slots), roles (users).
"""

from hamgr.postgres.conf import clear_standby_config, write_config, write_managed_conf
from hamgr.postgres.control import (
    STOP_MODES,
    StopMode,
    checkpoint,
    initdb,
    is_initialized,
    is_running,
    postmaster_pid,
    promote,
    reload,
    restart,
    start,
    stop,
)
from hamgr.postgres.controldata import controldata, last_checkpoint_location
from hamgr.postgres.errors import (
    BaseBackupError,
    BinaryNotFoundError,
    CommandError,
    ConfigError,
    ControlDataError,
    InitdbError,
    NotRunningError,
    PgTimeoutError,
    PostgresError,
    PromoteError,
    ReloadError,
    RewindError,
    RootUserError,
    SlotError,
    SqlError,
    StartError,
    StateError,
    StopError,
)
from hamgr.postgres.heldconn import HeldConnection
from hamgr.postgres.initdbopts import InitdbOptions, initdb_options
from hamgr.postgres.parse import ControlData, TimelineSwitch
from hamgr.postgres.replication import (
    RewindResult,
    SlotInfo,
    clone_from,
    configure_standby,
    create_slot,
    drop_slot,
    follow,
    list_slots,
    rewind,
)
from hamgr.postgres.roles import bootstrap_users
from hamgr.postgres.settings import PgSettings
from hamgr.postgres.status import (
    PgStatus,
    ReplicationRow,
    WalReceiver,
    pending_restart,
    refused_settings,
    status,
    timeline_history,
)

__all__ = [
    "STOP_MODES",
    "BaseBackupError",
    "BinaryNotFoundError",
    "CommandError",
    "ConfigError",
    "ControlData",
    "ControlDataError",
    "HeldConnection",
    "InitdbError",
    "InitdbOptions",
    "NotRunningError",
    "PgSettings",
    "PgStatus",
    "PgTimeoutError",
    "PostgresError",
    "PromoteError",
    "ReloadError",
    "ReplicationRow",
    "RewindError",
    "RewindResult",
    "RootUserError",
    "SlotError",
    "SlotInfo",
    "SqlError",
    "StartError",
    "StateError",
    "StopError",
    "StopMode",
    "TimelineSwitch",
    "WalReceiver",
    "bootstrap_users",
    "checkpoint",
    "clear_standby_config",
    "clone_from",
    "configure_standby",
    "controldata",
    "create_slot",
    "drop_slot",
    "follow",
    "initdb",
    "initdb_options",
    "is_initialized",
    "is_running",
    "last_checkpoint_location",
    "list_slots",
    "pending_restart",
    "postmaster_pid",
    "promote",
    "refused_settings",
    "reload",
    "restart",
    "rewind",
    "start",
    "status",
    "stop",
    "timeline_history",
    "write_config",
    "write_managed_conf",
]
