"""Every setting does what it says: each key names the test that shows its effect, or is OPEN.

The keys are every key of the configuration file (the leaves of the schema, and every key that
config.example.yaml sets) and every field of the cluster-wide dynamic settings (``dynamic.*``:
what ``hactl edit-config`` and ``PATCH /config`` change, `DynamicSettings`). A section (``log``,
``store.raft``...) has no entry of its own: its keys do. For each key, `EFFECTS` names the test
(or tests) that show the key's effect, as ``"tests/path.py::test_name"`` (``Class::test_name``
for a method, or a contract check such as ``tests/dcs/contract.py::check_...``); a test named
here must exist. A key whose effect is not there yet goes in `OPEN`, with the issue-16 item
that brings it; every OPEN key must still be a key, and the test prints them.

A new key without an entry fails `test_every_key_has_an_effect_test_or_is_open`: add one line
to `EFFECTS` (or to `OPEN`, saying which work item makes it take effect).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from hamgr.config import schema_paths
from hamgr.dcs.settings import DynamicSettings
from tests.test_config import uncommented_example

REPO = Path(__file__).resolve().parent.parent

# The parts of the agent each key reaches (the effects start there).
AGENT_SETUP = "tests/test_agentsetup.py::test_every_key_reaches_the_part_that_uses_it"
STORE_SETUP = "tests/test_storecmd.py::test_every_store_key_reaches_the_member_settings"
LIVE = "tests/ha/test_cluster.py::TestLiveCluster::test_rest_endpoints_on_a_live_cluster"
BOOTED = (
    "tests/ha/test_cluster.py::TestLiveCluster::test_bootstrap_one_primary_two_streaming_replicas"
)
EXAMPLE = "tests/test_agent_example.py::test_an_agent_starts_from_the_example_and_serves"
STORE_PROCS = "tests/raft/test_store_process.py"
REST_TLS = "tests/test_api_tls.py"
TLS_CLUSTER = "tests/ha/test_tls_cluster.py::test_a_tls_cluster_switches_over_fails_over_and_reloads_certificates"
CONTRACT = "tests/dcs/contract.py"
FENCED = (
    "tests/ha/test_fencing_e2e.py::test_frozen_primary_agent_is_fenced_before_a_new_primary_writes"
)
NO_SLOT = "tests/ha/test_slots.py::test_replicas_clone_and_stream_without_a_slot_where_none_exists"
SLOT_KEEPER = "tests/ha/test_slots.py::test_slot_keeper_creates_keeps_and_drops"
RACE = "tests/ha/test_decide_race.py::test_race"
PARAMETERS = (
    "tests/ha/test_parameters_e2e.py::test_edit_config_parameters_reach_every_member",
    "tests/ha/test_decide_parameters.py::test_parameters",
    "tests/postgres/test_params.py::test_effective_parameters",
)
SYNC = "tests/ha/test_sync.py"
STANDBY_DECIDE = "tests/ha/test_decide_standby.py::test_standby_cluster"
STANDBY_LIVE = "tests/postgres/test_standbyleader_conf.py::test_a_changed_standby_cluster_reaches_the_running_server"
STANDBY_CONF = (
    "tests/postgres/test_standbyleader_conf.py::test_every_key_reaches_the_recovery_config"
)
STANDBY_E2E = (
    "tests/ha/test_standby_cluster_e2e.py::test_a_standby_cluster_clones_the_primary_cluster_and_follows_it",
    "tests/ha/test_standby_cluster_e2e.py::test_the_standby_leader_fails_over_without_promoting",
    "tests/ha/test_standby_cluster_e2e.py::test_removing_standby_cluster_promotes_the_standby_leader",
)
SLOTS_E2E = "tests/ha/test_standby_cluster_e2e.py::test_permanent_slots_follow_the_primary_through_a_switchover"
PERMANENT_SLOTS = "tests/ha/test_slots_permanent.py::test_permanent_slots_are_kept_on_the_primary"
ETCD_AGENTS = (
    "tests/ha/test_cluster.py::test_kill9_primary_failover_then_old_primary_rewinds_and_streams"
)
ETCD_AUTH = "tests/dcs/test_etcd_dcs.py::test_authentication"
ETCD_TLS = "tests/dcs/test_etcd_dcs.py::test_tls_with_client_certificates"
SYNC_MODES = (
    f"{SYNC}::test_modes_take_effect_on_the_running_cluster",
    "tests/ha/test_syncrep.py::test_the_record_never_promises_more_than_postgres_delivered",
)
STRICT = (
    f"{SYNC}::test_lost_synchronous_standby_is_replaced_and_strict_mode_blocks",
    "tests/ha/test_syncrep.py::test_strict_mode_keeps_waiting_when_no_standby_is_left",
)
SYNC_LAG = "tests/ha/test_syncrep.py::test_mode_on_picks_an_eligible_standby"
START_TIMEOUT = (
    "tests/ha/test_decide.py::test_leader",
    "tests/ha/test_observe.py::test_primary_down_since",
    "tests/ha/test_selfheal_e2e.py::test_a_primary_that_cannot_start_fails_over_after_primary_start_timeout",
)

HOOKS = "tests/test_hooks.py"
HOOKS_E2E = "tests/ha/test_hooks_e2e.py"
HOOK_KEYS = f"{HOOKS}::test_methods_and_callbacks_reach_what_the_agent_runs"
CALLBACKS = (
    HOOK_KEYS,
    f"{HOOKS}::test_callbacks_one_at_a_time_and_killed_after_the_timeout",
    f"{HOOKS_E2E}::test_callbacks_run_with_patroni_arguments_one_at_a_time_and_time_out",
    f"{HOOKS_E2E}::test_switchover_runs_on_stop_and_on_role_change",
)
REPLICA_METHODS = (
    HOOK_KEYS,
    f"{HOOKS}::test_replica_methods_fall_through_and_keep_data_keeps_the_directory",
    f"{HOOKS}::test_without_a_leader_only_no_leader_methods_run",
    f"{HOOKS_E2E}::test_replica_methods_are_tried_in_order_until_one_succeeds",
)
BOOT_METHOD = (
    HOOK_KEYS,
    f"{HOOKS_E2E}::test_custom_bootstrap_method_with_recovery_conf_and_post_bootstrap",
)

LIVE_TIMING = "tests/ha/test_live_timing.py"
LIVE_TTL = f"{LIVE_TIMING}::test_ttl_changed_live_moves_the_leader_key_onto_a_lease_of_that_ttl"
LOOP_CADENCE = f"{LIVE_TIMING}::test_loop_wait_changed_live_sets_the_loop_cadence"
LEASE_CLOCK = (
    "tests/ha/test_leaseclock.py::test_fence_never_lies_past_the_store_expiry_of_the_keys_lease"
)

Tests = str | tuple[str, ...]

# fmt: off
#: key -> the test(s) that show its effect. One line per key.
EFFECTS: dict[str, Tests] = {
    "scope": (STORE_SETUP, f"{CONTRACT}::check_expiry_removes_leader_and_member_at_one_revision"),
    "name": LIVE,
    "timing_profile": "tests/test_config.py::test_fast_profile_changes_defaults_and_satisfies_every_rule",
    "log.level": "tests/test_storecmd.py::test_log_level_and_format_are_what_the_processes_log",
    "log.format": "tests/test_storecmd.py::test_log_level_and_format_are_what_the_processes_log",
    "restapi.listen": LIVE,
    "restapi.connect_address": (AGENT_SETUP, "tests/ha/test_cluster.py::test_kill9_primary_failover_then_old_primary_rewinds_and_streams"),
    "restapi.authentication.username": (LIVE, "tests/test_api.py::test_without_configured_auth_unsafe_methods_are_refused"),
    "restapi.authentication.password": (LIVE, "tests/test_api.py::test_unsafe_methods_need_the_password"),
    "restapi.authentication.password_file": ("tests/test_secret_files.py::test_the_agent_uses_the_passwords_from_files", "tests/test_secret_files.py::test_a_file_others_can_access_is_refused"),
    "restapi.certfile": (TLS_CLUSTER, f"{REST_TLS}::test_tls_is_served_and_checked_by_host_name", f"{REST_TLS}::test_plain_http_is_refused", f"{REST_TLS}::test_hactl_speaks_tls_with_its_options"),
    "restapi.keyfile": (f"{REST_TLS}::test_tls_is_served_and_checked_by_host_name", "tests/test_agentsetup.py::test_tls_on_one_side_only_or_unloadable_files_are_refused"),
    "restapi.cafile": (f"{REST_TLS}::test_verify_client_optional_checks_a_certificate_only_when_sent", f"{REST_TLS}::test_the_health_check_command_speaks_tls_with_the_member_files"),
    "restapi.verify_client": (f"{REST_TLS}::test_verify_client_required_refuses_clients_without_a_certificate", f"{REST_TLS}::test_verify_client_optional_checks_a_certificate_only_when_sent", f"{REST_TLS}::test_access_rules"),
    "restapi.allowlist": (f"{REST_TLS}::test_allowlist_limits_unsafe_methods_by_address", f"{REST_TLS}::test_access_rules"),
    "store.raft.data_dir": f"{STORE_PROCS}::test_whole_cluster_kill9_and_restart_from_disk",
    "store.raft.node_id": (STORE_SETUP, f"{STORE_PROCS}::test_store_ctl_put_get_del_status"),
    "store.raft.listen": (STORE_SETUP, f"{STORE_PROCS}::test_put_anywhere_get_everywhere"),
    "store.raft.advertise": (STORE_SETUP, "tests/raft/test_transport.py::test_advertised_address_is_separate_from_bind"),
    "store.raft.client_listen": (STORE_SETUP, f"{STORE_PROCS}::test_put_anywhere_get_everywhere"),
    "store.raft.cluster_id": (STORE_SETUP, "tests/raft/test_transport.py::test_wrong_cluster_id_is_refused_and_logged"),
    "store.raft.secret": (STORE_SETUP, "tests/raft/test_transport.py::test_wrong_secret_is_refused_and_good_peers_still_served"),
    "store.raft.secret_file": (STORE_SETUP, "tests/test_config.py::test_resolve_local_reads_the_secret_file_and_checks_bin_dir"),
    "store.raft.peers[].node_id": (STORE_SETUP, f"{STORE_PROCS}::test_put_anywhere_get_everywhere"),
    "store.raft.peers[].address": (STORE_SETUP, f"{STORE_PROCS}::test_put_anywhere_get_everywhere"),
    "store.raft.peers[].client_address": (STORE_SETUP, f"{STORE_PROCS}::test_frozen_leader_is_replaced_and_rejoins"),
    "store.raft.heartbeat_interval": (STORE_SETUP, "tests/test_storecmd.py::test_heartbeat_interval_is_counted_in_ticks_of_a_tenth_of_the_election_timeout", "tests/raft/test_heartbeat_tick.py::test_leader_sends_one_heartbeat_per_heartbeat_tick", f"{STORE_PROCS}::test_frozen_leader_is_replaced_and_rejoins"),
    "store.raft.election_timeout": (STORE_SETUP, f"{STORE_PROCS}::test_frozen_leader_is_replaced_and_rejoins"),
    "store.raft.snapshot_entries": f"{STORE_PROCS}::test_whole_cluster_kill9_during_background_snapshots_loses_nothing",
    "store.raft.join": ("tests/test_storecmd.py::test_join_makes_an_empty_member_wait_instead_of_founding_a_store", "tests/ha/test_members_e2e.py::test_replace_a_dead_host_without_an_outage_of_the_primary"),
    "store.raft.tls.certfile": (f"{STORE_PROCS}::test_tls_member_serves_tls_clients_only", TLS_CLUSTER),
    "store.raft.tls.keyfile": (f"{STORE_PROCS}::test_tls_member_serves_tls_clients_only", TLS_CLUSTER),
    "store.raft.tls.cafile": (f"{STORE_PROCS}::test_tls_member_serves_tls_clients_only", TLS_CLUSTER),
    "postgresql.data_dir": (AGENT_SETUP, EXAMPLE),
    "postgresql.bin_dir": ("tests/test_config.py::test_resolve_local_reads_the_secret_file_and_checks_bin_dir", "tests/postgres/test_control.py::test_wrong_bin_dir_is_named"),
    "postgresql.os_user": (AGENT_SETUP, "tests/postgres/test_control.py::test_initdb_start_status_stop"),
    "postgresql.listen": (AGENT_SETUP, LIVE),
    "postgresql.connect_address": (AGENT_SETUP, BOOTED),
    "postgresql.authentication.superuser.username": (AGENT_SETUP, EXAMPLE),
    "postgresql.authentication.superuser.password": (AGENT_SETUP, EXAMPLE, "tests/postgres/test_control.py::test_initdb_start_status_stop"),
    "postgresql.authentication.superuser.password_file": ("tests/test_secret_files.py::test_the_agent_uses_the_passwords_from_files", "tests/test_secret_files.py::test_a_file_others_can_access_is_refused"),
    "postgresql.authentication.replication.username": (AGENT_SETUP, "tests/postgres/test_replication.py::test_replica_streams_from_clone_with_slot"),
    "postgresql.authentication.replication.password": (AGENT_SETUP, "tests/postgres/test_replication.py::test_replica_streams_from_clone_with_slot"),
    "postgresql.authentication.replication.password_file": ("tests/test_secret_files.py::test_the_agent_uses_the_passwords_from_files", "tests/test_secret_files.py::test_a_file_others_can_access_is_refused"),
    "postgresql.authentication.rewind.username": (AGENT_SETUP, "tests/postgres/test_replication.py::test_failover_rewinds_a_crashed_diverged_primary"),
    "postgresql.authentication.rewind.password": (AGENT_SETUP, "tests/postgres/test_replication.py::test_failover_rewinds_a_crashed_diverged_primary"),
    "postgresql.authentication.rewind.password_file": ("tests/test_secret_files.py::test_the_agent_uses_the_passwords_from_files", "tests/test_secret_files.py::test_a_file_others_can_access_is_refused"),
        "postgresql.parameters": (AGENT_SETUP, "tests/postgres/test_control.py::test_reload_applies_config_and_needs_running_server", *PARAMETERS),
    "postgresql.pg_hba": "tests/postgres/test_control.py::test_configured_pg_hba_lines_win",
    "postgresql.use_pg_rewind": (AGENT_SETUP, "tests/ha/test_decide.py::test_replica"),
    "postgresql.remove_data_directory_on_rewind_failure": (AGENT_SETUP, "tests/ha/test_decide.py::test_replica"),
    "postgresql.create_replica_methods": ("tests/postgres/test_replication.py::test_replica_streams_from_clone_with_slot", *REPLICA_METHODS),
    "postgresql.replica_methods": REPLICA_METHODS,
    "postgresql.callbacks.on_start": CALLBACKS,
    "postgresql.callbacks.on_stop": CALLBACKS,
    "postgresql.callbacks.on_restart": (HOOK_KEYS, f"{HOOKS}::test_on_restart_after_a_restart_request"),
    "postgresql.callbacks.on_reload": CALLBACKS,
    "postgresql.callbacks.on_role_change": CALLBACKS,
    "postgresql.callback_timeout": (f"{HOOKS}::test_callbacks_one_at_a_time_and_killed_after_the_timeout", f"{HOOKS_E2E}::test_callbacks_run_with_patroni_arguments_one_at_a_time_and_time_out"),
    "postgresql.recovery_conf.restore_command": (HOOK_KEYS, f"{HOOKS_E2E}::test_a_replica_behind_the_primarys_wal_catches_up_from_the_archive"),
    "bootstrap.initdb": ("tests/test_agentsetup.py::test_bootstrap_initdb_options_reach_the_postgres_settings", "tests/postgres/test_control.py::test_configured_initdb_options_shape_the_new_cluster"),
    "bootstrap.dcs.ttl": (AGENT_SETUP, f"{CONTRACT}::check_keepalive_reports_sent_at_and_ttl", FENCED),
    "bootstrap.dcs.retry_timeout": (AGENT_SETUP, f"{CONTRACT}::check_calls_are_bounded_by_retry_timeout"),
    "bootstrap.dcs.maximum_lag_on_failover": (AGENT_SETUP, RACE),
    "bootstrap.dcs.safety_margin": (AGENT_SETUP, "tests/test_fencer.py::test_fence_state_rules", FENCED),
    "bootstrap.dcs.member_slots_ttl": (AGENT_SETUP, SLOT_KEEPER),
    "bootstrap.method": BOOT_METHOD,
    "bootstrap.methods": BOOT_METHOD,
    "bootstrap.post_bootstrap": BOOT_METHOD,
    "bootstrap.post_init": (HOOK_KEYS, f"{HOOKS}::test_every_key_is_checked"),
    "bootstrap.dcs.postgresql.parameters": (AGENT_SETUP, EXAMPLE, *PARAMETERS),
    "bootstrap.dcs.postgresql.use_slots": (AGENT_SETUP, NO_SLOT),
    "tags.nofailover": (RACE, "tests/ha/test_agent_signals.py::test_sighup_reloads_tags_and_json_logs_parse"),
    "tags.noloadbalance": (AGENT_SETUP, "tests/test_api.py::test_tags_noloadbalance_and_tag_queries"),
    "tags.clonefrom": (AGENT_SETUP, "tests/ha/test_decide.py::test_bootstrap", NO_SLOT),
    "watchdog.mode": ("tests/ha/test_watchdog_agent.py::test_required_refuses_to_start_without_the_device", "tests/ha/test_watchdog_agent.py::test_automatic_logs_once_and_serves_as_primary", "tests/test_watchdog.py::test_off_never_touches_a_device"),
    "watchdog.device": ("tests/ha/test_watchdog_agent.py::test_required_refuses_to_start_without_the_device", "tests/test_watchdog.py::test_protocol_open_set_timeout_ping_and_magic_close"),
    "watchdog.safety_margin": ("tests/test_watchdog.py::test_timeout_is_ttl_minus_margin_rounded_down", "tests/test_watchdog.py::test_required_refuses_a_margin_that_leaves_no_whole_second"),
    "store.backend": ETCD_AGENTS,
    "store.etcd.hosts": ETCD_AGENTS,
    "store.etcd.protocol": ETCD_TLS,
    "store.etcd.cacert": ETCD_TLS,
    "store.etcd.cert": (ETCD_TLS, "tests/dcs/test_etcd_dcs.py::test_etcd_client_certificate_settings_are_checked"),
    "store.etcd.key": (ETCD_TLS, "tests/dcs/test_etcd_dcs.py::test_etcd_client_certificate_settings_are_checked"),
    "store.etcd.username": (ETCD_AUTH, "tests/dcs/test_etcd_dcs.py::test_bad_settings_are_refused_with_a_clear_error"),
    "store.etcd.password": (ETCD_AUTH, "tests/dcs/test_etcd_dcs.py::test_bad_settings_are_refused_with_a_clear_error"),
    "tags.nosync": (f"{SYNC}::test_modes_take_effect_on_the_running_cluster", SYNC_LAG),
    "tags.failover_priority": (RACE, SYNC_LAG),
    "bootstrap.dcs.synchronous_mode": ("tests/test_config.py::test_valid_values_are_read_as_expected", *SYNC_MODES),
    "bootstrap.dcs.synchronous_mode_strict": STRICT,
    "bootstrap.dcs.synchronous_node_count": SYNC_MODES,
    "bootstrap.dcs.maximum_lag_on_syncnode": SYNC_LAG,
    "dynamic.synchronous_mode": SYNC_MODES,
    "dynamic.synchronous_mode_strict": STRICT,
    "dynamic.synchronous_node_count": SYNC_MODES,
    "dynamic.maximum_lag_on_syncnode": SYNC_LAG,
    # The cluster-wide dynamic settings (hactl edit-config, PATCH /config).
    "dynamic.maximum_lag_on_failover": (RACE, f"{SYNC}::test_lagging_member_never_takes_over_when_the_caught_up_one_cannot_be_asked"),
    "dynamic.pause": "tests/ha/test_cluster.py::test_pause_prevents_failover_until_resumed",
    "dynamic.use_slots": NO_SLOT,
    "bootstrap.dcs.primary_start_timeout": (AGENT_SETUP, *START_TIMEOUT),
    "dynamic.primary_start_timeout": START_TIMEOUT,
    "dynamic.parameters": PARAMETERS,
    "dynamic.member_slots_ttl": ("tests/ha/test_cluster.py::test_replica_death_does_not_disturb_the_primary", SLOT_KEEPER),
    "bootstrap.dcs.loop_wait": (AGENT_SETUP, LOOP_CADENCE),
    "dynamic.loop_wait": LOOP_CADENCE,
    "dynamic.ttl": (LIVE_TTL, f"{CONTRACT}::check_a_new_ttl_moves_the_keys_onto_a_new_lease", LEASE_CLOCK),
    "dynamic.retry_timeout": (LIVE_TTL, f"{CONTRACT}::check_calls_are_bounded_by_retry_timeout"),
    "bootstrap.dcs.standby_cluster.host": (STANDBY_DECIDE, STANDBY_CONF, *STANDBY_E2E),
    "bootstrap.dcs.standby_cluster.port": (STANDBY_DECIDE, STANDBY_CONF, *STANDBY_E2E),
    "bootstrap.dcs.standby_cluster.primary_slot_name": (STANDBY_DECIDE, STANDBY_CONF, *STANDBY_E2E),
    "bootstrap.dcs.standby_cluster.restore_command": (STANDBY_DECIDE, STANDBY_CONF, *STANDBY_E2E),
    "bootstrap.dcs.standby_cluster.create_replica_methods": (STANDBY_DECIDE, STANDBY_CONF, *STANDBY_E2E),
    "bootstrap.dcs.standby_cluster.recovery_min_apply_delay": (STANDBY_DECIDE, STANDBY_CONF, *STANDBY_E2E),
    "bootstrap.dcs.slots": (PERMANENT_SLOTS, SLOTS_E2E),
    "dynamic.standby_cluster": (STANDBY_DECIDE, STANDBY_CONF, STANDBY_LIVE, *STANDBY_E2E),
    "dynamic.slots": (PERMANENT_SLOTS, SLOTS_E2E),
    "dynamic.safety_margin": (f"{LIVE_TIMING}::test_safety_margin_changed_live_moves_the_fence_by_the_difference", LEASE_CLOCK),
}
# fmt: on

#: Keys accepted today whose effect is not there yet, with the work item that brings it.
#: Empty: every key shows its effect. A key may come here only with the issue that brings it.
OPEN: dict[str, str] = {}


def _sections() -> set[str]:
    paths = list(schema_paths())
    return {p for p in paths if any(q.startswith((f"{p}.", f"{p}[].")) for q in paths)}


def _example_keys(node: Any, prefix: str, sections: set[str]) -> Iterator[str]:
    """The key paths config.example.yaml sets (descending only into the schema's sections)."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if path in sections and isinstance(value, Mapping):
            yield from _example_keys(value, f"{path}.", sections)
        elif path in sections and isinstance(value, list):  # a list of sections: peers
            for item in value:
                yield from _example_keys(item, f"{path}[].", sections)
        else:
            yield path


def all_keys() -> set[str]:
    """Every key a setting can be given by: the file's (schema and example) and dynamic.*."""
    sections = _sections()
    schema = set(schema_paths()) - sections
    example = set(_example_keys(uncommented_example(), "", sections))
    dynamic = {f"dynamic.{name}" for name in DynamicSettings.__struct_fields__}
    return schema | example | dynamic


@cache
def _functions(path: str) -> set[str]:
    """``name`` and ``Class::name`` of every function defined in the file at `path`."""
    tree = ast.parse((REPO / path).read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef):
            found |= {
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return found


def _named(tests: Tests) -> tuple[str, ...]:
    return (tests,) if isinstance(tests, str) else tests


def test_every_key_has_an_effect_test_or_is_open() -> None:
    missing = sorted(all_keys() - EFFECTS.keys() - OPEN.keys())
    assert missing == [], (
        f"keys with no test showing their effect: {missing}; add each to EFFECTS in "
        f"{Path(__file__).name} (key -> 'tests/path.py::test_name'), or to OPEN with the work "
        "item that makes it take effect"
    )


def test_a_key_is_proven_or_open_not_both() -> None:
    assert sorted(EFFECTS.keys() & OPEN.keys()) == []


def test_every_entry_is_still_a_key() -> None:
    keys = all_keys()
    assert sorted(EFFECTS.keys() - keys) == [], "EFFECTS names keys that no longer exist"
    assert sorted(OPEN.keys() - keys) == [], "OPEN names keys that no longer exist"
    print(f"\n{len(OPEN)} keys accepted whose effect is still open:")
    for key, why in sorted(OPEN.items()):
        print(f"  {key}: {why}")


def test_every_named_test_exists() -> None:
    absent = []
    for key, tests in EFFECTS.items():
        for test in _named(tests):
            path, _, name = test.partition("::")
            if not (REPO / path).is_file() or name not in _functions(path):
                absent.append(f"{key}: {test}")
    assert absent == []
