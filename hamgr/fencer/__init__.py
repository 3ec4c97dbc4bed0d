"""Fencing: what stops a primary whose agent froze or died.

`process` is the fencer, a tiny process of its own (`python -m hamgr.fencer`, by `__main__`) that
kills the primary's PostgreSQL when its lease deadline passes; `protocol` is what it speaks with
the agent (the commands and their answers, pure); `guard` is its child that binds the
postmaster's life to the fencer's; `postmasterproc` finds and kills a data directory's
postmaster in /proc. The agent's side: `client` starts the fencer and hands it deadlines,
`keeper` restarts it when it dies, `watchdog` is the Linux watchdog, the second line behind it.

May import: hamgr.clock, and hamgr.config for its settings' types (`watchdog`). Never the agent,
the CLI, the HA loop, the store or PostgreSQL's modules. The fencer process itself (`process`,
`protocol`, `guard`, `postmasterproc`, `__main__`) runs on the standard library and hamgr.clock
only.
"""
