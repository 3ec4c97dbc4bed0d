"""The merge of cluster-wide and local PostgreSQL parameters (hamgr/postgres/params.py), as a
table: Patroni's precedence, where a member's own value wins except for the parameters that
must be the same on every member."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from hamgr.postgres.params import CLUSTER_WIDE_ONLY, effective_parameters, local_only_problems
from hamgr.postgres.settings import ParamValue

Params = Mapping[str, ParamValue]


@pytest.mark.parametrize(
    ("cluster", "local", "expected"),
    [
        pytest.param({}, {}, {}, id="nothing"),
        pytest.param({"work_mem": "64MB"}, {}, {"work_mem": "64MB"}, id="cluster-only-value"),
        pytest.param({}, {"work_mem": "8MB"}, {"work_mem": "8MB"}, id="local-only-value"),
        pytest.param(
            {"work_mem": "64MB"}, {"work_mem": "8MB"}, {"work_mem": "8MB"}, id="local-wins"
        ),
        pytest.param(
            {"max_connections": 200},
            {"max_connections": 50},
            {"max_connections": 200},
            id="cluster-wide-only-from-the-cluster",
        ),
        pytest.param(
            {}, {"max_wal_senders": 3}, {}, id="cluster-wide-only-local-value-never-counts"
        ),
        pytest.param(
            {"work_mem": "64MB"},
            {"Work_Mem": "8MB"},
            {"Work_Mem": "8MB"},
            id="names-are-case-insensitive",
        ),
        pytest.param(
            {"MAX_CONNECTIONS": 200},
            {"max_connections": 50, "shared_buffers": "16MB"},
            {"MAX_CONNECTIONS": 200, "shared_buffers": "16MB"},
            id="cluster-wide-only-in-any-case",
        ),
        pytest.param(
            {"wal_level": "logical", "work_mem": "4MB", "track_commit_timestamp": True},
            {"wal_level": "replica", "track_commit_timestamp": False, "work_mem": "1MB"},
            {"wal_level": "logical", "work_mem": "1MB", "track_commit_timestamp": True},
            id="mixed",
        ),
    ],
)
def test_effective_parameters(cluster: Params, local: Params, expected: Params) -> None:
    assert effective_parameters(cluster, local) == expected


def test_the_cluster_wide_only_set_is_patronis() -> None:
    assert {
        "max_connections",
        "max_locks_per_transaction",
        "max_worker_processes",
        "max_prepared_transactions",
        "wal_level",
        "track_commit_timestamp",
        "max_wal_senders",
        "max_replication_slots",
        "wal_keep_size",
    } <= CLUSTER_WIDE_ONLY


def test_a_local_cluster_wide_only_parameter_is_named() -> None:
    problems = local_only_problems(
        {"work_mem": "1MB", "Max_Connections": 5}, "postgresql.parameters"
    )
    assert problems == [
        "postgresql.parameters: 'Max_Connections' must be the same on every member: set it "
        "cluster-wide (bootstrap.dcs.postgresql.parameters, or hactl edit-config --set "
        "parameters.Max_Connections=...)"
    ]
