"""hamgr: a PostgreSQL high-availability manager with an embedded Raft key-value store."""

__version__ = "0.1.0"
